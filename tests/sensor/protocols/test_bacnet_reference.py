"""The BACnet/IP dissector against Wireshark and Zeek ICSNPP, on real and crafted captures, end to end.

* The differential harness (sensor/differential.py) on the five shared BACnet
  captures: every key field of every frame agrees with tshark, or the
  difference is one of the explained ones below.
* A crafted capture (every confirmed and unconfirmed service with an answer,
  every complex ack form, error forms, BVLC management, Forwarded-NPDU, routed
  messages, every network-layer message, a segmented ack with segment acks):
  the key fields plus NPDU/APDU header fields tshark shows.
* Present values: the numbers icsmon reports against tshark's present-value fields.
* The Zeek ICSNPP BACnet baselines (bacnet.log, bacnet_property.log,
  bacnet_discovery.log, bacnet_device_control.log) record by record.
* ``icsmon read`` on the shared captures; no other shared capture is taken for
  BACnet; throughput of the session and of the pipeline.

There is no suricata-verify case for BACnet in the shared set.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from sensor.differential import KnownDifference, compare_captures, normalise
from sensor.dissect import WiresharkFields
from sensor.protocols.bacnet import DISSECTOR, BacnetSession
from tests.sensor.protocols import crafting
from tests.sensor.protocols import test_bacnet as T  # its crafting helpers and tables
from tests.sensor.protocols.crafting import sensor_events

REPO = Path(__file__).resolve().parents[3]
PCAPS = REPO.parent / "shared" / "pcaps"
ICSNPP = PCAPS / "icsnpp-bacnet" / "testing"
TRACES = ICSNPP / "traces"
ZEEK_CASES = {"basic": "bacnet_example.pcap", "services": "bacnet_services.pcap",
              "error-reject-abort": "bacnet_error_reject_abort.pcap", "segmented_data": "bacnet_segmented_data.pcap"}
SHARED = [TRACES / name for name in ZEEK_CASES.values()] + [PCAPS / "iti/pcaps/BACnet/bacnet_test.pcap"]

# Reviewed differences with tshark 4.0 (the lead's list: tests/sensor/differential_known.tsv).
DNET_LIST = ("Wireshark lists the networks of I-Am-Router-To-Network (and the other network-layer messages)"
             " under bacnet.dnet; icsmon keeps bacnet.npdu.dnet for the NPDU header and lists them in"
             " bacnet.npdu.networks")
WHO_AM_I_VENDOR = ("Wireshark decodes the vendor id of Who-Am-I/You-Are under its own field, not"
                   " bacapp.vendor_identifier")
WHO_HAS_RANGE = ("Wireshark fills bacapp.who_is.low/high_limit for Who-Is only; icsmon uses bacnet.range_* for"
                 " Who-Has too")
KNOWN = [
    *(KnownDifference("icsnpp-bacnet/testing/traces/bacnet_services.pcap", "bacnet", str(frame), "bacnet.npdu.dnet",
                      DNET_LIST) for frame in (274, 277, 278)),
    *(KnownDifference("icsnpp-bacnet/testing/traces/bacnet_error_reject_abort.pcap", "bacnet", str(frame),
                      "bacnet.vendor_id", WHO_AM_I_VENDOR) for frame in (41, 42)),
]


# -- differential: key fields on the shared captures -------------------------------------------------


def test_key_fields_agree_with_wireshark_on_the_shared_captures() -> None:
    report = compare_captures(SHARED, dissectors=[DISSECTOR], known=KNOWN, root=PCAPS)
    print("\n" + report.markdown())
    assert not report.unexplained, [d.describe() for d in report.unexplained[:20]]
    assert not report.below(0.99)
    frames = {name: a.frames for (_, name), a in report.agreements.items()}
    assert frames["bacnet.bvlc.function_code"] > 10_000 and frames["bacnet.object_type_codes"] > 9_000
    assert frames["bacnet.npdu.dnet"] > 3_000 and frames["bacnet.error_code"] > 90


def test_present_values_agree_with_wireshark() -> None:
    """The numbers of ReadProperty acks of present-value, against tshark's present-value fields."""
    columns = ["bacapp.present_value.real", "bacapp.present_value.double", "bacapp.present_value.uint",
               "bacapp.present_value.int", "bacapp.present_value.enum_index", "bacapp.present_value.boolean"]
    compared = 0
    for capture in SHARED:
        cmd = ["tshark", "-r", str(capture), "-n", "-Y", "bvlc && bacapp.type == 3", "-T", "fields",
               "-E", "occurrence=a", "-E", "aggregator=,", "-e", "frame.number"]
        for column in columns:
            cmd += ["-e", column]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        theirs: dict[int, list[float]] = {}
        for line in out.splitlines():
            frame, *cells = line.split("\t")
            values = [float(normalise(v)) for cell in cells for v in cell.split(",") if v]
            if values:
                theirs[int(frame)] = values
        events, _ = sensor_events(capture, DISSECTOR)
        for event in events:
            if event.get("bacnet.service") == "read_property" and event.get("bacnet.properties") == ["present-value"]:
                frame = event["icsmon.packet"]
                if event["bacnet.apdu.type"] != "complex_ack" or frame not in theirs:
                    continue
                assert [round(v, 4) for v in event.get("ics.values", [])] == [round(v, 4) for v in theirs[frame]], frame
                compared += 1
    print(f"\n{compared} present values agree with tshark")
    assert compared > 300


