"""The EtherNet/IP and CIP dissector against Wireshark, Zeek ICSNPP and Suricata, on real and crafted captures.

* The differential harness (sensor/differential.py) on the shared EtherNet/IP captures: every key
  field of every frame agrees with tshark, but for the reviewed differences in
  tests/sensor/differential_known.tsv (each with its reason).
* A crafted capture with every family of commands and services (registration, identity, services,
  attribute services, tag services, Multiple Service Packet, Unconnected Send, Forward Open and
  Close, connected messages, PCCC, error replies), over TCP and UDP: the key fields again.
* The Zeek ICSNPP baselines: enip.log record by record (command, length, session, status, sender
  context, options), cip.log record by record (direction, service, status, class, instance, embedded
  services included), cip_identity.log, and cip_io.log packets and sequence numbers per connection.
* The Suricata verification tests: the identity its EVE log reports, and the counts its ENIP
  keywords and frames match.
* ``icsmon read`` end to end, no other shared capture taken for EtherNet/IP, and the throughput of
  the session and of the whole pipeline (printed, not asserted as timing).
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from sensor.differential import KnownDifference, compare_captures, load_known
from sensor.protocols.enip import DISSECTOR, EnipSession
from sensor.volume import is_routine
from tests.sensor.protocols import test_enip as T  # its crafting helpers and tables
from tests.sensor.protocols.crafting import sensor_events, tcp_records, udp_frame, write_pcap

REPO = Path(__file__).resolve().parents[3]
PCAPS = REPO.parent / "shared" / "pcaps"
KNOWN = REPO / "tests" / "sensor" / "differential_known.tsv"
ZEEK = PCAPS / "icsnpp-enip" / "tests"
EXAMPLE = ZEEK / "traces" / "enip_cip_example.pcap"
CIP_ONLY = PCAPS / "iti/pcaps/CIP/cip_only.pcap"
SURICATA_TEST1 = PCAPS / "suricata-verify/tests/enip-alert/enip_test1.pcap"
SHARED = sorted([*(ZEEK / "traces").iterdir(), CIP_ONLY, *(PCAPS / "iti/pcaps/EthernetIP").glob("*.pcap"),
                 SURICATA_TEST1, PCAPS / "suricata-verify/tests/enip-keywords/enip_cip_example.pcap"])
PORT = 44818  # the server side of the crafted connections


def outer(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One event per encapsulation message: the ones not embedded, I/O summaries and flow-end reports left out."""
    return [e for e in events if "enip.command" in e and "cip.embedded" not in e]


# -- differential: the shared captures --------------------------------------------------------------


def test_key_fields_agree_with_wireshark_on_the_shared_captures() -> None:
    report = compare_captures(SHARED, dissectors=[DISSECTOR], root=PCAPS, known=load_known(KNOWN))
    print("\n" + report.markdown())
    assert report.unexplained == []
    assert all(a.share == 1.0 for a in report.agreements.values()), report.below(1.0)
    frames = {name: a.frames for (_, name), a in report.agreements.items()}
    assert frames["enip.command"] == 19348 and frames["cip.service_code"] == 19340
    assert frames["cip.pccc.command@request"] == 9428 and frames["enip.identity.product_name"] == 4
    known = Counter(d.field for d in report.differences)
    # Reviewed: Forward Open/Close and connections whose Forward Open Wireshark saw (class, instance),
    # Get_Attribute_List replies of a Multiple Service Packet (attribute).
    assert known == {"cip.class": 33, "cip.instance": 33, "cip.attribute": 81}
    # No shared capture addresses a tag by name: the crafted capture below covers cip.symbol.
    assert {a.field for a in report.agreements.values() if not a.frames} == {"cip.symbol"}


# -- differential: a crafted capture of every family -----------------------------------------------


