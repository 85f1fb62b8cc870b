"""The glue between the sensor and the stores: detectors -> aggregation -> delivery.

    Sensor sink ──▶ Analyzer ──▶ every Detector(event) ──▶ Detection ──▶ AlertAggregator
                       │                                                     │ new / updated Alert
                       │ (store_events)                                      ▼
                       └──────────── event Document ─────────────▶  deliver(Document), alert outputs

A :class:`Detector` is any callable taking one event (the flat dict the sensor
emits, times as epoch floats) and returning an iterable of
:class:`~analyzer.alerts.Detection` (empty for no match). Rules and baselines
plug in as detectors. A detector that raises is counted per detector and
skipped for that event; it never stops the sensor.

Alert documents: a new alert is handed on at once. Updates of an open alert
(the aggregator emits the same :class:`~analyzer.alerts.Alert` again with a
higher version) are coalesced: at most one document per alert every
``update_interval`` seconds (wall clock), checked as events come and, between
them, whenever the caller calls :meth:`Analyzer.tick` (``icsmon live`` does on a
quiet link), and the latest state of every alert with a pending update at
:meth:`Analyzer.flush` (end of input, shutdown). The
document id is the alert id and its version the alert version, so a store
keeps the newest and a flood of identical writes is one alert, not a flood of
writes. Each document handed on also goes to the ``alert_outputs`` (the
``--alerts`` JSON lines), so the last line of an id there is its final state.

Event documents (:func:`event_document`) get an id derived from the event
(sensor, time, packet number and place in the packet), so replaying the same
capture after a restart writes the same ids again.
"""

from __future__ import annotations

import hashlib
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from typing import IO, Any, Protocol

import orjson

from analyzer.alerts import Alert, AlertAggregator, Detection
from analyzer.stores import Document
from sensor.events import Timestamp, with_iso_times

__all__ = ["OPERATION_ALERTS", "AlertWriter", "Analyzer", "Detector", "OperationDetector", "RuleDetector",
           "alert_document", "event_document", "rule_detector"]

Event = dict[str, Any]
_ID_EXCLUDED = ("event.sequence", "icsmon.packet")


class Detector(Protocol):
    """Looks at one event; returns the detections it raises (usually none)."""

    def __call__(self, event: Mapping[str, Any]) -> Iterable[Detection]:
        ...


OPERATION_ALERTS: dict[str, tuple[str, str, str, tuple[str, ...], tuple[str, ...]]] = {
    # ics.operation: (detector id, title, severity, ATT&CK for ICS techniques, tactics)
    "write": ("icsmon-operation-write", "Write to a controller", "low", ("T0836",), ("Impair Process Control",)),
    "program_download": ("icsmon-operation-program-download", "Program download to a controller", "high",
                         ("T0843",), ("Lateral Movement",)),
    "mode_change": ("icsmon-operation-mode-change", "Controller operating mode change", "high", ("T0858",),
                    ("Execution", "Evasion")),
    "restart": ("icsmon-operation-restart", "Controller restart or shutdown command", "high", ("T0816",),
                ("Inhibit Response Function",)),
    "file_delete": ("icsmon-operation-file-delete", "File deleted on a controller", "medium", ("T0809",),
                    ("Inhibit Response Function",)),
}
"""The built-in operation detector's table: operations that change a controller, as data."""


class OperationDetector:
    """Raises a detection for every request whose ``ics.operation`` is in ``table``.

    A simple detector for tests and for sites that want every change to a controller visible
    without rules (aggregated per client, controller and operation, so steady polling writes are
    one alert); the default detector is the Sigma rule pack (:class:`RuleDetector`).
    """

    name = "operation"

    def __init__(self, table: Mapping[str, tuple[str, str, str, tuple[str, ...], tuple[str, ...]]] | None = None
                 ) -> None:
        self.table = dict(OPERATION_ALERTS if table is None else table)

    def __call__(self, event: Mapping[str, Any]) -> tuple[Detection, ...]:
        entry = self.table.get(event.get("ics.operation"))  # type: ignore[arg-type]
        if entry is None or event.get("ics.role", "request") != "request":
            return ()
        detector_id, title, severity, techniques, tactics = entry
        what = " ".join(str(x) for x in (event.get("network.protocol"), event.get("ics.function")) if x)
        description = f"{what or 'ICS'} request from {event.get('source.ip')} to {event.get('destination.ip')}"
        return (Detection(detector_type="rule", detector_id=detector_id, title=title,
                          severity=severity, event=event, techniques=techniques,  # type: ignore[arg-type]
                          tactics=tactics, description=description),)