# -- differential: the crafted capture ---------------------------------------------------------------

CLIENT, SERVER, BROADCAST = (10, 0, 0, 1), (10, 0, 0, 2), (10, 0, 0, 255)


def udp_frame(src: tuple[int, ...], dst: tuple[int, ...], payload: bytes, sport: int = 47808,
              dport: int = 47808) -> bytes:
    return crafting.udp_frame((bytes(src), sport), (bytes(dst), dport), payload)


def write_pcap(path: Path, frames: list[bytes], t0: int = 1_700_000_000) -> Path:
    """One frame a second from ``t0``."""
    return crafting.write_pcap(path, [(t0 + n, frame) for n, frame in enumerate(frames)])


ERROR_CASES = [(20, T.app_enum(5) + T.app_enum(26)),
               (10, T.wrap(0, T.app_enum(1) + T.app_enum(24)) + T.ctx(1, T.u(2))),
               (16, T.wrap(0, T.app_enum(2) + T.app_enum(40)) + T.wrap(1, T.ctx(0, T.oid(1, 7)) + T.ctx(1, T.u(85)))),
               (18, T.wrap(0, T.app_enum(5) + T.app_enum(29)) + T.ctx(1, T.u(25)) + T.ctx(2, T.u(8)))]
SIMPLE_ACKED = {0, 1, 5, 8, 9, 15, 16, 17, 20, 28, 30, 31}


def crafted_frames() -> list[bytes]:
    frames: list[bytes] = []

    def add(src: tuple[int, ...], dst: tuple[int, ...], payload: bytes) -> None:
        frames.append(udp_frame(src, dst, payload))

    for invoke, (code, _, _, params, _) in enumerate(T.CONFIRMED_CASES):
        add(CLIENT, SERVER, T.unicast(T.confirmed(code, params, invoke=invoke), expecting_reply=True))
        acks = [a for a in T.ACK_CASES if a[0] == code]
        if acks:
            add(SERVER, CLIENT, T.unicast(T.complex_ack(code, acks[0][2], invoke=invoke)))
        elif code in SIMPLE_ACKED:
            add(SERVER, CLIENT, T.unicast(T.simple_ack(code, invoke=invoke)))
        elif code == 77:
            add(SERVER, CLIENT, T.unicast(T.reject(9, invoke=invoke)))
        else:
            add(SERVER, CLIENT, T.unicast(T.abort(4, invoke=invoke)))
    for code, request, answer, _ in T.ACK_CASES:
        add(CLIENT, SERVER, T.unicast(T.confirmed(code, request, invoke=200)))
        add(SERVER, CLIENT, T.unicast(T.complex_ack(code, answer, invoke=200)))
    for invoke, (code, params) in enumerate(ERROR_CASES):
        add(SERVER, CLIENT, T.unicast(T.error(code, params, invoke=100 + invoke)))
    for case in T.UNCONFIRMED_CASES:
        add(CLIENT, BROADCAST, T.broadcast(T.unconfirmed(case[0], case[4])))
    for case in T.NETWORK_CASES:
        add(SERVER, BROADCAST, T.broadcast(bytes([case[0]]) + case[1], network=True))
    table = T.bdt_entry("10.0.0.1", 47808, "255.255.255.255") + T.bdt_entry("10.1.0.1", 47809, "255.255.255.0")
    add(CLIENT, SERVER, T.bvlc(0x05, b"\x00\x3c"))
    add(SERVER, CLIENT, T.bvlc(0x00, b"\x00\x30"))
    add(CLIENT, SERVER, T.bvlc(0x01, table))
    add(SERVER, CLIENT, T.bvlc(0x00, b"\x00\x00"))
    add(CLIENT, SERVER, T.bvlc(0x02))
    add(SERVER, CLIENT, T.bvlc(0x03, table))
    add(CLIENT, SERVER, T.bvlc(0x06))
    add(SERVER, CLIENT, T.bvlc(0x07, T.fdt_entry("192.168.1.5", 47808, 60, 55)))
    add(CLIENT, SERVER, T.bvlc(0x08, bytes([192, 168, 1, 5, 0xBA, 0xC0])))
    add(SERVER, BROADCAST, T.bvlc(0x04, bytes([10, 0, 0, 9, 0xBA, 0xC0]) + T.npdu(T.unconfirmed(8))))
    add(CLIENT, SERVER, T.bvlc(0x09, T.npdu(T.unconfirmed(8, T.ctx(0, T.u(1)) + T.ctx(1, T.u(100))))))
    mac = bytes([10, 0, 0, 5, 0xBA, 0xC0])
    rp = T.ctx(0, T.AI3) + T.ctx(1, T.u(85))
    add(CLIENT, SERVER, T.unicast(T.confirmed(12, rp, invoke=5), dnet=(3, b"\x6c"), expecting_reply=True))
    add(SERVER, CLIENT, T.unicast(T.complex_ack(12, rp + T.wrap(3, T.app_real(1.0)), invoke=5), snet=(3, b"\x6c")))
    add(CLIENT, SERVER, T.unicast(T.confirmed(12, rp, invoke=6), snet=(7, mac)))
    add(SERVER, CLIENT, T.unicast(T.simple_ack(12, invoke=6), dnet=(7, mac)))
    add(CLIENT, SERVER, T.unicast(T.confirmed(14, T.ctx(0, T.oid(0, 0)) + T.wrap(1, T.ctx(0, T.u(85))), invoke=9,
                                              max_segments=3)))
    parts = T.segments(T.rpm_ack_params(40), 100)
    for i, part in enumerate(parts):
        add(SERVER, CLIENT, T.unicast(T.complex_ack(14, part, invoke=9, seq=(i, 4, i < len(parts) - 1))))
        add(CLIENT, SERVER, T.unicast(T.segment_ack(9, i, 4)))
    return frames