def crafted_segments() -> list[tuple[bool, bytes]]:
    """Every family on one session, replies after their requests; two messages share a segment once."""
    req, rsp, cls, inst, attr, sym, send_rr = T.req, T.rsp, T.cls, T.inst, T.attr, T.sym, T.send_rr
    identity = struct.pack("<HHHBBHI", 1, 14, 155, 32, 11, 0x0060, 0x60C2A1F3) + b"\x05L33ER\x03"
    services = struct.pack("<HHHHH", 1, 0x100, 20, 1, 0x120) + b"Communications\x00\x00"
    out: list[tuple[bool, bytes]] = [
        (True, T.encap(0x04, session=0)), (False, T.encap(0x04, services, session=0)),
        (True, T.encap(0x63, session=0)), (False, T.encap(0x63, T.identity_item(), session=0)),
        *T.conversation()[:-1],
        (True, send_rr(req(0x01, cls(1) + inst(1)))), (False, send_rr(rsp(0x01, data=identity))),
        (True, send_rr(req(0x0E, cls(1) + inst(1) + attr(7)))), (False, send_rr(rsp(0x0E, data=b"\x05L33ER"))),
        (True, send_rr(req(0x10, cls(0xF5) + inst(1) + attr(6), b"\x04plc1"))), (False, send_rr(rsp(0x10))),
        (True, send_rr(req(0x03, cls(0x8B) + inst(1), struct.pack("<HH", 1, 6)))),
        (False, send_rr(rsp(0x03, data=struct.pack("<HHHH", 1, 6, 0, 7)))),
        (True, send_rr(req(0x4D, sym("Speeds") + T.member(2), struct.pack("<HH3i", 0xC4, 3, 10, -20, 30)))),
        (False, send_rr(rsp(0x4D))),
        (True, send_rr(req(0x52, sym("Big"), struct.pack("<HI", 100, 400)))),
        (False, send_rr(rsp(0x52, status=0x06, data=struct.pack("<H4h", 0xC3, 1, 2, 3, 4)))),
        (True, send_rr(req(0x53, sym("Big"), struct.pack("<HHI2h", 0xC3, 100, 200, 5, 6)))),
        (False, send_rr(rsp(0x53))),
        (True, send_rr(req(0x05, cls(1) + inst(1), b"\x00"))), (False, send_rr(rsp(0x05))),
        (True, send_rr(req(0x07, cls(0x8E) + inst(1)))), (False, send_rr(rsp(0x07, status=0x10))),
        (True, send_rr(req(0x4B, cls(0x37) + inst(0xC8), b"\x01"))), (False, send_rr(rsp(0x4B, status=0x08))),
        (True, send_rr(req(0x0E, cls(0x77) + inst(1) + attr(1)))),
        (False, send_rr(rsp(0x0E, status=0x05, extended=(0x1234,)))),
        (True, send_rr(T.forward_open(0, 7, 9, cls(4) + inst(100), large=True, trigger=0x01))),
        (False, send_rr(rsp(0x5B, status=0x01, extended=(0x0111,), data=struct.pack("<HHIBB", 9, 0x4D,
                                                                                        0x3D2B31E0, 3, 0)))),
    ]
    pair = send_rr(req(0x0E, cls(1) + inst(1) + attr(1))) + send_rr(req(0x0E, cls(1) + inst(1) + attr(2)))
    out += [(True, pair), (False, send_rr(rsp(0x0E, data=b"\x01\x00")) + send_rr(rsp(0x0E, data=b"\x0e\x00")))]
    return [*out, (True, T.encap(0x66))]


def crafted_udp(t0: float) -> list[tuple[float, bytes]]:
    """A ListIdentity broadcast and its answer on UDP 44818, and connected I/O both ways on UDP 2222."""
    ews, plc, bcast = (bytes([10, 0, 0, 9]), 50000), (bytes([10, 0, 255, 2]), 44818), (bytes([10, 0, 255, 255]), 44818)
    out = [(t0, udp_frame(ews, bcast, T.encap(0x63, session=0))),
           (t0 + 0.01, udp_frame(plc, ews, T.encap(0x63, T.identity_item(address="10.0.255.2"), session=0)))]
    a, b = (bytes([10, 0, 0, 9]), 2222), (bytes([10, 0, 255, 2]), 2222)
    for k in range(50):
        out.append((t0 + 0.02 + 0.01 * k, udp_frame(a, b, T.io_packet(0x0A000001, 100 + k))))
        if k != 20:
            out.append((t0 + 0.025 + 0.01 * k, udp_frame(b, a, T.io_packet(0x80FE0002, 500 + k, b"\x01" * 12))))
    return out


