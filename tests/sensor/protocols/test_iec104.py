"""The IEC 60870-5-104 dissector, driven directly through its Session with bytes.

Exact expected events for command, interrogation and report exchanges; every
standard type id with SQ=0 and SQ=1, its elements built by scapy's IEC 104
layer; U and S frames; negative confirmations; sequence-number and STARTDT
anomalies; several APDUs per segment and one APDU split at every byte; junk,
gaps and resynchronisation; hypothesis fuzzing; detection and registration.
The comparisons with Wireshark and the real captures are in
test_iec104_reference.py.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.contrib.scada.iec104 import IEC104_I_Message_SeqIOA, IEC104_I_Message_SingleIOA
from scapy.contrib.scada.iec104 import iec104_information_objects as scapy_io

from sensor.dissect import OPERATIONS, ProtocolViolation
from sensor.protocols import registry
from sensor.protocols.iec104 import DISSECTOR, MAX_BAD_APDUS, MAX_JUNK, Iec104Session, probe
from sensor.schema import COMMON_FIELDS
from tests.sensor.protocols import crafting

REPO = Path(__file__).resolve().parents[3]
DECLARED = {f.name for f in DISSECTOR.fields} | {f.name for f in COMMON_FIELDS}

# -- building APDUs ---------------------------------------------------------------------------------


def i_frame(tx: int, rx: int, asdu: bytes) -> bytes:
    return bytes([0x68, 4 + len(asdu)]) + struct.pack("<HH", tx << 1, rx << 1) + asdu


def s_frame(rx: int) -> bytes:
    return b"\x68\x04\x01\x00" + struct.pack("<H", rx << 1)


def u_frame(c0: int) -> bytes:
    return bytes([0x68, 4, c0, 0, 0, 0])


STARTDT_ACT, STARTDT_CON = u_frame(0x07), u_frame(0x0B)
STOPDT_ACT, STOPDT_CON = u_frame(0x13), u_frame(0x23)
TESTFR_ACT, TESTFR_CON = u_frame(0x43), u_frame(0x83)


def ioa(n: int) -> bytes:
    return n.to_bytes(3, "little")


def asdu(type_id: int, cot: int, objects: bytes, count: int = 1, sq: bool = False, ca: int = 7, oa: int = 0,
         negative: bool = False, test: bool = False) -> bytes:
    vsq = (0x80 if sq else 0) | count
    c = cot | (0x40 if negative else 0) | (0x80 if test else 0)
    return bytes([type_id, vsq, c, oa]) + ca.to_bytes(2, "little") + objects


def cp56(year: int, month: int, day: int, hour: int, minute: int, ms: int, iv: bool = False,
         su: bool = False) -> bytes:
    return struct.pack("<HBBBBB", ms, minute | (0x80 if iv else 0), hour | (0x80 if su else 0), day, month, year)


def run(session: Iec104Session, chunks: list[tuple[bool, bytes]], ts: float = 100.0) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for to_server, chunk in chunks:
        events += session.feed(chunk, to_server, ts)
    return events


def started() -> Iec104Session:
    """A session that saw the connection start: STARTDT act and con."""
    session = Iec104Session()
    run(session, [(True, STARTDT_ACT), (False, STARTDT_CON)])
    return session


def i_head(tx: int, rx: int, length: int, type_id: int, name: str, cot: int, cot_name: str, operation: str,
           role: str, count: int = 1, sq: bool = False, ca: int = 7, oa: int = 0, negative: bool = False,
           test: bool = False) -> dict[str, Any]:
    ev: dict[str, Any] = {
        "iec104.apdu_length": length, "iec104.apci_type": "I", "iec104.apci_type_code": 0, "iec104.tx_seq": tx,
        "iec104.rx_seq": rx, "iec104.type_id": type_id, "iec104.type": name, "event.action": name.lower(),
        "ics.function": name.lower(), "iec104.sq": sq, "iec104.object_count": count, "iec104.cot": cot,
        "iec104.cot_name": cot_name, "iec104.negative": negative, "iec104.test": test, "ics.role": role,
        "iec104.originator": oa, "iec104.common_address": ca, "ics.unit": str(ca), "ics.operation": operation,
    }
    if role == "response":
        failed = negative or cot >= 44
        ev["ics.status"] = ("negative" if cot < 44 else ("unknown_type_id", "unknown_cot", "unknown_common_address",
                                                          "unknown_ioa")[cot - 44]) if failed else "ok"
        ev["event.outcome"] = "failure" if failed else "success"
    return ev


def point(address: int, count: int = 1) -> dict[str, Any]:
    return {"ics.address_start": address, "ics.address_count": count,
            "ics.tag": [f"ioa:{address + k}" for k in range(count)]}


def paired(ms: float) -> dict[str, Any]:
    return {"iec104.request_time_ms": 100000, "iec104.response_time_ms": ms}


# -- exact events for whole exchanges ---------------------------------------------------------------


def test_select_before_operate_single_command() -> None:
    """C_SC_NA_1 select and execute, each confirmed, then terminated: requests, responses, pairing."""
    session = started()
    select = asdu(45, 6, ioa(4001) + b"\x81")  # S/E=1 select, SCS=1 on
    execute = asdu(45, 6, ioa(4001) + b"\x01")
    cmd = {"iec104.ioa": [4001], "ics.values": [1], "iec104.state": "on", "iec104.qualifier": 0,
           "iec104.qualifier_name": "no_definition", **point(4001)}
    obj = {"ioa": 4001, "value": 1, "state": "on", "qualifier": 0, "qualifier_name": "no_definition"}
    req = session.feed(i_frame(0, 0, select), True, 100.0)
    con = session.feed(i_frame(0, 1, asdu(45, 7, ioa(4001) + b"\x81")), False, 100.05)
    req2 = session.feed(i_frame(1, 1, execute), True, 100.1)
    con2 = session.feed(i_frame(1, 2, asdu(45, 7, ioa(4001) + b"\x01")) + i_frame(2, 2, asdu(45, 10, ioa(4001)
                                                                                               + b"\x01")),
                        False, 100.3)
    sel = {**cmd, "iec104.select": True, "iec104.objects": [{**obj, "select": True}]}
    exe = {**cmd, "iec104.select": False, "iec104.objects": [{**obj, "select": False}]}
    assert req == [{**i_head(0, 0, 14, 45, "C_SC_NA_1", 6, "act", "write", "request"), **sel}]
    assert con == [{**i_head(0, 1, 14, 45, "C_SC_NA_1", 7, "actcon", "write", "response"), **sel, **paired(50.0)}]
    assert req2 == [{**i_head(1, 1, 14, 45, "C_SC_NA_1", 6, "act", "write", "request"), **exe}]
    assert con2 == [
        {**i_head(1, 2, 14, 45, "C_SC_NA_1", 7, "actcon", "write", "response"), **exe,
         "iec104.request_time_ms": 100100, "iec104.response_time_ms": 200.0},
        {**i_head(2, 2, 14, 45, "C_SC_NA_1", 10, "actterm", "write", "response"), **exe,
         "iec104.request_time_ms": 100100, "iec104.response_time_ms": 200.0},
    ]
    assert session.stats["paired"] == 3 and session.stats["unpaired_responses"] == 0
    assert set(req[0]) | set(con2[1]) <= DECLARED


def test_general_interrogation_with_its_data() -> None:
    """C_IC_NA_1 act/actcon/actterm; the data in between are reports with role response (cause inrogen)."""
    session = started()
    c_ic = asdu(100, 6, ioa(0) + b"\x14")
    events = run(session, [
        (True, i_frame(0, 0, c_ic)),
        (False, i_frame(0, 1, asdu(100, 7, ioa(0) + b"\x14"))
         + i_frame(1, 1, asdu(1, 20, ioa(10) + b"\x01\x00\x90", count=3, sq=True))
         + i_frame(2, 1, asdu(13, 20, ioa(20) + struct.pack("<f", 21.5) + b"\x01"))
         + i_frame(3, 1, asdu(100, 10, ioa(0) + b"\x14"))),
        (True, s_frame(4)),
    ])
    station = {"iec104.ioa": [0], "iec104.qualifier": 20, "iec104.qualifier_name": "station",
               "iec104.objects": [{"ioa": 0, "qualifier": 20, "qualifier_name": "station"}]}
    assert events[0] == {**i_head(0, 0, 14, 100, "C_IC_NA_1", 6, "act", "read", "request"), **station}
    assert events[1] == {**i_head(0, 1, 14, 100, "C_IC_NA_1", 7, "actcon", "read", "response"), **station,
                         **paired(0.0)}
    assert events[2] == {
        **i_head(1, 1, 16, 1, "M_SP_NA_1", 20, "inrogen", "report", "response", count=3, sq=True),
        "iec104.ioa": [10, 11, 12], "ics.values": [1, 0, 0], "iec104.quality": ["IV", "BL"],
        "iec104.state": "on", **point(10, 3),
        "iec104.objects": [{"ioa": 10, "value": 1, "state": "on"}, {"ioa": 11, "value": 0, "state": "off"},
                           {"ioa": 12, "value": 0, "state": "off", "quality": ["IV", "BL"]}]}
    assert events[3] == {
        **i_head(2, 1, 18, 13, "M_ME_NC_1", 20, "inrogen", "report", "response"), "iec104.ioa": [20],
        "ics.values": [21.5], "iec104.quality": ["OV"], **point(20),
        "iec104.objects": [{"ioa": 20, "value": 21.5, "quality": ["OV"]}]}
    assert events[4] == {**i_head(3, 1, 14, 100, "C_IC_NA_1", 10, "actterm", "read", "response"), **station,
                         **paired(0.0)}
    assert events[5] == {"iec104.apdu_length": 4, "iec104.apci_type": "S", "iec104.apci_type_code": 1,
                         "iec104.rx_seq": 4, "event.action": "s_frame", "ics.function": "s_frame",
                         "ics.operation": "session", "ics.role": "response", "ics.status": "ok",
                         "event.outcome": "success"}
    assert all("iec104.anomaly" not in e for e in events)


def test_spontaneous_report_with_cp56_time_and_clock_sync() -> None:
    session = started()
    events = run(session, [
        (False, i_frame(0, 0, asdu(31, 3, ioa(500) + b"\x02" + cp56(24, 2, 29, 23, 59, 59999, su=True)))),
        (True, i_frame(0, 1, asdu(103, 6, ioa(0) + cp56(24, 3, 1, 0, 0, 0), oa=3))),
    ])
    assert events[0] == {
        **i_head(0, 0, 21, 31, "M_DP_TB_1", 3, "spont", "report", "unsolicited"), "iec104.ioa": [500],
        "ics.values": [2], "iec104.state": "on", "iec104.time": "2024-02-29T23:59:59.999", **point(500),
        "iec104.objects": [{"ioa": 500, "value": 2, "state": "on", "time": "2024-02-29T23:59:59.999",
                            "time_summer": True}]}
    assert events[1] == {
        **i_head(0, 1, 20, 103, "C_CS_NA_1", 6, "act", "time_sync", "request", oa=3), "iec104.ioa": [0],
        "iec104.time": "2024-03-01T00:00:00.000", "iec104.objects": [{"ioa": 0, "time": "2024-03-01T00:00:00.000"}]}


# -- every type id, SQ=0 and SQ=1 -------------------------------------------------------------------

T56 = {"sec_milli": 12345, "minutes": 7, "hours": 13, "day_of_month": 24, "month": 11, "year": 23}
T24 = {"sec_milli": 12345, "minutes": 7}
TIME56 = {"time": "2023-11-24T13:07:12.345"}
TIME24 = {"time": "07:12.345"}
STOP56 = {**T56, "hours": 14}
SC = {"select": False, "qualifier": 0, "qualifier_name": "no_definition"}
QL = {"select": False, "qualifier": 0, "qualifier_name": "default"}


def bsi(value: int) -> int:
    """scapy writes a 32-bit bitstring big-endian; the standard (and lib60870) sends it least octet first."""
    return int.from_bytes(value.to_bytes(4, "big"), "little")


# code -> (scapy element fields or raw element bytes, expected object without its ioa)
EVERY_TYPE: dict[int, tuple[dict[str, Any] | bytes, dict[str, Any]]] = {
    1: ({"spi_value": 1, "iv": 1}, {"value": 1, "state": "on", "quality": ["IV"]}),
    2: ({"bl": 1, **T24}, {"value": 0, "state": "off", "quality": ["BL"], **TIME24}),
    3: ({"dpi_value": 2, "nt": 1}, {"value": 2, "state": "on", "quality": ["NT"]}),
    4: ({"dpi_value": 3, **T24}, {"value": 3, "state": "indeterminate", **TIME24}),
    5: ({"value": -5, "transient_state": 1, "ov": 1}, {"value": -5, "transient": True, "quality": ["OV"]}),
    6: ({"value": 63, **T24}, {"value": 63, **TIME24}),
    7: ({"bsi": 0xDEADBEEF, "sb": 1}, {"value": bsi(0xDEADBEEF), "quality": ["SB"]}),
    8: ({"bsi": 5, **T24}, {"value": bsi(5), **TIME24}),
    9: ({"normed_value": 16384}, {"value": 0.5}),
    10: ({"normed_value": -8192, "iv": 1, **T24}, {"value": -0.25, "quality": ["IV"], **TIME24}),
    11: ({"scaled_value": -1234}, {"value": -1234}),
    12: ({"scaled_value": 32767, **T24}, {"value": 32767, **TIME24}),
    13: ({"scaled_value": 1.5}, {"value": 1.5}),
    14: ({"scaled_value": -2.25, **T24}, {"value": -2.25, **TIME24}),
    15: ({"counter_value": -7, "sq": 3, "cy": 1}, {"value": -7, "sequence": 3, "quality": ["CY"]}),
    16: ({"counter_value": 100000, "iv": 1, "ca": 1, **T24},
         {"value": 100000, "sequence": 0, "quality": ["IV", "CA"], **TIME24}),
    17: ({"es": 2, "ei": 1, "elapsed_sec_milli": 250, **T24},
         {"value": 2, "state": "on", "quality": ["EI"], "elapsed_ms": 250, **TIME24}),
    18: ({"gs": 1, "sl2": 1, "iv": 1, "prot_act_sec_milli": 500, **T24},
         {"value": 5, "events": ["general", "l2"], "quality": ["IV"], "duration_ms": 500, **TIME24}),
    19: ({"gc": 1, "cl3": 1, "prot_cmd_sec_milli": 40, **T24},
         {"value": 9, "commands": ["general", "l3"], "operating_ms": 40, **TIME24}),
    # SCD: status bits 1-16 in the first two octets, change detection 17-32 in the next two (scapy's
    # layer orders them the other way round, so the element is given as bytes).
    20: (b"\x05\x00\x00\x80\x20", {"value": 5, "changes": 0x8000, "quality": ["SB"]}),
    21: ({"normed_value": -32768}, {"value": -1.0}),
    30: ({"spi_value": 1, **T56}, {"value": 1, "state": "on", **TIME56}),
    31: ({"dpi_value": 1, **T56}, {"value": 1, "state": "off", **TIME56}),
    32: ({"value": -64, **T56}, {"value": -64, **TIME56}),
    33: ({"bsi": 1, **T56}, {"value": bsi(1), **TIME56}),
    34: ({"normed_value": 1, **T56}, {"value": 1 / 32768, **TIME56}),
    35: ({"scaled_value": -1, **T56}, {"value": -1, **TIME56}),
    36: ({"scaled_value": 1e10, **T56}, {"value": struct.unpack("<f", struct.pack("<f", 1e10))[0], **TIME56}),
    37: ({"counter_value": 12, "sq": 31, **T56}, {"value": 12, "sequence": 31, **TIME56}),
    38: ({"es": 1, "elapsed_sec_milli": 7, **T56}, {"value": 1, "state": "off", "elapsed_ms": 7, **TIME56}),
    39: ({"srd": 1, "sie": 1, "prot_act_sec_milli": 3, **T56},
         {"value": 0x30, "events": ["earth", "reverse"], "duration_ms": 3, **TIME56}),
    40: ({"cl1": 1, "prot_cmd_sec_milli": 9, **T56}, {"value": 2, "commands": ["l1"], "operating_ms": 9, **TIME56}),
    45: ({"scs": 1, "s_or_e": 1, "qu": 1},
         {"value": 1, "state": "on", "select": True, "qualifier": 1, "qualifier_name": "short_pulse"}),
    46: ({"dcs": 1, "qu": 3}, {"value": 1, "state": "off", "select": False, "qualifier": 3,
                               "qualifier_name": "persistent"}),
    47: ({"rcs": 2, "s_or_e": 1}, {"value": 2, "state": "higher", **SC, "select": True}),
    48: ({"normed_value": 8192, "action": 1}, {"value": 0.25, **QL, "select": True}),
    49: ({"scaled_value": 300}, {"value": 300, **QL}),
    50: ({"scaled_value": 3.5, "ql": 70}, {"value": 3.5, **QL, "qualifier": 70, "qualifier_name": "private-70"}),
    51: ({"bsi": 0x0F0F}, {"value": bsi(0x0F0F)}),
    58: ({"scs": 0, **T56}, {"value": 0, "state": "off", **SC, **TIME56}),
    59: ({"dcs": 2, "s_or_e": 1, "qu": 2, **T56},
         {"value": 2, "state": "on", "select": True, "qualifier": 2, "qualifier_name": "long_pulse", **TIME56}),
    60: ({"rcs": 1, **T56}, {"value": 1, "state": "lower", **SC, **TIME56}),
    61: ({"normed_value": -16384, **T56}, {"value": -0.5, **QL, **TIME56}),
    62: ({"scaled_value": 12, "action": 1, **T56}, {"value": 12, **QL, "select": True, **TIME56}),
    63: ({"scaled_value": -0.5, **T56}, {"value": -0.5, **QL, **TIME56}),
    64: ({"bsi": 0xFFFFFFFF, **T56}, {"value": 0xFFFFFFFF, **TIME56}),
    70: ({"coi": 2, "local_param_state": 1},
         {"qualifier": 2, "qualifier_name": "remote_reset", "local_parameters_changed": True}),
    100: ({"qoi": 22}, {"qualifier": 22, "qualifier_name": "group_2"}),
    101: ({"frz": 1, "rqt": 5}, {"qualifier": 0x45, "qualifier_name": "general/freeze"}),
    102: ({}, {}),
    103: (T56, TIME56),
    104: ({"fbp": 0x55AA}, {"value": 0x55AA}),
    105: ({"qrp": 1}, {"qualifier": 1, "qualifier_name": "general_reset"}),
    106: ({"sec_milli": 1500}, {"value": 1500, "delay_ms": 1500}),
    107: ({"tsc": 77, **T56}, {"value": 77, **TIME56}),
    110: ({"normed_value": 16384, "kpa": 1}, {"value": 0.5, "qualifier": 1, "qualifier_name": "threshold"}),
    111: ({"scaled_value": 10, "kpa": 3, "lpc": 1},
          {"value": 10, "qualifier": 3, "qualifier_name": "low_limit", "local_parameter_change": True}),
    112: ({"scaled_value": 0.5, "kpa": 4, "pop": 1},
          {"value": 0.5, "qualifier": 4, "qualifier_name": "high_limit", "not_in_operation": True}),
    113: ({"qpa": 3}, {"qualifier": 3, "qualifier_name": "act_cyclic_transmission"}),
    # Lengths of file are palindromes: scapy writes the 3-octet field big-endian, the standard little.
    120: ({"file_name": 2, "file_length": 0x010001, "fr_ack": 1},
          {"file": 2, "length": 0x010001, "qualifier": 0x80, "ready": False}),
    121: ({"file_name": 2, "section_name": 1, "file_length": 0x020002},
          {"file": 2, "section": 1, "length": 0x020002, "qualifier": 0, "ready": True}),
    122: ({"file_name": 2, "select_call": 2}, {"file": 2, "section": 0, "qualifier": 2,
                                               "qualifier_name": "request_file"}),
    123: ({"file_name": 2, "section_name": 1, "lsq": 3, "checksum": 0x5A},
          {"file": 2, "section": 1, "qualifier": 3, "qualifier_name": "section_transfer_without_deact",
           "checksum": 0x5A}),
    124: ({"file_name": 2, "section_name": 1, "ack_file_or_sec": 3, "errors": 2},
          {"file": 2, "section": 1, "qualifier": 3, "qualifier_name": "section_ack_positive",
           "error": "checksum_failed"}),
    125: ({"file_name": 2, "section_name": 1, "data": b"\x01\x02\x03"},
          {"file": 2, "section": 1, "segment_length": 3}),
    126: ({"file_name": 2, "file_length": 0x030003, "lfd": 1, "status": 3, **T56},
          {"file": 2, "length": 0x030003, "status": 3, "last_file": True, **TIME56}),
    127: ({"file_name": 9, **{f"start_{k}": v for k, v in T56.items()}, **{f"stop_{k}": v for k, v in STOP56.items()}},
          {"file": 9, "start": TIME56["time"], "stop": "2023-11-24T14:07:12.345", **TIME56}),
}

NOT_IN_104 = {2, 4, 6, 8, 10, 12, 14, 16, 17, 18, 19, 104, 106}
SERVER_SENDS_FILE = {120, 121, 123, 125, 126}  # in the usual direction; 122, 124, 127 come from the client


def expected_operation(code: int) -> str:
    """Independent of the dissector's table: the issue's mapping."""
    if code <= 40:
        return "report"
    if code <= 64:
        return "write"
    return {70: "restart", 100: "read", 101: "read", 102: "read", 103: "time_sync", 104: "diagnostic",
            105: "restart", 106: "time_sync", 107: "diagnostic"}.get(code) or (
        "config_change" if code <= 113 else "file_read")


def element(code: int) -> bytes:
    fields = EVERY_TYPE[code][0]
    if isinstance(fields, bytes):
        return fields
    return bytes(scapy_io.IEC104_IO_CLASSES[code](**fields))


def exchange_for(code: int) -> tuple[bool, int]:
    """Direction and cause of transmission of a typical APDU of this type."""
    if code <= 40:
        return False, 3
    if code == 70:
        return False, 4
    if code == 102:
        return True, 5
    if code >= 120:
        return code not in SERVER_SENDS_FILE, 13
    return True, 6


def test_every_standard_type_id_is_covered() -> None:
    assert set(EVERY_TYPE) == set(scapy_io.IEC104_IO_CLASSES)  # scapy knows all 67 standard types
    tabled = {name for name in DISSECTOR.operations if "/" not in name and name[:2] in ("m_", "c_", "p_", "f_")}
    assert tabled == {scapy_io.IEC104_IO_CLASSES[c].__name__.removeprefix("IEC104_IO_").lower() for c in EVERY_TYPE}


@pytest.mark.parametrize("sq", [False, True], ids=["sq0", "sq1"])
@pytest.mark.parametrize("code", sorted(EVERY_TYPE))
def test_every_type_id(code: int, sq: bool) -> None:
    to_server, cot = exchange_for(code)
    elem = element(code)
    expected_obj = EVERY_TYPE[code][1]
    count = 3 if sq else 2
    addresses = [300 + k for k in range(3)] if sq else [1000 + code, 2000 + code]
    body = ioa(300) + elem * 3 if sq else b"".join(ioa(a) + elem for a in addresses)
    session = started()
    [ev] = session.feed(i_frame(0, 0, asdu(code, cot, body, count=count, sq=sq)), to_server, 1.0)
    name = scapy_io.IEC104_IO_CLASSES[code].__name__.removeprefix("IEC104_IO_")
    assert ev["iec104.type_id"] == code and ev["iec104.type"] == name
    assert ev["event.action"] == ev["ics.function"] == name.lower()
    assert ev["ics.operation"] == expected_operation(code)
    role = "unsolicited" if cot in (3, 4) else "request" if to_server else "response"
    assert ev["ics.role"] == role
    assert ev["iec104.object_count"] == count and ev["iec104.sq"] is sq
    assert ev["iec104.ioa"] == addresses
    assert ev["iec104.objects"] == [{"ioa": a, **expected_obj} for a in addresses]
    assert ev.get("iec104.anomaly", []) == (["type-not-used-in-104"] if code in NOT_IN_104 else [])
    numbers = [expected_obj["value"]] * count if "value" in expected_obj else []
    assert ev.get("ics.values", []) == numbers
    for key in ("state", "select", "qualifier", "qualifier_name", "file", "section"):
        assert ev.get(f"iec104.{key}") == expected_obj.get(key)
    cp56 = "T" in expected_obj.get("time", "")  # CP24Time2a (MM:SS.mmm) is no date and stays in the objects
    assert ev.get("iec104.time") == (expected_obj["time"] if cp56 else None)
    assert ev.get("iec104.quality") == expected_obj.get("quality")
    assert set(ev) <= DECLARED


def test_scapy_framing_gives_the_same_events() -> None:
    """scapy's own APCI/ASDU builder (single IOA and sequence) frames exactly like the hand-built APDUs."""
    for code in (1, 13, 36, 45, 100, 125):
        objs = [scapy_io.IEC104_IO_WITH_IOA_CLASSES[code](information_object_address=a, **_fields(code))
                for a in (1000 + code, 2000 + code)]
        single = bytes(IEC104_I_Message_SingleIOA(cot=6 if code >= 45 else 3, common_asdu_address=7, io=objs))
        seq = bytes(IEC104_I_Message_SeqIOA(cot=6 if code >= 45 else 3, common_asdu_address=7,
                                            information_object_address=300,
                                            io=[scapy_io.IEC104_IO_CLASSES[code](**_fields(code))] * 3))
        for raw, sq in ((single, False), (seq, True)):
            count = 3 if sq else 2
            addresses = [300, 301, 302] if sq else [1000 + code, 2000 + code]
            body = ioa(300) + element(code) * 3 if sq else b"".join(ioa(a) + element(code) for a in addresses)
            to_server = code >= 45
            ours = started().feed(i_frame(0, 0, asdu(code, 6 if code >= 45 else 3, body, count=count, sq=sq)),
                                  to_server, 1.0)
            assert started().feed(raw, to_server, 1.0) == ours


