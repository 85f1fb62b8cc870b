"""The alert: what a detector raises from protocol events, and how repeats aggregate into one.

An :class:`Alert` is one document in the alert store (``icsmon-alerts-*`` in
Elasticsearch, a table in SQLite). Its field names follow the Elastic Common
Schema where ECS has a field (``rule.*``, ``threat.*``, ``event.severity``,
``event.risk_score``, ``source.*``, ``destination.*``, ``observer.*``) and the
event schema's ``ics.*`` vocabulary for the industrial side; the
``icsmon.alert.*`` namespace holds what neither has (aggregation, evidence,
triage). :data:`ALERT_FIELDS` declares them once, like the event schema, and
feeds the store mappings and the documentation.

Aggregation (:class:`AlertAggregator`): hits of the same detector on the same
source, destination and ``ics.operation`` within ``window`` seconds of the
alert's last hit update that alert (count, last seen, bounded evidence)
instead of raising a new one, so a flood of identical writes is one alert with
a large count. The alert id is a hash of that key and the time of the first
hit, so replaying the same traffic (after a sensor restart, say) produces the
same ids and a store that writes by id never duplicates an alert.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

from sensor.events import iso_time, with_iso_times
from sensor.schema import Field

__all__ = ["ALERT_FIELDS", "Alert", "AlertAggregator", "Detection", "SEVERITIES", "TriageNote", "markdown_reference"]

Severity = Literal["low", "medium", "high", "critical"]
TriageStatus = Literal["open", "acknowledged", "closed"]
SEVERITIES: dict[str, int] = {"low": 21, "medium": 47, "high": 73, "critical": 99}
"""Severity -> default risk score (0-100), the same scale Elastic's detection rules use."""
MAX_EVIDENCE = 10
"""Triggering events kept per alert: the first ones, then the latest ones."""
MAX_EVIDENCE_BYTES = 4096
"""Longest JSON text of one evidence event; longer ones keep their key fields only."""
# Fields of the triggering event copied onto the alert (when present).
EVENT_KEY_FIELDS = (
    "network.protocol", "network.transport", "network.community_id", "network.vlan.id",
    "source.ip", "source.port", "source.mac", "destination.ip", "destination.port", "destination.mac",
    "ics.operation", "ics.function", "ics.role", "ics.status", "ics.unit", "ics.address_start",
    "ics.address_count", "ics.tag", "observer.id", "observer.hostname", "observer.ingress.interface.name",
)


class Detection(NamedTuple):
    """What a detector hands the aggregator for one matching event (or one correlation).

    Immutable and typed like a frozen dataclass, but a named tuple: a rule set that fires often makes
    one per matching event, and a tuple is built several times faster.
    """

    detector_type: Literal["rule", "baseline", "inventory", "test"]
    detector_id: str
    title: str
    severity: Severity
    event: Mapping[str, Any]
    risk_score: int | None = None
    techniques: tuple[str, ...] = ()  # ATT&CK for ICS technique ids, e.g. T0855
    tactics: tuple[str, ...] = ()  # ATT&CK for ICS tactic names, e.g. "Impair Process Control"
    description: str = ""
    related_events: tuple[Mapping[str, Any], ...] = ()  # a correlation's other events


@dataclass(slots=True)
class TriageNote:
    time: float
    author: str
    text: str
    status: TriageStatus | None = None  # set when the note changed the status
    assignee: str | None = None  # set when the note changed the assignee

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"time": iso_time(self.time), "author": self.author, "text": self.text}
        if self.status:
            out["status"] = self.status
        if self.assignee is not None:
            out["assignee"] = self.assignee
        return out


