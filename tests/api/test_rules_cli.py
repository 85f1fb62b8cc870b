"""``icsmon rules`` run as an analyst runs it: ``python -m api.rules_cli`` in a subprocess."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from analyzer.detection_report import shared_root

REPO = Path(__file__).resolve().parents[2]
PACK = REPO / "rules"
PCAPS = shared_root()


def rules(*args: str, cwd: Path | None = None, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "api.rules_cli", *args], capture_output=True, text=True,
                          cwd=cwd or REPO, timeout=300, input=stdin)


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("icsmon: error: "), result.stderr
    return lines[0]


@pytest.mark.parametrize("command", [[], ["lint"], ["test"], ["convert"], ["new"]])
def test_help(command: list[str]) -> None:
    result = rules(*command, "--help")
    assert result.returncode == 0
    assert "Usage: icsmon rules" in result.stdout


# -- lint ------------------------------------------------------------------------------------------------------

def test_lint_the_pack() -> None:
    result = rules("lint")
    assert result.returncode == 0, result.stdout
    assert result.stdout == ""
    assert "rule files checked, no problems" in result.stderr


BROKEN = """\
title: Broken rule
id: 11111111-2222-4333-8444-555555555555
name: broken
status: beta
description: A rule with a problem on nearly every line.
author: me
date: 2026-12-05
tags:
  - attack.t0855
  - attack.t1059
logsource:
  product: icsmon
  service: modbus
detection:
  selection:
    modbus.functon: write_single_register
  unused:
    ics.role: request
  condition: selection
fields:
  - source.ip
  - nope.field
