"""The EtherNet/IP and CIP dissector, driven directly through its Session with bytes.

Exact expected events for session registration, identity and tag exchanges; every encapsulation
command; every common and class-specific CIP service named by its class; request paths (8/16/32-bit
logical segments, port segments, electronic keys, symbolic tags with elements); general and
extended status; Multiple Service Packet and Unconnected Send unwrapped and paired; Forward Open,
connected messages and Forward Close; Execute PCCC; connected I/O counted per connection; pairing
bounds, timeouts and unanswered requests; anomalies; several messages per segment and one message
split at every byte; gaps and resynchronisation; truncation at every offset and hypothesis fuzzing;
detection and registration. The comparisons with Wireshark, Zeek and Suricata on real captures are
in test_enip_reference.py.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.contrib.enipTCP import ENIPListIdentityItem, ENIPListServicesItem

from sensor.dissect import OPERATIONS, ProtocolViolation
from sensor.protocols import registry
from sensor.protocols.enip import (
    _CLASS_SERVICES,
    _COMMON,
    _PCCC,
    DISSECTOR,
    MAX_BAD_MESSAGES,
    MAX_EMBEDDED,
    EnipSession,
    parse_path,
    port_probe,
    probe,
)
from sensor.schema import COMMON_FIELDS
from sensor.volume import is_routine
from tests.sensor.protocols import crafting

REPO = Path(__file__).resolve().parents[3]
DECLARED = {f.name for f in DISSECTOR.fields} | {f.name for f in COMMON_FIELDS}
SESSION = 0x11223344
CTX = bytes.fromhex("0102030405060708")

# -- building messages ------------------------------------------------------------------------------


def encap(command: int, data: bytes = b"", session: int = SESSION, status: int = 0, ctx: bytes = CTX,
          options: int = 0) -> bytes:
    return struct.pack("<HHII8sI", command, len(data), session, status, ctx, options) + data


def rr(cip: bytes, timeout: int = 10) -> bytes:
    """SendRRData command data: CIP interface, timeout, null address item, unconnected data item."""
    return struct.pack("<IHHHHHH", 0, timeout, 2, 0, 0, 0xB2, len(cip)) + cip


def unit(connection: int, seq: int, cip: bytes) -> bytes:
    """SendUnitData command data: connected address item, connected data item with the sequence count."""
    return struct.pack("<IHHHHIHHH", 0, 0, 2, 0xA1, 4, connection, 0xB1, len(cip) + 2, seq) + cip


def send_rr(cip: bytes, ctx: bytes = CTX, **kw: Any) -> bytes:
    return encap(0x6F, rr(cip), ctx=ctx, **kw)


def send_unit(connection: int, seq: int, cip: bytes, **kw: Any) -> bytes:
    return encap(0x70, unit(connection, seq, cip), ctx=bytes(8), **kw)


def logical(kind: int, value: int) -> bytes:
    """A logical segment of the smallest format that holds ``value`` (padded EPATH)."""
    if value < 0x100:
        return bytes([0x20 | kind << 2, value])
    if value < 0x10000:
        return bytes([0x21 | kind << 2, 0]) + struct.pack("<H", value)
    return bytes([0x22 | kind << 2, 0]) + struct.pack("<I", value)


def cls(n: int) -> bytes:
    return logical(0, n)


def inst(n: int) -> bytes:
    return logical(1, n)


def member(n: int) -> bytes:
    return logical(2, n)


def attr(n: int) -> bytes:
    return logical(4, n)


def sym(name: str) -> bytes:
    raw = name.encode()
    return bytes([0x91, len(raw)]) + raw + (b"\x00" if len(raw) & 1 else b"")


def port(number: int, link: int | str) -> bytes:
    if isinstance(link, int):
        return bytes([number, link])
    raw = link.encode()
    seg = bytes([0x10 | number, len(raw)]) + raw
    return seg + (b"\x00" if len(seg) & 1 else b"")


def req(service: int, path: bytes, data: bytes = b"") -> bytes:
    assert len(path) % 2 == 0
    return bytes([service, len(path) // 2]) + path + data


def rsp(service: int, status: int = 0, extended: tuple[int, ...] = (), data: bytes = b"") -> bytes:
    return bytes([service | 0x80, 0, status, len(extended)]) + struct.pack(f"<{len(extended)}H", *extended) + data


def msp_body(services: list[bytes]) -> bytes:
    offsets, pos = [], 2 + 2 * len(services)
    for s in services:
        offsets.append(pos)
        pos += len(s)
    return struct.pack(f"<H{len(services)}H", len(services), *offsets) + b"".join(services)


def msp(services: list[bytes]) -> bytes:
    return req(0x0A, cls(2) + inst(1), msp_body(services))


def msp_reply(services: list[bytes], status: int = 0) -> bytes:
    return rsp(0x0A, status, data=msp_body(services))


def ucs(embedded: bytes, route: bytes, ticks: int = 0xF9) -> bytes:
    body = struct.pack("<BBH", 0x0A, ticks, len(embedded)) + embedded + (b"\x00" if len(embedded) & 1 else b"")
    body += bytes([len(route) // 2, 0]) + route
    return req(0x52, cls(6) + inst(1), body)


def forward_open(ot_id: int, to_id: int, serial: int, path: bytes, rpi: int = 100_000, large: bool = False,
                 trigger: int = 0xA3) -> bytes:
    params = (0x43F4, 0x43F4) if not large else (0x4200_01F4, 0x4200_01F4)
    fmt = "<BBIIHHIB3xIHIHB" if not large else "<BBIIHHIB3xIIIIB"
    body = struct.pack(fmt, 0x0A, 0x0E, ot_id, to_id, serial, 0x4D, 0x3D2B31E0, 1, rpi, params[0], rpi, params[1],
                       trigger) + bytes([len(path) // 2]) + path
    return req(0x5B if large else 0x54, cls(6) + inst(1), body)


def forward_open_reply(ot_id: int, to_id: int, serial: int, api: int = 100_000, large: bool = False) -> bytes:
    return rsp(0x5B if large else 0x54, data=struct.pack("<IIHHIIIBB", ot_id, to_id, serial, 0x4D, 0x3D2B31E0, api,
                                                         api, 0, 0))


def forward_close(serial: int, path: bytes) -> bytes:
    return req(0x4E, cls(6) + inst(1), struct.pack("<BBHHIBB", 0x0A, 0x0E, serial, 0x4D, 0x3D2B31E0,
                                                   len(path) // 2, 0) + path)


def forward_close_reply(serial: int) -> bytes:
    return rsp(0x4E, data=struct.pack("<HHIBB", serial, 0x4D, 0x3D2B31E0, 0, 0))


REQUESTOR = bytes([7]) + struct.pack("<HI", 0x4D, 0x3D2B31E0)


def pccc(cmd: int, fnc: int | None, params: bytes = b"", tns: int = 0x1234) -> bytes:
    body = REQUESTOR + bytes([cmd, 0]) + struct.pack("<H", tns) + (bytes([fnc]) if fnc is not None else b"") + params
    return req(0x4B, cls(0x67) + inst(1), body)


def pccc_reply(cmd: int, sts: int = 0, data: bytes = b"", tns: int = 0x1234) -> bytes:
    return rsp(0x4B, data=REQUESTOR + bytes([cmd | 0x40, sts]) + struct.pack("<H", tns) + data)


def io_packet(connection: int, seq: int, data: bytes = b"\x01\x00\x00\x00\x00\x00") -> bytes:
    return struct.pack("<HHHIIHH", 2, 0x8002, 8, connection, seq, 0xB1, len(data)) + data


def identity_item(name: str = "1756-ENBT/A", vendor: int = 1, devtype: int = 12, product: int = 58,
                  rev: tuple[int, int] = (4, 3), status: int = 0x30, serial: int = 0x524D8E, state: int = 3,
                  address: str = "10.1.1.164") -> bytes:
    ip = bytes(int(x) for x in address.split("."))
    body = (struct.pack("<H", 1) + struct.pack(">hH", 2, 44818) + ip + bytes(8)
            + struct.pack("<HHHBBHI", vendor, devtype, product, rev[0], rev[1], status, serial)
            + bytes([len(name)]) + name.encode() + bytes([state]))
    return struct.pack("<HHH", 1, 0x0C, len(body)) + body


def run(session: EnipSession, chunks: list[tuple[bool, bytes]], ts: float = 100.0) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for to_server, chunk in chunks:
        out = session.feed(chunk, to_server, ts)
        for event in out:
            assert set(event) <= DECLARED, set(event) - DECLARED
        events += out
    return events


def registered() -> EnipSession:
    """A session that registered (handle SESSION)."""
    session = EnipSession()
    run(session, [(True, encap(0x65, b"\x01\x00\x00\x00", session=0)), (False, encap(0x65, b"\x01\x00\x00\x00"))])
    return session


def header(command: int, length: int, status: int = 0, ctx: bytes = CTX, session: int = SESSION) -> dict[str, Any]:
    names = {0x63: "list_identity", 0x65: "register_session", 0x66: "unregister_session", 0x6F: "send_rr_data",
             0x70: "send_unit_data", 0x04: "list_services", 0x64: "list_interfaces", 0x00: "nop"}
    return {"enip.command": command, "enip.command_name": names[command], "enip.length": length,
            "enip.session_handle": session, "enip.status": status,
            "enip.status_name": "success" if not status else f"unknown-{status}", "enip.sender_context": ctx.hex(),
            "enip.options": 0}


def rr_fields(timeout: int = 10) -> dict[str, Any]:
    return {"enip.interface_handle": 0, "enip.timeout": timeout, "enip.cpf.item_count": 2,
            "enip.cpf.item_types": (0x0000, 0x00B2)}


def paired() -> dict[str, Any]:
    return {"enip.request_time_ms": 100_000, "enip.response_time_ms": 0.0}


# -- exact events for whole exchanges ---------------------------------------------------------------


def test_register_read_tag_unregister() -> None:
    """RegisterSession, a Read Tag of a REAL and its reply, UnRegisterSession: exact events."""
    session = EnipSession()
    register = run(session, [(True, encap(0x65, b"\x01\x00\x00\x00", session=0)),
                             (False, encap(0x65, b"\x01\x00\x00\x00"))])
    assert register == [
        {**header(0x65, 4, session=0), "event.action": "register_session", "ics.function": "register_session",
         "ics.operation": "session", "ics.role": "request", "enip.protocol_version": 1, "enip.option_flags": 0},
        {**header(0x65, 4), "event.action": "register_session", "ics.function": "register_session",
         "ics.operation": "session", "ics.role": "response", "enip.protocol_version": 1, "enip.option_flags": 0,
         "enip.request_time_ms": 100_000, "enip.response_time_ms": 0.0, "ics.status": "ok",
         "event.outcome": "success"},
    ]
    read = req(0x4C, sym("Tank_Level"), struct.pack("<H", 1))
    reply = rsp(0x4C, data=struct.pack("<Hf", 0xCA, 42.5))
    request, response = run(session, [(True, send_rr(read)), (False, send_rr(reply))])
    tag = {"cip.symbol": ("Tank_Level",), "cip.tag": "Tank_Level", "ics.tag": ("Tank_Level",),
           "cip.path": "symbol Tank_Level"}
    assert request == {**header(0x6F, 16 + len(read)), **rr_fields(), "event.action": "read_tag",
                       "ics.function": "read_tag", "ics.operation": "read", "ics.role": "request",
                       "cip.service_code": 0x4C, "cip.service": "read_tag", **tag, "cip.data_length": 2,
                       "cip.elements": 1, "ics.address_count": 1}
    assert response == {**header(0x6F, 16 + len(reply)), **rr_fields(), "event.action": "read_tag",
                        "ics.function": "read_tag", "ics.operation": "read", "ics.role": "response",
                        "cip.service_code": 0x4C, "cip.service": "read_tag", **tag, "cip.elements": 1,
                        "ics.address_count": 1, **paired(), "cip.general_status": 0, "cip.status": "success",
                        "ics.status": "ok", "event.outcome": "success", "cip.data_length": 6,
                        "cip.data_type_code": 0xCA, "cip.data_type": "REAL", "ics.values": [42.5]}
    [bye] = run(session, [(True, encap(0x66))])
    assert bye == {**header(0x66, 0), "event.action": "unregister_session", "ics.function": "unregister_session",
                   "ics.operation": "session", "ics.role": "request"}
    assert session.stats["paired"] == 2 and session.finish(101.0) == []


def test_list_identity_reply_exact() -> None:
    session = EnipSession()
    ask, answer = run(session, [(True, encap(0x63, session=0)), (False, encap(0x63, identity_item(), session=0))])
    assert ask == {**header(0x63, 0, session=0), "event.action": "list_identity", "ics.function": "list_identity",
                   "ics.operation": "discovery", "ics.role": "request"}
    assert answer == {
        **header(0x63, len(identity_item()), session=0), "event.action": "list_identity",
        "ics.function": "list_identity", "ics.operation": "identity", "ics.role": "response",
        "enip.cpf.item_count": 1, "enip.cpf.item_types": (0x0C,), "enip.identity.encapsulation_version": 1,
        "enip.identity.socket_address": "10.1.1.164", "enip.identity.socket_port": 44818,
        "enip.identity.vendor_id": 1, "enip.identity.vendor_name": "Rockwell Automation/Allen-Bradley",
        "enip.identity.device_type": 12, "enip.identity.device_type_name": "communications_adapter",
        "enip.identity.product_code": 58, "enip.identity.revision": "4.3", "enip.identity.revision_major": 4,
        "enip.identity.revision_minor": 3, "enip.identity.status": 0x30, "enip.identity.serial_number": 0x524D8E,
        "enip.identity.serial": "0x00524d8e", "enip.identity.product_name": "1756-ENBT/A",
        "enip.identity.state": 3, "enip.identity.state_name": "operational", "ics.tag": ("identity",),
        **paired(), "ics.status": "ok", "event.outcome": "success"}


def test_scapy_builds_the_same_identity_and_services_items() -> None:
    """scapy's ListIdentity and ListServices items decode to the same fields as the crafted ones. scapy
    2.8 computes none of the lengths and packs the list's item count big-endian: they are given here."""
    item = bytes(ENIPListIdentityItem(itemTypeCode=0x0C, itemLength=45, protocolVersion=1, sinFamily=2,
                                      sinPort=44818, sinAddress="10.1.1.164", vendorId=1, deviceType=12,
                                      productCode=58, revisionMajor=4, revisionMinor=3, status=0x30,
                                      serialNumber=0x524D8E, productNameLength=11, productName=b"1756-ENBT/A",
                                      state=3))
    assert item == identity_item()[2:]
    [theirs] = run(EnipSession(), [(False, encap(0x63, b"\x01\x00" + item, session=0))])
    [ours] = run(EnipSession(), [(False, encap(0x63, identity_item(), session=0))])
    assert {k: v for k, v in theirs.items() if k.startswith("enip.identity")} == \
        {k: v for k, v in ours.items() if k.startswith("enip.identity")}
    services = bytes(ENIPListServicesItem(itemTypeCode=0x100, itemLength=20, protocolVersion=1, flag=0x120,
                                          serviceName=b"Communications"))
    [listed] = run(EnipSession(), [(False, encap(0x04, b"\x01\x00" + services, session=0))])
    assert listed["enip.services"] == ["Communications"] and listed["enip.service_capabilities"] == [0x120]
    assert listed["enip.service_versions"] == [1] and listed["enip.cpf.item_types"] == (0x100,)
    assert listed["ics.operation"] == "discovery" and "enip.anomaly" not in listed


