"""The Modbus/TCP dissector, driven directly through its Session with bytes.

Crafted PDUs (the examples of the Modbus Application Protocol specification
where it has one) with exact expected events; the same streams split at every
byte; gaps; hypothesis fuzzing; and a differential run against tshark on the
shared captures.
"""

from __future__ import annotations

import difflib
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6
from scapy.utils import rdpcap

from sensor.dissect import OPERATIONS, ProtocolViolation
from sensor.protocols import registry
from sensor.protocols.modbus import DISSECTOR, ModbusSession, probe
from sensor.schema import COMMON_FIELDS
from tests.sensor.protocols import crafting

REPO = Path(__file__).resolve().parents[3]
PCAPS = REPO.parent / "shared" / "pcaps"
DIFFERENTIAL = [
    PCAPS / "iti/pcaps/ModbusTCP/Modbus/modbus_test.pcap",
    PCAPS / "icsnpp-modbus/testing/traces/modbus_example.pcap",
    PCAPS / "suricata-verify/tests/modbus/modbus.pcap",
    PCAPS / "iti/pcaps/bro/modbus/modbusSmall.pcap",
]
FUZZ = [PCAPS / "iti/pcaps/bro/modbus/fuzz-72.pcap", PCAPS / "iti/pcaps/bro/modbus/fuzz-1011.pcap"]
DECLARED = {f.name for f in DISSECTOR.fields} | {f.name for f in COMMON_FIELDS}

T_REQ, T_RESP = 100.0, 100.25
PAIRED = {"modbus.request_time_ms": 100000, "modbus.response_time_ms": 250.0}


def frame(tid: int, unit: int, pdu_hex: str | bytes) -> bytes:
    """An MBAP frame around ``pdu`` (hex text may contain spaces and 'quoted ASCII')."""
    pdu = pdu_hex if isinstance(pdu_hex, bytes) else pdu_bytes(pdu_hex)
    return tid.to_bytes(2, "big") + b"\x00\x00" + (len(pdu) + 1).to_bytes(2, "big") + bytes([unit]) + pdu


def pdu_bytes(text: str) -> bytes:
    out = bytearray()
    for i, part in enumerate(text.split("'")):
        out += part.encode() if i % 2 else bytes.fromhex(part)
    return bytes(out)


def head(tid: int, unit: int, fc: int, name: str, op: str, role: str) -> dict[str, Any]:
    ev: dict[str, Any] = {
        "modbus.transaction_id": tid, "modbus.unit_id": unit, "modbus.function_code": fc,
        "modbus.function": name, "event.action": name, "ics.function": name, "ics.operation": op,
        "ics.role": role, "ics.unit": str(unit),
    }
    if role == "response":
        ev["ics.status"] = "ok"
        ev["event.outcome"] = "success"
    return ev


def addr(address: int, quantity: int, prefix: str) -> dict[str, Any]:
    return {"modbus.address": address, "ics.address_start": address, "modbus.quantity": quantity,
            "ics.address_count": quantity, "ics.tag": [f"{prefix}:{address}"]}


def vals(values: list[int]) -> dict[str, Any]:
    return {"modbus.values": values, "ics.values": values}