level: high
"""


def test_lint_reports_each_problem_with_file_and_line(tmp_path: Path) -> None:
    folder = tmp_path / "modbus"
    folder.mkdir()
    (folder / "broken_rule.yml").write_text(BROKEN)
    result = rules("lint", str(tmp_path))
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    where = f"{folder / 'broken_rule.yml'}:"
    assert all(line.startswith(where) for line in lines), lines
    by_line = {(int(line[len(where):].split(":", 1)[0]), line.split("] ", 1)[0].split("[", 1)[1]) for line in lines}
    assert (3, "metadata") in by_line  # name is not the file name
    assert (4, "sigma") in by_line  # status: beta is no Sigma status
    assert (1, "fixtures") in by_line  # no broken_rule.fixtures.json
    assert "1 problem" not in result.stderr and "problems in 1 file" in result.stderr
    # Fix the status so that pySigma's validators see the rule, and they report too.
    (folder / "broken_rule.yml").write_text(BROKEN.replace("status: beta", "status: test"))
    lines = rules("lint", str(tmp_path)).stdout.splitlines()
    text = "\n".join(lines)
    assert f"{where}9: [attack] T0855 (Unauthorized Command Message) belongs to attack.impair-process-control" in text
    assert f"{where}10: [pysigma:InvalidIcsAttackTagIssue]" in text  # attack.t1059: an Enterprise technique
    assert f"{where}16: [pysigma:UnknownIcsmonFieldIssue]" in text  # modbus.functon
    assert f"{where}17: [pysigma:DanglingDetectionIssue]" in text  # unused
    assert f"{where}22: [field] nope.field is not an icsmon event or alert field" in text
    assert len(lines) == len(set(lines))


def test_lint_a_broken_yaml_file(tmp_path: Path) -> None:
    (tmp_path / "bad.yml").write_text("title: x\ndetection: [unclosed\n")
    result = rules("lint", str(tmp_path))
    assert result.returncode == 1
    assert result.stdout.startswith(f"{tmp_path / 'bad.yml'}:3: [yaml] ")


# -- test ------------------------------------------------------------------------------------------------------

def test_test_a_rule_on_a_capture() -> None:
    capture = PCAPS / "iti/pcaps/dnp3/cold_restart_and_response.pcap"
    result = rules("test", "dnp3_restart", "--pcap", str(capture))
    assert result.returncode == 0, result.stderr
    out = result.stdout.splitlines()
    assert out[0].startswith("match ") and " high DNP3 cold or warm restart: source.ip=" in out[0]
    assert "dnp3.function=cold_restart" in out[0]
    assert out[1] == "1 match in 4 events looked at"
    assert out[2].startswith("positive fixture (") and ": ok, 2 matches in 8 events, expected 2 matches" in out[2]
    assert out[3].startswith("negative fixture (") and ": ok, 0 matches" in out[3]


def test_test_a_correlation_on_events(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    base = {"event.dataset": "icsmon.bacnet", "network.protocol": "bacnet", "source.ip": "10.10.9.66",
            "destination.ip": "10.10.255.255", "ics.role": "request", "ics.function": "who_is",
            "bacnet.service": "who_is"}
    events.write_text("".join(json.dumps({**base, "@timestamp": 1767600000.0 + n}) + "\n" for n in range(25)))
    result = rules("test", str(PACK / "bacnet" / "bacnet_who_is_flood.yml"), "--events", str(events),
                   "--no-fixtures")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "match 2026-01-05T08:00:19.000Z medium BACnet Who-Is flood: source.ip=10.10.9.66 destination.ip=10.10.255.255"
        " (+9 related events)",
        "1 match in 25 events looked at",
    ]
    piped = rules("test", "bacnet_who_is_flood", "--events", "-", "--no-fixtures", stdin=events.read_text())
    assert piped.stdout == result.stdout


def test_test_exits_1_when_a_fixture_does_not_behave(tmp_path: Path) -> None:
    folder = tmp_path / "dnp3"
    folder.mkdir()
    shutil.copy(PACK / "dnp3" / "dnp3_restart.yml", folder)
    fixtures = json.loads((PACK / "dnp3" / "dnp3_restart.fixtures.json").read_text())
    fixtures["negative"]["sources"] = ["shared:iti/pcaps/dnp3/warm_restart_and_response.pcap"]
    (folder / "dnp3_restart.fixtures.json").write_text(json.dumps(fixtures))
    result = rules("test", str(folder / "dnp3_restart.yml"))
    assert result.returncode == 1
    assert "positive fixture" in result.stdout and ": ok," in result.stdout
    assert "negative fixture (shared:iti/pcaps/dnp3/warm_restart_and_response.pcap): FAILED, 1 match in 4 events," \
           " expected no match" in result.stdout


def test_test_bad_input() -> None:
    result = rules("test", "no_such_rule")
    assert result.returncode == 2
    assert "no_such_rule: no such rule file" in one_error_line(result)
    result = rules("test", "dnp3_restart", "--pcap", str(REPO / "README.md"), "--no-fixtures")
    assert result.returncode == 2
    one_error_line(result)
    result = rules("test", "dnp3_restart", "--events", str(REPO / "pyproject.toml"), "--no-fixtures")
    assert result.returncode == 2
    assert "pyproject.toml:1: not JSON" in one_error_line(result)


def test_test_a_rule_that_does_not_load(tmp_path: Path) -> None:
    rule = tmp_path / "x.yml"
    rule.write_text(BROKEN.replace("status: beta", "status: test").replace("product: icsmon", "product: windows"))
    result = rules("test", str(rule))
    assert result.returncode == 2
    assert "logsource product 'windows' is not icsmon's" in one_error_line(result)


# -- convert ---------------------------------------------------------------------------------------------------

def test_convert_to_esql_by_default() -> None:
    result = rules("convert", "ics_unauthorized_write")
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        'from icsmon-events-* metadata _id, _index, _version | where ics.operation=="write" and ics.role=="request"'
        ' and not network.protocol=="iec104" and not (source.ip in ("10.10.1.10", "10.10.1.30", "10.10.3.10",'
        ' "10.10.4.10") or source.ip=="10.10.1.20")\n')
    assert result.stderr == ""  # exact: no approximation


def test_convert_with_other_placeholders_and_targets(tmp_path: Path) -> None:
    site = tmp_path / "site.yml"
    site.write_text("engineering_workstations: [192.0.2.7]\ncontrol_stations: []\nscada_masters: []\n"
                    "time_sources: []\n")
    result = rules("convert", "modbus_umas_unexpected_host", "--target", "lucene", "--placeholders", str(site))
    assert result.returncode == 0, result.stderr
    assert result.stdout == ("network.protocol:modbus AND ((modbus.function_code:90 AND ics.role:request) AND"
                             " (NOT source.ip:192.0.2.7))\n")
    eql = rules("convert", "dnp3_restart", "--target", "eql")
    assert eql.returncode == 0 and eql.stdout.startswith("any where network.protocol:\"dnp3\"")


def test_convert_labels_approximate_conversions() -> None:
    result = rules("convert", "modbus_unit_id_sweep")
    assert result.returncode == 0
    assert "| stats value_count=count_distinct(ics.unit) by timebucket, source.ip, destination.ip" in result.stdout
    assert result.stdout.rstrip().endswith("| where value_count > 10")
    assert result.stderr == ("approximate: correlation: ES|QL counts in fixed time buckets (date_trunc), the engine"
                             " in a sliding window\n")
    mac = rules("convert", "enip_list_identity_broadcast")
    assert ("approximate: destination.mac: strings match case-insensitively here, case-sensitively in"
            " Elasticsearch\n") in mac.stderr


def test_convert_to_esql_tests_every_value_of_multi_valued_fields(tmp_path: Path) -> None:
    exact = rules("convert", "dnp3_analog_output_command")
    assert "match(dnp3.group, 41)" in exact.stdout and exact.stderr == ""
    rule = tmp_path / "anomaly_prefix.yml"
    rule.write_text("title: t\nid: 0b0b0b0b-0000-4000-8000-000000000001\nlogsource: {product: icsmon, service: dnp3}\n"
                    "detection:\n  sel: {dnp3.anomaly|startswith: request, dnp3.group|gte: 40}\n  condition: sel\n"
                    "level: low\n")
    result = rules("convert", str(rule))
    assert result.returncode == 0, result.stderr
    assert 'starts_with(dnp3.anomaly, "request")' in result.stdout and "mv_max(dnp3.group)>=40" in result.stdout
    assert result.stderr == ("approximate: dnp3.anomaly: several values in one field: ES|QL takes a pattern, regular"
                             " expression or CIDR test on them as null, the engine tests each value\n")


def test_convert_refuses_what_the_backend_cannot_express() -> None:
    result = rules("convert", "s7_stop_then_download")
    assert result.returncode == 2
    assert "Correlation type 'temporal_ordered' is not supported" in one_error_line(result)
    result = rules("convert", "modbus_unit_id_sweep", "--target", "lucene")
    assert result.returncode == 2
    assert "(value_count correlation): Backend does not support correlation rules" in one_error_line(result)
    result = rules("convert", "modbus_unit_id_sweep", "--target", "eql")
    assert result.returncode == 2
    assert "counts repeats, not distinct values" in one_error_line(result)


# -- new -------------------------------------------------------------------------------------------------------

def test_new_scaffolds_a_rule_that_lints_and_tests(tmp_path: Path) -> None:
    result = rules("new", "dnp3_freeze_from_unknown", "--service", "dnp3", "--operation", "read", "--technique",
                   "T0846", "--level", "low", "--dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    rule, fixtures = tmp_path / "dnp3" / "dnp3_freeze_from_unknown.yml", tmp_path / "dnp3" / \
        "dnp3_freeze_from_unknown.fixtures.json"
    assert result.stdout.splitlines() == [str(rule), str(fixtures)]
    text = rule.read_text()
    assert "name: dnp3_freeze_from_unknown" in text and "  - attack.discovery\n  - attack.t0846\n" in text
    assert "service: dnp3" in text and "ics.operation: read" in text
    lint = rules("lint", str(tmp_path))
    assert lint.returncode == 0, lint.stdout
    test = rules("test", str(rule))
    assert test.returncode == 0, test.stdout + test.stderr
    assert "positive fixture (1 inline events): ok, 1 match in 1 events, expected 1 match" in test.stdout
    again = rules("new", "dnp3_freeze_from_unknown", "--service", "dnp3", "--dir", str(tmp_path))
    assert again.returncode == 2 and "exists already" in one_error_line(again)


def test_new_bad_input(tmp_path: Path) -> None:
    for args, reason in ((["Bad-Name", "--service", "modbus"], "lower-case letters"),
                         (["good_name"], "give exactly one of --service and --category"),
                         (["good_name", "--service", "modbus", "--technique", "T1059"], "not a current ATT&CK for ICS"),
                         (["good_name", "--category", "flow", "--operation", "explode"], "unknown operation")):
        result = rules("new", *args, "--dir", str(tmp_path))
        assert result.returncode == 2, args
        assert reason in one_error_line(result)
    assert not any(tmp_path.iterdir())
