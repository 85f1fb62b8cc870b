"""Sigma correlation rules evaluated on the event stream, with bounded state.

A correlation rule counts the matches of other rules per group (the ``group-by`` fields) within
``timespan`` seconds of event time:

``event_count``       matches in the window, e.g. ``gte: 20`` writes from one source in 60 s;
``value_count``       distinct values of ``condition.field``, e.g. 20 Modbus unit ids in 60 s;
``temporal``          distinct referenced rules seen (default: all of them), in any order;
``temporal_ordered``  every referenced rule, in the order listed, e.g. S7 stop then download.

Two evaluation modes, chosen by the condition's operator:

* ``gt``/``gte`` (and temporal_ordered) only grow with more events, so a **sliding window**
  ending at each event is checked as the event arrives and fires at once; the group then starts
  over, so one burst raises one detection, not one per further event.
* ``lt``/``lte``/``eq``/``neq`` can only be decided once the window is over: **tumbling windows**
  open at a group's first event and close ``timespan`` later, when the stream (event time)
  passes their end, or on :meth:`CorrelationState.flush` at the end of a capture. A group that
  saw no event has no window: "fewer than N" fires only for groups that were seen.

Bounds: at most ``max_groups`` groups per rule (least recently used first out, counted in
``evicted``); per group at most ``need`` entries for sliding windows (the count that decides
the condition) and at most ``count + 1`` distinct values for tumbling ``value_count``; at most
``max_related`` events kept as evidence per group. Nothing else grows with traffic.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from analyzer.sigma.modifiers import key

__all__ = ["CorrelationSpec", "CorrelationState", "Firing", "MAX_GROUPS", "MAX_RELATED"]

MAX_GROUPS = 10_000
"""Default cap on open groups per correlation rule."""
MAX_RELATED = 10
"""Default cap on evidence events kept per group (the alert keeps 10 as well)."""

Event = Mapping[str, Any]
Firing = tuple[Event, tuple[Event, ...]]
"""What a correlation raises: the event that completed it and the related (earlier) events."""

_OPS: dict[str, Callable[[int, int], bool]] = {
    "gt": lambda n, c: n > c, "gte": lambda n, c: n >= c, "lt": lambda n, c: n < c,
    "lte": lambda n, c: n <= c, "eq": lambda n, c: n == c, "neq": lambda n, c: n != c,
}


@dataclass(frozen=True, slots=True)
class CorrelationSpec:
    """A compiled correlation rule (immutable; the state lives in :class:`CorrelationState`)."""

    type: str  # event_count | value_count | temporal | temporal_ordered
    refs: tuple[str, ...]  # keys of the referenced rules, in the rule's order
    group_fields: tuple[tuple[str, ...], ...]  # per referenced rule: the event fields of the group-by
    timespan: float  # seconds
    op: str  # gt gte lt lte eq neq
    count: int
    value_fields: tuple[str | None, ...] = ()  # value_count: per referenced rule, the counted field

    @property
    def sliding(self) -> bool:
        return self.type == "temporal_ordered" or self.op in ("gt", "gte")

    @property
    def need(self) -> int:
        """Sliding windows: how many entries decide the condition."""
        if self.type == "temporal_ordered":
            return len(self.refs)
        return self.count + 1 if self.op == "gt" else max(self.count, 1)


class _Group:
    __slots__ = ("start", "last", "entries", "sample", "count", "stages")

    def __init__(self, ts: float) -> None:
        self.start = ts  # tumbling: window start
        self.last = ts  # newest event time seen in the group
        self.entries: Any = None  # deque / OrderedDict / dict, per type
        self.sample: list[Event] = []  # evidence, at most max_related
        self.count = 0  # tumbling event_count
        self.stages: list[tuple[float, tuple[Event, ...]] | None] = []  # temporal_ordered


class CorrelationState:
    """The groups of one correlation rule. Feed it the matches of its referenced rules."""

    def __init__(self, spec: CorrelationSpec, max_groups: int = MAX_GROUPS, max_related: int = MAX_RELATED) -> None:
        self.spec = spec
        self.max_groups = max_groups
        self.max_related = max_related
        self.groups: OrderedDict[tuple[Any, ...], _Group] = OrderedDict()
        self.clock = float("-inf")  # newest event time seen
        self.evicted = 0
        self.fired = 0
        self._test = _OPS[spec.op]

    # -- helpers -----------------------------------------------------------------------------------

    def _group_key(self, ref_index: int, event: Event) -> tuple[Any, ...]:
        get = event.get
        values = []
        for f in self.spec.group_fields[ref_index]:
            value = get(f)
            values.append(value if value is None or value.__class__ in _SCALARS else _group_value(value))
        return tuple(values)

    def _keep(self, group: _Group, event: Event) -> None:
        sample = group.sample
        if len(sample) < self.max_related:
            sample.append(event)
        else:  # keep the first half, slide the rest
            del sample[self.max_related // 2]
            sample.append(event)

    def _fire(self, event: Event, related: Sequence[Event]) -> Firing:
        self.fired += 1
        return event, tuple(e for e in related if e is not event)[-self.max_related:]

    def _new_group(self, gkey: tuple[Any, ...], ts: float) -> _Group:
        group = _Group(ts)
        self.groups[gkey] = group
        if len(self.groups) > self.max_groups:
            self.groups.popitem(last=False)
            self.evicted += 1
        return group

    # -- feeding -----------------------------------------------------------------------------------

    def feed(self, ref_indices: Sequence[int], event: Event, ts: float) -> list[Firing]:
        """One event that matched the referenced rules at ``ref_indices`` (any order)."""
        if ts > self.clock:
            self.clock = ts
        fired = self.advance(self.clock) if not self.spec.sliding else []
        by_group: dict[tuple[Any, ...], list[int]] = {}
        for i in ref_indices:
            by_group.setdefault(self._group_key(i, event), []).append(i)
        for gkey, indices in by_group.items():
            result = (self._feed_sliding(gkey, indices, event, ts) if self.spec.sliding
                      else self._feed_tumbling(gkey, indices, event, ts))
            if result is not None:
                fired.append(result)
        return fired

    def _feed_sliding(self, gkey: tuple[Any, ...], indices: list[int], event: Event, ts: float) -> Firing | None:
        spec, groups = self.spec, self.groups
        horizon = self.clock - spec.timespan
        # Drop idle groups from the cold end (least recently used first).
        while groups:
            oldest_key = next(iter(groups))
            if groups[oldest_key].last >= horizon or oldest_key == gkey:
                break
            del groups[oldest_key]
        group = groups.get(gkey)
        if group is None:
            group = self._new_group(gkey, ts)
        else:
            groups.move_to_end(gkey)
        if ts > group.last:
            group.last = ts
        kind = spec.type
        if kind == "event_count":
            entries = group.entries
            if entries is None:
                entries = group.entries = deque(maxlen=spec.need)
            while entries and entries[0] < horizon:
                entries.popleft()
            entries.append(ts)
            self._keep(group, event)
            if len(entries) >= spec.need:
                del groups[gkey]
                return self._fire(event, group.sample)
            return None
        if kind == "value_count":
            values = group.entries
            if values is None:
                values = group.entries = OrderedDict()
            while values:  # oldest first: values move to the end when seen again
                oldest, seen_at = next(iter(values.items()))
                if seen_at >= horizon:
                    break
                del values[oldest]
            added = False
            for i in indices:
                for value in _values(event.get(spec.value_fields[i])):
                    if value not in values:
                        added = True
                    values[value] = ts
                    values.move_to_end(value)
            if added:
                self._keep(group, event)
            if len(values) >= spec.need:
                del groups[gkey]
                return self._fire(event, group.sample)
            return None
        if kind == "temporal":
            seen = group.entries
            if seen is None:
                seen = group.entries = {}
            for stale in [r for r, (t, _e) in seen.items() if t < horizon]:
                del seen[stale]
            for i in indices:
                seen[i] = (ts, event)
            if len(seen) >= spec.need:
                del groups[gkey]
                related = [e for _t, e in sorted(seen.values(), key=lambda te: te[0])]
                return self._fire(event, related)
            return None
        # temporal_ordered: stages[i] = (start time, events) of the latest-starting chain that has
        # completed rules 0..i; a later start is kept because it stays inside the window longer.
        stages = group.stages
        if not stages:
            stages.extend([None] * len(spec.refs))
        for i, stage in enumerate(stages):
            if stage is not None and stage[0] < horizon:
                stages[i] = None
        last = len(spec.refs) - 1
        for i in sorted(indices, reverse=True):  # one event advances one step, not several
            if i == 0:
                stages[0] = (ts, (event,))
            else:
                prev = stages[i - 1]
                if prev is None or ts - prev[0] > spec.timespan:
                    continue
                current = stages[i]
                if current is None or prev[0] >= current[0]:
                    stages[i] = (prev[0], (*prev[1], event)[-self.max_related:])
            if i == last and stages[last] is not None:
                chain = stages[last]
                del groups[gkey]
                return self._fire(event, chain[1] if chain else ())
        return None

    def _feed_tumbling(self, gkey: tuple[Any, ...], indices: list[int], event: Event, ts: float) -> Firing | None:
        spec = self.spec
        group = self.groups.get(gkey)
        if group is None:
            group = self._new_group(gkey, ts)
        if ts > group.last:
            group.last = ts
        if spec.type == "event_count":
            group.count += 1
            self._keep(group, event)
        elif spec.type == "value_count":
            values = group.entries
            if values is None:
                values = group.entries = set()
            before = len(values)
            for i in indices:
                for value in _values(event.get(spec.value_fields[i])):
                    if len(values) > spec.count:  # enough to decide any operator
                        break
                    values.add(value)
            if len(values) > before:
                self._keep(group, event)
        else:  # temporal
            seen = group.entries
            if seen is None:
                seen = group.entries = set()
            seen.update(indices)
            self._keep(group, event)
        return None

    # -- closing tumbling windows ------------------------------------------------------------------

    def _measure(self, group: _Group) -> int:
        if self.spec.type == "event_count":
            return group.count
        return len(group.entries or ())

    def advance(self, now: float) -> list[Firing]:
        """Close the tumbling windows that ended before ``now`` (event time); sliding: drop idle groups."""
        fired: list[Firing] = []
        horizon = now - self.spec.timespan
        groups = self.groups
        while groups:
            gkey = next(iter(groups))
            group = groups[gkey]
            if self.spec.sliding:
                if group.last >= horizon:
                    break
                del groups[gkey]
                continue
            if group.start >= horizon:
                break
            del groups[gkey]
            if self._test(self._measure(group), self.spec.count) and group.sample:
                fired.append(self._fire(group.sample[-1], group.sample))
        return fired

    def flush(self) -> list[Firing]:
        """End of the stream: close every open tumbling window (sliding ones just end)."""
        fired: list[Firing] = []
        if not self.spec.sliding:
            for group in self.groups.values():
                if self._test(self._measure(group), self.spec.count) and group.sample:
                    fired.append(self._fire(group.sample[-1], group.sample))
        self.groups.clear()
        return fired

    def stats(self) -> dict[str, int]:
        return {"groups": len(self.groups), "evicted": self.evicted, "fired": self.fired}


_SCALARS = (str, int, float, bool)


def _group_value(value: Any) -> Any:
    if value is None or value.__class__ in (str, int, float, bool):
        return value
    if value.__class__ in (list, tuple):
        return tuple(_group_value(v) for v in value)
    return str(value)


def _values(value: Any) -> list[str]:
    if value is None:
        return []
    if value.__class__ in (list, tuple):
        return [key(v) for v in value if v is not None and v.__class__ not in (list, tuple, dict)]
    if value.__class__ is dict:
        return []
    return [key(value)]