def exchange(request: bytes, response: bytes | None = None,
             session: ModbusSession | None = None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    session = session or ModbusSession()
    req = session.feed(request, True, T_REQ)
    resp = session.feed(response, False, T_RESP) if response is not None else []
    return req, resp


COIL19 = addr(19, 19, "coil")
FC15 = {**addr(19, 10, "coil"), **vals([1, 0, 1, 1, 0, 0, 1, 1, 1, 0])}
FC16 = {**addr(1, 2, "hr"), **vals([10, 258])}
FC20_RECORDS = [
    {"reference_type": 6, "file_number": 4, "record_number": 1, "record_length": 2},
    {"reference_type": 6, "file_number": 3, "record_number": 9, "record_length": 2},
]
FC21_RECORDS = [{"reference_type": 6, "file_number": 4, "record_number": 7, "record_length": 3,
                 "values": [0x06AF, 0x04BE, 0x100D]}]
FC23_REQ = {"modbus.read_address": 3, "modbus.read_quantity": 6, "modbus.write_address": 14,
            "modbus.write_quantity": 3}
FIFO = {"modbus.fifo_address": 1246, "modbus.address": 1246, "ics.address_start": 1246,
        "ics.tag": ["hr:1246"]}
QUERY = {"modbus.subfunction_code": 0, "modbus.subfunction": "return_query_data",
         "modbus.diagnostic_data": "a537"}
DEVICE_ID = {"modbus.subfunction_code": 14, "modbus.subfunction": "read_device_identification"}

# (fc, name, ics.operation, request PDU, request fields, response PDU, response fields)
CASES: list[tuple[int, str, str, str, dict[str, Any], str, dict[str, Any]]] = [
    (1, "read_coils", "read", "01 0013 0013", COIL19, "01 03 CD 6B 05",
     {"modbus.byte_count": 3, **vals([1, 0, 1, 1, 0, 0, 1, 1, 1, 1, 0, 1, 0, 1, 1, 0, 1, 0, 1]), **COIL19}),
    (2, "read_discrete_inputs", "read", "02 00C4 0016", addr(196, 22, "di"), "02 03 AC DB 35",
     {"modbus.byte_count": 3, **addr(196, 22, "di"),
      **vals([0, 0, 1, 1, 0, 1, 0, 1, 1, 1, 0, 1, 1, 0, 1, 1, 1, 0, 1, 0, 1, 1])}),
    (3, "read_holding_registers", "read", "03 006B 0003", addr(107, 3, "hr"), "03 06 022B 0000 0064",
     {"modbus.byte_count": 6, **vals([555, 0, 100]), **addr(107, 3, "hr")}),
    (4, "read_input_registers", "read", "04 0008 0001", addr(8, 1, "ir"), "04 02 000A",
     {"modbus.byte_count": 2, **vals([10]), **addr(8, 1, "ir")}),
    (5, "write_single_coil", "write", "05 00AC FF00", {**addr(172, 1, "coil"), **vals([1])}, "05 00AC FF00",
     {**addr(172, 1, "coil"), **vals([1])}),
    (6, "write_single_register", "write", "06 0001 0003", {**addr(1, 1, "hr"), **vals([3])}, "06 0001 0003",
     {**addr(1, 1, "hr"), **vals([3])}),
    (7, "read_exception_status", "diagnostic", "07", {}, "07 6D", vals([0x6D])),
    (8, "diagnostics", "diagnostic", "08 0000 A537", QUERY, "08 0000 A537", QUERY),
    (11, "get_comm_event_counter", "diagnostic", "0B", {}, "0B FFFF 0108", vals([0xFFFF, 0x108])),
    (12, "get_comm_event_log", "diagnostic", "0C", {}, "0C 08 0000 0108 0121 2000",
     {"modbus.byte_count": 8, **vals([0, 0x108, 0x121])}),
    (15, "write_multiple_coils", "write", "0F 0013 000A 02 CD 01", {**FC15, "modbus.byte_count": 2},
     "0F 0013 000A", FC15),
    (16, "write_multiple_registers", "write", "10 0001 0002 04 000A 0102", {**FC16, "modbus.byte_count": 4},
     "10 0001 0002", FC16),
    (17, "report_server_id", "identity", "11", {}, "11 05 01 FF 'ABC'",
     {"modbus.byte_count": 5, "modbus.server_id": "\\x01\\xffABC"}),
    (20, "read_file_record", "file_read", "14 0E 06 0004 0001 0002 06 0003 0009 0002",
     {"modbus.byte_count": 14, "modbus.file_records": FC20_RECORDS},
     "14 0C 05 06 0DFE 0020 05 06 33CD 0040",
     {"modbus.byte_count": 12, "modbus.file_records": [
         {"reference_type": 6, "record_length": 2, "values": [0x0DFE, 0x20], "file_number": 4,
          "record_number": 1},
         {"reference_type": 6, "record_length": 2, "values": [0x33CD, 0x40], "file_number": 3,
          "record_number": 9}]}),
    (21, "write_file_record", "file_write", "15 0D 06 0004 0007 0003 06AF 04BE 100D",
     {"modbus.byte_count": 13, "modbus.file_records": FC21_RECORDS},
     "15 0D 06 0004 0007 0003 06AF 04BE 100D",
     {"modbus.byte_count": 13, "modbus.file_records": FC21_RECORDS}),
    (22, "mask_write_register", "write", "16 0004 00F2 0025",
     {**addr(4, 1, "hr"), "modbus.and_mask": 0xF2, "modbus.or_mask": 0x25}, "16 0004 00F2 0025",
     {**addr(4, 1, "hr"), "modbus.and_mask": 0xF2, "modbus.or_mask": 0x25}),
    (23, "read_write_multiple_registers", "write", "17 0003 0006 000E 0003 06 00FF 00FF 00FF",
     {**FC23_REQ, "ics.address_start": 14, "ics.address_count": 3, "ics.tag": ["hr:14"],
      "modbus.byte_count": 6, **vals([255, 255, 255])},
     "17 0C 00FE 0ACD 0001 0003 000D 00FF",
     {**FC23_REQ, "ics.address_start": 3, "ics.address_count": 6, "ics.tag": ["hr:3"],
      "modbus.byte_count": 12, **vals([0xFE, 0xACD, 1, 3, 0xD, 0xFF])}),
    (24, "read_fifo_queue", "read", "18 04DE", FIFO, "18 0006 0002 01B8 1284",
     {**FIFO, "modbus.byte_count": 6, "modbus.fifo_count": 2, "ics.address_count": 2, **vals([440, 4740])}),
    (43, "encapsulated_interface_transport", "identity", "2B 0E 01 00",
     {**DEVICE_ID, "modbus.device_id.read_code": 1, "modbus.device_id.object_id": 0},
     "2B 0E 01 01 00 00 03 00 08 'Acme Inc' 01 05 'PLC-9' 02 04 'V2.1'",
     {**DEVICE_ID, "modbus.device_id.read_code": 1, "modbus.device_id.object_id": 0,
      "modbus.device_id.conformity_level": 1,
      "modbus.device_id.more_follows": False, "modbus.device_id.next_object_id": 0,
      "modbus.device_id.object_count": 3, "modbus.device_id.vendor_name": "Acme Inc",
      "modbus.device_id.product_code": "PLC-9", "modbus.device_id.major_minor_revision": "V2.1"}),
    (43, "encapsulated_interface_transport", "identity", "2B 0E 03 03",
     {**DEVICE_ID, "modbus.device_id.read_code": 3, "modbus.device_id.object_id": 3},
     "2B 0E 03 83 FF 80 04 03 0C 'https://x.io' 04 03 'PLC' 05 02 'M1' 06 03 'App'",
     {**DEVICE_ID, "modbus.device_id.read_code": 3, "modbus.device_id.object_id": 3,
      "modbus.device_id.conformity_level": 0x83,
      "modbus.device_id.more_follows": True, "modbus.device_id.next_object_id": 0x80,
      "modbus.device_id.object_count": 4, "modbus.device_id.vendor_url": "https://x.io",
      "modbus.device_id.product_name": "PLC", "modbus.device_id.model_name": "M1",
      "modbus.device_id.user_application_name": "App"}),
    (43, "encapsulated_interface_transport", "identity", "2B 0E 03 80",
     {**DEVICE_ID, "modbus.device_id.read_code": 3, "modbus.device_id.object_id": 0x80},
     "2B 0E 03 83 00 00 02 80 03 'abc' 81 02 01 02",
     {**DEVICE_ID, "modbus.device_id.read_code": 3, "modbus.device_id.object_id": 0x80,
      "modbus.device_id.conformity_level": 0x83,
      "modbus.device_id.more_follows": False, "modbus.device_id.next_object_id": 0,
      "modbus.device_id.object_count": 2,
      "modbus.device_id.objects": {"object_128": "abc", "object_129": "\\x01\\x02"}}),
    (43, "encapsulated_interface_transport", "other", "2B 0D 00 01 02 03",
     {"modbus.subfunction_code": 13, "modbus.subfunction": "canopen_general_reference"}, "2B 0D 00 01 02 03",
     {"modbus.subfunction_code": 13, "modbus.subfunction": "canopen_general_reference"}),
    (65, "unknown-65", "other", "41 0102", {}, "41 0304", {}),
]


def case_id(case: tuple[Any, ...]) -> str:
    return f"fc{case[0]}-{case[3][3:8].strip() or 'plain'}"


@pytest.mark.parametrize("case", CASES, ids=[case_id(c) for c in CASES])
def test_every_function_request_and_response(case: tuple[Any, ...]) -> None:
    fc, name, op, req_hex, req_fields, resp_hex, resp_fields = case
    req, resp = exchange(frame(0x1234, 17, req_hex), frame(0x1234, 17, resp_hex))
    assert req == [{**head(0x1234, 17, fc, name, op, "request"), **req_fields}]
    assert resp == [{**head(0x1234, 17, fc, name, op, "response"), **PAIRED, **resp_fields}]
    assert set(req[0]) | set(resp[0]) <= DECLARED


def test_every_public_function_code_is_covered() -> None:
    covered = {c[0] for c in CASES}
    assert covered >= {1, 2, 3, 4, 5, 6, 7, 8, 11, 12, 15, 16, 17, 20, 21, 22, 23, 24, 43}
    names = {c[1] for c in CASES if not c[1].startswith("unknown")}
    assert names <= set(DISSECTOR.operations)


DIAGNOSTICS = [
    (0, "return_query_data", "diagnostic"),
    (1, "restart_communications_option", "restart"),
    (2, "return_diagnostic_register", "diagnostic"),
    (3, "change_ascii_input_delimiter", "diagnostic"),
    (4, "force_listen_only_mode", "mode_change"),
    (10, "clear_counters_and_diagnostic_register", "diagnostic"),
    (11, "return_bus_message_count", "diagnostic"),
    (12, "return_bus_communication_error_count", "diagnostic"),
    (13, "return_bus_exception_error_count", "diagnostic"),
    (14, "return_server_message_count", "diagnostic"),
    (15, "return_server_no_response_count", "diagnostic"),
    (16, "return_server_nak_count", "diagnostic"),
    (17, "return_server_busy_count", "diagnostic"),
    (18, "return_bus_character_overrun_count", "diagnostic"),
    (20, "clear_overrun_counter_and_flag", "diagnostic"),
    (99, "unknown-99", "diagnostic"),
]


@pytest.mark.parametrize(("sub", "name", "op"), DIAGNOSTICS)
def test_diagnostics_sub_functions(sub: int, name: str, op: str) -> None:
    pdu = bytes([8]) + sub.to_bytes(2, "big") + b"\xff\x00"
    req, resp = exchange(frame(1, 1, pdu), frame(1, 1, pdu[:3] + b"\x00\x2a"))
    fields = {"modbus.subfunction_code": sub, "modbus.subfunction": name}
    assert req == [{**head(1, 1, 8, "diagnostics", op, "request"), **fields,
                    "modbus.diagnostic_data": "ff00"}]
    assert resp == [{**head(1, 1, 8, "diagnostics", op, "response"), **PAIRED, **fields,
                     "modbus.diagnostic_data": "002a"}]


EXCEPTIONS = [(1, "illegal_function"), (2, "illegal_data_address"), (3, "illegal_data_value"),
              (4, "server_device_failure"), (5, "acknowledge"), (6, "server_device_busy"),
              (8, "memory_parity_error"), (10, "gateway_path_unavailable"),
              (11, "gateway_target_device_failed_to_respond")]


@pytest.mark.parametrize(("code", "name"), EXCEPTIONS)
def test_exception_response_names_the_refused_addresses(code: int, name: str) -> None:
    req, resp = exchange(frame(9, 1, "03 006B 0003"), frame(9, 1, bytes([0x83, code])))
    expected = {**head(9, 1, 3, "read_holding_registers", "read", "response"), **PAIRED, **addr(107, 3, "hr"),
                "ics.status": name, "event.outcome": "failure", "modbus.exception_code": code,
                "modbus.exception": name}
    assert resp == [expected]


def test_exception_keeps_the_sub_function_operation() -> None:
    _, resp = exchange(frame(2, 1, "08 0001 0000"), frame(2, 1, "88 01"))
    assert resp[0]["ics.operation"] == "restart"
    assert resp[0]["modbus.subfunction"] == "restart_communications_option"
    assert resp[0]["ics.status"] == "illegal_function"


def test_unknown_function_and_unknown_exception() -> None:
    req, resp = exchange(frame(3, 1, "64 00"), frame(3, 1, "E4 2A"))
    assert req == [head(3, 1, 100, "unknown-100", "other", "request")]
    assert resp == [{**head(3, 1, 100, "unknown-100", "other", "response"), **PAIRED,
                     "ics.status": "unknown-42", "event.outcome": "failure", "modbus.exception_code": 42,
                     "modbus.exception": "unknown-42", "event.type": ("protocol", "error"),
                     "modbus.anomaly": "unknown-exception-code"}]


ANOMALIES = [
    ("03 0000 007E", True, "quantity-out-of-range", {**addr(0, 126, "hr")}),
    ("01 0000 07D1", True, "quantity-out-of-range", {**addr(0, 2001, "coil")}),
    ("02 0005 0000", True, "quantity-out-of-range", {**addr(5, 0, "di")}),
    ("03 0000 0001 00", True, "pdu-length-mismatch", {**addr(0, 1, "hr")}),
    ("03 00", True, "pdu-length-mismatch", {}),
    ("10 0000 0002 03 000A01", True, "byte-count-mismatch",
     {**addr(0, 2, "hr"), "modbus.byte_count": 3, **vals([10])}),
    ("0F 0000 0010 01 FF", True, "byte-count-mismatch",
     {**addr(0, 16, "coil"), "modbus.byte_count": 1, **vals([1] * 8)}),
    ("05 0001 1234", True, "invalid-coil-value", {**addr(1, 1, "coil"), **vals([0x1234])}),
    ("83 02", True, "exception-in-request", {"modbus.function_code": 3}),
    ("03 04 0001", False, "byte-count-mismatch", {"modbus.byte_count": 4, **vals([1])}),
    ("03 03 000100", False, "byte-count-mismatch", {"modbus.byte_count": 3, **vals([1])}),
    ("07", False, "pdu-length-mismatch", {}),
    ("18 000A 0003 0001 0002 0003", False, "byte-count-mismatch",
     {"modbus.byte_count": 10, "modbus.fifo_count": 3, "ics.address_count": 3, **vals([1, 2, 3])}),
    ("18 0042 0020" + "0000" * 32, False, "quantity-out-of-range",
     {"modbus.byte_count": 0x42, "modbus.fifo_count": 32, "ics.address_count": 32, **vals([0] * 32)}),
    ("14 07 05 0001 0002 0003", True, "invalid-reference-type",
     {"modbus.byte_count": 7, "modbus.file_records": [
         {"reference_type": 5, "file_number": 1, "record_number": 2, "record_length": 3}]}),
]


@pytest.mark.parametrize(("pdu", "to_server", "reason", "fields"), ANOMALIES, ids=[a[2] + ":" + a[0][:10]
                                                                            for a in ANOMALIES])
def test_anomalies_are_events_with_a_reason(pdu: str, to_server: bool, reason: str,
                                            fields: dict[str, Any]) -> None:
    session = ModbusSession()
    (event,) = session.feed(frame(5, 1, pdu), to_server, T_REQ)
    fc = pdu_bytes(pdu)[0] & 0x7F
    assert event["event.type"] == ("protocol", "error")
    assert event["modbus.anomaly"] == reason
    for key, value in fields.items():
        assert event[key] == value, key
    assert event["modbus.function_code"] == fc
    assert session.stats["anomalies"] == 1


def test_read_response_against_its_request_quantity() -> None:
    _, resp = exchange(frame(1, 1, "03 0000 0002"), frame(1, 1, "03 06 0001 0002 0003"))
    assert resp[0]["modbus.anomaly"] == "byte-count-mismatch"
    assert resp[0]["modbus.values"] == [1, 2, 3]
    _, resp = exchange(frame(1, 1, "01 0000 0009"), frame(1, 1, "01 01 FF"))
    assert resp[0]["modbus.anomaly"] == "byte-count-mismatch"


def test_values_are_capped() -> None:
    pdu = bytes.fromhex("0F 0000 0BB8 FF") + b"\xff" * 255  # 3000 coils announced, 2040 bits carried
    (event,) = ModbusSession().feed(frame(1, 1, pdu[:253]), True, 0.0)
    assert event["modbus.anomaly"] == "quantity-out-of-range"
    assert len(event["modbus.values"]) == 8 * (253 - 6)
    (event,) = ModbusSession().feed(frame(1, 1, pdu[:259]), True, 0.0)  # length field 260, 2024 bits
    assert len(event["modbus.values"]) == 2000


def test_long_frames_are_anomalies_up_to_260() -> None:
    pdu = b"\x41" + bytes(257)  # length field 259
    (event,) = ModbusSession().feed(frame(1, 1, pdu), True, 0.0)
    assert event["modbus.anomaly"] == "length-too-large"
    assert event["modbus.function"] == "unknown-65"


@pytest.mark.parametrize(("raw", "reason", "offset"), [
    (b"\x00\x01\x00\x01\x00\x06\x01\x03\x00\x00\x00\x01", "protocol-id-not-zero", 12),
    (b"\x00\x01\x00\x00\x00\x01\x01\x03", "length-too-small", 12),
    (b"\x00\x01\x00\x00\x01\x05\x01\x03", "length-too-large", 12),
])
def test_framing_violations(raw: bytes, reason: str, offset: int) -> None:
    session = ModbusSession()
    good = frame(1, 1, "03 0000 0001")
    assert len(session.feed(good, True, 0.0)) == 1
    with pytest.raises(ProtocolViolation) as info:
        session.feed(raw, True, 0.0)
    assert (info.value.reason, info.value.offset) == (reason, offset)
    with pytest.raises(ProtocolViolation):  # the flow stays refused
        session.feed(good, True, 0.0)


def test_frames_before_a_violation_are_reported_first() -> None:
    session = ModbusSession()
    events = session.feed(frame(1, 1, "03 0000 0001") + b"\x00\x02\x00\x07\x00\x06\x01\x03", True, 0.0)
    assert [e["modbus.transaction_id"] for e in events] == [1]
    with pytest.raises(ProtocolViolation) as info:
        session.feed(b"", True, 0.0)
    assert (info.value.reason, info.value.offset) == ("protocol-id-not-zero", 12)


# -- pairing -----------------------------------------------------------------------------------------


def test_pairing_by_transaction_and_unit() -> None:
    session = ModbusSession()
    session.feed(frame(1, 1, "03 0010 0001") + frame(1, 2, "03 0020 0001"), True, 1.0)
    resp = session.feed(frame(1, 2, "03 02 0007") + frame(1, 1, "03 02 0009"), False, 1.5)
    assert [(e["modbus.address"], e["modbus.values"]) for e in resp] == [(0x20, [7]), (0x10, [9])]
    assert session.stats["paired"] == 2


def test_pairing_times_out() -> None:
    session = ModbusSession(timeout=60.0)
    session.feed(frame(1, 1, "03 0010 0001"), True, 0.0)
    (event,) = session.feed(frame(1, 1, "03 02 0007"), False, 61.0)
    assert "modbus.address" not in event and "modbus.response_time_ms" not in event
    assert session.stats["requests_timed_out"] == 1
    session.feed(frame(2, 1, "03 0020 0001"), True, 100.0)
    session.feed(frame(3, 1, "03 0030 0001"), True, 200.0)  # expires the unanswered request 2
    assert session.stats["requests_timed_out"] == 2
    (event,) = session.feed(frame(3, 1, "03 02 0007"), False, 200.5)
    assert event["modbus.address"] == 0x30 and event["modbus.response_time_ms"] == 500.0


def test_pairing_is_capped_oldest_first() -> None:
    session = ModbusSession(max_outstanding=3)
    for tid in range(5):
        session.feed(frame(tid, 1, f"03 00{tid:02x} 0001"), True, 0.0)
    assert session.stats["requests_dropped"] == 2
    answered = [session.feed(frame(tid, 1, "03 02 0007"), False, 0.1)[0] for tid in range(5)]
    assert [e.get("modbus.address") for e in answered] == [None, None, 2, 3, 4]
    assert session.stats["unpaired_responses"] == 2


def test_pairing_needs_the_same_function() -> None:
    session = ModbusSession()
    session.feed(frame(1, 1, "03 0010 0001"), True, 0.0)
    (event,) = session.feed(frame(1, 1, "04 02 0007"), False, 0.1)
    assert "modbus.address" not in event
    assert session.stats["function_mismatch"] == 1


def test_unpaired_coil_response_keeps_every_bit() -> None:
    (event,) = ModbusSession().feed(frame(1, 1, "01 02 0F 80"), False, 0.0)
    assert event["modbus.values"] == [1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]
    assert "modbus.address" not in event and "modbus.anomaly" not in event


# -- streams: splits, batching, gaps ----------------------------------------------------------------


def streams() -> tuple[bytes, bytes]:
    requests = b"".join(frame(tid, 3, c[3]) for tid, c in enumerate(CASES))
    responses = b"".join(frame(tid, 3, c[5]) for tid, c in enumerate(CASES))
    return requests, responses


def run(chunks: Iterable[bytes], to_server: bool, session: ModbusSession) -> list[dict[str, Any]]:
    return [e for chunk in chunks for e in session.feed(chunk, to_server, T_REQ)]


def test_split_at_every_byte_and_batched_give_identical_events() -> None:
    requests, responses = streams()
    one_by_one = ModbusSession()
    per_frame = [e for tid, c in enumerate(CASES)
                 for e in one_by_one.feed(frame(tid, 3, c[3]), True, T_REQ)]
    per_frame_resp = [e for tid, c in enumerate(CASES)
                      for e in one_by_one.feed(frame(tid, 3, c[5]), False, T_REQ)]
    assert len(per_frame) == len(per_frame_resp) == len(CASES)
    batched = ModbusSession()
    assert run([requests], True, batched) == per_frame
    assert run([responses], False, batched) == per_frame_resp
    for stream, to_server, expected in ((requests, True, per_frame), (responses, False, per_frame_resp)):
        for cut in range(1, len(stream)):
            session = ModbusSession()
            if not to_server:
                run([requests], True, session)
            assert run([stream[:cut], stream[cut:]], to_server, session) == expected, cut
        session = ModbusSession()
        if not to_server:
            run([requests], True, session)
        assert run([stream[i:i + 1] for i in range(len(stream))], to_server, session) == expected


def frame_starts(stream: bytes) -> list[int]:
    starts, off = [], 0
    while off < len(stream):
        starts.append(off)
        off += 6 + int.from_bytes(stream[off + 4:off + 6], "big")
    return starts


@pytest.mark.parametrize("chunk", [1, 5, 1000])
@pytest.mark.parametrize("to_server", [True, False])
def test_gap_then_resync(chunk: int, to_server: bool) -> None:
    """Every frame that starts after the lost bytes is found again (resync trusts public codes only)."""
    stream = b"".join(frame(tid, 3, c[3] if to_server else c[5]) for tid, c in enumerate(CASES) if c[0] != 65)
    reference = run([stream], to_server, ModbusSession())
    starts = frame_starts(stream)
    for lost_from in range(0, len(stream) - 40, 7):
        for lost in (1, 3, 8, 13, 40):
            session = ModbusSession()
            before = run([stream[:lost_from]], to_server, session)
            session.on_gap(lost, to_server)
            rest = stream[lost_from + lost:]
            after = run([rest[i:i + chunk] for i in range(0, len(rest), chunk)], to_server, session)
            complete = sum(1 for s in starts[1:] + [len(stream)] if s <= lost_from)
            resumed = sum(1 for s in starts if s < lost_from + lost)
            assert before == reference[:complete]
            assert after == reference[resumed:], (lost_from, lost)


def test_gap_in_a_real_polling_stream_loses_only_the_damaged_frames() -> None:
    stream = b"".join(frame(tid, 1, f"03 {tid:04x} 000A") for tid in range(300))
    session = ModbusSession()
    run([stream[:1000]], True, session)
    session.on_gap(77, True)
    after = run([stream[1077:]], True, session)
    assert [e["modbus.transaction_id"] for e in after] == list(range(1080 // 12, 300))
    assert session.stats["resync_skipped_bytes"] == 1080 - 1077


def test_no_frame_long_after_a_gap_is_a_violation() -> None:
    session = ModbusSession()
    session.on_gap(10, False)
    with pytest.raises(ProtocolViolation) as info:
        for _ in range(100):
            session.feed(b"\xff" * 1000, False, 0.0)
    assert "after a gap" in info.value.reason


def test_gap_accounting_keeps_violation_offsets_in_stream_coordinates() -> None:
    session = ModbusSession()
    session.feed(frame(1, 1, "03 0000 0001"), True, 0.0)
    session.on_gap(100, True)
    session.feed(frame(2, 1, "03 0000 0001") + frame(3, 1, "03 0000 0001"), True, 0.0)
    with pytest.raises(ProtocolViolation) as info:
        session.feed(b"\x00\x04\x00\x09\x00\x06\x01\x03", True, 0.0)
    assert info.value.offset == 12 + 100 + 24


# -- hostile bytes ----------------------------------------------------------------------------------


def drive(session: ModbusSession, chunks: list[tuple[bool, bytes]]) -> list[dict[str, Any]]:
    """crafting.drive (only events or ProtocolViolation; declared fields, action, operation, finite
    values), and every event names its Modbus function."""
    events = crafting.drive(session, chunks, DECLARED)
    for event in events:
        assert isinstance(event["modbus.function"], str), event
    return events


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.booleans(), st.binary(max_size=300)), max_size=8))
def test_random_bytes(chunks: list[tuple[bool, bytes]]) -> None:
    drive(ModbusSession(), chunks)
    for _, chunk in chunks:
        assert probe(chunk, True) in (True, False)


