"""The BACnet/IP dissector, driven directly through its Session with crafted datagrams.

Every BVLC function, NPDU addressing and network-layer message, every APDU type
and every confirmed and unconfirmed service (the examples of ASHRAE 135 Annex F
where it has one), with exact expected fields; pairing, segmentation, caps,
anomalies and violations; the ReadProperty fast path against the general
decoder; hypothesis fuzzing. The comparisons with Wireshark and Zeek on real
captures are in test_bacnet_reference.py.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sensor.dissect import OPERATIONS, ProtocolViolation
from sensor.protocols import bacnet as B
from sensor.protocols import registry
from sensor.protocols.bacnet import DISSECTOR, BacnetSession, probe
from sensor.schema import COMMON_FIELDS

REPO = Path(__file__).resolve().parents[3]
DECLARED = {f.name for f in DISSECTOR.fields} | {f.name for f in COMMON_FIELDS}
T_REQ, T_RESP = 100.0, 100.25

# -- building datagrams ------------------------------------------------------------------------------


def _tag(number: int, context: bool, content: bytes) -> bytes:
    """A BACnet tag with its content (extended tag numbers and lengths as the standard encodes them)."""
    first = 0x08 if context else 0
    ext = b""
    if number >= 15:
        first |= 0xF0
        ext = bytes([number])
    else:
        first |= number << 4
    n = len(content)
    if n < 5:
        return bytes([first | n]) + ext + content
    if n < 254:
        return bytes([first | 5]) + ext + bytes([n]) + content
    if n < 65536:
        return bytes([first | 5]) + ext + b"\xfe" + n.to_bytes(2, "big") + content
    return bytes([first | 5]) + ext + b"\xff" + n.to_bytes(4, "big") + content


def u(value: int) -> bytes:
    """Minimal big-endian octets of an unsigned integer (at least one)."""
    return value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big")


def s(value: int) -> bytes:
    size = 1
    while not -(1 << (8 * size - 1)) <= value < (1 << (8 * size - 1)):
        size += 1
    return value.to_bytes(size, "big", signed=True)


def oid(otype: int, instance: int) -> bytes:
    return ((otype << 22) | instance).to_bytes(4, "big")


def ctx(number: int, content: bytes) -> bytes:
    return _tag(number, True, content)


def opening(number: int) -> bytes:
    return bytes([(number << 4) | 0x0E]) if number < 15 else bytes([0xFE, number])


def closing(number: int) -> bytes:
    return bytes([(number << 4) | 0x0F]) if number < 15 else bytes([0xFF, number])


def wrap(number: int, *content: bytes) -> bytes:
    return opening(number) + b"".join(content) + closing(number)


def app_null() -> bytes:
    return b"\x00"


def app_bool(value: bool) -> bytes:
    return bytes([0x10 | int(value)])


def app_uint(value: int) -> bytes:
    return _tag(2, False, u(value))


def app_int(value: int) -> bytes:
    return _tag(3, False, s(value))


def app_real(value: float) -> bytes:
    return _tag(4, False, struct.pack(">f", value))


def app_double(value: float) -> bytes:
    return _tag(5, False, struct.pack(">d", value))


def app_octets(value: bytes) -> bytes:
    return _tag(6, False, value)


def app_text(value: str, charset: int = 0) -> bytes:
    encoded = {0: "utf-8", 4: "utf-16-be", 3: "utf-32-be", 5: "latin-1"}[charset]
    return _tag(7, False, bytes([charset]) + value.encode(encoded))


def ctx_text(number: int, value: str) -> bytes:
    return ctx(number, b"\x00" + value.encode())


def app_bits(bits: str) -> bytes:
    unused = (8 - len(bits) % 8) % 8
    padded = bits + "0" * unused
    return _tag(8, False, bytes([unused]) + bytes(int(padded[i:i + 8], 2) for i in range(0, len(padded), 8)))


def app_enum(value: int) -> bytes:
    return _tag(9, False, u(value))


def app_date(year: int, month: int, day: int, weekday: int = 255) -> bytes:
    return _tag(10, False, bytes([year - 1900 if year != 255 else 255, month, day, weekday]))


def app_time(h: int, m: int, sec: int, hundredths: int) -> bytes:
    return _tag(11, False, bytes([h, m, sec, hundredths]))


def app_oid(otype: int, instance: int) -> bytes:
    return _tag(12, False, oid(otype, instance))


def confirmed(service: int, params: bytes = b"", invoke: int = 1, *, segmented_ok: bool = True,
              max_segments: int = 0, max_apdu: int = 5, seq: tuple[int, int, bool] | None = None) -> bytes:
    b0 = 0x00 | (0x02 if segmented_ok else 0)
    head = b""
    if seq is not None:
        b0 |= 0x08 | (0x04 if seq[2] else 0)
        head = bytes([seq[0], seq[1]])
    return bytes([b0, (max_segments << 4) | max_apdu, invoke]) + head + bytes([service]) + params


def unconfirmed(service: int, params: bytes = b"") -> bytes:
    return bytes([0x10, service]) + params


def simple_ack(service: int, invoke: int = 1) -> bytes:
    return bytes([0x20, invoke, service])


def complex_ack(service: int, params: bytes = b"", invoke: int = 1,
                seq: tuple[int, int, bool] | None = None) -> bytes:
    if seq is None:
        return bytes([0x30, invoke, service]) + params
    return bytes([0x38 | (0x04 if seq[2] else 0), invoke, seq[0], seq[1], service]) + params


def segment_ack(invoke: int, seq: int, window: int, server: bool = False, nak: bool = False) -> bytes:
    return bytes([0x40 | (2 if nak else 0) | (1 if server else 0), invoke, seq, window])


def error(service: int, params: bytes, invoke: int = 1) -> bytes:
    return bytes([0x50, invoke, service]) + params


def reject(reason: int, invoke: int = 1) -> bytes:
    return bytes([0x60, invoke, reason])


def abort(reason: int, invoke: int = 1, server: bool = True) -> bytes:
    return bytes([0x70 | (1 if server else 0), invoke, reason])


def npdu(body: bytes, *, expecting_reply: bool = False, priority: int = 0, network: bool = False,
         dnet: tuple[int, bytes] | None = None, snet: tuple[int, bytes] | None = None, hops: int = 255) -> bytes:
    control = (0x80 if network else 0) | (0x04 if expecting_reply else 0) | priority
    head = b""
    if dnet is not None:
        control |= 0x20
        head += dnet[0].to_bytes(2, "big") + bytes([len(dnet[1])]) + dnet[1]
    if snet is not None:
        control |= 0x08
        head += snet[0].to_bytes(2, "big") + bytes([len(snet[1])]) + snet[1]
    if dnet is not None:
        head += bytes([hops])
    return bytes([1, control]) + head + body


def bvlc(function: int, payload: bytes = b"") -> bytes:
    return bytes([0x81, function]) + (4 + len(payload)).to_bytes(2, "big") + payload


def unicast(apdu: bytes, **kw: Any) -> bytes:
    return bvlc(0x0A, npdu(apdu, **kw))


def broadcast(apdu: bytes, **kw: Any) -> bytes:
    return bvlc(0x0B, npdu(apdu, **kw))


def feed(datagram: bytes, to_server: bool = True, session: BacnetSession | None = None,
         ts: float = T_REQ) -> dict[str, Any]:
    events = (session or BacnetSession()).feed(datagram, to_server, ts)
    assert len(events) == 1
    assert set(events[0]) <= DECLARED, set(events[0]) - DECLARED
    return events[0]


def exchange(request: bytes, response: bytes,
             session: BacnetSession | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    session = session or BacnetSession()
    return feed(request, True, session, T_REQ), feed(response, False, session, T_RESP)


def subset(event: dict[str, Any], expected: dict[str, Any]) -> None:
    """Every expected field is in the event with that value (and absent ones are absent: value None)."""
    for key, value in expected.items():
        if value is None:
            assert key not in event, (key, event.get(key))
        else:
            assert event.get(key) == value, (key, event.get(key), value)


UNICAST = {"bacnet.bvlc.function_code": 10, "bacnet.bvlc.function": "original_unicast_npdu",
           "bacnet.npdu.version": 1, "bacnet.npdu.priority": "normal"}
PAIRED = {"bacnet.request_time_ms": 100000, "bacnet.response_time_ms": 250.0}
AI3 = oid(0, 3)
ROLES = ("request", "response", "unsolicited")

# -- ReadProperty, the everyday exchange, field by field --------------------------------------------


def test_read_property_request_and_ack_exactly() -> None:
    request = unicast(confirmed(12, ctx(0, AI3) + ctx(1, u(85)), invoke=7), expecting_reply=True)
    response = unicast(complex_ack(12, ctx(0, AI3) + ctx(1, u(85)) + wrap(3, app_real(72.5)), invoke=7))
    req, resp = exchange(request, response)
    common = {"bacnet.object": "analog-input:3", "bacnet.object_type": "analog-input", "bacnet.object_instance": 3,
              "bacnet.property": "present-value", "bacnet.object_type_codes": [0], "bacnet.object_instances": [3],
              "bacnet.property_ids": [85], "bacnet.properties": ["present-value"], "bacnet.service": "read_property",
              "bacnet.confirmed_service_code": 12, "bacnet.apdu.invoke_id": 7, "event.action": "read_property",
              "ics.function": "read_property", "ics.operation": "read", "ics.tag": ["analog-input:3/present-value"]}
    assert req == {**UNICAST, **common, "bacnet.npdu.control": 4, "bacnet.npdu.expecting_reply": True,
                   "bacnet.apdu.type_code": 0, "bacnet.apdu.type": "confirmed_request",
                   "bacnet.apdu.segmented_response_accepted": True, "bacnet.apdu.max_segments": 0,
                   "bacnet.apdu.max_apdu": 1476, "ics.role": "request"}
    assert resp == {**UNICAST, **common, **PAIRED, "bacnet.npdu.control": 0, "bacnet.npdu.expecting_reply": False,
                    "bacnet.apdu.type_code": 3, "bacnet.apdu.type": "complex_ack", "bacnet.values": ["72.5"],
                    "ics.values": [72.5], "ics.role": "response", "ics.status": "ok", "event.outcome": "success"}


@pytest.mark.parametrize(("value", "text", "number"), [
    (app_null(), "null", None), (app_bool(True), "true", 1), (app_bool(False), "false", 0),
    (app_uint(70000), "70000", 70000), (app_int(-5), "-5", -5), (app_real(-1.5), "-1.5", -1.5),
    (app_double(2.25), "2.25", 2.25), (app_octets(b"\x01\xab"), "01ab", None),
    (app_text("Room 1"), "Room 1", None), (app_text("Zürich", 4), "Zürich", None),
    (app_text("Grüße", 5), "Grüße", None), (app_text("tab\there"), "tab\\there", None),
    (app_bits("0100"), "0100", None), (app_enum(7), "7", 7), (app_date(2024, 3, 9), "2024-03-09", None),
    (app_date(255, 255, 1), "*-*-01", None), (app_time(13, 5, 0, 25), "13:05:00.25", None),
    (app_time(255, 255, 255, 255), "*:*:*.*", None), (app_oid(8, 1234), "device:1234", None),
])
def test_application_tagged_values(value: bytes, text: str, number: float | None) -> None:
    """Each application tag type, in both the fast path (one value) and the general walk (two values)."""
    ack = feed(unicast(complex_ack(12, ctx(0, AI3) + ctx(1, u(28)) + wrap(3, value))), False)
    assert ack["bacnet.values"] == [text]
    assert ack.get("ics.values") == (None if number is None else [number])
    twice = feed(unicast(complex_ack(12, ctx(0, AI3) + ctx(1, u(28)) + wrap(3, value + value))), False)
    assert twice["bacnet.values"] == [text, text]
    assert "bacnet.anomaly" not in ack and "bacnet.anomaly" not in twice


@pytest.mark.parametrize(("prop", "otype", "value", "text"), [
    (36, 0, 2, "offnormal"), (117, 0, 62, "degrees-celsius"), (117, 0, 98, "percent"),
    (103, 0, 0, "no-fault-detected"), (79, 0, 8, "device"), (84, 3, 1, "reverse"), (85, 4, 1, "active"),
    (85, 5, 0, "inactive"), (85, 19, 1, "1"), (107, 8, 3, "no-segmentation"), (112, 8, 0, "operational"),
    (117, 0, 300, "300"), (36, 0, 99, "99"),
])
def test_enumerated_values_are_named_by_property(prop: int, otype: int, value: int, text: str) -> None:
    ack = feed(unicast(complex_ack(12, ctx(0, oid(otype, 1)) + ctx(1, u(prop)) + wrap(3, app_enum(value)))), False)
    assert ack["bacnet.values"] == [text] and ack["ics.values"] == [value]


def test_read_property_with_array_index_and_error_answer() -> None:
    request = unicast(confirmed(12, ctx(0, oid(8, 5)) + ctx(1, u(76)) + ctx(2, u(0))))
    response = unicast(error(12, app_enum(2) + app_enum(32)))
    req, resp = exchange(request, response)
    assert req["ics.tag"] == ["device:5/object-list[0]"] and req["bacnet.array_index"] == 0
    subset(resp, {"bacnet.apdu.type": "error", "bacnet.error_class_code": [2], "bacnet.error_class": ["property"],
                  "bacnet.error_code": [32], "bacnet.error": ["unknown-property"], "ics.status": "unknown-property",
                  "event.outcome": "failure", "ics.function": "read_property", "ics.operation": "read",
                  "bacnet.object": "device:5", "bacnet.property": "object-list", "bacnet.array_index": 0,
                  "ics.tag": ["device:5/object-list[0]"], **PAIRED})


def test_fast_path_and_general_walk_agree() -> None:
    """The ReadProperty fast path writes exactly what the grammar walk writes, for every shape it takes."""
    shapes = [ctx(0, AI3) + ctx(1, u(85)), ctx(0, oid(8, 4194303)) + ctx(1, u(76)) + ctx(2, u(3)),
              ctx(0, AI3) + ctx(1, u(600)), ctx(0, oid(130, 7)) + ctx(1, u(4194304))]
    values = [app_real(1.5), app_enum(62), app_text("x" * 300), app_oid(3, 9), app_bool(True), app_null(),
              app_date(2024, 1, 2), app_bits("101"), app_octets(bytes(200))]
    taken = 0
    for shape in shapes:
        for ack, params in [(False, shape)] + [(True, shape + wrap(3, v)) for v in values + [v + v for v in values]]:
            fast: dict[str, Any] = {}
            if not B._fast_read_property(params, 0, len(params), fast, ack):
                assert fast == {}  # declined before writing anything: the walk does it all
                continue
            taken += 1
            slow: dict[str, Any] = {}
            assert B._decode_service(params, 0, len(params), B._RP, slow) is None
            assert fast == slow, (params.hex(), fast, slow)
    assert taken == len(shapes) * (len(values) + 1) - len(shapes)  # all but two values and the 300-character string


# -- every confirmed service ------------------------------------------------------------------------

REINIT_PASSWORD = "secret-word"
CONFIRMED_CASES: list[tuple[int, str, str, bytes, dict[str, Any]]] = [
    (0, "acknowledge_alarm", "alarm",
     ctx(0, u(1)) + ctx(1, oid(0, 2)) + ctx(2, u(2)) + wrap(3, ctx(1, u(16))) + ctx_text(4, "MDL")
     + wrap(5, ctx(1, u(17))),
     {"bacnet.process_id": 1, "bacnet.object": "analog-input:2", "bacnet.to_state": "offnormal",
      "bacnet.acknowledgment_source": "MDL", "ics.tag": ["analog-input:2"]}),
    (1, "confirmed_cov_notification", "report",
     ctx(0, u(18)) + ctx(1, oid(8, 4)) + ctx(2, oid(0, 10)) + ctx(3, u(0))
     + wrap(4, ctx(0, u(85)) + wrap(2, app_real(65.0)) + ctx(0, u(111)) + wrap(2, app_bits("0000"))),
     {"bacnet.process_id": 18, "bacnet.device_instance": 4, "bacnet.object": "analog-input:10",
      "bacnet.time_remaining": 0, "bacnet.property_ids": [85, 111], "bacnet.values": ["65.0", "0000"],
      "ics.values": [65.0], "ics.tag": ["analog-input:10/present-value", "analog-input:10/status-flags"],
      "bacnet.object_type_codes": [8, 0], "bacnet.object_instances": [4, 10]}),
    (2, "confirmed_event_notification", "alarm",
     ctx(0, u(1)) + ctx(1, oid(8, 4)) + ctx(2, oid(0, 2)) + wrap(3, ctx(1, u(16))) + ctx(4, u(4))
     + ctx(5, u(100)) + ctx(6, u(5)) + ctx_text(7, "High temp") + ctx(8, u(0)) + ctx(9, b"\x01") + ctx(10, u(0))
     + ctx(11, u(3)) + wrap(12, wrap(5, wrap(0, ctx(0, struct.pack(">f", 80.1))) + ctx(1, b"\x04\x80"))),
     {"bacnet.process_id": 1, "bacnet.device_instance": 4, "bacnet.object": "analog-input:2",
      "bacnet.notification_class": 4, "bacnet.priority": 100, "bacnet.event_type": "out-of-range",
      "bacnet.message_text": "High temp", "bacnet.notify_type": "alarm", "bacnet.ack_required": True,
      "bacnet.from_state": "normal", "bacnet.to_state": "high-limit"}),
    (3, "get_alarm_summary", "read", b"", {"ics.tag": None}),
    (4, "get_enrollment_summary", "read", ctx(0, u(1)) + ctx(2, u(0)), {}),
    (5, "subscribe_cov", "read", ctx(0, u(18)) + ctx(1, oid(0, 10)) + ctx(2, b"\x01") + ctx(3, u(300)),
     {"bacnet.process_id": 18, "bacnet.object": "analog-input:10", "bacnet.issue_confirmed": True,
      "bacnet.lifetime": 300, "ics.tag": ["analog-input:10"]}),
    (6, "atomic_read_file", "file_read", app_oid(10, 1) + wrap(0, app_int(0) + app_uint(27)),
     {"bacnet.object": "file:1", "bacnet.file_access": "stream", "bacnet.file_start": 0, "bacnet.file_count": 27,
      "ics.address_start": None, "ics.tag": ["file:1"]}),
    (7, "atomic_write_file", "file_write", app_oid(10, 2) + wrap(1, app_int(-1) + app_uint(2) + app_octets(b"ab")
                                                                 + app_octets(b"cde")),
     {"bacnet.object": "file:2", "bacnet.file_access": "record", "bacnet.file_start": -1, "bacnet.file_count": 2,
      "bacnet.file_data_length": 5}),
    (8, "add_list_element", "write",
     ctx(0, oid(7, 1)) + ctx(1, u(102)) + wrap(3, app_oid(8, 9)),
     {"bacnet.object": "command:1", "bacnet.property": "recipient-list", "bacnet.values": ["device:9"],
      "ics.tag": ["command:1/recipient-list"], "bacnet.object_type_codes": [7, 8]}),
    (9, "remove_list_element", "write",
     ctx(0, oid(6, 1)) + ctx(1, u(23)) + ctx(2, u(1)) + wrap(3, app_date(2024, 12, 25)),
     {"bacnet.object": "calendar:1", "bacnet.property": "datelist", "bacnet.array_index": 1,
      "bacnet.values": ["2024-12-25"], "ics.tag": ["calendar:1/datelist[1]"]}),
    (10, "create_object", "config_change",
     wrap(0, ctx(0, u(10))) + wrap(1, ctx(0, u(77)) + wrap(2, app_text("Trend")) + ctx(0, u(41))
                                   + wrap(2, app_enum(1))),
     {"bacnet.object_type": "file", "bacnet.object": None, "bacnet.object_type_codes": None,
      "bacnet.object_instances": None, "bacnet.property_ids": [77, 41], "bacnet.values": ["Trend", "stream-access"],
      "ics.tag": ["file/object-name", "file/file-access-method"]}),
    (11, "delete_object", "config_change", app_oid(3, 6),
     {"bacnet.object": "binary-input:6", "ics.tag": ["binary-input:6"]}),
    (13, "read_property_conditional", "read", wrap(0, ctx(0, u(1))), {}),
    (14, "read_property_multiple", "read",
     ctx(0, oid(0, 16)) + wrap(1, ctx(0, u(85)) + ctx(0, u(103))) + ctx(0, oid(0, 33))
     + wrap(1, ctx(0, u(85)) + ctx(1, u(2))),
     {"bacnet.object": "analog-input:16", "bacnet.object_type_codes": [0, 0], "bacnet.object_instances": [16, 33],
      "bacnet.property_ids": [85, 103, 85], "bacnet.properties": ["present-value", "reliability", "present-value"],
      "ics.tag": ["analog-input:16/present-value", "analog-input:16/reliability", "analog-input:33/present-value[2]"]}),
    (15, "write_property", "write", ctx(0, oid(1, 1)) + ctx(1, u(85)) + wrap(3, app_real(180.0)) + ctx(4, u(8)),
     {"bacnet.object": "analog-output:1", "bacnet.property": "present-value", "bacnet.priority": 8,
      "bacnet.values": ["180.0"], "ics.values": [180.0], "ics.tag": ["analog-output:1/present-value"]}),
    (16, "write_property_multiple", "write",
     ctx(0, oid(2, 5)) + wrap(1, ctx(0, u(85)) + wrap(2, app_real(67.0)) + ctx(3, u(5)))
     + ctx(0, oid(2, 6)) + wrap(1, ctx(0, u(85)) + wrap(2, app_real(72.0))),
     {"bacnet.object": "analog-value:5", "bacnet.priority": 5, "bacnet.values": ["67.0", "72.0"],
      "ics.values": [67.0, 72.0], "ics.tag": ["analog-value:5/present-value", "analog-value:6/present-value"]}),
    (17, "device_communication_control", "mode_change", ctx(0, u(5)) + ctx(1, u(1)) + ctx_text(2, "#egbdf!"),
     {"bacnet.duration_minutes": 5, "bacnet.enable_disable": "disable", "bacnet.password_present": True}),
    (18, "confirmed_private_transfer", "other", ctx(0, u(25)) + ctx(1, u(8)) + wrap(2, app_real(72.4) + app_uint(3)),
     {"bacnet.vendor_id": 25, "bacnet.vendor": "CSI Control Systems International", "bacnet.service_number": 8,
      "bacnet.values": ["72.4000015258789", "3"]}),
    (19, "confirmed_text_message", "other",
     ctx(0, oid(8, 5)) + wrap(1, ctx(0, u(5))) + ctx(2, u(0)) + ctx_text(3, "PM required for PUMP347"),
     {"bacnet.device_instance": 5, "bacnet.message_priority": "normal",
      "bacnet.message_text": "PM required for PUMP347", "ics.tag": ["device:5"]}),
    (20, "reinitialize_device", "restart", ctx(0, u(1)) + ctx_text(1, REINIT_PASSWORD),
     {"bacnet.reinitialized_state": "warmstart", "bacnet.password_present": True}),
    (21, "vt_open", "session", app_enum(0) + app_uint(5), {"bacnet.vt_class": 0, "bacnet.vt_session": 5}),
    (22, "vt_close", "session", app_uint(29), {"bacnet.values": ["29"]}),
    (23, "vt_data", "session", app_uint(5) + app_octets(b"\r\n") + app_uint(0), {"bacnet.values": ["5", "0d0a", "0"]}),
    (24, "authenticate", "auth", b"", {}),
    (25, "request_key", "auth", b"", {}),
    (26, "read_range", "read", ctx(0, oid(20, 1)) + ctx(1, u(131)) + wrap(3, app_uint(1) + app_int(4)),
     {"bacnet.object": "trend-log:1", "bacnet.property": "log-buffer", "bacnet.range_type": "by-position",
      "bacnet.range_reference": 1, "bacnet.range_count": 4, "ics.tag": ["trend-log:1/log-buffer"]}),
    (27, "life_safety_operation", "alarm", ctx(0, u(18)) + ctx_text(1, "MDL") + ctx(2, u(4)) + ctx(3, oid(21, 1)),
     {"bacnet.process_id": 18, "bacnet.requesting_source": "MDL", "bacnet.life_safety_request": "reset",
      "bacnet.object": "life-safety-point:1"}),
    (28, "subscribe_cov_property", "read",
     ctx(0, u(18)) + ctx(1, oid(0, 10)) + ctx(2, b"\x01") + ctx(3, u(60)) + wrap(4, ctx(0, u(85)))
     + ctx(5, struct.pack(">f", 1.0)),
     {"bacnet.lifetime": 60, "bacnet.cov_increment": 1.0, "ics.tag": ["analog-input:10/present-value"]}),
    (29, "get_event_information", "read", ctx(0, oid(0, 2)), {"bacnet.object": "analog-input:2"}),
    (30, "subscribe_cov_property_multiple", "read",
     ctx(0, u(18)) + ctx(1, b"\x01") + ctx(2, u(60)) + ctx(3, u(5))
     + wrap(4, ctx(0, oid(0, 10)) + wrap(1, wrap(0, ctx(0, u(85))) + ctx(1, struct.pack(">f", 1.0)))),
     {"bacnet.max_notification_delay": 5, "bacnet.object": "analog-input:10",
      "ics.tag": ["analog-input:10/present-value"]}),
    (31, "confirmed_cov_notification_multiple", "report",
     ctx(0, u(18)) + ctx(1, oid(8, 4)) + ctx(2, u(39)) + wrap(3, app_date(2013, 6, 3) + app_time(3, 15, 53, 47))
     + wrap(4, ctx(0, oid(0, 10)) + wrap(1, ctx(0, u(85)) + wrap(2, app_real(65.0)))),
     {"bacnet.device_instance": 4, "bacnet.time_remaining": 39, "bacnet.object": "analog-input:10",
      "bacnet.values": ["65.0"], "ics.tag": ["analog-input:10/present-value"]}),
    (32, "confirmed_audit_notification", "report", b"", {}),
    (33, "audit_log_query", "read", ctx(0, oid(61, 1)), {"bacnet.object": "audit-log:1"}),
    (77, "unknown-77", "other", app_uint(1), {"bacnet.values": ["1"]}),
]


@pytest.mark.parametrize("case", CONFIRMED_CASES, ids=[c[1] for c in CONFIRMED_CASES])
def test_every_confirmed_service(case: tuple[int, str, str, bytes, dict[str, Any]]) -> None:
    code, name, operation, params, expected = case
    req = feed(unicast(confirmed(code, params, invoke=33)))
    subset(req, {"bacnet.confirmed_service_code": code, "bacnet.service": name, "ics.function": name,
                 "event.action": name, "ics.operation": operation, "ics.role": "request",
                 "bacnet.apdu.invoke_id": 33, "bacnet.anomaly": None, **expected})
    assert name in DISSECTOR.operations or name.startswith("unknown")


def test_every_confirmed_service_is_covered() -> None:
    assert {c[0] for c in CONFIRMED_CASES} >= set(B.CONFIRMED_SERVICES) - {12}


def test_passwords_are_never_recorded() -> None:
    for params in (ctx(0, u(1)) + ctx_text(1, REINIT_PASSWORD), ctx(1, u(0)) + ctx_text(2, REINIT_PASSWORD)):
        for service in (17, 20):
            event = feed(unicast(confirmed(service, params)))
            assert REINIT_PASSWORD not in repr(event)
    dcc = feed(unicast(confirmed(17, ctx(1, u(0)))))
    assert dcc["bacnet.enable_disable"] == "enable" and "bacnet.password_present" not in dcc
    assert "bacnet.duration_minutes" not in dcc


@pytest.mark.parametrize(("state", "name", "operation"), [
    (0, "coldstart", "restart"), (1, "warmstart", "restart"), (2, "start-backup", "program_upload"),
    (3, "end-backup", "program_upload"), (4, "start-restore", "program_download"),
    (5, "end-restore", "program_download"), (6, "abort-restore", "program_download"),
    (7, "activate-changes", "config_change"), (9, "unknown-9", "restart"),
])
def test_reinitialize_states_and_their_operations(state: int, name: str, operation: str) -> None:
    req, resp = exchange(unicast(confirmed(20, ctx(0, u(state)))), unicast(simple_ack(20)))
    assert req["bacnet.reinitialized_state"] == name and req["ics.operation"] == operation
    assert resp["ics.operation"] == operation and resp["ics.status"] == "ok"
    if "unknown" not in name:
        assert DISSECTOR.operations.get(f"reinitialize_device/{name}", "restart") == operation


# -- complex acks -----------------------------------------------------------------------------------


ACK_CASES: list[tuple[int, bytes, bytes, dict[str, Any]]] = [
    (6, app_oid(10, 1) + wrap(0, app_int(0) + app_uint(27)),
     app_bool(False) + wrap(0, app_int(0) + app_octets(b"Chiller01 On-Time=4.3 Hours")),
     {"bacnet.end_of_file": False, "bacnet.file_access": "stream", "bacnet.file_start": 0,
      "bacnet.file_data_length": 27, "bacnet.object": "file:1", "ics.tag": ["file:1"]}),
    (6, app_oid(10, 2) + wrap(1, app_int(14) + app_uint(3)),
     app_bool(True) + wrap(1, app_int(14) + app_uint(2) + app_octets(b"12:00,45.6") + app_octets(b"12:15,44.8")),
     {"bacnet.end_of_file": True, "bacnet.file_access": "record", "bacnet.file_start": 14, "bacnet.file_count": 2,
      "bacnet.file_data_length": 20, "bacnet.object": "file:2"}),
    (7, app_oid(10, 1) + wrap(0, app_int(30) + app_octets(b"Chiller01 On-Time=4.3 Hours")), ctx(0, s(30)),
     {"bacnet.file_start": 30, "bacnet.object": "file:1"}),
    (10, wrap(0, ctx(0, u(0))), app_oid(0, 9),
     {"bacnet.object": "analog-input:9", "bacnet.object_type_codes": [0], "bacnet.object_type": "analog-input",
      "ics.tag": ["analog-input:9"]}),
    (14, ctx(0, oid(0, 16)) + wrap(1, ctx(0, u(85)) + ctx(0, u(103))),
     ctx(0, oid(0, 16)) + wrap(1, ctx(2, u(85)) + wrap(4, app_real(72.3)) + ctx(2, u(103))
                               + wrap(5, app_enum(2) + app_enum(32))),
     {"bacnet.object": "analog-input:16", "bacnet.values": ["72.30000305175781"], "bacnet.error_class_code": [2],
      "bacnet.error_code": [32], "bacnet.error": ["unknown-property"], "ics.status": "ok",
      "ics.tag": ["analog-input:16/present-value", "analog-input:16/reliability"]}),
    (18, ctx(0, u(25)) + ctx(1, u(8)), ctx(0, u(25)) + ctx(1, u(8)) + wrap(2, app_real(72.4)),
     {"bacnet.vendor_id": 25, "bacnet.service_number": 8, "ics.values": [pytest.approx(72.4)]}),
    (26, ctx(0, oid(20, 1)) + ctx(1, u(131)) + wrap(7, app_date(1998, 3, 23) + app_time(19, 52, 34, 0)
                                                    + app_int(4)),
     ctx(0, oid(20, 1)) + ctx(1, u(131)) + ctx(3, b"\x05\xc0") + ctx(4, u(2))
     + wrap(5, wrap(0, wrap(0, app_date(1998, 3, 23) + app_time(19, 54, 27, 0))) + wrap(1, ctx(2, b"\x00")))
     + ctx(6, u(79201)),
     {"bacnet.object": "trend-log:1", "bacnet.result_flags": "110", "bacnet.item_count": 2,
      "bacnet.first_sequence_number": 79201, "bacnet.values": ["1998-03-23", "19:54:27.00"]}),
    (29, ctx(0, oid(0, 1)),
     wrap(0, ctx(0, oid(0, 2)) + ctx(1, u(3)) + ctx(2, b"\x05\x60") + wrap(3, ctx(1, u(0)) + ctx(1, u(0))
                                                                          + ctx(1, u(0)))
          + ctx(4, u(0)) + ctx(5, b"\x05\xe0") + wrap(6, app_uint(15) + app_uint(15) + app_uint(20)))
     + ctx(1, b"\x00"),
     {"bacnet.object": "analog-input:2", "bacnet.more_events": False, "bacnet.values": ["15", "15", "20"]}),
]


@pytest.mark.parametrize("case", ACK_CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(ACK_CASES)])
def test_complex_acks(case: tuple[int, bytes, bytes, dict[str, Any]]) -> None:
    code, request, answer, expected = case
    req, resp = exchange(unicast(confirmed(code, request, invoke=9)), unicast(complex_ack(code, answer, invoke=9)))
    name = B.CONFIRMED_SERVICES[code]
    subset(resp, {"bacnet.apdu.type": "complex_ack", "bacnet.service": name, "ics.function": name,
                  "ics.role": "response", "ics.status": "ok", "event.outcome": "success", "bacnet.anomaly": None,
                  **PAIRED, **expected})
    assert req["ics.operation"] == resp["ics.operation"]


def test_simple_ack_of_a_write_names_what_was_written() -> None:
    request = unicast(confirmed(15, ctx(0, oid(1, 1)) + ctx(1, u(85)) + wrap(3, app_real(180.0)) + ctx(4, u(8))))
    _, resp = exchange(request, unicast(simple_ack(15)))
    assert resp == {**UNICAST, **PAIRED, "bacnet.npdu.control": 0, "bacnet.npdu.expecting_reply": False,
                    "bacnet.apdu.type_code": 2, "bacnet.apdu.type": "simple_ack", "bacnet.apdu.invoke_id": 1,
                    "bacnet.confirmed_service_code": 15, "bacnet.service": "write_property",
                    "event.action": "write_property", "ics.function": "write_property", "ics.operation": "write",
                    "ics.role": "response", "ics.status": "ok", "event.outcome": "success",
                    "bacnet.object": "analog-output:1", "bacnet.object_type": "analog-output",
                    "bacnet.object_instance": 1, "bacnet.property": "present-value", "bacnet.priority": 8,
                    "ics.tag": ["analog-output:1/present-value"], "bacnet.values": ["180.0"], "ics.values": [180.0]}


# -- errors, rejects, aborts -------------------------------------------------------------------------


@pytest.mark.parametrize(("service", "params", "expected"), [
    (20, app_enum(5) + app_enum(26), {"ics.status": "password-failure", "bacnet.error_class": ["services"]}),
    (10, wrap(0, app_enum(1) + app_enum(24)) + ctx(1, u(2)),
     {"ics.status": "object-identifier-already-exists", "bacnet.first_failed_element": 2}),
    (8, wrap(0, app_enum(2) + app_enum(22)) + ctx(1, u(1)), {"ics.status": "property-is-not-a-list"}),
    (16, wrap(0, app_enum(2) + app_enum(40)) + wrap(1, ctx(0, oid(1, 7)) + ctx(1, u(85))),
     {"ics.status": "write-access-denied", "bacnet.object": "analog-output:7",
      "ics.tag": ["analog-output:7/present-value"]}),
    (18, wrap(0, app_enum(5) + app_enum(29)) + ctx(1, u(25)) + ctx(2, u(8)),
     {"ics.status": "service-request-denied", "bacnet.vendor_id": 25}),
    (22, wrap(0, app_enum(6) + app_enum(35)) + wrap(1, app_uint(9)), {"ics.status": "unknown-vt-session"}),
    (12, app_enum(1) + app_enum(250), {"ics.status": "unknown-250", "bacnet.error_class": ["object"]}),
])
def test_error_pdus(service: int, params: bytes, expected: dict[str, Any]) -> None:
    resp = feed(unicast(error(service, params)), False)
    subset(resp, {"bacnet.apdu.type": "error", "ics.role": "response", "event.outcome": "failure",
                  "bacnet.anomaly": None, **expected})


@pytest.mark.parametrize(("reason", "name"), [(0, "other"), (4, "invalid-tag"), (9, "unrecognized-service"),
                                              (64, "proprietary-64")])
def test_reject_names_the_refused_service(reason: int, name: str) -> None:
    _, resp = exchange(unicast(confirmed(17, ctx(1, u(1)), invoke=4)), unicast(reject(reason, invoke=4)))
    assert resp == {**UNICAST, **PAIRED, "bacnet.npdu.control": 0, "bacnet.npdu.expecting_reply": False,
                    "bacnet.apdu.type_code": 6, "bacnet.apdu.type": "reject", "bacnet.apdu.invoke_id": 4,
                    "bacnet.reject_reason_code": reason, "bacnet.reject_reason": name,
                    "bacnet.service": "device_communication_control", "event.action": "device_communication_control",
                    "ics.function": "device_communication_control", "ics.operation": "mode_change",
                    "ics.role": "response", "ics.status": f"reject:{name}", "event.outcome": "failure"}


def test_unpaired_reject_and_abort_keep_their_own_name() -> None:
    rej = feed(unicast(reject(9, invoke=58)), False)
    assert rej["ics.function"] == "reject" and rej["ics.status"] == "reject:unrecognized-service"
    ab = feed(unicast(abort(4, invoke=1)), False)
    assert ab["ics.function"] == "abort" and ab["bacnet.abort_reason"] == "segmentation-not-supported"
    assert ab["bacnet.apdu.server"] is True and ab["ics.role"] == "response"


def test_client_abort_ends_its_own_transaction() -> None:
    session = BacnetSession()
    feed(unicast(confirmed(12, ctx(0, AI3) + ctx(1, u(85)), invoke=3)), True, session)
    ab = feed(unicast(abort(8, invoke=3, server=False)), True, session)
    assert ab["ics.role"] == "request" and ab["ics.status"] == "abort:application-exceeded-reply-time"
    late = feed(unicast(complex_ack(12, ctx(0, AI3) + ctx(1, u(85)) + wrap(3, app_real(1.0)), invoke=3)), False,
                session)
    assert "bacnet.response_time_ms" not in late and session.stats["unpaired_responses"] == 1


# -- unconfirmed services ---------------------------------------------------------------------------

UNCONFIRMED_CASES: list[tuple[int, str, str, str, bytes, dict[str, Any]]] = [
    (0, "i_am", "identity", "response", app_oid(8, 61) + app_uint(1476) + app_enum(0) + app_uint(15),
     {"bacnet.device_instance": 61, "bacnet.max_apdu_accepted": 1476, "bacnet.segmentation": "segmented-both",
      "bacnet.vendor_id": 15, "bacnet.vendor": "Cornell University", "ics.tag": ["device:61"],
      "bacnet.object_type_codes": [8], "bacnet.object_instances": [61], "bacnet.values": None}),
    (1, "i_have", "identity", "response", app_oid(8, 8) + app_oid(0, 2) + app_text("OATemp"),
     {"bacnet.device_instance": 8, "bacnet.object": "analog-input:2", "bacnet.object_name": "OATemp",
      "ics.tag": ["analog-input:2"]}),
    (2, "unconfirmed_cov_notification", "report", "unsolicited",
     ctx(0, u(18)) + ctx(1, oid(8, 4)) + ctx(2, oid(0, 10)) + ctx(3, u(0))
     + wrap(4, ctx(0, u(85)) + wrap(2, app_real(65.0))),
     {"bacnet.device_instance": 4, "bacnet.object": "analog-input:10", "ics.values": [65.0]}),
    (3, "unconfirmed_event_notification", "alarm", "unsolicited",
     ctx(0, u(1)) + ctx(1, oid(8, 9)) + ctx(2, oid(1, 1)) + wrap(3, ctx(1, u(2))) + ctx(4, u(4)) + ctx(5, u(100))
     + ctx(6, u(1)) + ctx(8, u(1)) + ctx(10, u(0)) + ctx(11, u(1)),
     {"bacnet.event_type": "change-of-state", "bacnet.notify_type": "event", "bacnet.to_state": "fault"}),
    (4, "unconfirmed_private_transfer", "other", "request", ctx(0, u(5)) + ctx(1, u(2)),
     {"bacnet.vendor": "Johnson Controls, Inc.", "bacnet.service_number": 2}),
    (5, "unconfirmed_text_message", "other", "request", ctx(0, oid(8, 5)) + ctx(2, u(1)) + ctx_text(3, "Fire!"),
     {"bacnet.message_priority": "urgent", "bacnet.message_text": "Fire!"}),
    (6, "time_synchronization", "time_sync", "request", app_date(1992, 11, 17) + app_time(22, 45, 30, 70),
     {"bacnet.time": "1992-11-17T22:45:30.70"}),
    (7, "who_has", "discovery", "request", ctx(3, b"\x00OATemp"),
     {"bacnet.object_name": "OATemp", "bacnet.range_low": None}),
    (7, "who_has", "discovery", "request", ctx(0, u(1)) + ctx(1, u(9)) + ctx(2, oid(0, 2)),
     {"bacnet.range_low": 1, "bacnet.range_high": 9, "bacnet.object": "analog-input:2"}),
    (8, "who_is", "discovery", "request", b"", {"bacnet.range_low": None, "ics.tag": None}),
    (8, "who_is", "discovery", "request", ctx(0, u(3)) + ctx(1, u(3)),
     {"bacnet.range_low": 3, "bacnet.range_high": 3}),
    (9, "utc_time_synchronization", "time_sync", "request", app_date(2024, 2, 29) + app_time(23, 59, 59, 99),
     {"bacnet.time": "2024-02-29T23:59:59.99"}),
    (10, "write_group", "write", "request",
     ctx(0, u(23)) + ctx(1, u(8)) + wrap(2, ctx(0, u(268)) + app_real(1.0)) + ctx(3, b"\x00"),
     {"bacnet.group_number": 23, "bacnet.priority": 8, "bacnet.values": ["1.0"], "bacnet.inhibit_write": False}),
    (11, "unconfirmed_cov_notification_multiple", "report", "unsolicited",
     ctx(0, u(18)) + ctx(1, oid(8, 4)) + ctx(2, u(27)) + wrap(4, ctx(0, oid(0, 10)) + wrap(1, ctx(0, u(85))
                                                                                      + wrap(2, app_real(65.0)))),
     {"bacnet.object": "analog-input:10", "bacnet.values": ["65.0"]}),
    (12, "unconfirmed_audit_notification", "report", "unsolicited", b"", {}),
    (13, "who_am_i", "identity", "request", app_uint(555) + app_text("LMCP24") + app_text("12345"),
     {"bacnet.vendor_id": 555, "bacnet.model_name": "LMCP24", "bacnet.serial_number": "12345"}),
    (14, "you_are", "config_change", "request",
     app_uint(555) + app_text("LMCP24") + app_text("12345") + app_oid(8, 3) + app_octets(b"\x2a"),
     {"bacnet.device_instance": 3, "bacnet.mac_address": "2a", "ics.tag": ["device:3"]}),
    (99, "unknown-99", "other", "request", b"", {}),
]


@pytest.mark.parametrize("case", UNCONFIRMED_CASES, ids=[f"{c[1]}-{i}" for i, c in enumerate(UNCONFIRMED_CASES)])
def test_every_unconfirmed_service(case: tuple[int, str, str, str, bytes, dict[str, Any]]) -> None:
    code, name, operation, role, params, expected = case
    event = feed(broadcast(unconfirmed(code, params)))
    subset(event, {"bacnet.unconfirmed_service_code": code, "bacnet.service": name, "ics.function": name,
                   "ics.operation": operation, "ics.role": role, "bacnet.apdu.type": "unconfirmed_request",
                   "bacnet.bvlc.function": "original_broadcast_npdu", "bacnet.anomaly": None, **expected})


def test_every_unconfirmed_service_is_covered() -> None:
    assert {c[0] for c in UNCONFIRMED_CASES} >= set(B.UNCONFIRMED_SERVICES)


def test_i_am_exactly() -> None:
    event = feed(broadcast(unconfirmed(0, app_oid(8, 4194303) + app_uint(480) + app_enum(3) + app_uint(260))))
    assert event == {"bacnet.bvlc.function_code": 11, "bacnet.bvlc.function": "original_broadcast_npdu",
                     "bacnet.npdu.version": 1, "bacnet.npdu.control": 0, "bacnet.npdu.expecting_reply": False,
                     "bacnet.npdu.priority": "normal", "bacnet.apdu.type_code": 1,
                     "bacnet.apdu.type": "unconfirmed_request", "bacnet.unconfirmed_service_code": 0,
                     "bacnet.service": "i_am", "event.action": "i_am", "ics.function": "i_am",
                     "ics.operation": "identity", "ics.role": "response", "bacnet.device_instance": 4194303,
                     "bacnet.max_apdu_accepted": 480, "bacnet.segmentation": "no-segmentation",
                     "bacnet.vendor_id": 260, "bacnet.vendor": "BACnet Stack at SourceForge",
                     "bacnet.object_type_codes": [8], "bacnet.object_instances": [4194303],
                     "ics.tag": ["device:4194303"]}


# -- BVLC -------------------------------------------------------------------------------------------


def bdt_entry(ip: str, port: int, mask: str) -> bytes:
    return bytes(map(int, ip.split("."))) + port.to_bytes(2, "big") + bytes(map(int, mask.split(".")))


def fdt_entry(ip: str, port: int, ttl: int, remaining: int) -> bytes:
    return bytes(map(int, ip.split("."))) + port.to_bytes(2, "big") + struct.pack(">HH", ttl, remaining)


def test_bvlc_management_functions() -> None:
    session = BacnetSession()
    reg = feed(bvlc(0x05, b"\x00\x3c"), True, session)
    subset(reg, {"bacnet.bvlc.function": "register_foreign_device", "bacnet.bvlc.ttl": 60, "ics.role": "request",
                 "ics.operation": "session", "ics.function": "register_foreign_device"})
    nak = feed(bvlc(0x00, b"\x00\x30"), False, session)
    subset(nak, {"bacnet.bvlc.function": "bvlc_result", "bacnet.bvlc.result_code": 0x30,
                 "bacnet.bvlc.result": "register_foreign_device_nak", "ics.status": "register_foreign_device_nak",
                 "event.outcome": "failure", "ics.function": "register_foreign_device", "ics.role": "response"})
    table = bdt_entry("10.0.0.1", 47808, "255.255.255.255") + bdt_entry("10.1.0.1", 47809, "255.255.255.0")
    write = feed(bvlc(0x01, table), True, session)
    subset(write, {"bacnet.bvlc.function": "write_broadcast_distribution_table", "bacnet.bvlc.entry_count": 2,
                   "bacnet.bvlc.entries": [{"ip": "10.0.0.1", "port": 47808, "mask": "255.255.255.255"},
                                           {"ip": "10.1.0.1", "port": 47809, "mask": "255.255.255.0"}],
                   "ics.operation": "config_change"})
    ok = feed(bvlc(0x00, b"\x00\x00"), False, session)
    subset(ok, {"ics.status": "ok", "event.outcome": "success", "ics.function": "write_broadcast_distribution_table",
                "ics.operation": "config_change"})
    subset(feed(bvlc(0x02), True, session), {"bacnet.bvlc.function": "read_broadcast_distribution_table",
                                              "ics.operation": "discovery", "ics.role": "request"})
    subset(feed(bvlc(0x03, table), False, session), {"bacnet.bvlc.function": "read_broadcast_distribution_table_ack",
                                                      "ics.role": "response", "bacnet.bvlc.entry_count": 2})
    subset(feed(bvlc(0x06), True, session), {"bacnet.bvlc.function": "read_foreign_device_table"})
    fdt = feed(bvlc(0x07, fdt_entry("192.168.1.5", 47808, 60, 55)), False, session)
    subset(fdt, {"bacnet.bvlc.entries": [{"ip": "192.168.1.5", "port": 47808, "ttl": 60, "remaining": 55}]})
    delete = feed(bvlc(0x08, bytes([192, 168, 1, 5, 0xBA, 0xC0])), True, session)
    subset(delete, {"bacnet.bvlc.function": "delete_foreign_device_table_entry", "ics.operation": "config_change",
                    "bacnet.bvlc.entries": [{"ip": "192.168.1.5", "port": 47808}]})
    subset(feed(bvlc(0x0C, b"\x01\x02"), True, session), {"bacnet.bvlc.function": "secure_bvll",
                                                           "ics.operation": "auth"})


def test_npdu_carrying_bvlc_functions() -> None:
    who_is = unconfirmed(8)
    forwarded = feed(bvlc(0x04, bytes([10, 0, 0, 9, 0xBA, 0xC0]) + npdu(who_is)))
    subset(forwarded, {"bacnet.bvlc.function": "forwarded_npdu", "bacnet.bvlc.original_source_ip": "10.0.0.9",
                       "bacnet.bvlc.original_source_port": 47808, "ics.function": "who_is"})
    distribute = feed(bvlc(0x09, npdu(who_is)))
    subset(distribute, {"bacnet.bvlc.function": "distribute_broadcast_to_network", "ics.function": "who_is"})


def test_bacnet_ipv6() -> None:
    payload = bytes([0x01, 0x02, 0x03, 0x04, 0x05, 0x06]) + npdu(confirmed(12, ctx(0, AI3) + ctx(1, u(85))))
    event = feed(bytes([0x82, 0x01]) + (4 + len(payload)).to_bytes(2, "big") + payload)
    subset(event, {"bacnet.bvlc.type": 0x82, "bacnet.bvlc.function": "original_unicast_npdu",
                   "bacnet.bvlc.virtual_source": 0x010203, "bacnet.bvlc.virtual_destination": 0x040506,
                   "ics.tag": ["analog-input:3/present-value"]})
    origin = bytes(15) + b"\x01" + b"\xba\xc0"
    payload = b"\x00\x00\x07" + origin + npdu(unconfirmed(8))
    fwd = feed(bytes([0x82, 0x08]) + (4 + len(payload)).to_bytes(2, "big") + payload)
    subset(fwd, {"bacnet.bvlc.function": "forwarded_npdu", "bacnet.bvlc.original_source_ip": "::1",
                 "bacnet.bvlc.original_source_port": 47808, "ics.function": "who_is"})
    reg = feed(bytes([0x82, 0x09, 0x00, 0x09, 0x00, 0x00, 0x07, 0x01, 0x2c]))
    subset(reg, {"bacnet.bvlc.function": "register_foreign_device", "bacnet.bvlc.ttl": 300,
                 "bacnet.anomaly": None})
    res = feed(bytes([0x82, 0x00, 0x00, 0x09, 0x00, 0x00, 0x07, 0x00, 0x90]), False)
    subset(res, {"bacnet.bvlc.result": "register_foreign_device_nak", "ics.status": "register_foreign_device_nak"})


# -- NPDU: routing and network-layer messages --------------------------------------------------------


def test_routed_request_and_answer_pair_by_network_address() -> None:
    """A router fronts two MS/TP devices on one UDP flow: same invoke id, different devices."""
    session = BacnetSession()
    to_a = unicast(confirmed(12, ctx(0, AI3) + ctx(1, u(85)), invoke=5), dnet=(3, b"\x6c"), expecting_reply=True)
    to_b = unicast(confirmed(12, ctx(0, oid(0, 4)) + ctx(1, u(85)), invoke=5), dnet=(3, b"\x6d"))
    req_a = feed(to_a, True, session, 1.0)
    feed(to_b, True, session, 1.1)
    subset(req_a, {"bacnet.npdu.dnet": 3, "bacnet.npdu.dlen": 1, "bacnet.npdu.dadr": "108",
                   "bacnet.npdu.hop_count": 255, "bacnet.npdu.control": 0x24, "ics.unit": "3:108"})
    from_b = unicast(complex_ack(12, ctx(0, oid(0, 4)) + ctx(1, u(85)) + wrap(3, app_real(2.0)), invoke=5),
                     snet=(3, b"\x6d"))
    from_a = unicast(complex_ack(12, ctx(0, AI3) + ctx(1, u(85)) + wrap(3, app_real(1.0)), invoke=5),
                     snet=(3, b"\x6c"))
    ans_b = feed(from_b, False, session, 1.2)
    ans_a = feed(from_a, False, session, 1.5)
    subset(ans_b, {"bacnet.npdu.snet": 3, "bacnet.npdu.sadr": "109", "ics.unit": "3:109",
                   "bacnet.request_time_ms": 1100})
    subset(ans_a, {"ics.unit": "3:108", "bacnet.request_time_ms": 1000, "bacnet.response_time_ms": 500.0})
    assert session.stats["paired"] == 2


def test_request_from_a_remote_network_pairs_with_its_routed_answer() -> None:
    session = BacnetSession()
    mac = bytes([10, 0, 0, 5, 0xBA, 0xC0])
    feed(unicast(confirmed(12, ctx(0, AI3) + ctx(1, u(85))), snet=(7, mac)), True, session)
    ans = feed(unicast(simple_ack(12), dnet=(7, mac)), False, session)
    assert "bacnet.response_time_ms" in ans and ans["bacnet.npdu.dadr"] == mac.hex()
    assert "ics.unit" not in ans


NETWORK_CASES: list[tuple[int, bytes, str, str, dict[str, Any]]] = [
    (0x00, b"", "who_is_router_to_network", "discovery", {"bacnet.npdu.networks": None}),
    (0x00, b"\x00\x05", "who_is_router_to_network", "discovery", {"bacnet.npdu.networks": [5]}),
    (0x01, b"\x00\x02\x00\x03", "i_am_router_to_network", "identity", {"bacnet.npdu.networks": [2, 3],
                                                                         "ics.role": "response"}),
    (0x02, b"\x00\x09\x2a", "i_could_be_router_to_network", "identity",
     {"bacnet.npdu.networks": [9], "bacnet.npdu.performance_index": 42}),
    (0x03, b"\x02\x00\x09", "reject_message_to_network", "other",
     {"bacnet.npdu.reject_reason_code": 2, "bacnet.npdu.reject_reason": "router-busy", "ics.status": "router-busy",
      "bacnet.npdu.networks": [9]}),
    (0x04, b"\x00\x09", "router_busy_to_network", "other", {"ics.role": "unsolicited"}),
    (0x05, b"", "router_available_to_network", "other", {"bacnet.npdu.networks": None}),
    (0x06, b"\x02\x00\x0a\x01\x00\x00\x0b\x02\x02\xab\xcd", "initialize_routing_table", "config_change",
     {"bacnet.npdu.routing_table_count": 2, "bacnet.npdu.networks": [10, 11],
      "bacnet.npdu.routing_table": [{"dnet": 10, "port_id": 1, "port_info": ""},
                                    {"dnet": 11, "port_id": 2, "port_info": "abcd"}]}),
    (0x07, b"\x00", "initialize_routing_table_ack", "config_change", {"bacnet.npdu.routing_table_count": 0}),
    (0x08, b"\x00\x0c\x78", "establish_connection_to_network", "session",
     {"bacnet.npdu.termination_time": 120, "bacnet.npdu.networks": [12]}),
    (0x09, b"\x00\x0c", "disconnect_connection_to_network", "session", {"bacnet.npdu.networks": [12]}),
    (0x0A, b"\x01\x02", "challenge_request", "auth", {}),
    (0x12, b"", "what_is_network_number", "discovery", {}),
    (0x13, b"\x00\x2a\x01", "network_number_is", "identity",
     {"bacnet.npdu.networks": [42], "bacnet.npdu.network_number_status": "configured"}),
    (0x80, b"\x01\x04\x99", "proprietary-128", "other", {"bacnet.npdu.vendor_id": 260}),
]


@pytest.mark.parametrize("case", NETWORK_CASES, ids=[f"{c[0]:#x}-{i}" for i, c in enumerate(NETWORK_CASES)])
def test_network_layer_messages(case: tuple[int, bytes, str, str, dict[str, Any]]) -> None:
    mtype, body, name, operation, expected = case
    event = feed(broadcast(bytes([mtype]) + body, network=True))
    subset(event, {"bacnet.npdu.message_type_code": mtype, "bacnet.npdu.message_type": name,
                   "ics.function": name, "event.action": name, "ics.operation": operation,
                   "bacnet.npdu.control": 0x80, "bacnet.apdu.type": None, "bacnet.anomaly": None, **expected})
    assert name in DISSECTOR.operations or name.startswith("proprietary")


def test_npdu_priorities() -> None:
    for priority, name in enumerate(("normal", "urgent", "critical_equipment", "life_safety")):
        assert feed(unicast(unconfirmed(8), priority=priority))["bacnet.npdu.priority"] == name


# -- segmentation -----------------------------------------------------------------------------------


def rpm_ack_params(count: int) -> bytes:
    return b"".join(ctx(0, oid(0, i)) + wrap(1, ctx(2, u(85)) + wrap(4, app_real(float(i)))) for i in range(count))


def segments(params: bytes, size: int) -> list[bytes]:
    return [params[i:i + size] for i in range(0, len(params), size)]


def test_segmented_complex_ack_is_reassembled() -> None:
    session = BacnetSession()
    feed(unicast(confirmed(14, ctx(0, oid(0, 0)) + wrap(1, ctx(0, u(85))), invoke=9, max_segments=3)), True,
         session, 1.0)
    params = rpm_ack_params(40)
    parts = segments(params, 100)
    events = []
    for i, part in enumerate(parts):
        more = i < len(parts) - 1
        events.append(feed(unicast(complex_ack(14, part, invoke=9, seq=(i, 4, more))), False, session, 1.1 + i))
        if i % 2 == 0:
            events.append(feed(unicast(segment_ack(9, i, 4)), True, session, 1.15 + i))
    last = events[-1] if events[-1]["bacnet.apdu.type"] == "complex_ack" else events[-2]
    assert last["bacnet.apdu.segments"] == len(parts) and last["bacnet.apdu.more_follows"] is False
    assert last["bacnet.object_instances"] == list(range(40)) and last["ics.values"] == [float(i) for i in range(40)]
    assert "bacnet.request_time_ms" in last and "bacnet.anomaly" not in last
    first = events[0]
    assert first["bacnet.apdu.sequence_number"] == 0 and first["bacnet.apdu.more_follows"] is True
    assert "bacnet.values" not in first and first["ics.function"] == "read_property_multiple"
    seg_ack = events[1]
    assert seg_ack == {**UNICAST, "bacnet.npdu.control": 0, "bacnet.npdu.expecting_reply": False,
                       "bacnet.apdu.type_code": 4, "bacnet.apdu.type": "segment_ack", "bacnet.apdu.nak": False,
                       "bacnet.apdu.server": False, "bacnet.apdu.invoke_id": 9, "bacnet.apdu.sequence_number": 0,
                       "bacnet.apdu.window_size": 4, "event.action": "segment_ack", "ics.function": "segment_ack",
                       "ics.operation": "other", "ics.role": "request", "bacnet.service": "read_property_multiple"}
    assert session.stats["reassembled"] == 1 and session.stats["segments"] == len(parts)


def test_segmented_request_with_retransmission_and_a_lost_segment() -> None:
    session = BacnetSession()
    params = ctx(0, oid(1, 1)) + wrap(1, b"".join(ctx(0, u(85)) + wrap(2, app_real(float(i))) for i in range(30)))
    parts = segments(params, 64)
    for i, part in enumerate(parts):
        ev = feed(unicast(confirmed(16, part, invoke=2, seq=(i, 2, i < len(parts) - 1))), True, session)
        if i == 1:  # the same segment again: ignored
            feed(unicast(confirmed(16, part, invoke=2, seq=(i, 2, True))), True, session)
    assert ev["bacnet.apdu.segments"] == len(parts) and ev["bacnet.values"][-1] == "29.0"
    assert ev["ics.operation"] == "write" and "bacnet.anomaly" not in ev
    server_acks = BacnetSession()
    feed(unicast(confirmed(16, parts[0], invoke=7, seq=(0, 2, True))), True, server_acks)
    seg_ack = feed(unicast(segment_ack(7, 0, 2, server=True)), False, server_acks)
    assert seg_ack["bacnet.service"] == "write_property_multiple" and seg_ack["ics.role"] == "response"
    lost = BacnetSession()
    feed(unicast(confirmed(16, parts[0], invoke=3, seq=(0, 2, True))), True, lost)
    gap = feed(unicast(confirmed(16, parts[2], invoke=3, seq=(2, 2, True))), True, lost)
    assert gap["bacnet.anomaly"] == ["segment-missing"] and lost.stats["reassembly_failed"] == 1
    orphan = feed(unicast(confirmed(16, parts[1], invoke=4, seq=(1, 2, False))), True, lost)
    assert orphan["bacnet.anomaly"] == ["segment-without-first"]


def test_reassembly_is_bounded() -> None:
    session = BacnetSession()
    for invoke in range(B.MAX_ASSEMBLIES + 5):
        feed(unicast(complex_ack(12, b"\x0c", invoke=invoke, seq=(0, 1, True))), False, session)
    assert len(session._assemblies) == B.MAX_ASSEMBLIES and session.stats["assemblies_dropped"] == 5
    big = BacnetSession()
    chunk = bytes(1400)
    events = [feed(unicast(complex_ack(12, chunk, invoke=1, seq=(i & 0xFF, 1, True))), False, big)
              for i in range(B.MAX_SEGMENTED_BYTES // 1400 + 2)]
    assert events[-2]["bacnet.anomaly"] == ["segmented-message-too-large"]
    assert big.stats["reassembly_failed"] == 1


# -- pairing bounds, caps, anomalies, violations ----------------------------------------------------


def test_pending_requests_are_bounded_and_expire() -> None:
    session = BacnetSession(max_outstanding=10, timeout=5.0)
    for invoke in range(15):
        feed(unicast(confirmed(12, ctx(0, AI3) + ctx(1, u(85)), invoke=invoke)), True, session, 1.0)
    assert len(session._pending) == 10 and session.stats["requests_dropped"] == 5
    feed(unicast(confirmed(12, ctx(0, AI3) + ctx(1, u(85)), invoke=200)), True, session, 100.0)
    assert session.stats["requests_timed_out"] == 1
    stale = feed(unicast(simple_ack(12, invoke=14)), False, session, 100.0)
    assert "bacnet.response_time_ms" not in stale and session.stats["requests_timed_out"] == 2
    wrong = feed(unicast(simple_ack(15, invoke=200)), False, session, 100.1)
    assert wrong["bacnet.anomaly"] == ["service-mismatch"]


def test_lists_are_capped_and_counted() -> None:
    values = wrap(3, b"".join(app_oid(0, i) for i in range(B.MAX_IDS + 10)))
    params = ctx(0, oid(8, 1)) + ctx(1, u(76)) + values
    session = BacnetSession()
    event = feed(unicast(complex_ack(12, params)), False, session)
    assert len(event["bacnet.object_instances"]) == B.MAX_IDS and len(event["bacnet.values"]) == B.MAX_ITEMS
    assert event["bacnet.truncated"] == (B.MAX_IDS + 11 - B.MAX_IDS) + (B.MAX_IDS + 10 - B.MAX_ITEMS)
    assert session.stats["items_truncated"] == event["bacnet.truncated"]
    long_text = feed(unicast(complex_ack(12, ctx(0, AI3) + ctx(1, u(28)) + wrap(3, app_text("é" * 5000)))), False)
    assert long_text["bacnet.values"] == ["é" * B.MAX_TEXT]


ANOMALIES: list[tuple[bytes, list[str]]] = [
    (bytes([0x81, 0x0A, 0x00, 0x30]) + npdu(unconfirmed(8)), ["bvlc-length-mismatch"]),
    (bvlc(0x0A, b"\x01"), ["npdu-truncated"]),
    (bvlc(0x0A, b"\x02\x00" + unconfirmed(8)), ["npdu-version"]),
    (bvlc(0x0A, b"\x01\x40" + unconfirmed(8)), ["npdu-reserved-bits"]),
    (bvlc(0x0A, b"\x01\x20\x00\x03\x05"), ["npdu-truncated"]),
    (bvlc(0x0A, b"\x01\x08\x00\x03\x00" + unconfirmed(8)), ["slen-zero"]),
    (bvlc(0x0A, b"\x01\x00"), ["apdu-missing"]),
    (unicast(b"\x00\x05"), ["apdu-truncated"]),
    (unicast(b"\x90\x01\x02"), ["reserved-apdu-type"]),
    (unicast(confirmed(12, ctx(0, AI3) + ctx(1, u(85)), max_apdu=9)), ["invalid-max-apdu"]),
    (broadcast(confirmed(12, ctx(0, AI3) + ctx(1, u(85)))), ["confirmed-request-broadcast"]),
    (unicast(confirmed(12, ctx(0, AI3) + ctx(1, u(85))), dnet=(0xFFFF, b"")), ["confirmed-request-broadcast"]),
    (bvlc(0x04, bytes(6) + npdu(confirmed(12, ctx(0, AI3) + ctx(1, u(85))))), ["confirmed-request-broadcast"]),
    (unicast(confirmed(12, ctx(0, AI3) + b"\x1c\x00")), ["tag-overruns-data"]),
    (unicast(confirmed(12, ctx(0, AI3) + b"\x1d")), ["tag-truncated"]),
    (unicast(confirmed(15, ctx(0, AI3) + ctx(1, u(85)) + opening(3) + app_real(1.0))), ["unbalanced-tags"]),
    (unicast(confirmed(12, ctx(0, b"\x00\x00") + ctx(1, u(85)))), ["invalid-object-identifier"]),
    (unicast(complex_ack(12, ctx(0, AI3) + ctx(1, u(85)) + wrap(3, _tag(4, False, b"\x00\x00")))),
     ["invalid-real-length"]),
    (unicast(complex_ack(12, ctx(0, AI3) + ctx(1, u(85)) + wrap(3, _tag(13, False, b"\x01")))),
     ["reserved-application-tag"]),
    (broadcast(unconfirmed(0, app_uint(5) + app_uint(1476) + app_enum(0) + app_uint(15))), ["unexpected-tag"]),
    (broadcast(unconfirmed(8, ctx(0, u(5)))), ["who-is-half-range"]),
    (broadcast(unconfirmed(8, ctx(0, u(9)) + ctx(1, u(5)))), ["who-is-range-inverted"]),
    (bvlc(0x05, b"\x00"), ["bvlc-length-invalid"]),
    (bvlc(0x0D), ["unknown-bvlc-function"]),
    (bvlc(0x00, b"\x00\x99"), ["unknown-bvlc-result"]),
    (bvlc(0x01, bytes(12)), ["bvlc-length-invalid"]),
    (broadcast(b"\x01\x00\x05\x01", network=True), ["network-message-length"]),
    (broadcast(b"\x40", network=True), ["reserved-network-message"]),
    (unicast(simple_ack(15) + b"\x00"), ["apdu-length-invalid"]),
]


@pytest.mark.parametrize(("datagram", "reasons"), ANOMALIES, ids=[r[0] + f"-{i}" for i, (_, r) in
                                                                    enumerate(ANOMALIES)])
def test_anomalies(datagram: bytes, reasons: list[str]) -> None:
    session = BacnetSession()
    event = feed(datagram, True, session)
    assert event["bacnet.anomaly"] == reasons
    assert event["event.type"] == ("protocol", "error")
    assert isinstance(event["ics.function"], str) and event["ics.operation"] in OPERATIONS
    assert session.stats["anomalies"] == 1


@pytest.mark.parametrize(("datagram", "reason"), [
    (b"\x81\x0a", "not-bvlc"), (b"\x01\x0a\x00\x04", "not-bvlc"), (b"GET / HTTP/1.1\r\n", "not-bvlc"),
    (b"\x81\x0a\x00\x03\x01\x00", "bvlc-length-too-small"),
])
def test_violations(datagram: bytes, reason: str) -> None:
    with pytest.raises(ProtocolViolation) as info:
        BacnetSession().feed(datagram, True, 0.0)
    assert info.value.reason == reason


def test_session_protocol_rest() -> None:
    session = BacnetSession()
    feed(unicast(complex_ack(12, b"\x0c", invoke=1, seq=(0, 1, True))), False, session)
    session.on_gap(100, True)
    assert session.finish(1.0) == [] and session.stats["reassembly_failed"] == 1


# -- hostile bytes ----------------------------------------------------------------------------------


def all_datagrams() -> list[bytes]:
    out = [unicast(confirmed(c[0], c[3])) for c in CONFIRMED_CASES]
    out += [broadcast(unconfirmed(c[0], c[4])) for c in UNCONFIRMED_CASES]
    out += [unicast(complex_ack(c[0], c[2])) for c in ACK_CASES]
    out += [broadcast(bytes([c[0]]) + c[1], network=True) for c in NETWORK_CASES]
    out += [d for d, _ in ANOMALIES]
    out += [bvlc(0x01, bdt_entry("10.0.0.1", 47808, "255.255.255.255")), bvlc(0x05, b"\x00\x3c"),
            bvlc(0x04, bytes(6) + npdu(unconfirmed(8))), unicast(abort(1)), unicast(reject(1)),
            unicast(segment_ack(1, 2, 3)), unicast(error(10, wrap(0, app_enum(1) + app_enum(2)) + ctx(1, u(1))))]
    return out


def drive(session: BacnetSession, datagrams: list[tuple[bool, bytes]]) -> list[dict[str, Any]]:
    """Only events or ProtocolViolation may come out, and every event uses declared fields."""
    events: list[dict[str, Any]] = []
    for to_server, datagram in datagrams:
        try:
            events += session.feed(datagram, to_server, 1.0)
        except ProtocolViolation as exc:
            assert isinstance(exc.reason, str) and exc.offset >= 0
    for event in events:
        assert set(event) <= DECLARED, set(event) - DECLARED
        function = event["ics.function"]
        assert function in DISSECTOR.operations or function.startswith(("unknown-", "proprietary-")), function
        assert event["ics.operation"] in OPERATIONS and event.get("ics.role", "request") in ROLES
    return events


def test_every_datagram_truncated_at_every_length_and_extended() -> None:
    for datagram in all_datagrams():
        for n in range(len(datagram) + 1):
            cut = datagram[:n]
            drive(BacnetSession(), [(True, cut), (False, cut), (True, cut + b"\x3e\x00\xff\x1d")])
            for fix in (n, len(datagram)):  # length field fixed to the cut, and left as it was
                fixed = cut[:2] + fix.to_bytes(2, "big") + cut[4:] if n >= 4 else cut
                drive(BacnetSession(), [(True, fixed)])


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.booleans(), st.binary(max_size=200)), max_size=6))
def test_random_bytes(datagrams: list[tuple[bool, bytes]]) -> None:
    drive(BacnetSession(), datagrams)
    framed = [(d, bytes([0x81, 0x0A, 0, len(b) + 5]) + b"\x01" + b) for d, b in datagrams if len(b) < 250]
    drive(BacnetSession(), framed)
    for _, datagram in datagrams:
        assert probe(datagram, True) in (True, False)


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_mutated_datagrams(data: st.DataObject) -> None:
    datagrams = all_datagrams()
    datagram = bytearray(data.draw(st.sampled_from(datagrams)))
    for _ in range(data.draw(st.integers(1, 6))):
        datagram[data.draw(st.integers(0, len(datagram) - 1))] = data.draw(st.integers(0, 255))
    tail = data.draw(st.binary(max_size=32))
    drive(BacnetSession(), [(data.draw(st.booleans()), bytes(datagram)), (True, bytes(datagram) + tail)])


# -- detection and registration ---------------------------------------------------------------------


def test_probe() -> None:
    assert probe(unicast(confirmed(12, ctx(0, AI3) + ctx(1, u(85)))), True)
    assert probe(broadcast(unconfirmed(8)), True)
    assert probe(broadcast(b"\x01\x00\x02", network=True), True)
    assert probe(bvlc(0x05, b"\x00\x3c"), True) and probe(bvlc(0x00, b"\x00\x00"), False)
    assert probe(bvlc(0x03, bdt_entry("1.2.3.4", 47808, "255.255.255.255")), False)
    assert probe(unicast(unconfirmed(8), dnet=(5, b"\x01")), True)
    assert probe(bytes([0x81, 0x0A, 0x00, 0x30]) + npdu(unconfirmed(8)), True)  # wrong length: still BACnet
    assert not probe(bvlc(0x05, b"\x00"), True)  # management functions must have their exact size
    assert not probe(bvlc(0x0D), True)
    assert not probe(bvlc(0x0A, b"\x02\x00\x10\x08"), True)  # NPDU version 2
    assert not probe(bvlc(0x0A, b"\x01\x40\x10\x08"), True)  # reserved control bit
    assert not probe(bvlc(0x0A, b"\x01\x00\x90\x08"), True)  # APDU type 9
    assert not probe(bvlc(0x0A, b"\x01\x20\x00\x05"), True)  # address cut short
    assert not probe(b"\x81\x0a\x00", True)
    assert not probe(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", True)
    assert not probe(bytes.fromhex("16030100a5010000a10303") + bytes(40), True)
    assert not probe(bytes.fromhex("000100000006010300000001"), True)  # Modbus/TCP


def test_registration() -> None:
    assert registry()["bacnet"] is DISSECTOR
    assert DISSECTOR.udp_ports == {47808} and not DISSECTOR.tcp_ports
    assert isinstance(DISSECTOR.new_session(), BacnetSession)
    assert set(DISSECTOR.operations.values()) <= set(OPERATIONS)
    ops = DISSECTOR.operations
    assert ops["read_property"] == "read" and ops["write_property_multiple"] == "write"
    assert ops["reinitialize_device"] == "restart" and ops["device_communication_control"] == "mode_change"
    assert ops["atomic_read_file"] == "file_read" and ops["atomic_write_file"] == "file_write"
    assert ops["create_object"] == ops["delete_object"] == "config_change"
    assert ops["who_is"] == ops["who_has"] == ops["who_is_router_to_network"] == "discovery"
    assert ops["i_am"] == ops["i_have"] == "identity"
    assert ops["time_synchronization"] == ops["utc_time_synchronization"] == "time_sync"
    assert ops["confirmed_cov_notification"] == ops["unconfirmed_cov_notification"] == "report"
    assert ops["confirmed_event_notification"] == ops["acknowledge_alarm"] == "alarm"
    assert ops["subscribe_cov"] == "read"
    for name in B.CONFIRMED_SERVICES.values():
        assert name in ops
    for name in B.UNCONFIRMED_SERVICES.values():
        assert name in ops
    names = [f.name for f in DISSECTOR.fields]
    assert len(names) == len(set(names))
    assert DISSECTOR.wireshark is not None
    assert set(DISSECTOR.wireshark.fields) <= set(names)


def test_names() -> None:
    assert B.object_type_name(0) == "analog-input" and B.object_type_name(200) == "proprietary-200"
    assert B.object_type_name(100) == "unknown-100"
    assert B.property_name(85) == "present-value" and B.property_name(512) == "proprietary-512"
    assert B.property_name(18) == "unknown-18" and B.property_name(4194337) == "trim-fade-time"
    assert len(B.PROPERTIES) > 500 and len(set(B.PROPERTIES.values())) == len(B.PROPERTIES)
    assert B.ERROR_CODES[26] == "password-failure" and B.VENDORS[5] == "Johnson Controls, Inc."


def test_docs_hold_the_operation_table() -> None:
    """sensor/protocols/bacnet.md lists exactly DISSECTOR.operations under its operation heading."""
    text = (REPO / "sensor" / "protocols" / "bacnet.md").read_text()
    section = text.split("## Function to `ics.operation`", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and cells[1].startswith("`"):
            rows[cells[1].strip("`")] = cells[2]
    assert rows == dict(DISSECTOR.operations)
