"""The S7comm dissector against Wireshark and Zeek ICSNPP, on real and crafted captures, end to end.

* The differential harness (sensor/differential.py) on every shared S7 capture: every key field of
  every frame agrees with tshark, except the reviewed differences of tests/sensor/differential_known.tsv
  (captures with TCP holes, where icsmon reports data when the peer acknowledges past the hole and
  Wireshark in the frame that carried it; spurious retransmissions Wireshark skips).
* Values, identities, clocks, CPU modes and block counts against the fields tshark decodes.
* A crafted capture (every job family, userdata group and area, several TPKTs in one segment, one
  message over several segments and COTP fragments): the key fields again, frame by frame.
* The CISA ICSNPP Zeek logs of their three S7 test captures: s7comm.log, s7comm_read_szl.log,
  s7comm_upload_download.log, s7comm_known_devices.log, s7comm_plus.log and cotp.log, row by row.
  Wireshark 4.0 has no S7comm-plus dissector, so S7comm-plus is compared with Zeek only.
* ``icsmon read`` end to end, no other protocol's capture claimed, and throughput.
"""

from __future__ import annotations

import json
import math
import struct
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.utils import wrpcap

from sensor.differential import compare_captures, load_known
from sensor.protocols.s7comm import DISSECTOR, S7commSession
from tests.sensor.protocols import test_s7comm as U  # its crafting helpers and tables
from tests.sensor.protocols.crafting import sensor_events

REPO = Path(__file__).resolve().parents[3]
PCAPS = REPO.parent / "shared" / "pcaps"
KNOWN = REPO / "tests" / "sensor" / "differential_known.tsv"
ICSNPP = PCAPS / "icsnpp-s7comm" / "tests"
S7_DIR = PCAPS / "iti" / "pcaps" / "s7"
SHARED = sorted([*(ICSNPP / "traces").glob("*.pcap"), *S7_DIR.glob("*.pcap*"), S7_DIR / "S7Comm" / "s7comm_clean.pcap"])
# (iti/pcaps/s7/S7Comm/wrapup.pcapng, in the same folder, holds C37.118 synchrophasor traffic only.)
# Captures filtered down to their S7 frames: every segment follows a TCP hole (see differential_known.tsv).
WITH_HOLES = {S7_DIR / "step7_s300_download.pcapng", S7_DIR / "step7_s300_AuthPassword.pcapng"}


def tshark_columns(capture: Path, fields: list[str], display: str = "s7comm") -> dict[int, dict[str, list[str]]]:
    cmd = ["tshark", "-r", str(capture), "-n", "-Y", display, "-T", "fields", "-E", "occurrence=a",
           "-E", "aggregator=\x1f", "-E", "separator=\t", "-e", "frame.number"]
    for name in fields:
        cmd += ["-e", name]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    table: dict[int, dict[str, list[str]]] = {}
    for line in out.splitlines():
        cells = line.split("\t")
        table[int(cells[0])] = {name: [v for v in cell.split("\x1f") if v] for name, cell in zip(fields, cells[1:])}
    return table


# -- differential: key fields on the shared captures --------------------------------------------------


def test_the_shared_s7_captures_are_there() -> None:
    assert len(SHARED) == 25 and all(p.is_file() for p in SHARED)


def test_key_fields_agree_with_wireshark_on_the_shared_captures() -> None:
    clean = [p for p in SHARED if p not in WITH_HOLES]
    report = compare_captures(clean, dissectors=[DISSECTOR], known=load_known(KNOWN), root=PCAPS)
    print("\n" + report.markdown())
    assert report.unexplained == []
    assert {a.field for a in report.agreements.values() if a.frames} == set(DISSECTOR.wireshark.fields)  # type: ignore[union-attr]
    frames = {name: a.frames for (_, name), a in report.agreements.items()}
    assert frames["s7comm.rosctr"] > 16000 and frames["s7comm.item.area"] > 7600 and frames["s7comm.szl.id"] > 200
    assert frames["s7comm.userdata.subfunction"] > 1000 and frames["s7comm.pi_service@request"] >= 8
    # The only differences are the 12 spurious retransmissions of s7comm_clean.pcap.
    assert {(d.capture, d.frame) for d in report.differences} == {
        ("iti/pcaps/s7/S7Comm/s7comm_clean.pcap", f) for f in (398, 412, 1273, 1456, 1611, 1746, 2002, 2296, 2299,
                                                                 2859, 3654, 4060)}
    for agreement in report.agreements.values():
        assert agreement.agreed + agreement.known == agreement.frames
        assert agreement.share >= 0.99, agreement