def valid_stream() -> bytes:
    requests, responses = streams()
    return requests + responses


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_truncated_and_mutated_frames(data: st.DataObject) -> None:
    stream = valid_stream()
    cut = data.draw(st.integers(0, len(stream)))
    garbage = data.draw(st.binary(max_size=64))
    to_server = data.draw(st.booleans())
    drive(ModbusSession(), [(to_server, stream[:cut] + garbage)])
    mutated = bytearray(stream)
    for _ in range(data.draw(st.integers(1, 8))):
        mutated[data.draw(st.integers(0, len(stream) - 1))] = data.draw(st.integers(0, 255))
    session = ModbusSession()
    drive(session, [(True, bytes(mutated[:cut])), (False, bytes(mutated)), (True, bytes(mutated[cut:]))])
    session.on_gap(data.draw(st.integers(1, 100)), to_server)
    drive(session, [(to_server, bytes(mutated[cut:]))])


def test_every_single_pdu_truncated_at_every_length_in_both_directions() -> None:
    for case in CASES:
        for hex_pdu in (case[3], case[5]):
            pdu = pdu_bytes(hex_pdu)
            for n in range(1, len(pdu) + 1):
                for to_server in (True, False):
                    events = drive(ModbusSession(), [(to_server, frame(1, 1, pdu[:n]))])
                    assert len(events) == 1


