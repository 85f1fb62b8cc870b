"""The DNP3 dissector against Wireshark, Zeek ICSNPP and Suricata, on real and crafted captures, end to end.

* The differential harness (sensor/differential.py) on every shared DNP3 capture: every key field of
  every frame agrees with tshark, or the difference is on the reviewed list
  (tests/sensor/differential_known.tsv), each with its reason.
* Deeper, frame by frame on the shared captures and on a crafted capture of every object layout
  and function: point indexes, values, flags octets, absolute and relative time stamps, control
  statuses and file objects against tshark's fields, with the objects Wireshark 4.0 does not decode
  listed (it stops the fragment there).
* The Zeek ICSNPP baselines (dnp3.log, dnp3_objects.log, dnp3_control.log) record by record, and
  every dnp3 record Suricata's verification tests expect, field by field.
* ``icsmon read CAPTURE --events -`` end to end; no other shared capture is taken for DNP3;
  throughput of the session and of the pipeline (printed, not asserted).
"""

from __future__ import annotations

import json
import re
import struct
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from sensor.differential import KnownDifference, compare_captures, load_known
from sensor.protocols.dnp3 import DISSECTOR, Dnp3Session
from tests.sensor.protocols import test_dnp3 as T  # its crafting helpers and tables
from tests.sensor.protocols.crafting import sensor_events, tcp_records, write_pcap

REPO = Path(__file__).resolve().parents[3]
PCAPS = REPO.parent / "shared" / "pcaps"
KNOWN = REPO / "tests" / "sensor" / "differential_known.tsv"
ICSNPP = PCAPS / "icsnpp-dnp3" / "testing"
EXAMPLE = ICSNPP / "traces" / "dnp3_example.pcap"
SURICATA = PCAPS / "suricata-verify" / "tests" / "dnp3"
SHARED = sorted([*PCAPS.glob("iti/pcaps/dnp3/*.pcap"), *PCAPS.glob("iti/pcaps/bro/dnp3/*.pcap"),
                 *PCAPS.glob("iti/pcaps/openics/DNP3*.pcap"), EXAMPLE, *SURICATA.glob("*/*.pcap")])
PORT = 20000  # the server side of the crafted connections


def crafted_segments() -> list[tuple[bool, bytes]]:
    """Every object layout (by range and by index prefix), every function with its typical body,
    the conversation of test_dnp3 (link frames, select before operate, a multi-segment response,
    unsolicited and confirm), and a segment holding a request and the start of the next."""
    out: list[tuple[bool, bytes]] = []
    for key in sorted(T.LAYOUTS):
        group, variation = key
        objects = [T.sample(T.LAYOUTS[key], k) for k in range(2)]
        body = T.hdr(group, variation, 0x01, 8, 9, widths="HH") + b"".join(o[0] for o in objects) + T.hdr(
            group, variation, 0x28, 2, widths="H") + b"".join(struct.pack("<H", 500 + k) + o[0]
                                                             for k, o in enumerate(objects))
        out.append((False, T.resp(body)))
    for code, body in sorted(T.BODIES.items()):
        if code >= 129:
            out.append((False, T.resp(body, ac=0xF2 if code == 130 else 0xC2, fc=code)))
        else:
            out.append((True, T.req(code, body, seq=2)))
    out += T.conversation()
    a, b = T.req(1, T.CLASS_0123, seq=6), T.req(1, T.CLASS_0123, seq=7)
    out += [(True, a + b[:7]), (True, b[7:])]
    return out


@pytest.fixture(scope="module")
def crafted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_pcap(tmp_path_factory.mktemp("dnp3") / "every_object.pcap", tcp_records(crafted_segments(), PORT))


# -- differential: key fields -----------------------------------------------------------------------


def test_key_fields_agree_with_wireshark_on_the_shared_captures() -> None:
    report = compare_captures(SHARED, dissectors=[DISSECTOR], root=PCAPS, known=load_known(KNOWN))
    print("\n" + report.markdown())
    assert DISSECTOR.wireshark is not None
    assert {a.field for a in report.agreements.values() if a.frames} == set(DISSECTOR.wireshark.fields)
    assert report.unexplained == []
    assert all(a.share == 1.0 for a in report.agreements.values())
    agreements = {name: a for (_, name), a in report.agreements.items()}
    assert agreements["dnp3.function_code"].frames == 1611 and agreements["dnp3.function_code"].known == 5
    assert agreements["dnp3.object_code"].frames >= 1300 and agreements["dnp3.crob.on_time"].frames >= 700
    reasons = Counter(d.reason for d in report.differences)
    assert len(reasons) == 7  # wrap (x2), several frames per segment, LENGTH < 5, too long, fuzzed CROB, g120