def test_captures_with_tcp_holes_differ_only_by_frame() -> None:
    """Filtered captures: icsmon reports each message one frame late (when the peer's ACK proves the hole
    permanent), Wireshark in its own frame. Every difference is reviewed, and the messages are the same."""
    report = compare_captures(sorted(WITH_HOLES), dissectors=[DISSECTOR], known=load_known(KNOWN), root=PCAPS)
    assert report.differences and report.unexplained == []
    for capture in sorted(WITH_HOLES):
        events, _ = sensor_events(capture, DISSECTOR)
        theirs = tshark_columns(capture, ["s7comm.header.pduref", "s7comm.header.rosctr"])
        ours = [(e["s7comm.pdu_ref"], e["s7comm.rosctr"]) for e in events]
        assert sorted(ours) == sorted((int(c["s7comm.header.pduref"][0]), int(c["s7comm.header.rosctr"][0]))
                                      for c in theirs.values())


# -- values, identity, clocks, modes, block counts against tshark ------------------------------------

TSIZE_FORMAT = {1: "B", 2: "B", 3: "B", 4: "H", 5: "h", 6: "I", 7: "i", 8: "f", 28: "H", 29: "H"}
SIZES = {1: 1, 2: 1, 3: 1, 4: 2, 5: 2, 6: 4, 7: 4, 8: 4, 28: 2, 29: 2}


def expected_values(requests: dict[tuple[int, int], dict[str, Any]], frame: dict[str, list[str]],
                    ev: dict[str, Any]) -> list[float]:
    """Decode tshark's per-item data bytes by the request's transport sizes (independently of icsmon)."""
    out: list[float] = []
    sizes = ev.get("s7comm.item.transport_size") or requests[(ev["s7comm.pdu_ref"], 1)]["s7comm.item.transport_size"]
    chunks = [bytes.fromhex(h.replace(":", "")) for h in frame["s7comm.resp.data"]]
    codes = [int(c, 16) for c in frame["s7comm.data.returncode"]]
    ok = [k for k, c in enumerate(codes) if c in (0x00, 0xFF)]
    for k, raw in zip(ok, chunks):
        tsize = sizes[k]
        fmt = TSIZE_FORMAT[tsize]
        n = len(raw) // SIZES[tsize]
        values = struct.unpack(f">{n}{fmt}", raw[:n * SIZES[tsize]])
        out += [v & 1 for v in values] if tsize == 1 else [v for v in values if not isinstance(v, float)
                                                           or math.isfinite(v)]
    return out


@pytest.mark.parametrize("name", ["iti/pcaps/s7/S7Comm/s7comm_clean.pcap",
                                  "iti/pcaps/s7/s7comm_varservice_libnodavedemo.pcap",
                                  "icsnpp-s7comm/tests/traces/snap7.pcap",
                                  "icsnpp-s7comm/tests/traces/s7comm_plus.pcap"])
def test_values_agree_with_wireshark(name: str) -> None:
    capture = PCAPS / name
    events, _ = sensor_events(capture, DISSECTOR)
    theirs = tshark_columns(capture, ["s7comm.resp.data", "s7comm.data.returncode"],
                            "s7comm.param.func == 0x04 || s7comm.param.func == 0x05")
    requests = {(e["s7comm.pdu_ref"], e["s7comm.rosctr"]): e for e in events if e.get("s7comm.rosctr") == 1}
    compared = Counter[str]()
    for ev in events:
        frame = theirs.get(ev["icsmon.packet"])
        if frame is None or ev.get("s7comm.function_code") not in (4, 5) or not frame["s7comm.resp.data"]:
            continue
        assert ev.get("ics.values", []) == expected_values(requests, frame, ev), ev["icsmon.packet"]
        compared["frames"] += 1
        compared["values"] += len(ev.get("ics.values", ()))
    print(f"\n{name}: {dict(compared)}")
    assert compared["frames"] >= 4 and compared["values"] >= 8


IDENTITY_FIELDS = {"s7comm.szl.001c.0001.name": "automation_system_name", "s7comm.szl.001c.0002.name": "module_name",
                   "s7comm.szl.001c.0003.tag": "plant_id", "s7comm.szl.001c.0005.serialn": "serial_number",
                   "s7comm.szl.001c.0007.cputypname": "module_type_name",
                   "s7comm.szl.001c.0008.snmcmmc": "memory_card_serial"}
MODES = {"stop": 4, "run": 8, "unknown": 0}