class RuleDetector:
    """The Sigma rule engine (:mod:`analyzer.sigma`) as a detector.

    ``finish`` decides the correlations that wait for their window to close (``lt``/``eq``
    conditions) at the end of the input.
    """

    name = "rules"

    def __init__(self, engine: Any) -> None:
        self.engine = engine

    def __call__(self, event: Mapping[str, Any]) -> list[Detection]:
        return self.engine.match(event)  # type: ignore[no-any-return]

    def finish(self) -> list[Detection]:
        return self.engine.flush()  # type: ignore[no-any-return]


def rule_detector(paths: Iterable[Any], placeholders: Mapping[str, Iterable[str]] | None = None
                  ) -> tuple[RuleDetector, Any]:
    """Load the rules once: the detector and the rule set (whose ``errors`` the caller reports)."""
    from analyzer.sigma import Engine, RuleSet

    ruleset = RuleSet.load(list(paths), {k: list(v) for k, v in (placeholders or {}).items()})
    return RuleDetector(Engine(ruleset)), ruleset


def alert_document(alert: Alert) -> Document:
    """The store document of an alert's current state (a snapshot: later updates do not change it)."""
    body = alert.to_document()
    evidence = body.get("icsmon.alert.evidence")
    if evidence is not None:
        body["icsmon.alert.evidence"] = list(evidence)  # the alert keeps appending to its own list
    return Document(kind="alert", id=alert.id, body=body, version=alert.version)


def event_document(event: Mapping[str, Any], ordinal: int = 0) -> Document:
    """An event as a store document: ISO 8601 times and a stable id.

    A protocol event's id is ``<observer.id>:<time in µs>:<packet number>:<ordinal>`` (``ordinal``:
    its place among the stored events of that packet, so two identical PDUs in one segment stay two
    events); no hashing, it is on the sensor's path. Events without a packet number (connections,
    summaries) hash their whole content but ``event.sequence``. Replaying the same capture gives the
    same ids.
    """
    body = with_iso_times(event)  # type: ignore[arg-type]
    if body is event:
        body = dict(event)  # the document keeps its own copy
    packet = event.get("icsmon.packet")
    ts = event.get("@timestamp")
    if packet is not None and (ts.__class__ is Timestamp or ts.__class__ is float or ts.__class__ is int):
        doc_id = f"{event.get('observer.id')}:{round(ts * 1e6)}:{packet}:{ordinal}"
    else:
        key = orjson.dumps({k: v for k, v in body.items() if k not in _ID_EXCLUDED}, option=orjson.OPT_SORT_KEYS,
                           default=str)
        doc_id = hashlib.blake2b(key, digest_size=16).hexdigest()
    return Document("event", doc_id, body)