def test_list_interfaces_nop_and_discovery_anomalies() -> None:
    events = run(EnipSession(), [(True, encap(0x64, session=0)), (False, encap(0x64, b"\x00\x00", session=0)),
                                 (True, encap(0x00)), (True, encap(0x63, b"junk", session=0))])
    assert [e["event.action"] for e in events] == ["list_interfaces", "list_interfaces", "nop", "list_identity"]
    assert events[1]["enip.cpf.item_count"] == 0 and events[1]["ics.status"] == "ok"
    assert events[2]["ics.operation"] == "other" and "enip.anomaly" not in events[2]
    assert events[3]["enip.anomaly"] == ["request-with-data"]


# -- CIP services, named by their class --------------------------------------------------------------


@pytest.mark.parametrize("code", sorted(_COMMON), ids=[_COMMON[c][0] for c in sorted(_COMMON)])
def test_every_common_service(code: int) -> None:
    name, operation, _ = _COMMON[code]
    path = cls(1) + inst(1) + (attr(7) if code in (0x0E, 0x10) else b"")
    data = b"" if code != 0x0A else msp_body([req(0x0E, cls(1) + inst(1) + attr(7))])
    request, *_ = run(registered(), [(True, send_rr(req(code, path, data)))])
    assert (request["cip.service"], request["ics.function"], request["ics.operation"]) == (
        name, name, operation if code != 0x0A else "read")
    assert request["cip.class"] == (1,) and request["cip.class_name"] == "identity"
    session = registered()
    run(session, [(True, send_rr(req(code, path, data)))])
    reply_data = b"" if code != 0x0A else msp_body([rsp(0x0E, data=b"\x00\x00")])
    reply, *_ = run(session, [(False, send_rr(rsp(code, data=reply_data)))])
    assert (reply["ics.function"], reply["ics.role"], reply["ics.status"], reply["cip.class"]) == (
        name, "response", "ok", (1,))


CLASS_SPECIFIC = [(c, code) for c in sorted(_CLASS_SERVICES) for code in sorted(_CLASS_SERVICES[c])]