@pytest.mark.parametrize("name", ["icsnpp-s7comm/tests/traces/snap7.pcap", "icsnpp-s7comm/tests/traces/s7ident.pcap",
                                  "iti/pcaps/s7/s7comm_reading_plc_status.pcap",
                                  "iti/pcaps/s7/s7comm_reading_setting_plc_time.pcap",
                                  "iti/pcaps/s7/s7comm_program_blocklist_onlineview.pcap"])
def test_identity_clock_mode_and_blocks_agree_with_wireshark(name: str) -> None:
    capture = PCAPS / name
    events, _ = sensor_events(capture, DISSECTOR)
    fields = ["s7comm.szl.xy11.0001.anz", *IDENTITY_FIELDS, "s7comm.data.ts", "s7comm.szl.0424.0000.bzu_id.req",
              "s7comm.blockinfo.blocktype", "s7comm.blockinfo.block_count"]
    theirs = tshark_columns(capture, fields)
    compared = Counter[str]()
    for ev in events:
        frame = theirs.get(ev["icsmon.packet"])
        if frame is None:
            continue
        if frame["s7comm.szl.xy11.0001.anz"] and "s7comm.identity.order_number" in ev:
            assert ev["s7comm.identity.order_number"] in [v.strip() for v in frame["s7comm.szl.xy11.0001.anz"]]
            compared["order_number"] += 1
        for field, ours in IDENTITY_FIELDS.items():
            if frame[field]:
                assert ev[f"s7comm.identity.{ours}"] == frame[field][0].strip(), (field, ev["icsmon.packet"])
                compared[ours] += 1
        if frame["s7comm.data.ts"] and ev.get("event.action") in ("read_clock", "set_clock"):
            whole, fraction = frame["s7comm.data.ts"][0].split(".")
            when = datetime.strptime(" ".join(whole.split()), "%b %d, %Y %H:%M:%S")
            assert ev["s7comm.clock"] == when.strftime("%Y-%m-%dT%H:%M:%S.") + fraction[:3]
            compared["clock"] += 1
        if frame["s7comm.szl.0424.0000.bzu_id.req"]:
            assert MODES[ev["s7comm.cpu_mode"]] == int(frame["s7comm.szl.0424.0000.bzu_id.req"][0], 0)
            compared["mode"] += 1
        if frame["s7comm.blockinfo.block_count"] and ev.get("event.action") == "list_blocks":
            counts = dict(zip(frame["s7comm.blockinfo.blocktype"], map(int, frame["s7comm.blockinfo.block_count"])))
            assert ev["s7comm.block_counts"] == {DISSECTOR_BLOCKS[k]: v for k, v in counts.items()}
            compared["block_counts"] += 1
    print(f"\n{name}: {dict(compared)}")
    assert sum(compared.values()) >= 1


DISSECTOR_BLOCKS = {"08": "OB", "0A": "DB", "0B": "SDB", "0C": "FC", "0D": "SFC", "0E": "FB", "0F": "SFB"}


# -- a crafted capture --------------------------------------------------------------------------------------