def test_key_fields_agree_with_wireshark_on_every_object_and_function(crafted: Path) -> None:
    """Every key field of the crafted capture agrees, once the objects Wireshark 4.0 does not decode
    are set aside (the frames that carry them are listed; Wireshark stops the fragment there)."""
    events, _ = sensor_events(crafted, DISSECTOR)
    undecoded = {e["icsmon.packet"] for e in events for h in e.get("dnp3.objects", ())
                 if (h["group"], h["variation"]) in UNDECODED}
    # the multi-segment response of the conversation travels in one TCP segment: Wireshark lists both frames
    segmented = [e["icsmon.packet"] for e in events if e.get("dnp3.transport.segments", 1) > 1]
    known = [KnownDifference("*", "dnp3", str(frame), field, "two link frames of one fragment in one segment")
             for frame in segmented for field in ("dnp3.link.*", "dnp3.transport.sequence")]
    report = compare_captures([crafted], dissectors=[DISSECTOR], known=known)
    print("\n" + report.markdown())
    assert len(segmented) == 1 and len([d for d in report.differences if d.reason]) == 5
    differing = {d.frame for d in report.unexplained}
    assert differing <= undecoded, sorted(differing - undecoded)
    assert {d.field for d in report.unexplained} <= {"dnp3.object_code", "dnp3.prefix_code", "dnp3.range_code"}
    compared = {name: a.frames for (_, name), a in report.agreements.items()}
    assert compared["dnp3.object_code"] > 150 and compared["dnp3.crob.op_type"] >= 8
    assert compared["dnp3.link.source"] == len(events)


# -- deeper: indexes, values, flags, times, statuses, files ------------------------------------------

# Objects Wireshark 4.0 does not decode (or reads with another size): it stops the fragment there.
UNDECODED = {(4, 3), *((31, v) for v in range(1, 7)), *((33, v) for v in range(1, 5)), (43, 1), (43, 3), (50, 2),
             (50, 4), (51, 2), (52, 1), (81, 1), (86, 2), (101, 1), (101, 2), (101, 3), (102, 1), (121, 1),
             (122, 1), (122, 2), *((120, v) for v in range(1, 16)), (90, 1)}
SIGNED_DEADBAND = {(34, 1), (34, 2)}  # Wireshark reads the unsigned deadbands as signed integers
PACKED = {(1, 1), (3, 1), (10, 1), (80, 1)}
FLAG_VALUED = {1, 2, 3, 4, 10, 11, 13}  # the value is in the flags octet: compared with the flags
NUMERIC = {20, 21, 22, 23, 30, 31, 32, 33, 34, 40, 41, 42, 43}
WIRESHARK_OBJECTS = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 20, 21, 25, 26, 27, 129, 130}
FAMILIES = ("biq", "boq", "ctrq", "aiq", "aoq")
VALUE_FIELDS = ["dnp3.al.bit", "dnp3.al.2bit", "dnp3.al.ana.int", "dnp3.al.ana.float", "dnp3.al.ana.double",
                "dnp3.al.anaout.int", "dnp3.al.anaout.float", "dnp3.al.anaout.double", "dnp3.al.cnt"]
# file object fields Wireshark 4.0 shows, per g70 variation (it shows the size and time of a file command only
# when it opens a file for writing: the standard ignores them otherwise)
FILE_KEYS = {3: {"authentication_key", "operational_mode", "maximum_block_size", "request_id", "filename"},
             4: {"file_handle", "file_size", "maximum_block_size", "request_id", "status_code"},
             5: {"file_handle", "block_number"}, 6: {"file_handle", "block_number", "status_code"},
             7: {"file_size", "request_id", "filename"}, 8: {"filename"}, 2: {"authentication_key"}}