@pytest.mark.parametrize(("klass", "code"), CLASS_SPECIFIC, ids=[_CLASS_SERVICES[c][k][0] + f"@{c:#x}"
                                                                 for c, k in CLASS_SPECIFIC])
def test_class_specific_services_are_named_by_class(klass: int, code: int) -> None:
    name, operation, _ = _CLASS_SERVICES[klass][code]
    session = registered()
    [request] = [e for e in run(session, [(True, send_rr(req(code, cls(klass) + inst(1))))])
                 if "cip.embedded" not in e]
    assert (request["ics.function"], request["cip.service_code"]) == (name, code)
    if code != 0x52 or klass != 6:  # an empty Unconnected Send takes no operation from inside
        assert request["ics.operation"] == operation or klass == 0x67
    [reply] = run(session, [(False, send_rr(rsp(code, status=0x08)))])
    assert (reply["ics.function"], reply["ics.status"], reply["event.outcome"]) == (
        name, "service_not_supported", "failure")


def test_logix_services_on_a_symbolic_path_and_unknown_classes() -> None:
    names = {code: run(registered(), [(True, send_rr(req(code, sym("T"))))])[0]["ics.function"]
             for code in (0x4C, 0x4D, 0x4E, 0x52, 0x53)}
    assert names == {0x4C: "read_tag", 0x4D: "write_tag", 0x4E: "read_modify_write_tag",
                     0x52: "read_tag_fragmented", 0x53: "write_tag_fragmented"}
    unlock = run(registered(), [(True, send_unit(7, 1, req(0x4C, cls(0x8E) + inst(1) + cls(0x74) + inst(1))))])[0]
    assert (unlock["ics.function"], unlock["cip.class"], unlock["cip.class_name"]) == (
        "class_specific-76", (0x8E, 0x74), "vendor_specific-142")
    assert unlock["ics.operation"] == "other"
    vendor = run(registered(), [(True, send_rr(req(0x40, cls(1) + inst(1))))])[0]
    reserved = run(registered(), [(True, send_rr(req(0x7E, cls(1) + inst(1))))])[0]
    assert vendor["ics.function"] == "vendor_specific-64" and "enip.anomaly" not in vendor
    assert reserved["ics.function"] == "unknown-126" and reserved["enip.anomaly"] == ["reserved-service"]
    # A reply whose request was not seen has no class: the code alone names it.
    orphan = run(EnipSession(), [(False, send_rr(rsp(0x4C, data=struct.pack("<Hi", 0xC4, 7))))])[0]
    assert orphan["ics.function"] == "class_specific-76" and orphan["ics.operation"] == "other"


@pytest.mark.parametrize(("code", "klass", "operation"), [
    (0x05, 1, "restart"), (0x06, 0x8E, "control_run"), (0x07, 0x8E, "control_stop"), (0x10, 0xF5, "write"),
    (0x0E, 1, "read"), (0x08, 4, "config_change"), (0x09, 4, "config_change"), (0x4B, 0x37, "file_read"),
    (0x4C, 0x37, "file_write"), (0x51, 0x37, "file_delete"), (0x54, 6, "session"), (0x4E, 6, "session"),
])
def test_operation_mapping(code: int, klass: int, operation: str) -> None:
    [request] = run(registered(), [(True, send_rr(req(code, cls(klass) + inst(1) + (b"\x01\x00" if code == 5
                                                                                    else b""))))])
    assert request["ics.operation"] == operation, request["ics.function"]


def test_reset_type_and_identity_get_attributes_all() -> None:
    session = registered()
    [reset] = run(session, [(True, send_rr(req(0x05, cls(1) + inst(1), b"\x01")))])
    assert (reset["ics.function"], reset["ics.operation"], reset["cip.reset_type"]) == ("reset", "restart", 1)
    session = registered()
    run(session, [(True, send_rr(req(0x01, cls(1) + inst(1))))])
    data = struct.pack("<HHHBBHI", 1, 14, 155, 32, 11, 0x0060, 0x60C2A1F3) + b"\x0aL33ER/A LX" + b"\x03"
    [reply] = run(session, [(False, send_rr(rsp(0x01, data=data)))])
    assert (reply["enip.identity.vendor_id"], reply["enip.identity.device_type_name"],
            reply["enip.identity.revision"], reply["enip.identity.product_name"], reply["enip.identity.state"]) == (
        1, "programmable_logic_controller", "32.11", "L33ER/A LX", 3)
    assert "enip.identity.status_flags" not in reply  # 0x0060: extended status bits only
    session = registered()
    run(session, [(True, send_rr(req(0x0E, cls(1) + inst(1) + attr(7))))])
    [name] = run(session, [(False, send_rr(rsp(0x0E, data=b"\x05PLC-5")))])
    assert name["enip.identity.product_name"] == "PLC-5" and name["ics.tag"] == ("1:1:7",)


# -- request paths ------------------------------------------------------------------------------------


def test_path_segments() -> None:
    wide = parse_path(cls(0x1234) + inst(0x12345678) + attr(0x300))
    assert wide.fields["cip.class"] == (0x1234,) and wide.fields["cip.instance"] == (0x12345678,)
    assert wide.fields["cip.attribute"] == (0x300,) and wide.fields["ics.tag"] == ("4660:305419896:768",)
    assert wide.anomaly is None and wide.fields["cip.class_name"] == "unknown-4660"
    routed = parse_path(port(1, 0) + port(2, "10.0.0.7") + port(1, 3))
    assert routed.route == "1,0,2,10.0.0.7,1,3" and routed.fields["ics.unit"] == "1,0,2,10.0.0.7,1,3"
    assert routed.fields["cip.path"] == "port 1 link 0, port 2 link 10.0.0.7, port 1 link 3"
    big_port = parse_path(bytes([0x0F, 0x01, 0x00, 0x05]) + cls(2) + inst(1))  # port 256 as 16 bits, then link 5
    assert big_port.route == "1,5" or big_port.route == "256,5"
    keyed = parse_path(bytes([0x34, 0x04]) + struct.pack("<HHHBB", 1, 14, 155, 0x80 | 32, 11) + cls(2) + inst(1))
    assert "key vendor 1 type 14 product 155 revision 32.11" in keyed.fields["cip.path"]
    assert keyed.fields["cip.class"] == (2,) and keyed.anomaly is None
    tagged = parse_path(sym("Program:Main") + sym("Grid") + member(1) + member(2) + sym("Value"))
    assert tagged.fields["cip.symbol"] == ("Program:Main", "Grid", "Value")
    assert tagged.fields["cip.tag"] == "Program:Main.Grid[1,2].Value" and tagged.symbolic
    element = parse_path(sym("Values") + logical(2, 300))
    assert element.fields["cip.tag"] == "Values[300]" and element.fields["cip.member"] == (300,)
    short = parse_path(bytes([0x63]) + b"abc")  # a symbolic segment of 3 ASCII characters
    assert short.fields["cip.symbol"] == ("abc",)
    point = parse_path(cls(4) + inst(100) + logical(3, 150))
    assert point.fields["cip.connection_point"] == (150,) and point.fields["ics.tag"] == ("4:100",)
    network = parse_path(bytes([0x43, 0x05]) + cls(4))
    assert network.fields["cip.class"] == (4,) and network.anomaly is None
    assert parse_path(cls(4)[:1]).anomaly == "path-truncated"
    assert parse_path(bytes([0x23, 0x00]) + cls(4)).anomaly == "unsupported-path-segment"  # reserved format
    assert parse_path(bytes([0xE0, 0x00])).anomaly == "unsupported-path-segment"
    assert parse_path(sym("abc")[:3]).anomaly == "path-truncated"
    assert parse_path(b"").fields == {}


# -- tag services -----------------------------------------------------------------------------------


def test_write_tags_with_values() -> None:
    session = registered()
    write = req(0x4D, sym("Speeds") + member(2), struct.pack("<HH3i", 0xC4, 3, 10, -20, 30))
    [request] = run(session, [(True, send_rr(write))])
    assert (request["ics.function"], request["ics.operation"], request["cip.tag"], request["cip.data_type"],
            request["cip.elements"], request["ics.values"]) == ("write_tag", "write", "Speeds[2]", "DINT", 3,
                                                                [10, -20, 30])
    [reply] = run(session, [(False, send_rr(rsp(0x4D)))])
    assert reply["cip.tag"] == "Speeds[2]" and reply["ics.status"] == "ok" and "ics.values" not in reply
    [flag] = run(registered(), [(True, send_rr(req(0x4D, sym("Run"), struct.pack("<HHB", 0xC1, 1, 0xFF))))])
    assert flag["ics.values"] == [1] and flag["cip.data_type"] == "BOOL"
    [odd] = run(registered(), [(True, send_rr(req(0x4D, sym("X"), struct.pack("<HHf", 0xCA, 2, 1.0))))])
    assert odd["enip.anomaly"] == ["tag-data-length-mismatch"] and odd["ics.values"] == [1.0]
    nan = run(registered(), [(True, send_rr(req(0x4D, sym("X"), struct.pack("<HHf", 0xCA, 1, float("nan")))))])[0]
    assert nan.get("ics.values", []) == []
    [udt] = run(registered(), [(True, send_rr(req(0x4D, sym("U"), struct.pack("<HHHI", 0xA0, 0x1234, 1, 5))))])
    assert udt["cip.data_type"] == "STRUCT" and udt["cip.structure_handle"] == 0x1234