@pytest.fixture(scope="module")
def crafted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_pcap(tmp_path_factory.mktemp("bacnet") / "crafted.pcap", crafted_frames())


EXTRA_FIELDS = {
    "bacnet.bvlc.original_source_port": "bvlc.fwd_port", "bacnet.npdu.dlen": "bacnet.dlen",
    "bacnet.npdu.slen": "bacnet.slen", "bacnet.npdu.vendor_id": "bacnet.vendor",
    "bacnet.npdu.performance_index": "bacnet.perf", "bacnet.npdu.reject_reason_code": "bacnet.rejectreason",
    "bacnet.npdu.termination_time": "bacnet.term_time_value", "bacnet.apdu.window_size": "bacapp.window_size",
    "bacnet.apdu.nak": "bacapp.NAK", "bacnet.apdu.server": "bacapp.SRV",
    "bacnet.apdu.segmented_response_accepted": "bacapp.SA",
}


def test_key_and_header_fields_agree_with_wireshark_on_every_service(crafted: Path) -> None:
    assert DISSECTOR.wireshark is not None
    extended = dataclasses.replace(DISSECTOR, wireshark=WiresharkFields(
        display_filter="bvlc", fields={**DISSECTOR.wireshark.fields, **EXTRA_FIELDS}))
    events, _ = sensor_events(crafted, DISSECTOR)
    frame_of = {e["icsmon.packet"]: e for e in events}
    network = [f for f, e in frame_of.items() if "bacnet.npdu.message_type" in e]
    who_has = [f for f, e in frame_of.items() if e.get("bacnet.service") == "who_has" and "bacnet.range_low" in e]
    who_am_i = [f for f, e in frame_of.items() if e.get("bacnet.service") in ("who_am_i", "you_are")]
    known = [*(KnownDifference("*", "bacnet", str(f), "bacnet.npdu.dnet", DNET_LIST) for f in network),
             *(KnownDifference("*", "bacnet", str(f), "bacnet.range_*", WHO_HAS_RANGE) for f in who_has),
             *(KnownDifference("*", "bacnet", str(f), "bacnet.vendor_id", WHO_AM_I_VENDOR) for f in who_am_i)]
    report = compare_captures([crafted], dissectors=[extended], known=known)
    print("\n" + report.markdown())
    assert not report.unexplained, [d.describe() for d in report.unexplained]
    for (_, name), agreement in report.agreements.items():
        assert agreement.frames, f"{name}: nothing compared"
        assert agreement.agreed + agreement.known == agreement.frames, name
    assert len(events) == len(crafted_frames())