def _fields(code: int) -> dict[str, Any]:
    fields = EVERY_TYPE[code][0]
    assert isinstance(fields, dict)
    return fields


# -- U and S frames ---------------------------------------------------------------------------------

U_FRAMES = [(STARTDT_ACT, "startdt_act", 1, "session", True), (STARTDT_CON, "startdt_con", 2, "session", False),
            (STOPDT_ACT, "stopdt_act", 4, "session", True), (STOPDT_CON, "stopdt_con", 8, "session", False),
            (TESTFR_ACT, "testfr_act", 16, "diagnostic", True), (TESTFR_CON, "testfr_con", 32, "diagnostic", False)]


@pytest.mark.parametrize(("raw", "name", "code", "op", "act"), U_FRAMES, ids=[u[1] for u in U_FRAMES])
def test_u_frames(raw: bytes, name: str, code: int, op: str, act: bool) -> None:
    session = Iec104Session()
    act_raw = raw if act else {0x0B: STARTDT_ACT, 0x23: STOPDT_ACT, 0x83: TESTFR_ACT}[raw[2]]
    events = run(session, [(True, act_raw)] + ([] if act else [(False, raw)]))
    ev = events[-1]
    expected = {"iec104.apdu_length": 4, "iec104.apci_type": "U", "iec104.apci_type_code": 3,
                "iec104.u_function_code": code, "iec104.u_function": name, "event.action": name,
                "ics.function": name, "ics.operation": op, "ics.role": "request" if act else "response"}
    if not act:
        expected |= {"ics.status": "ok", "event.outcome": "success"}
    assert ev == expected