@dataclass(slots=True)
class Alert:
    id: str
    detector_type: str
    detector_id: str
    title: str
    severity: Severity
    risk_score: int
    first_seen: float
    last_seen: float
    count: int = 1
    techniques: tuple[str, ...] = ()
    tactics: tuple[str, ...] = ()
    description: str = ""
    key_fields: dict[str, Any] = field(default_factory=dict)
    source_asset: str | None = None
    destination_asset: str | None = None
    evidence: list[dict[str, Any]] = field(default_factory=list)
    status: TriageStatus = "open"
    assignee: str | None = None
    notes: list[TriageNote] = field(default_factory=list)
    version: int = 1  # grows with every update; stores keep the highest

    def to_document(self) -> dict[str, Any]:
        """The flat document the stores write (dotted names, times as ISO 8601)."""
        doc: dict[str, Any] = {
            "@timestamp": iso_time(self.last_seen),
            "event.kind": "alert",
            "event.category": ["intrusion_detection", "network"],
            "event.type": ["info"],
            "event.dataset": "icsmon.alert",
            "event.severity": SEVERITIES[self.severity],
            "event.risk_score": self.risk_score,
            "event.start": iso_time(self.first_seen),
            "event.end": iso_time(self.last_seen),
            "rule.id": self.detector_id,
            "rule.name": self.title,
            "rule.description": self.description,
            "icsmon.alert.id": self.id,
            "icsmon.alert.detector": self.detector_type,
            "icsmon.alert.severity": self.severity,
            "icsmon.alert.count": self.count,
            "icsmon.alert.first_seen": iso_time(self.first_seen),
            "icsmon.alert.last_seen": iso_time(self.last_seen),
            "icsmon.alert.version": self.version,
            "icsmon.alert.evidence": self.evidence,
            "icsmon.triage.status": self.status,
            "icsmon.triage.assignee": self.assignee,
            "icsmon.triage.notes": [n.to_dict() for n in self.notes],
        }
        if self.techniques:
            doc["threat.framework"] = "MITRE ATT&CK for ICS"
            doc["threat.technique.id"] = list(self.techniques)
        if self.tactics:
            doc["threat.tactic.name"] = list(self.tactics)
        if self.source_asset:
            doc["source.asset.name"] = self.source_asset
        if self.destination_asset:
            doc["destination.asset.name"] = self.destination_asset
        doc.update(self.key_fields)
        return {k: v for k, v in doc.items() if v is not None and v != ""}


def alert_id(detector_id: str, key: tuple[Any, ...], first_seen: float) -> str:
    """Stable id: the same detector, key and first hit always give the same id."""
    text = "\x1f".join(map(str, (detector_id, *key, f"{first_seen:.6f}")))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _evidence(event: Mapping[str, Any]) -> dict[str, Any]:
    import orjson

    out = dict(with_iso_times(event))  # type: ignore[arg-type]
    if len(orjson.dumps(out, default=str)) > MAX_EVIDENCE_BYTES:
        keep = ("@timestamp", "event.dataset", "event.action", "icsmon.packet", *EVENT_KEY_FIELDS)
        out = {k: out[k] for k in keep if k in out}
        out["icsmon.evidence_truncated"] = True
    return out


class AlertAggregator:
    """Turns detections into alerts, folding repeats within ``window`` seconds into one alert.

    ``emit`` receives every new or updated :class:`Alert` (the same object again on updates, with
    a higher ``version``). Open aggregation keys are capped at ``max_open``; the oldest is forgotten
    first, which only means its next hit starts a new alert.
    """

    def __init__(self, emit: Callable[[Alert], None], window: float = 300.0, max_open: int = 100_000,
                 assets: Callable[[str | None], str | None] | None = None) -> None:
        self.emit = emit
        self.window = window
        self.max_open = max_open
        self.assets = assets or (lambda _ip: None)
        self._open: OrderedDict[tuple[Any, ...], Alert] = OrderedDict()
        self.raised = 0
        self.updated = 0

    def add(self, detection: Detection) -> Alert:
        event = detection.event
        ts = _timestamp(event)
        key = (detection.detector_type, detection.detector_id, event.get("source.ip"),
               event.get("destination.ip"), event.get("ics.operation"))
        alert = self._open.get(key)
        if alert is not None and ts - alert.last_seen <= self.window:
            alert.count += 1
            if ts > alert.last_seen:
                alert.last_seen = ts
            alert.version += 1
            _add_evidence(alert.evidence, event, detection.related_events)
            self._open.move_to_end(key)
            self.updated += 1
            self.emit(alert)
            return alert
        alert = Alert(
            id=alert_id(detection.detector_id, key, ts), detector_type=detection.detector_type,
            detector_id=detection.detector_id, title=detection.title, severity=detection.severity,
            risk_score=detection.risk_score if detection.risk_score is not None else SEVERITIES[detection.severity],
            first_seen=ts, last_seen=ts, techniques=detection.techniques, tactics=detection.tactics,
            description=detection.description,
            key_fields={k: event[k] for k in EVENT_KEY_FIELDS if event.get(k) is not None},
            source_asset=self.assets(event.get("source.ip")),
            destination_asset=self.assets(event.get("destination.ip")),
        )
        _add_evidence(alert.evidence, event, detection.related_events)
        self._open[key] = alert
        self._open.move_to_end(key)
        if len(self._open) > self.max_open:
            self._open.popitem(last=False)
        self.raised += 1
        self.emit(alert)
        return alert

    def add_all(self, detections: Iterable[Detection]) -> None:
        for detection in detections:
            self.add(detection)


def _timestamp(event: Mapping[str, Any]) -> float:
    ts = event.get("@timestamp")
    if isinstance(ts, int | float):
        return float(ts)
    if isinstance(ts, str):
        from datetime import datetime

        return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()
    return 0.0