def test_fragmented_and_read_modify_write() -> None:
    session = registered()
    [request] = run(session, [(True, send_rr(req(0x52, sym("Big"), struct.pack("<HI", 100, 400))))])
    assert (request["ics.function"], request["ics.address_start"], request["ics.address_count"]) == (
        "read_tag_fragmented", 400, 100)
    [partial] = run(session, [(False, send_rr(rsp(0x52, status=0x06, data=struct.pack("<H4h", 0xC3, 1, 2, 3, 4))))])
    assert (partial["ics.status"], partial["cip.status"], partial["ics.values"], partial["cip.offset"]) == (
        "ok", "partial_transfer", [1, 2, 3, 4], 400)
    [write] = run(registered(), [(True, send_rr(req(0x53, sym("Big"), struct.pack("<HHI2h", 0xC3, 100, 200, 5, 6))))])
    assert (write["ics.function"], write["cip.offset"], write["ics.values"]) == ("write_tag_fragmented", 200, [5, 6])
    [rmw] = run(registered(), [(True, send_rr(req(0x4E, sym("Bits"), struct.pack("<HHH", 2, 0x0001, 0xFFFE))))])
    assert (rmw["ics.function"], rmw["ics.operation"], rmw["cip.mask_size"]) == ("read_modify_write_tag", "write", 2)
    assert "enip.anomaly" not in rmw


def test_attribute_lists_give_one_tag_per_attribute() -> None:
    session = registered()
    [request] = run(session, [(True, send_rr(req(0x03, cls(1) + inst(1), struct.pack("<H3H", 3, 1, 2, 7))))])
    assert request["cip.attribute"] == (1, 2, 7) and request["ics.tag"] == ("1:1:1", "1:1:2", "1:1:7")
    assert request["ics.address_count"] == 3
    [reply] = run(session, [(False, send_rr(rsp(0x03, data=b"\x03\x00")))])
    assert reply["cip.attribute"] == (1, 2, 7) and reply["ics.tag"] == ("1:1:1", "1:1:2", "1:1:7")
    [setting] = run(registered(), [(True, send_rr(req(0x04, cls(0x8B) + inst(1), struct.pack("<HHHI", 1, 6, 0, 9))))])
    assert setting["cip.attribute"] == (6,) and setting["ics.operation"] == "write"
    [short] = run(registered(), [(True, send_rr(req(0x03, cls(1) + inst(1), struct.pack("<H1H", 3, 1))))])
    assert short["enip.anomaly"] == ["attribute-list-truncated"] and short["cip.attribute"] == (1,)


# -- Multiple Service Packet and Unconnected Send ----------------------------------------------------


def test_multiple_service_packet_unwrapped_and_paired() -> None:
    session = registered()
    inner = [req(0x4C, sym(f"T{k}"), b"\x01\x00") for k in range(3)] + [req(0x0E, cls(1) + inst(1) + attr(1))]
    requests = run(session, [(True, send_unit(0x100, 7, msp(inner)))])
    assert [e["ics.function"] for e in requests] == ["multiple_service_packet", "read_tag", "read_tag", "read_tag",
                                                     "get_attribute_single"]
    outer, *embedded = requests
    assert outer["cip.service_count"] == 4 and outer["ics.operation"] == "read" and "cip.embedded" not in outer
    assert [e["cip.index"] for e in embedded] == [0, 1, 2, 3]
    assert all(e["cip.embedded"] and e["cip.parent_service"] == "multiple_service_packet" for e in embedded)
    assert all(e["enip.connection_id"] == 0x100 and e["cip.sequence_count"] == 7 for e in embedded)
    replies = [rsp(0x4C, data=struct.pack("<Hi", 0xC4, k)) for k in range(3)] + [rsp(0x0E, status=0x14)]
    answered = run(session, [(False, send_unit(0x200, 7, msp_reply(replies, status=0x1E)))])
    outer_reply, *inner_replies = answered
    assert outer_reply["ics.status"] == outer_reply["cip.status"] == "embedded_service_error"
    assert [e["cip.tag"] for e in inner_replies[:3]] == ["T0", "T1", "T2"]
    assert [e["ics.values"] for e in inner_replies[:3]] == [[0], [1], [2]]
    assert (inner_replies[3]["ics.function"], inner_replies[3]["ics.status"], inner_replies[3]["ics.tag"]) == (
        "get_attribute_single", "attribute_not_supported", ("1:1:1",))
    assert all(e["enip.response_time_ms"] == 0.0 for e in answered)
    mixed = run(registered(), [(True, send_rr(msp([req(0x4C, sym("A"), b"\x01\x00"),
                                                   req(0x4D, sym("B"), struct.pack("<HHh", 0xC3, 1, 5))])))])
    assert mixed[0]["ics.operation"] == "other"  # a read and a write: no single operation


def test_multiple_service_packet_bounds_and_malformed_offsets() -> None:
    many = msp([req(0x0E, cls(1) + inst(1) + attr(1))] * (MAX_EMBEDDED + 5))
    session = registered()
    events = run(session, [(True, send_rr(many))])
    assert len(events) == 1 + MAX_EMBEDDED and events[0]["cip.services_omitted"] == 5
    assert session.stats["embedded_omitted"] == 5
    body = struct.pack("<HHH", 2, 6, 200) + req(0x0E, cls(1) + inst(1) + attr(1))
    [bad, first] = run(registered(), [(True, send_rr(req(0x0A, cls(2) + inst(1), body)))])
    assert bad["enip.anomaly"] == ["msp-invalid-offset"] and first["ics.function"] == "get_attribute_single"
    [cut] = run(registered(), [(True, send_rr(req(0x0A, cls(2) + inst(1), struct.pack("<H", 9))))])
    assert cut["enip.anomaly"] == ["msp-offsets-beyond-data"] and cut["cip.service_count"] == 9
    # Nesting: a packet inside a packet inside ... is followed MAX_DEPTH levels, then reported.
    nested = req(0x0E, cls(1) + inst(1) + attr(1))
    for _ in range(6):
        nested = msp([nested])
    deep = run(registered(), [(True, send_rr(nested))])
    assert any("nesting-too-deep" in e.get("enip.anomaly", ()) for e in deep) and len(deep) == 5


def test_unconnected_send_route_unit_and_reply_pairing() -> None:
    session = registered()
    embedded = req(0x4C, sym("Level"), b"\x01\x00")
    wrapper, inner = run(session, [(True, send_rr(ucs(embedded, port(1, 2))))])
    assert (wrapper["ics.function"], wrapper["ics.operation"], wrapper["cip.route"], wrapper["ics.unit"]) == (
        "unconnected_send", "read", "1,2", "1,2")
    assert wrapper["cip.class"] == (6,) and wrapper["cip.timeout_ticks"] == 0xF9
    assert (inner["ics.function"], inner["cip.parent_service"], inner["ics.unit"], inner["cip.tag"]) == (
        "read_tag", "unconnected_send", "1,2", "Level")
    # Routing worked: the reply is the embedded request's own.
    [reply] = run(session, [(False, send_rr(rsp(0x4C, data=struct.pack("<Hh", 0xC3, 9))))])
    assert (reply["ics.function"], reply["cip.tag"], reply["ics.unit"], reply["ics.values"]) == (
        "read_tag", "Level", "1,2", [9])
    # Routing failed: Unconnected Send's own reply with the extended status.
    run(session, [(True, send_rr(ucs(embedded, port(1, 5))))])
    [failed] = run(session, [(False, send_rr(rsp(0x52, status=0x01, extended=(0x0204,), data=b"\x02\x00")))])
    assert (failed["ics.function"], failed["ics.status"], failed["cip.extended_status"],
            failed["cip.extended_status_name"], failed["cip.cm.remaining_path_size"]) == (
        "unconnected_send", "connection_failure", (0x0204,), "unconnected_request_timed_out", 2)
    # Read Tag Fragmented inside Unconnected Send: a 0xD2 reply is the embedded one's.
    run(session, [(True, send_rr(ucs(req(0x52, sym("Big"), struct.pack("<HI", 10, 0)), port(1, 0))))])
    [fragment] = run(session, [(False, send_rr(rsp(0x52, status=0x06, data=struct.pack("<Hh", 0xC3, 1))))])
    assert fragment["ics.function"] == "read_tag_fragmented" and fragment["ics.status"] == "ok"
    # Unconnected Send carrying a Multiple Service Packet.
    events = run(session, [(True, send_rr(ucs(msp([embedded, embedded]), port(1, 0))))])
    assert [e["ics.function"] for e in events] == ["unconnected_send", "multiple_service_packet", "read_tag",
                                                   "read_tag"]
    replies = run(session, [(False, send_rr(msp_reply([rsp(0x4C, data=struct.pack("<Hh", 0xC3, 1))] * 2)))])
    assert [e["ics.function"] for e in replies] == ["multiple_service_packet", "read_tag", "read_tag"]
    assert all(e["ics.unit"] == "1,0" for e in replies)