def test_network_message_networks_are_wiresharks_dnet_list(crafted: Path) -> None:
    out = subprocess.run(["tshark", "-r", str(crafted), "-n", "-Y", "bacnet.control_net == 1", "-T", "fields",
                          "-E", "occurrence=a", "-E", "aggregator=,", "-e", "frame.number", "-e", "bacnet.dnet"],
                         capture_output=True, text=True, check=True).stdout
    theirs = {int(f): [int(v) for v in d.split(",") if v] for f, d in (line.split("\t") for line in out.splitlines())}
    events, _ = sensor_events(crafted, DISSECTOR)
    ours = {e["icsmon.packet"]: e.get("bacnet.npdu.networks", []) for e in events if "bacnet.npdu.message_type" in e}
    assert len(ours) == len(T.NETWORK_CASES) and ours == theirs


def test_crafted_capture_events(crafted: Path) -> None:
    events, stats = sensor_events(crafted, DISSECTOR)
    counters = stats["protocols"]["bacnet"]
    assert counters["bugs"] == 0 and counters["violations"] == 0
    assert not [e for e in events if "bacnet.anomaly" in e]
    sessions = counters["sessions"]
    assert sessions["reassembled"] == 1 and sessions["unpaired_responses"] == len(ERROR_CASES)
    assert sessions["paired"] == len(T.CONFIRMED_CASES) + len(T.ACK_CASES) + 3  # routed two, segmented one
    functions = Counter(e["ics.function"] for e in events)
    assert functions["register_foreign_device"] == 2 and functions["write_broadcast_distribution_table"] == 2


# -- Zeek ICSNPP baselines ---------------------------------------------------------------------------


def zeek_log(case: str, name: str) -> list[dict[str, str]]:
    rows: list[dict[str, str]] = []
    fields: list[str] = []
    for line in (ICSNPP / "baseline" / f"analyzer.{case}" / name).read_text().splitlines():
        if line.startswith("#fields"):
            fields = line.split("\t")[1:]
        elif not line.startswith("#"):
            rows.append(dict(zip(fields, line.split("\t"))))
    return rows


Key = tuple[str, int, str, int]


def sender(event: dict[str, Any]) -> Key:
    """(source ip, port, destination ip, port) of the datagram that produced the event."""
    if event["network.direction"] == "to_server":
        return event["source.ip"], event["source.port"], event["destination.ip"], event["destination.port"]
    return event["destination.ip"], event["destination.port"], event["source.ip"], event["source.port"]


def zeek_sender(row: dict[str, str]) -> Key:
    return row["source_h"], int(row["source_p"]), row["destination_h"], int(row["destination_p"])


def align(ours: dict[Key, list[Any]], theirs: dict[Key, list[Any]]) -> tuple[int, list[Any], list[Any]]:
    """Records matched per directed flow in order: (matched, ours unmatched, Zeek's unmatched)."""
    matched, only_ours, only_theirs = 0, [], []
    for key in set(ours) | set(theirs):
        a, b = ours.get(key, []), theirs.get(key, [])
        for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
            if op == "equal":
                matched += i2 - i1
            else:
                only_ours += a[i1:i2]
                only_theirs += b[j1:j2]
    return matched, only_ours, only_theirs


_ZEEK_TYPES = {"confirmed_request": "CONFIRMED_REQUEST", "unconfirmed_request": "UNCONFIRMED_REQUEST",
               "simple_ack": "SIMPLE_ACK", "complex_ack": "COMPLEX_ACK", "segment_ack": "SEGMENT_ACK",
               "error": "ERROR_PDU", "reject": "REJECT_PDU", "abort": "ABORT_PDU"}
_ZEEK_BVLC = {"original_unicast_npdu": "Original_Unicast_NPDU", "original_broadcast_npdu": "Original_Broadcast_NPDU",
              "distribute_broadcast_to_network": "Distribute_Broadcast_to_Network",
              "forwarded_npdu": "Forwarded_NPDU"}


def bacnet_log_record(e: dict[str, Any]) -> tuple[str, ...]:
    """One event as Zeek's bacnet.log writes it: bvlc function, PDU type, service, invoke id, result."""
    apdu = e.get("bacnet.apdu.type")
    pdu_type = _ZEEK_TYPES.get(apdu, "NPDU" if "bacnet.npdu.message_type" in e else "-")  # type: ignore[arg-type]
    if apdu in ("reject", "abort"):
        service = apdu
    elif apdu == "segment_ack":
        service = "-"
    else:
        service = e.get("bacnet.service") or e.get("bacnet.npdu.message_type") or "-"
    result = "-"
    if apdu == "error":
        result = e["bacnet.error"][0]
    elif apdu in ("reject", "abort"):
        result = e[f"bacnet.{apdu}_reason"]
    return (_ZEEK_BVLC.get(e["bacnet.bvlc.function"], e["bacnet.bvlc.function"]), pdu_type, service,
            str(e.get("bacnet.apdu.invoke_id", "-")), result)


