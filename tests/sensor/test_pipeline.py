"""The whole sensor on crafted traffic: a TCP conversation with every reassembly case, protocol
detection by port and by content, violations and dissector bugs, UDP messages, event fields,
JSON lines and the statistics document.

The dissector here is a small line protocol defined in this file: it records every ``feed`` and
``on_gap`` call and emits one event per newline-terminated line, so the tests see exactly what
the core hands a dissector.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Dot1AD, Dot1Q, Ether

from sensor.capture import LINKTYPE_ETHERNET, CaptureError, Packet
from sensor.dissect import Dissector, Event, ProtocolViolation
from sensor.events import iso_time, to_json, with_iso_times
from sensor.pipeline import Sensor
from sensor.settings import FlowSettings, SensorSettings

logging.getLogger("scapy.runtime").setLevel(logging.ERROR)

# Explicit addresses: a bare Ether() makes scapy look the destination MAC up on the network.
L2 = {"src": "02:00:00:00:00:01", "dst": "02:00:00:00:00:02"}

CLIENT, SERVER = "10.1.0.1", "10.1.0.2"
LINE_PORT = 7777
MAC_C, MAC_S = "02:00:00:00:00:01", "02:00:00:00:00:02"


# -- the test dissector ------------------------------------------------------------------------------


@dataclass
class Recorder:
    calls: list[tuple[Any, ...]] = field(default_factory=list)
    sessions: int = 0

    def of(self, name: str) -> list[tuple[Any, ...]]:
        return [c[1:] for c in self.calls if c[0] == name]


class LineSession:
    """One event per newline-terminated line; ``BAD`` is a framing violation, ``BUG`` a crash."""

    def __init__(self, name: str, rec: Recorder) -> None:
        self.name = name
        self.rec = rec
        self.buf = {True: b"", False: b""}
        self.offset = {True: 0, False: 0}
        self.stats = {"lines": 0, "gaps": 0}
        rec.sessions += 1

    def feed(self, data: bytes, to_server: bool, ts: float) -> list[Event]:
        self.rec.calls.append((self.name, "feed", to_server, bytes(data)))
        buf = self.buf[to_server] + data
        events: list[Event] = []
        while b"\n" in buf:
            line, _, buf = buf.partition(b"\n")
            if line == b"BAD":
                raise ProtocolViolation("bad-line", self.offset[to_server])
            if line == b"BUG":
                raise ZeroDivisionError("dissector bug")
            self.offset[to_server] += len(line) + 1
            self.stats["lines"] += 1
            events.append({"event.action": "line", "test.line": line.decode(), "test.ts": ts})
        self.buf[to_server] = buf
        return events

    def on_gap(self, nbytes: int, to_server: bool) -> None:
        self.rec.calls.append((self.name, "gap", to_server, nbytes))
        if self.buf[to_server] == b"GAPBUG":
            raise KeyError("gap bug")
        self.stats["gaps"] += 1
        self.buf[to_server] = b""  # resynchronise: the partial line is lost
        self.offset[to_server] += nbytes

    def finish(self, ts: float) -> list[Event]:
        self.rec.calls.append((self.name, "finish"))
        pending = [b for b in self.buf.values() if b]
        if pending == [b"FINBUG"]:
            raise RuntimeError("finish bug")
        return [{"event.action": "partial", "test.line": b.decode()} for b in pending]


def line_dissector(rec: Recorder, name: str = "lines", tcp_ports: tuple[int, ...] = (LINE_PORT,),
                   udp_ports: tuple[int, ...] = (LINE_PORT,), prefix: bytes = b"",
                   accept_anything: bool = False) -> Dissector:
    """Claims flows whose first payload starts with a letter and ``prefix`` (or anything at all)."""

    def probe(payload: bytes, to_server: bool) -> bool:
        if payload.startswith(b"PROBEBUG"):
            raise IndexError("probe bug")
        return accept_anything or (payload.startswith(prefix) and payload[:1].isalpha())

    return Dissector(name=name, description="newline-terminated test lines", tcp_ports=frozenset(tcp_ports),
                     udp_ports=frozenset(udp_ports), probe=probe, new_session=lambda: LineSession(name, rec))


# -- crafted traffic ---------------------------------------------------------------------------------


class Conversation:
    """Builds the frames of one TCP connection, tracking both sides' sequence numbers and the clock.

    ``c()``/``s()`` send from client/server; ``at`` places a segment at a relative stream offset
    (default: the sender's current position); the sender's position moves past the segment's end
    if that is further; the ACK number acknowledges
    everything the other side has sent so far, including segments the sensor never sees.
    """

    def __init__(self, client: tuple[str, int] = (CLIENT, 40000),
                 server: tuple[str, int] = (SERVER, LINE_PORT), ts: float = 1_700_000_000.0,
                 c_isn: int = 1000, s_isn: int = 500_000, vlans: tuple[int, ...] = (),
                 v6: bool = False) -> None:
        self.client, self.server = client, server
        self.ts = ts
        self.isn = {True: c_isn, False: s_isn}
        self.pos = {True: 0, False: 0}  # bytes sent after the SYN, per side
        self.syn = {True: False, False: False}
        self.vlans = vlans
        self.v6 = v6
        self.packets: list[Packet] = []

    def _seq(self, from_client: bool, rel: int) -> int:
        return (self.isn[from_client] + 1 + rel) & 0xFFFFFFFF

    def send(self, from_client: bool, flags: str, data: bytes = b"", at: int | None = None, dt: float = 0.01,
             keep: bool = True, ack: bool = True) -> Packet:
        self.ts += dt
        if "S" in flags:
            seq = self.isn[from_client]
            self.syn[from_client] = True
        else:
            rel = self.pos[from_client] if at is None else at
            seq = self._seq(from_client, rel)
            self.pos[from_client] = max(self.pos[from_client], rel + len(data) + (1 if "F" in flags else 0))
        peer = not from_client
        ack_no = self._seq(peer, self.pos[peer]) if self.syn[peer] or self.pos[peer] else 0
        if "S" in flags and "A" not in flags:
            ack_no = 0
        src, dst = (self.client, self.server) if from_client else (self.server, self.client)
        l2: Any = Ether(src=MAC_C if from_client else MAC_S, dst=MAC_S if from_client else MAC_C)
        if len(self.vlans) == 2:
            l2 = l2 / Dot1AD(vlan=self.vlans[0]) / Dot1Q(vlan=self.vlans[1])
        elif self.vlans:
            l2 = l2 / Dot1Q(vlan=self.vlans[0])
        ip = IPv6(src=src[0], dst=dst[0]) if self.v6 else IP(src=src[0], dst=dst[0])
        seg = TCP(sport=src[1], dport=dst[1], flags=flags, seq=seq, ack=ack_no if ack else 0, window=8192)
        packet: Packet = (self.ts, LINKTYPE_ETHERNET, bytes(l2 / ip / seg / data), "eth0")
        if keep:
            self.packets.append(packet)
        return packet

    def c(self, flags: str, data: bytes = b"", **kw: Any) -> Packet:
        return self.send(True, flags, data, **kw)

    def s(self, flags: str, data: bytes = b"", **kw: Any) -> Packet:
        return self.send(False, flags, data, **kw)

    def handshake(self) -> None:
        self.c("S")
        self.s("SA")
        self.c("A")


def udp(ts: float, src: tuple[str, int], dst: tuple[str, int], data: bytes) -> Packet:
    frame = Ether(src=MAC_C, dst=MAC_S) / IP(src=src[0], dst=dst[0]) / UDP(sport=src[1], dport=dst[1]) / data
    return (ts, LINKTYPE_ETHERNET, bytes(frame), "eth1")


def run(packets: list[Packet], dissectors: list[Dissector], flows: FlowSettings | None = None,
        finish: bool = True, **settings: Any) -> tuple[Sensor, list[Event]]:
    events: list[Event] = []
    sensor = Sensor(SensorSettings(sensor_id="test-sensor", flows=flows or FlowSettings(), **settings),
                    sink=events.append, dissectors=dissectors)
    sensor.run(packets)
    if finish:
        sensor.finish()
    return sensor, events


def of(events: list[Event], action: str) -> list[Event]:
    return [e for e in events if e.get("event.action") == action]


# -- the TCP conversation ----------------------------------------------------------------------------


def test_tcp_conversation_with_every_reassembly_case() -> None:
    rec = Recorder()
    conv = Conversation()
    conv.handshake()
    conv.c("PA", b"HELLO 1\n")  # 8 bytes at 0
    conv.s("PA", b"OK 1\n")
    # Out of order: the second segment arrives first.
    seg2 = conv.c("PA", b"line 2\n", keep=False)  # 7 bytes at 8
    conv.c("PA", b"line 3\n")  # at 15
    conv.packets.append(seg2)
    conv.c("PA", b"line 2\n", at=8)  # a retransmission: dropped
    conv.c("PA", b"e 3\nline 4\n", at=18)  # overlaps "line 3\n" by 4 bytes: trimmed
    conv.c("PA", b"lost 5\n", keep=False)  # never captured
    conv.c("PA", b"line 6\n")  # held behind the hole...
    conv.s("PA", b"OK 6\n")  # ... until the server acknowledges past it
    conv.c("FA")
    conv.s("FA")
    conv.c("A")  # the last ACK, after the close
    sensor, events = run(conv.packets, [line_dissector(rec)])

    assert rec.of("lines") == [
        ("feed", True, b"HELLO 1\n"),
        ("feed", False, b"OK 1\n"),
        ("feed", True, b"line 2\n"),
        ("feed", True, b"line 3\n"),
        ("feed", True, b"line 4\n"),
        ("gap", True, 7),
        ("feed", True, b"line 6\n"),
        ("feed", False, b"OK 6\n"),
        ("finish",),
    ]
    lines = [(e["network.direction"], e["test.line"]) for e in of(events, "line")]
    assert lines == [("to_server", "HELLO 1"), ("to_client", "OK 1"), ("to_server", "line 2"),
                     ("to_server", "line 3"), ("to_server", "line 4"), ("to_server", "line 6"),
                     ("to_client", "OK 6")]

    starts, ends = of(events, "connection-start"), of(events, "connection-end")
    assert len(starts) == 1 and len(ends) == 1
    end = ends[0]
    assert end["icsmon.flow.state"] == "closed" and end["event.reason"] == "closed"
    assert end["icsmon.flow.history"] == "ShDdFf"
    assert (end["source.ip"], end["source.port"], end["destination.ip"], end["destination.port"]) == (
        CLIENT, 40000, SERVER, LINE_PORT)
    # Payload bytes as seen on the wire, retransmission and overlap included (the lost segment not).
    client_bytes = 8 + 7 + 7 + 7 + 11 + 7
    assert (end["source.bytes"], end["destination.bytes"]) == (client_bytes, 5 + 5)
    assert end["network.bytes"] == client_bytes + 10
    # Client: SYN, ACK, 6 data segments, FIN (the final ACK comes after the report). Server:
    # SYN-ACK, 2 data segments, FIN.
    assert (end["source.packets"], end["destination.packets"], end["network.packets"]) == (9, 4, 13)
    assert end["icsmon.flow.missed_bytes"] == 7
    assert end["network.protocol"] == "lines"
    assert end["event.start"] == conv.packets[0][0]
    assert end["event.duration"] == round((conv.packets[-2][0] - conv.packets[0][0]) * 1e9)
    assert "icsmon.flow.midstream" not in end
    stats = sensor.stats_dict()
    assert stats["flows"]["created"] == 1 and stats["flows"]["ended"] == 1 and stats["flows"]["active"] == 0
    assert stats["protocols"]["lines"] == {"flows": 1, "events": 7, "violations": 0, "bugs": 0,
                                           "sessions": {"lines": 7, "gaps": 1}}
    assert stats["decode_errors"] == {}


def test_rst_closes_the_connection() -> None:
    rec = Recorder()
    conv = Conversation()
    conv.handshake()
    conv.c("PA", b"HELLO\npartial")
    conv.s("RA")
    conv.c("PA", b" more\n")  # after the reset: absorbed, not a new flow
    sensor, events = run(conv.packets, [line_dissector(rec)])
    (end,) = of(events, "connection-end")
    assert end["icsmon.flow.state"] == "reset"
    assert end["icsmon.flow.history"] == "ShDr"
    assert (end["source.packets"], end["destination.packets"]) == (3, 2)
    assert [e["test.line"] for e in of(events, "partial")] == ["partial"]
    assert rec.of("lines")[-1] == ("finish",)
    assert sensor.table.created == 1


def test_gap_inside_a_line_resynchronises_the_session() -> None:
    rec = Recorder()
    conv = Conversation()
    conv.handshake()
    conv.c("PA", b"HEAD")
    conv.c("PA", b"ER cut\nnext", keep=False)
    conv.c("PA", b" line\n")
    conv.s("A")  # acknowledges the lost bytes
    conv.c("FA")
    conv.s("FA")
    _, events = run(conv.packets, [line_dissector(rec)])
    assert rec.of("lines")[:4] == [("feed", True, b"HEAD"), ("gap", True, 11), ("feed", True, b" line\n"),
                                   ("finish",)]
    assert [e["test.line"] for e in of(events, "line")] == [" line"]
    assert of(events, "connection-end")[0]["icsmon.flow.missed_bytes"] == 11


def test_hole_left_at_close_becomes_a_gap_on_flush() -> None:
    rec = Recorder()
    conv = Conversation()
    conv.handshake()
    conv.c("PA", b"HELLO\n")
    conv.c("PA", b"lost\n", keep=False)
    conv.c("PA", b"late\n", ack=False)
    conv.c("FA", ack=False)
    conv.s("FA", ack=False)
    run(conv.packets, [line_dissector(rec)])
    assert rec.of("lines") == [("feed", True, b"HELLO\n"), ("gap", True, 5), ("feed", True, b"late\n"),
                               ("finish",)]


def test_retransmitted_syn_does_not_rewind_the_stream() -> None:
    rec = Recorder()
    conv = Conversation()
    conv.handshake()
    conv.c("PA", b"HELLO\n")
    conv.c("S")  # a stray retransmission of the SYN
    conv.c("PA", b"again\n")
    run(conv.packets, [line_dissector(rec)])
    assert [c for c in rec.of("lines") if c[0] == "feed"] == [("feed", True, b"HELLO\n"),
                                                           ("feed", True, b"again\n")]


# -- mid-stream pickup -------------------------------------------------------------------------------


def test_midstream_pickup_takes_the_client_from_the_dissector_port() -> None:
    rec = Recorder()
    conv = Conversation(client=(CLIENT, 2000))  # client port below the server port
    conv.syn = {True: True, False: True}
    conv.s("PA", b"OK 0\n")  # the server talks first in the capture
    conv.c("PA", b"HELLO 1\n")
    conv.s("PA", b"OK 1\n")
    _, events = run(conv.packets, [line_dissector(rec)])
    (start,) = of(events, "connection-start")
    assert start["icsmon.flow.midstream"] is True
    assert (start["source.ip"], start["source.port"], start["destination.port"]) == (CLIENT, 2000, LINE_PORT)
    assert rec.of("lines")[:3] == [("feed", False, b"OK 0\n"), ("feed", True, b"HELLO 1\n"),
                                   ("feed", False, b"OK 1\n")]
    (end,) = of(events, "connection-end")
    assert end["icsmon.flow.midstream"] is True and end["icsmon.flow.state"] == "end-of-capture"
    assert (end["source.bytes"], end["destination.bytes"]) == (8, 10)
    assert end["source.mac"] == MAC_C.upper().replace(":", "-")


def test_midstream_without_a_known_port_takes_the_higher_port_as_client() -> None:
    conv = Conversation(client=(CLIENT, 50000), server=(SERVER, 9999))
    conv.syn = {True: True, False: True}
    conv.s("PA", b"x")
    _, events = run(conv.packets, [])
    (start,) = of(events, "connection-start")
    assert (start["source.port"], start["destination.port"]) == (50000, 9999)


def test_syn_ack_first_makes_its_receiver_the_client() -> None:
    conv = Conversation(client=(CLIENT, 1024), server=(SERVER, 60000))
    conv.syn[True] = True
    conv.s("SA")
    conv.c("A")
    _, events = run(conv.packets, [])
    (start,) = of(events, "connection-start")
    assert (start["source.port"], start["destination.port"]) == (1024, 60000)
    assert "icsmon.flow.midstream" not in start


# -- UDP ---------------------------------------------------------------------------------------------


def test_udp_datagrams_are_delivered_as_messages() -> None:
    rec = Recorder()
    a, b = (CLIENT, 50001), (SERVER, LINE_PORT)
    packets = [udp(1.0, a, b, b"REQ 1\n"), udp(1.1, b, a, b"RSP 1\nRSP 2\n"), udp(1.2, a, b, b"REQ 2\n"),
               udp(1.3, a, b, b"")]
    sensor, events = run(packets, [line_dissector(rec)])
    assert rec.of("lines") == [("feed", True, b"REQ 1\n"), ("feed", False, b"RSP 1\nRSP 2\n"),
                               ("feed", True, b"REQ 2\n"), ("finish",)]
    assert [(e["network.direction"], e["test.line"]) for e in of(events, "line")] == [
        ("to_server", "REQ 1"), ("to_client", "RSP 1"), ("to_client", "RSP 2"), ("to_server", "REQ 2")]
    (end,) = of(events, "connection-end")
    assert end["network.transport"] == "udp"
    assert (end["source.packets"], end["destination.packets"], end["source.bytes"]) == (3, 1, 12)
    assert end["observer.ingress.interface.name"] == "eth1"
    assert "icsmon.flow.history" not in end


def test_icmp_payload_is_never_offered_to_udp_dissectors() -> None:
    """ICMP flows have no ports: a UDP dissector whose probe accepts anything must not claim them."""
    rec = Recorder()
    frames = [(1.0 + i, LINKTYPE_ETHERNET, bytes(Ether(**L2) / IP(src=CLIENT, dst=SERVER) / ICMP(type=8)
                                                 / b"ABCDEFGH\n"), "eth0") for i in range(3)]
    _, events = run(frames, [line_dissector(rec, udp_ports=(LINE_PORT,), accept_anything=True)])
    assert rec.calls == []
    assert of(events, "line") == []
    (end,) = of(events, "connection-end")
    assert end["network.transport"] == "icmp" and end["source.packets"] == 3
    assert end["source.bytes"] == 3 * (8 + 9)  # ICMP header and data still count


# -- protocol detection -------------------------------------------------------------------------------


def test_detection_by_port_comes_before_content() -> None:
    rec = Recorder()
    generic = line_dissector(rec, name="generic", tcp_ports=(1111,), udp_ports=())
    specific = line_dissector(rec, name="specific", tcp_ports=(LINE_PORT,), udp_ports=())
    conv = Conversation()
    conv.handshake()
    conv.c("PA", b"HELLO\n")
    sensor, events = run(conv.packets, [generic, specific])
    assert rec.of("specific")[0] == ("feed", True, b"HELLO\n") and rec.of("generic") == []
    assert of(events, "line")[0]["network.protocol"] == "specific"
    assert of(events, "line")[0]["event.dataset"] == "icsmon.specific"
    assert sensor.stats_dict()["protocols"]["specific"]["flows"] == 1


def test_port_probe_claims_junk_on_the_protocol_port_but_not_elsewhere() -> None:
    """On its own port a dissector takes framing it would not trust on another port (fuzzing a PLC)."""
    rec = Recorder()
    strict = line_dissector(rec, name="strict", tcp_ports=(LINE_PORT,), udp_ports=(), prefix=b"GOOD")
    loose = Dissector(name="strict", description="", tcp_ports=strict.tcp_ports, udp_ports=frozenset(),
                      probe=strict.probe, new_session=strict.new_session, port_probe=lambda p, _: p[:1].isalpha())
    for port, claimed in ((LINE_PORT, True), (20001, False)):
        conv = Conversation(server=(SERVER, port))
        conv.handshake()
        conv.c("PA", b"JUNK\n")
        _, events = run(conv.packets, [loose])
        assert bool(of(events, "line")) is claimed, port


def test_detection_by_content_on_a_non_standard_port() -> None:
    rec = Recorder()
    binary = line_dissector(rec, name="binary", tcp_ports=(LINE_PORT,), udp_ports=(), prefix=b"\x00")
    text = line_dissector(rec, name="text", tcp_ports=(1111,), udp_ports=(), prefix=b"TXT")
    conv = Conversation(server=(SERVER, 20001))
    conv.handshake()
    conv.c("PA", b"TXT hello\n")
    conv.s("PA", b"TXT world\n")
    sensor, events = run(conv.packets, [binary, text])
    assert [e["test.line"] for e in of(events, "line")] == ["TXT hello", "TXT world"]
    assert of(events, "connection-end")[0]["network.protocol"] == "text"
    assert rec.of("binary") == []


def test_probing_gives_up_after_max_probe_bytes() -> None:
    rec = Recorder()
    picky = line_dissector(rec, prefix=b"MAGIC")
    conv = Conversation(server=(SERVER, 20001))
    conv.handshake()
    for _ in range(3):
        conv.c("PA", b"x" * 40)
    conv.c("PA", b"MAGIC but too late\n")
    sensor, events = run(conv.packets, [picky], max_probe_bytes=100)
    assert rec.calls == [] and of(events, "line") == []
    assert "network.protocol" not in of(events, "connection-end")[0]


def test_flows_only_when_dissection_is_off() -> None:
    rec = Recorder()
    conv = Conversation()
    conv.handshake()
    conv.c("PA", b"HELLO\n")
    _, events = run(conv.packets, [line_dissector(rec)], dissect=False)
    assert rec.calls == [] and len(events) == 2


def test_protocol_violation_makes_a_decode_error_and_disables_the_dissector_on_that_flow() -> None:
    rec = Recorder()
    bad = Conversation()
    bad.handshake()
    bad.c("PA", b"HELLO\nBAD\nafter\n")
    bad.c("PA", b"more\n")
    good = Conversation(client=(CLIENT, 40001), ts=bad.ts + 1)
    good.handshake()
    good.c("PA", b"fine\n")
    sensor, events = run(bad.packets + good.packets, [line_dissector(rec)])
    (error,) = of(events, "decode-error")
    assert error["event.dataset"] == "icsmon.decode_error"
    assert error["event.reason"] == "bad-line" and error["icsmon.error.offset"] == 6
    assert error["icsmon.error.layer"] == "lines" and error["source.port"] == 40000
    assert list(error["event.type"]) == ["protocol", "error"]
    lines = [(e["source.port"], e["test.line"]) for e in of(events, "line")]
    assert lines == [(40001, "fine")]  # "HELLO" died with the violating segment; nothing after it
    assert rec.sessions == 2
    stats = sensor.stats_dict()
    assert stats["protocols"]["lines"]["violations"] == 1
    assert stats["decode_errors"] == {"lines:bad-line": 1}
    assert stats["events_by_dataset"]["icsmon.decode_error"] == 1
    assert [e.get("network.protocol") for e in of(events, "connection-end")] == [None, "lines"]


@pytest.mark.parametrize("trigger", ["feed", "gap", "finish", "probe"])
def test_a_dissector_bug_is_contained_and_counted(trigger: str) -> None:
    rec = Recorder()
    conv = Conversation()
    conv.handshake()
    if trigger == "feed":
        conv.c("PA", b"BUG\n")
    elif trigger == "probe":
        conv.c("PA", b"PROBEBUG\n")
    elif trigger == "gap":
        conv.c("PA", b"GAPBUG")
        conv.c("PA", b"lost", keep=False)
        conv.c("PA", b"x\n")
        conv.s("A")
    else:
        conv.c("PA", b"FINBUG")
    other = Conversation(client=(CLIENT, 40002), ts=conv.ts + 1)
    other.handshake()
    other.c("PA", b"still works\n")
    sensor, events = run(conv.packets + other.packets, [line_dissector(rec)])
    assert [e["test.line"] for e in of(events, "line")][-1] == "still works"
    stats = sensor.stats_dict()
    if trigger == "probe":  # a failing probe only means "not this protocol"
        assert stats["protocols"]["lines"]["bugs"] == 0 and of(events, "decode-error") == []
        return
    (error,) = of(events, "decode-error")
    name = {"feed": "ZeroDivisionError", "gap": "KeyError", "finish": "RuntimeError"}[trigger]
    assert error["event.reason"] == f"dissector-bug:lines:{name}"
    assert stats["protocols"]["lines"]["bugs"] == 1
    assert stats["decode_errors"] == {f"dissector-bug:lines:{name}": 1}
    assert len(of(events, "connection-end")) == 2


# -- event fields --------------------------------------------------------------------------------------


def test_vlan_ids_and_community_id_on_events() -> None:
    conv = Conversation(vlans=(100, 200))
    conv.handshake()
    conv.c("PA", b"HELLO\n")
    _, events = run(conv.packets, [line_dissector(Recorder())])
    for event in events:
        assert event["network.vlan.id"] == "100" and event["network.inner.vlan.id"] == "200"
        assert event["network.community_id"].startswith("1:")
        assert event["observer.id"] == "test-sensor"
    assert len({e["network.community_id"] for e in events}) == 1


def test_ipv6_flow_fields() -> None:
    conv = Conversation(client=("2001:db8::1", 40000), server=("2001:db8::2", LINE_PORT), v6=True)
    conv.handshake()
    conv.c("PA", b"HELLO\n")
    _, events = run(conv.packets, [line_dissector(Recorder())])
    (end,) = of(events, "connection-end")
    assert end["source.ip"] == "2001:db8::1" and end["network.type"] == "ipv6"
    assert of(events, "line")[0]["test.line"] == "HELLO"


def test_events_have_increasing_sequence_numbers() -> None:
    conv = Conversation()
    conv.handshake()
    conv.c("PA", b"a\nb\n")
    _, events = run(conv.packets, [line_dissector(Recorder())])
    assert [e["event.sequence"] for e in events] == list(range(1, len(events) + 1))


def test_json_lines_carry_exact_microsecond_timestamps() -> None:
    ts = 1_700_000_000.123457
    conv = Conversation(ts=ts - 0.01)
    conv.c("S")
    _, events = run(conv.packets, [])
    start = json.loads(to_json(of(events, "connection-start")[0]))
    assert start["@timestamp"] == "2023-11-14T22:13:20.123457Z"
    assert start["event.start"] == "2023-11-14T22:13:20.123457Z"
    for micro in range(0, 1_000_000, 9973):
        event = {"@timestamp": 1_700_000_000 + micro / 1e6}
        assert json.loads(to_json(event))["@timestamp"].endswith(f".{micro:06d}Z"), micro


def test_protocol_event_times_are_floats_in_memory_and_iso_text_in_json() -> None:
    conv = Conversation(ts=1_700_000_000.5)
    conv.handshake()
    conv.c("PA", b"HELLO\n")
    _, events = run(conv.packets, [line_dissector(Recorder())])
    line = of(events, "line")[0]
    stamp = line["@timestamp"]
    assert isinstance(stamp, float) and stamp - 1_700_000_000.5 < 1
    assert json.loads(to_json(line))["@timestamp"] == iso_time(stamp)
    assert with_iso_times(line)["@timestamp"] == iso_time(stamp)
    # A time field that is not the pipeline's own still becomes text.
    assert json.loads(to_json({**line, "event.start": float(stamp)}))["event.start"] == iso_time(stamp)


def test_json_lines_are_flat_and_complete() -> None:
    conv = Conversation()
    conv.handshake()
    conv.c("PA", b"HELLO\n")
    _, events = run(conv.packets, [line_dissector(Recorder())])
    for event in events:
        line = to_json(event)
        assert line.endswith(b"\n") and line.count(b"\n") == 1
        doc = json.loads(line)
        assert all(not isinstance(v, dict) for v in doc.values())
        for name in ("@timestamp", "event.dataset", "source.ip", "destination.ip", "network.transport",
                     "network.community_id", "observer.id", "observer.ingress.interface.name"):
            assert name in doc, name


# -- statistics ----------------------------------------------------------------------------------------


def test_stats_dict_fields() -> None:
    rec = Recorder()
    conv = Conversation()
    conv.handshake()
    conv.c("PA", b"HELLO\n")
    conv.c("FA")
    conv.s("FA")
    garbage = (conv.ts + 1, LINKTYPE_ETHERNET, b"\x00" * 10, "eth0")
    arp = (conv.ts + 2, LINKTYPE_ETHERNET, bytes(Ether(**L2, type=0x0806) / (b"\0" * 28)), "eth0")
    sensor, events = run([*conv.packets, garbage, arp], [line_dissector(rec)])
    stats = sensor.stats_dict()
    assert stats["packets"] == len(conv.packets) + 2
    assert stats["bytes"] == sum(len(p[2]) for p in conv.packets) + 10 + len(arp[2])
    assert stats["elapsed_seconds"] > 0 and stats["packets_per_second"] > 0
    assert stats["events"] == len(events)
    assert stats["events_by_dataset"] == {"icsmon.conn": 2, "icsmon.lines": 1}
    assert stats["flows"]["created"] == 1 and stats["flows"]["active"] == 0
    assert stats["flows"]["ended"] == 1
    assert stats["flows"]["timed_out"] == 0 and stats["flows"]["evicted"] == 0
    assert stats["decode_errors"] == {"ethernet-truncated": 1}
    assert stats["protocols"] == {"lines": {"flows": 1, "events": 1, "violations": 0, "bugs": 0,
                                            "sessions": {"lines": 1, "gaps": 0}}}
    assert stats["capture_errors"] == []
    json.dumps(stats)
    # Every key the command line documents (notes/cli.md).
    assert set(stats) >= {"packets", "bytes", "elapsed_seconds", "packets_per_second", "events",
                          "events_by_dataset", "flows", "decode_errors", "drops", "protocols",
                          "capture", "capture_errors"}
    assert set(stats["flows"]) >= {"created", "active", "ended", "timed_out", "evicted"}
    assert set(stats["drops"]) == {"kernel", "interface", "buffer"}


def test_session_counters_of_live_and_ended_flows_add_up_in_the_stats() -> None:
    rec = Recorder()
    ended, live = Conversation(), Conversation(client=(CLIENT, 40001), ts=1_700_000_001.0)
    ended.handshake()
    ended.c("PA", b"ONE\nTWO\n")
    ended.c("FA")
    ended.s("FA")
    live.handshake()
    live.c("PA", b"THREE\n")
    sensor, _ = run([*ended.packets, *live.packets], [line_dissector(rec)], finish=False)
    flows = sensor.stats_dict()["flows"]
    assert (flows["ended"], flows["active"]) == (1, 1)
    assert sensor.stats_dict()["protocols"]["lines"]["sessions"] == {"lines": 3, "gaps": 0}


def test_capture_error_leaves_run_after_every_packet_was_processed() -> None:
    conv = Conversation()
    conv.handshake()
    conv.c("PA", b"HELLO\n")

    def broken() -> Any:
        yield from conv.packets
        raise CaptureError("capture.pcap: record at byte 4242 is truncated")

    events: list[Event] = []
    sensor = Sensor(SensorSettings(sensor_id="t"), sink=events.append, dissectors=[line_dissector(Recorder())])
    with pytest.raises(CaptureError, match="byte 4242"):
        sensor.run(broken())
    assert sensor.stats_dict()["packets"] == len(conv.packets)
    assert [e["test.line"] for e in of(events, "line")] == ["HELLO"]
    sensor.finish()
    assert len(of(events, "connection-end")) == 1


def test_stats_count_fragment_problems_as_decode_errors() -> None:
    frag = IP(src=CLIENT, dst=SERVER, id=1, flags="MF", proto=17) / (b"x" * 16)
    packets = [(1.0, LINKTYPE_ETHERNET, bytes(Ether(**L2) / frag), "eth0"),
               (1.0, LINKTYPE_ETHERNET, bytes(Ether(**L2) / frag), "eth0")]
    sensor, _ = run(packets, [])
    stats = sensor.stats_dict()
    assert stats["decode_errors"] == {"ip-fragments:overlapping-fragments": 1}
    assert stats["ip_fragments"]["fragments"] == 2