def test_u_frame_anomalies() -> None:
    session = Iec104Session()
    events = run(session, [(True, TESTFR_ACT), (False, STARTDT_ACT), (True, STARTDT_CON), (False, TESTFR_CON),
                           (True, TESTFR_CON), (True, bytes([0x68, 4, 0x0F, 0, 0, 0])),
                           (True, bytes([0x68, 4, 0x03, 0, 0, 0])), (True, bytes([0x68, 5, 0x43, 0, 1, 0, 0]))])
    assert [e.get("iec104.anomaly") for e in events] == [
        None, ["u-act-wrong-direction"], ["u-con-wrong-direction"], None, ["unexpected-u-con"],
        ["invalid-u-function"], ["invalid-u-function"], ["u-frame-length", "u-frame-reserved-bits"]]
    assert [e["event.action"] for e in events[5:7]] == ["u_unknown-3", "u_unknown-0"]
    assert events[5]["ics.operation"] == "other" and events[5]["event.type"] == ("protocol", "error")


def test_s_frame_anomalies() -> None:
    events = run(started(), [(False, bytes([0x68, 4, 0x05, 0, 0, 0])), (True, bytes([0x68, 6, 1, 0, 0, 0, 0, 0]))])
    assert events[0]["iec104.anomaly"] == ["s-frame-reserved-bits"] and events[0]["iec104.rx_seq"] == 0
    assert events[1]["iec104.anomaly"] == ["s-frame-length"]


