"""The flow table: one :class:`Flow` per 5-tuple (plus VLAN ids), bounded.

Both directional keys of a flow map to that direction's :class:`Half`, so a
packet costs one dictionary lookup to find its flow *and* its direction's
reassembly state. Flows end on FIN in both directions, on RST, when idle
longer than their transport's idle timeout, when older than the absolute
timeout, when the table is full (the oldest flow is evicted), or at the end
of input. Every end is counted by state in :attr:`FlowTable.ended`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sensor.decode import TCP, UDP, reverse_key
from sensor.reassembly import BufferBudget, Stream
from sensor.settings import FlowSettings

if TYPE_CHECKING:
    from sensor.dissect import Dissector, Session

__all__ = ["Flow", "Half", "FlowTable"]

# A closed flow stays in the table this long to absorb its last ACKs.
CLOSED_LINGER = 2.0


class Half:
    """One direction of a flow: its counters and (TCP) reassembly state."""

    __slots__ = ("flow", "to_server", "stream", "packets", "bytes", "syn", "fin", "peer", "head")

    def __init__(self, flow: Flow, to_server: bool, stream: Stream | None) -> None:
        self.flow = flow
        self.to_server = to_server
        self.stream = stream
        self.packets = 0
        self.bytes = 0
        self.syn = False
        self.fin = False
        self.peer: Half = self  # set to the other half by Flow
        self.head: tuple[Any, dict[str, Any]] | None = None  # (dissector, fields of its events this way)


class Flow:
    """A bidirectional conversation. ``key`` is the client-to-server key."""

    __slots__ = (
        "key", "proto", "first", "last", "client", "server", "history", "state", "midstream",
        "session", "dissector", "excluded", "probed_bytes", "base", "info", "closed_at",
        "interface", "src_mac", "dst_mac",
    )

    def __init__(self, key: bytes, proto: int, ts: float, interface: str, budget: BufferBudget,
                 settings: FlowSettings) -> None:
        self.key = key
        self.proto = proto
        self.first = ts
        self.last = ts
        self.interface = interface
        self.src_mac: str | None = None
        self.dst_mac: str | None = None
        if proto == TCP:
            mk = lambda: Stream(budget, settings.max_buffer_per_flow, settings.max_segments_per_flow)  # noqa: E731
            self.client = Half(self, True, mk())
            self.server = Half(self, False, mk())
        else:
            self.client = Half(self, True, None)
            self.server = Half(self, False, None)
        self.client.peer = self.server
        self.server.peer = self.client
        self.history = ""
        self.state = ""
        self.midstream = False
        self.session: Session | None = None
        self.dissector: Dissector | None = None  # confirmed or tentative protocol
        self.excluded: set[str] | None = None  # dissectors that violated on this flow
        self.probed_bytes = 0  # payload seen while no dissector claimed the flow
        self.base: dict[str, Any] | None = None  # common event fields, built on first use
        self.info: tuple[Any, ...] | None = None  # split_key() of key, built on first use
        self.closed_at = 0.0

    def mark(self, letter: str, from_client: bool) -> None:
        """Append a history letter once (upper case: client, lower case: server)."""
        letter = letter if from_client else letter.lower()
        if letter not in self.history:
            self.history += letter


class FlowTable:
    """Flows by directional key, with timeouts and a hard cap."""

    def __init__(self, settings: FlowSettings, on_end: Callable[[Flow, float, str], None]) -> None:
        self.settings = settings
        self.by_key: dict[bytes, Half] = {}
        self.flows: dict[bytes, Flow] = {}  # client key -> flow, oldest first
        self.budget = BufferBudget(settings.max_buffer_total)
        self.on_end = on_end
        self.created = 0
        self.ended: dict[str, int] = {}
        self.next_sweep = 0.0
        self._idle = {TCP: settings.tcp_idle_timeout, UDP: settings.udp_idle_timeout}

    def create(self, key: bytes, proto: int, ts: float, interface: str, sender_is_client: bool) -> Half:
        """Start tracking a flow first seen as a packet with ``key``; return the sender's half."""
        if len(self.flows) >= self.settings.max_flows:
            oldest = next(iter(self.flows.values()))
            self.end(oldest, ts, "evicted")
        ckey = key if sender_is_client else reverse_key(key)
        flow = Flow(ckey, proto, ts, interface, self.budget, self.settings)
        self.flows[ckey] = flow
        self.by_key[ckey] = flow.client
        self.by_key[reverse_key(ckey)] = flow.server
        self.created += 1
        return flow.client if sender_is_client else flow.server

    def end(self, flow: Flow, ts: float, state: str) -> None:
        """Report the flow (via ``on_end``) and forget it."""
        if self.flows.pop(flow.key, None) is None:
            return
        self.by_key.pop(flow.key, None)
        self.by_key.pop(reverse_key(flow.key), None)
        if not flow.closed_at:
            flow.state = state
            self.ended[state] = self.ended.get(state, 0) + 1
            self.on_end(flow, ts, state)

    def close(self, flow: Flow, ts: float, state: str) -> None:
        """TCP close (FIN both ways or RST): report now, keep absorbing packets briefly."""
        if flow.closed_at:
            return
        flow.state = state
        self.ended[state] = self.ended.get(state, 0) + 1
        self.on_end(flow, ts, state)
        flow.closed_at = ts or 1e-9

    def sweep(self, now: float) -> None:
        """End idle, too old and lingering closed flows. Called every ``sweep_interval``."""
        self.next_sweep = now + self.settings.sweep_interval
        absolute = self.settings.absolute_timeout
        idle_default = self.settings.icmp_idle_timeout
        expired: list[tuple[Flow, str]] = []
        for flow in self.flows.values():
            if flow.closed_at:
                if now - flow.closed_at > CLOSED_LINGER:
                    expired.append((flow, "closed"))
            elif now - flow.last > self._idle.get(flow.proto, idle_default):
                expired.append((flow, "timeout-idle"))
            elif now - flow.first > absolute:
                expired.append((flow, "timeout-absolute"))
        for flow, state in expired:
            self.end(flow, now, state)

    def drain(self, ts: float, state: str = "end-of-capture") -> None:
        """End every flow (end of input)."""
        for flow in list(self.flows.values()):
            self.end(flow, max(ts, flow.last), state)