class AlertWriter:
    """Writes alert documents as JSON lines (``-`` for stdout), flushed per line so a reader can follow."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._own = path != "-"
        self._out: IO[bytes] = open(path, "wb") if self._own else sys.stdout.buffer
        self.written = 0

    def __call__(self, doc: Document) -> None:
        line = dict(doc.body)
        line["_id"] = doc.id
        self._out.write(orjson.dumps(line, option=orjson.OPT_APPEND_NEWLINE, default=str))
        self._out.flush()
        self.written += 1

    def close(self) -> None:
        if self._own:
            self._out.close()
        else:
            self._out.flush()


class Analyzer:
    """Runs ``detectors`` on every event, aggregates their detections into alerts and hands the
    documents to ``deliver`` (e.g. :meth:`analyzer.delivery.Delivery.put`) and ``alert_outputs``.

    Use the instance as (part of) the sensor's sink. With ``store_events`` every event it sees is
    also delivered; to deliver only what the volume filter keeps, leave it off and put
    :meth:`deliver_event` behind the filter instead.
    """

    def __init__(self, detectors: Iterable[Detector] = (), deliver: Callable[[Document], None] | None = None,
                 alert_outputs: Iterable[Callable[[Document], None]] = (), *, store_events: bool = False,
                 window: float = 300.0, max_open: int = 100_000, update_interval: float = 1.0,
                 assets: Callable[[str | None], str | None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.detectors = list(detectors)
        self.deliver = deliver
        self.alert_outputs = list(alert_outputs)
        self.store_events = store_events
        self.update_interval = update_interval
        self.aggregator = AlertAggregator(self._emit, window=window, max_open=max_open, assets=assets)
        self._clock = clock
        self._dirty: dict[str, Alert] = {}
        self._next_flush = clock() + update_interval
        self._packet: Any = None
        self._ordinal = 0
        self.events = 0
        self.detections = 0
        self.events_delivered = 0
        self.alert_documents = 0
        self.detector_errors: dict[str, int] = {}
        self.last_detector_error: str | None = None

    def __call__(self, event: Event) -> None:
        self.events += 1
        for detector in self.detectors:
            try:
                found = detector(event)
                if found:
                    for detection in found:
                        self.detections += 1
                        self.aggregator.add(detection)
            except Exception as exc:  # noqa: BLE001 - one broken detector must not stop the others
                name = getattr(detector, "name", None) or getattr(detector, "__name__", type(detector).__name__)
                self.detector_errors[name] = self.detector_errors.get(name, 0) + 1
                self.last_detector_error = f"{name}: {type(exc).__name__}: {exc}"
        if self.store_events:
            self.deliver_event(event)
        if self._dirty and self._clock() >= self._next_flush:  # tick(), inlined: once per event
            self.flush()

    def tick(self) -> None:
        """Hand on pending alert updates once the update interval has passed. Events do this as they
        come; a caller calls it when none come (a quiet live link), so updates are not held back."""
        if self._dirty and self._clock() >= self._next_flush:
            self.flush()

    def deliver_event(self, event: Event) -> None:
        if self.deliver is not None:
            packet = event.get("icsmon.packet")
            if packet is not None and packet == self._packet:
                self._ordinal += 1
            else:
                self._packet, self._ordinal = packet, 0
            self.deliver(event_document(event, self._ordinal))
            self.events_delivered += 1

    def _emit(self, alert: Alert) -> None:
        if alert.version == 1:
            self._dirty.pop(alert.id, None)
            self._hand_on(alert_document(alert))
        else:
            self._dirty[alert.id] = alert

    def _hand_on(self, doc: Document) -> None:
        self.alert_documents += 1
        if self.deliver is not None:
            self.deliver(doc)
        for output in self.alert_outputs:
            output(doc)

    def finish(self) -> None:
        """End of input: detections that wait for the end (closing correlation windows), then flush."""
        for detector in self.detectors:
            finish = getattr(detector, "finish", None)
            if finish is None:
                continue
            try:
                for detection in finish():
                    self.detections += 1
                    self.aggregator.add(detection)
            except Exception as exc:  # noqa: BLE001 - as in __call__
                name = getattr(detector, "name", type(detector).__name__)
                self.detector_errors[name] = self.detector_errors.get(name, 0) + 1
                self.last_detector_error = f"{name}: {type(exc).__name__}: {exc}"
        self.flush()

    def flush(self) -> None:
        """Hand on the latest state of every alert with a pending update."""
        dirty, self._dirty = self._dirty, {}
        for alert in dirty.values():
            self._hand_on(alert_document(alert))
        self._next_flush = self._clock() + self.update_interval

    def stats(self) -> dict[str, Any]:
        return {
            "events": self.events,
            "detectors": len(self.detectors),
            "detections": self.detections,
            "alerts_raised": self.aggregator.raised,
            "alerts_updated": self.aggregator.updated,
            "alert_documents": self.alert_documents,
            "events_delivered": self.events_delivered,
            "detector_errors": dict(self.detector_errors),
        }