FILE_FIELDS = {"dnp3.al.file.size": "file_size", "dnp3.al.file.handle": "file_handle",
               "dnp3.al.file.reqID": "request_id", "dnp3.al.file.maxblock": "maximum_block_size",
               "dnp3.al.file.blocknum": "block_number", "dnp3.al.file.status": "status_code",
               "dnp3.al.file.mode": "operational_mode", "dnp3.al.file.auth": "authentication_key",
               "dnp3.al.file_name": "filename"}
DEEP_FIELDS = (VALUE_FIELDS + [f"dnp3.al.{fam}.b{k}" for fam in FAMILIES for k in range(8)]
               + ["dnp3.al.point_index", "dnp3.al.index", "dnp3.al.timestamp", "dnp3.al.reltimestamp",
                  "dnp3.al.ctrlstatus", *FILE_FIELDS])
MODES = {"null": 0, "read": 1, "write": 2, "append": 3}


def tshark_columns(capture: Path, decode_as: tuple[str, ...] = ()) -> dict[int, dict[str, list[str]]]:
    cmd = ["tshark", "-r", str(capture), "-n", "-Y", "dnp3.al.func", "-T", "fields", "-E", "occurrence=a",
           "-E", "aggregator=\x1f", "-E", "separator=\t", "-e", "frame.number"]
    for spec in decode_as:
        cmd += ["-d", spec]
    for name in DEEP_FIELDS:
        cmd += ["-e", name]
    out = subprocess.run(cmd, capture_output=True, text=True, errors="replace").stdout
    table: dict[int, dict[str, list[str]]] = {}
    for line in out.splitlines():
        cells = line.split("\t")
        table[int(cells[0])] = {name: [v for v in cell.split("\x1f") if v]
                                for name, cell in zip(DEEP_FIELDS, cells[1:])}
    return table


def _wireshark_time(text: str) -> str:
    """``Mar 25, 2015 19:57:42.687000000 UTC`` -> ``2015-03-25T19:57:42.687Z``."""
    whole, fraction = text.removesuffix(" UTC").split(".")
    return datetime.strptime(whole, "%b %d, %Y %H:%M:%S").strftime("%Y-%m-%dT%H:%M:%S.") + fraction[:3] + "Z"


def _number(text: str) -> float:
    return float(text == "True") if text in ("True", "False") else round(float(int(text, 0) if text.startswith(
        "0x") else float(text)), 3)


def theirs(columns: dict[str, list[str]]) -> dict[str, list[Any]]:
    flags = []
    for family in FAMILIES:
        bits = [columns[f"dnp3.al.{family}.b{k}"] for k in range(8)]
        flags += [sum(int(bits[k][i] in ("1", "True")) << k for k in range(8)) for i in range(len(bits[0]))]
    files = []
    for name, key in FILE_FIELDS.items():
        files += [(key, v if key == "filename" else int(v, 0)) for v in columns[name]]
    return {"indexes": sorted(int(v) for f in ("dnp3.al.point_index", "dnp3.al.index") for v in columns[f]),
            "values": sorted(_number(v) for f in VALUE_FIELDS for v in columns[f]), "flags": sorted(flags),
            "times": sorted(_wireshark_time(v) for v in columns["dnp3.al.timestamp"]),
            "relative": sorted(round(float(v) * 1000) for v in columns["dnp3.al.reltimestamp"]),
            "status": sorted(int(v, 0) for v in columns["dnp3.al.ctrlstatus"]), "files": sorted(files)}


def ours(events: list[dict[str, Any]]) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {"indexes": [], "values": [], "flags": [], "times": [], "relative": [], "status": [],
                                 "files": []}
    for e in events:
        for h in e.get("dnp3.objects", ()):
            key = (h["group"], h["variation"])
            if "values" in h or "flags" in h or "times" in h or "controls" in h or "attributes" in h:
                out["indexes"] += h.get("indexes", ())
            if key in PACKED or h["group"] in NUMERIC and key not in SIGNED_DEADBAND:
                out["values"] += [round(float(v), 3) for v in h.get("values", ()) if not isinstance(v, str)]
            if h["group"] != 13:
                out["flags"] += h.get("flags", ())
            if "relative_ms" in h:
                out["relative"] += h["relative_ms"]
            else:
                out["times"] += [t for t in h.get("times", ()) if t]
            out["status"] += h.get("status", []) + [c["status"] for c in h.get("controls", ())]
            for obj in h.get("objects", ()) if h["group"] == 70 else ():
                keys = FILE_KEYS.get(h["variation"], set())
                if h["variation"] == 3 and e["dnp3.function_code"] == 25 and obj["operational_mode"] != "read":
                    keys = keys | {"file_size"}
                    out["times"].append(obj["created"])
                for key_name in keys:
                    if key_name in obj:
                        value = obj[key_name]
                        if key_name == "operational_mode":
                            value = MODES[value]
                        out["files"].append((key_name, value))
    return {k: sorted(v) for k, v in out.items()}