# -- Connection Manager --------------------------------------------------------------------------------


def test_forward_open_connected_messages_forward_close() -> None:
    session = registered()
    connection = port(1, 0) + cls(2) + inst(1)
    [request] = run(session, [(True, send_rr(forward_open(0, 0x80FE0005, 6, connection)))])
    assert (request["ics.function"], request["ics.operation"], request["ics.unit"], request["cip.route"]) == (
        "forward_open", "session", "1,0", "1,0")
    assert (request["cip.cm.to_connection_id"], request["cip.cm.connection_serial"],
            request["cip.cm.originator_vendor_id"], request["cip.cm.originator_serial"]) == (
        0x80FE0005, 6, 0x4D, 0x3D2B31E0)
    assert (request["cip.cm.ot_rpi_us"], request["cip.cm.to_rpi_us"], request["cip.cm.ot_size"],
            request["cip.cm.ot_type"], request["cip.cm.ot_priority"], request["cip.cm.transport_class"],
            request["cip.cm.trigger"], request["cip.cm.direction"], request["cip.cm.large"]) == (
        100_000, 100_000, 500, "point_to_point", "low", 3, "application_object", "server", False)
    assert request["cip.cm.connection_path"] == "port 1 link 0, class 0x02, instance 1"
    assert request["cip.cm.connection_class"] == (2,) and request["cip.class"] == (6,)
    [reply] = run(session, [(False, send_rr(forward_open_reply(0x0A24F36E, 0x80FE0005, 6)))])
    assert (reply["cip.cm.ot_connection_id"], reply["cip.cm.ot_api_us"], reply["ics.unit"], reply["ics.status"]) == (
        0x0A24F36E, 100_000, "1,0", "ok")
    # Connected explicit messages on the new connection: the unit is the connection's route.
    [message] = run(session, [(True, send_unit(0x0A24F36E, 1, req(0x0E, cls(1) + inst(1) + attr(7))))])
    [answer] = run(session, [(False, send_unit(0x80FE0005, 1, rsp(0x0E, data=b"\x03abc")))])
    assert message["ics.unit"] == answer["ics.unit"] == "1,0"
    assert (answer["ics.function"], answer["cip.sequence_count"], answer["enip.connection_id"]) == (
        "get_attribute_single", 1, 0x80FE0005)
    [close] = run(session, [(True, send_rr(forward_close(6, connection)))])
    [closed] = run(session, [(False, send_rr(forward_close_reply(6)))])
    assert (close["ics.function"], close["ics.operation"], close["cip.cm.connection_serial"]) == (
        "forward_close", "session", 6)
    assert closed["ics.function"] == "forward_close" and closed["cip.cm.connection_serial"] == 6
    assert session.stats["paired"] == 4


def test_large_forward_open_and_failures() -> None:
    session = registered()
    [large] = run(session, [(True, send_rr(forward_open(0, 7, 9, cls(4) + inst(100), large=True, trigger=0x01)))])
    assert (large["ics.function"], large["cip.cm.large"], large["cip.cm.ot_size"], large["cip.cm.ot_type"],
            large["cip.cm.transport_class"], large["cip.cm.trigger"], large["cip.cm.direction"]) == (
        "large_forward_open", True, 500, "point_to_point", 1, "cyclic", "client")
    refusal = struct.pack("<HHIBB", 9, 0x4D, 0x3D2B31E0, 3, 0)
    [refused] = run(session, [(False, send_rr(rsp(0x5B, status=0x01, extended=(0x0111,), data=refusal)))])
    assert (refused["ics.status"], refused["cip.extended_status_name"], refused["cip.cm.remaining_path_size"],
            refused["cip.cm.connection_serial"], refused["event.outcome"]) == (
        "connection_failure", "rpi_not_supported", 3, 9, "failure")
    [cut] = run(registered(), [(True, send_rr(req(0x54, cls(6) + inst(1), b"\x0a\x0e\x00")))])
    assert cut["enip.anomaly"] == ["forward-open-truncated"]
    [odd] = run(registered(), [(True, send_rr(forward_open(0, 7, 9, cls(2) + inst(1)) + b"\x00\x00"))])
    assert odd["enip.anomaly"] == ["connection-path-size-mismatch"]


# -- PCCC ----------------------------------------------------------------------------------------------


def test_execute_pccc_functions_and_addresses() -> None:
    session = registered()
    read = pccc(0x0F, 0xA2, bytes([4, 7, 0x89, 0, 0]))
    [request] = run(session, [(True, send_rr(read))])
    assert (request["ics.function"], request["ics.operation"], request["cip.pccc.function"],
            request["cip.pccc.command"], request["cip.pccc.function_code"], request["cip.pccc.address"],
            request["ics.tag"], request["cip.pccc.transaction"]) == (
        "execute_pccc", "read", "protected_typed_logical_read_3", 0x0F, 0xA2, "N7:0", ("N7:0",), 0x1234)
    [reply] = run(session, [(False, send_rr(pccc_reply(0x0F, data=b"\x2a\x00\x00\x00")))])
    assert (reply["ics.operation"], reply["cip.pccc.function"], reply["ics.tag"], reply["cip.pccc.status"]) == (
        "read", "protected_typed_logical_read_3", ("N7:0",), 0)
    run(session, [(True, send_rr(pccc(0x0F, 0xAA, bytes([2, 0xFF, 0x2C, 0x01, 0x8A, 3, 1]) + b"\x00\x00")))])
    [error] = run(session, [(False, send_rr(pccc_reply(0x0F, sts=0x10)))])
    assert (error["ics.status"], error["event.outcome"], error["cip.pccc.address"]) == (
        "pccc:illegal_command_or_format", "failure", "F300:3.1")
    [mode] = run(registered(), [(True, send_rr(pccc(0x0F, 0x80, b"\x01")))])
    assert (mode["ics.operation"], mode["cip.pccc.function"]) == ("mode_change", "change_cpu_mode")
    [status] = run(registered(), [(True, send_unit(3, 1, pccc(0x06, 0x03)))])
    assert (status["ics.operation"], status["cip.pccc.function"]) == ("identity", "diagnostic_status")
    [plc2] = run(registered(), [(True, send_rr(pccc(0x08, None, b"\x00\x01\x02")))])
    assert (plc2["ics.operation"], plc2["cip.pccc.function"]) == ("write", "unprotected_write")
    [unknown] = run(registered(), [(True, send_rr(pccc(0x0F, 0xA3, b"\xff\x94")))])
    assert (unknown["ics.operation"], unknown["cip.pccc.function"]) == ("other", "unknown-15-163")
    [short] = run(registered(), [(True, send_rr(req(0x4B, cls(0x67) + inst(1), b"\x07\x4d")))])
    assert short["enip.anomaly"] == ["pccc-truncated"]
    session = registered()
    run(session, [(True, send_rr(pccc(0x0F, 0xA2, bytes([4, 7, 0x89, 0, 0]))))])
    [mismatch] = run(session, [(False, send_rr(pccc_reply(0x06)))])
    assert mismatch["enip.anomaly"] == ["pccc-reply-command-mismatch"]


def test_modbus_object() -> None:
    session = registered()
    [read] = run(session, [(True, send_rr(req(0x4E, cls(0x44) + inst(1), struct.pack("<HH", 100, 3))))])
    assert (read["ics.function"], read["ics.address_start"], read["ics.address_count"]) == (
        "read_holding_registers", 100, 3)
    [values] = run(session, [(False, send_rr(rsp(0x4E, data=struct.pack("<3H", 7, 8, 9))))])
    assert values["ics.values"] == [7, 8, 9] and values["ics.address_start"] == 100
    [write] = run(registered(), [(True, send_rr(req(0x50, cls(0x44) + inst(1), struct.pack("<HH2H", 5, 2, 1, 2))))])
    assert (write["ics.operation"], write["ics.values"]) == ("write", [1, 2])


# -- status ----------------------------------------------------------------------------------------------