def crafted_segments() -> list[tuple[bool, bytes]]:
    """Every family the shared captures lack, on one connection; some TPKTs share a segment, one message
    spans three segments and another three COTP DT fragments."""
    item, s7, dt = U.item, U.s7, U.dt
    out = list(U.conversation()[:-2])
    areas = [item(U.BIT, 1, 0, U.IN, 0, 7), item(U.WORD, 2, 0, U.Q, 2), item(U.DWORD, 1, 0, U.M, 4),
             item(U.INT, 1, 0, U.P, 256), item(U.BYTE, 3, 0, U.L, 0), item(U.REAL, 1, 5, U.DI, 4),
             item(U.BIT, 1, 3, U.DB, 2, 6), item(U.TIMER, 1, 0, U.T, 7), item(U.COUNTER, 1, 0, U.C, 3)]
    data = (U.data_item(0xFF, 3, b"\x01", last=False) + U.data_item(0xFF, 4, b"\x00\x01\x00\x02", last=False)
            + U.data_item(0xFF, 4, b"\x00\x00\x01\x00", last=False) + U.data_item(0xFF, 5, b"\xff\xfe", last=False)
            + U.data_item(0xFF, 4, b"\x01\x02\x03", last=False) + U.data_item(0xFF, 7, struct.pack(">f", -2.5),
                                                                             last=False)
            + U.data_item(0xFF, 3, b"\x00", last=False) + U.data_item(0x0A, 0, b"") + U.data_item(0xFF, 9, b"\x00\x05"))
    variables = struct.pack(">BBHH", 0x01, 2, 0, 0) + struct.pack(">BBHH", 0x12, 1, 0, 4)
    monitored = b"\x00\x02" + U.data_item(0xFF, 9, b"\x01\x02") + U.data_item(0xFF, 9, b"\x00\x07")
    components = [U.component_record(1, "LINE_3"), U.component_record(2, "CPU_A"), U.component_record(5, "S C-X1234")]
    read = s7(U.JOB, 40, U.read_params(*areas))
    answer = s7(U.ACK_DATA, 40, b"\x04\x09", data)
    out += [(True, read[:9]), (True, read[9:30]), (True, read[30:])]  # one TPKT over three segments
    pdu = answer[7:]
    out.append((False, dt(pdu[:10], eot=False) + dt(pdu[10:30], eot=False) + dt(pdu[30:])))  # COTP fragments
    out += [
        (True, s7(U.JOB, 41, U.write_params(item(U.DINT, 1, 2, U.DB, 0), item(U.CHAR, 2, 0, U.M, 9)),
                  U.data_item(0, 6, struct.pack(">i", -77), bits=False, last=False) + U.data_item(0, 9, b"AB"))
         + s7(U.JOB, 42, U.pi_service("_DELE", b"\x02\x00" + b"0800001P" + b"0E00012P"))),
        (False, s7(U.ACK_DATA, 41, b"\x05\x02", b"\xff\x05") + s7(U.ACK_DATA, 42, b"\x28")),
        (True, s7(U.JOB, 43, U.pi_service("P_PROGRAM", b"C "))), (False, s7(U.ACK_DATA, 43, b"\x28")),
        (True, s7(U.JOB, 44, U.pi_service("_GARB"))), (False, s7(U.ACK_DATA, 44, b"\x28")),
        (True, s7(U.JOB, 45, U.block_control(0x1A, "_0A00007P", reserved=b"\x01\x00", extra=b"\x0d1000216000088"))),
        (False, s7(U.ACK_DATA, 45, b"\x1a")),
        (False, s7(U.JOB, 0x6501, U.block_control(0x1B, "_0A00007P"))),
        (True, s7(U.ACK_DATA, 0x6501, b"\x1b\x00", struct.pack(">HH", 6, 0xFB) + bytes(6))),
        (False, s7(U.JOB, 0x6502, U.block_control(0x1C, "_0A00007P"))), (True, s7(U.ACK_DATA, 0x6502, b"\x1c")),
        (True, s7(U.JOB, 46, U.pi_service("_INSE", b"\x01\x00" + b"0A00007P"))), (False, s7(U.ACK_DATA, 46, b"\x28")),
        (True, s7(U.USERDATA, 47, U.ud_params(4, 3, 1), U.NO_DATA)),
        (False, s7(U.USERDATA, 47, U.ud_params(8, 3, 1, seq=4, last=0),
                   U.ud_data(b"08\x00\x01" + b"0A\x00\x02" + b"0C\x00\x05"))),
        (True, s7(U.USERDATA, 48, U.ud_params(4, 3, 2), U.ud_data(b"0A"))),
        (True, s7(U.USERDATA, 49, U.ud_params(4, 7, 2), U.ud_data(b"\x00\x19" + U.s7_time(2025, 6, 30, 8, 0, 1, 5)))),
        (False, s7(U.USERDATA, 49, U.ud_params(8, 7, 2, seq=5, last=0), U.NO_DATA)),
        (True, s7(U.USERDATA, 50, U.ud_params(4, 5, 1), U.ud_data(bytes(8)))),
        (False, s7(U.USERDATA, 50, U.ud_params(8, 5, 1, seq=6, last=0, error=0xD602), U.NO_DATA)),
        (True, s7(U.USERDATA, 51, U.ud_params(4, 1, 2, last=0), U.tis(bytes(20), b"\x00\x02" + variables))),
        (False, s7(U.USERDATA, 0, U.ud_params(0, 1, 2, seq=7, last=0), U.tis(b"\x01\x00\x00\x02", monitored))),
        (True, s7(U.USERDATA, 52, U.ud_params(4, 4, 1), U.szl_request(0x001C, 0))),
        (False, s7(U.USERDATA, 52, U.ud_params(8, 4, 1, seq=8, last=0),
                   U.ud_data(U.szl_answer(0x001C, 0, 34, components)))),
        (True, s7(U.JOB, 53, U.plc_stop())), (False, s7(U.ACK_DATA, 53, b"\x29")),
        (True, U.cotp_dr()), (False, U.cotp_dc()),
    ]
    return out