def deep_compare(capture: Path, skip: frozenset[int] = frozenset()) -> Counter[str]:
    """Per frame and aspect, icsmon's multiset against tshark's; raises on the first difference."""
    events, _ = sensor_events(capture, DISSECTOR)
    odd = {e["destination.port"] for e in events} - {20000}
    columns = tshark_columns(capture, tuple(f"tcp.port=={p},dnp3" for p in odd))
    by_frame: dict[int, list[dict[str, Any]]] = {}
    for e in events:
        if e.get("dnp3.function_code") in WIRESHARK_OBJECTS and "dnp3.anomaly" not in e:
            by_frame.setdefault(e["icsmon.packet"], []).append(e)
    counted: Counter[str] = Counter()
    for frame, evs in sorted(by_frame.items()):
        if frame in skip or any((h["group"], h["variation"]) in UNDECODED for e in evs
                                for h in e.get("dnp3.objects", ())):
            counted["frames_set_aside"] += 1
            continue
        mine, other = ours(evs), theirs(columns[frame])
        if any((h["group"], h["variation"]) in SIGNED_DEADBAND for e in evs for h in e.get("dnp3.objects", ())):
            del mine["values"]  # Wireshark reads them signed
        for aspect, values in mine.items():
            if values or other[aspect]:
                assert values == other[aspect], (capture.name, frame, aspect, values[:20], other[aspect][:20])
                counted[aspect] += len(values)
        counted["frames"] += 1
    return counted


# The seq-wrap frames of the ICSNPP capture (on the reviewed list): Wireshark does not reassemble them.
WRAPPED = frozenset({18, 114, 210, 311, 810})


def test_points_values_flags_times_and_files_agree_with_wireshark_on_the_shared_captures() -> None:
    total: Counter[str] = Counter()
    for capture in SHARED:
        total += deep_compare(capture, WRAPPED if capture == EXAMPLE else frozenset())
    print(f"\nagree with tshark on {dict(total)}")
    assert total == {"frames": 1267, "indexes": 21904, "values": 5773, "flags": 20095, "times": 192, "relative": 126,
                     "status": 616, "files": 208,
                     "frames_set_aside": 6}  # g120 (aggressive mode), g90 (stop application) and data sets


def test_every_object_layout_agrees_with_wireshark(crafted: Path) -> None:
    counted = deep_compare(crafted)
    print(f"\nagree with tshark on {dict(counted)}")
    assert counted["frames"] >= 120 and counted["values"] >= 350 and counted["flags"] >= 450
    assert counted["times"] >= 120 and counted["status"] >= 50 and counted["relative"] >= 4 and counted["files"] >= 15
    assert counted["frames_set_aside"] == sum(key in UNDECODED for key in T.LAYOUTS) == 26


def test_crafted_capture_events(crafted: Path) -> None:
    events, stats = sensor_events(crafted, DISSECTOR)
    counters = stats["protocols"]["dnp3"]
    assert counters["bugs"] == 0 and counters["violations"] == 0
    anomalies = Counter(a for e in events for a in e.get("dnp3.anomaly", ()))
    assert anomalies == {"operate-without-select": 1}  # the lone operate of the function bodies
    actions = Counter(e["event.action"] for e in events)
    assert actions["response"] >= len(T.LAYOUTS) and actions["link_status"] == 1
    assert counters["sessions"]["crc_errors"] == 0 and counters["sessions"]["unpaired_responses"] >= len(T.LAYOUTS)


# -- Zeek ICSNPP ------------------------------------------------------------------------------------


def zeek_log(name: str) -> list[dict[str, str]]:
    rows: list[dict[str, str]] = []
    fields: list[str] = []
    for line in (ICSNPP / "baseline" / "analyzer.basic" / name).read_text().splitlines():
        if line.startswith("#fields"):
            fields = line.split("\t")[1:]
        elif line and not line.startswith("#"):
            rows.append(dict(zip(fields, line.split("\t"))))
    return rows