@pytest.fixture(scope="module")
def crafted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("enip") / "every_family.pcap"
    records = tcp_records(crafted_segments(), PORT)
    return write_pcap(path, records + crafted_udp(records[-1][0] + 1.0))


def test_key_fields_agree_with_wireshark_on_every_family(crafted: Path) -> None:
    events, _ = sensor_events(crafted, DISSECTOR)

    def frames(match: Any) -> set[int]:
        return {e["icsmon.packet"] for e in events if match(e)}

    path_fields = "cip.[ci][ln][sa][st]*"  # cip.class and cip.instance
    reviewed = {
        (path_fields, "Forward Open/Close: Wireshark lists the connection path's class and instance too"):
            frames(lambda e: "cip.cm.connection_serial" in e),
        (path_fields, "Wireshark adds the class of the connection's Forward Open path to connected messages"):
            frames(lambda e: e.get("enip.command") == 0x70),
        (path_fields, "The reply to an Unconnected Send is the embedded request's: Wireshark shows the Unconnected"
                      " Send's path on it, icsmon the embedded request's"):
            frames(lambda e: e["ics.role"] == "response" and e.get("cip.route") and "cip.cm.connection_serial"
                   not in e and e.get("cip.service_code") != 0x52),
        ("cip.attribute", "Wireshark numbers each Identity attribute it decodes from a Get_Attributes_All reply"):
            frames(lambda e: e["ics.function"] == "get_attributes_all" and e["ics.role"] == "response"),
        ("cip.attribute", "Two requests with the same sender context: Wireshark pairs both replies with the last one,"
                          " icsmon in arrival order"):
            {f for f in frames(lambda e: e["ics.role"] == "response" and e.get("cip.attribute") == (1,))
             if f in frames(lambda e: e["ics.role"] == "response" and e.get("cip.attribute") == (2,))},
    }
    known = [KnownDifference("*", "enip", str(frame), field, reason)
             for (field, reason), where in reviewed.items() for frame in sorted(where)]
    report = compare_captures([crafted], dissectors=[DISSECTOR], known=known)
    print("\n" + report.markdown())
    assert report.unexplained == []
    assert all(where for where in reviewed.values())
    counted = {name: a.frames for (_, name), a in report.agreements.items()}
    assert counted["enip.command"] == 45 and counted["cip.service_code"] == 36 and counted["cip.symbol"] == 10
    assert counted["enip.identity.vendor_id"] == 2 and counted["cip.cm.connection_serial"] == 6
    assert counted["cip.general_status"] == 18 and counted["cip.attribute"] == 11 and counted["cip.service_count"] == 2
    agreed = {name: a.agreed for (_, name), a in report.agreements.items()}
    assert agreed["cip.class"] == 19 and agreed["cip.symbol"] == counted["cip.symbol"]


def test_crafted_capture_events(crafted: Path) -> None:
    events, stats = sensor_events(crafted, DISSECTOR)
    counters = stats["protocols"]["enip"]
    assert counters["bugs"] == 0 and counters["violations"] == 0 and counters["flows"] == 4
    assert not any("enip.anomaly" in e for e in events)
    io = [e for e in events if e["event.action"] == "cyclic_io"]
    assert {e["enip.connection_id"]: (e["enip.io.packets"], e["enip.io.lost"]) for e in io} == {
        0x0A000001: (50, 0), 0x80FE0002: (49, 1)}
    assert all(is_routine(e) for e in io)
    sessions = counters["sessions"]
    assert sessions["io_packets"] == 99 and sessions["requests_unanswered"] == 0
    assert sessions["unpaired_responses"] == 1  # the ListIdentity answer comes back on another UDP flow
    values = {e["cip.tag"]: e["ics.values"] for e in events if "ics.values" in e and "cip.tag" in e}
    assert values["Speeds[2]"] == [10, -20, 30] and values["Big"] in ([1, 2, 3, 4], [5, 6])
    units = {e["ics.function"]: e.get("ics.unit") for e in events if e["ics.role"] == "request"}
    assert units["unconnected_send"] == "1,0" and units["execute_pccc"] == "1,0"
    routine = Counter(is_routine(e) for e in events)
    assert routine[True] > 20 and routine[False] > 20