def test_status_names_and_encapsulation_errors() -> None:
    session = registered()
    run(session, [(True, send_rr(req(0x0E, cls(0x77) + inst(1) + attr(1))))])
    [reply] = run(session, [(False, send_rr(rsp(0x0E, status=0x05, extended=(0x1234, 0x5678))))])
    assert (reply["ics.status"], reply["cip.extended_status"], reply["event.outcome"]) == (
        "path_destination_unknown", (0x1234, 0x5678), "failure")
    assert "cip.extended_status_name" not in reply
    [odd] = run(EnipSession(), [(False, send_rr(rsp(0x0E, status=0x99)))])
    assert odd["ics.status"] == "unknown-153"
    session = registered()
    run(session, [(True, send_rr(req(0x0E, cls(1) + inst(1) + attr(1))))])
    [refused] = run(session, [(False, encap(0x6F, b"", status=0x64))])
    assert (refused["ics.function"], refused["ics.status"], refused["event.outcome"], refused["enip.status_name"]) == (
        "send_rr_data", "invalid_session_handle", "failure", "invalid_session_handle")
    assert refused["enip.anomaly"] == ["command-data-truncated"]


# -- connected I/O ---------------------------------------------------------------------------------------


def test_cyclic_io_counted_per_connection_not_reported_per_packet() -> None:
    session = EnipSession(io_interval=10.0)
    events: list[dict[str, Any]] = []
    for k in range(20):  # two connections, one packet each every 0.5 s; connection 2 loses 3 packets
        events += session.feed(io_packet(1, 100 + k), True, 1000.0 + 0.5 * k)
        if k not in (5, 6, 7):
            events += session.feed(io_packet(2, 50 + k, b"\x00" * 10), False, 1000.0 + 0.5 * k)
    events += session.feed(io_packet(2, 60), False, 1009.9)  # an old number: repeated
    assert events == []  # nothing per packet
    events += session.feed(io_packet(1, 120), True, 1010.0)  # the window of connection 1 ends
    [summary] = events
    assert (summary["event.action"], summary["ics.operation"], summary["ics.role"], summary["ics.status"]) == (
        "cyclic_io", "report", "unsolicited", "ok")
    assert (summary["enip.connection_id"], summary["enip.io.packets"], summary["enip.io.first_sequence"],
            summary["enip.io.last_sequence"], summary["enip.io.lost"], summary["enip.io.bytes"],
            summary["enip.io.interval_ms"], summary["ics.tag"]) == (
        1, 20, 100, 119, 0, 120, 500.0, ("connection:0x00000001",))
    rest = session.finish(1011.0)
    by_connection = {e["enip.connection_id"]: e for e in rest}
    assert by_connection[1]["enip.io.packets"] == 1 and by_connection[1]["enip.io.first_sequence"] == 120
    two = by_connection[2]
    assert (two["enip.io.packets"], two["enip.io.lost"], two["enip.io.repeated"], two["enip.io.data_length_max"]) == (
        18, 3, 1, 10)
    assert session.stats["io_packets"] == 39 and session.stats["io_summaries"] == 3 and session.stats["io_lost"] == 3


def test_cyclic_io_packet_events_on_request_and_anomalies() -> None:
    session = EnipSession(io_packets=True)
    [one] = session.feed(io_packet(9, 1), True, 1.0)
    assert (one["enip.connection_id"], one["enip.sequence_number"], one["enip.io.data_length"]) == (9, 1, 6)
    quiet = EnipSession()
    quiet.feed(io_packet(9, 1), True, 1.0)
    [overrun] = quiet.feed(io_packet(9, 2)[:-2], True, 2.0)
    assert overrun["enip.anomaly"] == ["io-item-overrun"] and overrun["event.type"] == ("protocol", "error")
    [bad] = quiet.feed(b"\x02\x00\x02\x80\x04\x00\x01\x00", True, 3.0)
    assert bad["enip.anomaly"] == ["io-address-item"]
    [tiny] = quiet.feed(b"\x02\x00", True, 4.0)
    assert tiny["enip.anomaly"] == ["io-truncated"]
    [final] = quiet.finish(5.0)
    assert final["enip.io.packets"] == 2 and final["enip.io.anomalies"] == 1


def test_io_connections_are_bounded() -> None:
    session = EnipSession()
    for k in range(300):
        session.feed(io_packet(k, 1), True, 1.0)
    summaries = session.finish(2.0)
    assert len(summaries) == 257 and sum(e["enip.io.packets"] for e in summaries) == 300
    assert [e for e in summaries if e.get("enip.io.connections_overflow")][0]["enip.io.packets"] == 44
    assert session.stats["io_connections_overflow"] == 44


# -- pairing ---------------------------------------------------------------------------------------------


def test_pairing_by_context_in_order_and_connected_by_sequence() -> None:
    session = registered()
    a, b = req(0x0E, cls(1) + inst(1) + attr(1)), req(0x0E, cls(1) + inst(1) + attr(2))
    run(session, [(True, send_rr(a, ctx=bytes(8))), (True, send_rr(b, ctx=bytes(8)))], ts=100.0)
    first, second = run(session, [(False, send_rr(rsp(0x0E, data=b"\x01\x00"), ctx=bytes(8))),
                                  (False, send_rr(rsp(0x0E, data=b"\x02\x00"), ctx=bytes(8)))], ts=100.5)
    assert first["cip.attribute"] == (1,) and second["cip.attribute"] == (2,)
    assert first["enip.response_time_ms"] == 500.0
    run(session, [(True, send_unit(5, 10, a)), (True, send_unit(5, 11, b))])
    late, early = run(session, [(False, send_unit(6, 11, rsp(0x0E))), (False, send_unit(6, 10, rsp(0x0E)))])
    assert late["cip.attribute"] == (2,) and early["cip.attribute"] == (1,)
    [mismatch] = run(session, [(True, send_rr(a, ctx=b"x" * 8)), (False, send_rr(rsp(0x4C), ctx=b"x" * 8))])[1:]
    assert mismatch["enip.anomaly"] == ["reply-service-mismatch"] and session.stats["function_mismatch"] == 1


def test_pending_requests_are_bounded_expire_and_are_reported_at_finish() -> None:
    session = EnipSession(max_outstanding=10, timeout=5.0)
    for k in range(15):
        session.feed(send_rr(req(0x0E, cls(1) + inst(1) + attr(1)), ctx=struct.pack("<Q", k)), True, 100.0)
    assert session.stats["requests_dropped"] == 5
    session.feed(send_rr(req(0x0E, cls(1) + inst(1) + attr(1)), ctx=struct.pack("<Q", 99)), True, 110.0)
    assert session.stats["requests_timed_out"] == 1  # expired lazily, one per new request
    [old] = session.feed(send_rr(rsp(0x0E), ctx=struct.pack("<Q", 14)), False, 111.0)
    assert "enip.request_time_ms" not in old and session.stats["requests_timed_out"] == 2
    session.feed(encap(0x63, session=0), True, 111.0)  # discovery: never reported as unanswered
    [report] = session.finish(112.0)
    assert (report["event.action"], report["enip.unanswered"], report["enip.unanswered_functions"]) == (
        "unanswered_requests", 1, ["get_attribute_single"])
    assert report["ics.operation"] == "other" and session.stats["requests_unanswered"] == 1
    assert session.finish(113.0) == []


# -- anomalies -------------------------------------------------------------------------------------------


def test_session_and_direction_anomalies() -> None:
    session = registered()
    get = req(0x0E, cls(1) + inst(1) + attr(1))
    [other] = run(session, [(True, send_rr(get, session=0x99))])
    [none] = run(session, [(True, send_rr(get, session=0))])
    [backwards] = run(session, [(False, send_rr(get))])
    [mirror] = run(session, [(True, send_rr(rsp(0x0E)))])
    assert other["enip.anomaly"] == ["session-mismatch"] and none["enip.anomaly"] == ["no-session-handle"]
    assert backwards["enip.anomaly"] == ["request-from-server"] and mirror["enip.anomaly"] == ["reply-from-client"]
    assert all(e["event.type"] == ("protocol", "error") for e in (other, none, backwards, mirror))
    [flags] = run(session, [(True, encap(0x66, status=3, options=1))])
    assert flags["enip.anomaly"] == ["nonzero-options", "nonzero-status-in-request"]
    [version] = run(EnipSession(), [(True, encap(0x65, b"\x02\x00\x00\x00", session=5))])
    assert version["enip.anomaly"] == ["unsupported-protocol-version", "session-handle-in-register-request"]
    [nohandle] = run(EnipSession(), [(False, encap(0x65, b"\x01\x00\x00\x00", session=0))])
    assert nohandle["enip.anomaly"] == ["register-without-session-handle"]
    assert session.stats["anomalies"] == 5