Flow = tuple[str, str, str, str]


def zeek_flow(row: dict[str, str]) -> Flow:
    return row["id.orig_h"], row["id.orig_p"], row["id.resp_h"], row["id.resp_p"]


def our_flow(e: dict[str, Any]) -> Flow:
    return e["source.ip"], str(e["source.port"]), e["destination.ip"], str(e["destination.port"])


def per_flow(items: list[tuple[Flow, tuple[str, ...]]]) -> dict[Flow, list[tuple[str, ...]]]:
    out: dict[Flow, list[tuple[str, ...]]] = {}
    for flow, item in items:
        out.setdefault(flow, []).append(item)
    return out


@pytest.fixture(scope="module")
def example_events() -> list[dict[str, Any]]:
    return sensor_events(EXAMPLE, DISSECTOR)[0]


def test_dnp3_log_matches_zeek(example_events: list[dict[str, Any]]) -> None:
    """Every Zeek dnp3.log record (one per response) is one of our responses with the same reply
    function and IIN; the requests named agree except where Zeek pairs by arrival order."""
    theirs_log = per_flow([(zeek_flow(r), (r["fc_request"], r["fc_reply"], r["iin"])) for r in zeek_log("dnp3.log")])
    ours_log = per_flow([(our_flow(e), ((e.get("dnp3.request_function") or "-").upper()
                                        if e["dnp3.app.fir"] else "-", e["dnp3.function"].upper(),
                                        str(e["dnp3.iin"])))
                         for e in example_events if e.get("dnp3.function_code", 0) >= 129])
    assert set(ours_log) == set(theirs_log)
    total = named = 0
    for flow, rows in theirs_log.items():
        mine = ours_log[flow]
        assert [r[1:] for r in mine] == [r[1:] for r in rows], flow
        total += len(rows)
        named += sum(a[0] == b[0] for a, b in zip(mine, rows))
    print(f"\n{total} dnp3.log records: reply and IIN agree on all, the request named on {named}")
    assert total == 368 and named >= 350


ZEEK_OBJECT_NAMES = {"Binary Input With Status": "g1v2", "Binary Output Status": "g10v2",
                     "16-Bit Analog Input": "g30v2", "16-Bit Analog Output Status": "g40v2",
                     "Class 0 Data": "g60v1", "Class 1 Data": "g60v2", "Class 2 Data": "g60v3", "Class 3 Data": "g60v4"}


def test_dnp3_objects_log_matches_zeek(example_events: list[dict[str, Any]]) -> None:
    theirs_log = per_flow([(zeek_flow(r), (r["function_code"], ZEEK_OBJECT_NAMES[r["object_type"]], r["object_count"],
                                           r["range_low"], r["range_high"])) for r in zeek_log("dnp3_objects.log")])
    items = []
    for e in example_events:
        if e["dnp3.function_code"] == 130:
            continue  # Zeek logs no objects of unsolicited responses
        for h in e.get("dnp3.objects", ()):
            if h["group"] == 12:
                continue  # Zeek logs CROBs in dnp3_control.log only
            low, high = (str(h["start"]), str(h["stop"])) if "start" in h else ("-", "-")
            items.append((our_flow(e), (e["dnp3.function"].upper(), h["type"],
                                        "-" if h["range_code"] == 6 else str(h["count"]), low, high)))
    assert per_flow(items) == theirs_log
    assert sum(map(len, theirs_log.values())) == 503


def test_dnp3_control_log_matches_zeek(example_events: list[dict[str, Any]]) -> None:
    def name(text: str) -> str:
        return text.lower().replace(" ", "_")

    theirs_log = per_flow([(zeek_flow(r), (r["function_code"], r["index_number"], name(r["trip_control_code"]),
                                           name(r["operation_type"]), r["clear_bit"], r["execute_count"],
                                           r["on_time"], r["off_time"], name(r["status_code"])))
                           for r in zeek_log("dnp3_control.log")])
    items = []
    for e in example_events:
        for h in e.get("dnp3.objects", ()):
            for c in h.get("controls", ()):
                status = c["status_name"] if e["ics.role"] != "request" else "-"
                items.append((our_flow(e), (e["dnp3.function"].upper(), str(c["index"]), c["trip_close_name"],
                                            c["operation"], "T" if c["clear"] else "F", str(c["count"]),
                                            str(c["on_time"]), str(c["off_time"]), status)))
    assert per_flow(items) == theirs_log
    assert sum(map(len, theirs_log.values())) == 534