# -- Zeek ICSNPP ---------------------------------------------------------------------------------------

_ID = ["ts", "uid", "orig_h", "orig_p", "resp_h", "resp_p", "is_orig", "source_h", "source_p", "destination_h",
       "destination_p"]
ENIP_LOG = [*_ID, "enip_command_code", "enip_command", "length", "session_handle", "enip_status", "sender_context",
            "options"]
CIP_LOG = [*_ID, "cip_sequence_count", "direction", "cip_service_code", "cip_service", "cip_status_code", "cip_status",
           "cip_extended_status_code", "cip_extended_status", "class_id", "class_name", "instance_id", "attribute_id"]
IDENTITY_LOG = [*_ID, "encapsulation_version", "socket_address", "socket_port", "vendor_id", "vendor_name",
                "device_type_id", "device_type_name", "product_code", "revision", "device_status", "serial_number",
                "product_name", "device_state"]
IO_LOG = [*_ID, "connection_id", "sequence_number", "data_length", "io_data"]
CASES = {"analyzer.basic": EXAMPLE,
         "analyzer.multiple_service_request": ZEEK / "traces/multiple_service_packet_cip.pcapng",
         "analyzer.set_attr_single_service": ZEEK / "traces/set_attribute_single_service_cip.pcapng"}


def zeek_log(case: str, name: str, columns: list[str]) -> list[dict[str, str]]:
    """A btest baseline: Zeek's TSV without its header lines (the columns come from ICSNPP's main.zeek)."""
    rows = []
    for line in (ZEEK / "baseline" / case / name).read_text().splitlines():
        if line.startswith("#"):
            continue
        cells = line.split("\t")
        assert len(cells) == len(columns), (name, len(cells))
        rows.append(dict(zip(columns, cells)))
    return rows


def _sent_by_client(e: dict[str, Any]) -> bool:
    return e["network.direction"] == "to_server"


@pytest.mark.parametrize("case", sorted(CASES))
def test_enip_log_matches_zeek(case: str) -> None:
    """Every enip.log record is one of our messages, in order per direction, with the same header."""
    events, _ = sensor_events(CASES[case], DISSECTOR)
    ours = {True: [], False: []}  # type: dict[bool, list[tuple[Any, ...]]]
    for e in outer(events):
        ours[_sent_by_client(e)].append((e["enip.command"], e["enip.length"], e["enip.session_handle"],
                                         e["enip.status_name"], e["enip.sender_context"], e["enip.options"]))
    theirs = {True: [], False: []}  # type: dict[bool, list[tuple[Any, ...]]]
    for row in zeek_log(case, "enip.log", ENIP_LOG):
        theirs[row["is_orig"] == "T"].append((int(row["enip_command_code"], 16), int(row["length"]),
                                             int(row["session_handle"], 16), row["enip_status"].lower(),
                                             row["sender_context"].removeprefix("0x"), int(row["options"], 16)))
    assert ours == theirs
    print(f"\n{case}: {sum(map(len, theirs.values()))} enip.log records agree")


@pytest.mark.parametrize("case", sorted(CASES))
def test_cip_log_matches_zeek(case: str) -> None:
    """cip.log: one record per CIP service, embedded ones included, in order per direction: direction,
    service, status (replies), class and instance (requests: Zeek leaves them out of replies)."""
    events, _ = sensor_events(CASES[case], DISSECTOR)

    def hexa(value: int | None, width: int = 2) -> str:
        return "-" if value is None else f"0x{value:0{width}x}"

    ours = {True: [], False: []}  # type: dict[bool, list[tuple[str, ...]]]
    for e in events:
        if "cip.service_code" not in e:
            continue
        request = e["ics.role"] == "request"
        ours[_sent_by_client(e)].append((
            e["ics.role"], hexa(e["cip.service_code"]), hexa(e.get("cip.general_status")),
            hexa(e["cip.class"][0]) if request and "cip.class" in e else "-",
            hexa(e["cip.instance"][0]) if request and "cip.instance" in e else "-",
            str(e["cip.sequence_count"]) if e.get("cip.sequence_count") else "-"))
    theirs = {True: [], False: []}  # type: dict[bool, list[tuple[str, ...]]]
    for row in zeek_log(case, "cip.log", CIP_LOG):
        theirs[row["is_orig"] == "T"].append((row["direction"], row["cip_service_code"], row["cip_status_code"],
                                             row["class_id"], row["instance_id"], row["cip_sequence_count"]))
    assert ours == theirs
    print(f"\n{case}: {sum(map(len, theirs.values()))} cip.log records agree")


