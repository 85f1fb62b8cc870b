"""The alert model: aggregation of repeated hits, stable ids, bounded evidence, the documented fields."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from analyzer.alerts import (
    ALERT_FIELDS,
    MAX_EVIDENCE,
    MAX_EVIDENCE_BYTES,
    Alert,
    AlertAggregator,
    Detection,
    markdown_reference,
)

REPO = Path(__file__).resolve().parents[2]


def write(ts: float, src: str = "10.0.0.5", dst: str = "10.0.0.9", **extra: Any) -> dict[str, Any]:
    return {"@timestamp": ts, "event.dataset": "icsmon.modbus", "network.protocol": "modbus",
            "source.ip": src, "destination.ip": dst, "source.port": 40000, "destination.port": 502,
            "ics.operation": "write", "ics.function": "write_single_register", "ics.role": "request",
            "ics.unit": "1", "ics.tag": ["hr:10"], "icsmon.packet": int(ts), **extra}


def detection(event: dict[str, Any], rule: str = "r1", severity: str = "high") -> Detection:
    return Detection("rule", rule, "Write from an unknown host", severity, event,  # type: ignore[arg-type]
                     techniques=("T0855",), tactics=("Impair Process Control",))


def collect(window: float = 300.0) -> tuple[AlertAggregator, list[tuple[str, int, int]]]:
    seen: list[tuple[str, int, int]] = []
    aggregator = AlertAggregator(lambda a: seen.append((a.id, a.version, a.count)), window=window)
    return aggregator, seen


def test_repeats_within_the_window_update_one_alert() -> None:
    aggregator, seen = collect(window=60)
    for i in range(5):
        aggregator.add(detection(write(1000.0 + i * 10)))
    assert len({s[0] for s in seen}) == 1
    assert [s[1:] for s in seen] == [(1, 1), (2, 2), (3, 3), (4, 4), (5, 5)]
    assert aggregator.raised == 1 and aggregator.updated == 4


def test_a_hit_after_the_window_starts_a_new_alert() -> None:
    aggregator, seen = collect(window=60)
    first = aggregator.add(detection(write(1000.0)))
    second = aggregator.add(detection(write(1000.0 + 61)))
    assert first.id != second.id and second.count == 1 and aggregator.raised == 2


def test_different_detector_source_destination_or_operation_are_different_alerts() -> None:
    aggregator, _ = collect()
    base = aggregator.add(detection(write(1.0)))
    others = [
        aggregator.add(detection(write(2.0), rule="r2")),
        aggregator.add(detection(write(3.0, src="10.0.0.6"))),
        aggregator.add(detection(write(4.0, dst="10.0.0.10"))),
        aggregator.add(detection(write(5.0, **{"ics.operation": "restart"}))),
    ]
    assert len({base.id, *(a.id for a in others)}) == 5


def test_ids_are_stable_across_runs() -> None:
    runs = []
    for _ in range(2):
        aggregator, seen = collect(window=30)
        for ts in (500.0, 520.0, 540.0, 600.0, 620.0, 700.0):  # the window slides with the last hit
            aggregator.add(detection(write(ts)))
        runs.append(seen)
    assert runs[0] == runs[1] and len({s[0] for s in runs[0]}) == 3


def test_evidence_is_bounded_keeping_first_and_latest() -> None:
    aggregator, _ = collect()
    alert = None
    for i in range(50):
        alert = aggregator.add(detection(write(100.0 + i)))
    assert alert is not None and alert.count == 50
    packets = [e["icsmon.packet"] for e in alert.evidence]
    assert len(packets) == MAX_EVIDENCE
    assert packets[: MAX_EVIDENCE // 2] == [100, 101, 102, 103, 104] and packets[-1] == 149


def test_oversized_evidence_keeps_key_fields_only() -> None:
    aggregator, _ = collect()
    alert = aggregator.add(detection(write(1.0, **{"modbus.values": list(range(2000))})))
    evidence = alert.evidence[0]
    assert evidence["icsmon.evidence_truncated"] is True and "modbus.values" not in evidence
    assert evidence["source.ip"] == "10.0.0.5" and len(str(evidence)) < MAX_EVIDENCE_BYTES


def test_document_carries_detector_attack_and_event_key_fields() -> None:
    aggregator, _ = collect()
    aggregator.add(detection(write(1_700_000_000.0)))
    alert = aggregator.add(detection(write(1_700_000_030.5)))
    doc = alert.to_document()
    assert doc["@timestamp"] == "2023-11-14T22:13:50.500000Z"
    assert doc["icsmon.alert.first_seen"] == "2023-11-14T22:13:20.000000Z"
    assert doc["icsmon.alert.count"] == 2 and doc["icsmon.alert.version"] == 2
    assert doc["rule.id"] == "r1" and doc["event.severity"] == 73 and doc["event.risk_score"] == 73
    assert doc["threat.technique.id"] == ["T0855"] and doc["threat.tactic.name"] == ["Impair Process Control"]
    assert doc["source.ip"] == "10.0.0.5" and doc["ics.operation"] == "write" and doc["ics.tag"] == ["hr:10"]
    assert doc["icsmon.triage.status"] == "open" and "icsmon.triage.assignee" not in doc
    declared = {f.name for f in ALERT_FIELDS}
    assert {k for k in doc if k.startswith(("icsmon.alert.", "icsmon.triage.", "rule.", "threat."))} <= declared


def test_asset_names_come_from_the_inventory_lookup() -> None:
    names = {"10.0.0.5": "EWS-1", "10.0.0.9": "PLC-TANK"}
    aggregator = AlertAggregator(lambda a: None, assets=names.get)
    doc = aggregator.add(detection(write(1.0))).to_document()
    assert doc["source.asset.name"] == "EWS-1" and doc["destination.asset.name"] == "PLC-TANK"


def test_open_alerts_are_capped() -> None:
    aggregator = AlertAggregator(lambda a: None, max_open=3)
    ids = [aggregator.add(detection(write(1.0, src=f"10.0.1.{i}"))).id for i in range(4)]
    again = aggregator.add(detection(write(2.0, src="10.0.1.0")))  # forgotten: a new alert
    assert again.id not in ids and aggregator.raised == 5


def test_alert_dataclass_defaults() -> None:
    alert = Alert("x", "rule", "r", "t", "low", 21, 1.0, 1.0)
    assert alert.status == "open" and alert.version == 1 and alert.to_document()["event.severity"] == 21


def test_alerts_md_is_generated_from_the_model() -> None:
    assert (REPO / "analyzer" / "ALERTS.md").read_text() == markdown_reference()
