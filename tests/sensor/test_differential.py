"""icsmon against Wireshark, key field by key field, on every shared capture.

The big test runs the differential harness (sensor/differential.py) over all of
``../shared/pcaps`` for every protocol that declares its Wireshark fields, writes
the report to ``build/reports/differential.md`` and requires >= 99% agreement per
protocol and field, with every remaining difference on the reviewed list
``tests/sensor/differential_known.tsv`` (each line says why). Reproduce it on
any capture with ``icsmon diff CAPTURE... --known tests/sensor/differential_known.tsv``.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from sensor.differential import (
    Difference,
    DifferentialError,
    KnownDifference,
    compare_captures,
    load_known,
    normalise,
)
from sensor.dissect import WiresharkFields
from sensor.protocols import registry
from sensor.protocols.modbus import DISSECTOR as MODBUS

REPO = Path(__file__).resolve().parents[2]
PCAPS = REPO.parent / "shared" / "pcaps"
KNOWN = REPO / "tests" / "sensor" / "differential_known.tsv"
REPORT = REPO / "build" / "reports" / "differential.md"
TARGET = 0.99
MODBUS_TEST = PCAPS / "iti/pcaps/ModbusTCP/Modbus/modbus_test.pcap"
MODBUS_P5020 = PCAPS / "suricata-verify/tests/modbus/modbus.pcap"


def shared_captures() -> list[Path]:
    return sorted(p for p in PCAPS.rglob("*") if p.suffix in (".pcap", ".pcapng") and p.is_file())


# -- the harness itself ------------------------------------------------------------------------------

@pytest.mark.parametrize(("raw", "expected"), [
    ("0x1f", 31), ("31", 31), (31, 31), (True, 1), ("False", 0), ("1.50", 1.5), (2.0, 2),
    (" DB1.DBX0.0 ", "DB1.DBX0.0"), ("0.1234567", 0.1235),
])
def test_values_from_both_sides_normalise_alike(raw: object, expected: object) -> None:
    assert normalise(raw) == expected


def test_known_list_lines_need_a_reason(tmp_path: Path) -> None:
    bad = tmp_path / "known.tsv"
    bad.write_text("# comment\n*\tmodbus\t*\tmodbus.unit_id\twhy\nx.pcap\tmodbus\t3\tmodbus.unit_id\t\n")
    with pytest.raises(DifferentialError, match=r"known.tsv:3: expected 5 tab-separated columns"):
        load_known(bad)


def test_known_entries_match_by_glob_and_frame() -> None:
    diff = Difference("iti/pcaps/a.pcap", "modbus", 7, "modbus.unit_id", "mbtcp.unit_id", (1,), (2,))
    assert KnownDifference("iti/*", "modbus", "7", "modbus.*", "r").covers(diff)
    assert KnownDifference("*", "*", "*", "*", "r").covers(diff)
    assert not KnownDifference("iti/*", "modbus", "8", "modbus.*", "r").covers(diff)
    assert not KnownDifference("bro/*", "modbus", "*", "*", "r").covers(diff)
    assert not KnownDifference("*", "dnp3", "*", "*", "r").covers(diff)


def modbus_with(fields: dict[str, str], decode_as: str = "mbtcp") -> list:
    return [dataclasses.replace(MODBUS, wireshark=WiresharkFields("mbtcp", fields, decode_as))]


def test_agreement_is_counted_per_frame_and_field() -> None:
    report = compare_captures([MODBUS_TEST], dissectors=modbus_with({"modbus.function_code": "modbus.func_code"}))
    agreement = report.agreements[("modbus", "modbus.function_code")]
    # 2257 frames, every one a Modbus/TCP frame with at least one PDU.
    assert agreement.frames == 2257 and agreement.agreed == 2257 and report.differences == []


def test_a_wrong_mapping_shows_up_as_differences_with_both_sides() -> None:
    report = compare_captures([MODBUS_TEST], dissectors=modbus_with({"modbus.unit_id": "mbtcp.trans_id"}))
    agreement = report.agreements[("modbus", "modbus.unit_id")]
    assert agreement.share < 0.5
    first = report.differences[0]
    assert first.ours != first.theirs and first.reason == ""
    assert "icsmon [" in first.describe() and "mbtcp.trans_id [" in first.describe()


def test_role_suffix_compares_one_side_of_the_exchange_only() -> None:
    both = compare_captures([MODBUS_TEST], dissectors=modbus_with({"modbus.address": "modbus.reference_num"}))
    requests = compare_captures([MODBUS_TEST],
                                dissectors=modbus_with({"modbus.address@request": "modbus.reference_num"}))
    # Wireshark shows the address on requests only; icsmon copies it onto paired read responses.
    assert requests.agreements[("modbus", "modbus.address@request")].share > \
        both.agreements[("modbus", "modbus.address")].share


def test_known_differences_are_marked_not_hidden() -> None:
    known = [KnownDifference("*", "modbus", "*", "modbus.unit_id", "deliberately wrong mapping")]
    report = compare_captures([MODBUS_TEST], dissectors=modbus_with({"modbus.unit_id": "mbtcp.trans_id"}),
                              known=known)
    assert report.differences and report.unexplained == []
    assert report.agreements[("modbus", "modbus.unit_id")].known == len(report.differences)
    assert "deliberately wrong mapping" in report.markdown()


def test_non_standard_ports_are_decoded_as_the_protocol_by_tshark_too() -> None:
    # Suricata's Modbus test capture runs Modbus/TCP on port 502 and others; tshark finds only what -d tells it.
    fields = {"modbus.function_code": "modbus.func_code"}
    with_decode = compare_captures([MODBUS_P5020], dissectors=modbus_with(fields))
    without = compare_captures([MODBUS_P5020], dissectors=modbus_with(fields, decode_as=""))
    assert with_decode.agreements[("modbus", "modbus.function_code")].share >= \
        without.agreements[("modbus", "modbus.function_code")].share


def test_unknown_tshark_field_is_a_clear_error() -> None:
    with pytest.raises(DifferentialError, match=r"tshark on .*modbus_test.pcap: .*no\.such\.field"):
        compare_captures([MODBUS_TEST], dissectors=modbus_with({"modbus.unit_id": "no.such.field"}))


def test_command_line_exit_codes(tmp_path: Path) -> None:
    def icsmon(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "api.cli", "diff", *args], cwd=REPO, capture_output=True,
                              text=True, timeout=300)

    missing = icsmon(str(tmp_path / "nope.pcap"))
    assert missing.returncode == 2 and missing.stderr.strip().count("\n") == 0
    assert "nope.pcap: no such capture file" in missing.stderr
    unknown = icsmon(str(MODBUS_TEST), "--protocol", "nosuch")
    assert unknown.returncode == 2 and "no Wireshark mapping for protocol 'nosuch'" in unknown.stderr
    report = tmp_path / "r.md"
    ok = icsmon(str(MODBUS_TEST), "--protocol", "modbus", "--known", str(KNOWN), "--report", str(report))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert report.read_text() == ok.stdout and "| modbus |" in ok.stdout


# -- every shared capture --------------------------------------------------------------------------------

def test_every_protocol_declares_its_wireshark_fields() -> None:
    assert {name for name, d in registry().items() if d.wireshark is None} == set()


def test_shared_captures_agree_with_wireshark() -> None:
    report = compare_captures(shared_captures(), known=load_known(KNOWN), root=PCAPS)
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(report.markdown(TARGET))
    compared = {protocol for (protocol, _), a in report.agreements.items() if a.frames}
    assert compared == {name for name, d in registry().items() if d.wireshark}, "a protocol was never seen"
    below = [f"{a.protocol} {a.field} {100 * a.share:.2f}%" for a in report.below(TARGET)]
    assert not below, f"below {TARGET:.0%}: {below}; see {REPORT}"
    unexplained = [d.describe() for d in report.unexplained[:20]]
    assert not unexplained, f"{len(report.unexplained)} unexplained differences, first: {unexplained}; see {REPORT}"
