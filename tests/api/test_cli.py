"""The icsmon command line, run as a user runs it (a subprocess)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PCAPS = REPO.parent / "shared" / "pcaps"
MODBUS = PCAPS / "iti/pcaps/ModbusTCP/Modbus/modbus_test.pcap"


def icsmon(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "api.cli", *args], capture_output=True, text=True,
                          cwd=cwd or REPO, timeout=300)


@pytest.mark.parametrize("command", [[], ["read"], ["live"], ["demo"], ["bench"], ["schema"]])
def test_help_everywhere(command: list[str]) -> None:
    result = icsmon(*command, "--help")
    assert result.returncode == 0
    assert "Usage:" in result.stdout


def test_read_writes_events_and_stats(tmp_path: Path) -> None:
    events, stats = tmp_path / "events.jsonl", tmp_path / "stats.json"
    result = icsmon("read", str(MODBUS), "--events", str(events), "--stats", str(stats))
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in events.read_text().splitlines()]
    st = json.loads(stats.read_text())
    assert st["packets"] == 2257
    assert st["events"] == len(lines)
    datasets = {e["event.dataset"] for e in lines}
    assert "icsmon.conn" in datasets
    assert all(e["@timestamp"].endswith("Z") for e in lines)
    assert st["flows"]["created"] == sum(1 for e in lines if e["event.action"] == "connection-start")
    assert st["flows"]["ended"] == sum(1 for e in lines if e["event.action"] == "connection-end")
    for key in ("packets_per_second", "decode_errors", "drops", "protocols", "bytes"):
        assert key in st
    assert "packets 2,257" in result.stderr  # the human summary


def test_events_to_stdout(tmp_path: Path) -> None:
    result = icsmon("read", str(MODBUS), "--events", "-", "--quiet")
    assert result.returncode == 0
    assert all(json.loads(line)["observer.product"] == "icsmon" for line in result.stdout.splitlines())


def test_missing_file_is_one_line_error(tmp_path: Path) -> None:
    result = icsmon("read", str(tmp_path / "nope.pcap"))
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 or "icsmon: error:" in result.stderr.splitlines()[-1]
    assert "nope.pcap" in result.stderr.splitlines()[-1]


def test_corrupt_file_processes_readable_packets_then_fails(tmp_path: Path) -> None:
    data = MODBUS.read_bytes()
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(data[: len(data) // 2 + 7])
    stats = tmp_path / "stats.json"
    result = icsmon("read", str(cut), "--stats", str(stats), "--quiet")
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("icsmon: error:") and "cut.pcap" in last and "offset" in last
    st = json.loads(stats.read_text())
    assert 1000 < st["packets"] < 2257
    assert st["capture_errors"]


def test_not_a_capture(tmp_path: Path) -> None:
    bogus = tmp_path / "notes.txt"
    bogus.write_text("hello, this is not a capture\n")
    result = icsmon("read", str(bogus))
    assert result.returncode == 2
    assert "notes.txt" in result.stderr and "icsmon: error:" in result.stderr


def test_bad_configuration_is_one_line(tmp_path: Path) -> None:
    env = {"ICSMON_SENSOR__FLOWS__MAX_FLOWS": "-3", "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-m", "api.cli", "read", str(MODBUS)], capture_output=True,
                            text=True, cwd=REPO, env=env, timeout=60)
    assert result.returncode == 2
    assert result.stderr.startswith("icsmon: error: bad configuration")
    assert len(result.stderr.strip().splitlines()) == 1


def test_no_dissect_gives_flows_only(tmp_path: Path) -> None:
    events = tmp_path / "e.jsonl"
    result = icsmon("read", str(MODBUS), "--no-dissect", "--events", str(events), "--quiet")
    assert result.returncode == 0
    assert {json.loads(x)["event.dataset"] for x in events.read_text().splitlines()} == {"icsmon.conn"}
