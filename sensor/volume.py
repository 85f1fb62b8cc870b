"""Event volume control between the sensor and the event store.

A plant's polling produces millions of identical reads a day. Detection (rules,
baselines) must still see every PDU, so nothing here sits in front of the
analyzer: :class:`VolumeFilter` wraps only the sink that stores or writes
events. Per protocol it keeps every PDU (``all``), everything except routine
polling (``no_routine``) or no protocol event at all (``none``); flow records
and decode errors always pass.

*Routine* means a successful read or a periodic/spontaneous report: an event
whose ``ics.operation`` is ``read`` or ``report`` and that is not an error
(no ``error`` in ``event.type``, ``ics.status`` absent or ``ok``); also the
keep-alives and acknowledgements a dissector lists in ``routine_actions``
(IEC 104 S frames and test frames, cyclic CIP I/O...).

With summaries on, each event a setting drops is folded into an open summary
keyed on protocol, client, server, VLAN, unit, function and address range
(requests and their responses fold together; a summary spans connections). A
summary closes when the capture clock passes the end of its interval (or at
:meth:`VolumeFilter.flush`) and becomes one ``icsmon.summary`` event with the
count, first and last time, the value range and the number of errors it
absorbed. Open summaries are capped; beyond the cap the oldest is emitted
early, so memory stays bounded whatever the traffic.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

from sensor.schema import DATASET_SUMMARY
from sensor.settings import VolumeSettings

__all__ = ["VolumeFilter", "is_routine"]

Event = dict[str, Any]
_ROUTINE_OPERATIONS = frozenset({"read", "report"})
# Copied from the first folded event onto the summary: the flow and the polled point.
# A summary spans connections: the client's port and the flow id are left out.
_KEPT_FIELDS = ("source.ip", "source.mac", "destination.ip", "destination.port", "destination.mac",
                "network.transport", "network.protocol", "network.vlan.id", "observer.id", "observer.hostname",
                "observer.ingress.interface.name", "observer.type", "observer.product", "ics.operation",
                "ics.function", "ics.unit", "ics.address_start", "ics.address_count", "ics.tag")


def is_routine(event: Event) -> bool:
    """A successful read or report without anomaly, or a keep-alive its dissector lists as routine."""
    if "error" in event.get("event.type", ()):
        return False
    status = event.get("ics.status")
    if status is not None and status != "ok":
        return False
    if event.get("ics.operation") in _ROUTINE_OPERATIONS:
        return True
    extra = _routine_actions().get(event.get("network.protocol"))  # type: ignore[arg-type]
    return extra is not None and event.get("event.action") in extra


@cache
def _routine_actions() -> dict[str, frozenset[str]]:
    """Per protocol, the actions its dissector declares routine (``Dissector.routine_actions``)."""
    from sensor.protocols import registry

    return {name: d.routine_actions for name, d in registry().items() if d.routine_actions}


class _Summary:
    __slots__ = ("first_event", "first", "last", "count", "requests", "responses", "errors", "low", "high", "ends")

    def __init__(self, event: Event, ts: float, ends: float) -> None:
        self.first_event = event
        self.first = self.last = ts
        self.count = self.requests = self.responses = self.errors = 0
        self.low: float | None = None
        self.high: float | None = None
        self.ends = ends

    def add(self, event: Event, ts: float) -> None:
        self.count += 1
        role = event.get("ics.role")
        if role == "request":
            self.requests += 1
        elif role == "response":
            self.responses += 1
        if ts > self.last:
            self.last = ts
        if "error" in event.get("event.type", ()):
            self.errors += 1
        values = event.get("ics.values")
        if values:
            low, high = min(values), max(values)
            if self.low is None or low < self.low:
                self.low = low
            if self.high is None or high > self.high:
                self.high = high

    def event(self, interval: float) -> Event:
        first = self.first_event
        out: Event = {key: first[key] for key in _KEPT_FIELDS if key in first}
        out.update({
            "@timestamp": self.last,
            "event.kind": "event",
            "event.category": ("network",),
            "event.type": ("protocol", "info"),
            "event.dataset": DATASET_SUMMARY,
            "event.action": "summary",
            "event.start": self.first,
            "event.end": self.last,
            "icsmon.summary.count": self.count,
            "icsmon.summary.requests": self.requests,
            "icsmon.summary.responses": self.responses,
            "icsmon.summary.errors": self.errors,
            "icsmon.summary.interval": interval,
        })
        if self.low is not None:
            out["icsmon.summary.values_min"] = self.low
            out["icsmon.summary.values_max"] = self.high
        return out


class VolumeFilter:
    """A sink wrapper: passes, drops or folds each event according to :class:`VolumeSettings`."""

    def __init__(self, settings: VolumeSettings, downstream: Callable[[Event], None]) -> None:
        self.settings = settings
        self.downstream = downstream
        self._verbosity = dict(settings.protocols)
        self._default = settings.default
        self._summaries: dict[tuple[Any, ...], _Summary] = {}
        self._next_close = float("inf")
        # Everything kept and nothing folded: pass events straight through.
        self._passthrough = self._default == "all" and not settings.summary and all(
            level == "all" for level in self._verbosity.values())
        self.passed = 0
        self.dropped = 0
        self.folded = 0
        self.summaries = 0
        self.early_summaries = 0

    def __call__(self, event: Event) -> None:
        if self._passthrough:
            self.passed += 1
            self.downstream(event)
            return
        protocol = event.get("network.protocol")
        dataset = event.get("event.dataset", "")
        ts = event.get("@timestamp")
        if isinstance(ts, int | float) and ts >= self._next_close:
            self._close_due(ts)
        level = self._verbosity.get(protocol, self._default) if protocol else "all"  # type: ignore[arg-type]
        if level == "all" or dataset in _ALWAYS_KEPT or (level == "no_routine" and not is_routine(event)):
            self.passed += 1
            self.downstream(event)
            return
        if not self.settings.summary:
            self.dropped += 1
            return
        self.folded += 1
        self._fold(event, ts if isinstance(ts, int | float) else 0.0)

    def _fold(self, event: Event, ts: float) -> None:
        key = (event.get("network.protocol"), event.get("source.ip"), event.get("destination.ip"),
               event.get("network.vlan.id"), event.get("ics.unit"), event.get("ics.function"),
               event.get("ics.address_start"), event.get("ics.address_count"))
        summary = self._summaries.get(key)
        if summary is None:
            if len(self._summaries) >= self.settings.max_summaries:
                oldest = next(iter(self._summaries))
                self._emit(self._summaries.pop(oldest))
                self.early_summaries += 1
            interval = self.settings.summary_interval
            ends = (ts // interval + 1) * interval
            summary = self._summaries[key] = _Summary(event, ts, ends)
            if ends < self._next_close:
                self._next_close = ends
        summary.add(event, ts)

    def _close_due(self, now: float) -> None:
        due = [key for key, s in self._summaries.items() if s.ends <= now]
        for key in due:
            self._emit(self._summaries.pop(key))
        self._next_close = min((s.ends for s in self._summaries.values()), default=float("inf"))

    def _emit(self, summary: _Summary) -> None:
        self.summaries += 1
        self.downstream(summary.event(self.settings.summary_interval))

    def flush(self) -> None:
        """End of input: emit every open summary."""
        for summary in self._summaries.values():
            self._emit(summary)
        self._summaries.clear()
        self._next_close = float("inf")

    def stats(self) -> dict[str, int]:
        return {"passed": self.passed, "dropped": self.dropped, "folded": self.folded,
                "summaries": self.summaries, "early_summaries": self.early_summaries}


_ALWAYS_KEPT = frozenset({"icsmon.conn", "icsmon.decode_error", DATASET_SUMMARY})