# -- confirmations, causes, directions --------------------------------------------------------------


def test_negative_confirmation_and_mirrored_unknown_address() -> None:
    session = started()
    dco = asdu(46, 6, ioa(15000) + b"\x82")
    events = run(session, [(True, i_frame(0, 0, dco)),
                           (False, i_frame(0, 1, asdu(46, 7, ioa(15000) + b"\x82", negative=True))),
                           (True, i_frame(1, 1, asdu(45, 6, ioa(99) + b"\x01"))),
                           (False, i_frame(1, 2, asdu(45, 47, ioa(99) + b"\x01", negative=True)))])
    assert events[1]["ics.status"] == "negative" and events[1]["event.outcome"] == "failure"
    assert events[1]["iec104.negative"] is True and "iec104.anomaly" not in events[1]
    assert events[1]["iec104.response_time_ms"] == 0.0
    assert events[3]["ics.status"] == "unknown_ioa" and events[3]["iec104.cot_name"] == "unknown_ioa"
    assert events[3]["ics.role"] == "response" and "iec104.anomaly" not in events[3]
    assert session.stats["paired"] == 2 and not session._pending  # negative confirmations end the procedure


def test_cause_and_direction_anomalies() -> None:
    session = started()
    events = run(session, [
        (True, i_frame(0, 0, asdu(45, 6, ioa(1) + b"\x01", negative=True))),  # negative activation
        (True, i_frame(1, 0, asdu(45, 3, ioa(1) + b"\x01"))),  # a command cannot be spontaneous
        (True, i_frame(2, 0, asdu(9, 3, ioa(1) + b"\x00\x40\x00"))),  # a measurand from the client
        (False, i_frame(0, 3, asdu(46, 6, ioa(1) + b"\x01"))),  # a command from the outstation
        (False, i_frame(1, 3, asdu(1, 0, ioa(1) + b"\x00"))),  # cause 0 is not used
        (False, i_frame(2, 3, asdu(1, 50, ioa(1) + b"\x00"))),  # private cause: fine
        (True, i_frame(3, 3, asdu(45, 7, ioa(1) + b"\x01"))),  # a confirmation from the client
        (True, i_frame(4, 3, asdu(46, 6, ioa(1) + b"\x00"))),  # double command state 0: not permitted
        (True, i_frame(5, 3, asdu(104, 6, ioa(0) + b"\x00\x00"))),  # wrong test pattern, not in 104
    ])
    assert [e.get("iec104.anomaly") for e in events] == [
        ["negative-not-confirmation"], ["cot-not-allowed"], ["wrong-direction"], ["wrong-direction"],
        ["reserved-cot"], None, ["wrong-direction"], ["invalid-command-state"],
        ["type-not-used-in-104", "invalid-test-pattern"]]
    assert events[5]["iec104.cot_name"] == "private-50" and events[4]["iec104.cot_name"] == "unknown-0"
    assert events[1]["ics.role"] == "unsolicited" and events[3]["ics.role"] == "request"


