"""The sensor pipeline: packets in, events out.

    source -> decode -> flow table -> TCP reassembly -> protocol detection
           -> dissector session -> events -> sink

:class:`Sensor` owns one run's state (flows, counters) and hands every event
to ``sink``, a callable taking the event dict. It never raises because of
packet contents: decode problems are counted by reason, dissector framing
violations become ``icsmon.decode_error`` events, and a dissector bug is
contained and counted. Only the source's own :class:`CaptureError` (a
corrupt file) leaves :meth:`Sensor.run`, after every readable packet was
processed.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterable
from typing import Any

from sensor.capture import CaptureStats, Packet
from sensor.decode import TCP, UDP, decode, link_macs, reverse_key
from sensor.dissect import Dissector, Event, ProtocolViolation
from sensor.events import Timestamp, conn_end, conn_start, decode_error, flow_base, flow_info
from sensor.flows import Flow, FlowTable, Half
from sensor.ipfrag import Defragmenter
from sensor.protocols import registry
from sensor.reassembly import MASK
from sensor.settings import SensorSettings

__all__ = ["Sensor"]

FIN, SYN, RST, ACK = 0x01, 0x02, 0x04, 0x10
PROGRESS_EVERY = 1 << 16

Sink = Callable[[Event], None]


class _ProtocolCounters:
    """Per-protocol totals; ``sessions`` sums the counters each ended session reports in ``stats``."""

    __slots__ = ("flows", "events", "violations", "bugs", "sessions")

    def __init__(self) -> None:
        self.flows = 0
        self.events = 0
        self.violations = 0
        self.bugs = 0
        self.sessions: dict[str, int] = {}

    def add_session(self, session: object) -> None:
        _add_counts(self.sessions, getattr(session, "stats", None))

    def as_dict(self, live_sessions: Iterable[object]) -> dict[str, Any]:
        sessions = dict(self.sessions)
        for session in live_sessions:
            _add_counts(sessions, getattr(session, "stats", None))
        return {"flows": self.flows, "events": self.events, "violations": self.violations,
                "bugs": self.bugs, "sessions": sessions}


def _add_counts(total: dict[str, int], counts: object) -> None:
    if isinstance(counts, dict):
        for key, n in counts.items():
            if isinstance(n, int):
                total[key] = total.get(key, 0) + n


class Sensor:
    def __init__(self, settings: SensorSettings | None = None, sink: Sink | None = None,
                 dissectors: Iterable[Dissector] | None = None) -> None:
        self.settings = settings or SensorSettings()
        self.sink: Sink = sink or (lambda event: None)
        self.observer = {
            "observer.id": self.settings.sensor_id,
            "observer.hostname": socket.gethostname(),
            "observer.type": "sensor",
            "observer.product": "icsmon",
        }
        self.table = FlowTable(self.settings.flows, self._flow_ended)
        fs = self.settings.fragments
        self.defrag = Defragmenter(fs.max_datagrams, fs.max_bytes, fs.timeout)
        self.errors: dict[str, int] = {}
        self.counters: dict[str, int] = {}
        self.packets = 0
        self.packet_number = 0  # 1-based number of the packet being processed (Wireshark's frame.number)
        self.bytes = 0
        self.events = 0
        self.events_by_dataset: dict[str, int] = {}
        self.capture_errors: list[str] = []
        self.capture_stats = CaptureStats()
        self.elapsed = 0.0
        self.last_ts = 0.0
        self._install_dissectors(dissectors)

    # -- configuration -------------------------------------------------------------------------

    def _install_dissectors(self, dissectors: Iterable[Dissector] | None) -> None:
        chosen = list(dissectors) if dissectors is not None else list(registry().values())
        if not self.settings.dissect:
            chosen = []
        disabled = set(self.settings.disabled_protocols)
        chosen = [d for d in chosen if d.name not in disabled]
        self.dissectors = chosen
        self.protocol_counters = {d.name: _ProtocolCounters() for d in chosen}
        self.tcp_by_port: dict[int, list[Dissector]] = {}
        self.udp_by_port: dict[int, list[Dissector]] = {}
        for d in chosen:
            override = self.settings.protocol_ports.get(d.name)
            tcp = set(override) if override is not None and d.tcp_ports else d.tcp_ports
            udp = set(override) if override is not None and d.udp_ports else d.udp_ports
            for port in tcp:
                self.tcp_by_port.setdefault(port, []).append(d)
            for port in udp:
                self.udp_by_port.setdefault(port, []).append(d)
        self.tcp_dissectors = [d for d in chosen if d.tcp_ports]
        self.udp_dissectors = [d for d in chosen if d.udp_ports]

    # -- the per-packet loop -------------------------------------------------------------------

    def run(self, source: Iterable[Packet], progress: Callable[[int], None] | None = None) -> None:
        """Process every packet of ``source``. Counters stay valid if the source raises."""
        table = self.table
        by_key = table.by_key
        errors, counters, defrag = self.errors, self.counters, self.defrag
        tcp = self._tcp
        deliver = self._deliver
        new_flow = self._new_flow
        packets = nbytes = 0
        first = self.packets  # packets of earlier run() calls: numbering continues across inputs
        last_ts = self.last_ts
        started = time.perf_counter()
        try:
            for ts, linktype, frame, interface in source:
                packets += 1
                self.packet_number = first + packets
                nbytes += len(frame)
                if ts > last_ts:
                    last_ts = ts
                    if ts >= table.next_sweep:
                        table.sweep(ts)
                if progress is not None and not packets % PROGRESS_EVERY:
                    progress(packets)
                decoded = decode(linktype, frame, ts, errors, counters, defrag)
                if decoded is None:
                    continue
                proto, key, payload, flags, seq, ack = decoded
                half = by_key.get(key)
                if half is None:
                    half = new_flow(key, proto, payload, flags, ts, interface, linktype, frame)
                flow = half.flow
                if ts > flow.last:  # reordered captures must not shorten (or negate) a flow
                    flow.last = ts
                half.packets += 1
                if proto == TCP:
                    tcp(half, flow, payload, flags, seq, ack, ts)
                elif payload:
                    half.bytes += len(payload)
                    if flow.session is not None or flow.probed_bytes >= 0:
                        deliver(flow, half, payload, ts)
        finally:
            self.packets += packets
            self.bytes += nbytes
            self.last_ts = last_ts
            self.elapsed += time.perf_counter() - started
            stats = getattr(source, "stats", None)
            if callable(stats):
                self.capture_stats = _merge_capture_stats(self.capture_stats, stats())

    def _new_flow(self, key: bytes, proto: int, payload: bytes, flags: int, ts: float, interface: str,
                  linktype: int, frame: bytes, macs: tuple[str | None, str | None] | None = None) -> Half:
        a = 16 if len(key) >= 37 else 4
        sport = (key[2 * a] << 8) | key[2 * a + 1]
        dport = (key[2 * a + 2] << 8) | key[2 * a + 3]
        if proto == TCP and flags & SYN:
            sender_is_client = not flags & ACK
        else:
            sender_is_client = self._looks_like_client(proto, sport, dport)
        half = self.table.create(key, proto, ts, interface, sender_is_client)
        flow = half.flow
        src_mac, dst_mac = macs or link_macs(linktype, frame)
        flow.src_mac, flow.dst_mac = (src_mac, dst_mac) if sender_is_client else (dst_mac, src_mac)
        if proto == TCP and not flags & SYN:
            flow.midstream = True
        elif proto != TCP and proto != UDP:
            flow.probed_bytes = -1  # ICMP: no ports, nothing for a dissector
        self._emit(conn_start(flow, self.observer))
        return half

    def _looks_like_client(self, proto: int, sport: int, dport: int) -> bool:
        """Without a SYN: the side talking to a known service port, else the higher port, is the client."""
        ports = self.tcp_by_port if proto == TCP else self.udp_by_port
        if dport in ports and sport not in ports:
            return True
        if sport in ports and dport not in ports:
            return False
        return sport >= dport

    def _tcp(self, half: Half, flow: Flow, payload: bytes, flags: int, seq: int, ack: int,
             ts: float) -> None:
        stream = half.stream
        assert stream is not None
        if flow.closed_at:
            if flags & SYN and not flags & ACK:  # the client reuses the ports: a new connection
                self.table.end(flow, ts, "closed")
                key = flow.key if half.to_server else reverse_key(flow.key)
                # MACs as sent by this packet's sender, known from the old flow.
                macs = (flow.src_mac, flow.dst_mac) if half.to_server else (flow.dst_mac, flow.src_mac)
                half = self._new_flow(key, TCP, payload, flags, ts, flow.interface, -1, b"", macs)
                half.packets += 1
                self._tcp(half, half.flow, payload, flags, seq, ack, ts)
            return
        to_server = half.to_server
        if flags & SYN:
            flow.mark("S" if not flags & ACK else "H", to_server)
            if not half.syn:  # a retransmitted SYN must not rewind a running stream
                half.syn = True
                stream.next_seq = (seq + 1) & MASK
            seq = (seq + 1) & MASK
        elif stream.next_seq < 0:
            stream.next_seq = seq
        if flags & ACK:
            peer_stream = half.peer.stream
            if peer_stream is not None and peer_stream.pending:
                chunks = peer_stream.acked(ack)
                if chunks:
                    self._deliver_chunks(flow, half.peer, chunks, ts)
        if payload:
            half.bytes += len(payload)
            if ("D" if to_server else "d") not in flow.history:
                flow.mark("D", to_server)
            chunks = stream.add(seq, payload)
            if chunks.__class__ is bytes:
                if flow.session is not None or flow.probed_bytes >= 0:
                    self._deliver(flow, half, chunks, ts)  # type: ignore[arg-type]
            elif chunks:
                self._deliver_chunks(flow, half, chunks, ts)  # type: ignore[arg-type]
        if flags & (FIN | RST):
            if flags & RST:
                flow.mark("R", to_server)
                self._close(flow, ts, "reset")
            else:
                flow.mark("F", to_server)
                half.fin = True
                if half.peer.fin:
                    self._close(flow, ts, "closed")

    def _close(self, flow: Flow, ts: float, state: str) -> None:
        self._flush_streams(flow, ts)
        self.table.close(flow, ts, state)

    def _flush_streams(self, flow: Flow, ts: float) -> None:
        for half in (flow.client, flow.server):
            if half.stream is not None and half.stream.pending:
                self._deliver_chunks(flow, half, half.stream.flush(), ts)

    def _deliver_chunks(self, flow: Flow, half: Half, chunks: list[bytes | int], ts: float) -> None:
        for chunk in chunks:
            if chunk.__class__ is int:
                if flow.session is not None:
                    try:
                        flow.session.on_gap(chunk, half.to_server)  # type: ignore[arg-type]
                    except Exception as exc:  # noqa: BLE001 - a dissector bug must not stop the sensor
                        self._dissector_bug(flow, exc, ts)
            else:
                self._deliver(flow, half, chunk, ts)  # type: ignore[arg-type]

    # -- protocol detection and dissection ----------------------------------------------------

    def _deliver(self, flow: Flow, half: Half, data: bytes, ts: float) -> None:
        session = flow.session
        if session is None:
            session = self._identify(flow, half, data)
            if session is None:
                return
        try:
            events = session.feed(data, half.to_server, ts)
        except ProtocolViolation as exc:
            self._violation(flow, exc, ts)
            return
        except Exception as exc:  # noqa: BLE001 - a dissector bug must not stop the sensor
            self._dissector_bug(flow, exc, ts)
            return
        if events:
            self._emit_protocol(flow, half, events, ts)

    def _identify(self, flow: Flow, half: Half, data: bytes) -> Any:
        """Pick a dissector by port and content (Zeek-style dynamic protocol detection)."""
        if flow.probed_bytes < 0:
            return None
        dport = flow_info(flow)[3]
        tcp = flow.proto == TCP
        by_port = (self.tcp_by_port if tcp else self.udp_by_port).get(dport, ())
        candidates = list(by_port) + [d for d in (self.tcp_dissectors if tcp else self.udp_dissectors)
                                      if d not in by_port]
        excluded = flow.excluded or ()
        for dissector in candidates:
            if dissector.name in excluded:
                continue
            check = dissector.port_probe if dissector.port_probe and dissector in by_port else dissector.probe
            try:
                accepted = check(data, half.to_server)
            except Exception:  # noqa: BLE001 - a probe must never stop detection
                accepted = False
            if accepted:
                flow.dissector = dissector
                flow.session = dissector.new_session()
                self.protocol_counters[dissector.name].flows += 1
                return flow.session
        flow.probed_bytes += len(data)
        if flow.probed_bytes >= self.settings.max_probe_bytes or not candidates:
            flow.probed_bytes = -1  # give up: flows only
        return None

    def _violation(self, flow: Flow, exc: ProtocolViolation, ts: float) -> None:
        name = flow.dissector.name if flow.dissector else "unknown"
        self.protocol_counters[name].violations += 1
        self.errors[f"{name}:{exc.reason}"] = self.errors.get(f"{name}:{exc.reason}", 0) + 1
        error = decode_error(flow, ts, self.observer, name, exc.reason, exc.offset)
        error["icsmon.packet"] = self.packet_number
        self._emit(error)
        self._drop_dissector(flow, name)

    def _dissector_bug(self, flow: Flow, exc: Exception, ts: float) -> None:
        name = flow.dissector.name if flow.dissector else "unknown"
        self.protocol_counters[name].bugs += 1
        reason = f"dissector-bug:{name}:{type(exc).__name__}"
        self.errors[reason] = self.errors.get(reason, 0) + 1
        error = decode_error(flow, ts, self.observer, name, reason, 0)
        error["icsmon.packet"] = self.packet_number
        self._emit(error)
        self._drop_dissector(flow, name)

    def _drop_dissector(self, flow: Flow, name: str) -> None:
        """Stop feeding this dissector on the flow; another may claim the following bytes."""
        if flow.excluded is None:
            flow.excluded = set()
        flow.excluded.add(name)
        if flow.session is not None and name in self.protocol_counters:
            self.protocol_counters[name].add_session(flow.session)
        flow.session = None
        flow.dissector = None
        flow.probed_bytes = 0

    # -- events --------------------------------------------------------------------------------

    def _emit_protocol(self, flow: Flow, half: Half, events: list[Event], ts: float) -> None:
        dissector = flow.dissector
        assert dissector is not None
        cached = half.head
        if cached is None or cached[0] is not dissector:
            head = dict(flow_base(flow, self.observer))
            head["event.dataset"] = "icsmon." + dissector.name
            head["event.type"] = ("protocol",)
            head["network.protocol"] = dissector.name
            head["network.direction"] = "to_server" if half.to_server else "to_client"
            half.head = cached = (dissector, head)
        head = cached[1]
        packet = self.packet_number
        stamp = Timestamp(ts)
        sink = self.sink
        sequence = self.events
        for fields in events:
            sequence += 1
            event = {**head, "@timestamp": stamp, "icsmon.packet": packet, **fields}
            event["event.sequence"] = sequence
            sink(event)
        count = len(events)
        self.events = sequence
        dataset = head["event.dataset"]
        self.events_by_dataset[dataset] = self.events_by_dataset.get(dataset, 0) + count
        self.protocol_counters[dissector.name].events += count

    def _emit(self, event: Event) -> None:
        self.events += 1
        event["event.sequence"] = self.events
        dataset = event["event.dataset"]
        self.events_by_dataset[dataset] = self.events_by_dataset.get(dataset, 0) + 1
        self.sink(event)

    def _flow_ended(self, flow: Flow, ts: float, state: str) -> None:
        self._flush_streams(flow, ts)
        if flow.session is not None:
            try:
                events = flow.session.finish(ts)
            except Exception as exc:  # noqa: BLE001
                self._dissector_bug(flow, exc, ts)
                events = []
            if events:
                self._emit_protocol(flow, flow.client, events, ts)
            if flow.session is not None and flow.dissector is not None:
                self.protocol_counters[flow.dissector.name].add_session(flow.session)
        self._emit(conn_end(flow, ts, self.observer))

    # -- end of input and statistics -----------------------------------------------------------

    def finish(self) -> None:
        """End of input: report every open flow."""
        self.table.drain(self.last_ts)

    def stats_dict(self) -> dict[str, Any]:
        table = self.table
        live: dict[str, list[object]] = {}
        active = 0
        for flow in table.flows.values():
            if flow.closed_at:  # reported already, lingering only to absorb late packets
                continue
            active += 1
            if flow.session is not None and flow.dissector is not None:
                live.setdefault(flow.dissector.name, []).append(flow.session)
        protocols = {name: c.as_dict(live.get(name, ())) for name, c in self.protocol_counters.items()}
        decode_errors = dict(self.errors)
        for reason, n in self.defrag.counters.items():
            if reason not in ("fragments", "datagrams-reassembled"):
                decode_errors[f"ip-fragments:{reason}"] = n
        return {
            "packets": self.packets,
            "bytes": self.bytes,
            "elapsed_seconds": round(self.elapsed, 6),
            "packets_per_second": round(self.packets / self.elapsed, 1) if self.elapsed else 0.0,
            "events": self.events,
            "events_by_dataset": dict(self.events_by_dataset),
            "flows": {
                "created": table.created,
                "active": active,
                "ended": sum(table.ended.values()),
                "ended_by_state": dict(table.ended),
                "timed_out": table.ended.get("timeout-idle", 0) + table.ended.get("timeout-absolute", 0),
                "evicted": table.ended.get("evicted", 0),
            },
            "reassembly": {
                "buffered_bytes": table.budget.held,
                "forced_gaps": table.budget.forced_gaps,
            },
            "ip_fragments": dict(self.defrag.counters),
            "decode_errors": decode_errors,
            "not_decoded": dict(self.counters),
            "drops": {
                "kernel": self.capture_stats.kernel_dropped,
                "interface": self.capture_stats.interface_dropped,
                "buffer": table.budget.forced_gaps,
            },
            "protocols": protocols,
            "capture": dict(self.capture_stats.extra),
            "capture_errors": list(self.capture_errors),
        }


def _merge_capture_stats(total: CaptureStats, more: CaptureStats) -> CaptureStats:
    return CaptureStats(
        received=total.received + more.received,
        kernel_dropped=total.kernel_dropped + more.kernel_dropped,
        interface_dropped=total.interface_dropped + more.interface_dropped,
        extra={**total.extra, **more.extra},
    )