# -- Suricata ---------------------------------------------------------------------------------------

_FLAG_BITS = {"online": 0, "restart": 1, "comm_lost": 2, "remote_forced": 3, "local_forced": 4, "chatter_filter": 5,
              "rollover": 5, "over_range": 5, "reserved0": 6, "discontinuity": 6, "reference_err": 6, "reserved1": 7}


def _ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).astimezone(UTC).timestamp() * 1000)


def suricata_value(e: dict[str, Any], path: str) -> Any:
    """Our counterpart of a Suricata eve dnp3 field, KeyError where there is none."""
    ctl = e["dnp3.link.control"]
    simple = {"dnp3.src": e["dnp3.link.source"], "dnp3.dst": e["dnp3.link.destination"],
              "dnp3.control.dir": ctl & 0x80 != 0, "dnp3.control.pri": ctl & 0x40 != 0,
              "dnp3.control.fcb": ctl & 0x20 != 0, "dnp3.control.fcv": ctl & 0x10 != 0,
              "dnp3.control.function_code": ctl & 15, "dnp3.application.function_code": e["dnp3.function_code"],
              "dnp3.application.complete": True}
    if path in simple:
        return simple[path]
    if path.startswith("dnp3.application.control."):
        return e["dnp3.app." + path.rsplit(".", 1)[1]]
    if path == "dnp3.type":
        return {"request": "request", "response": "response", "unsolicited": "unsolicited_response"}[e["ics.role"]]
    match = re.fullmatch(r"dnp3\.(?:response\.)?iin\.indicators\[(\d+)\]", path)
    if match:
        return e["dnp3.iin_flags"][int(match[1])]
    match = re.fullmatch(r"dnp3\.application\.objects\[(\d+)\]\.(\w+)", path)
    if match:
        h = e["dnp3.objects"][int(match[1])]
        if match[2] in ("start", "stop"):
            if h["range_code"] <= 2:
                return h[match[2]]
            if h["range_code"] <= 5:
                return h["address"]
            raise KeyError(path)  # Suricata writes 0 for count qualifiers: nothing to compare
        return h[match[2]]
    match = re.fullmatch(r"dnp3\.application\.objects\[(\d+)\]\.points\[(\d+)\]\.(\w+)", path)
    if not match:
        raise KeyError(path)
    h, k, key = e["dnp3.objects"][int(match[1])], int(match[2]), match[3]
    if "controls" in h:
        c = h["controls"][k]
        return {"index": c["index"], "prefix": c["index"], "tcc": c["trip_close"], "op_type": c["op_type"],
                "cr": c["clear"], "qu": c["queue"], "count": c["count"], "ontime": c["on_time"],
                "offtime": c["off_time"], "status_code": c["status"]}[key]
    if "objects" in h:
        o = h["objects"][k]
        table = {"index": o["index"], "size": o["size"], "prefix": o["size"], "optional_text": o.get("text", ""),
                 "file_data": "" if o.get("data_size") == 0 else None,
                 "created": _ms(o["created"]) if "created" in o else None,
                 "operational_mode": MODES.get(o.get("operational_mode", ""))}
        value = table[key] if key in table else o[key]
        if value is None:
            raise KeyError(path)
        return value
    if key == "index":
        return h["indexes"][k]
    if key == "prefix":
        return h["indexes"][k] if h["prefix_code"] in (1, 2, 3) else 0
    if key in ("value", "count", "delay_ms"):
        return h["values"][k]
    if key == "state":  # Suricata's g2v1 state is the whole flags octet
        return h["flags"][k] if h["group"] == 2 else h["values"][k]
    if key == "timestamp":
        return _ms(h["times"][k])
    return h["flags"][k] >> _FLAG_BITS[key] & 1