@pytest.mark.parametrize("case", list(ZEEK_CASES), ids=list(ZEEK_CASES))
def test_bacnet_log_matches_zeek(case: str) -> None:
    """Every Zeek bacnet.log record is one of our events with the same function, type, service, invoke id
    and result; ours has more only where Zeek writes one record per segmented message."""
    events, _ = sensor_events(TRACES / ZEEK_CASES[case], DISSECTOR)
    ours: dict[Key, list[tuple[str, ...]]] = {}
    segments: dict[Key, list[tuple[str, ...]]] = {}
    for e in events:
        (segments if e.get("bacnet.apdu.more_follows") else ours).setdefault(sender(e), []).append(
            bacnet_log_record(e))
    theirs: dict[Key, list[tuple[str, ...]]] = {}
    for row in zeek_log(case, "bacnet.log"):
        theirs.setdefault(zeek_sender(row), []).append((row["bvlc_function"], row["pdu_type"], row["pdu_service"],
                                                        row["invoke_id"], row["result_code"]))
    matched, only_ours, only_theirs = align(ours, theirs)
    total = sum(map(len, theirs.values()))
    extra = sum(map(len, segments.values()))
    print(f"\n{case}: {matched} of {total} Zeek bacnet.log records agree; {extra} non-final segments"
          " (Zeek logs a segmented message once)")
    assert not only_theirs and not only_ours and matched == total
    assert matched + extra == len(events)


_TAG = re.compile(r"^(.*):(\d+)/([^\[]+)(?:\[(\d+)\])?$")
_PROPERTY_SERVICES = {("read_property", "request"): "read-property-request", ("read_property", "response"):
                      "read-property-ack", ("read_property_multiple", "request"): "read-property-multiple-request",
                      ("read_property_multiple", "response"): "read-property-multiple-ack",
                      ("write_property", "request"): "write-property", ("read_range", "request"): "read-range-request"}


def property_records(e: dict[str, Any]) -> list[tuple[str, ...]]:
    """One event as Zeek's bacnet_property.log keys it: one record per object and property."""
    if e.get("bacnet.apdu.type") == "error" and e.get("bacnet.service") == "read_property":
        return [(str(e["bacnet.apdu.invoke_id"]), "ERROR: read_property", e["bacnet.error"][0], "-", "-", "-")]
    service = _PROPERTY_SERVICES.get((e.get("bacnet.service"), e.get("ics.role")))  # type: ignore[arg-type]
    if service is None or e.get("bacnet.apdu.type") not in ("confirmed_request", "complex_ack"):
        return []
    out = []
    for tag in e.get("ics.tag", []):
        match = _TAG.match(tag)
        if match:
            otype, instance, prop, index = match.groups()
            if prop.startswith("proprietary-"):
                prop = f"Vendor Specific ({prop.split('-')[1]})"
            out.append((str(e["bacnet.apdu.invoke_id"]), service, otype, instance, prop, index or "-"))
    return out


def zeek_value_matches(zeek: str, text: str, number: float | None) -> bool:
    """Zeek prints reals with six decimals, object ids as ``type: n``, dates M/D/Y, times unpadded, flags
    as T/F, some enumerations as numbers where icsmon names them; a null or empty string is ``-``."""
    if zeek == "-":
        return text in ("null", "")  # Zeek writes an empty string as unset too
    if zeek == text or zeek.replace(": ", ":") == text:
        return True
    if number is not None:
        try:
            return abs(float(zeek) - number) < 1e-6 * max(1.0, abs(number)) or f"{number:.6f}" == zeek
        except ValueError:
            return False
    if set(zeek) <= {"T", "F"}:
        return zeek.replace("T", "1").replace("F", "0")[:len(text)] == text
    times = re.match(r"^(\d+):(\d+):(\d+)\.(\d+)$", zeek)
    if times:
        return text == ":".join(f"{int(v):02d}" for v in times.groups()[:3]) + f".{int(times[4]):02d}"
    dates = re.match(r"^(\d+)/(\d+)/(\d+)$", zeek)
    return bool(dates) and text == f"{dates[3]}-{int(dates[1]):02d}-{int(dates[2]):02d}"


def event_values(e: dict[str, Any]) -> list[tuple[str, float | None]]:
    """bacnet.values with the number behind each (reals, integers, enumerations, booleans)."""
    numbers = iter(e.get("ics.values", []))
    out: list[tuple[str, float | None]] = []
    for text in e.get("bacnet.values", []):
        numeric = text in ("true", "false") or re.match(r"^-?\d+(\.\d+)?(e-?\d+)?$", text) is not None
        named = not numeric and ":" not in text and "-" not in text[:1] and not re.match(r"^[\d*]", text)
        out.append((text, next(numbers, None) if numeric or (named and text.islower()) else None))
    return out