def _add_evidence(evidence: list[dict[str, Any]], event: Mapping[str, Any],
                  related: Iterable[Mapping[str, Any]]) -> None:
    for item in (*related, event):
        if len(evidence) >= MAX_EVIDENCE:
            del evidence[MAX_EVIDENCE // 2]  # keep the first half, slide the latest
        evidence.append(_evidence(item))


ALERT_FIELDS: tuple[Field, ...] = (
    Field("rule.id", "keyword", "Id of the detector that raised the alert (Sigma rule id, baseline anomaly type)."),
    Field("rule.name", "keyword", "Title of the rule or anomaly."),
    Field("rule.description", "text", "What the rule detects."),
    Field("event.severity", "long", "Numeric severity: low 21, medium 47, high 73, critical 99."),
    Field("event.risk_score", "float", "Risk score 0-100 (defaults to the severity's number)."),
    Field("threat.framework", "keyword", "Always `MITRE ATT&CK for ICS` when techniques are given."),
    Field("threat.technique.id", "keyword", "ATT&CK for ICS technique ids, e.g. `T0855`.", array=True),
    Field("threat.tactic.name", "keyword", "ATT&CK for ICS tactic names, e.g. `Impair Process Control`.",
          array=True),
    Field("source.asset.name", "keyword", "Asset inventory name of the source address."),
    Field("destination.asset.name", "keyword", "Asset inventory name of the destination address."),
    Field("icsmon.alert.id", "keyword", "Stable alert id: the same detector, endpoints, operation and first hit"
          " give the same id (document id in the store)."),
    Field("icsmon.alert.detector", "keyword", "Kind of detector: `rule`, `baseline`, `inventory`, `test`."),
    Field("icsmon.alert.severity", "keyword", "`low`, `medium`, `high` or `critical`."),
    Field("icsmon.alert.count", "long", "Hits aggregated into this alert."),
    Field("icsmon.alert.first_seen", "date", "Time of the first hit."),
    Field("icsmon.alert.last_seen", "date", "Time of the latest hit (also `@timestamp`)."),
    Field("icsmon.alert.version", "long", "Update counter: a store keeps the highest version of an alert."),
    Field("icsmon.alert.evidence", "object", "Triggering events (at most 10, the first and the latest), stored"
          " but not indexed.", array=True),
    Field("icsmon.triage.status", "keyword", "`open`, `acknowledged` or `closed`."),
    Field("icsmon.triage.assignee", "keyword", "Analyst the alert is assigned to."),
    Field("icsmon.triage.notes", "object", "Triage history: time, author, text, status and assignee changes.",
          array=True),
)


_REFERENCE_HEADER = """# icsmon alerts

Generated from `analyzer/alerts.py` (`ALERT_FIELDS`, `EVENT_KEY_FIELDS`); regenerate with
`python -c "from analyzer.alerts import markdown_reference as m; print(m(), end='')" > analyzer/ALERTS.md`.
The protocol events an alert is raised from are described in [sensor/EVENTS.md](../sensor/EVENTS.md).

An alert is one document in the alert store (`icsmon-alerts-*` in Elasticsearch, a table in the
embedded SQLite store). Repeated hits of the same detector on the same source, destination and
`ics.operation` within the aggregation window (300 s by default) update one alert: its count, last
seen time, version and evidence grow, and its id stays the same. The id is a hash of the detector,
that key and the time of the first hit, so replaying the same traffic gives the same ids and a store
that writes by id never holds an alert twice. A store keeps the highest `icsmon.alert.version` it
has seen, and an aggregation update never overwrites the triage fields an analyst has set.
"""


def markdown_reference() -> str:
    """The whole of analyzer/ALERTS.md: alert fields and the event fields copied onto alerts."""
    lines = [_REFERENCE_HEADER, "## Alert fields", "", "| field | type | meaning |", "|---|---|---|"]
    for f in ALERT_FIELDS:
        typ = f"{f.type}[]" if f.array else f.type
        lines.append(f"| `{f.name}` | {typ} | {f.doc} |")
    lines += ["", "Also on every alert: `@timestamp` (last hit), `event.kind: alert`, `event.category`,",
              "`event.dataset: icsmon.alert`, `event.start`/`event.end` (first and last hit).", "",
              "## Fields copied from the triggering event", "",
              "When present on the first event of an alert, these keep their event schema meaning:", ""]
    lines += [f"- `{name}`" for name in EVENT_KEY_FIELDS]
    lines += ["", "## Severity", "", "| severity | event.severity and default risk score |", "|---|---|"]
    lines += [f"| {name} | {score} |" for name, score in SEVERITIES.items()]
    return "\n".join(lines) + "\n"
