"""Hot reload: added, changed and removed rules, keeping the state of unchanged correlation rules."""

from __future__ import annotations

import os
import shutil
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from analyzer.sigma import Engine, RuleSet
from analyzer.sigma.reload import RuleWatcher
from tests.analyzer.sigma.helpers import EWS, RULES, rule_yaml

T0 = 1_700_000_000.0
BURST = "Modbus brute force I/O"


def write(ts: float) -> dict[str, Any]:
    return {"@timestamp": ts, "network.protocol": "modbus", "modbus.function": "write_single_register",
            "ics.operation": "write", "ics.role": "request", "source.ip": "10.0.0.5", "destination.ip": "10.0.1.1",
            "ics.address_start": 40001}


@pytest.fixture
def rules(tmp_path: Path) -> Path:
    folder = tmp_path / "rules"
    shutil.copytree(RULES, folder)
    return folder


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))
    stamp = time.time() + 5  # a distinct mtime even on coarse filesystems
    os.utime(path, (stamp, stamp))


def burst_after(engine: Engine, start: int, count: int) -> list[int]:
    return [i for i in range(start, start + count)
            if any(d.title == BURST for d in engine.match(write(T0 + i * 0.1)))]


def watcher_for(rules: Path) -> tuple[Engine, RuleWatcher, list[Any]]:
    engine = Engine(RuleSet.load([rules], EWS))
    reports: list[Any] = []
    watcher = RuleWatcher(engine, [rules], EWS, on_reload=lambda rs, result: reports.append((rs, result)),
                          interval=0.0)
    return engine, watcher, reports


def test_unchanged_correlation_keeps_its_state_across_a_reload(rules: Path) -> None:
    engine, watcher, reports = watcher_for(rules)
    assert burst_after(engine, 0, 6) == []
    edit(rules / "modbus_write_not_from_engineering_station.yml", "level: high", "level: critical")
    result = watcher.poll()
    assert result is not None and result["correlation_states_kept"] == 3
    assert result["added_or_changed"] == 1 and result["removed_or_changed"] == 1
    assert burst_after(engine, 6, 4) == [9]  # 6 writes before the reload + 4 after = 10


def test_changed_correlation_starts_over(rules: Path) -> None:
    engine, watcher, _ = watcher_for(rules)
    burst_after(engine, 0, 6)
    edit(rules / "modbus_write_burst.yml", "timespan: 5s", "timespan: 6s")
    assert watcher.poll()["correlation_states_kept"] == 2
    assert burst_after(engine, 6, 4) == []
    assert burst_after(engine, 10, 6) == [15]


def test_changing_a_counted_rule_resets_the_correlation_counting_it(rules: Path) -> None:
    engine, watcher, _ = watcher_for(rules)
    burst_after(engine, 0, 6)
    edit(rules / "modbus_write_burst.yml", "      - write_single_coil\n",
         "      - write_single_coil\n      - write_multiple_registers\n")
    assert watcher.poll()["correlation_states_kept"] == 2
    assert burst_after(engine, 6, 4) == []


def test_added_and_removed_rules(rules: Path) -> None:
    engine, watcher, _ = watcher_for(rules)
    event = {"network.protocol": "modbus", "ics.operation": "restart", "ics.role": "request"}
    assert engine.match(event) == []
    new = rules / "modbus_restart.yml"
    new.write_text(rule_yaml("sel:\n  ics.operation: restart\ncondition: sel", "service: modbus",
                             title="Modbus restart"))
    assert watcher.poll() is not None
    assert [d.title for d in engine.match(event)] == ["Modbus restart"]
    new.unlink()
    assert watcher.poll() is not None
    assert engine.match(event) == []


def test_nothing_changed_means_no_reload(rules: Path) -> None:
    engine, watcher, reports = watcher_for(rules)
    assert watcher.poll() is None
    assert reports == [] and engine.stats["reloads"] == 0


def test_broken_edit_is_reported_and_the_other_rules_stay(rules: Path) -> None:
    engine, watcher, reports = watcher_for(rules)
    burst_after(engine, 0, 6)
    edit(rules / "modbus_write_not_from_engineering_station.yml", "condition: selection and not",
         "condition: selection and and not")
    watcher.poll()
    (ruleset, result), = reports
    assert [e.rule_id for e in ruleset.errors] == ["5b7e2c1a-93d4-4f0e-8a61-2f4c9d0b7e11"]
    assert result["errors"] == 1 and result["correlation_states_kept"] == 3
    assert burst_after(engine, 6, 4) == [9]


def test_sighup_requests_a_reload(rules: Path) -> None:
    engine, watcher, reports = watcher_for(rules)
    previous = signal.getsignal(signal.SIGHUP)
    try:
        watcher.install_sighup()
        os.kill(os.getpid(), signal.SIGHUP)
        assert watcher.poll() is not None  # nothing changed on disk, but the signal asked
    finally:
        signal.signal(signal.SIGHUP, previous)
    assert len(reports) == 1


def test_placeholders_file_change_reloads(rules: Path, tmp_path: Path) -> None:
    placeholders = tmp_path / "placeholders.yml"
    placeholders.write_text("engineering_workstations: [10.0.0.5]\n")
    engine = Engine(RuleSet.load([rules], EWS))
    watcher = RuleWatcher(engine, [rules], placeholders, interval=0.0)
    event = {"network.protocol": "modbus", "ics.operation": "write", "ics.role": "request", "source.ip": "10.0.0.7"}
    assert len(engine.match(event)) == 1
    placeholders.write_text("engineering_workstations: [10.0.0.5, 10.0.0.7]\n")
    os.utime(placeholders, (time.time() + 5, time.time() + 5))
    assert watcher.poll() is not None
    assert engine.match(event) == []


def test_polling_thread_picks_up_a_change(rules: Path) -> None:
    engine, watcher, reports = watcher_for(rules)
    watcher.interval = 0.05
    thread, stop = watcher.start()
    try:
        edit(rules / "modbus_write_not_from_engineering_station.yml", "level: high", "level: low")
        deadline = time.monotonic() + 10
        while not reports and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        thread.join(5)
    assert reports and engine.ruleset.get("modbus_write_not_from_ews").severity == "low"