@pytest.mark.parametrize("case", list(ZEEK_CASES), ids=list(ZEEK_CASES))
def test_property_log_matches_zeek(case: str) -> None:
    """Zeek writes one record per object and property of a request, one per value of an ack."""
    events, _ = sensor_events(TRACES / ZEEK_CASES[case], DISSECTOR)
    ours: dict[Key, list[tuple[str, ...]]] = {}
    our_events: dict[Key, list[dict[str, Any]]] = {}
    for e in events:
        for record in property_records(e):
            ours.setdefault(sender(e), []).append(record)
            our_events.setdefault(sender(e), []).append(e)
    theirs: dict[Key, list[tuple[str, ...]]] = {}
    their_values: dict[Key, list[list[str]]] = {}
    for row in zeek_log(case, "bacnet_property.log"):
        key = zeek_sender(row)
        record = (row["invoke_id"], row["pdu_service"], row["object_type"], row["instance_number"], row["property"],
                  row["array_index"])
        flow, values = theirs.setdefault(key, []), their_values.setdefault(key, [])
        if record[1] == "read-property-ack" and flow and flow[-1] == record:
            values[-1].append(row["value"])  # one ack, several values
            continue
        flow.append(record)
        values.append([row["value"]])
    matched = compared = agreed = 0
    only_ours: list[tuple[str, ...]] = []
    only_theirs: list[tuple[str, ...]] = []
    mismatches: list[Any] = []
    for key in set(ours) | set(theirs):
        a, b = ours.get(key, []), theirs.get(key, [])
        matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
        for op, i1, i2, j1, j2 in matcher.get_opcodes():
            if op != "equal":
                only_ours += [(*r, str(our_events[key][i1 + n]["icsmon.packet"])) for n, r in enumerate(a[i1:i2])]
                only_theirs += b[j1:j2]
                continue
            matched += i2 - i1
            for n in range(i2 - i1):
                record, event, zeek_values = a[i1 + n], our_events[key][i1 + n], their_values[key][j1 + n]
                if record[1] not in ("read-property-ack", "write-property"):
                    continue
                mine = event_values(event)
                if "bacnet.truncated" in event:  # icsmon keeps the first MAX_ITEMS values
                    zeek_values = zeek_values[:len(mine)]
                if record[1] == "read-property-ack" and len(mine) != len(zeek_values):
                    mismatches.append((record, zeek_values, mine))
                    continue
                for zeek_value, (text, number) in zip(zeek_values, mine, strict=False):
                    if "X" in zeek_value:
                        continue  # btest masked it
                    compared += 1
                    if zeek_value_matches(zeek_value, text, number):
                        agreed += 1
                    else:
                        mismatches.append((record, zeek_value, text))
    total = sum(map(len, theirs.values()))
    print(f"\n{case}: {matched} of {total} Zeek property records agree on invoke id, service, object, property and"
          f" index; values agree {agreed} of {compared}")
    # Zeek writes no record for an ack whose value is an empty list, and array index 0 for a ReadRange
    # request that names none.
    read_range = 1 if case == "error-reject-abort" else 0
    for record in only_ours:
        event = next(e for e in events if str(e["icsmon.packet"]) == record[-1])
        assert record[1] == "read-range-request" or record[1] == "read-property-ack" and "bacnet.values" not in event
    assert [r[1] for r in only_theirs] == ["read-range-request"] * read_range
    assert [r[:5] for r in only_theirs] == [r[:5] for r in only_ours if r[1] == "read-range-request"]
    assert matched == total - len(only_theirs)
    assert not mismatches, "\n".join(sorted({f"{m[0][4]} | {str(m[1])[:60]} | {str(m[2])[:60]}" for m in mismatches}))
    assert compared >= (500 if case in ("basic", "services") else 0)


