"""The contract between the sensor core and protocol dissectors.

A protocol module under :mod:`sensor.protocols` exports exactly one
``DISSECTOR = Dissector(...)``. The core hands each flow's reassembled bytes
(TCP) or datagrams (UDP) to a per-flow :class:`Session` created by
``DISSECTOR.new_session()``; the session returns protocol events as flat
dictionaries of its own fields (``modbus.*``, ``ics.*``, ``event.action``...).
The core adds the common fields (time, endpoints, flow ids, observer).

Sessions do no I/O and no logging. Errors:

* :class:`ProtocolViolation` -- the bytes cannot be this protocol (framing is
  broken). The core records a decode-error event with ``reason`` and
  ``offset`` and stops feeding this dissector on the flow.
* Anything else a session raises is a bug; the core still contains it (counted
  as ``dissector-bug:<name>``) so one bad flow never stops the sensor.

Values that break the specification but still parse are *not* violations:
the session reports them as events with ``event.type: ["protocol", "error"]``
so rules can match them (Zeek's weird.log).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from sensor.schema import Field

Event = dict[str, Any]


class ProtocolViolation(Exception):
    """The data on this flow does not frame as the protocol: ``reason`` at ``offset``."""

    def __init__(self, reason: str, offset: int = 0) -> None:
        super().__init__(f"{reason} at offset {offset}")
        self.reason = reason
        self.offset = offset


class Session(Protocol):
    """Per-flow protocol state. One instance per flow (both directions).

    A session may also carry ``stats: dict[str, int]`` (PDUs, anomalies,
    pairing misses, resync bytes...); the pipeline sums them per protocol into
    the run statistics under ``protocols.<name>.sessions``.
    """

    def feed(self, data: bytes, to_server: bool, ts: float) -> list[Event]:
        """Consume in-order stream bytes (TCP) or one datagram (UDP); return events."""
        ...

    def on_gap(self, nbytes: int, to_server: bool) -> None:
        """``nbytes`` of the stream in this direction were never captured; resynchronise."""
        ...

    def finish(self, ts: float) -> list[Event]:
        """The flow ended: return events still pending (e.g. unanswered requests)."""
        ...


@dataclass(frozen=True, slots=True)
class WiresharkFields:
    """Where Wireshark shows this protocol's key fields, for the differential harness.

    ``display_filter`` selects the frames tshark reports (``-Y``). ``fields``
    maps an icsmon field to the tshark field that carries the same raw value
    (numbers as numbers: a function code, not its name). For every frame the
    harness compares the multiset of tshark's values of that field (every
    occurrence in the frame) with the multiset of the icsmon field's values over
    the protocol events whose ``icsmon.packet`` is that frame's number, list
    values flattened. Integers compare numerically whatever base tshark prints.
    A key written ``field@role`` (``modbus.address@request``) takes the field
    from events of that ``ics.role`` only, for values Wireshark shows on one
    side of an exchange while icsmon copies them onto the paired response.
    ``when`` narrows a key further with a predicate on the event, for values
    Wireshark shows only where they are on the wire (Modbus shows the address
    of a read request but not of its response, and the echoed address of a
    write response). ``decode_as`` is the Wireshark dissector to hand a flow
    found on a non-standard port (tshark's ``-d tcp.port==N,<decode_as>``).
    """

    display_filter: str
    fields: Mapping[str, str]
    decode_as: str = ""
    when: Mapping[str, Callable[[Event], bool]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Dissector:
    """Registration record of one protocol.

    ``probe(payload, to_server)`` is a cheap content test on the first payload
    of a flow (Zeek's dynamic protocol detection): true means the bytes look
    like this protocol. ``tcp_ports``/``udp_ports`` are the well-known server
    ports (overridable in configuration). ``operations`` maps each of the
    protocol's function names to the cross-protocol ``ics.operation`` value; it
    feeds the docs and the rule linter. ``wireshark`` names the tshark fields
    the differential harness compares with this protocol's events.
    ``port_probe`` is a looser test for flows on the protocol's own ports (the
    framing alone, any function code), so that junk or fuzzing sent to a PLC's
    port is dissected and reported rather than ignored; it defaults to ``probe``.
    ``routine_actions`` names the ``event.action`` values that are keep-alives
    or acknowledgements: volume control treats them like successful reads.
    """

    name: str
    description: str
    tcp_ports: frozenset[int]
    udp_ports: frozenset[int]
    probe: Callable[[bytes, bool], bool]
    new_session: Callable[[], Session]
    fields: tuple[Field, ...] = ()
    operations: Mapping[str, str] = field(default_factory=dict)
    wireshark: WiresharkFields | None = None
    port_probe: Callable[[bytes, bool], bool] | None = None
    routine_actions: frozenset[str] = frozenset()


# The closed set of ``ics.operation`` values shared by all protocols.
OPERATIONS: tuple[str, ...] = (
    "read", "write", "program_download", "program_upload", "program_delete", "control_run",
    "control_stop", "mode_change", "restart", "firmware_update", "diagnostic", "discovery",
    "identity", "time_sync", "file_read", "file_write", "file_delete", "config_change", "session",
    "auth", "alarm", "report", "other",
)
