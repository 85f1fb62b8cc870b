"""The S7comm / S7comm-plus dissector, driven directly through its Session with crafted bytes.

Exact expected events for the connection (COTP CR/CC and the rack/slot unit), setup communication,
read and write var with tags, values and pairing; every job family (upload, download, PLC control by PI
service, PLC stop), userdata groups (read SZL with the identity it returns, fragmented SZL answers,
block functions, clock, password, mode transition and diagnostic pushes, variable tables), S7comm-plus
(V1/V2/V3, integrity part, fragments, notifications, keep-alives), COTP management TPDUs and DT
reassembly; anomalies; several TPKTs per segment and one split at every offset; junk, gaps and
resynchronisation; bounds; hypothesis fuzzing; detection and registration. The comparisons with
Wireshark, the ICSNPP Zeek logs and the real captures are in test_s7comm_reference.py.
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
from sensor.protocols.s7comm import (
    DISSECTOR,
    MAX_ITEMS,
    MAX_JUNK,
    MAX_REPORTED_UNANSWERED,
    MAX_VALUES,
    S7commSession,
    probe,
)
from sensor.schema import COMMON_FIELDS
from tests.sensor.protocols import crafting

REPO = Path(__file__).resolve().parents[3]
DECLARED = {f.name for f in DISSECTOR.fields} | {f.name for f in COMMON_FIELDS}

# -- building messages ------------------------------------------------------------------------------

JOB, ACK, ACK_DATA, USERDATA = 1, 2, 3, 7
M, IN, Q, DB, DI, P, L, C, T = 0x83, 0x81, 0x82, 0x84, 0x85, 0x80, 0x86, 0x1C, 0x1D
BIT, BYTE, CHAR, WORD, INT, DWORD, DINT, REAL, COUNTER, TIMER = 1, 2, 3, 4, 5, 6, 7, 8, 28, 29


def tpkt(payload: bytes) -> bytes:
    return struct.pack(">BBH", 3, 0, 4 + len(payload)) + payload


def cotp_connect(code: int, calling: bytes = b"\x01\x00", called: bytes = b"\x01\x02", dst_ref: int = 0,
                 src_ref: int = 0x0D, size: int = 0x0A) -> bytes:
    """COTP CR (0xE0) or CC (0xD0) in a TPKT with TPDU size, calling and called TSAPs."""
    params = (bytes((0xC0, 1, size)) + bytes((0xC1, len(calling))) + calling + bytes((0xC2, len(called)))
              + called)
    body = struct.pack(">BHHB", code, dst_ref, src_ref, 0) + params
    return tpkt(bytes((len(body),)) + body)


def cotp_dr(reason: int = 0x80) -> bytes:
    body = struct.pack(">BHHB", 0x80, 0x0005, 0x000D, reason)
    return tpkt(bytes((len(body),)) + body)


def cotp_dc() -> bytes:
    body = struct.pack(">BHH", 0xC0, 0x0005, 0x000D)
    return tpkt(bytes((len(body),)) + body)


def dt(payload: bytes, eot: bool = True) -> bytes:
    return tpkt(bytes((2, 0xF0, 0x80 if eot else 0x00)) + payload)


def s7pdu(rosctr: int, ref: int, params: bytes, data: bytes = b"", error: int = 0) -> bytes:
    header = struct.pack(">BBHHHH", 0x32, rosctr, 0, ref, len(params), len(data))
    if rosctr in (ACK, ACK_DATA):
        header += struct.pack(">H", error)
    return header + params + data


def s7(rosctr: int, ref: int, params: bytes, data: bytes = b"", error: int = 0) -> bytes:
    return dt(s7pdu(rosctr, ref, params, data, error))


def item(tsize: int, count: int, db: int, area: int, byte: int, bit: int = 0) -> bytes:
    address = byte if area in (C, T) else byte * 8 + bit
    return struct.pack(">BBBBHHB", 0x12, 10, 0x10, tsize, count, db, area) + address.to_bytes(3, "big")


def read_params(*items: bytes) -> bytes:
    return bytes((0x04, len(items))) + b"".join(items)


def write_params(*items: bytes) -> bytes:
    return bytes((0x05, len(items))) + b"".join(items)


def data_item(rc: int, dsize: int, value: bytes, bits: bool | None = None, last: bool = True) -> bytes:
    """A data item; lengths count bits for transport sizes 3, 4, 5 (``bits``), octets otherwise."""
    in_bits = dsize in (3, 4, 5) if bits is None else bits
    length = len(value) * 8 if in_bits and dsize != 3 else len(value)
    out = struct.pack(">BBH", rc, dsize, length) + value
    if len(value) % 2 and not last:
        out += b"\x00"
    return out


def setup(size: int = 480) -> bytes:
    return struct.pack(">BBHHH", 0xF0, 0, 1, 1, size)


def ud_params(typ: int, group: int, sub: int, seq: int = 0, last: int | None = None, ref: int = 0,
              error: int = 0) -> bytes:
    """Userdata parameters: 4-octet form for first requests, 8-octet form with data unit reference,
    last-data-unit and error code when ``last`` is given."""
    method = 0x11 if last is None else 0x12
    head = bytes((0x00, 0x01, 0x12, 4 if last is None else 8, method, typ << 4 | group, sub, seq))
    if last is None:
        return head
    return head + bytes((ref, last)) + struct.pack(">H", error)


def ud_data(payload: bytes, rc: int = 0xFF, dsize: int = 0x09) -> bytes:
    return struct.pack(">BBH", rc, dsize, len(payload)) + payload


NO_DATA = struct.pack(">BBH", 0x0A, 0x00, 0)


def szl_request(szl_id: int, index: int) -> bytes:
    return ud_data(struct.pack(">HH", szl_id, index))


def szl_answer(szl_id: int, index: int, size: int, records: list[bytes]) -> bytes:
    return struct.pack(">HHHH", szl_id, index, size, len(records)) + b"".join(records)


def mlfb_record(index: int, mlfb: str, ausbg: int, ausbe: int) -> bytes:
    return struct.pack(">H20sHHH", index, mlfb.encode(), 0x00C0, ausbg, ausbe)


def component_record(index: int, text: str) -> bytes:
    return struct.pack(">H32s", index, text.encode())


def s7_time(year: int, month: int, day: int, hour: int, minute: int, second: int, ms: int, weekday: int = 1
            ) -> bytes:
    def bcd(n: int) -> int:
        return (n // 10) << 4 | n % 10
    return bytes((bcd(year % 100), bcd(month), bcd(day), bcd(hour), bcd(minute), bcd(second), bcd(ms // 10),
                  (ms % 10) << 4 | weekday))


def block_control(func: int, filename: str = "", upload_id: int = 0, status: int = 0, extra: bytes = b"",
                  reserved: bytes = b"\x00\x00") -> bytes:
    out = bytes((func, status)) + reserved + struct.pack(">I", upload_id)
    if filename:
        out += bytes((len(filename),)) + filename.encode() + extra
    return out


def pi_service(service: str, block: bytes = b"") -> bytes:
    return (bytes((0x28,)) + bytes(6) + b"\xfd" + struct.pack(">H", len(block)) + block
            + bytes((len(service),)) + service.encode())


def plc_stop() -> bytes:
    return bytes((0x29,)) + bytes(5) + bytes((9,)) + b"P_PROGRAM"


def plus(version: int, opcode: int, function: int = 0, seq: int = 1, session: int = 0x120, flags: int = 0x36,
         body: bytes = b"", trailer: bool = True, digest: bytes | None = None) -> bytes:
    """An S7comm-plus message in a COTP DT: header, integrity part (V3), data, trailer."""
    if opcode == 0x33:
        data = bytes((opcode,)) + body
    elif opcode == 0x31:
        data = struct.pack(">BHHHHIB", opcode, 0, function, 0, seq, session, flags) + body
    else:
        data = struct.pack(">BHHHHB", opcode, 0, function, 0, seq, flags) + body
    integrity = b""
    if version == 3:
        digest = digest if digest is not None else bytes(range(32))
        integrity = bytes((len(digest),)) + digest
    inner = integrity + data
    msg = struct.pack(">BBH", 0x72, version, len(inner)) + inner
    if trailer:
        msg += struct.pack(">BBH", 0x72, version, 0)
    return dt(msg)


def run(session: S7commSession, chunks: list[tuple[bool, bytes]], ts: float = 100.0) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for to_server, chunk in chunks:
        events += session.feed(chunk, to_server, ts)
    return events


def connected(called: bytes = b"\x01\x02") -> S7commSession:
    """A session that saw the COTP connection (PG to rack 0 slot 2) and setup communication (240)."""
    session = S7commSession()
    run(session, [(True, cotp_connect(0xE0, called=called)), (False, cotp_connect(0xD0, called=called)),
                  (True, s7(JOB, 1, setup(480))), (False, s7(ACK_DATA, 1, setup(240)))])
    return session


UNIT = {"ics.unit": "0/2", "s7comm.rack": 0, "s7comm.slot": 2, "s7comm.connection_type": "pg"}


def head(rosctr: int, ref: int, plen: int, dlen: int, name: str, operation: str, role: str,
         function_code: int | None = None, error: int | None = 0) -> dict[str, Any]:
    ev: dict[str, Any] = {
        "s7comm.protocol": "s7comm", "s7comm.rosctr": rosctr, "s7comm.pdu_ref": ref, "s7comm.param_length": plen,
        "s7comm.data_length": dlen, "s7comm.rosctr_name": {1: "job", 2: "ack", 3: "ack_data", 7: "userdata"}[rosctr],
        "event.action": name, "ics.function": name, "ics.operation": operation, "ics.role": role, **UNIT,
    }
    if function_code is not None:
        ev["s7comm.function_code"] = function_code
    if rosctr in (ACK, ACK_DATA) and error is not None:
        ev["s7comm.error_class"] = error >> 8
        ev["s7comm.error_code"] = error & 0xFF
        if error:
            ev["s7comm.error"] = error
    return ev


def paired(ms: float, sent: float = 100.0) -> dict[str, Any]:
    return {"s7comm.request_time_ms": int(sent * 1000), "s7comm.response_time_ms": ms}


def ok() -> dict[str, Any]:
    return {"ics.status": "ok", "event.outcome": "success"}


# -- exact events for whole exchanges ---------------------------------------------------------------


def test_connection_and_setup_communication() -> None:
    """COTP CR/CC name the CPU (rack 0 slot 2, PG); setup communication negotiates 240 octets."""
    session = S7commSession()
    events = run(session, [(True, cotp_connect(0xE0)), (False, cotp_connect(0xD0, dst_ref=0x0D, src_ref=0x05))])
    cotp = {"s7comm.protocol": "cotp", "s7comm.tpkt_length": 22, "s7comm.cotp.class": 0,
            "s7comm.cotp.tpdu_size": 1024, "s7comm.cotp.calling_tsap": "0100", "s7comm.cotp.called_tsap": "0102",
            "ics.operation": "session", **UNIT}
    assert events == [
        {**cotp, "event.action": "cotp_connection_request", "ics.function": "cotp_connection_request",
         "ics.role": "request", "s7comm.cotp.pdu_type": 14, "s7comm.cotp.pdu_name": "CR",
         "s7comm.cotp.dst_ref": 0, "s7comm.cotp.src_ref": 0x0D},
        {**cotp, "event.action": "cotp_connection_confirm", "ics.function": "cotp_connection_confirm",
         "ics.role": "response", "s7comm.cotp.pdu_type": 13, "s7comm.cotp.pdu_name": "CC",
         "s7comm.cotp.dst_ref": 0x0D, "s7comm.cotp.src_ref": 0x05, **ok()},
    ]
    req = session.feed(s7(JOB, 0x0100, setup(480)), True, 100.0)
    res = session.feed(s7(ACK_DATA, 0x0100, setup(240)), False, 100.004)
    fields = {"s7comm.setup.max_amq_calling": 1, "s7comm.setup.max_amq_called": 1}
    assert req == [{**head(JOB, 0x100, 8, 0, "setup_communication", "session", "request", 0xF0), **fields,
                    "s7comm.setup.pdu_size": 480}]
    assert res == [{**head(ACK_DATA, 0x100, 8, 0, "setup_communication", "session", "response", 0xF0), **fields,
                    "s7comm.setup.pdu_size": 240, **paired(4.0), **ok()}]
    assert session.stats["paired"] == 1 and set(req[0]) | set(res[0]) | set(events[0]) <= DECLARED


def test_read_var_with_tags_values_and_pairing() -> None:
    """Four items (DB word, DB real, flag bit, counter) and the values the response carries."""
    session = connected()
    params = read_params(item(WORD, 1, 1, DB, 0), item(REAL, 1, 1, DB, 4), item(BIT, 1, 0, M, 10, 3),
                         item(COUNTER, 1, 0, C, 5))
    data = (data_item(0xFF, 0x04, struct.pack(">H", 741), last=False)
            + data_item(0xFF, 0x07, struct.pack(">f", 42.5), last=False)
            + data_item(0xFF, 0x03, b"\x01", last=False) + data_item(0xFF, 0x04, struct.pack(">H", 0x0123)))
    [req] = session.feed(s7(JOB, 7, params), True, 100.0)
    [res] = session.feed(s7(ACK_DATA, 7, bytes((0x04, 4)), data), False, 100.0125)
    items = {"s7comm.item_count": 4, "s7comm.item.syntax_id": (16, 16, 16, 16),
             "s7comm.item.transport_size": (WORD, REAL, BIT, COUNTER), "s7comm.item.length": (1, 1, 1, 1),
             "s7comm.item.db": (1, 1, 0, 0), "s7comm.item.area": (DB, DB, M, C),
             "s7comm.item.area_name": ("data_block", "data_block", "flags", "counters"),
             "s7comm.item.byte": (0, 4, 10), "s7comm.item.bit": (0, 0, 3), "s7comm.item.number": (5,)}
    tags = ("DB1.DBW0", "DB1.DBD4", "M10.3", "C5")
    assert req == {**head(JOB, 7, 50, 0, "read_var", "read", "request", 0x04), **items, "ics.tag": tags}
    assert res == {**head(ACK_DATA, 7, 2, 26, "read_var", "read", "response", 0x04), "s7comm.item_count": 4,
                   "s7comm.data.return_code": (255, 255, 255, 255), "s7comm.data.transport_size": (4, 7, 3, 4),
                   "s7comm.data.length": (2, 4, 1, 2), "ics.values": [741, 42.5, 1, 0x0123], "ics.tag": tags,
                   **paired(12.5), **ok()}
    assert set(req) | set(res) <= DECLARED


def test_polling_fast_path_decodes_like_the_first_response() -> None:
    """The second answer to the same request is decoded by the cached layout: same fields, new values."""
    session = connected()
    params = read_params(item(INT, 2, 3, DB, 10), item(BYTE, 3, 0, IN, 0), item(BIT, 1, 0, Q, 1, 7),
                         item(DINT, 1, 9, DB, 100))

    def answer(a: int, b: int) -> bytes:
        return (data_item(0xFF, 0x05, struct.pack(">hh", a, -a), last=False)
                + data_item(0xFF, 0x04, bytes((1, 2, b)), last=False) + data_item(0xFF, 0x03, b"\x01", last=False)
                + data_item(0xFF, 0x06, struct.pack(">i", -b * 1000), bits=False))

    events = []
    for k, (a, b) in enumerate([(5, 6), (7, 8), (-300, 250)]):
        session.feed(s7(JOB, 20 + k, params), True, 100.0)
        [res] = session.feed(s7(ACK_DATA, 20 + k, bytes((0x04, 4)), answer(a, b)), False, 100.0)
        events.append(res)
    fresh = S7commSession()
    fresh.feed(s7(JOB, 22, params), True, 100.0)
    [slow] = fresh.feed(s7(ACK_DATA, 22, bytes((0x04, 4)), answer(-300, 250)), False, 100.0)
    assert events[2]["ics.values"] == [-300, 300, 1, 2, 250, 1, -250000] == slow["ics.values"]
    assert {k: v for k, v in events[2].items() if not k.startswith(("ics.unit", "s7comm.rack", "s7comm.slot",
                                                                       "s7comm.connection"))} == slow
    assert events[0]["ics.tag"] == ("DB3.DBW10", "IB0", "Q1.7", "DB9.DBD100")
    # An answer with a failed item no longer fits the cached layout and is decoded the slow way.
    session.feed(s7(JOB, 30, params), True, 100.0)
    bad = (data_item(0xFF, 0x05, struct.pack(">hh", 1, 2), last=False) + struct.pack(">BBH", 0x0A, 0, 0)
           + data_item(0xFF, 0x03, b"\x00", last=False) + data_item(0xFF, 0x06, struct.pack(">i", 9), bits=False))
    [res] = session.feed(s7(ACK_DATA, 30, bytes((0x04, 4)), bad), False, 100.0)
    assert res["s7comm.data.return_code"] == (255, 10, 255, 255) and res["ics.values"] == [1, 2, 0, 9]
    assert res["ics.status"] == "object_does_not_exist" and res["event.outcome"] == "failure"


def test_write_var_values_and_item_return_codes() -> None:
    session = connected()
    params = write_params(item(WORD, 1, 1, DB, 8), item(BIT, 1, 0, Q, 0, 5))
    data = data_item(0x00, 0x04, struct.pack(">H", 700), last=False) + data_item(0x00, 0x03, b"\x01")
    [req] = session.feed(s7(JOB, 9, params, data), True, 100.0)
    assert req == {**head(JOB, 9, 26, 11, "write_var", "write", "request", 0x05), "s7comm.item_count": 2,
                   "s7comm.item.syntax_id": (16, 16), "s7comm.item.transport_size": (WORD, BIT),
                   "s7comm.item.length": (1, 1), "s7comm.item.db": (1, 0), "s7comm.item.area": (DB, Q),
                   "s7comm.item.area_name": ("data_block", "outputs"), "s7comm.item.byte": (8, 0),
                   "s7comm.item.bit": (0, 5), "ics.tag": ("DB1.DBW8", "Q0.5"), "s7comm.data.return_code": (0, 0),
                   "s7comm.data.transport_size": (4, 3), "s7comm.data.length": (2, 1), "ics.values": [700, 1]}
    [res] = session.feed(s7(ACK_DATA, 9, bytes((0x05, 2)), b"\xff\x03"), False, 100.002)
    assert res == {**head(ACK_DATA, 9, 2, 2, "write_var", "write", "response", 0x05), "s7comm.item_count": 2,
                   "s7comm.data.return_code": (255, 3), "ics.tag": ("DB1.DBW8", "Q0.5"), **paired(2.0),
                   "ics.status": "access_denied", "event.outcome": "failure"}
    # One item: the address range is in ics.address_start/count.
    [one] = session.feed(s7(JOB, 10, write_params(item(BYTE, 4, 2, DB, 16)),
                            data_item(0x00, 0x04, b"\x01\x02\x03\x04")), True, 100.0)
    assert one["ics.address_start"] == 16 and one["ics.address_count"] == 4 and one["ics.values"] == [1, 2, 3, 4]
    assert one["ics.tag"] == ("DB2.DBB16",)


def test_tags_for_every_area() -> None:
    session = connected()
    specs = [item(BIT, 1, 0, IN, 0, 0), item(BYTE, 1, 0, IN, 1), item(WORD, 1, 0, Q, 2), item(DWORD, 1, 0, M, 4),
             item(INT, 1, 0, P, 256), item(BIT, 1, 0, L, 0, 1), item(REAL, 1, 5, DI, 4), item(BIT, 1, 3, DB, 2, 6),
             item(TIMER, 1, 0, T, 7), item(0x0C, 1, 0, 0x87, 6), item(BYTE, 1, 0, 0x06, 8)]
    [ev] = session.feed(s7(JOB, 3, read_params(*specs)), True, 100.0)
    assert ev["ics.tag"] == ("I0.0", "IB1", "QW2", "MD4", "PW256", "L0.1", "DI5.DID4", "DB3.DBX2.6", "T7", "VW6",
                             "AIB8")
    assert "ics.address_start" not in ev and "s7comm.anomaly" not in ev


def test_ack_with_header_error_names_the_job_function() -> None:
    session = connected()
    session.feed(s7(JOB, 44, block_control(0x1D, "_0800000A")), True, 100.0)
    [ev] = session.feed(s7(ACK, 44, b"", error=0xD20C), False, 100.001)
    assert ev == {**head(ACK, 44, 0, 0, "start_upload", "program_upload", "response", error=0xD20C),
                  "s7comm.error_text": "priority class of the OB does not exist", "s7comm.filename": "_0800000A",
                  "s7comm.block_type": "OB", "s7comm.block_number": 0, "ics.tag": ("OB0",), **paired(1.0),
                  "ics.status": "error-0xd20c", "event.outcome": "failure"}
    session.feed(s7(JOB, 45, read_params(item(BYTE, 1, 99, DB, 0))), True, 100.0)
    [denied] = session.feed(s7(ACK_DATA, 45, bytes((0x04, 0)), error=0x8703), False, 100.0)
    assert denied["ics.status"] == "access_error" and denied["s7comm.error_text"] == "access to object refused"


def test_upload_sequence() -> None:
    session = connected()
    events = run(session, [
        (True, s7(JOB, 8, block_control(0x1D, "_0B00000A"))),
        (False, s7(ACK_DATA, 8, bytes((0x1D, 0, 1, 0)) + struct.pack(">I", 7) + b"\x070000216")),
        (True, s7(JOB, 9, block_control(0x1E, upload_id=7))),
        (False, s7(ACK_DATA, 9, bytes((0x1E, 0)), struct.pack(">HH", 216, 0xFB) + bytes(216))),
        (True, s7(JOB, 10, block_control(0x1F, upload_id=7))),
        (False, s7(ACK_DATA, 10, bytes((0x1F,)))),
    ])
    assert [e["event.action"] for e in events] == ["start_upload"] * 2 + ["upload"] * 2 + ["end_upload"] * 2
    assert {e["ics.operation"] for e in events} == {"program_upload"}
    start, started = events[0], events[1]
    assert start["s7comm.filename"] == "_0B00000A" and start["s7comm.block_type"] == "SDB"
    assert start["s7comm.block_number"] == 0 and start["s7comm.filesystem"] == "active"
    assert start["s7comm.upload_id"] == 0 and start["s7comm.function_status"] == 0 and start["ics.tag"] == ("SDB0",)
    assert started["s7comm.upload_id"] == 7 and started["s7comm.block_length"] == 216
    assert started["s7comm.filename"] == "_0B00000A" and started["ics.status"] == "ok"  # copied from the job
    assert events[2]["s7comm.upload_id"] == 7 and events[3]["s7comm.data.length"] == (216,)
    assert events[4]["s7comm.upload_id"] == 7 and not any("s7comm.anomaly" in e for e in events)


def test_download_sequence_jobs_come_from_the_plc() -> None:
    """Request download (PG), download block and download ended (jobs from the PLC), then _INSE."""
    session = connected()
    events = run(session, [
        (True, s7(JOB, 0x8300, block_control(0x1A, "_0A00001P", reserved=b"\x01\x00",
                                             extra=b"\x0d1000216000088"))),
        (False, s7(ACK_DATA, 0x8300, bytes((0x1A,)))),
        (False, s7(JOB, 0x6501, block_control(0x1B, "_0A00001P"))),
        (True, s7(ACK_DATA, 0x6501, bytes((0x1B, 0)), struct.pack(">HH", 4, 0xFB) + b"\x70\x70\x01\x01")),
        (False, s7(JOB, 0x6701, block_control(0x1C, "_0A00001P"))),
        (True, s7(ACK_DATA, 0x6701, bytes((0x1C,)))),
        (True, s7(JOB, 0x8400, pi_service("_INSE", b"\x01\x00" + b"0A00001P"))),
        (False, s7(ACK_DATA, 0x8400, bytes((0x28,)))),
    ])
    assert [(e["event.action"], e["ics.role"], e["ics.operation"]) for e in events] == [
        ("request_download", "request", "program_download"), ("request_download", "response", "program_download"),
        ("download_block", "request", "program_download"), ("download_block", "response", "program_download"),
        ("download_ended", "request", "program_download"), ("download_ended", "response", "program_download"),
        ("plc_control", "request", "program_download"), ("plc_control", "response", "program_download")]
    assert events[0]["s7comm.load_memory_length"] == 216 and events[0]["s7comm.mc7_length"] == 88
    assert events[0]["ics.tag"] == ("DB1",) and events[0]["s7comm.filesystem"] == "passive"
    assert events[3]["s7comm.data.length"] == (4,) and events[3]["s7comm.response_time_ms"] == 0.0
    assert events[6]["s7comm.pi_service"] == "_INSE" and events[6]["s7comm.filename"] == ("0A00001P",)
    assert events[6]["ics.tag"] == ("DB1",) and events[6]["s7comm.pi_block_count"] == 1
    assert events[7]["s7comm.pi_service"] == "_INSE" and session.stats["paired"] == 5  # setup + 4


@pytest.mark.parametrize(("service", "block", "operation", "extra"), [
    ("_DELE", b"\x02\x00" + b"0800001P" + b"0C00012B", "program_delete",
     {"ics.tag": ("OB1", "FC12"), "s7comm.filename": ("0800001P", "0C00012B"), "s7comm.pi_block_count": 2}),
    ("P_PROGRAM", b"C ", "control_run", {"s7comm.pi_argument": "C ", "s7comm.start_type": "cold"}),
    ("P_PROGRAM", b"", "control_run", {"s7comm.start_type": "hot"}),
    ("_MODU", b"EP", "config_change", {"s7comm.pi_argument": "EP"}),
    ("_GARB", b"", "config_change", {}),
    ("_N_LOGIN_", b"\x00", "auth", {"s7comm.pi_argument": "\x00"}),
    ("_XYZ", b"", "other", {}),
])
def test_plc_control_by_pi_service(service: str, block: bytes, operation: str, extra: dict[str, Any]) -> None:
    session = connected()
    params = pi_service(service, block)
    [req] = session.feed(s7(JOB, 31, params), True, 100.0)
    assert req == {**head(JOB, 31, len(params), 0, "plc_control", operation, "request", 0x28),
                   "s7comm.pi_service": service, **extra}
    [res] = session.feed(s7(ACK_DATA, 31, b"\x28"), False, 100.0)
    assert res["ics.operation"] == operation and res["s7comm.pi_service"] == service and res["ics.status"] == "ok"
    assert DISSECTOR.operations.get(f"plc_control/{service}", "other") == operation


def test_plc_stop() -> None:
    session = connected()
    [req] = session.feed(s7(JOB, 28, plc_stop()), True, 100.0)
    [res] = session.feed(s7(ACK_DATA, 28, b"\x29"), False, 100.0)
    assert req == {**head(JOB, 28, 16, 0, "plc_stop", "control_stop", "request", 0x29),
                   "s7comm.pi_service": "P_PROGRAM"}
    assert res == {**head(ACK_DATA, 28, 1, 0, "plc_stop", "control_stop", "response", 0x29), **paired(0.0), **ok()}


# -- userdata -------------------------------------------------------------------------------------------

MLFB = "6ES7 315-2EH14-0AB0 "
IDENTITY_0011 = [mlfb_record(1, MLFB, 0x0003, 0x0001), mlfb_record(6, MLFB, 0x0003, 0x0001),
                 mlfb_record(7, " " * 20, 0x5603, 0x0207), mlfb_record(0x81, "Boot Loader", 0x4120, 0x0909)]


def ud_head(ref: int, plen: int, dlen: int, name: str, operation: str, role: str, typ: int, group: int,
            sub: int | None, seq: int) -> dict[str, Any]:
    groups = {0: "mode_transition", 1: "programmer_commands", 3: "block_functions", 4: "cpu_functions",
              5: "security", 7: "time_functions"}
    ev = {**head(USERDATA, ref, plen, dlen, name, operation, role),
          "s7comm.userdata.method": 0x11 if plen == 8 else 0x12, "s7comm.userdata.type": typ,
          "s7comm.userdata.type_name": {0: "push", 4: "request", 8: "response"}[typ],
          "s7comm.userdata.group": group, "s7comm.userdata.group_name": groups[group],
          "s7comm.userdata.sequence": seq}
    if sub is not None:
        ev["s7comm.userdata.subfunction"] = sub
    return ev


def test_read_szl_module_identification() -> None:
    session = connected()
    [req] = session.feed(s7(USERDATA, 0x100, ud_params(4, 4, 1), szl_request(0x0011, 0)), True, 100.0)
    answer = ud_data(szl_answer(0x0011, 0, 28, IDENTITY_0011))
    [res] = session.feed(s7(USERDATA, 0x100, ud_params(8, 4, 1, seq=2, last=0), answer), False, 100.006)
    szl = {"s7comm.szl.id": 0x11, "s7comm.szl.index": 0, "s7comm.szl.name": "module identification"}
    assert req == {**ud_head(0x100, 8, 8, "read_szl", "identity", "request", 4, 4, 1, 0),
                   "s7comm.data.return_code": (255,), "s7comm.data.transport_size": (9,),
                   "s7comm.data.length": (4,), **szl}
    assert res == {**ud_head(0x100, 12, len(answer), "read_szl", "identity", "response", 8, 4, 1, 2),
                   "s7comm.userdata.data_unit_ref": 0, "s7comm.userdata.last_data_unit": 0, "s7comm.error": 0,
                   "s7comm.data.return_code": (255,), "s7comm.data.transport_size": (9,),
                   "s7comm.data.length": (len(answer) - 4,), **szl, "s7comm.szl.record_length": 28,
                   "s7comm.szl.record_count": 4, "s7comm.identity.order_number": MLFB.strip(),
                   "s7comm.identity.hardware_version": "3", "s7comm.identity.firmware_version": "V3.2.7",
                   "s7comm.identity.boot_loader_version": "A32.9.9", **paired(6.0), **ok()}
    assert set(res) <= DECLARED


def test_read_szl_component_identification_over_two_fragments() -> None:
    """An answer longer than one PDU: first fragment (more follow), follow-up request, last fragment."""
    session = connected()
    records = [component_record(1, "S7300/ET200M station_1"), component_record(2, "PLC_1"),
               component_record(3, ""), component_record(5, "S C-B1U393142011"), component_record(7, "CPU 315-2")]
    whole = szl_answer(0x001C, 0, 34, records)
    first, rest = whole[:100], whole[100:]
    events = run(session, [
        (True, s7(USERDATA, 0x200, ud_params(4, 4, 1), szl_request(0x001C, 0))),
        (False, s7(USERDATA, 0x200, ud_params(8, 4, 1, seq=2, ref=0xD5, last=1), ud_data(first))),
        (True, s7(USERDATA, 0x300, ud_params(4, 4, 1, seq=2, last=0), NO_DATA)),
        (False, s7(USERDATA, 0x300, ud_params(8, 4, 1, seq=2, ref=0xD5, last=0), ud_data(rest))),
    ])
    assert [e["ics.operation"] for e in events] == ["identity"] * 4
    assert [e.get("s7comm.szl.id") for e in events] == [0x1C, None, None, 0x1C]
    assert events[1]["s7comm.userdata.last_data_unit"] == 1 and "s7comm.identity.module_name" not in events[1]
    last = events[3]
    assert last["s7comm.userdata.fragments"] == 2 and last["s7comm.szl.record_count"] == 5
    assert {k.rsplit(".", 1)[1]: v for k, v in last.items() if k.startswith("s7comm.identity.")} == {
        "automation_system_name": "S7300/ET200M station_1", "module_name": "PLC_1", "plant_id": "",
        "serial_number": "S C-B1U393142011", "module_type_name": "CPU 315-2"}
    assert session.stats["userdata_fragments"] == 2 and session.stats["paired"] == 3


def test_read_szl_mode_diagnostic_and_header_only_lists() -> None:
    session = connected()
    record = struct.pack(">HBB4sBBBB", 0x5144, 0xFF, 0x48, bytes(4), 0, 0, 0, 0) + bytes(8)
    events = run(session, [
        (True, s7(USERDATA, 5, ud_params(4, 4, 1), szl_request(0x0424, 0))),
        (False, s7(USERDATA, 5, ud_params(8, 4, 1, seq=1, last=0), ud_data(szl_answer(0x0424, 0, 20, [record])))),
        (True, s7(USERDATA, 6, ud_params(4, 4, 1), szl_request(0x0F11, 0))),
        (False, s7(USERDATA, 6, ud_params(8, 4, 1, seq=2, last=0), ud_data(struct.pack(">HHHH", 0x0F11, 0, 28, 4)))),
        (True, s7(USERDATA, 7, ud_params(4, 4, 1), szl_request(0x00A0, 0))),
        (False, s7(USERDATA, 7, ud_params(8, 4, 1, seq=3, last=0, error=0xD401), NO_DATA)),
    ])
    assert events[0]["ics.operation"] == "diagnostic" and events[1]["s7comm.cpu_mode"] == "run"
    assert events[1]["s7comm.cpu_previous_mode"] == "stop"
    assert events[3]["ics.operation"] == "identity" and "s7comm.anomaly" not in events[3]
    assert events[5]["ics.status"] == "service_processing_error" or events[5]["ics.status"] == "error-0xd401"
    assert events[5]["s7comm.error"] == 0xD401 and events[5]["s7comm.error_text"] == "invalid SZL id"
    assert events[5]["event.outcome"] == "failure"


def test_block_functions() -> None:
    session = connected()
    counts = b"".join(code + struct.pack(">H", n) for code, n in ((b"08", 1), (b"0E", 1), (b"0A", 2), (b"0B", 8)))
    events = run(session, [
        (True, s7(USERDATA, 7, ud_params(4, 3, 1), NO_DATA)),
        (False, s7(USERDATA, 7, ud_params(8, 3, 1, seq=1, last=0), ud_data(counts))),
        (True, s7(USERDATA, 8, ud_params(4, 3, 2), ud_data(b"0A"))),
        (False, s7(USERDATA, 8, ud_params(8, 3, 2, seq=2, last=0), ud_data(b"\x00\x01\x22\x05\x00\x02\x22\x05"))),
        (True, s7(USERDATA, 9, ud_params(4, 3, 3), ud_data(b"0A00001A"))),
        (False, s7(USERDATA, 9, ud_params(8, 3, 3, seq=3, last=0, error=0xD209), NO_DATA)),
    ])
    assert [e["event.action"] for e in events] == ["list_blocks"] * 2 + ["list_blocks_of_type"] * 2 + \
        ["get_block_info"] * 2
    assert {e["ics.operation"] for e in events} == {"diagnostic"}
    assert events[1]["s7comm.block_counts"] == {"OB": 1, "FB": 1, "DB": 2, "SDB": 8}
    assert events[1]["s7comm.blocks_listed"] == 12
    assert events[2]["s7comm.block_type"] == "DB" and events[3]["s7comm.block_numbers"] == [1, 2]
    assert events[4]["ics.tag"] == ("DB1",) and events[4]["s7comm.filesystem"] == "active"
    assert events[5]["ics.status"] == "error-0xd209" and events[5]["s7comm.error_text"] == "block not found"


def test_clock_password_mode_transition_and_diagnostic_push() -> None:
    session = connected()
    stamp = bytes((0x00, 0x19)) + s7_time(2016, 2, 8, 14, 51, 37, 916, 2)
    diag = struct.pack(">HBBHHI", 0x4304, 0xFF, 0x84, 0, 0, 0) + s7_time(1994, 1, 9, 21, 53, 42, 152, 1)
    mode = bytes((0x01, 0x00, 0x10, 0x10, 0x00, 0x00, 0x02, 0x00))  # mode transition push: RUN
    events = run(session, [
        (True, s7(USERDATA, 1, ud_params(4, 7, 1), NO_DATA)),
        (False, s7(USERDATA, 1, ud_params(8, 7, 1, seq=1, last=0), ud_data(stamp))),
        (True, s7(USERDATA, 2, ud_params(4, 7, 2), ud_data(stamp))),
        (False, s7(USERDATA, 2, ud_params(8, 7, 2, seq=2, last=0), NO_DATA)),
        (True, s7(USERDATA, 3, ud_params(4, 5, 1), ud_data(b"\x21\x3a\x1b\x1d\x6e\x68\x1b\x1d"))),
        (False, s7(USERDATA, 3, ud_params(8, 5, 1, seq=3, last=0), NO_DATA)),
        (False, s7(USERDATA, 0, ud_params(0, 4, 3), ud_data(diag))),
        (False, s7(USERDATA, 0, mode)),
    ])
    assert [(e["event.action"], e["ics.operation"], e["ics.role"]) for e in events] == [
        ("read_clock", "diagnostic", "request"), ("read_clock", "diagnostic", "response"),
        ("set_clock", "time_sync", "request"), ("set_clock", "time_sync", "response"),
        ("plc_password", "auth", "request"), ("plc_password", "auth", "response"),
        ("diagnostic_message", "alarm", "unsolicited"), ("mode_transition", "mode_change", "unsolicited")]
    assert events[1]["s7comm.clock"] == events[2]["s7comm.clock"] == "2016-02-08T14:51:37.916"
    assert all(e.get("ics.status", "ok") == "ok" for e in events)
    assert not any(isinstance(v, bytes) or "3a1b" in str(v) for v in events[4].values())  # password unrecorded
    assert events[6]["s7comm.diagnostic.event_id"] == 0x4304
    assert events[6]["s7comm.diagnostic.event_class"] == "mode_transition"
    assert events[6]["s7comm.diagnostic.time"] == "1994-01-09T21:53:42.152"
    assert events[7]["s7comm.mode_code"] == 2 and events[7]["s7comm.mode"] == "run"
    assert "s7comm.userdata.subfunction" not in events[7]


def tis(params: bytes, data: bytes) -> bytes:
    return ud_data(struct.pack(">HH", len(params), len(data)) + params + data)


def test_variable_table_monitor_and_modify() -> None:
    """Programmer commands: variable status (read) and modify variable (write) with their TIS data."""
    session = connected()
    tis_params = bytes(20)
    addresses = struct.pack(">BBHH", 0x01, 6, 0, 0) + struct.pack(">BBHH", 0x10, 1, 0, 8) + \
        struct.pack(">BBHH", 0x72, 1, 5, 4)
    values = data_item(0x00, 0x09, b"\x41\x33\x85\x1f\xde\xad") + data_item(0x00, 0x09, b"\x01", last=True) + \
        b"\x00" + data_item(0x00, 0x09, b"\x12\x34")
    events = run(session, [
        (True, s7(USERDATA, 1, ud_params(4, 1, 2, last=0), tis(tis_params, struct.pack(">H", 3) + addresses))),
        (False, s7(USERDATA, 0, ud_params(0, 1, 2, seq=2, last=0),
                   tis(b"\x01\x00\x00\x02", struct.pack(">H", 2) + data_item(0xFF, 0x09, b"\x41\x33")
                       + data_item(0xFF, 0x09, b"\x02") + b"\x00"))),
        (True, s7(USERDATA, 2, ud_params(4, 1, 8, last=0), tis(tis_params, struct.pack(">H", 3) + addresses + values))),
        (False, s7(USERDATA, 0, ud_params(0, 1, 8, seq=3, last=0),
                   tis(b"\x01\x00\x00\x02", struct.pack(">H", 3) + b"\xff\xff\x05\x00"))),
    ])
    assert [(e["event.action"], e["ics.operation"]) for e in events] == [
        ("variable_status", "read"), ("variable_status", "read"), ("modify_variable", "write"),
        ("modify_variable", "write")]
    assert events[0]["ics.tag"] == ("MB0", "I8.1", "DB5.DBW4") and events[0]["s7comm.variable_count"] == 3
    assert events[1]["s7comm.data.return_code"] == (255, 255, 255) and events[1]["s7comm.data.length"][1:] == (2, 1)
    assert events[2]["s7comm.data.return_code"] == (255, 0, 0, 0)
    assert events[2]["ics.values"] == [0x41, 0x33, 0x85, 0x1F, 0xDE, 0xAD, 1, 0x1234]  # MB0 x6, I8.1, DBW4
    assert events[3]["s7comm.data.return_code"] == (255, 255, 255, 5)
    assert not any("s7comm.anomaly" in e for e in events)


def test_unknown_userdata_and_job_functions() -> None:
    session = connected()
    events = run(session, [
        (True, s7(USERDATA, 1, ud_params(4, 4, 0x2A), NO_DATA)),
        (True, s7(USERDATA, 2, ud_params(4, 9, 1), NO_DATA)),
        (True, s7(JOB, 3, b"\x77\x00")),
        (True, dt(struct.pack(">BBHHHH", 0x32, 5, 0, 4, 0, 0))),
    ])
    assert [e["event.action"] for e in events] == ["cpu_functions_unknown-42", "userdata_unknown-9", "unknown-119",
                                                   "rosctr_unknown-5"]
    assert [e.get("s7comm.anomaly") for e in events] == [None, None, ["unknown-function"], ["unknown-rosctr"]]
    assert {e["ics.operation"] for e in events} == {"other"}


# -- S7comm-plus --------------------------------------------------------------------------------------------


def test_s7comm_plus_v1_session_create_and_pairing() -> None:
    session = S7commSession()
    events = run(session, [
        (True, cotp_connect(0xE0, calling=b"\x06\x20", called=b"SIMATIC-ROOT-HMI")),
        (False, cotp_connect(0xD0, calling=b"\x06\x20", called=b"SIMATIC-ROOT-HMI")),
        (True, plus(1, 0x31, 0x04CA, seq=1, session=0x120, body=b"\x00\x00\x01\x20\x36")),
        (False, plus(1, 0x32, 0x04CA, seq=1, body=b"\x00\x87\x01\x00\x00\x00")),
    ])
    assert events[0]["s7comm.cotp.called_tsap"] == "SIMATIC-ROOT-HMI" and "ics.unit" not in events[0]
    req, res = events[2], events[3]
    assert req == {"s7comm.protocol": "s7comm-plus", "s7comm.plus.version": 1, "s7comm.plus.data_length": 19,
                   "s7comm.plus.integrity": False, "s7comm.plus.opcode": 0x31, "s7comm.plus.opcode_name": "request",
                   "ics.role": "request", "s7comm.plus.function_code": 0x04CA, "s7comm.plus.sequence": 1,
                   "s7comm.plus.function": "create_object", "s7comm.plus.session_id": 0x120,
                   "s7comm.plus.transport_flags": 0x36, "event.action": "create_object",
                   "ics.function": "create_object", "ics.operation": "session"}
    assert res["ics.role"] == "response" and res["s7comm.plus.session_id"] == 0x120  # copied from the request
    assert res["s7comm.plus.return_value"] == 0 and res["ics.status"] == "ok"
    assert session.stats["s7comm_plus"] == 2 and session.stats["paired"] == 1


def test_s7comm_plus_v3_integrity_multi_variables_and_errors() -> None:
    session = S7commSession()
    get_body = struct.pack(">I", 0) + b"\x03\x0e"  # variable access, 3 items
    err = b"\x83\xff\x74"  # return value 0xfff4: error code -12
    events = run(session, [
        (True, plus(3, 0x31, 0x054C, seq=0x8322, session=0x70000E4D, flags=0x34, body=get_body)),
        (False, plus(3, 0x32, 0x054C, seq=0x8322, flags=0x34, body=b"\x00\x01")),
        (True, plus(3, 0x31, 0x0542, seq=0x8323, session=0x70000E4D, body=struct.pack(">I", 0x3BE) + b"\x01\x01")),
        (False, plus(3, 0x32, 0x0542, seq=0x8323, body=err)),
        (False, plus(3, 0x33, body=struct.pack(">I", 0x70000E51) + bytes(8))),
        (True, dt(b"\x72\xff\x07\x00")),
    ])
    assert [(e["event.action"], e["ics.operation"], e["ics.role"]) for e in events] == [
        ("get_multi_variables", "read", "request"), ("get_multi_variables", "read", "response"),
        ("set_multi_variables", "write", "request"), ("set_multi_variables", "write", "response"),
        ("notification", "report", "unsolicited"), ("keep_alive", "session", "unsolicited")]
    assert events[0]["s7comm.plus.integrity"] is True and events[0]["s7comm.plus.digest_length"] == 32
    assert events[0]["s7comm.plus.item_count"] == 3 and events[0]["ics.address_count"] == 3
    assert "s7comm.plus.object_id" not in events[0] and events[2]["s7comm.plus.object_id"] == 0x3BE
    assert events[1]["s7comm.plus.session_id"] == 0x70000E4D and events[1]["ics.status"] == "ok"
    assert events[3]["s7comm.plus.error_code"] == -12 and events[3]["ics.status"] == "object_not_found"
    assert events[3]["event.outcome"] == "failure"
    assert events[4]["s7comm.plus.subscription_id"] == 0x70000E51
    assert events[5]["s7comm.plus.keep_alive_sequence"] == 7
    assert not any("s7comm.anomaly" in e for e in events)


def test_s7comm_plus_fragments_are_joined() -> None:
    """A message without trailer continues in the next one; the event comes with the last fragment."""
    whole = plus(2, 0x31, 0x0586, seq=9, session=0x3BE, body=bytes(range(60)))
    msg = whole[7:-4]  # header + data without the trailer
    data = msg[4:]
    part1 = dt(struct.pack(">BBH", 0x72, 2, 30) + data[:30])
    part2 = dt(struct.pack(">BBH", 0x72, 2, 20) + data[30:50])
    part3 = dt(struct.pack(">BBH", 0x72, 2, len(data) - 50) + data[50:] + b"\x72\x02\x00\x00")
    session = S7commSession()
    assert session.feed(part1, True, 1.0) == [] and session.feed(part2, True, 1.0) == []
    [ev] = session.feed(part3, True, 1.0)
    [alone] = S7commSession().feed(whole, True, 1.0)
    assert ev["s7comm.plus.fragments"] == 3 and ev["s7comm.plus.function"] == "get_var_substreamed"
    assert {k: v for k, v in ev.items() if k not in ("s7comm.plus.fragments", "s7comm.plus.data_length")} == \
        {k: v for k, v in alone.items() if k != "s7comm.plus.data_length"}
    [bad] = S7commSession().feed(whole[:-4] + b"\x72\x03\x00\x00", True, 1.0)
    assert bad["s7comm.anomaly"] == ["plus-trailer-mismatch"] and bad["event.type"] == ("protocol", "error")


# -- COTP ---------------------------------------------------------------------------------------------------


def test_cotp_dt_reassembly_disconnect_and_error() -> None:
    session = connected()
    pdu = s7pdu(JOB, 77, read_params(item(BYTE, 2, 1, DB, 0)))
    events = run(session, [
        (True, dt(pdu[:5], eot=False) + dt(b"", eot=False)),
        (True, dt(pdu[5:11], eot=False)),
        (True, dt(pdu[11:])),
        (True, dt(b"")),
        (True, cotp_dr(0x80)),
        (False, cotp_dc()),
        (False, tpkt(bytes((4, 0x70, 0x00, 0x0D, 0x02)))),
    ])
    assert [e["event.action"] for e in events] == ["read_var", "cotp_disconnect_request", "cotp_disconnect_confirm",
                                                   "cotp_error"]
    assert events[0]["s7comm.cotp.fragments"] == 4 and events[0]["ics.tag"] == ("DB1.DBB0",)
    assert events[1]["s7comm.cotp.reason"] == "normal" and events[1]["ics.role"] == "request"
    assert events[2]["ics.status"] == "ok"
    assert events[3]["s7comm.cotp.reason"] == "invalid_tpdu_type" and events[3]["event.outcome"] == "failure"
    assert session.stats["empty_dt"] == 1 and session.stats["cotp_fragments"] == 4
    unknown = run(session, [(True, tpkt(bytes((2, 0x30, 0x00))))])
    assert unknown[0]["event.action"] == "cotp_unknown-3" and unknown[0]["s7comm.anomaly"] == ["cotp-unknown-type"]


def test_disconnect_reasons_and_status() -> None:
    [dr] = connected().feed(cotp_dr(0x83), True, 1.0)
    assert dr["s7comm.cotp.reason_code"] == 0x83 and dr["s7comm.cotp.reason"] == "duplicate_reference"


# -- anomalies ------------------------------------------------------------------------------------------------


def test_anomalies() -> None:
    session = connected()
    big = read_params(*[item(BYTE, 1, 1, DB, k) for k in range(20)])  # 252 octets > the 240 granted
    events = run(session, [
        (True, dt(s7pdu(JOB, 1, read_params(item(BYTE, 1, 1, DB, 0)))[:-3])),  # params shorter than declared
        (True, s7(JOB, 2, big)),
        (True, s7(JOB, 3, bytes((0x04, 3)) + item(BYTE, 1, 1, DB, 0))),  # 3 declared, 1 present
        (True, s7(JOB, 4, read_params(item(BYTE, 1, 0, 0x42, 0)))),
        (True, s7(JOB, 5, write_params(item(WORD, 2, 1, DB, 0)), data_item(0x00, 0x04, b"\x01\x02"))),
        (True, s7(JOB, 6, read_params(item(BYTE, 1, 1, DB, 0), item(BYTE, 1, 1, DB, 1)))),
        (False, s7(ACK_DATA, 6, bytes((0x04, 1)), data_item(0xFF, 0x04, b"\x07"))),
        (True, s7(JOB, 8, b"")),
        (True, s7(JOB, 9, setup(16))),
        (True, dt(b"\x32\x01\x00")),
    ])
    assert [e.get("s7comm.anomaly") for e in events] == [
        ["s7-length-mismatch", "item-truncated"], ["pdu-exceeds-negotiated-size"], ["item-truncated"],
        ["unknown-area"], ["write-length-mismatch"], None, ["response-item-count-mismatch"],
        ["job-without-parameters"], ["setup-invalid"], ["s7-header-truncated"]]
    assert all(e["event.type"] == ("protocol", "error") for e in events if "s7comm.anomaly" in e)
    assert session.stats["anomalies"] == 9
    for e in events:
        assert set(e) <= DECLARED, set(e) - DECLARED


def test_block_names_need_ascii_digits() -> None:
    """Regression (found by fuzzing): a block number with a non-ASCII digit (``000³1``) once raised
    ValueError; it is a file name without block fields now."""
    session = connected()
    params = bytes((0x1D, 0, 0, 0, 0, 0, 0, 0, 9)) + "_08000³1A".encode("latin-1")
    [ev] = session.feed(s7(JOB, 2, params), True, 1.0)
    assert ev["s7comm.filename"] == "_08000³1A" and "s7comm.block_number" not in ev and "ics.tag" not in ev


def test_foreign_data_after_s7_is_an_anomaly_not_a_violation() -> None:
    session = connected()
    [ev] = session.feed(dt(b"\x0d\x00\x01\x02"), True, 1.0)
    assert ev["s7comm.anomaly"] == ["unknown-protocol-id"] and ev["s7comm.protocol_id"] == 0x0D


# -- framing: segments, junk, gaps ------------------------------------------------------------------------


def conversation() -> list[tuple[bool, bytes]]:
    """A whole, clean session: connect, setup, reads, a write, SZL, clock, upload, PLC stop, disconnect."""
    read = read_params(item(WORD, 1, 1, DB, 0), item(REAL, 1, 1, DB, 4))
    return [
        (True, cotp_connect(0xE0)), (False, cotp_connect(0xD0)),
        (True, s7(JOB, 1, setup(480))), (False, s7(ACK_DATA, 1, setup(240))),
        (True, s7(JOB, 2, read)),
        (False, s7(ACK_DATA, 2, b"\x04\x02", data_item(0xFF, 4, b"\x00\x07", last=False)
                   + data_item(0xFF, 7, struct.pack(">f", 1.5)))),
        (True, s7(JOB, 3, write_params(item(WORD, 1, 1, DB, 8)), data_item(0, 4, b"\x02\xbc"))),
        (False, s7(ACK_DATA, 3, b"\x05\x01", b"\xff")),
        (True, s7(USERDATA, 4, ud_params(4, 4, 1), szl_request(0x11, 0))),
        (False, s7(USERDATA, 4, ud_params(8, 4, 1, seq=1, last=0), ud_data(szl_answer(0x11, 0, 28, IDENTITY_0011)))),
        (True, s7(USERDATA, 5, ud_params(4, 7, 1), NO_DATA)),
        (False, s7(USERDATA, 5, ud_params(8, 7, 1, seq=2, last=0),
                   ud_data(b"\x00\x19" + s7_time(2024, 2, 29, 23, 59, 59, 999)))),
        (True, s7(JOB, 6, block_control(0x1D, "_0800001A"))),
        (False, s7(ACK_DATA, 6, bytes((0x1D, 0, 1, 0)) + struct.pack(">I", 3) + b"\x070000010")),
        (True, s7(JOB, 7, plc_stop())), (False, s7(ACK_DATA, 7, b"\x29")),
        (True, cotp_dr()), (False, cotp_dc()),
    ]


def reference() -> list[dict[str, Any]]:
    return run(S7commSession(), conversation())


def test_conversation_is_clean() -> None:
    events = reference()
    assert len(events) == len(conversation())
    assert all("s7comm.anomaly" not in e for e in events)
    assert all(e["ics.unit"] == "0/2" for e in events)


def test_many_tpkts_in_one_segment_and_one_split_at_every_size() -> None:
    for to_server in (True, False):
        stream = b"".join(raw for d, raw in conversation() if d is to_server)
        one_by_one = run(S7commSession(), [(to_server, raw) for d, raw in conversation() if d is to_server])
        assert S7commSession().feed(stream, to_server, 100.0) == one_by_one
        for size in (1, 2, 3, 5, 7, 13, 64):
            chunks = [(to_server, stream[k:k + size]) for k in range(0, len(stream), size)]
            assert run(S7commSession(), chunks) == one_by_one


def test_message_split_at_every_offset_in_a_two_way_exchange() -> None:
    expected = reference()
    for to_split in range(len(conversation())):
        session = S7commSession()
        events: list[dict[str, Any]] = []
        for k, (to_server, raw) in enumerate(conversation()):
            if k == to_split:
                for cut in range(1, len(raw)):
                    assert S7commSession().feed(raw[:cut], to_server, 0.0) == []
                events += session.feed(raw[:len(raw) // 2], to_server, 100.0)
                events += session.feed(raw[len(raw) // 2:], to_server, 100.0)
            else:
                events += session.feed(raw, to_server, 100.0)
        assert events == expected


def test_junk_between_tpkts_is_skipped_and_reported() -> None:
    session = connected()
    [ev] = session.feed(b"\x00\x01\x02" + s7(JOB, 9, plc_stop()), True, 1.0)
    assert ev["s7comm.junk_bytes"] == 3 and "junk-before-tpkt" in ev["s7comm.anomaly"]
    [short] = session.feed(tpkt(b"\x02\xf0"), True, 1.0)
    assert short["s7comm.anomaly"] == ["tpkt-too-short"]
    assert session.stats["junk_bytes"] == 3


def test_violations() -> None:
    with pytest.raises(ProtocolViolation, match="no tpkt header") as info:
        S7commSession().feed(b"GET / HTTP/1.1\r\n", True, 0.0)
    assert info.value.offset == 0
    with pytest.raises(ProtocolViolation, match="tpkt length 5 below 7"):
        S7commSession().feed(b"\x03\x00\x00\x05\x01", True, 0.0)
    with pytest.raises(ProtocolViolation, match="cotp length indicator"):
        S7commSession().feed(tpkt(b"\x20\xf0\x80"), True, 0.0)
    mms = bytes.fromhex("0dcab0ca0c0001")  # ISO session CONNECT SPDU, as IEC 61850 MMS sends it
    session = S7commSession()
    run(session, [(True, cotp_connect(0xE0, calling=b"\x00\x01", called=b"\x00\x01"))])
    with pytest.raises(ProtocolViolation, match=r"not s7comm \(protocol id 0x0d\)"):
        session.feed(dt(mms), True, 0.0)
    session = connected()
    with pytest.raises(ProtocolViolation, match=f"within {MAX_JUNK} bytes"):
        session.feed(b"\x00" * (MAX_JUNK + 10), True, 0.0)
    session = connected()
    events = session.feed(s7(JOB, 4, plc_stop()) + b"\x00" * (MAX_JUNK + 10), True, 0.0)
    assert [e["event.action"] for e in events] == ["plc_stop"]  # reported before the violation
    with pytest.raises(ProtocolViolation):
        session.feed(s7(JOB, 5, plc_stop()), True, 0.0)


def tpkt_starts(stream: bytes) -> list[int]:
    starts, off = [], 0
    while off < len(stream):
        starts.append(off)
        off += (stream[off + 2] << 8) | stream[off + 3]
    return starts


@pytest.mark.parametrize("to_server", [True, False])
def test_gap_then_resync(to_server: bool) -> None:
    """Every TPKT that starts after the lost bytes is found again."""
    stream = b"".join(raw for d, raw in conversation() if d is to_server)
    plain = run(S7commSession(), [(to_server, stream)])
    starts = tpkt_starts(stream)
    for lost_from in range(0, len(stream) - 20, 5):
        for lost in (1, 3, 11):
            session = S7commSession()
            before = session.feed(stream[:lost_from], to_server, 100.0)
            session.on_gap(lost, to_server)
            rest = stream[lost_from + lost:]
            after = run(session, [(to_server, rest[k:k + 17]) for k in range(0, len(rest), 17)])
            complete = sum(1 for s in starts[1:] + [len(stream)] if s <= lost_from)
            resumed = sum(1 for s in starts if s < lost_from + lost)
            assert len(before) == complete
            got = [e["event.action"] for e in after]
            want = [e["event.action"] for e in plain[resumed:]]
            assert got == want, (lost_from, lost)


def test_gap_drops_partial_reassembly() -> None:
    session = connected()
    pdu = s7pdu(JOB, 77, read_params(item(BYTE, 2, 1, DB, 0)))
    assert session.feed(dt(pdu[:8], eot=False), True, 1.0) == []
    session.on_gap(5, True)
    [ev] = session.feed(dt(pdu), True, 1.0)
    assert ev["event.action"] == "read_var" and "s7comm.cotp.fragments" not in ev


# -- bounds -----------------------------------------------------------------------------------------------


def test_items_and_values_are_capped() -> None:
    session = S7commSession()
    count = MAX_ITEMS + 6
    params = read_params(*[item(BYTE, 1, 1, DB, k) for k in range(count)])
    [req] = session.feed(s7(JOB, 1, params), True, 1.0)
    assert req["s7comm.item_count"] == count and len(req["ics.tag"]) == MAX_ITEMS
    assert req["s7comm.items_omitted"] == 6 and session.stats["items_truncated"] == 6
    [res] = session.feed(s7(ACK_DATA, 2, b"\x04\x01", data_item(0xFF, 4, bytes(1000))), False, 1.0)
    assert len(res["ics.values"]) == MAX_VALUES


def test_pending_requests_are_bounded_and_expire() -> None:
    session = S7commSession(max_outstanding=3, timeout=10.0)
    for k in range(5):
        session.feed(s7(JOB, k, plc_stop()), True, 1.0)
    assert len(session._pending) == 3 and session.stats["requests_dropped"] == 2
    session.feed(s7(JOB, 50, plc_stop()), True, 20.0)
    assert session.stats["requests_timed_out"] == 1
    [late] = session.feed(s7(ACK_DATA, 4, b"\x29"), False, 30.0)
    assert "s7comm.response_time_ms" not in late and session.stats["requests_timed_out"] == 2


def test_unanswered_requests_are_reported_at_finish() -> None:
    session = connected()
    for k in range(MAX_REPORTED_UNANSWERED + 4):
        session.feed(s7(JOB, 100 + k, read_params(item(BYTE, 1, 1, DB, k))), True, 50.0)
    session.feed(plus(2, 0x31, 0x04F2, seq=5, body=bytes(8)), True, 50.0)
    events = session.finish(51.0)
    assert len(events) == MAX_REPORTED_UNANSWERED
    assert session.stats["requests_unanswered"] == MAX_REPORTED_UNANSWERED + 4
    assert events[0] == {"event.action": "unanswered_request", "ics.function": "read_var", "ics.operation": "read",
                         "ics.role": "request", "event.outcome": "unknown", "s7comm.protocol": "s7comm",
                         "s7comm.unanswered_pdu_ref": 100, "s7comm.request_time_ms": 50000, **UNIT}
    assert session.finish(52.0) == []


# -- hostile bytes ------------------------------------------------------------------------------------------


def drive(session: S7commSession, chunks: list[tuple[bool, bytes | int]]) -> list[dict[str, Any]]:
    """crafting.drive: only events or ProtocolViolation; declared fields, action, operation, finite values."""
    return crafting.drive(session, chunks, DECLARED)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.booleans(), st.binary(max_size=300) | st.integers(1, 50)), max_size=8))
def test_random_bytes(chunks: list[tuple[bool, bytes | int]]) -> None:
    drive(S7commSession(), chunks)
    drive(connected(), chunks)
    for _, chunk in chunks:
        if isinstance(chunk, bytes):
            assert probe(chunk, True) in (True, False)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_truncated_and_mutated_messages(data: st.DataObject) -> None:
    stream = b"".join(raw for _, raw in conversation())
    cut = data.draw(st.integers(0, len(stream)))
    garbage = data.draw(st.binary(max_size=64))
    to_server = data.draw(st.booleans())
    drive(S7commSession(), [(to_server, stream[:cut] + garbage)])
    mutated = bytearray(stream)
    for _ in range(data.draw(st.integers(1, 8))):
        mutated[data.draw(st.integers(0, len(stream) - 1))] = data.draw(st.integers(0, 255))
    drive(connected(), [(True, bytes(mutated[:cut])), (False, bytes(mutated)), (True, bytes(mutated[cut:])),
                        (to_server, data.draw(st.integers(1, 100))), (to_server, bytes(mutated[cut:]))])


def every_message() -> list[tuple[bool, bytes]]:
    out = list(conversation())
    out += [(True, plus(3, 0x31, 0x054C, seq=3, body=struct.pack(">I", 0) + b"\x02\x04")),
            (False, plus(3, 0x32, 0x054C, seq=3, body=b"\x00")), (False, plus(2, 0x33, body=bytes(12))),
            (True, s7(USERDATA, 9, ud_params(4, 1, 8, last=0), tis(bytes(20), b"\x00\x01" + bytes(6)
                                                                   + data_item(0, 9, b"\x01\x02")))),
            (True, s7(JOB, 10, pi_service("_DELE", b"\x01\x000A00001P"))),
            (True, s7(JOB, 11, block_control(0x1A, "_0A00001P", extra=b"\x0d1000216000088")))]
    return out


def test_every_message_truncated_at_every_length() -> None:
    """Each message with its TPKT length cut short (the rest dropped) is one event or nothing, never a bug."""
    for to_server, raw in every_message():
        for n in range(7, len(raw)):
            cut = struct.pack(">BBH", 3, 0, n) + raw[4:n]
            events = drive(connected(), [(to_server, cut)])
            assert len([e for e in events if e["event.action"] != "unanswered_request"]) <= 1, (raw.hex(), n)


# -- detection and registration -----------------------------------------------------------------------------


def test_probe() -> None:
    assert probe(cotp_connect(0xE0), True) and probe(cotp_connect(0xD0), False)
    assert probe(cotp_connect(0xE0, calling=b"\x06\x00", called=b"SIMATIC-ROOT-ES"), True)
    assert probe(cotp_connect(0xE0, calling=b"\x02\x00", called=b"\x02\x02"), True)
    assert probe(s7(JOB, 1, setup()), True) and probe(s7(ACK_DATA, 1, setup(240)), False)
    assert probe(plus(2, 0x33, body=bytes(8)), False)
    assert probe(s7(JOB, 1, setup())[:12], True)  # a DT whose header is cut by the segment
    # IEC 61850 MMS on the same port: TSAPs with a zero high octet, ISO session data.
    assert not probe(cotp_connect(0xE0, calling=b"\x00\x01", called=b"\x00\x01"), True)
    assert not probe(cotp_connect(0xE0, calling=b"\x00\x02", called=b"\x02\x00"), True)
    assert not probe(dt(bytes.fromhex("0dcab0ca0c0001")), True)
    assert not probe(dt(struct.pack(">BBHHHH", 0x32, 5, 0, 1, 0, 0)), True)  # no such ROSCTR
    assert not probe(dt(s7pdu(JOB, 1, setup()) + b"\x00"), True)  # lengths disagree with the TPKT
    assert not probe(cotp_dr(), True) and not probe(cotp_connect(0xE0)[:10], True)
    assert not probe(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", True)
    assert not probe(bytes.fromhex("000100000006010300000001"), True)  # Modbus/TCP
    assert not probe(b"", True) and not probe(b"\x03\x00", True)


def test_registration() -> None:
    assert registry()["s7comm"] is DISSECTOR
    assert DISSECTOR.tcp_ports == {102} and not DISSECTOR.udp_ports
    assert isinstance(DISSECTOR.new_session(), S7commSession)
    assert set(DISSECTOR.operations.values()) <= set(OPERATIONS)
    ops = DISSECTOR.operations
    assert ops["read_var"] == "read" and ops["write_var"] == "write" and ops["setup_communication"] == "session"
    assert ops["request_download"] == ops["download_block"] == ops["plc_control/_INSE"] == "program_download"
    assert ops["start_upload"] == ops["upload"] == ops["end_upload"] == "program_upload"
    assert ops["plc_control/_DELE"] == "program_delete" and ops["plc_stop"] == "control_stop"
    assert ops["plc_control/P_PROGRAM"] == "control_run" and ops["read_szl/identity"] == "identity"
    assert ops["plc_password"] == "auth" and ops["set_clock"] == "time_sync" and ops["read_szl"] == "diagnostic"
    assert ops["modify_variable"] == ops["force"] == "write" and ops["mode_transition"] == "mode_change"
    assert ops["get_multi_variables"] == "read" and ops["set_variable"] == "write"
    names = [f.name for f in DISSECTOR.fields]
    assert len(names) == len(set(names))
    assert DISSECTOR.wireshark is not None
    assert {key.partition("@")[0] for key in DISSECTOR.wireshark.fields} <= set(names)


def test_docs_hold_the_operation_table() -> None:
    """sensor/protocols/s7comm.md lists exactly DISSECTOR.operations under its operation heading."""
    text = (REPO / "sensor" / "protocols" / "s7comm.md").read_text()
    section = text.split("## Function to `ics.operation`", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[1].startswith("`"):
            rows[cells[1].strip("`")] = cells[3]
    assert rows == dict(DISSECTOR.operations)