def test_discovery_log_matches_zeek() -> None:
    compared = Counter()
    for case, capture in ZEEK_CASES.items():
        events, _ = sensor_events(TRACES / capture, DISSECTOR)
        ours: dict[Key, list[tuple[str, ...]]] = {}
        names: dict[Key, list[tuple[str, str]]] = {}
        for e in events:
            service = e.get("bacnet.service")
            if service not in ("who_is", "i_am", "who_has", "i_have"):
                continue
            low, high = e.get("bacnet.range_low"), e.get("bacnet.range_high")
            obj = e.get("bacnet.object") or (f"device:{e['bacnet.device_instance']}" if service == "i_am" else "-:-")
            otype, instance = obj.rsplit(":", 1)
            device = str(e.get("bacnet.device_instance", "-")) if service == "i_have" else "-"
            ours.setdefault(sender(e), []).append((service.replace("_", "-"), device, otype, instance,
                                                   "All" if low is None else f"{low}-{high}"))
            names.setdefault(sender(e), []).append((e.get("bacnet.vendor", "-"), e.get("bacnet.object_name", "-")))
        theirs: dict[Key, list[tuple[str, ...]]] = {}
        their_names: dict[Key, list[tuple[str, str]]] = {}
        for row in zeek_log(case, "bacnet_discovery.log"):
            rng = row["range"] if row["pdu_service"] in ("who-is", "who-has") else "All"
            theirs.setdefault(zeek_sender(row), []).append((row["pdu_service"], row["device_id_number"],
                                                            row["object_type"], row["instance_number"], rng))
            their_names.setdefault(zeek_sender(row), []).append((row["vendor"], row["object_name"]))
        matched, only_ours, only_theirs = align(ours, theirs)
        assert not only_ours and not only_theirs, (case, only_ours[:5], only_theirs[:5])
        compared["records"] += matched
        for key, flow in their_names.items():
            for (vendor, name), (my_vendor, my_name) in zip(flow, names[key], strict=True):
                if vendor != "-" and not my_vendor.startswith("unknown"):
                    compared["vendors"] += 1
                    assert vendor.replace(",", "") == my_vendor.replace(",", ""), (vendor, my_vendor)
                if name not in ("-", "N/A", "(empty)"):
                    compared["names"] += 1
                    assert name == my_name
                elif name == "(empty)":  # Zeek decodes UTF-8 names only; these are UCS-2
                    assert my_name and not my_name.isascii()
    print(f"\nZeek bacnet_discovery.log: {dict(compared)} agree")
    assert compared["records"] > 400 and compared["vendors"] > 200 and compared["names"] >= 5


def test_device_control_log_matches_zeek() -> None:
    """DeviceCommunicationControl and ReinitializeDevice: duration, state, password presence, result."""
    events, _ = sensor_events(TRACES / "bacnet_services.pcap", DISSECTOR)
    ours = []
    for e in events:
        if e.get("bacnet.service") not in ("device_communication_control", "reinitialize_device"):
            continue
        if e["ics.role"] == "request":
            ours.append((str(e["bacnet.apdu.invoke_id"]), e["bacnet.service"],
                         str(e.get("bacnet.duration_minutes", "-")),
                         e.get("bacnet.enable_disable") or e.get("bacnet.reinitialized_state"),
                         bool(e.get("bacnet.password_present")), "-", "-"))
        else:
            ours.append((str(e["bacnet.apdu.invoke_id"]), e["bacnet.service"], "-", "-", False,
                         "SUCCESS" if e["ics.status"] == "ok" else "ERROR", e.get("bacnet.error", ["-"])[0]))
    theirs = [(r["invoke_id"], r["pdu_service"], r["time_duration"], r["device_state"], r["password"] != "-",
               r["result"], r["result_code"]) for r in zeek_log("services", "bacnet_device_control.log")]
    assert ours == theirs and len(ours) == 16
    # Zeek's log holds the passwords in clear; ours never do.
    assert not any("filister" in json.dumps(e) or "ethereal" in json.dumps(e) for e in events)


# -- real captures end to end -----------------------------------------------------------------------


@pytest.mark.parametrize(("capture", "expected"), list(zip(SHARED, [3257, 7049, 45, 20, 22], strict=True)),
                         ids=[p.name for p in SHARED])
