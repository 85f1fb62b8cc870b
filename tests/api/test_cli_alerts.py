"""``--alerts``, store selection, the start-up check and delivery statistics, run as a user runs them.

Every run gets its own HOME, so the default store (~/.local/share/icsmon/icsmon.db) and spool are
the test's own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from analyzer.settings import ElasticsearchSettings
from analyzer.spool import Spool
from analyzer.stores.elasticsearch import ElasticsearchStore
from analyzer.stores.sqlite import SQLiteStore

REPO = Path(__file__).resolve().parents[2]
PCAPS = REPO.parent / "shared" / "pcaps"
MODBUS = PCAPS / "iti/pcaps/ModbusTCP/Modbus/modbus_test.pcap"


def icsmon(*args: str, home: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ICSMON_")}
    clean.update(HOME=str(home), **(env or {}))
    return subprocess.run([sys.executable, "-m", "api.cli", *args], capture_output=True, text=True, cwd=REPO,
                          timeout=300, env=clean)


def final_states(lines: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    final: dict[str, dict[str, Any]] = {}
    for alert in lines:
        held = final.get(alert["_id"])
        assert held is None or alert["icsmon.alert.version"] > held["icsmon.alert.version"], "versions must grow"
        final[alert["_id"]] = alert
    return final


WRITE_RULE = """\
title: Modbus write request
id: 0b9c8a52-3f4e-4d2b-9a51-6c7e8f901234
status: test
logsource:
  product: icsmon
  service: modbus
detection:
  selection:
    ics.operation: write
    ics.role: request
  condition: selection
level: low
tags:
  - attack.impair-process-control
  - attack.t0836