def test_cpf_and_cip_anomalies() -> None:
    session = registered()
    get = req(0x0E, cls(1) + inst(1) + attr(1))
    odd_items = encap(0x6F, struct.pack("<IHHHHHH", 0, 1, 2, 0xA1, 0, 0xB2, len(get)) + get)
    [odd] = run(session, [(True, odd_items)])
    assert "unexpected-cpf-items" in odd["enip.anomaly"] and odd["ics.function"] == "get_attribute_single"
    overrun = encap(0x6F, struct.pack("<IHHHHHH", 0, 1, 2, 0, 0, 0xB2, len(get) + 10) + get)
    [cut] = run(session, [(True, overrun)])
    assert "cpf-item-overrun" in cut["enip.anomaly"]
    [many] = run(session, [(True, encap(0x6F, struct.pack("<IHH", 0, 1, 40) + b"\x00" * 100))])
    assert "too-many-cpf-items" in many["enip.anomaly"]
    [path] = run(session, [(True, send_rr(bytes([0x0E, 9]) + cls(1)))])
    assert path["enip.anomaly"] == ["path-size-beyond-data"]
    [unknown_item] = run(session, [(True, encap(0x6F, struct.pack("<IHHHH", 0, 1, 1, 0x1234, 0)))])
    assert "unknown-cpf-item" in unknown_item["enip.anomaly"] and unknown_item["ics.function"] == "send_rr_data"
    [tiny] = run(session, [(True, send_rr(b"\x0e"))])
    assert tiny["enip.anomaly"] == ["cip-request-truncated"]
    [short_reply] = run(EnipSession(), [(False, send_rr(b"\x8e\x00"))])
    assert short_reply["enip.anomaly"] == ["cip-reply-truncated"]
    [reserved] = run(EnipSession(), [(False, send_rr(b"\x8e\x01\x00\x00"))])
    assert reserved["enip.anomaly"] == ["reply-reserved-nonzero"]
    [status] = run(EnipSession(), [(False, send_rr(b"\x8e\x00\x00\x03\x01\x00"))])
    assert status["enip.anomaly"] == ["additional-status-truncated"]
    [interface] = run(session, [(True, encap(0x6F, struct.pack("<IHHHHHH", 5, 1, 2, 0, 0, 0xB2, len(get)) + get))])
    assert "non-cip-interface" in interface["enip.anomaly"]
    [empty] = run(session, [(True, send_rr(b""))])
    assert empty["enip.anomaly"] == ["empty-cip-message"] and empty["ics.function"] == "send_rr_data"
    [unknown] = run(session, [(True, encap(0x99, b"abc"))])
    assert unknown["enip.anomaly"] == ["unknown-command"] and unknown["ics.function"] == "unknown-153"


# -- framing: several messages per segment, one message split at every byte --------------------------


def conversation() -> list[tuple[bool, bytes]]:
    read = req(0x4C, sym("Tank_Level"), b"\x01\x00")
    return [
        (True, encap(0x65, b"\x01\x00\x00\x00", session=0)), (False, encap(0x65, b"\x01\x00\x00\x00")),
        (True, send_rr(ucs(read, port(1, 0)))), (False, send_rr(rsp(0x4C, data=struct.pack("<Hf", 0xCA, 1.5)))),
        (True, send_rr(forward_open(0, 0x80FE0001, 1, port(1, 0) + cls(2) + inst(1)))),
        (False, send_rr(forward_open_reply(0x09A56FAC, 0x80FE0001, 1))),
        (True, send_unit(0x09A56FAC, 1, msp([read, read]))),
        (False, send_unit(0x80FE0001, 1, msp_reply([rsp(0x4C, data=struct.pack("<Hh", 0xC3, 4))] * 2))),
        (True, send_unit(0x09A56FAC, 2, pccc(0x0F, 0xA2, bytes([4, 7, 0x89, 0, 0])))),
        (False, send_unit(0x80FE0001, 2, pccc_reply(0x0F, data=b"\x01\x00\x02\x00"))),
        (True, send_rr(forward_close(1, port(1, 0) + cls(2) + inst(1)))), (False, send_rr(forward_close_reply(1))),
        (True, encap(0x66)),
    ]


def test_conversation_is_clean() -> None:
    session = EnipSession()
    events = run(session, conversation())
    assert not any("enip.anomaly" in e for e in events)
    # 2 + 3 (Unconnected Send and its Read Tag, the reply) + 2 + 6 (a packet of two, both ways) + 2 + 2 + 1
    assert len(events) == 18 and session.stats["paired"] == 8 and session.finish(200.0) == []


def test_many_messages_in_one_segment_and_each_split_at_every_byte() -> None:
    expected = run(EnipSession(), conversation())
    client = b"".join(raw for d, raw in conversation() if d)
    server = b"".join(raw for d, raw in conversation() if not d)
    batched = EnipSession()
    together = run(batched, [(True, client[:1]), (True, client[1:])])
    together += run(batched, [(False, server)])
    assert [e["ics.function"] for e in together] == [e["ics.function"] for e in expected if e["ics.role"] == "request"
                                                   or e["event.action"] == "unregister_session"] + [
        e["ics.function"] for e in expected if e["ics.role"] == "response"]
    for _, raw in conversation():
        for cut in range(1, len(raw)):
            session = EnipSession()
            events = run(session, [(True, raw[:cut]), (True, raw[cut:])])
            assert len(events) >= 1, cut


def test_message_split_at_every_offset_in_a_two_way_exchange() -> None:
    expected = run(EnipSession(), conversation())
    stream = conversation()
    for index, (to_server, raw) in enumerate(stream):
        for cut in range(1, len(raw), 3):
            parts = stream[:index] + [(to_server, raw[:cut]), (to_server, raw[cut:])] + stream[index + 1:]
            got = run(EnipSession(), parts)
            assert [(e["ics.function"], e["ics.role"]) for e in got] == [
                (e["ics.function"], e["ics.role"]) for e in expected], (index, cut)


# -- gaps, resynchronisation, violations ------------------------------------------------------------------


@pytest.mark.parametrize("to_server", [True, False])
def test_gap_then_resync(to_server: bool) -> None:
    session = registered()
    get = send_rr(req(0x0E, cls(1) + inst(1) + attr(1)) if to_server else rsp(0x0E))
    session.on_gap(100, to_server)
    assert session.feed(get[30:] + get, to_server, 1.0) and session.stats["resync_skipped_bytes"] == len(get) - 30
    later = session.feed(get, to_server, 2.0)
    assert len(later) == 1 and session.stats["gaps"] == 1


def test_no_header_long_after_a_gap_is_a_violation() -> None:
    session = registered()
    session.on_gap(10, True)
    with pytest.raises(ProtocolViolation, match="no encapsulation header within"):
        for _ in range(200):
            session.feed(b"\xff" * 1000, True, 1.0)


def test_violations() -> None:
    with pytest.raises(ProtocolViolation, match="not an encapsulation header"):
        EnipSession().feed(b"GET / HTTP/1.1\r\nHost: plc\r\n\r\n", True, 1.0)
    session = registered()
    # The messages before the violation are reported first; the next call raises, and keeps raising.
    assert len(session.feed(b"".join(encap(0x99) for _ in range(MAX_BAD_MESSAGES + 1)), True, 1.0)) == 8
    with pytest.raises(ProtocolViolation, match="implausible encapsulation headers in a row"):
        session.feed(encap(0x66), True, 2.0)
    with pytest.raises(ProtocolViolation):
        session.feed(encap(0x66), True, 3.0)
    flagged = registered()  # options set count as implausible too
    assert len(flagged.feed(b"".join(encap(0x63, options=1) for _ in range(MAX_BAD_MESSAGES + 1)), True, 1.0)) == 8
    with pytest.raises(ProtocolViolation, match="implausible"):
        flagged.feed(b"", True, 2.0)
    events = registered().feed(b"".join(encap(0x99) for _ in range(MAX_BAD_MESSAGES)) + encap(0x66), True, 1.0)
    assert len(events) == MAX_BAD_MESSAGES + 1  # a sane header resets the count


# -- fuzzing ------------------------------------------------------------------------------------------------


def drive(session: EnipSession, chunks: list[tuple[bool, bytes | int]]) -> list[dict[str, Any]]:
    """crafting.drive: only events or ProtocolViolation; declared fields, action, operation, finite values."""
    return crafting.drive(session, chunks, DECLARED)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.booleans(), st.binary(max_size=300) | st.integers(1, 50)), max_size=8))
def test_random_bytes(chunks: list[tuple[bool, bytes | int]]) -> None:
    drive(EnipSession(), chunks)
    drive(EnipSession(), [(True, encap(0x65, b"\x01\x00\x00\x00", session=0)), *chunks])
    for _, chunk in chunks:
        if isinstance(chunk, bytes):
            assert probe(chunk, True) in (True, False) and port_probe(chunk, False) in (True, False)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_truncated_and_mutated_messages(data: st.DataObject) -> None:
    stream = b"".join(raw for _, raw in conversation())
    cut = data.draw(st.integers(0, len(stream)))
    garbage = data.draw(st.binary(max_size=64))
    to_server = data.draw(st.booleans())
    drive(EnipSession(), [(to_server, stream[:cut] + garbage)])
    mutated = bytearray(stream)
    for _ in range(data.draw(st.integers(1, 8))):
        mutated[data.draw(st.integers(0, len(stream) - 1))] = data.draw(st.integers(0, 255))
    drive(EnipSession(), [(True, bytes(mutated[:cut])), (False, bytes(mutated)), (True, bytes(mutated[cut:])),
                          (to_server, data.draw(st.integers(1, 100))), (to_server, bytes(mutated[cut:]))])
    io = io_packet(5, 9)
    drive(EnipSession(), [(True, io), (True, bytes(mutated[:data.draw(st.integers(0, 40))]))])