# -- detection and registration ---------------------------------------------------------------------


def test_probe() -> None:
    requests, responses = streams()
    assert probe(frame(1, 1, "03 0000 0001"), True)
    assert probe(frame(1, 1, "83 02"), False)
    assert probe(requests, True) and probe(responses, False)
    assert probe(requests[:40], True)  # whole first frames, the last cut by the segment
    assert not probe(frame(1, 1, "03 0000 0001")[:-1], True)  # the first frame must be whole
    assert not probe(frame(1, 1, "64 0000"), True)  # not a public function code
    assert not probe(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", True)
    assert not probe(bytes.fromhex("16030100a5010000a10303") + bytes(40), True)
    assert not probe(b"\x00\x01\x00\x00\x00\x06", True)
    assert not probe(frame(1, 1, "03 0000 0001") + b"\x00\x02\x00\x05\x00\x06\x01\x03", True)


def test_registration() -> None:
    assert registry()["modbus"] is DISSECTOR
    assert DISSECTOR.tcp_ports == {502} and not DISSECTOR.udp_ports
    assert isinstance(DISSECTOR.new_session(), ModbusSession)
    assert set(DISSECTOR.operations.values()) <= set(OPERATIONS)
    assert DISSECTOR.operations["read_holding_registers"] == "read"
    assert DISSECTOR.operations["read_write_multiple_registers"] == "write"
    assert DISSECTOR.operations["report_server_id"] == "identity"
    assert DISSECTOR.operations["diagnostics/restart_communications_option"] == "restart"
    assert DISSECTOR.operations["diagnostics/force_listen_only_mode"] == "mode_change"
    assert DISSECTOR.operations["encapsulated_interface_transport/read_device_identification"] == "identity"
    names = [f.name for f in DISSECTOR.fields]
    assert len(names) == len(set(names))


def test_docs_hold_the_operation_table() -> None:
    """sensor/protocols/modbus.md lists exactly DISSECTOR.operations under its operation heading."""
    text = (REPO / "sensor" / "protocols" / "modbus.md").read_text()
    section = text.split("## Function to `ics.operation`", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[1].startswith("`"):
            rows[cells[1].strip("`")] = cells[2]
    assert rows == dict(DISSECTOR.operations)


# -- real captures ----------------------------------------------------------------------------------

Chunk = tuple[float, bool, bytes | int]


def tcp_chunks(path: Path) -> dict[tuple[str, int, str, int], list[Chunk]]:
    """Per connection (client ip, port, server ip, port): in-order chunks of both directions.

    Each direction's segments are sorted by sequence number, de-duplicated and
    trimmed of overlaps; a hole becomes a gap (an int). Both directions are then
    merged by the time of the segment that completed each chunk, as a reassembler
    would deliver them.
    """
    segments: dict[tuple[tuple[str, int, str, int], bool], list[tuple[int, float, bytes]]] = {}
    for pkt in rdpcap(str(path)):
        if TCP not in pkt:
            continue
        ip = pkt[IP] if IP in pkt else pkt[IPv6]
        tcp = pkt[TCP]
        # The IP length bounds the payload: Ethernet padding of short frames is not stream data.
        size = ip.len - 4 * ip.ihl if IP in pkt else ip.plen
        payload = bytes(tcp.payload)[:max(size - 4 * tcp.dataofs, 0)]
        if not payload:
            continue
        to_server = tcp.dport == 502
        key = (ip.src, tcp.sport, ip.dst, tcp.dport) if to_server else (ip.dst, tcp.dport, ip.src, tcp.sport)
        segments.setdefault((key, to_server), []).append((tcp.seq, float(pkt.time), payload))
    flows: dict[tuple[str, int, str, int], list[Chunk]] = {}
    for (key, to_server), segs in segments.items():
        base = segs[0][0]
        rel = sorted((((seq - base + 0x80000000) & 0xFFFFFFFF) - 0x80000000, ts, p) for seq, ts, p in segs)
        expected = rel[0][0]
        out = flows.setdefault(key, [])
        for start, ts, payload in rel:
            if start + len(payload) <= expected:
                continue  # retransmission
            if start > expected:
                out.append((ts, to_server, start - expected))
            else:
                payload = payload[expected - start:]
            out.append((ts, to_server, payload))
            expected = max(expected, start) + len(payload)
    for chunks in flows.values():
        chunks.sort(key=lambda c: c[0])
    return flows


def dissect(path: Path) -> tuple[dict[tuple[str, int, str, int, bool], list[dict[str, Any]]], int]:
    """Events per connection and direction; also the number of flows refused by a violation."""
    events: dict[tuple[str, int, str, int, bool], list[dict[str, Any]]] = {}
    violations = 0
    for key, chunks in tcp_chunks(path).items():
        session = ModbusSession()
        try:
            for ts, to_server, chunk in chunks:
                if isinstance(chunk, int):
                    session.on_gap(chunk, to_server)
                    continue
                for event in session.feed(chunk, to_server, ts):
                    events.setdefault((*key, to_server), []).append(event)
        except ProtocolViolation:
            violations += 1
    return events, violations


def tshark_pdus(path: Path) -> dict[tuple[str, int, str, int, bool], list[tuple[str, ...]]]:
    fields = ["ip.src", "tcp.srcport", "ip.dst", "tcp.dstport", "mbtcp.trans_id", "mbtcp.unit_id",
              "modbus.func_code", "modbus.reference_num", "modbus.word_cnt", "modbus.bit_cnt"]
    cmd = ["tshark", "-r", str(path), "-Y", "modbus", "-T", "fields", "-E", "occurrence=a",
           "-E", "aggregator=;", "-E", "separator=/t"]
    for name in fields:
        cmd += ["-e", name]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    pdus: dict[tuple[str, int, str, int, bool], list[tuple[str, ...]]] = {}
    for line in out.splitlines():
        src, sport, dst, dport, tids, units, fcs, refs, words, bits = line.split("\t")
        to_server = int(dport) == 502
        if to_server:
            key = (src, int(sport), dst, int(dport), True)
        else:
            key = (dst, int(dport), src, int(sport), False)
        tid_list, unit_list, fc_list = tids.split(";"), units.split(";"), fcs.split(";")
        single = len(tid_list) == 1
        for i, tid in enumerate(tid_list):
            unit = unit_list[i] if i < len(unit_list) else "?"
            fc = fc_list[i] if i < len(fc_list) else "?"
            # Address and quantity only where a frame holds one PDU (otherwise they do not line up).
            ref = refs if single and ";" not in refs else ""
            count = (words or bits) if single and ";" not in words + bits else ""
            pdus.setdefault(key, []).append((tid, unit, fc, ref, count))
    return pdus


def agreement(path: Path) -> tuple[int, int, int, int, int]:
    """(matching PDUs, our PDUs, tshark PDUs, address/quantity comparisons, agreeing ones)."""
    ours, _ = dissect(path)
    theirs = tshark_pdus(path)
    matched = compared = agreed = 0
    for key in set(ours) | set(theirs):
        mine = ours.get(key, [])
        other = theirs.get(key, [])
        a = [(str(e["modbus.transaction_id"]), str(e["modbus.unit_id"]), str(e["modbus.function_code"]))
             for e in mine]
        b = [t[:3] for t in other]
        matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
        for block in matcher.get_matching_blocks():
            matched += block.size
            for k in range(block.size):
                event, (_, _, _, ref, count) = mine[block.a + k], other[block.b + k]
                if ref:
                    compared += 1
                    address = event.get("modbus.address", event.get("modbus.read_address"))
                    quantity = event.get("modbus.quantity", event.get("modbus.read_quantity"))
                    agreed += str(address) == ref and (not count or str(quantity) == count)
    total_ours = sum(len(v) for v in ours.values())
    total_theirs = sum(len(v) for v in theirs.values())
    return matched, total_ours, total_theirs, compared, agreed


@pytest.mark.parametrize("path", DIFFERENTIAL, ids=[p.name for p in DIFFERENTIAL])
def test_differential_against_tshark(path: Path) -> None:
    matched, ours, theirs, compared, agreed = agreement(path)
    share = matched / max(ours, theirs)
    print(f"\n{path.name}: {matched} of {max(ours, theirs)} PDUs agree on transaction id, unit id and"
          f" function code ({100 * share:.2f}%; ours {ours}, tshark {theirs}); address/quantity agree on"
          f" {agreed} of {compared}")
    assert theirs > 0
    assert share >= 0.99
    assert agreed >= 0.99 * compared


@pytest.mark.parametrize("path", FUZZ, ids=[p.name for p in FUZZ])
def test_fuzz_captures_do_not_crash(path: Path) -> None:
    events, violations = dissect(path)
    for flow in events.values():
        for event in flow:
            assert set(event) <= DECLARED
    assert events or violations


def test_throughput_of_mixed_reads() -> None:
    """Report PDUs/s on a long polling stream (the target is 300k/s; the floor here absorbs slow CI)."""
    pairs = []
    for tid in range(5000):
        fc = 1 + tid % 4
        request = frame(tid, 1, bytes([fc, 0, tid % 200, 0, 16 if fc <= 2 else 10]))
        response = frame(tid, 1, bytes([fc, 2, 0xA5, 0x5A]) if fc <= 2 else bytes([fc, 20]) + bytes(20))
        pairs.append((request, response))
    best = 0.0
    for _ in range(3):
        session = ModbusSession()
        started = time.perf_counter()
        n = 0
        for ts, (request, response) in enumerate(pairs):
            n += len(session.feed(request, True, float(ts)))
            n += len(session.feed(response, False, ts + 0.001))
        best = max(best, n / (time.perf_counter() - started))
    print(f"\nmodbus: {best:,.0f} PDUs/s (one feed per PDU, mixed FC 1-4 requests and responses)")
    assert n == 2 * len(pairs)