def test_cip_identity_log_matches_zeek() -> None:
    events, _ = sensor_events(EXAMPLE, DISSECTOR)
    [row] = zeek_log("analyzer.basic", "cip_identity.log", IDENTITY_LOG)
    [e] = [e for e in events if "enip.identity.vendor_id" in e]
    assert (e["enip.identity.encapsulation_version"], e["enip.identity.socket_address"],
            e["enip.identity.socket_port"], e["enip.identity.vendor_id"], e["enip.identity.vendor_name"],
            e["enip.identity.device_type"], e["enip.identity.product_code"], e["enip.identity.revision"],
            f"0x{e['enip.identity.status']:04x}", e["enip.identity.serial"], e["enip.identity.product_name"],
            f"0x{e['enip.identity.state']:04x}") == (
        int(row["encapsulation_version"]), row["socket_address"], int(row["socket_port"]), int(row["vendor_id"]),
        row["vendor_name"], int(row["device_type_id"]), int(row["product_code"]), row["revision"],
        row["device_status"], row["serial_number"], row["product_name"], row["device_state"])
    assert row["device_type_name"] == "Communications Adapter"
    assert e["enip.identity.device_type_name"] == "communications_adapter"


def test_cip_io_log_matches_zeek() -> None:
    """Zeek writes one cip_io.log record per I/O packet; icsmon counts them per connection: the same
    packets, sequence numbers and data sizes, in one summary per connection."""
    events, _ = sensor_events(EXAMPLE, DISSECTOR)
    summaries = {e["enip.connection_id"]: e for e in events if e["event.action"] == "cyclic_io"}
    rows: dict[int, list[dict[str, str]]] = {}
    for row in zeek_log("analyzer.basic", "cip_io.log", IO_LOG):
        rows.setdefault(int(row["connection_id"], 16), []).append(row)
    assert set(summaries) == set(rows) and len(rows) == 24
    for connection, records in rows.items():
        s = summaries[connection]
        sequence = [int(r["sequence_number"]) for r in records]
        lengths = [int(r["data_length"]) for r in records]
        assert s["enip.io.packets"] == len(records)
        assert (s["enip.io.first_sequence"], s["enip.io.last_sequence"]) == (sequence[0], sequence[-1])
        assert s["enip.io.lost"] == sequence[-1] - sequence[0] + 1 - len(records)
        assert (s["enip.io.data_length_min"], s["enip.io.data_length_max"]) == (min(lengths), max(lengths))
        assert s["enip.io.bytes"] == sum(lengths)
    print(f"\ncip_io.log: {sum(map(len, rows.values()))} packets of {len(rows)} connections agree")


# -- Suricata ---------------------------------------------------------------------------------------


def test_suricata_identity_and_alert_counts() -> None:
    """enip-log-identity and enip-alert on enip_test1.pcap: the ListIdentity exchange and its identity."""
    events, stats = sensor_events(SURICATA_TEST1, DISSECTOR)
    assert [e["enip.command"] for e in outer(events)] == [99, 99]  # enip_command:99 alerts twice
    [reply] = [e for e in events if e["ics.role"] == "response"]
    assert (reply["ics.status"], reply["enip.identity.revision"], reply["enip.identity.product_name"],
            reply["enip.identity.vendor_name"]) == ("ok", "4.3", "1756-ENBT/A", "Rockwell Automation/Allen-Bradley")
    assert stats["protocols"]["enip"]["flows"] == 1  # enip-stats-udp: one TCP ENIP flow, no UDP one