@pytest.fixture(scope="module")
def crafted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The crafted segments on one TCP connection (handshake, correct sequence and acknowledgement numbers)."""
    path = tmp_path_factory.mktemp("s7comm") / "crafted.pcap"
    client, server = ("10.0.0.1", 49200), ("10.0.0.2", 102)
    seq = {True: 1000, False: 5000}
    packets = []

    def segment(to_server: bool, flags: str, payload: bytes = b"") -> None:
        src, dst = (client, server) if to_server else (server, client)
        packets.append(Ether() / IP(src=src[0], dst=dst[0]) / TCP(sport=src[1], dport=dst[1], flags=flags,
                                                                  seq=seq[to_server], ack=seq[not to_server])
                       / payload)
        seq[to_server] += len(payload) + (1 if "S" in flags or "F" in flags else 0)

    segment(True, "S")
    segment(False, "SA")
    segment(True, "A")
    for to_server, raw in crafted_segments():
        segment(to_server, "PA", raw)
    segment(True, "FA")
    segment(False, "FA")
    segment(True, "A")
    for k, packet in enumerate(packets):
        packet.time = 1_700_000_000 + k * 0.001
    wrpcap(str(path), packets)
    return path


def test_crafted_capture_events(crafted: Path) -> None:
    events, stats = sensor_events(crafted, DISSECTOR)
    counters = stats["protocols"]["s7comm"]
    assert counters["bugs"] == 0 and counters["violations"] == 0 and counters["sessions"]["anomalies"] == 0
    actions = Counter(e["event.action"] for e in events)
    assert actions["plc_control"] == 8 and actions["download_block"] == 2 and actions["variable_status"] == 2
    assert actions["read_var"] == 4 and actions["cotp_disconnect_confirm"] == 1
    read = [e for e in events if e["event.action"] == "read_var" and e["ics.role"] == "response"][-1]
    assert read["s7comm.cotp.fragments"] == 3 and read["ics.values"] == [1, 1, 2, 256, -2, 1, 2, 3, -2.5, 0, 5]
    assert read["ics.tag"] == ("I0.7", "QW2", "MD4", "PW256", "LB0", "DI5.DID4", "DB3.DBX2.6", "T7", "C3")
    assert read["ics.status"] == "object_does_not_exist"
    ops = Counter(e["ics.operation"] for e in events if e["ics.role"] == "request")
    assert ops["program_delete"] == 1 and ops["control_run"] == 1 and ops["control_stop"] == 2
    assert ops["program_download"] == 4 and ops["auth"] == 1 and ops["time_sync"] == 1 and ops["identity"] == 2
    identity = [e for e in events if "s7comm.identity.module_name" in e]
    assert identity[0]["s7comm.identity.automation_system_name"] == "LINE_3"
    assert identity[0]["s7comm.identity.serial_number"] == "S C-X1234"
    assert all(e["ics.unit"] == "0/2" for e in events)


def test_key_fields_agree_with_wireshark_on_the_crafted_capture(crafted: Path) -> None:
    report = compare_captures([crafted], dissectors=[DISSECTOR])
    print("\n" + report.markdown())
    assert report.differences == []
    seen = {name for (_, name), a in report.agreements.items() if a.frames}
    assert seen >= set(DISSECTOR.wireshark.fields) - {"s7comm.mode_code"}  # type: ignore[union-attr]


# -- Zeek ICSNPP ------------------------------------------------------------------------------------------


def zeek_log(name: str, log: str) -> list[dict[str, str]]:
    fields: list[str] = []
    rows = []
    for line in (ICSNPP / "baseline" / f"analyzer.{name}" / log).read_text().splitlines():
        if line.startswith("#fields"):
            fields = line.split("\t")[1:]
        elif line and not line.startswith("#"):
            rows.append(dict(zip(fields, line.split("\t"))))
    return rows


def swapped(ref: int) -> int:
    """ICSNPP logs the S7 PDU reference with its two octets swapped (read little-endian)."""
    return (ref & 0xFF) << 8 | ref >> 8


def is_orig(ev: dict[str, Any]) -> bool:
    return ev["network.direction"] == "to_server"


@pytest.mark.parametrize("name", ["snap7", "s7ident", "s7comm_plus"])
def test_s7comm_log_rows_match_in_order(name: str) -> None:
    """Every s7comm.log row is one of our S7comm events, in order. Ours that Zeek does not log: ROSCTR 2
    acks (an error answer without data) and the fragmented part of a userdata answer (a fragment with
    more to follow and the follow-up request that asks for the rest)."""
    events, _ = sensor_events(ICSNPP / "traces" / f"{name}.pcap", DISSECTOR)
    ours = [e for e in events if e.get("s7comm.protocol") == "s7comm"]
    rows = zeek_log(name, "s7comm.log")

    def ours_key(e: dict[str, Any]) -> tuple[Any, ...]:
        if e["s7comm.rosctr"] == 7:
            code = e["s7comm.userdata.type"] << 4 | e["s7comm.userdata.group"]
            error = e.get("s7comm.error")
        else:
            code = e.get("s7comm.function_code")
            error = e.get("s7comm.error_code") if e["s7comm.rosctr"] == 3 else None
        return (is_orig(e), e["s7comm.rosctr"], swapped(e["s7comm.pdu_ref"]), code,
                e.get("s7comm.userdata.subfunction"), error)

    def zeek_key(r: dict[str, str]) -> tuple[Any, ...]:
        sub = int(r["subfunction_code"], 16) if r["subfunction_code"].startswith("0x") else None
        error = int(r["error_code"], 16) if r["error_code"] != "-" else None
        return (r["is_orig"] == "T", int(r["rosctr_code"]), int(r["pdu_reference"]), int(r["function_code"], 16), sub,
                error)

    want = [zeek_key(r) for r in rows]
    k = 0
    skipped = []
    for ev in ours:
        if k < len(want) and ours_key(ev) == want[k]:
            k += 1
        else:
            skipped.append(ev)
    assert k == len(want) == len(rows)
    for ev in skipped:
        assert ev["s7comm.rosctr"] == 2 or ev.get("s7comm.userdata.last_data_unit") == 1 or (
            ev["s7comm.rosctr"] == 7 and ev.get("s7comm.data.return_code") == (0x0A,)), ev
    assert len(skipped) == {"snap7": 3, "s7ident": 4, "s7comm_plus": 0}[name]


def test_read_szl_log() -> None:
    """s7comm_read_szl.log: the SZL id, index and data return code of every request and answer; Zeek skips
    the answer reassembled from two fragments (SZL 0x001C), icsmon reports it with the last fragment."""
    events, _ = sensor_events(ICSNPP / "traces" / "snap7.pcap", DISSECTOR)
    ours = [(is_orig(e), swapped(e["s7comm.pdu_ref"]), "Request" if e["ics.role"] == "request" else "Response",
             e["s7comm.szl.id"], e["s7comm.szl.index"], e["s7comm.data.return_code"][0])
            for e in events if e["event.action"] == "read_szl" and "s7comm.szl.id" in e]
    theirs = [(r["is_orig"] == "T", int(r["pdu_reference"]), r["method"], int(r["szl_id"], 16), int(r["szl_index"], 16),
               int(r["return_code"], 16)) for r in zeek_log("snap7", "s7comm_read_szl.log")]
    assert [row for row in ours if row not in theirs] == [(False, 3, "Response", 0x001C, 0, 0xFF)]
    assert [row for row in ours if row in theirs] == theirs


BLOCK_NAMES = {"System Data Block": "SDB", "Organization Block": "OB", "Data Block": "DB", "Function": "FC",
               "Function Block": "FB"}


def test_upload_download_log() -> None:
    events, _ = sensor_events(ICSNPP / "traces" / "snap7.pcap", DISSECTOR)
    ours = [e for e in events
            if e["event.action"] in ("start_upload", "upload", "end_upload") and e["s7comm.rosctr"] != 2]
    rows = zeek_log("snap7", "s7comm_upload_download.log")
    assert len(ours) == len(rows) == 25
    for ev, row in zip(ours, rows):
        assert row["function_name"].lower().replace(" ", "_") == ev["event.action"]
        assert int(row["pdu_reference"]) == swapped(ev["s7comm.pdu_ref"]) and (row["is_orig"] == "T") == is_orig(ev)
        status = ev.get("s7comm.function_status")
        assert row["function_status"] == ("-" if status is None else f"0x{status:02x}")
        assert row["session_id"] == str(ev.get("s7comm.upload_id", "-"))
        length = ev.get("s7comm.block_length") or (ev.get("s7comm.data.length") or ("-",))[0]
        assert row["blocklength"] == str(length)
        if ev["ics.role"] == "request" and row["filename"] != "-":
            assert row["filename"] == ev["s7comm.filename"] and int(row["block_number"]) == ev["s7comm.block_number"]
            assert BLOCK_NAMES[row["block_type"]] == ev["s7comm.block_type"]
            assert row["destination_filesystem"].lower() == ev["s7comm.filesystem"]


def test_known_devices_log() -> None:
    events, _ = sensor_events(ICSNPP / "traces" / "s7ident.pcap", DISSECTOR)
    [row] = zeek_log("s7ident", "s7comm_known_devices.log")
    [identity] = [e for e in events if "s7comm.identity.module_name" in e]
    assert identity["s7comm.identity.automation_system_name"] == row["automation_system_name"] == "SNAP7-SERVER"
    assert identity["s7comm.identity.module_name"] == row["module_name"] == "CPU 315-2 PN/DP"
    assert identity["s7comm.identity.plant_id"] == "" and row["plant_name"] == "(empty)"
    assert identity["s7comm.identity.serial_number"] == row["module_serial"] == "S C-C2UR28922012"
    assert identity["ics.operation"] == "identity"


def test_s7comm_plus_log() -> None:
    """Every S7comm-plus message: direction, protocol version, opcode and function, all 121 in order."""
    events, _ = sensor_events(ICSNPP / "traces" / "s7comm_plus.pcap", DISSECTOR)
    ours = [(is_orig(e), e["s7comm.plus.version"], e["s7comm.plus.opcode"], e.get("s7comm.plus.function_code"))
            for e in events if e.get("s7comm.protocol") == "s7comm-plus"]
    theirs = [(r["is_orig"] == "T", int(r["version"]), int(r["opcode"], 16),
               int(r["function_code"], 16) if r["function_code"] != "-" else None)
              for r in zeek_log("s7comm_plus", "s7comm_plus.log")]
    assert ours == theirs and len(ours) == 121
    names = Counter(e["event.action"] for e in events if e.get("s7comm.protocol") == "s7comm-plus")
    assert names == {"notification": 79, "set_variable": 26, "get_multi_variables": 12, "set_multi_variables": 4}


@pytest.mark.parametrize("name", ["snap7", "s7ident", "s7comm_plus"])
def test_cotp_log(name: str) -> None:
    """cotp.log: the connection request/confirm of each flow, and one DT row per S7 message (none of these
    captures fragments a message over several DT TPDUs)."""
    events, _ = sensor_events(ICSNPP / "traces" / f"{name}.pcap", DISSECTOR)
    rows = zeek_log(name, "cotp.log")
    theirs = Counter((int(r["id.orig_p"]), r["is_orig"] == "T", int(r["pdu_code"], 16)) for r in rows)
    ours = Counter((e["source.port"], is_orig(e), e["s7comm.cotp.pdu_type"] if e["s7comm.protocol"] == "cotp" else 0xF)
                   for e in events if "s7comm.cotp.fragments" not in e)
    assert ours == theirs


# -- end to end --------------------------------------------------------------------------------------


def test_icsmon_read_end_to_end() -> None:
    capture = ICSNPP / "traces" / "snap7.pcap"
    result = subprocess.run([sys.executable, "-m", "api.cli", "read", str(capture), "--events", "-", "-q",
                             "--no-progress"], capture_output=True, text=True, check=True, cwd=REPO, timeout=120)
    events = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    ours = [e for e in events if e["event.dataset"] == "icsmon.s7comm"]
    assert len(ours) == 64
    for e in ours:
        assert e["network.protocol"] == "s7comm" and e["destination.port"] == 102
        assert e["ics.operation"] in DISSECTOR.operations.values() and e["ics.role"] in ("request", "response")
        assert isinstance(e["icsmon.packet"], int)
    ops = Counter(e["ics.operation"] for e in ours if e["ics.role"] == "request")
    assert ops == {"identity": 4, "diagnostic": 5, "program_upload": 13, "write": 2, "read": 2, "control_stop": 1,
                   "config_change": 2, "control_run": 1, "session": 1, "time_sync": 1}
    writes = [e for e in ours if e["event.action"] == "write_var" and e["ics.role"] == "request"]
    assert writes[0]["ics.tag"] == ["MD16"] and len(writes[0]["ics.values"]) == 1
    assert writes[1]["ics.tag"] == ["MW0", "IB0", "QB0", "T0", "C0"] and len(writes[1]["ics.values"]) == 64


def test_no_other_shared_capture_is_taken_for_s7comm() -> None:
    """Content detection claims S7 flows only. IEC 61850 MMS runs on port 102 too and stays unclaimed."""
    s7_elsewhere = {PCAPS / "iti/pcaps/bro/modbus/modbusBig.pcap",  # S7comm-plus between 10.235.149.x on port 102
                    PCAPS / "iti/pcaps/profinet/Profinet_Failed.pcap"}  # a COTP connection to TSAP 0x0202 (OP, slot 2)
    others = sorted(p for p in PCAPS.rglob("*") if p.suffix in (".pcap", ".pcapng") and p.is_file()
                    and p not in SHARED and p not in s7_elsewhere)
    assert len(others) > 150 and any("IEC61850" in str(p) for p in others)
    for capture in others:
        events, stats = sensor_events(capture, DISSECTOR)
        assert events == [] and not stats["protocols"]["s7comm"]["flows"], capture
    plus, stats = sensor_events(PCAPS / "iti/pcaps/bro/modbus/modbusBig.pcap", DISSECTOR)
    assert {e["s7comm.protocol"] for e in plus} == {"s7comm-plus"} and stats["protocols"]["s7comm"]["bugs"] == 0
    failed, _ = sensor_events(PCAPS / "iti/pcaps/profinet/Profinet_Failed.pcap", DISSECTOR)
    assert [e["event.action"] for e in failed] == ["cotp_connection_request", "cotp_connection_confirm",
                                                   "cotp_connection_request"]
    assert failed[0]["ics.unit"] == "0/2" and failed[0]["s7comm.connection_type"] == "op"


def test_every_shared_s7_capture_without_bugs() -> None:
    for capture in SHARED:
        events, stats = sensor_events(capture, DISSECTOR)
        counters = stats["protocols"]["s7comm"]
        assert counters["bugs"] == 0 and counters["violations"] == 0 and events, capture
        assert all(e["ics.operation"] in DISSECTOR.operations.values() for e in events)


# -- throughput -------------------------------------------------------------------------------------------


def polling_stream(polls: int) -> list[tuple[bool, bytes]]:
    """An HMI polling a PLC: a four-item read every cycle, a write now and then, an SZL read rarely."""
    item, s7 = U.item, U.s7
    read = U.read_params(item(U.WORD, 1, 1, U.DB, 0), item(U.REAL, 1, 1, U.DB, 4), item(U.BIT, 1, 0, U.M, 10),
                         item(U.WORD, 1, 1, U.DB, 8))
    out: list[tuple[bool, bytes]] = list(U.conversation()[:4])
    for k in range(polls):
        ref = (k % 60000) + 100
        if k % 50 == 49:
            out.append((True, s7(U.JOB, ref, U.write_params(item(U.WORD, 1, 1, U.DB, 8)),
                                 U.data_item(0, 4, struct.pack(">H", k & 0x7FFF)))))
            out.append((False, s7(U.ACK_DATA, ref, b"\x05\x01", b"\xff")))
            continue
        data = (U.data_item(0xFF, 4, struct.pack(">H", k & 0xFFFF), last=False)
                + U.data_item(0xFF, 7, struct.pack(">f", k * 0.5), last=False)
                + U.data_item(0xFF, 3, bytes((k & 1,)), last=False) + U.data_item(0xFF, 4, b"\x02\xbc"))
        out.append((True, s7(U.JOB, ref, read)))
        out.append((False, s7(U.ACK_DATA, ref, b"\x04\x04", data)))
    return out


def test_session_throughput() -> None:
    """Messages/s of one session fed one TPKT at a time (CPU time), printed: a figure, not a floor."""
    stream = polling_stream(20_000)
    best = 0.0
    for _ in range(3):
        session = S7commSession()
        started = time.process_time()
        count = 0
        for ts, (to_server, raw) in enumerate(stream):
            count += len(session.feed(raw, to_server, float(ts)))
        best = max(best, count / (time.process_time() - started))
    print(f"\ns7comm session: {best:,.0f} PDUs/s")
    assert count == len(stream) and session.stats["anomalies"] == 0
    assert math.isfinite(best)


def test_pipeline_throughput(tmp_path: Path) -> None:
    """Packets/s of the whole pipeline on a capture of many polling connections."""
    records: list[Any] = []
    for client in range(20):
        seq = {True: 1, False: 1}
        for k, (to_server, raw) in enumerate(polling_stream(400)):
            src, dst = (f"10.1.0.{client + 1}", 40000 + client), ("10.2.0.1", 102)
            if not to_server:
                src, dst = dst, src
            packet = Ether() / IP(src=src[0], dst=dst[0]) / TCP(sport=src[1], dport=dst[1], flags="PA",
                                                               seq=seq[to_server], ack=seq[not to_server]) / raw
            packet.time = 1_700_000_000 + k * 0.01 + client * 0.0001
            seq[to_server] += len(raw)
            records.append(packet)
    records.sort(key=lambda p: float(p.time))
    capture = tmp_path / "polling.pcap"
    wrpcap(str(capture), records)
    best = 0.0
    for _ in range(2):
        started = time.process_time()
        events, stats = sensor_events(capture, DISSECTOR)
        best = max(best, len(records) / (time.process_time() - started))
    print(f"\npipeline: {best:,.0f} packets/s on {len(records):,} packets, {len(events):,} s7comm events")
    assert stats["protocols"]["s7comm"]["bugs"] == 0 and stats["protocols"]["s7comm"]["flows"] == 20
    assert not any("s7comm.anomaly" in e for e in events)
    assert math.isfinite(best)