def test_reserved_private_and_short_asdus() -> None:
    session = started()
    events = run(session, [
        (False, i_frame(0, 0, asdu(25, 3, ioa(1) + b"\x00"))),
        (False, i_frame(1, 0, asdu(200, 3, ioa(1) + b"\x00\x01\x02"))),
        (False, i_frame(2, 0, b"\x01\x01\x03\x00")),  # header cut after the originator address
        (False, i_frame(3, 0, b"\x2d")),  # only a type id
        (False, i_frame(4, 0, b"")),  # no ASDU
        (False, i_frame(5, 0, asdu(1, 3, b"", count=0))),
        (False, i_frame(6, 0, asdu(1, 3, ioa(1) + b"\x00\x00", count=1))),  # one octet too many
        (False, i_frame(7, 0, asdu(1, 3, ioa(1) + b"\x00" + ioa(2), count=2))),  # second object cut
    ])
    assert events[0]["event.action"] == "unknown-25" and events[0]["iec104.anomaly"] == ["reserved-type-id"]
    assert events[0]["ics.operation"] == "other" and "iec104.objects" not in events[0]
    assert events[1]["event.action"] == "private-200" and "iec104.anomaly" not in events[1]
    assert events[1]["iec104.common_address"] == 7
    assert events[2]["iec104.anomaly"] == ["asdu-too-short"] and events[2]["iec104.originator"] == 0
    assert "iec104.common_address" not in events[2] and events[2]["iec104.cot"] == 3
    assert events[3]["iec104.anomaly"] == ["asdu-too-short"] and events[3]["iec104.type"] == "C_SC_NA_1"
    assert events[4]["iec104.anomaly"] == ["i-frame-without-asdu"] and events[4]["event.action"] == "invalid_apdu"
    assert events[5]["iec104.anomaly"] == ["no-objects"] and "iec104.ioa" not in events[5]
    assert events[6]["iec104.anomaly"] == ["asdu-length-mismatch"] and events[6]["iec104.ioa"] == [1]
    assert events[7]["iec104.anomaly"] == ["asdu-length-mismatch"] and events[7]["iec104.ioa"] == [1]