"""


def only_rule(tmp_path: Path, text: str = WRITE_RULE) -> dict[str, str]:
    """Environment that runs one rule instead of the shipped pack."""
    rule = tmp_path / "rule.yml"
    rule.write_text(text)
    return {"ICSMON_ANALYZER__RULES__SHIPPED": "false", "ICSMON_ANALYZER__RULES__PATHS": json.dumps([str(rule)])}


def test_read_writes_alerts_and_delivers_them_to_the_embedded_store(tmp_path: Path) -> None:
    alerts, events, stats = tmp_path / "alerts.jsonl", tmp_path / "events.jsonl", tmp_path / "stats.json"
    result = icsmon("read", str(MODBUS), "--alerts", str(alerts), "--events", str(events), "--stats", str(stats),
                    home=tmp_path, env={"ICSMON_ANALYZER__DELIVERY__EVENTS": "true", **only_rule(tmp_path)})
    assert result.returncode == 0, result.stderr
    writes = [e for e in map(json.loads, events.read_text().splitlines())
              if e.get("ics.operation") == "write" and e.get("ics.role") == "request"]
    assert len(writes) > 10
    lines = [json.loads(line) for line in alerts.read_text().splitlines()]
    final = final_states(lines)
    # One alert per client, controller and operation within the aggregation window.
    pairs = {(e["source.ip"], e["destination.ip"]) for e in writes}
    assert len(final) == len(pairs)
    assert sum(a["icsmon.alert.count"] for a in final.values()) == len(writes)
    for alert in final.values():
        assert alert["rule.id"] == "0b9c8a52-3f4e-4d2b-9a51-6c7e8f901234" and alert["threat.technique.id"] == ["T0836"]
        assert alert["icsmon.alert.version"] == alert["icsmon.alert.count"]
        assert alert["icsmon.alert.id"] == alert["_id"]
    assert len(lines) < len(writes)  # updates are coalesced, the flood of writes is not a flood of lines

    st = json.loads(stats.read_text())
    delivery, analyzer = st["delivery"], st["analyzer"]
    assert delivery["store"] == "sqlite" and delivery["spooled"] == 0 and delivery["last_error"] is None
    assert delivery["written"] == len(lines) + analyzer["events_delivered"]
    assert analyzer["events_delivered"] == st["events"]
    assert analyzer["alerts_raised"] == len(final) and analyzer["detections"] == len(writes)
    assert "delivery to sqlite:" in result.stderr and "alerts 1 raised" in result.stderr

    store = SQLiteStore(path=tmp_path / ".local/share/icsmon/icsmon.db")
    try:
        for alert_id, alert in final.items():
            stored = store.get("alert", alert_id)
            assert stored is not None
            assert stored["icsmon.alert.version"] == alert["icsmon.alert.version"]
            assert stored["icsmon.alert.count"] == alert["icsmon.alert.count"]
    finally:
        store.close()


def test_alerts_to_stdout_and_a_second_run_changes_nothing(tmp_path: Path) -> None:
    stats = tmp_path / "stats.json"
    env = only_rule(tmp_path)
    first = icsmon("read", str(MODBUS), "--alerts", "-", "--quiet", home=tmp_path, env=env)
    second = icsmon("read", str(MODBUS), "--alerts", "-", "--quiet", "--stats", str(stats), home=tmp_path, env=env)
    assert first.returncode == second.returncode == 0, first.stderr + second.stderr
    assert first.stdout == second.stdout  # the same ids, versions and content
    lines = [json.loads(line) for line in first.stdout.splitlines()]
    assert lines and all(line["event.kind"] == "alert" for line in lines)
    delivery = json.loads(stats.read_text())["delivery"]
    assert delivery["put"] == delivery["written"] == len(lines)  # by default alerts only, no events
    store = SQLiteStore(path=tmp_path / ".local/share/icsmon/icsmon.db")
    try:
        from analyzer.stores import Query

        assert store.search(Query(kind="alert")).total == len(final_states(lines))  # written by id: no duplicates
        assert store.search(Query(kind="event")).total == 0
    finally:
        store.close()


def test_alerts_file_that_cannot_be_written_is_a_one_line_error(tmp_path: Path) -> None:
    result = icsmon("read", str(MODBUS), "--alerts", str(tmp_path / "no" / "such" / "dir" / "a.jsonl"), home=tmp_path)
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("icsmon: error: --alerts") and "a.jsonl" in last


def test_bad_store_configuration_is_a_one_line_error(tmp_path: Path) -> None:
    result = icsmon("read", str(MODBUS), home=tmp_path, env={"ICSMON_ANALYZER__ELASTICSEARCH__URL": "ftp://x"})
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert result.stderr.startswith("icsmon: error: bad configuration") and "ftp://x" in result.stderr


def test_demo_delivers_its_alerts_to_the_embedded_store(tmp_path: Path) -> None:
    result = icsmon("demo", "--workdir", str(tmp_path / "demo"), home=tmp_path)
    assert result.returncode == 0, result.stderr
    header = next(line for line in result.stdout.splitlines() if "alerts (delivered to the sqlite store" in line)
    shown = int(header.split()[0])
    assert shown >= 3
    final = final_states([json.loads(x) for x in (tmp_path / "demo" / "alerts.jsonl").read_text().splitlines()])
    assert len(final) == shown
    # The intrusion raises them all; the plant's normal operation (polling, the engineer's setpoint
    # change, the SCADA's breaker command, the BMS writes) raises none.
    assert {a["source.ip"] for a in final.values()} == {"10.10.1.66"}
    techniques = {t for a in final.values() for t in a.get("threat.technique.id", [])}
    assert {"T0846", "T0888", "T0855", "T0806", "T0858", "T0843", "T0878", "T0816", "T0814"} <= techniques
    assert any(a["icsmon.alert.severity"] == "critical" and a["network.protocol"] == "s7comm" for a in final.values())
    assert "First 3 events of each protocol:" in result.stdout
    for protocol in ("bacnet", "dnp3", "enip", "iec104", "modbus", "s7comm"):
        assert sum(line.strip().startswith(protocol + " ") for line in result.stdout.splitlines()) >= 3, protocol
    store = SQLiteStore(path=tmp_path / ".local/share/icsmon/icsmon.db")
    try:
        for alert_id, alert in final.items():
            assert store.get("alert", alert_id)["icsmon.alert.version"] == alert["icsmon.alert.version"]
    finally:
        store.close()
    # The demo keeps its own spool: a sensor running on the machine keeps the default one.
    assert not (tmp_path / ".local/share/icsmon/spool").exists()


def test_two_sensors_at_once_take_two_spool_slots(tmp_path: Path) -> None:
    """A ``read`` while a ``live`` holds the default spool: it takes the next slot instead of failing."""
    from analyzer.spool import open_slot

    with open_slot(tmp_path / ".local/share/icsmon/spool") as held:  # the running service
        assert held.path.name == "0"
        result = icsmon("read", str(MODBUS), "--quiet", home=tmp_path)
        assert result.returncode == 0, result.stderr
    assert (tmp_path / ".local/share/icsmon/spool" / "1").is_dir()


@pytest.fixture
def es_prefix(es_url: str) -> Iterator[str]:
    """A fresh index prefix on the shared node; its indices and templates are removed afterwards."""
    prefix = f"icsmon-cli-{uuid.uuid4().hex[:8]}"
    yield prefix
    store = ElasticsearchStore(ElasticsearchSettings(url=es_url, index_prefix=prefix))
    try:
        store.uninstall_templates()
        found = store._client.indices.get(index=f"{prefix}-*", allow_no_indices=True, ignore_unavailable=True)
        if found.body:
            store._client.indices.delete(index=",".join(found.body))
    finally:
        store.close()


@pytest.mark.elasticsearch
def test_unreachable_at_start_up_spools_and_the_next_run_delivers(tmp_path: Path, es_url: str,
                                                                   es_prefix: str) -> None:
    spool = tmp_path / "spool"
    env = {"ICSMON_ANALYZER__ELASTICSEARCH__INDEX_PREFIX": es_prefix,
           "ICSMON_ANALYZER__ELASTICSEARCH__NUMBER_OF_REPLICAS": "0",
           "ICSMON_ANALYZER__ELASTICSEARCH__MAX_ATTEMPTS": "1",
           "ICSMON_ANALYZER__DELIVERY__SPOOL_DIR": str(spool),
           "ICSMON_ANALYZER__DELIVERY__EVENTS": "true",
           "ICSMON_ANALYZER__DELIVERY__CLOSE_TIMEOUT": "1", **only_rule(tmp_path)}
    down = dict(env, ICSMON_ANALYZER__ELASTICSEARCH__URL="http://127.0.0.1:9")  # nothing listens on port 9
    stats = tmp_path / "stats.json"
    started = time.monotonic()
    result = icsmon("read", str(MODBUS), "--alerts", str(tmp_path / "alerts.jsonl"), "--stats", str(stats),
                    home=tmp_path, env=down)
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 30
    warnings = [line for line in result.stderr.splitlines() if line.startswith("icsmon: warning:")]
    assert len(warnings) == 2, result.stderr  # once at start-up, once about what is left at the end
    assert "unreachable" in warnings[0] and str(spool) in warnings[0]
    assert "wait in the spool" in warnings[1]
    delivery = json.loads(stats.read_text())["delivery"]
    assert delivery["store"] == "elasticsearch" and delivery["written"] == 0
    assert delivery["spooled"] == delivery["put"] > 2000 and delivery["dropped_events"] == 0
    with Spool(spool / "0") as waiting:  # the first slot of the spool folder
        assert len(waiting) == delivery["spooled"]

    up = dict(env, ICSMON_ANALYZER__ELASTICSEARCH__URL=es_url, ICSMON_ANALYZER__DELIVERY__CLOSE_TIMEOUT="60")
    empty = tmp_path / "empty.pcap"
    empty.write_bytes(MODBUS.read_bytes()[:24])  # no packets: this run only delivers what waits
    result = icsmon("read", str(empty), "--stats", str(stats), home=tmp_path, env=up)
    assert result.returncode == 0, result.stderr
    delivery = json.loads(stats.read_text())["delivery"]
    assert delivery["spooled"] == 0 and delivery["written"] > 2000

    final = final_states([json.loads(x) for x in (tmp_path / "alerts.jsonl").read_text().splitlines()])
    store = ElasticsearchStore(ElasticsearchSettings(url=es_url, index_prefix=es_prefix))
    try:
        store.refresh()
        hits = store._client.search(index=f"{es_prefix}-alerts-*", size=100).body["hits"]
        assert hits["total"]["value"] == len(final)
        for hit in hits["hits"]:
            assert hit["_source"]["icsmon.alert.version"] == final[hit["_id"]]["icsmon.alert.version"]
        events = store._client.count(index=f"{es_prefix}-events-*").body["count"]
        assert events == json.loads(stats.read_text())["delivery"]["written"] - sum(
            1 for _ in (tmp_path / "alerts.jsonl").read_text().splitlines())
    finally:
        store.close()


def test_live_and_read_offer_alerts(tmp_path: Path) -> None:
    for command in ("read", "live"):
        result = icsmon(command, "--help", home=tmp_path)
        assert "--alerts PATH" in result.stdout
