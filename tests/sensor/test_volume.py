"""Volume control: verbosity per protocol and folding of routine polling into summaries."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sensor.settings import VolumeSettings
from sensor.volume import VolumeFilter, is_routine

REPO = Path(__file__).resolve().parents[2]
MODBUS = REPO.parent / "shared/pcaps/iti/pcaps/ModbusTCP/Modbus/modbus_test.pcap"


def pdu(ts: float, operation: str = "read", role: str = "request", protocol: str = "modbus", address: int = 0,
        values: tuple[int, ...] = (), status: str | None = None, error: bool = False,
        client: str = "10.0.0.1") -> dict[str, Any]:
    event: dict[str, Any] = {
        "@timestamp": ts, "event.dataset": f"icsmon.{protocol}", "network.protocol": protocol,
        "event.type": ("protocol", "error") if error else ("protocol",), "source.ip": client,
        "source.port": 40000 + int(ts), "destination.ip": "10.0.0.2", "destination.port": 502,
        "ics.operation": operation, "ics.role": role, "ics.function": f"{operation}_thing", "ics.unit": "1",
        "ics.address_start": address, "ics.address_count": 4,
    }
    if values:
        event["ics.values"] = list(values)
    if status:
        event["ics.status"] = status
    return event


def conn(ts: float, protocol: str = "modbus") -> dict[str, Any]:
    return {"@timestamp": ts, "event.dataset": "icsmon.conn", "network.protocol": protocol,
            "event.action": "connection-end"}


def run(settings: VolumeSettings, events: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], VolumeFilter]:
    out: list[dict[str, Any]] = []
    volume = VolumeFilter(settings, out.append)
    for event in events:
        volume(event)
    volume.flush()
    return out, volume


def test_routine_means_successful_reads_and_reports() -> None:
    assert is_routine(pdu(0)) and is_routine(pdu(0, "report", "unsolicited"))
    assert is_routine(pdu(0, role="response", status="ok"))
    assert not is_routine(pdu(0, role="response", status="illegal_data_address"))
    assert not is_routine(pdu(0, error=True))
    assert not is_routine(pdu(0, "write")) and not is_routine(pdu(0, "restart"))
    assert not is_routine(conn(0))
    keepalive = {"network.protocol": "iec104", "event.action": "testfr_act", "ics.operation": "diagnostic",
                 "event.type": ("protocol",), "ics.role": "request"}
    assert is_routine(keepalive) and is_routine({**keepalive, "event.action": "s_frame", "ics.operation": "session"})
    assert not is_routine({**keepalive, "event.action": "startdt_act", "ics.operation": "session"})
    assert not is_routine({**keepalive, "network.protocol": "modbus"})


def test_all_keeps_every_event() -> None:
    events = [pdu(1), pdu(2, "write"), conn(3)]
    out, volume = run(VolumeSettings(), events)
    assert out == events and volume.stats()["passed"] == 3


def test_no_routine_drops_only_routine_polling() -> None:
    write, exception, anomaly = pdu(2, "write"), pdu(3, role="response", status="illegal_function"), pdu(4, error=True)
    flow_end, error = conn(5), {"@timestamp": 6, "event.dataset": "icsmon.decode_error", "network.protocol": "modbus"}
    out, volume = run(VolumeSettings(default="no_routine"), [pdu(1), write, exception, anomaly, flow_end, error])
    assert out == [write, exception, anomaly, flow_end, error]
    assert volume.stats()["dropped"] == 1


def test_none_keeps_flows_and_errors_only() -> None:
    out, _ = run(VolumeSettings(default="none"), [pdu(1), pdu(2, "write"), conn(3)])
    assert [e["event.dataset"] for e in out] == ["icsmon.conn"]


def test_per_protocol_settings_override_the_default() -> None:
    settings = VolumeSettings(default="none", protocols={"dnp3": "all"})
    out, _ = run(settings, [pdu(1), pdu(2, protocol="dnp3")])
    assert [e["network.protocol"] for e in out] == ["dnp3"]


def test_summaries_fold_polling_with_counts_and_value_ranges() -> None:
    events = []
    for second in range(10):
        events.append(pdu(100 + second, values=()))
        events.append(pdu(100.5 + second, role="response", values=(second, 50 - second), status="ok"))
    events.append(pdu(105.2, address=8))  # another address range: its own summary
    out, volume = run(VolumeSettings(default="no_routine", summary=True, summary_interval=60), events)
    assert volume.stats()["folded"] == 21 and volume.stats()["summaries"] == 2
    first = next(e for e in out if e["ics.address_start"] == 0)
    assert first["event.dataset"] == "icsmon.summary" and first["event.action"] == "summary"
    assert (first["icsmon.summary.count"], first["icsmon.summary.requests"], first["icsmon.summary.responses"]) == \
        (20, 10, 10)
    assert (first["icsmon.summary.values_min"], first["icsmon.summary.values_max"]) == (0, 50)
    assert (first["event.start"], first["event.end"], first["@timestamp"]) == (100, 109.5, 109.5)
    assert "source.port" not in first and first["source.ip"] == "10.0.0.1" and first["ics.unit"] == "1"


def test_a_summary_is_emitted_when_the_capture_clock_passes_its_interval() -> None:
    out: list[dict[str, Any]] = []
    volume = VolumeFilter(VolumeSettings(default="no_routine", summary=True, summary_interval=10), out.append)
    volume(pdu(1))
    volume(pdu(5))
    assert out == []
    volume(pdu(11, "write"))  # a kept event at t=11 closes the 0-10 s summary first
    assert [e["event.dataset"] for e in out] == ["icsmon.summary", "icsmon.modbus"]
    assert out[0]["icsmon.summary.count"] == 2


def test_open_summaries_are_capped() -> None:
    settings = VolumeSettings(default="no_routine", summary=True, max_summaries=3)
    out, volume = run(settings, [pdu(1, address=a) for a in range(10)])
    assert volume.stats()["early_summaries"] == 7 and len(out) == 10
    assert sum(e["icsmon.summary.count"] for e in out) == 10


def test_errors_folded_under_none_are_counted() -> None:
    out, _ = run(VolumeSettings(default="none", summary=True), [pdu(1, "write"), pdu(2, "write", error=True)])
    assert len(out) == 1 and out[0]["icsmon.summary.errors"] == 1


# -- the command line ---------------------------------------------------------------------------------

def icsmon(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "api.cli", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=300)


def test_summary_on_a_real_capture_accounts_for_every_pdu(tmp_path: Path) -> None:
    events_path, stats_path = tmp_path / "e.jsonl", tmp_path / "s.json"
    result = icsmon("read", str(MODBUS), "--events", str(events_path), "--stats", str(stats_path), "--summary", "-q")
    assert result.returncode == 0, result.stderr
    stats = json.loads(stats_path.read_text())
    events = [json.loads(line) for line in events_path.read_text().splitlines()]
    kept = [e for e in events if e["event.dataset"] == "icsmon.modbus"]
    summaries = [e for e in events if e["event.dataset"] == "icsmon.summary"]
    # Detection would still have seen all 2258 PDUs; the store keeps a few events and the summaries.
    assert stats["events_by_dataset"]["icsmon.modbus"] == 2258
    assert len(kept) + sum(s["icsmon.summary.count"] for s in summaries) == 2258
    assert len(kept) + len(summaries) < 2258 / 10
    assert stats["output"]["folded"] == 2258 - len(kept) and stats["output"]["summaries"] == len(summaries)
    assert all(not is_routine(e) for e in kept)


@pytest.mark.parametrize(("option", "message"), [
    ("loud", "--verbosity loud: level must be one of all, no_routine, none"),
    ("modbus=some", "--verbosity modbus=some: level must be one of all, no_routine, none"),
])
def test_bad_verbosity_is_one_line(option: str, message: str) -> None:
    result = icsmon("read", str(MODBUS), "--verbosity", option)
    assert result.returncode == 2 and result.stderr.strip() == f"icsmon: error: {message}"


def test_verbosity_none_for_one_protocol(tmp_path: Path) -> None:
    events_path = tmp_path / "e.jsonl"
    result = icsmon("read", str(MODBUS), "--events", str(events_path), "--verbosity", "modbus=none", "-q")
    assert result.returncode == 0, result.stderr
    datasets = {json.loads(line)["event.dataset"] for line in events_path.read_text().splitlines()}
    assert datasets == {"icsmon.conn"}