def test_suricata_keyword_and_frame_counts() -> None:
    """enip-keywords, enip-keywords-suricata8 and enip-frames on enip_cip_example.pcap."""
    events, _ = sensor_events(EXAMPLE, DISSECTOR)
    messages = outer(events)
    cip = [e for e in events if "cip.service_code" in e]
    assert sum(e["cip.service_code"] == 0x0A and "cip.embedded" not in e for e in cip) == 81  # cip_service: 10
    assert sum(e["enip.command"] == 0x70 for e in messages) == 267  # enip_command: 112
    assert sum(e["enip.command"] == 0x63 for e in messages) == 2  # enip_command: 99
    assert sum(e["enip.status"] == 0 for e in messages) == 269  # enip.status: 0
    [identity] = [e for e in messages if "enip.identity.vendor_id" in e]
    assert (identity["enip.identity.product_name"], identity["enip.identity.encapsulation_version"],
            identity["enip.identity.revision_major"] << 8 | identity["enip.identity.revision_minor"],
            identity["enip.identity.status"], identity["enip.identity.state"], identity["enip.identity.serial_number"],
            identity["enip.identity.product_code"], identity["enip.identity.device_type"],
            identity["enip.identity.vendor_id"]) == ("1756-ENBT/A", 1, 0x403, 0x30, 3, 0x524D8E, 58, 12, 1)
    # cip request with class 1, instance 1, attribute 5 (to server): 41; cip_status 0 on replies: 133.
    assert sum(e["ics.role"] == "request" and e.get("cip.class") == (1,) and e.get("cip.instance") == (1,)
               and e.get("cip.attribute") == (5,) for e in cip) == 41
    assert sum(e["ics.role"] == "response" and e.get("cip.general_status") == 0 for e in messages) == 133
    # frames: SendUnitData data of 32 bytes, interface 0, timeout 1, 2 items (92); a CIP message that is a
    # Get_Attribute_List of class 0x8b instance 1 attribute 6 (41, inside the Multiple Service Packets); the
    # ListIdentity header of length 51 and its identity item of 45 bytes (1 each).
    assert sum(e["enip.command"] == 0x70 and e["enip.length"] == 32 and e["enip.interface_handle"] == 0
               and e["enip.timeout"] == 1 and e["enip.cpf.item_count"] == 2 for e in messages) == 92
    assert sum(e["ics.role"] == "request" and e.get("cip.class") == (0x8B,) and e.get("cip.instance") == (1,)
               and e.get("cip.attribute") == (6,) and e["cip.data_length"] == 4 for e in cip) == 41
    assert sum(e["enip.command"] == 0x63 and e["enip.length"] == 51 for e in messages) == 1
    assert identity["enip.cpf.item_types"] == (0x0C,)


# -- end to end --------------------------------------------------------------------------------------


def test_icsmon_read_end_to_end() -> None:
    """``icsmon read CAPTURE --events -``: JSON lines on stdout, every EtherNet/IP event well formed."""
    out = subprocess.run([sys.executable, "-m", "api.cli", "read", str(EXAMPLE), "--events", "-", "-q",
                          "--no-progress"], check=True, cwd=REPO, timeout=120, capture_output=True, text=True)
    events = [json.loads(line) for line in out.stdout.splitlines()]
    ours = [e for e in events if e["event.dataset"] == "icsmon.enip"]
    assert len(ours) == 1184 and not any(e["event.dataset"] == "icsmon.decode_error" for e in events)
    for e in ours:
        assert e["network.protocol"] == "enip" and e["destination.port"] in (44818, 2222)
        assert e["ics.operation"] in ("read", "write", "discovery", "identity", "report")
        assert e["ics.role"] in ("request", "response", "unsolicited")
    reads = [e for e in ours if e["event.action"] == "get_attribute_list" and e["ics.role"] == "response"]
    assert all(e["ics.status"] == "ok" and e["ics.tag"] for e in reads)
    assert Counter(e["event.action"] for e in ours)["cyclic_io"] == 24