def test_suricata_expected_records() -> None:
    """Every dnp3 record the suricata-verify DNP3 tests expect is one of our events, field by field
    (Suricata logs a message at the packet that acknowledges it: ours is the last one before)."""
    compared = unmapped = records = 0
    for test in sorted(SURICATA.glob("*/test.yaml")):
        spec = yaml.safe_load(test.read_text())
        capture = test.parent / (spec.get("pcap") or next(p.name for p in test.parent.glob("*.pcap")))
        events, _ = sensor_events(capture, DISSECTOR)
        for check in spec.get("checks", ()):
            match = (check.get("filter") or {}).get("match", {})
            if match.get("event_type") != "dnp3":
                continue
            kind = match.get("dnp3.type")
            candidates = [e for e in events if e.get("dnp3.function_code", 0) != 0  # no confirm, no link frame
                          and kind in (None, suricata_value(e, "dnp3.type"))]
            if "pcap_cnt" not in match:  # a count of records (the flood and max-points tests)
                assert len(candidates) == check["filter"]["count"], (test.parent.name, kind)
                continue
            e = [c for c in candidates if c["icsmon.packet"] <= match["pcap_cnt"]][-1]
            records += 1
            for path, expected in match.items():
                if not path.startswith("dnp3.") or path == "dnp3.application.objects[0].points[0].reserved":
                    continue
                try:
                    value = suricata_value(e, path)
                except (KeyError, IndexError):
                    unmapped += 1
                    continue
                assert value == expected or str(value) == str(expected), (test.parent.name, path, value, expected)
                compared += 1
    print(f"\n{records} Suricata records, {compared} fields agree, {unmapped} without a counterpart"
          " (start/stop of count qualifiers)")
    assert (records, compared, unmapped) == (80, 2676, 135)


def test_suricata_decoder_events_have_counterparts() -> None:
    """Suricata's flood and too-long-reassembly decoder events are icsmon anomalies on the same captures."""
    flood, _ = sensor_events(SURICATA / "dnp3-flood" / "input.pcap", DISSECTOR)
    assert [a for e in flood for a in e.get("dnp3.anomaly", ())] == ["request-flood"]
    for which in ("request", "response"):
        events, _ = sensor_events(SURICATA / f"dnp3-too-long-reassembly-{which}" / "input.pcap", DISSECTOR)
        assert [e["dnp3.anomaly"] for e in events] == [["fragment-too-long"]]
    points, stats = sensor_events(SURICATA / "dnp3-max-points" / "test.pcap", DISSECTOR)
    assert points[0]["dnp3.points"] == 65535 and "object-data-truncated" in points[0]["dnp3.anomaly"]


# -- real captures end to end -----------------------------------------------------------------------


@pytest.mark.parametrize(("capture", "expected"), [(EXAMPLE, 732), (PCAPS / "iti/pcaps/bro/dnp3/dnp3.pcap", 115),
                                                   (PCAPS / "iti/pcaps/openics/DNP3-Malformed.pcap", 197)],
                         ids=["icsnpp", "bro", "malformed"])
def test_icsmon_read_end_to_end(capture: Path, expected: int) -> None:
    """``icsmon read CAPTURE --events -``: JSON lines on stdout, every DNP3 event as the session made it."""
    result = subprocess.run([sys.executable, "-m", "api.cli", "read", str(capture), "--events", "-", "-q",
                             "--no-progress"], capture_output=True, text=True, check=True, cwd=REPO, timeout=120)
    events = [json.loads(line) for line in result.stdout.splitlines()]
    ours_ = [e for e in events if e["event.dataset"] == "icsmon.dnp3"]
    assert len(ours_) == expected
    assert not [e for e in events if e["event.dataset"] == "icsmon.decode_error"]
    for e in ours_:
        assert e["network.protocol"] == "dnp3" and e["destination.port"] == 20000
        assert e["ics.role"] in ("request", "response", "unsolicited") and e["ics.function"] == e["event.action"]
        assert e["ics.operation"] in DISSECTOR.operations.values()
    if capture == EXAMPLE:
        assert not any("dnp3.anomaly" in e for e in ours_)
        assert Counter(e["event.action"] for e in ours_) == {"response": 364, "select": 134, "operate": 133,
                                                            "read": 97, "unsolicited_response": 4}
        assert {e["ics.unit"] for e in ours_} == {"5"}  # the outstation; the master is 100
    elif "Malformed" in capture.name:  # fuzzed operates: every one an anomaly, none a decode error
        assert all("dnp3.anomaly" in e and e["event.action"] == "operate" for e in ours_)