def test_invalid_time_tags_never_reach_the_date_field() -> None:
    bad = [cp56(23, 2, 29, 0, 0, 0), cp56(23, 13, 1, 0, 0, 0), cp56(23, 1, 0, 0, 0, 0),
           cp56(23, 1, 1, 24, 0, 0), cp56(23, 1, 1, 0, 60, 0), cp56(23, 1, 1, 0, 0, 60000), cp56(100, 1, 1, 0, 0, 0)]
    session = started()
    for k, tag in enumerate(bad):
        [ev] = session.feed(i_frame(k, 0, asdu(30, 3, ioa(1) + b"\x01" + tag)), False, 1.0)
        assert ev["iec104.anomaly"] == ["invalid-time-tag"] and "iec104.time" not in ev
        assert "time" not in ev["iec104.objects"][0]
    [ev] = session.feed(i_frame(7, 0, asdu(30, 3, ioa(1) + b"\x01" + cp56(23, 1, 1, 0, 0, 0, iv=True))), False, 1.0)
    assert ev["iec104.objects"][0]["time_invalid"] is True and ev["iec104.time"] == "2023-01-01T00:00:00.000"
    [ev] = session.feed(i_frame(8, 0, asdu(2, 3, ioa(1) + b"\x01" + b"\x60\xea\x00")), False, 1.0)
    assert ev["iec104.anomaly"] == ["type-not-used-in-104", "invalid-time-tag"]


def test_file_transfer_operations_follow_the_direction() -> None:
    session = started()
    segment = asdu(125, 13, ioa(1) + b"\x02\x00\x01\x02ab")
    events = run(session, [(False, i_frame(0, 0, segment)), (True, i_frame(0, 1, segment)),
                           (True, i_frame(1, 1, asdu(122, 13, ioa(1) + b"\x02\x00\x00\x04"))),
                           (False, i_frame(1, 2, asdu(122, 13, ioa(1) + b"\x02\x00\x00\x02"))),
                           (True, i_frame(2, 2, asdu(124, 13, ioa(1) + b"\x02\x00\x01\x01"))),
                           (False, i_frame(2, 3, asdu(124, 13, ioa(1) + b"\x02\x00\x01\x01")))])
    assert [e["ics.operation"] for e in events] == [
        "file_read", "file_write", "file_delete", "file_write", "file_read", "file_write"]
    assert events[2]["iec104.qualifier_name"] == "delete_file" and events[2]["iec104.file"] == 2
    assert events[0]["iec104.objects"] == [{"ioa": 1, "file": 2, "section": 1, "segment_length": 2}]


# -- sequence numbers and data transfer state -------------------------------------------------------


def sp(tx: int, rx: int) -> bytes:
    return i_frame(tx, rx, asdu(1, 3, ioa(1) + b"\x01"))


def test_sequence_anomalies() -> None:
    session = started()
    events = run(session, [
        (False, sp(0, 0)), (False, sp(1, 0)), (False, sp(3, 0)),  # 2 is missing
        (False, sp(3, 0)),  # 3 again
        (True, s_frame(4)),
        (True, s_frame(9)),  # acknowledges frames never sent
        (True, s_frame(2)),  # goes backwards
        (False, sp(4, 0)),
    ])
    assert [e.get("iec104.anomaly") for e in events] == [
        None, None, ["tx-seq-gap"], ["tx-seq-duplicate"], None, ["rx-seq-ahead"], ["rx-seq-backwards"], None]
    assert events[2]["iec104.expected_tx_seq"] == 2 and events[3]["iec104.expected_tx_seq"] == 4


def test_sequence_numbers_wrap_at_32768() -> None:
    session = Iec104Session()
    events = run(session, [(False, sp(32766, 0)), (False, sp(32767, 0)), (False, sp(0, 0)), (True, s_frame(1)),
                           (False, sp(1, 0))])
    assert [e.get("iec104.anomaly") for e in events] == [None] * 5


def test_i_frames_before_startdt_con_and_after_stopdt() -> None:
    session = Iec104Session()
    events = run(session, [
        (True, STARTDT_ACT), (True, i_frame(0, 0, asdu(100, 6, ioa(0) + b"\x14"))),  # before the con
        (False, STARTDT_CON), (True, i_frame(1, 0, asdu(100, 6, ioa(0) + b"\x14"))),
        (True, STOPDT_ACT), (False, sp(0, 2)),  # the outstation may still send pending data
        (True, i_frame(2, 1, asdu(100, 6, ioa(0) + b"\x14"))),
        (False, STOPDT_CON), (False, sp(1, 3)),
    ])
    assert [e.get("iec104.anomaly") for e in events] == [
        None, ["i-frame-before-startdt-con"], None, None, None, None, ["i-frame-after-stopdt-act"], None,
        ["i-frame-before-startdt-con"]]


def test_new_connection_without_startdt() -> None:
    """The first I frame of a flow numbered (0, 0) is a fresh connection: data transfer is not started."""
    events = run(Iec104Session(), [(True, i_frame(0, 0, asdu(45, 6, ioa(1) + b"\x01")))])
    assert events[0]["iec104.anomaly"] == ["i-frame-before-startdt-con"]
    midstream = run(Iec104Session(), [(True, i_frame(5, 9, asdu(45, 6, ioa(1) + b"\x01")))])
    assert "iec104.anomaly" not in midstream[0]


# -- framing: segments, junk, gaps --------------------------------------------------------------------


