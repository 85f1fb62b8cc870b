"""The DNP3 dissector, driven directly through its Session with bytes.

Frames are built here with an independent bit-by-bit CRC-16/DNP (checked against the catalogued
check value), so the module's table-driven CRC is tested, not reused. Exact expected events for
polling, select before operate, analog outputs, unsolicited reports and multi-fragment responses;
every function code; every object layout with an independent table of formats; every qualifier;
pairing (sequence numbers, continuation fragments, authentication challenges, bounds, flood);
link-layer frames and CRC errors; transport reassembly and its errors; several frames per segment
and a frame split at every byte; junk, gaps and resynchronisation; hypothesis fuzzing; UDP through
the pipeline with scapy; detection and registration. The comparisons with Wireshark, Zeek and
Suricata on the shared captures are in test_dnp3_reference.py.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sensor.dissect import OPERATIONS, ProtocolViolation
from sensor.protocols import registry
from sensor.protocols.dnp3 import (
    DISSECTOR,
    FUNCTION_NAMES,
    MAX_BAD_FRAMES,
    MAX_FRAGMENT,
    MAX_JUNK,
    MAX_UNANSWERED,
    Dnp3Session,
    crc16,
    port_probe,
    probe,
)
from sensor.schema import COMMON_FIELDS
from sensor.volume import is_routine
from tests.sensor.protocols import crafting

REPO = Path(__file__).resolve().parents[3]
DECLARED = {f.name for f in DISSECTOR.fields} | {f.name for f in COMMON_FIELDS}
MASTER, OUTSTATION = 1, 10

# -- building frames --------------------------------------------------------------------------------


def crc(data: bytes) -> int:
    """CRC-16/DNP bit by bit: polynomial 0x3D65 reflected (0xA6BC), initial 0, complemented."""
    value = 0
    for byte in data:
        value ^= byte
        for _ in range(8):
            value = (value >> 1) ^ 0xA6BC if value & 1 else value >> 1
    return value ^ 0xFFFF


def frame(user: bytes, ctl: int = 0xC4, dst: int = OUTSTATION, src: int = MASTER, length: int | None = None,
          bad_header: bool = False, bad_blocks: tuple[int, ...] = ()) -> bytes:
    """One link frame: header and its CRC, user data in 16-octet blocks each with its CRC."""
    header = struct.pack("<2sBBHH", b"\x05\x64", 5 + len(user) if length is None else length, ctl, dst, src)
    out = [header, struct.pack("<H", crc(header) ^ (0x5555 if bad_header else 0))]
    for k, i in enumerate(range(0, len(user), 16)):
        block = user[i:i + 16]
        out += [block, struct.pack("<H", crc(block) ^ (0x1111 if k in bad_blocks else 0))]
    return b"".join(out)


def frames(fragment: bytes, tseq: int = 0, master: bool = True, size: int = 249, **kw: Any) -> list[bytes]:
    """An application fragment as transport segments, one link frame each."""
    parts = [fragment[i:i + size] for i in range(0, len(fragment), size)] or [b""]
    ctl, dst, src = (0xC4, OUTSTATION, MASTER) if master else (0x44, MASTER, OUTSTATION)
    kw.setdefault("ctl", ctl)
    kw.setdefault("dst", dst)
    kw.setdefault("src", src)
    out = []
    for k, part in enumerate(parts):
        th = (0x40 if k == 0 else 0) | (0x80 if k == len(parts) - 1 else 0) | (tseq + k) & 0x3F
        out.append(frame(bytes([th]) + part, **kw))
    return out


def req(fc: int, objects: bytes = b"", seq: int = 0, tseq: int = 0, **kw: Any) -> bytes:
    return b"".join(frames(bytes([0xC0 | seq, fc]) + objects, tseq, True, **kw))


def resp(objects: bytes = b"", seq: int = 0, tseq: int = 0, iin: int = 0, fc: int = 0x81, ac: int | None = None,
         **kw: Any) -> bytes:
    control = (0xC0 | seq) if ac is None else ac
    return b"".join(frames(bytes([control, fc, iin >> 8, iin & 0xFF]) + objects, tseq, False, **kw))


def hdr(group: int, variation: int, qualifier: int, *fields: int, widths: str = "") -> bytes:
    """An object header; range fields packed by ``widths`` (B, H, I per field)."""
    return bytes([group, variation, qualifier]) + (struct.pack("<" + widths, *fields) if widths else b"")


CLASS_0123 = hdr(60, 2, 6) + hdr(60, 3, 6) + hdr(60, 4, 6) + hdr(60, 1, 6)
T48 = 1_427_313_462_687  # 2015-03-25T19:57:42.687Z in DNP3 milliseconds


def t48(ms: int) -> bytes:
    return ms.to_bytes(6, "little")


def run(session: Dnp3Session, chunks: list[tuple[bool, bytes]], ts: float = 100.0) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for to_server, chunk in chunks:
        events += session.feed(chunk, to_server, ts)
    return events


def one(raw: bytes, to_server: bool = True, session: Dnp3Session | None = None, ts: float = 100.0) -> dict[str, Any]:
    events = (session or Dnp3Session()).feed(raw, to_server, ts)
    assert len(events) == 1, events
    assert set(events[0]) <= DECLARED, set(events[0]) - DECLARED
    return events[0]


def link(length: int, master: bool = True, tseq: int = 0, segments: int = 1) -> dict[str, Any]:
    ctl, dst, src = (0xC4, OUTSTATION, MASTER) if master else (0x44, MASTER, OUTSTATION)
    return {"dnp3.link.length": length, "dnp3.link.control": ctl, "dnp3.link.function": "unconfirmed_user_data",
            "dnp3.link.dir": master, "dnp3.link.destination": dst, "dnp3.link.source": src,
            "dnp3.transport.sequence": tseq, "dnp3.transport.segments": segments}


def app(ac: int, fc: int, name: str, operation: str, role: str) -> dict[str, Any]:
    return {"dnp3.app.control": ac, "dnp3.app.fir": ac >= 0x80, "dnp3.app.fin": ac & 0x40 != 0,
            "dnp3.app.con": ac & 0x20 != 0, "dnp3.app.uns": ac & 0x10 != 0, "dnp3.app.sequence": ac & 0x0F,
            "dnp3.function_code": fc, "dnp3.function": name, "event.action": name, "ics.function": name,
            "ics.operation": operation, "ics.role": role, "ics.unit": str(OUTSTATION)}


def headers(*entries: tuple[str, int, int, str, int, int, int]) -> dict[str, Any]:
    """Flat header fields for (type, group, variation, name, qualifier, count, points)."""
    return {"dnp3.object_count": len(entries), "dnp3.object_type": [e[0] for e in entries],
            "dnp3.group": [e[1] for e in entries], "dnp3.object_code": [e[1] << 8 | e[2] for e in entries],
            "dnp3.qualifier": [e[4] for e in entries], "dnp3.prefix_code": [e[4] >> 4 for e in entries],
            "dnp3.range_code": [e[4] & 15 for e in entries], "dnp3.points": sum(e[5] for e in entries)}


OK = {"ics.status": "ok", "event.outcome": "success"}


def paired(function: str, ms: float, sent: int = 100000) -> dict[str, Any]:
    return {"dnp3.request_function": function, "dnp3.request_time_ms": sent, "dnp3.response_time_ms": ms}


def test_crc_is_crc16_dnp() -> None:
    assert crc(b"123456789") == 0xEA82 == crc16(b"123456789")  # the catalogued check value
    for n in range(0, 40):
        data = bytes((k * 37 + n) & 0xFF for k in range(n))
        assert crc16(data) == crc(data)


# -- exact events for whole exchanges ---------------------------------------------------------------


CLASS_HEADERS = [{"type": f"g60v{v}", "group": 60, "variation": v, "name": f"class {v - 1} data", "qualifier": 6,
                  "prefix_code": 0, "range_code": 6, "count": 0} for v in (2, 3, 4, 1)]


def test_integrity_poll_and_null_response() -> None:
    session = Dnp3Session()
    request = one(req(1, CLASS_0123, seq=5, tseq=3), True, session, 100.0)
    response = one(resp(seq=5, tseq=9, iin=0x8001), False, session, 100.025)
    assert request == {**link(20, tseq=3), **app(0xC5, 1, "read", "read", "request"), "dnp3.objects": CLASS_HEADERS,
                       **headers(*[(f"g60v{v}", 60, v, "", 6, 0, 0) for v in (2, 3, 4, 1)])}
    assert response == {**link(10, master=False, tseq=9), **app(0xC5, 0x81, "response", "read", "response"),
                        "dnp3.iin": 0x8001, "dnp3.iin_flags": ["device_restart", "no_func_code_support"],
                        **paired("read", 25.0), "ics.status": "no_func_code_support", "event.outcome": "failure"}
    assert session.stats["paired"] == 1 and session.stats["fragments"] == 2 and session.stats["frames"] == 2


CROB = struct.pack("<BBIIB", 0x41, 1, 500, 0, 0)  # close, pulse on, once, 500 ms


def crob_fields(status: int = 0, index: int = 3) -> dict[str, Any]:
    control = {"code": 0x41, "op_type": 1, "operation": "pulse_on", "trip_close": 1, "trip_close_name": "close",
               "queue": False, "clear": False, "count": 1, "on_time": 500, "off_time": 0, "status": status,
               "status_name": ("success", "timeout", "no_select")[status], "index": index}
    return {"dnp3.objects": [{"type": "g12v1", "group": 12, "variation": 1, "name": "control relay output block",
                              "qualifier": 0x28, "prefix_code": 2, "range_code": 8, "quantity": 1, "count": 1,
                              "controls": [control], "indexes": [index]}],
            **headers(("g12v1", 12, 1, "", 0x28, 1, 1)), "dnp3.crob.control_code": [0x41],
            "dnp3.crob.op_type": [1], "dnp3.crob.operation": ["pulse_on"], "dnp3.crob.trip_close": [1],
            "dnp3.crob.trip_close_name": ["close"], "dnp3.crob.clear": [False], "dnp3.crob.count": [1],
            "dnp3.crob.on_time": [500], "dnp3.crob.off_time": [0], "dnp3.control_status": [status],
            "dnp3.control_status_name": [control["status_name"]], "dnp3.index": [index],
            "ics.tag": [f"g12v1:{index}"], "ics.address_start": index, "ics.address_count": 1}


def test_select_before_operate_a_crob() -> None:
    session = Dnp3Session()
    objects = hdr(12, 1, 0x28, 1, 3, widths="HH") + CROB
    select = one(req(3, objects, seq=7), True, session, 100.0)
    echo = one(resp(objects, seq=7), False, session, 100.01)
    operate = one(req(4, objects, seq=8), True, session, 100.02)
    done = one(resp(objects, seq=8), False, session, 100.05)
    assert select == {**link(26), **app(0xC7, 3, "select", "write", "request"), **crob_fields()}
    assert echo == {**link(28, master=False), **app(0xC7, 0x81, "response", "write", "response"), "dnp3.iin": 0,
                    **crob_fields(), **paired("select", 10.0), **OK}
    assert operate == {**link(26), **app(0xC8, 4, "operate", "write", "request"), **crob_fields()}
    assert done == {**link(28, master=False), **app(0xC8, 0x81, "response", "write", "response"), "dnp3.iin": 0,
                    **crob_fields(), **paired("operate", 30.0, 100020), **OK}
    assert all("dnp3.anomaly" not in e for e in (select, echo, operate, done))


def test_operate_without_a_matching_select() -> None:
    objects = hdr(12, 1, 0x28, 1, 3, widths="HH") + CROB
    other = hdr(12, 1, 0x28, 1, 4, widths="HH") + CROB
    session = Dnp3Session()
    assert one(req(4, objects, seq=2), True, session)["dnp3.anomaly"] == ["operate-without-select"]
    one(req(3, objects, seq=2), True, session)
    assert one(req(4, objects, seq=4), True, session)["dnp3.anomaly"] == ["operate-without-select"]  # not seq + 1
    one(req(3, objects, seq=5), True, session)
    assert one(req(4, other, seq=6), True, session)["dnp3.anomaly"] == ["operate-without-select"]  # other point
    one(req(3, objects, seq=7), True, session, ts=100.0)
    assert one(req(4, objects, seq=8), True, session, ts=200.0)["dnp3.anomaly"] == ["operate-without-select"]
    one(req(3, objects, seq=15), True, session)
    assert "dnp3.anomaly" not in one(req(4, objects, seq=0), True, session)  # the sequence wraps
    assert "dnp3.anomaly" not in one(req(5, objects, seq=1), True, session)  # direct operate needs no select


def test_direct_operate_analog_output_refused() -> None:
    session = Dnp3Session()
    objects = hdr(41, 3, 0x17, 1, widths="B") + bytes([9]) + struct.pack("<fB", 12.5, 0)
    request = one(req(5, objects, seq=1), True, session)
    answer = one(resp(hdr(41, 3, 0x17, 1, widths="B") + bytes([9]) + struct.pack("<fB", 12.5, 4), seq=1), False,
                 session)
    header = {"type": "g41v3", "group": 41, "variation": 3, "name": "analog output block, single-precision float",
              "qualifier": 0x17, "prefix_code": 1, "range_code": 7, "quantity": 1, "count": 1, "indexes": [9],
              "values": [12.5]}
    common = {**headers(("g41v3", 41, 3, "", 0x17, 1, 1)), "dnp3.index": [9], "ics.values": [12.5],
              "ics.tag": ["g41v3:9"], "ics.address_start": 9, "ics.address_count": 1}
    assert request == {**link(18), **app(0xC1, 5, "direct_operate", "write", "request"), **common,
                       "dnp3.objects": [{**header, "status": [0]}], "dnp3.control_status": [0],
                       "dnp3.control_status_name": ["success"]}
    assert answer == {**link(20, master=False), **app(0xC1, 0x81, "response", "write", "response"), "dnp3.iin": 0,
                      **common, "dnp3.objects": [{**header, "status": [4]}], "dnp3.control_status": [4],
                      "dnp3.control_status_name": ["not_supported"], **paired("direct_operate", 0.0),
                      "ics.status": "not_supported", "event.outcome": "failure"}


def test_unsolicited_events_and_their_confirm() -> None:
    session = Dnp3Session()
    events = hdr(2, 2, 0x28, 2, widths="H") + struct.pack("<HB", 0, 0x81) + t48(T48) + struct.pack("<HB", 5, 0x03) \
        + t48(T48 + 1013) + hdr(32, 3, 0x28, 1, widths="H") + struct.pack("<HBi", 7, 0x21, -40) + t48(T48 + 2000)
    report = one(resp(events, ac=0xF3, fc=0x82, iin=0x0200), False, session)
    confirm = one(b"".join(frames(bytes([0xD3, 0]), 1)), True, session)  # FIR FIN UNS, sequence 3
    assert report == {
        **link(51, master=False), **app(0xF3, 0x82, "unsolicited_response", "report", "unsolicited"),
        "dnp3.iin": 0x0200, "dnp3.iin_flags": ["class_1_events"],
        "dnp3.objects": [
            {"type": "g2v2", "group": 2, "variation": 2, "name": "binary input event with absolute time",
             "qualifier": 0x28, "prefix_code": 2, "range_code": 8, "quantity": 2, "count": 2, "indexes": [0, 5],
             "flags": [0x81, 0x03], "values": [1, 0],
             "times": ["2015-03-25T19:57:42.687Z", "2015-03-25T19:57:43.700Z"]},
            {"type": "g32v3", "group": 32, "variation": 3, "name": "analog input event, 32-bit with time",
             "qualifier": 0x28, "prefix_code": 2, "range_code": 8, "quantity": 1, "count": 1, "indexes": [7],
             "flags": [0x21], "values": [-40], "times": ["2015-03-25T19:57:44.687Z"]}],
        **headers(("g2v2", 2, 2, "", 0x28, 2, 2), ("g32v3", 32, 3, "", 0x28, 1, 1)),
        "dnp3.index": [0, 5, 7], "ics.values": [1, 0, -40], "ics.tag": ["g2v2:0", "g2v2:5", "g32v3:7"],
        "dnp3.quality": ["over_range", "restart"], "dnp3.time": "2015-03-25T19:57:42.687Z",
        "ics.address_start": 0, "ics.address_count": 2, **OK}
    assert confirm == {**link(8, tseq=1), **app(0xD3, 0, "confirm", "session", "response")}
    assert session.stats["unpaired_responses"] == 0 and session.stats["anomalies"] == 0


def test_multi_fragment_response_over_many_segments() -> None:
    """Two application fragments of one response, each over several transport segments."""
    session = Dnp3Session()
    points = [(k * 3) & 0xFF for k in range(400)]  # g30v2: flags + 16-bit value, 3 octets each
    first = bytes([0xA4, 0x81, 0, 0]) + hdr(30, 2, 0x01, 0, 199, widths="HH") + b"".join(
        struct.pack("<Bh", 1, v) for v in points[:200])
    last = bytes([0x45, 0x81, 0, 0]) + hdr(30, 2, 0x01, 200, 399, widths="HH") + b"".join(
        struct.pack("<Bh", 1, v) for v in points[200:])
    one(req(1, hdr(30, 0, 6), seq=4), True, session, 100.0)
    out = run(session, [(False, raw) for raw in frames(first, 60, False) + frames(last, 63, False)], 100.5)
    assert [e["dnp3.transport.segments"] for e in out] == [3, 3]
    assert [e["dnp3.transport.sequence"] for e in out] == [62, 1]  # 63 -> 0 -> 1: the sequence wraps
    assert [(e["dnp3.app.fir"], e["dnp3.app.fin"], e["dnp3.app.sequence"]) for e in out] == [(True, False, 4),
                                                                                           (False, True, 5)]
    assert all(e["dnp3.request_function"] == "read" and e["dnp3.response_time_ms"] == 500.0 for e in out)
    assert out[0]["dnp3.index"] == list(range(200)) and out[1]["ics.values"] == points[200:]
    assert out[1]["ics.tag"][0] == "g30v2:200" and out[1]["ics.address_start"] == 200
    assert session.stats["paired"] == 1 and session.stats["unpaired_responses"] == 0
    assert all("dnp3.anomaly" not in e for e in out)


# -- every function code ------------------------------------------------------------------------------

FUNCTIONS = {
    0: ("confirm", "session", "response"), 1: ("read", "read", "request"), 2: ("write", "write", "request"),
    3: ("select", "write", "request"), 4: ("operate", "write", "request"),
    5: ("direct_operate", "write", "request"), 6: ("direct_operate_nr", "write", "request"),
    7: ("immediate_freeze", "read", "request"), 8: ("immediate_freeze_nr", "read", "request"),
    9: ("freeze_clear", "write", "request"), 10: ("freeze_clear_nr", "write", "request"),
    11: ("freeze_at_time", "read", "request"), 12: ("freeze_at_time_nr", "read", "request"),
    13: ("cold_restart", "restart", "request"), 14: ("warm_restart", "restart", "request"),
    15: ("initialize_data", "write", "request"), 16: ("initialize_application", "restart", "request"),
    17: ("start_application", "control_run", "request"), 18: ("stop_application", "control_stop", "request"),
    19: ("save_configuration", "config_change", "request"), 20: ("enable_unsolicited", "config_change", "request"),
    21: ("disable_unsolicited", "config_change", "request"), 22: ("assign_class", "config_change", "request"),
    23: ("delay_measure", "time_sync", "request"), 24: ("record_current_time", "time_sync", "request"),
    25: ("open_file", "file_read", "request"), 26: ("close_file", "file_read", "request"),
    27: ("delete_file", "file_delete", "request"), 28: ("get_file_info", "file_read", "request"),
    29: ("authenticate_file", "auth", "request"), 30: ("abort_file", "file_read", "request"),
    31: ("activate_config", "config_change", "request"), 32: ("authenticate_request", "auth", "request"),
    33: ("authenticate_error", "auth", "request"), 129: ("response", "report", "response"),
    130: ("unsolicited_response", "report", "unsolicited"), 131: ("authenticate_response", "auth", "response"),
}

# A typical body per function: its objects (requests) or objects after IIN (responses).
APP_NAME = struct.pack("<H", 5) + b"myapp"
FILE_COMMAND = struct.pack("<HHIHHIIHHH", 26, 8, 0, 0, 0x1ED, 0, 0, 1, 1024, 7) + b"/tmp/cfg"
BODIES: dict[int, bytes] = {
    1: hdr(30, 1, 0x00, 0, 3, widths="BB"), 2: hdr(50, 1, 0x07, 1, widths="B") + t48(T48),
    3: hdr(12, 1, 0x28, 1, 2, widths="HH") + CROB, 4: hdr(12, 1, 0x28, 1, 2, widths="HH") + CROB,
    5: hdr(12, 1, 0x28, 1, 2, widths="HH") + CROB, 6: hdr(12, 1, 0x28, 1, 2, widths="HH") + CROB,
    7: hdr(20, 0, 6), 8: hdr(20, 0, 6), 9: hdr(20, 0, 6), 10: hdr(20, 0, 6),
    11: hdr(50, 2, 0x07, 1, widths="B") + t48(T48) + struct.pack("<I", 60000) + hdr(20, 0, 6),
    12: hdr(50, 2, 0x07, 1, widths="B") + t48(T48) + struct.pack("<I", 60000) + hdr(20, 0, 6),
    16: hdr(90, 1, 0x5B, 1, widths="B") + APP_NAME, 17: hdr(90, 1, 0x5B, 1, widths="B") + APP_NAME,
    18: hdr(90, 1, 0x5B, 1, widths="B") + APP_NAME, 20: hdr(60, 2, 6) + hdr(60, 3, 6),
    21: hdr(60, 2, 6) + hdr(60, 3, 6), 22: hdr(60, 3, 6) + hdr(1, 0, 0x00, 0, 7, widths="BB"),
    25: hdr(70, 3, 0x5B, 1, widths="B") + struct.pack("<H", len(FILE_COMMAND)) + FILE_COMMAND,
    26: hdr(70, 4, 0x5B, 1, widths="B") + struct.pack("<H", 13) + struct.pack("<IIHHB", 0x1234, 0, 1024, 7, 0),
    27: hdr(70, 3, 0x5B, 1, widths="B") + struct.pack("<H", len(FILE_COMMAND)) + FILE_COMMAND,
    28: hdr(70, 7, 0x5B, 1, widths="B") + struct.pack("<H", 28) + struct.pack("<HHHIIHHH", 20, 8, 1, 99, 0, 0, 0, 7)
    + b"/tmp/cfg",
    29: hdr(70, 2, 0x5B, 1, widths="B") + struct.pack("<H", 19) + struct.pack("<HHHHI", 12, 4, 16, 3, 0) + b"userpwd",
    30: hdr(70, 4, 0x5B, 1, widths="B") + struct.pack("<H", 13) + struct.pack("<IIHHB", 0x1234, 0, 1024, 7, 0),
    31: hdr(110, 4, 0x5B, 1, widths="B") + struct.pack("<H", 4) + b"cfg1",
    32: hdr(120, 4, 0x07, 1, widths="B") + struct.pack("<H", 1),
    33: hdr(120, 7, 0x5B, 1, widths="B") + struct.pack("<H", 15) + struct.pack("<IHHB", 9, 1, 0, 1) + t48(T48),
    129: hdr(52, 2, 0x07, 1, widths="B") + struct.pack("<H", 25),
    130: hdr(1, 2, 0x00, 0, 1, widths="BB") + b"\x81\x01",
    131: hdr(120, 1, 0x5B, 1, widths="B") + struct.pack("<H", 12) + struct.pack("<IHBB", 9, 1, 4, 1)
    + b"\x01\x02\x03\x04",
}


def test_every_function_code_is_covered() -> None:
    assert {c for c in range(256) if not FUNCTION_NAMES[c].startswith("unknown")} == set(FUNCTIONS)
    assert {name: DISSECTOR.operations[name] for name, _, _ in FUNCTIONS.values()} == {
        name: op for name, op, _ in FUNCTIONS.values()}


@pytest.mark.parametrize("code", sorted(FUNCTIONS), ids=[FUNCTIONS[c][0] for c in sorted(FUNCTIONS)])
def test_every_function_code(code: int) -> None:
    name, operation, role = FUNCTIONS[code]
    body = BODIES.get(code, b"")
    if code >= 129:
        ac = 0xF2 if code == 130 else 0xC2
        raw = resp(body, ac=ac, fc=code)
        to_server = False
    else:
        raw = req(code, body, seq=2)
        to_server = True
    ev = one(raw, to_server)
    assert ev["dnp3.function_code"] == code
    assert ev["event.action"] == ev["ics.function"] == ev["dnp3.function"] == name
    assert ev["ics.role"] == role and ev["ics.unit"] == str(OUTSTATION)
    assert ev["ics.operation"] == ("time_sync" if code == 2 else operation)  # the write is of g50: time
    assert ev.get("dnp3.anomaly") == (["operate-without-select"] if code == 4 else None)
    if body:
        assert ev["dnp3.object_count"] >= 1
    if code >= 129:
        assert ev["dnp3.iin"] == 0 and ev["ics.status"] == "ok"
    else:
        assert "ics.status" not in ev and "dnp3.iin" not in ev


def test_function_specific_fields() -> None:
    opened = one(req(25, BODIES[25]))
    assert opened["dnp3.file.name"] == "/tmp/cfg" and opened["dnp3.file.mode"] == "read"
    assert opened["dnp3.file.request_id"] == 7 and opened["dnp3.file.size"] == 0
    command = opened["dnp3.objects"][0]["objects"][0]
    assert command == {"index": 0, "size": 34, "authentication_key": 0, "operational_mode": "read",
                       "maximum_block_size": 1024, "filename_offset": 26, "filename_size": 8, "file_size": 0,
                       "permissions": 0x1ED, "request_id": 7, "created": "1970-01-01T00:00:00.000Z",
                       "filename": "/tmp/cfg"}
    writing = FILE_COMMAND.replace(struct.pack("<HH", 1, 1024), struct.pack("<HH", 2, 1024))
    opened_w = one(req(25, hdr(70, 3, 0x5B, 1, widths="B") + struct.pack("<H", len(writing)) + writing))
    assert opened_w["ics.operation"] == "file_write" and opened_w["dnp3.file.mode"] == "write"
    assert one(req(27, BODIES[27]))["ics.operation"] == "file_delete"
    key = one(req(29, BODIES[29]))
    assert key["dnp3.file.username"] == "user" and "pwd" not in str(key)  # the password is never kept
    data = hdr(70, 5, 0x5B, 1, widths="B") + struct.pack("<H", 12) + struct.pack("<II", 0x1234, 0x80000002) + b"abcd"
    block = one(req(2, data))
    assert block["ics.operation"] == "file_write" and block["dnp3.file.block"] == 2
    assert block["dnp3.file.last_block"] is True and block["dnp3.file.handle"] == 0x1234
    read_file = one(req(1, data))
    assert read_file["ics.operation"] == "file_read"
    identity = one(req(1, hdr(0, 252, 0x00, 0, 0, widths="BB") + hdr(0, 250, 0x00, 0, 0, widths="BB")))
    assert identity["ics.operation"] == "identity"
    attributes = one(resp(hdr(0, 252, 0x00, 0, 0, widths="BB") + bytes([1, 4]) + b"ACME"
                          + hdr(0, 250, 0x00, 0, 0, widths="BB") + bytes([1, 5]) + b"RTU-9"
                          + hdr(0, 240, 0x00, 0, 0, widths="BB") + bytes([2, 2]) + struct.pack("<H", 2048)), False)
    assert attributes["dnp3.device.manufacturer"] == "ACME" and attributes["dnp3.device.product"] == "RTU-9"
    assert attributes["dnp3.objects"][2]["attributes"] == [{"index": 0, "data_type": "uint", "length": 2,
                                                            "value": 2048}]
    challenge = one(resp(BODIES[131], fc=131), False)
    assert challenge["dnp3.auth.sequence"] == 9 and challenge["dnp3.auth.user"] == 1
    error = one(req(33, BODIES[33]))
    assert error["dnp3.auth.error"] == "authentication_failed"
    aggressive = one(req(5, hdr(120, 3, 0x07, 1, widths="B") + struct.pack("<IH", 77, 1)
                         + hdr(12, 1, 0x28, 1, 2, widths="HH") + CROB
                         + hdr(120, 9, 0x5B, 1, widths="B") + struct.pack("<H", 4) + b"\xaa\xbb\xcc\xdd"))
    assert aggressive["dnp3.auth.aggressive_mode"] is True and aggressive["dnp3.auth.sequence"] == 77
    assert aggressive["dnp3.object_type"] == ["g120v3", "g12v1", "g120v9"] and aggressive["ics.tag"] == ["g12v1:2"]
    delay = one(resp(BODIES[129]), False)
    assert delay["dnp3.objects"][0]["values"] == [25] and "ics.values" not in delay  # a delay is no point value
    assign = one(req(22, BODIES[22]))
    assert assign["dnp3.object_type"] == ["g60v3", "g1v0"] and assign["ics.tag"][:2] == ["g1v0:0", "g1v0:1"]
    freeze = one(req(11, BODIES[11]))
    assert freeze["dnp3.time"] == "2015-03-25T19:57:42.687Z" and freeze["dnp3.object_type"] == ["g50v2", "g20v0"]


def test_reserved_function_codes() -> None:
    for code in (34, 100, 128, 132, 255):
        ev = one(resp(b"\x01\x02", fc=code) if code >= 128 else req(code, b"\x01\x02\x06"), code < 128)
        assert ev["event.action"] == f"unknown-{code}" and ev["ics.operation"] == "other"
        assert ev["dnp3.anomaly"] == ["reserved-function-code"] and "dnp3.objects" not in ev


# -- every object layout ------------------------------------------------------------------------------
#
# An independent table (from IEEE 1815 annex A, written again here): group, variation -> the fields of
# one object in order: F flags, S status, V<c> the value (struct code c), T 48-bit time, R 16-bit
# relative time, X<c> another field.

BINARY = {(1, 2): "F", (2, 1): "F", (2, 2): "FT", (2, 3): "FR", (3, 2): "F", (4, 1): "F", (4, 2): "FT",
          (4, 3): "FR", (10, 2): "F", (11, 1): "F", (11, 2): "FT", (13, 1): "F", (13, 2): "FT"}
LAYOUTS: dict[tuple[int, int], str] = {
    **BINARY,
    **{(20, v): f for v, f in ((1, "F VI"), (2, "F VH"), (3, "F VI"), (4, "F VH"), (5, "VI"), (6, "VH"), (7, "VI"),
                               (8, "VH"))},
    **{(21, v): f for v, f in ((1, "F VI"), (2, "F VH"), (3, "F VI"), (4, "F VH"), (5, "F VI T"), (6, "F VH T"),
                               (7, "F VI T"), (8, "F VH T"), (9, "VI"), (10, "VH"), (11, "VI"), (12, "VH"))},
    **{(g, v): f for g in (22, 23) for v, f in ((1, "F VI"), (2, "F VH"), (3, "F VI"), (4, "F VH"), (5, "F VI T"),
                                                (6, "F VH T"), (7, "F VI T"), (8, "F VH T"))},
    **{(30, v): f for v, f in ((1, "F Vi"), (2, "F Vh"), (3, "Vi"), (4, "Vh"), (5, "F Vf"), (6, "F Vd"))},
    **{(31, v): f for v, f in ((1, "F Vi"), (2, "F Vh"), (3, "F Vi T"), (4, "F Vh T"), (5, "Vi"), (6, "Vh"),
                               (7, "F Vf"), (8, "F Vd"))},
    **{(g, v): f for g in (32, 33, 42) for v, f in ((1, "F Vi"), (2, "F Vh"), (3, "F Vi T"), (4, "F Vh T"),
                                                    (5, "F Vf"), (6, "F Vd"), (7, "F Vf T"), (8, "F Vd T"))},
    (34, 1): "VH", (34, 2): "VI", (34, 3): "Vf",
    **{(40, v): f for v, f in ((1, "F Vi"), (2, "F Vh"), (3, "F Vf"), (4, "F Vd"))},
    **{(41, v): f for v, f in ((1, "Vi S"), (2, "Vh S"), (3, "Vf S"), (4, "Vd S"))},
    **{(43, v): f for v, f in ((1, "S Vi"), (2, "S Vh"), (3, "S Vi T"), (4, "S Vh T"), (5, "S Vf"), (6, "S Vd"),
                               (7, "S Vf T"), (8, "S Vd T"))},
    (50, 1): "T", (50, 2): "T XI", (50, 3): "T", (50, 4): "T XI XB", (51, 1): "T", (51, 2): "T",
    (52, 1): "VH", (52, 2): "VH", (81, 1): "XB XB XB", (86, 2): "XB", (101, 1): "XH", (101, 2): "XI",
    (101, 3): "XQ", (102, 1): "VB", (121, 1): "F XH VI", (122, 1): "F XH VI", (122, 2): "F XH VI T",
}
NOT_POINT_VALUES = {50, 51, 52, 81, 86, 101}  # values that are not process data: no ics.values
VALUES = {"i": (-100000, -99999), "h": (-300, -299), "I": (4000000000, 4000000001), "H": (60000, 60001),
          "f": (2.5, 3.5), "d": (-7.25, -8.25), "B": (200, 201)}
FLAGS = (0x81, 0x42)
STATUS = (0x01, 0x42)


def sample(layout: str, k: int) -> tuple[bytes, Any]:
    """Object ``k`` (0 or 1) of ``layout``: its bytes and its value (None if it has none)."""
    out = b""
    value = None
    for item in layout.split():
        for part in (item,) if item[0] in "VX" else item:
            if part == "F":
                out += bytes([FLAGS[k]])
            elif part == "S":
                out += bytes([STATUS[k]])
            elif part == "T":
                out += t48(T48 + 1000 * k)
            elif part == "R":
                out += struct.pack("<H", 250 + k)
            elif part[0] == "V":
                value = VALUES[part[1]][k]
                out += struct.pack("<" + part[1], value)
            else:
                out += struct.pack("<" + part[1], 3)
    return out, value


@pytest.mark.parametrize("key", sorted(LAYOUTS), ids=[f"g{g}v{v}" for g, v in sorted(LAYOUTS)])
def test_every_object_layout(key: tuple[int, int]) -> None:
    """Two objects of each layout, by start-stop range and by 2-octet index prefix, in a response."""
    group, variation = key
    layout = LAYOUTS[key]
    objects = [sample(layout, k) for k in range(2)]
    ranged = hdr(group, variation, 0x01, 8, 9, widths="HH") + b"".join(o[0] for o in objects)
    prefixed = hdr(group, variation, 0x28, 2, widths="H") + b"".join(struct.pack("<H", 500 + k) + o[0]
                                                                     for k, o in enumerate(objects))
    ev = one(resp(ranged + prefixed), False)
    assert "dnp3.anomaly" not in ev, ev["dnp3.anomaly"]
    assert ev["dnp3.object_type"] == [f"g{group}v{variation}"] * 2
    assert ev["dnp3.index"] == [8, 9, 500, 501]
    assert ev["ics.tag"] == [f"g{group}v{variation}:{i}" for i in (8, 9, 500, 501)]
    if key in BINARY:
        shift = 6 if group in (3, 4) else 7
        expected: list[Any] | None = [f >> shift for f in FLAGS]
    elif "V" in layout:
        expected = [v for _, v in objects]
    else:
        expected = None
    for h, indexes in zip(ev["dnp3.objects"], ([8, 9], [500, 501])):
        assert h["indexes"] == indexes
        assert h.get("values") == expected, h
        if layout.startswith("F") and group != 13:
            assert h["flags"] == list(FLAGS)
        if "S" in layout or group == 13:
            assert h["status"] == [s & 0x7F for s in (FLAGS if group == 13 else STATUS)]
        if "T" in layout:
            assert h["times"] == ["2015-03-25T19:57:42.687Z", "2015-03-25T19:57:43.687Z"]
        if "R" in layout:
            assert h["relative_ms"] == [250, 251] and "times" not in h  # no common time of occurrence before
    if expected is not None and group not in NOT_POINT_VALUES:
        assert ev["ics.values"] == expected * 2
    else:
        assert "ics.values" not in ev
    if "T" in layout:
        assert ev["dnp3.time"] == "2015-03-25T19:57:42.687Z"
    if layout.startswith("F") and group != 13:
        family = {121: "counter", 122: "counter"}.get(group)
        assert "offline" in ev["dnp3.quality"] and ("restart" in ev["dnp3.quality"]) is True, family


def test_packed_and_attribute_objects() -> None:
    packed = one(resp(hdr(1, 1, 0x00, 3, 12, widths="BB") + bytes([0b10100101, 0b11]) + hdr(3, 1, 0x00, 0, 4,
                                                                                             widths="BB")
                      + bytes([0b11100100, 0b10])), False)
    bits, doubles = packed["dnp3.objects"]
    assert bits["values"] == [1, 0, 1, 0, 0, 1, 0, 1, 1, 1] and bits["indexes"] == list(range(3, 13))
    assert doubles["values"] == [0, 1, 2, 3, 2] and doubles["indexes"] == list(range(5))
    assert packed["ics.values"] == bits["values"] + doubles["values"]
    iin = one(req(2, hdr(80, 1, 0x00, 7, 7, widths="BB") + b"\x00"))
    assert iin["dnp3.objects"][0]["values"] == [0] and iin["ics.tag"] == ["g80v1:7"] and "ics.values" not in iin
    octets = one(resp(hdr(110, 3, 0x00, 1, 2, widths="BB") + b"abcxyz"), False)
    assert octets["dnp3.objects"][0]["objects"] == [{"data": "abc", "index": 1}, {"data": "xyz", "index": 2}]
    cto = one(resp(hdr(51, 1, 0x07, 1, widths="B") + t48(T48) + hdr(2, 3, 0x28, 1, widths="H")
                   + struct.pack("<HBH", 4, 0x81, 250)), False)
    assert cto["dnp3.objects"][1]["times"] == ["2015-03-25T19:57:42.937Z"]  # CTO + 250 ms
    assert cto["dnp3.objects"][1]["relative_ms"] == [250] and cto["dnp3.objects"][0]["indexes"] == [0]
    assert cto["ics.tag"] == ["g2v3:4"]  # the CTO's position 0 is no point
    nan = one(resp(hdr(30, 5, 0x00, 0, 1, widths="BB") + struct.pack("<BfBf", 1, float("nan"), 1, 1.0)), False)
    assert nan["dnp3.objects"][0]["values"] == ["nan", 1.0] and nan["ics.values"] == [1.0]


# -- qualifiers ---------------------------------------------------------------------------------------

QUALIFIERS = [  # qualifier, range fields, expected header keys, points (index list or None)
    (0x00, hdr(30, 2, 0x00, 4, 6, widths="BB"), {"start": 4, "stop": 6, "count": 3}, [4, 5, 6]),
    (0x01, hdr(30, 2, 0x01, 300, 301, widths="HH"), {"start": 300, "stop": 301, "count": 2}, [300, 301]),
    (0x02, hdr(30, 2, 0x02, 70000, 70000, widths="II"), {"start": 70000, "stop": 70000, "count": 1}, [70000]),
    (0x03, hdr(30, 2, 0x03, 9, widths="B"), {"address": 9, "count": 1}, [9]),
    (0x04, hdr(30, 2, 0x04, 900, widths="H"), {"address": 900, "count": 1}, [900]),
    (0x05, hdr(30, 2, 0x05, 90000, widths="I"), {"address": 90000, "count": 1}, [90000]),
    (0x07, hdr(30, 2, 0x07, 2, widths="B"), {"quantity": 2, "count": 2}, [0, 1]),
    (0x08, hdr(30, 2, 0x08, 2, widths="H"), {"quantity": 2, "count": 2}, [0, 1]),
    (0x09, hdr(30, 2, 0x09, 2, widths="I"), {"quantity": 2, "count": 2}, [0, 1]),
    (0x17, hdr(30, 2, 0x17, 2, widths="B"), {"quantity": 2, "count": 2}, [17, 18]),
    (0x28, hdr(30, 2, 0x28, 2, widths="H"), {"quantity": 2, "count": 2}, [1700, 1800]),
    (0x39, hdr(30, 2, 0x39, 2, widths="I"), {"quantity": 2, "count": 2}, [170000, 180000]),
]


@pytest.mark.parametrize(("qualifier", "header", "keys", "indexes"), QUALIFIERS,
                         ids=[f"0x{q[0]:02x}" for q in QUALIFIERS])
def test_qualifiers(qualifier: int, header: bytes, keys: dict[str, int], indexes: list[int]) -> None:
    width = {0x17: "B", 0x28: "H", 0x39: "I"}.get(qualifier, "")
    body = b"".join((struct.pack("<" + width, i) if width else b"") + struct.pack("<Bh", 1, 10 + k)
                    for k, i in enumerate(indexes))
    ev = one(resp(header + body), False)
    h = ev["dnp3.objects"][0]
    assert h["qualifier"] == qualifier and h["prefix_code"] == qualifier >> 4 and h["range_code"] == qualifier & 15
    assert {k: h[k] for k in keys} == keys and h["indexes"] == indexes
    assert ev["ics.values"] == [10 + k for k in range(len(indexes))] and "dnp3.anomaly" not in ev
    positional = qualifier in (0x07, 0x08, 0x09)
    assert ev.get("ics.tag") == (None if positional else [f"g30v2:{i}" for i in indexes])
    assert ev.get("ics.address_start") == (None if positional else indexes[0])
    # a read of the same points carries the range or index list only
    read = one(req(1, header + (b"".join(struct.pack("<" + width, i) for i in indexes) if width else b"")))
    assert read["dnp3.objects"][0]["count"] == len(indexes) and "dnp3.anomaly" not in read
    assert read.get("ics.tag") == (None if positional else [f"g30v2:{i}" for i in indexes])


def test_qualifier_anomalies_follow_wireshark() -> None:
    """Reserved range codes, stop = start - 1 and reserved bits are anomalies; the next header is read."""
    next_header = hdr(60, 1, 6)
    for bad in (hdr(30, 2, 0x0A), hdr(30, 2, 0x0C), hdr(30, 2, 0x16), hdr(30, 2, 0x86),
                hdr(30, 2, 0x00, 5, 4, widths="BB"), hdr(30, 2, 0x0B, 0, widths="B")):
        ev = one(req(1, bad + next_header))
        assert ev["dnp3.object_type"] == ["g30v2", "g60v1"], bad
        assert ev["dnp3.anomaly"] in (["invalid-qualifier"], ["invalid-range"]), bad
    stops = [(hdr(30, 2, 0x00, 5, 3, widths="BB"), "invalid-range"), (hdr(30, 2, 0x70), "invalid-qualifier"),
             (hdr(99, 9, 0x00, 0, 1, widths="BB") + b"\x00\x00",
                                                   "unknown-object"),
             (hdr(70, 3, 0x07, 1, widths="B") + b"\x00" * 30, "unknown-object-size"),
             (hdr(112, 0, 0x01, 0, 65535, widths="HH"), "unknown-object-size")]
    for bad, reason in stops:
        ev = one(resp(bad + next_header), False)
        assert ev["dnp3.anomaly"] == [reason], (bad, ev["dnp3.anomaly"])
        assert "g60v1" not in ev["dnp3.object_type"]
    for cut in (b"\x1e\x02", b"\x1e", hdr(30, 2, 0x00, 5, widths="B"), hdr(30, 2, 0x28)):
        ev = one(resp(cut), False)
        assert ev["dnp3.anomaly"] == ["object-header-truncated"], cut
        assert ev.get("dnp3.object_type") == (None if cut == b"\x1e" else ["g30v2"])  # group and variation listed
    unknown_read = one(req(1, hdr(99, 9, 6) + next_header))
    assert unknown_read["dnp3.object_type"] == ["g99v9", "g60v1"] and unknown_read["dnp3.anomaly"] == [
        "unknown-object"]
    cut = one(resp(hdr(30, 1, 0x00, 0, 3, widths="BB") + struct.pack("<BiBi", 1, 5, 1, 6) + b"\x01"), False)
    assert cut["dnp3.anomaly"] == ["object-data-truncated"] and cut["ics.values"] == [5, 6]
    trailing = one(req(1, hdr(60, 1, 6) + b"\x3c"))
    assert trailing["dnp3.anomaly"] == ["object-header-truncated"]
    crob = one(req(5, hdr(12, 1, 0x28, 1, 0, widths="HH") + struct.pack("<BBIIB", 0x07, 1, 1, 1, 0)))
    assert crob["dnp3.anomaly"] == ["invalid-control-code"] and crob["dnp3.crob.operation"] == ["unknown-7"]
    bad_time = one(req(2, hdr(50, 1, 0x07, 1, widths="B") + b"\xff" * 6))
    assert bad_time["dnp3.anomaly"] == ["invalid-time"] and bad_time["dnp3.objects"][0]["times"] == [None]
    assert "dnp3.time" not in bad_time


# -- pairing ------------------------------------------------------------------------------------------


def test_responses_pair_by_sequence_number() -> None:
    session = Dnp3Session()
    one(req(1, CLASS_0123, seq=1), True, session, 100.0)
    one(req(1, hdr(30, 0, 6), seq=2), True, session, 100.1)  # a second request before the first is answered
    second = one(resp(seq=2), False, session, 100.2)
    first = one(resp(seq=1), False, session, 100.3)
    stray = one(resp(seq=9), False, session, 100.4)
    assert second["dnp3.request_function"] == "read" and second["dnp3.response_time_ms"] == 100.0
    assert first["dnp3.response_time_ms"] == 300.0 and "dnp3.request_function" not in stray
    assert stray["ics.operation"] == "report"
    assert session.stats["paired"] == 2 and session.stats["unpaired_responses"] == 1
    # a null response to a write takes the written points' addresses
    one(req(2, hdr(30, 2, 0x00, 5, 5, widths="BB") + struct.pack("<Bh", 1, 7), seq=3), True, session)
    answer = one(resp(seq=3), False, session)
    assert answer["ics.tag"] == ["g30v2:5"] and answer["ics.address_start"] == 5 and answer["ics.operation"] == "write"


def test_no_response_expected() -> None:
    session = Dnp3Session()
    for raw in (req(6, BODIES[6]), req(8, BODIES[8]), req(10, BODIES[10]), req(12, BODIES[12]),
                req(33, BODIES[33]), req(1, CLASS_0123, dst=0xFFFF), req(0)):
        one(raw, True, session)
    assert not session._pending
    session.finish(200.0)
    assert session.stats["requests_unanswered"] == 0
    one(req(1, CLASS_0123), True, session)
    session.finish(200.0)
    assert session.stats["requests_unanswered"] == 1


def test_secure_authentication_challenge_keeps_the_request() -> None:
    session = Dnp3Session()
    one(req(5, hdr(12, 1, 0x28, 1, 2, widths="HH") + CROB, seq=6), True, session, 100.0)
    challenge = one(resp(BODIES[131], seq=6, fc=131), False, session, 100.1)
    reply = hdr(120, 2, 0x5B, 1, widths="B") + struct.pack("<H", 10) + struct.pack("<IH", 9, 1) + b"\x00" * 4
    one(req(32, reply, seq=6), True, session, 100.2)
    done = one(resp(hdr(12, 1, 0x28, 1, 2, widths="HH") + CROB, seq=6), False, session, 100.3)
    assert challenge["dnp3.request_function"] == "direct_operate" and challenge["ics.operation"] == "auth"
    assert done["dnp3.request_function"] == "direct_operate" and done["dnp3.response_time_ms"] == 300.0
    assert session.stats["paired"] == 2 and not session._pending
    # a key status request is answered by the authentication response
    one(req(32, BODIES[32], seq=0), True, session, 101.0)
    status = one(resp(hdr(120, 5, 0x5B, 1, widths="B") + struct.pack("<H", 9) + struct.pack("<IHBBB", 3, 1, 2, 1, 4),
                      seq=0, fc=131), False, session, 101.5)
    assert status["dnp3.request_function"] == "authenticate_request" and status["dnp3.auth.key_status"] == "ok"
    assert not session._pending


def test_pending_requests_are_bounded_and_expire() -> None:
    session = Dnp3Session(max_outstanding=3, timeout=10.0)
    for k in range(5):
        one(req(1, CLASS_0123, seq=k), True, session, 1.0)
    assert len(session._pending) == 3 and session.stats["requests_dropped"] == 2
    one(req(1, CLASS_0123, seq=9), True, session, 20.0)
    assert session.stats["requests_timed_out"] == 1
    late = one(resp(seq=4), False, session, 30.0)
    assert "dnp3.request_function" not in late and session.stats["requests_timed_out"] == 2


def test_request_flood() -> None:
    session = Dnp3Session()
    flagged = [k for k in range(40) if "dnp3.anomaly" in one(req(1, CLASS_0123, seq=k & 15), True, session)]
    assert flagged == [MAX_UNANSWERED - 1]
    one(resp(seq=39 & 15), False, session)
    assert all("dnp3.anomaly" not in one(req(1, CLASS_0123, seq=k & 15), True, session) for k in range(20))


def test_outstations_behind_one_connection() -> None:
    """A gateway: two outstations on one TCP connection, each with its own sequence numbers and unit."""
    session = Dnp3Session()
    one(req(1, CLASS_0123, seq=3, dst=20), True, session, 1.0)
    one(req(1, hdr(30, 0, 6), seq=3, dst=21), True, session, 1.5)
    a = one(resp(seq=3, src=20), False, session, 2.0)
    b = one(resp(seq=3, src=21), False, session, 2.0)
    assert (a["ics.unit"], a["dnp3.response_time_ms"]) == ("20", 1000.0)
    assert (b["ics.unit"], b["dnp3.response_time_ms"]) == ("21", 500.0)


# -- link layer ---------------------------------------------------------------------------------------

LINK_FUNCTIONS = [  # control octet, action, operation, role, status
    (0xC0, "link_reset_link_states", "session", "request", None),
    (0xC1, "link_reset_user_process", "session", "request", None),
    (0xD2, "link_test_link_states", "diagnostic", "request", None),
    (0xC9, "link_request_link_status", "diagnostic", "request", None),
    (0x00, "link_ack", "session", "response", "ok"),
    (0x01, "link_nack", "session", "response", "nack"),
    (0x0B, "link_status", "diagnostic", "response", "ok"),
    (0x0E, "link_not_functioning", "diagnostic", "response", "not_functioning"),
    (0x0F, "link_not_supported", "session", "response", "not_supported"),
]


@pytest.mark.parametrize(("ctl", "action", "operation", "role", "status"), LINK_FUNCTIONS,
                         ids=[f[1] for f in LINK_FUNCTIONS])
def test_link_frames(ctl: int, action: str, operation: str, role: str, status: str | None) -> None:
    master = ctl >= 0x80
    ev = one(frame(b"", ctl=ctl, dst=OUTSTATION if master else MASTER, src=MASTER if master else OUTSTATION), master)
    expected = {"dnp3.link.length": 5, "dnp3.link.control": ctl, "dnp3.link.function_code": ctl & 15,
                "dnp3.link.function": action.removeprefix("link_"), "dnp3.link.dir": master,
                "dnp3.link.primary": ctl & 0x40 != 0, "dnp3.link.destination": OUTSTATION if master else MASTER,
                "dnp3.link.source": MASTER if master else OUTSTATION, "event.action": action, "ics.function": action,
                "ics.operation": operation, "ics.role": role, "ics.unit": str(OUTSTATION)}
    if status is not None:
        expected["ics.status"] = status
        expected["event.outcome"] = "success" if status == "ok" else "failure"
    assert ev == expected


def test_link_layer_anomalies() -> None:
    session = Dnp3Session()
    run(session, [(True, req(1, CLASS_0123))])  # a good frame first: the flow is DNP3
    bad_header = one(frame(b"\xc0\xc0\x01\x3c\x01\x06", bad_header=True), True, session)
    assert bad_header["event.action"] == "link_unconfirmed_user_data"
    assert bad_header["dnp3.anomaly"] == ["header-crc-error"] and bad_header["event.type"] == ("protocol", "error")
    short = one(frame(b"", length=3), True, session)  # the bad frame's data was junk: its length is no use
    assert short["dnp3.anomaly"] == ["length-too-small", "junk-before-frame"] and short["dnp3.junk_bytes"] == 8
    empty = one(frame(b""), True, session)
    assert empty["dnp3.anomaly"] == ["no-user-data"]
    extra = one(frame(b"\x01\x02", ctl=0xC9), True, session)
    assert extra["event.action"] == "link_request_link_status" and extra["dnp3.anomaly"] == ["unexpected-user-data"]
    odd = one(frame(b"", ctl=0xC7), True, session)
    assert odd["event.action"] == "link_unknown-7" and odd["dnp3.anomaly"] == ["unknown-link-function"]
    assert session.stats["header_crc_errors"] == 1


def test_data_crc_errors_are_reported_and_still_decoded() -> None:
    session = Dnp3Session()
    bad = frames(bytes([0xC1, 1]) + CLASS_0123, bad_blocks=(0,))[0]
    ev = one(bad, True, session)
    assert ev["event.action"] == "read" and ev["dnp3.object_type"] == ["g60v2", "g60v3", "g60v4", "g60v1"]
    assert ev["dnp3.anomaly"] == ["crc-error"] and ev["dnp3.link.crc_errors"] == 1
    # in a multi-segment fragment the bad block is counted on the fragment
    body = bytes([0xC2, 0x81, 0, 0]) + hdr(30, 2, 0x01, 0, 99, widths="HH") + b"\x01\x00\x00" * 100
    parts = frames(body, master=False)
    parts[1] = frames(body, master=False, bad_blocks=(2,))[1]
    out = run(session, [(False, raw) for raw in parts])
    assert len(out) == 1 and out[0]["dnp3.anomaly"] == ["crc-error"] and out[0]["dnp3.link.crc_errors"] == 1
    assert session.stats["crc_errors"] == 2


# -- transport layer ----------------------------------------------------------------------------------


def test_transport_errors() -> None:
    body = bytes([0xC2, 0x81, 0, 0]) + hdr(30, 2, 0x01, 0, 199, widths="HH") + b"\x01\x00\x00" * 200
    parts = frames(body, tseq=10, master=False)
    assert len(parts) == 3
    session = Dnp3Session()
    lone = one(parts[1], False, session)  # no first segment
    assert lone["event.action"] == "link_unconfirmed_user_data"
    assert lone["dnp3.anomaly"] == ["transport-without-first-segment"] and lone["dnp3.transport.sequence"] == 11
    assert session.feed(parts[2], False, 1.0) == []  # the rest of that fragment goes quietly
    assert session.stats["segments_discarded"] == 1
    out = run(session, [(False, parts[0]), (False, parts[2])])  # a gap in the sequence
    assert [e["dnp3.anomaly"] for e in out] == [["transport-sequence-gap"]]
    out = run(session, [(False, parts[0]), (False, parts[0]), (False, parts[1]), (False, parts[2])])
    assert len(out) == 1 and out[0]["dnp3.anomaly"] == ["transport-fragment-abandoned"]  # a new FIR
    out = run(session, [(False, parts[0]), (False, parts[1]), (False, parts[1]), (False, parts[2])])
    assert len(out) == 1 and "dnp3.anomaly" not in out[0] and session.stats["duplicate_segments"] == 1


def test_fragment_too_long() -> None:
    body = bytes([0xC2, 0x02]) + b"\x00" * (MAX_FRAGMENT + 300)
    session = Dnp3Session()
    out = run(session, [(True, raw) for raw in frames(body)])
    assert [e["dnp3.anomaly"] for e in out] == [["fragment-too-long"]]
    assert out[0]["dnp3.transport.sequence"] == 64 & 0x3F  # the 65th segment
    assert not session._asm


def test_interleaved_fragments_of_two_address_pairs() -> None:
    a = frames(bytes([0xC2, 0x81, 0, 0]) + hdr(30, 2, 0x01, 0, 99, widths="HH") + b"\x01\x00\x00" * 100, master=False,
               src=20)
    b = frames(bytes([0xC2, 0x81, 0, 0]) + hdr(30, 2, 0x01, 0, 99, widths="HH") + b"\x01\x01\x00" * 100, master=False,
               src=21)
    out = run(Dnp3Session(), [(False, a[0]), (False, b[0]), (False, a[1]), (False, b[1])])
    assert [(e["ics.unit"], e["ics.values"][0]) for e in out] == [("20", 0), ("21", 1)]


# -- framing over TCP ---------------------------------------------------------------------------------


def conversation() -> list[tuple[bool, bytes]]:
    objects = hdr(12, 1, 0x28, 1, 3, widths="HH") + CROB
    big = bytes([0xC3, 0x81, 0, 0]) + hdr(1, 2, 0x00, 0, 149, widths="BB") + b"\x81" * 150 \
        + hdr(30, 5, 0x01, 0, 39, widths="HH") + b"".join(struct.pack("<Bf", 1, k / 4) for k in range(40))
    return [
        (True, frame(b"", ctl=0xC9)), (False, frame(b"", ctl=0x0B, dst=MASTER, src=OUTSTATION)),
        (True, req(1, CLASS_0123, seq=1)), (False, resp(seq=1, iin=0x8000)),
        (True, req(2, hdr(80, 1, 0x00, 7, 7, widths="BB") + b"\x00", seq=2)), (False, resp(seq=2)),
        (True, req(3, objects, seq=3)), (False, resp(objects, seq=3)),
        (True, req(4, objects, seq=4)), (False, resp(objects, seq=4)),
        (True, req(1, CLASS_0123, seq=5)), (False, b"".join(frames(big, 7, False))),
        (False, resp(hdr(2, 2, 0x28, 1, widths="H") + struct.pack("<HB", 3, 0x81) + t48(T48), ac=0xF0, fc=0x82)),
        (True, b"".join(frames(bytes([0xD0, 0]), 9))),
    ]


def reference() -> list[dict[str, Any]]:
    return run(Dnp3Session(), conversation())


def test_conversation_is_clean() -> None:
    events = reference()
    assert len(events) == 14 and not any("dnp3.anomaly" in e for e in events)
    assert [e["event.action"] for e in events][:4] == ["link_request_link_status", "link_status", "read", "response"]
    assert events[11]["dnp3.transport.segments"] == 2


def test_many_frames_in_one_segment_and_one_frame_split_at_every_byte() -> None:
    expected = reference()
    client = b"".join(raw for d, raw in conversation() if d)
    server = b"".join(raw for d, raw in conversation() if not d)
    together = run(Dnp3Session(), [(True, client), (False, server)])
    key = lambda e: (e["event.action"], e.get("dnp3.app.sequence"), e.get("ics.values"))  # noqa: E731
    assert sorted(map(key, together), key=str) == sorted(map(key, expected), key=str)
    for cut in range(1, len(server)):
        events = run(Dnp3Session(), [(False, server[:cut]), (False, server[cut:])])
        assert [key(e) for e in events] == [key(e) for e in expected if e["dnp3.link.dir"] is False], cut


def test_junk_between_frames_is_skipped_and_reported() -> None:
    session = Dnp3Session()
    run(session, [(True, req(1, CLASS_0123))])
    [ev] = session.feed(b"\x00\x05\x64\xff" + req(1, CLASS_0123, seq=1), True, 1.0)
    assert ev["dnp3.junk_bytes"] == 4 and ev["dnp3.anomaly"] == ["junk-before-frame"]
    assert session.stats["junk_bytes"] == 4


def test_violations() -> None:
    with pytest.raises(ProtocolViolation, match="no dnp3 start octets 0x0564"):
        Dnp3Session().feed(b"GET / HTTP/1.1\r\n\r\n", True, 0.0)
    with pytest.raises(ProtocolViolation, match="link header crc error"):
        Dnp3Session().feed(frame(b"\xc0\xc0\x01", bad_header=True), True, 0.0)
    session = Dnp3Session()
    run(session, [(True, req(1, CLASS_0123))])
    with pytest.raises(ProtocolViolation, match=f"within {MAX_JUNK} bytes"):
        session.feed(b"\x00" * (MAX_JUNK + 10), True, 0.0)
    session = Dnp3Session()
    run(session, [(True, req(1, CLASS_0123))])
    events = session.feed(frame(b"", ctl=0xC9, bad_header=True) * MAX_BAD_FRAMES, True, 0.0)
    assert len(events) == MAX_BAD_FRAMES
    with pytest.raises(ProtocolViolation, match="in a row with a bad header crc"):
        session.feed(frame(b"", ctl=0xC9, bad_header=True), True, 0.0)
    # the frames before the violation are reported first; the next call raises
    session = Dnp3Session()
    events = session.feed(req(1, CLASS_0123) + b"\x00" * (MAX_JUNK + 10), True, 0.0)
    assert len(events) == 1
    with pytest.raises(ProtocolViolation):
        session.feed(req(1, CLASS_0123), True, 0.0)


@pytest.mark.parametrize("to_server", [True, False])
def test_gap_then_resync(to_server: bool) -> None:
    """After a gap anywhere in a direction, the session picks up the frames that follow, as they were."""
    stream = b"".join(raw for d, raw in conversation() if d is to_server)
    key = lambda e: (e["event.action"], e.get("dnp3.app.sequence"), e.get("ics.values"))  # noqa: E731
    expected = [key(e) for e in reference() if e["dnp3.link.dir"] is to_server]
    for cut in range(1, len(stream) - 1, 5):
        session = Dnp3Session()
        session.on_gap(50, to_server)
        events = run(session, [(to_server, stream[cut:cut + 40]), (to_server, stream[cut + 40:])])
        got = [key(e) for e in events]
        # whole frames after the cut come back; a fragment whose first segment was lost is a transport error
        clean = [k for k in got if not k[0].startswith("link_unconfirmed")]
        assert clean == expected[len(expected) - len(clean):], cut
        assert len(got) - len(clean) <= 1 and session.stats["gaps"] == 1


def test_no_frame_long_after_a_gap_is_a_violation() -> None:
    session = Dnp3Session()
    run(session, [(True, req(1, CLASS_0123))])
    session.on_gap(10, True)
    with pytest.raises(ProtocolViolation, match="after a gap"):
        for _ in range(100):
            session.feed(b"\x05\x64\x00" * 500, True, 0.0)


def test_a_gap_drops_the_fragments_in_progress() -> None:
    parts = frames(bytes([0xC2, 0x81, 0, 0]) + b"\x3c\x01\x06" * 200, master=False)
    session = Dnp3Session()
    run(session, [(False, parts[0])])
    session.on_gap(100, False)
    events = run(session, [(False, parts[1]), (False, parts[2])])
    assert [e["dnp3.anomaly"] for e in events] == [["transport-without-first-segment"]]
    assert session.stats["fragments_incomplete"] == 1


# -- bounds -------------------------------------------------------------------------------------------


def test_points_and_headers_are_capped() -> None:
    small = Dnp3Session(max_points=5)
    ev = one(resp(hdr(1, 2, 0x00, 0, 9, widths="BB") + b"\x01" * 10 + hdr(30, 4, 0x00, 0, 1, widths="BB")
                  + b"\x01\x00\x02\x00"), False, small)
    assert ev["dnp3.index"] == [0, 1, 2, 3, 4] and ev["dnp3.points_omitted"] == 7 and ev["dnp3.points"] == 12
    assert small.stats["points_omitted"] == 7
    many = one(req(1, hdr(60, 1, 6) * 300))
    assert many["dnp3.object_count"] == 256 and many["dnp3.anomaly"] == ["too-many-objects"]


# -- hostile bytes ------------------------------------------------------------------------------------


def drive(session: Dnp3Session, chunks: list[tuple[bool, bytes | int]]) -> list[dict[str, Any]]:
    """crafting.drive (only events or ProtocolViolation; declared fields, action, operation, finite
    values), and every event names its link source address."""
    events = crafting.drive(session, chunks, DECLARED)
    for event in events:
        assert isinstance(event["dnp3.link.source"], int), event
    return events


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.booleans(), st.binary(max_size=300) | st.integers(1, 50)), max_size=8))
def test_random_bytes(chunks: list[tuple[bool, bytes | int]]) -> None:
    drive(Dnp3Session(), chunks)
    drive(Dnp3Session(), [(True, req(1, CLASS_0123)), *chunks])
    for _, chunk in chunks:
        if isinstance(chunk, bytes):
            assert probe(chunk, True) in (True, False)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_truncated_and_mutated_streams(data: st.DataObject) -> None:
    stream = b"".join(raw for _, raw in conversation())
    cut = data.draw(st.integers(0, len(stream)))
    garbage = data.draw(st.binary(max_size=64))
    to_server = data.draw(st.booleans())
    drive(Dnp3Session(), [(to_server, stream[:cut] + garbage)])
    mutated = bytearray(stream)
    for _ in range(data.draw(st.integers(1, 8))):
        mutated[data.draw(st.integers(0, len(stream) - 1))] = data.draw(st.integers(0, 255))
    drive(Dnp3Session(), [(True, bytes(mutated[:cut])), (False, bytes(mutated)), (True, bytes(mutated[cut:])),
                          (to_server, data.draw(st.integers(1, 100))), (to_server, bytes(mutated[cut:]))])


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(min_size=2, max_size=250))
def test_random_application_fragments_with_good_crcs(fragment: bytes) -> None:
    """Random application bytes in well-framed, well-CRCed frames: always events, never an error."""
    for master in (True, False):
        events = drive(Dnp3Session(), [(master, raw) for raw in frames(fragment, master=master)])
        assert len(events) == 1


def test_every_fragment_truncated_at_every_length() -> None:
    """Each application fragment of the conversation and of every function body, cut short (and
    framed with good CRCs), is still exactly one event."""
    fragments = [bytes([0xC2, code]) + body if code < 129 else bytes([0xC2, code, 0, 0]) + body
                 for code, body in BODIES.items()]
    for fragment in fragments:
        for n in range(0, len(fragment) + 1):
            master = fragment[1] < 129
            events = drive(Dnp3Session(), [(master, raw) for raw in frames(fragment[:n] or b"", master=master)])
            assert len(events) == 1, (fragment.hex(), n)


# -- UDP through the pipeline -------------------------------------------------------------------------


def test_udp_datagrams_through_the_pipeline() -> None:
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether

    from sensor.pipeline import Sensor
    from sensor.settings import SensorSettings

    def packet(ts: float, master: bool, payload: bytes) -> tuple[float, int, bytes, str]:
        ip = IP(src="10.0.0.1", dst="10.0.0.2") if master else IP(src="10.0.0.2", dst="10.0.0.1")
        udp = UDP(sport=40001, dport=20000) if master else UDP(sport=20000, dport=40001)
        return ts, 1, bytes(Ether() / ip / udp / payload), "test"

    out: list[dict[str, Any]] = []
    sensor = Sensor(SensorSettings(sensor_id="t"), sink=out.append, dissectors=[DISSECTOR])
    sensor.run([packet(1.0, True, req(1, CLASS_0123, seq=3)), packet(1.01, False, resp(seq=3)),
                packet(1.02, False, resp(hdr(2, 1, 0x28, 1, widths="H") + b"\x04\x00\x81", ac=0xF0, fc=0x82)),
                packet(1.03, True, b"".join(frames(bytes([0xD0, 0]), 1)))])
    sensor.finish()
    events = [e for e in out if e["event.dataset"] == "icsmon.dnp3"]
    assert [(e["event.action"], e["network.transport"], e["icsmon.packet"]) for e in events] == [
        ("read", "udp", 1), ("response", "udp", 2), ("unsolicited_response", "udp", 3), ("confirm", "udp", 4)]
    assert events[1]["dnp3.request_function"] == "read" and events[2]["ics.tag"] == ["g2v1:4"]


# -- detection and registration -----------------------------------------------------------------------


def test_probe() -> None:
    assert probe(req(1, CLASS_0123), True) and probe(resp(), False) and probe(frame(b"", ctl=0xC9), True)
    assert probe(req(1, CLASS_0123)[:10], True)  # the header is enough
    assert not probe(req(1, CLASS_0123)[:9], True)
    assert not probe(frame(b"\xc0\xc0\x01", bad_header=True), True)
    assert not probe(frame(b"", length=4), True)
    assert not probe(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", True)
    assert not probe(bytes.fromhex("16030100a5010000a10303") + bytes(40), True)
    assert not probe(bytes.fromhex("000100000006ff0300000001"), True)  # Modbus
    assert not probe(b"", True) and not probe(b"\x05\x64", True)


def test_port_probe_takes_broken_frames_on_port_20000() -> None:
    broken = frame(b"\xc0\xc0\x01", bad_header=True)
    assert port_probe(broken, True) and not probe(broken, True)
    assert port_probe(req(1, CLASS_0123), True) and not port_probe(frame(b"", length=4), True)
    assert not port_probe(b"GET / HTTP/1.1\r\n", True) and not port_probe(b"\x05\x64", True)
    with pytest.raises(ProtocolViolation, match="link header crc error"):  # reported as a decode error
        Dnp3Session().feed(broken, True, 0.0)


def test_keep_alives_and_acknowledgements_are_routine() -> None:
    session = Dnp3Session()
    events = run(session, [(True, frame(b"", ctl=0xC9)), (False, frame(b"", ctl=0x0B, dst=MASTER, src=OUTSTATION)),
                           (False, frame(b"", ctl=0x00, dst=MASTER, src=OUTSTATION)),
                           (True, b"".join(frames(bytes([0xC0, 0])))), (True, frame(b"", ctl=0xC0)),
                           (True, req(4, hdr(12, 1, 0x28, 1, 2, widths="HH") + CROB)),
                           (True, req(1, CLASS_0123, seq=1)), (False, resp(seq=1))])
    routine = [is_routine({**e, "network.protocol": "dnp3"}) for e in events]
    assert [e["event.action"] for e in events] == ["link_request_link_status", "link_status", "link_ack", "confirm",
                                                   "link_reset_link_states", "operate", "read", "response"]
    assert routine == [True, True, True, True, False, False, True, True]


def test_registration() -> None:
    assert registry()["dnp3"] is DISSECTOR
    assert DISSECTOR.tcp_ports == {20000} and DISSECTOR.udp_ports == {20000} and DISSECTOR.port_probe is port_probe
    assert isinstance(DISSECTOR.new_session(), Dnp3Session)
    assert set(DISSECTOR.operations.values()) <= set(OPERATIONS)
    ops = DISSECTOR.operations
    assert ops["select"] == ops["operate"] == ops["direct_operate"] == ops["direct_operate_nr"] == "write"
    assert ops["cold_restart"] == ops["warm_restart"] == "restart" and ops["stop_application"] == "control_stop"
    assert ops["disable_unsolicited"] == ops["assign_class"] == "config_change"
    assert ops["delete_file"] == "file_delete" and ops["write/time"] == "time_sync"
    assert ops["read/device_attributes"] == "identity" and ops["authenticate_request"] == "auth"
    names = [f.name for f in DISSECTOR.fields]
    assert len(names) == len(set(names))
    assert DISSECTOR.wireshark is not None
    assert {k.partition("@")[0] for k in DISSECTOR.wireshark.fields} <= set(names)


def test_docs_hold_the_operation_table() -> None:
    """sensor/protocols/dnp3.md lists exactly DISSECTOR.operations under its operation heading."""
    text = (REPO / "sensor" / "protocols" / "dnp3.md").read_text()
    section = text.split("## Function to `ics.operation`", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[1].startswith("`"):
            rows[cells[1].strip("`")] = cells[3]
    assert rows == dict(DISSECTOR.operations)