def test_no_other_shared_capture_is_taken_for_dnp3() -> None:
    """Content detection never claims another protocol's flow (DNP3 alone, on every shared capture)."""
    others = sorted(p for p in PCAPS.rglob("*") if p.suffix in (".pcap", ".pcapng") and p.is_file()
                    and p not in SHARED)
    assert len(others) > 100
    for capture in others:
        events, stats = sensor_events(capture, DISSECTOR)
        assert events == [] and not stats["protocols"]["dnp3"]["flows"], capture


# -- throughput -------------------------------------------------------------------------------------


def polling_stream(pdus: int) -> list[tuple[bool, bytes]]:
    """A master polling an outstation for events every second: mostly null responses, an event with a
    confirm now and then, an integrity poll every minute."""
    integrity = T.hdr(1, 2, 0x00, 0, 15, widths="BB") + b"\x81" * 16 + T.hdr(30, 1, 0x00, 0, 7, widths="BB") \
        + b"".join(struct.pack("<Bi", 1, k * 100) for k in range(8)) + T.hdr(30, 5, 0x00, 8, 11, widths="BB") \
        + b"".join(struct.pack("<Bf", 1, k * 1.5) for k in range(4))
    events = T.hdr(60, 2, 6) + T.hdr(60, 3, 6) + T.hdr(60, 4, 6)
    out: list[tuple[bool, bytes]] = []
    k = seq = 0
    tseq = [0, 0]
    while len(out) < pdus:
        k += 1
        if k % 60 == 0:
            out.append((True, T.req(1, events + T.hdr(60, 1, 6), seq=seq, tseq=tseq[0])))
            out.append((False, T.resp(integrity, seq=seq, tseq=tseq[1])))
        else:
            out.append((True, T.req(1, events, seq=seq, tseq=tseq[0])))
            if k % 10 == 0:
                event = T.hdr(32, 3, 0x28, 1, widths="H") + struct.pack("<HBi", 5, 1, k) + T.t48(T.T48 + k)
                out.append((False, T.resp(event, seq=seq, tseq=tseq[1], iin=0x0200, ac=0xE0 | seq)))
                tseq[0] = (tseq[0] + 1) & 0x3F
                out.append((True, b"".join(T.frames(bytes([0xC0 | seq, 0]), tseq[0]))))
            else:
                out.append((False, T.resp(seq=seq, tseq=tseq[1])))
        tseq = [(tseq[0] + 1) & 0x3F, (tseq[1] + 1) & 0x3F]
        seq = (seq + 1) & 15
    return out


def test_session_throughput() -> None:
    """Fragments/s of one session fed one frame at a time (printed: the figure is in the report)."""
    stream = polling_stream(60_000)
    best = 0.0
    for _ in range(3):
        session = Dnp3Session()
        started = time.perf_counter()
        count = 0
        for ts, (to_server, raw) in enumerate(stream):
            count += len(session.feed(raw, to_server, float(ts)))
        best = max(best, count / (time.perf_counter() - started))
    print(f"\ndnp3 session: {best:,.0f} PDUs/s")
    assert count == len(stream) and session.stats["anomalies"] == 0
    assert session.stats["paired"] == sum(1 for d, raw in stream if not d)


def test_pipeline_throughput(tmp_path: Path) -> None:
    """Packets/s of the whole pipeline on a crafted capture of many DNP3 connections."""
    records: list[tuple[float, bytes]] = []
    for client in range(40):
        records += tcp_records(polling_stream(600), PORT, client=client + 1, port=40000 + client, t0=1.7e9 + client)
    records.sort(key=lambda r: r[0])
    capture = write_pcap(tmp_path / "polling.pcap", records)
    best = 0.0
    for _ in range(2):
        started = time.perf_counter()
        events, stats = sensor_events(capture, DISSECTOR)
        best = max(best, len(records) / (time.perf_counter() - started))
    print(f"\npipeline: {best:,.0f} packets/s on {len(records):,} packets, {len(events):,} dnp3 events")
    assert stats["protocols"]["dnp3"]["bugs"] == 0 and stats["protocols"]["dnp3"]["flows"] == 40
    assert not any("dnp3.anomaly" in e for e in events)