def conversation() -> list[tuple[bool, bytes]]:
    """A whole, consistent session: STARTDT, interrogation, select and execute, TESTFR, file, clock sync."""
    client = [STARTDT_ACT, i_frame(0, 0, asdu(100, 6, ioa(0) + b"\x14")), s_frame(1),
              i_frame(1, 2, asdu(45, 6, ioa(4001) + b"\x81")), i_frame(2, 3, asdu(45, 6, ioa(4001) + b"\x01")),
              TESTFR_ACT, i_frame(3, 5, asdu(122, 13, ioa(9) + b"\x02\x00\x00\x02")),
              i_frame(4, 5, asdu(103, 6, ioa(0) + cp56(23, 5, 6, 7, 8, 9000)))]
    server = [STARTDT_CON, i_frame(0, 1, asdu(100, 7, ioa(0) + b"\x14")),
              i_frame(1, 1, asdu(1, 20, ioa(10) + b"\x01\x00\x01", count=3, sq=True)),
              i_frame(2, 2, asdu(100, 10, ioa(0) + b"\x14")), i_frame(3, 3, asdu(45, 7, ioa(4001) + b"\x81")),
              i_frame(4, 3, asdu(45, 7, ioa(4001) + b"\x01")), TESTFR_CON,
              i_frame(5, 4, asdu(125, 13, ioa(9) + b"\x02\x00\x01\x05hello")),
              i_frame(6, 5, asdu(36, 3, ioa(77) + struct.pack("<f", 3.25) + b"\x00" + cp56(23, 5, 6, 7, 8, 9)))]
    out = []
    for k in range(max(len(client), len(server))):
        if k < len(client):
            out.append((True, client[k]))
        if k < len(server):
            out.append((False, server[k]))
    return out


def reference() -> list[dict[str, Any]]:
    return run(Iec104Session(), conversation())


def test_conversation_is_clean() -> None:
    events = reference()
    assert len(events) == len(conversation())
    assert all("iec104.anomaly" not in e for e in events)


def test_many_apdus_in_one_segment_and_one_apdu_split_at_every_byte() -> None:
    for to_server in (True, False):
        stream = b"".join(raw for d, raw in conversation() if d is to_server)
        one_by_one = run(Iec104Session(), [(to_server, raw) for d, raw in conversation() if d is to_server])
        assert Iec104Session().feed(stream, to_server, 100.0) == one_by_one
        for size in (1, 2, 3, 7, 13):
            chunks = [(to_server, stream[k:k + size]) for k in range(0, len(stream), size)]
            assert run(Iec104Session(), chunks) == one_by_one