def test_no_other_shared_capture_is_taken_for_enip() -> None:
    """Content detection never claims another protocol's flow (EtherNet/IP alone, on every shared capture)."""
    mine = {p.resolve() for p in SHARED}
    others = sorted(p for p in PCAPS.rglob("*") if p.suffix in (".pcap", ".pcapng") and p.is_file()
                    and p.resolve() not in mine)
    assert len(others) > 100
    for capture in others:
        events, stats = sensor_events(capture, DISSECTOR)
        assert events == [] and not stats["protocols"]["enip"]["flows"], capture


# -- throughput --------------------------------------------------------------------------------------


def polling_stream(messages: int) -> list[tuple[bool, bytes]]:
    """A busy explicit-messaging session: connected PCCC reads (as the shared bench capture), unconnected
    Read Tags, a Multiple Service Packet now and then."""
    pccc = T.pccc(0x0F, 0xA2, bytes([4, 7, 0x89, 0, 0]))
    read = T.req(0x4C, T.sym("Tank_Level"), b"\x01\x00")
    out: list[tuple[bool, bytes]] = [(True, T.encap(0x65, b"\x01\x00\x00\x00", session=0)),
                                     (False, T.encap(0x65, b"\x01\x00\x00\x00"))]
    k = 0
    while len(out) < messages:
        k += 1
        if k % 20 == 0:
            out.append((True, T.send_unit(7, k & 0xFFFF, T.msp([read] * 4))))
            one = T.rsp(0x4C, data=struct.pack("<Hf", 0xCA, 1.0))
            out.append((False, T.send_unit(8, k & 0xFFFF, T.msp_reply([one] * 4))))
        elif k % 3 == 0:
            ctx = struct.pack("<Q", k)
            out.append((True, T.send_rr(read, ctx=ctx)))
            out.append((False, T.send_rr(T.rsp(0x4C, data=struct.pack("<Hf", 0xCA, k * 0.5)), ctx=ctx)))
        else:
            out.append((True, T.send_unit(7, k & 0xFFFF, pccc)))
            out.append((False, T.send_unit(8, k & 0xFFFF, T.pccc_reply(0x0F, data=struct.pack("<h", k & 0x7FFF)))))
    return out


def test_session_throughput() -> None:
    """Messages/s of one session fed one message at a time (CPU time), printed for the report."""
    stream = polling_stream(20_000)
    best = 0.0
    for _ in range(3):
        session = EnipSession()
        started = time.process_time()
        count = 0
        for ts, (to_server, raw) in enumerate(stream):
            count += len(session.feed(raw, to_server, float(ts) * 0.001))
        best = max(best, len(stream) / max(time.process_time() - started, 1e-9))
    print(f"\nenip session: {best:,.0f} messages/s ({count:,} events from {len(stream):,} messages)")
    assert session.stats["anomalies"] == 0 and session.stats["unpaired_responses"] == 0


def test_pipeline_throughput(tmp_path: Path) -> None:
    """Packets/s of the whole pipeline: the shared CIP capture, and a crafted one of many sessions."""
    started = time.process_time()
    events, stats = sensor_events(CIP_ONLY, DISSECTOR)
    shared = stats["packets"] / max(time.process_time() - started, 1e-9)
    records: list[tuple[float, bytes]] = []
    for client in range(40):
        records += tcp_records(polling_stream(500), PORT, client=client + 1, port=40000 + client, t0=1.7e9 + client)
    records.sort(key=lambda r: r[0])
    capture = write_pcap(tmp_path / "polling.pcap", records)
    best = 0.0
    for _ in range(2):
        started = time.process_time()
        crafted_events, crafted_stats = sensor_events(capture, DISSECTOR)
        best = max(best, len(records) / max(time.process_time() - started, 1e-9))
    print(f"\npipeline: {shared:,.0f} packets/s on cip_only.pcap ({len(events):,} events), {best:,.0f} packets/s on"
          f" {len(records):,} crafted packets ({len(crafted_events):,} events)")
    assert crafted_stats["protocols"]["enip"]["bugs"] == 0 and crafted_stats["protocols"]["enip"]["flows"] == 40
    assert stats["protocols"]["enip"]["bugs"] == 0 and len(events) == 18799