def test_icsmon_read_end_to_end(capture: Path, expected: int, tmp_path: Path) -> None:
    events_path, stats_path = tmp_path / "events.jsonl", tmp_path / "stats.json"
    subprocess.run([sys.executable, "-m", "api.cli", "read", str(capture), "--events", str(events_path), "--stats",
                    str(stats_path), "-q", "--no-progress"], check=True, cwd=REPO, timeout=120)
    stats = json.loads(stats_path.read_text())
    counters = stats["protocols"]["bacnet"]
    assert counters["bugs"] == 0 and counters["violations"] == 0 and counters["events"] == expected
    assert not any(reason.startswith("dissector-bug") for reason in stats.get("errors") or {})
    events = [json.loads(line) for line in events_path.read_text().splitlines()]
    ours = [e for e in events if e["event.dataset"] == "icsmon.bacnet"]
    assert len(ours) == expected
    for e in ours:
        assert e["network.protocol"] == "bacnet" and e["network.transport"] == "udp"
        assert e["ics.role"] in ("request", "response", "unsolicited")
        assert e["ics.function"] == e["event.action"]
    if capture.name == "bacnet_example.pcap":  # a password guessing run: ReinitializeDevice abort-restore
        guesses = [e for e in ours if e.get("bacnet.reinitialized_state") == "abort-restore"]
        assert len(guesses) == 120 and all(e["ics.operation"] == "program_download" for e in guesses)
        failures = [e for e in ours if e.get("ics.status") == "password-failure"]
        assert len(failures) == 90 and counters["sessions"]["paired"] == 1400 + 120
        assert {a for e in ours for a in e.get("bacnet.anomaly", ())} == {"bvlc-length-mismatch"}
    if capture.name == "bacnet_services.pcap":  # routed traffic to MS/TP devices behind 192.168.0.24
        units = Counter(e.get("ics.unit") for e in ours if e["ics.role"] == "request")
        assert units["3:29"] > 3000 and units["3:108"] > 100 and not any("bacnet.anomaly" in e for e in ours)
        assert counters["sessions"]["reassembled"] == 1


def test_no_other_shared_capture_is_taken_for_bacnet() -> None:
    """Content detection never claims another protocol's flow (BACnet alone, on every shared capture)."""
    others = sorted(p for p in PCAPS.rglob("*") if p.suffix in (".pcap", ".pcapng") and p.is_file()
                    and p not in SHARED)
    assert len(others) > 100
    for capture in others:
        events, stats = sensor_events(capture, DISSECTOR)
        assert events == [] and not stats["protocols"]["bacnet"]["flows"], capture


# -- throughput -------------------------------------------------------------------------------------


def polling(n: int) -> list[tuple[bool, bytes]]:
    """A supervisor polling present values through a router, with the odd I-Am and write."""
    out: list[tuple[bool, bytes]] = []
    k = 0
    while len(out) < n:
        k += 1
        invoke = k & 0xFF
        obj = T.ctx(0, T.oid(k % 3, k % 50)) + T.ctx(1, T.u(85))
        if k % 40 == 0:
            out.append((False, T.broadcast(T.unconfirmed(0, T.app_oid(8, k) + T.app_uint(1476) + T.app_enum(0)
                                                         + T.app_uint(5)))))
        elif k % 25 == 0:
            out.append((True, T.unicast(T.confirmed(15, obj + T.wrap(3, T.app_real(k * 0.5)) + T.ctx(4, T.u(8)),
                                                    invoke=invoke), dnet=(3, bytes([k % 8])))))
            out.append((False, T.unicast(T.simple_ack(15, invoke=invoke), snet=(3, bytes([k % 8])))))
        else:
            out.append((True, T.unicast(T.confirmed(12, obj, invoke=invoke), dnet=(3, bytes([k % 8])),
                                        expecting_reply=True)))
            out.append((False, T.unicast(T.complex_ack(12, obj + T.wrap(3, T.app_real(k * 0.25)), invoke=invoke),
                                         snet=(3, bytes([k % 8])))))
    return out


def test_session_throughput() -> None:
    """Datagrams/s of one session, printed: a figure, not a floor."""
    stream = polling(20_000)
    best = 0.0
    for _ in range(3):
        session = BacnetSession()
        started = time.perf_counter()
        count = 0
        for ts, (to_server, datagram) in enumerate(stream):
            count += len(session.feed(datagram, to_server, float(ts)))
        best = max(best, count / (time.perf_counter() - started))
    print(f"\nbacnet session: {best:,.0f} datagrams/s")
    assert count == len(stream) and session.stats["anomalies"] == 0 and session.stats["unpaired_responses"] == 0


def test_pipeline_throughput(tmp_path: Path) -> None:
    """Packets/s of the whole pipeline (events serialised to JSON) on a crafted capture of many devices."""
    frames = []
    for client in range(20):
        src = (10, 1, 0, client + 1)
        for to_server, datagram in polling(1_000):
            frames.append(udp_frame(src, SERVER, datagram, 47808 + client) if to_server
                          else udp_frame(SERVER, src, datagram, 47808, 47808 + client))
    capture = write_pcap(tmp_path / "polling.pcap", frames)
    best = 0.0
    for _ in range(2):
        events_path = tmp_path / "events.jsonl"
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "api.cli", "read", str(capture), "--events", str(events_path), "-q",
                        "--no-progress"], check=True, cwd=REPO, timeout=120)
        best = max(best, len(frames) / (time.perf_counter() - started))
    lines = events_path.read_text().count("\n")
    print(f"\npipeline (process start-up included): {best:,.0f} packets/s on {len(frames):,} packets")
    assert lines >= len(frames)