def test_apdu_split_at_every_offset_in_a_two_way_exchange() -> None:
    expected = reference()
    for to_split in range(len(conversation())):
        session = Iec104Session()
        events: list[dict[str, Any]] = []
        for k, (to_server, raw) in enumerate(conversation()):
            if k == to_split:
                for cut in range(1, len(raw)):
                    probe_session = Iec104Session()
                    assert probe_session.feed(raw[:cut], to_server, 0.0) == []
                events += session.feed(raw[:len(raw) // 2], to_server, 100.0)
                events += session.feed(raw[len(raw) // 2:], to_server, 100.0)
            else:
                events += session.feed(raw, to_server, 100.0)
        assert events == expected


def test_junk_between_apdus_is_skipped_and_reported() -> None:
    session = started()
    events = run(session, [(True, b"\x00\x01" + TESTFR_ACT), (True, b"\x68\x02\x02\x68" + b"\x00\x12" + TESTFR_ACT)])
    assert events[0]["iec104.junk_bytes"] == 2 and events[0]["iec104.anomaly"] == ["junk-before-apdu"]
    assert events[1]["event.action"] == "invalid_apdu" and events[1]["iec104.anomaly"] == ["apdu-too-short"]
    assert events[2]["iec104.junk_bytes"] == 2 and events[2]["event.action"] == "testfr_act"
    assert session.stats["junk_bytes"] == 4


def test_violations() -> None:
    with pytest.raises(ProtocolViolation, match="no start byte 0x68") as info:
        Iec104Session().feed(b"GET / HTTP/1.1\r\n", True, 0.0)
    assert info.value.offset == 0
    with pytest.raises(ProtocolViolation, match="apdu length below 4"):
        Iec104Session().feed(b"\x68\x02\x00\x00", True, 0.0)
    session = started()
    with pytest.raises(ProtocolViolation, match=f"within {MAX_JUNK} bytes") as info:
        session.feed(b"\x00" * (MAX_JUNK + 1), True, 0.0)
    assert info.value.offset == 6 + MAX_JUNK + 1
    session = started()
    assert len(session.feed(b"\x68\x00" * (MAX_BAD_APDUS + 1), True, 0.0)) == MAX_BAD_APDUS
    with pytest.raises(ProtocolViolation, match="without a control field"):
        session.feed(b"", True, 0.0)
    session = started()
    events = session.feed(TESTFR_ACT + b"\x00" * (MAX_JUNK + 1), True, 0.0)  # the APDU before is reported
    assert [e["event.action"] for e in events] == ["testfr_act"]
    with pytest.raises(ProtocolViolation):
        session.feed(TESTFR_ACT, True, 0.0)


def apdu_starts(stream: bytes) -> list[int]:
    starts, off = [], 0
    while off < len(stream):
        starts.append(off)
        off += 2 + stream[off + 1]
    return starts


@pytest.mark.parametrize("to_server", [True, False])
def test_gap_then_resync(to_server: bool) -> None:
    """Every APDU that starts after the lost bytes is found again; sequence checks restart after the gap."""
    stream = b"".join(raw for d, raw in conversation() if d is to_server)
    plain = run(Iec104Session(), [(to_server, stream)])
    starts = apdu_starts(stream)
    for lost_from in range(0, len(stream) - 20, 3):
        for lost in (1, 2, 5, 17):
            session = Iec104Session()
            before = session.feed(stream[:lost_from], to_server, 100.0)
            session.on_gap(lost, to_server)
            rest = stream[lost_from + lost:]
            after = run(session, [(to_server, rest[k:k + 9]) for k in range(0, len(rest), 9)])
            complete = sum(1 for s in starts[1:] + [len(stream)] if s <= lost_from)
            resumed = sum(1 for s in starts if s < lost_from + lost)
            assert before == plain[:complete]
            assert [e["event.action"] for e in after] == [e["event.action"] for e in plain[resumed:]], (lost_from, lost)
            assert all(not {"tx-seq-gap", "rx-seq-ahead"} & set(e.get("iec104.anomaly", ())) for e in after)


def test_no_apdu_long_after_a_gap_is_a_violation() -> None:
    session = started()
    session.on_gap(10, False)
    with pytest.raises(ProtocolViolation, match="after a gap"):
        for _ in range(100):
            session.feed(b"\x68\xff" * 500, False, 0.0)


# -- bounds -----------------------------------------------------------------------------------------


def test_objects_are_capped_and_counted() -> None:
    session = started()
    body = ioa(1000) + b"\x01" * 127
    [ev] = session.feed(i_frame(0, 0, asdu(1, 20, body, count=127, sq=True)), False, 1.0)
    assert ev["iec104.object_count"] == 127 and len(ev["iec104.objects"]) == 64
    assert ev["iec104.ioa"] == list(range(1000, 1064)) and len(ev["ics.values"]) == len(ev["ics.tag"]) == 64
    assert ev["iec104.objects_omitted"] == 63 and session.stats["objects_truncated"] == 63
    small = Iec104Session(max_objects=2)
    [ev] = small.feed(i_frame(0, 0, asdu(11, 3, ioa(1) + b"\x01\x00\x00" + ioa(9) + b"\x02\x00\x00" + ioa(3)
                                           + b"\x03\x00\x00", count=3)), False, 1.0)
    assert ev["iec104.ioa"] == [1, 9] and ev["ics.values"] == [1, 2] and ev["iec104.objects_omitted"] == 1
    assert ev["ics.address_start"] == 1 and ev["ics.address_count"] == 3


def test_pending_commands_are_bounded_and_expire() -> None:
    session = Iec104Session(max_outstanding=3, timeout=10.0)
    for k in range(5):
        session.feed(i_frame(k, 0, asdu(45, 6, ioa(k + 1) + b"\x01")), True, 1.0)
    assert len(session._pending) == 3 and session.stats["requests_dropped"] == 2
    session.feed(i_frame(5, 0, asdu(45, 6, ioa(50) + b"\x01")), True, 20.0)
    assert session.stats["requests_timed_out"] == 1
    [late] = session.feed(i_frame(0, 6, asdu(45, 7, ioa(4) + b"\x01")), False, 30.0)
    assert "iec104.response_time_ms" not in late and session.stats["requests_timed_out"] == 2


# -- hostile bytes ----------------------------------------------------------------------------------


def drive(session: Iec104Session, chunks: list[tuple[bool, bytes | int]]) -> list[dict[str, Any]]:
    """crafting.drive (only events or ProtocolViolation; declared fields, action, operation, finite
    values), and every event carries its APDU length."""
    events = crafting.drive(session, chunks, DECLARED)
    for event in events:
        assert isinstance(event["iec104.apdu_length"], int), event
    return events


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.booleans(), st.binary(max_size=300) | st.integers(1, 50)), max_size=8))
def test_random_bytes(chunks: list[tuple[bool, bytes | int]]) -> None:
    drive(Iec104Session(), chunks)
    drive(Iec104Session(), [(True, STARTDT_ACT), *chunks])
    for _, chunk in chunks:
        if isinstance(chunk, bytes):
            assert probe(chunk, True) in (True, False)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_truncated_and_mutated_apdus(data: st.DataObject) -> None:
    stream = b"".join(raw for _, raw in conversation())
    cut = data.draw(st.integers(0, len(stream)))
    garbage = data.draw(st.binary(max_size=64))
    to_server = data.draw(st.booleans())
    drive(Iec104Session(), [(to_server, stream[:cut] + garbage)])
    mutated = bytearray(stream)
    for _ in range(data.draw(st.integers(1, 8))):
        mutated[data.draw(st.integers(0, len(stream) - 1))] = data.draw(st.integers(0, 255))
    drive(Iec104Session(), [(True, bytes(mutated[:cut])), (False, bytes(mutated)), (True, bytes(mutated[cut:])),
                            (to_server, data.draw(st.integers(1, 100))), (to_server, bytes(mutated[cut:]))])


def test_every_apdu_of_every_type_truncated_at_every_length() -> None:
    """Each type's APDU with its length octet cut short (and the rest dropped) is still one event."""
    for code in sorted(EVERY_TYPE):
        to_server, cot = exchange_for(code)
        body = b"".join(ioa(a) + element(code) for a in (1, 2))
        apdu = i_frame(0, 0, asdu(code, cot, body, count=2))
        for n in range(4, len(apdu) - 2):
            cut = bytes([0x68, n]) + apdu[2:2 + n]
            events = drive(started(), [(to_server, cut)])
            assert len(events) == 1, (code, n)


# -- detection and registration ---------------------------------------------------------------------


def test_probe() -> None:
    client = b"".join(raw for d, raw in conversation() if d)
    server = b"".join(raw for d, raw in conversation() if not d)
    assert probe(STARTDT_ACT, True) and probe(TESTFR_CON, False) and probe(s_frame(5), True)
    assert probe(client, True) and probe(server, False)
    assert probe(client[:40], True)  # whole first APDUs, the last cut by the segment
    assert probe(i_frame(0, 0, asdu(100, 6, ioa(0) + b"\x14")), True)
    assert not probe(STARTDT_ACT[:-1], True)  # the first APDU must be whole
    assert not probe(i_frame(0, 0, asdu(25, 6, ioa(0) + b"\x14")), True)  # reserved type id
    assert not probe(i_frame(0, 0, asdu(100, 15, ioa(0) + b"\x14")), True)  # reserved cause
    assert not probe(i_frame(0, 0, asdu(100, 6, ioa(0) + b"\x14\x00")), True)  # length does not fit the type
    assert not probe(bytes([0x68, 4, 0x0F, 0, 0, 0]), True)  # two U functions
    assert not probe(bytes([0x68, 4, 0x07, 0, 1, 0]), True)
    assert not probe(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", True)
    assert not probe(bytes.fromhex("16030100a5010000a10303") + bytes(40), True)
    assert not probe(b"\x68\x04\x07\x00\x00\x00\x00\x01", True)  # followed by junk
    assert not probe(b"", True) and not probe(b"\x68", True)


def test_registration() -> None:
    assert registry()["iec104"] is DISSECTOR
    assert DISSECTOR.tcp_ports == {2404} and not DISSECTOR.udp_ports
    assert isinstance(DISSECTOR.new_session(), Iec104Session)
    assert set(DISSECTOR.operations.values()) <= set(OPERATIONS)
    ops = DISSECTOR.operations
    assert ops["c_sc_na_1"] == ops["c_bo_ta_1"] == ops["c_se_tc_1"] == "write"
    assert ops["c_ic_na_1"] == ops["c_ci_na_1"] == ops["c_rd_na_1"] == "read"
    assert ops["c_cs_na_1"] == "time_sync" and ops["c_rp_na_1"] == "restart" and ops["c_ts_ta_1"] == "diagnostic"
    assert ops["p_me_nc_1"] == ops["p_ac_na_1"] == "config_change" and ops["m_ei_na_1"] == "restart"
    assert ops["startdt_act"] == ops["stopdt_con"] == ops["s_frame"] == "session"
    assert ops["testfr_act"] == "diagnostic" and ops["f_sg_na_1/to_server"] == "file_write"
    assert ops["f_sc_na_1/delete_file"] == "file_delete"
    names = [f.name for f in DISSECTOR.fields]
    assert len(names) == len(set(names))
    assert DISSECTOR.wireshark is not None
    assert set(DISSECTOR.wireshark.fields) <= set(names)


def test_docs_hold_the_operation_table() -> None:
    """sensor/protocols/iec104.md lists exactly DISSECTOR.operations under its operation heading."""
    text = (REPO / "sensor" / "protocols" / "iec104.md").read_text()
    section = text.split("## Type id to `ics.operation`", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[1].startswith("`"):
            rows[cells[1].strip("`")] = cells[3]
    assert rows == dict(DISSECTOR.operations)