def test_every_message_truncated_at_every_length() -> None:
    """Each message with its length field cut short (the rest dropped) is still one event, never a bug."""
    for to_server, raw in conversation():
        for n in range(0, len(raw) - 24):
            cut = raw[:2] + struct.pack("<H", n) + raw[4:24 + n]
            events = drive(registered(), [(to_server, cut)])
            assert len([e for e in events if e["event.action"] != "unanswered_requests"]) >= 1, (raw[:2], n)
        for n in range(0, len(raw)):  # and the CIP data item cut while the header says it is whole
            drive(registered(), [(to_server, raw[:2] + struct.pack("<H", max(n - 24, 0)) + raw[4:n])])


# -- detection and registration ------------------------------------------------------------------------


def test_probe() -> None:
    client = b"".join(raw for d, raw in conversation() if d)
    server = b"".join(raw for d, raw in conversation() if not d)
    assert probe(client, True) and probe(server, False) and probe(client[:40], True)
    assert probe(encap(0x63, session=0), True) and probe(encap(0x63, identity_item(), session=0), False)
    assert probe(io_packet(3, 4), True) and port_probe(io_packet(3, 4), False)
    assert not probe(encap(0x66), True) and port_probe(encap(0x66), True)  # 24 zero-ish bytes: ports only
    assert not probe(encap(0x00), True)
    assert not probe(encap(0x65, b"\x01\x00\x00\x00\x00", session=0), True)  # RegisterSession is 4 bytes
    assert not probe(encap(0x6F, struct.pack("<IHHHHHH", 7, 1, 2, 0, 0, 0xB2, 0)), True)  # not the CIP interface
    assert not probe(encap(0x99), True) and not port_probe(encap(0x99), True)
    assert not probe(encap(0x63, options=1, session=0), True)
    assert not probe(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", True)
    assert not probe(bytes.fromhex("000100000006011100000001"), True)  # Modbus/TCP
    assert not probe(bytes.fromhex("0300001611e00000000100c0010ac1020100c2020102"), True)  # COTP connect
    assert not probe(bytes.fromhex("680407000000"), True)  # IEC 104 STARTDT
    assert not probe(bytes.fromhex("810b000c0120ffff00ff1008"), True)  # BACnet Who-Is
    assert not probe(bytes(64), True) and not probe(b"", True) and not probe(b"\x63\x00", True)


def test_registration() -> None:
    assert registry()["enip"] is DISSECTOR
    assert DISSECTOR.tcp_ports == {44818} and DISSECTOR.udp_ports == {44818, 2222}
    assert isinstance(DISSECTOR.new_session(), EnipSession)
    assert set(DISSECTOR.operations.values()) <= set(OPERATIONS)
    ops = DISSECTOR.operations
    assert ops["get_attribute_single"] == ops["get_attributes_all"] == ops["read_tag"] == "read"
    assert ops["set_attribute_single"] == ops["write_tag"] == ops["write_tag_fragmented"] == "write"
    assert ops["reset"] == "restart" and ops["start"] == "control_run" and ops["stop"] == "control_stop"
    assert ops["list_identity"] == "discovery" and ops["list_identity/response"] == "identity"
    assert ops["register_session"] == ops["forward_open"] == ops["forward_close"] == "session"
    assert ops["initiate_upload"] == "file_read" and ops["clear_file"] == "file_delete"
    assert ops["execute_pccc/change_cpu_mode"] == "mode_change" and ops["cyclic_io"] == "report"
    assert all(f"execute_pccc/{name}" in ops for name, _ in _PCCC.values())
    names = [f.name for f in DISSECTOR.fields]
    assert len(names) == len(set(names))
    assert DISSECTOR.wireshark is not None
    assert {key.partition("@")[0] for key in DISSECTOR.wireshark.fields} <= set(names)
    assert set(DISSECTOR.wireshark.when) <= set(DISSECTOR.wireshark.fields)


def test_polling_is_routine_and_control_is_not() -> None:
    """Volume control: successful reads, read packets, cyclic I/O summaries and NOP keep-alives are routine;
    writes, Forward Open, stop and failed reads are not."""
    session = registered()
    read, write = req(0x4C, sym("L"), b"\x01\x00"), req(0x4D, sym("L"), struct.pack("<HHh", 0xC3, 1, 5))
    events = run(session, [(True, send_rr(msp([read, read]))), (False, send_rr(msp_reply([rsp(0x4C)] * 2))),
                           (True, send_rr(write)), (False, send_rr(rsp(0x4D))),
                           (True, send_rr(req(0x07, cls(0x8E) + inst(1)))),
                           (True, send_rr(read, ctx=b"r" * 8)), (False, send_rr(rsp(0x4C, status=0x04), ctx=b"r" * 8)),
                           (True, encap(0x00))])
    io = EnipSession()
    io.feed(io_packet(1, 1), True, 1.0)
    events += io.finish(2.0)
    marked = [(e["ics.function"], e["ics.role"], is_routine({**e, "network.protocol": "enip"})) for e in events]
    assert marked == [
        ("multiple_service_packet", "request", True), ("read_tag", "request", True), ("read_tag", "request", True),
        ("multiple_service_packet", "response", True), ("read_tag", "response", True),
        ("read_tag", "response", True), ("write_tag", "request", False), ("write_tag", "response", False),
        ("stop", "request", False), ("read_tag", "request", True), ("read_tag", "response", False),
        ("nop", "request", True), ("cyclic_io", "unsolicited", True)]


def test_declared_fields_are_emitted() -> None:
    """The traffic of a broad conversation uses most declared fields (run() checks each event's fields are
    declared); the ones it leaves out are listed here, each exercised by a test above."""
    session = EnipSession()
    chunks = [(True, encap(0x04, session=0)),
              (False, encap(0x04, struct.pack("<HHHHH", 1, 0x100, 20, 1, 0x120) + b"Communications\x00\x00",
                            session=0)),
              (True, encap(0x63, session=0)), (False, encap(0x63, identity_item(), session=0)), *conversation(),
              (True, send_rr(req(0x05, cls(1) + inst(1), b"\x01"))),
              (False, send_rr(rsp(0x05, status=0x01, extended=(0x0100,)))),
              (True, send_rr(req(0x4D, sym("U"), struct.pack("<HHHI", 0xA0, 0x1234, 1, 5)))),
              (True, send_rr(req(0x4E, sym("Bits"), struct.pack("<HHH", 2, 1, 0xFFFE)))),
              (True, send_rr(req(0x53, sym("Big"), struct.pack("<HHI2h", 0xC3, 100, 200, 5, 6)))),
              (True, send_rr(req(0x03, cls(4) + inst(100) + logical(3, 150), struct.pack("<HH", 1, 3)))),
              (True, send_rr(msp([req(0x0E, cls(1) + inst(1) + attr(1))] * (MAX_EMBEDDED + 1)))),
              (True, send_rr(forward_open(0, 7, 9, cls(4) + inst(100), large=True), ctx=b"F" * 8)),
              (False, send_rr(rsp(0x5B, status=0x01, extended=(0x0111,), data=struct.pack("<HHIBB", 9, 0x4D, 1, 3,
                                                                                              0)), ctx=b"F" * 8)),
              (True, send_rr(req(0x4C, sym("Speeds") + member(2), b"\x01\x00"))),
              (True, encap(0x6F, struct.pack("<IHHHHHHHH", 0, 1, 4, 0, 0, 0x8000, 16, 0xB2, 0) + bytes(16)))]
    seen: set[str] = set()
    for event in run(session, chunks) + session.finish(101.0):
        seen |= set(event)
    io = EnipSession(io_packets=True)
    for event in io.feed(io_packet(1, 1), True, 1.0) + io.feed(io_packet(1, 3)[:-1], True, 2.0) + io.finish(3.0):
        seen |= set(event)
    for k in range(300):
        io.feed(io_packet(k, 1), True, 4.0)
    seen |= {key for event in io.finish(5.0) for key in event}
    own = {f.name for f in DISSECTOR.fields}
    assert seen <= DECLARED
    assert own - seen == {"enip.cpf.sockaddr_t_o", "cip.pccc.extended_status", "enip.identity.status_flags",
                          "cip.embedded", "cip.parent_service", "cip.index"} - seen


def test_docs_hold_the_operation_table() -> None:
    """sensor/protocols/enip.md lists exactly DISSECTOR.operations under its operation heading."""
    text = (REPO / "sensor" / "protocols" / "enip.md").read_text()
    section = text.split("## Function to `ics.operation`", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith("`"):
            rows[cells[0].strip("`")] = cells[2]
    assert rows == dict(DISSECTOR.operations)
