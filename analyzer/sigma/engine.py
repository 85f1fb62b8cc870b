"""The real-time evaluator: events in, :class:`~analyzer.alerts.Detection` objects out.

``Engine(ruleset).match(event)`` asks the rule index which rules can match, runs their compiled
predicates, emits a detection for every matching rule that is output (rules only counted by a
correlation are not), and feeds the matches to the correlation rules that reference them;
a correlation that fires adds its own detection with the related events.

``engine.reload(new_ruleset)`` swaps the rules in one assignment (a ``match`` running in another
thread sees either the old or the new rules, never a mix) and keeps the state of every
correlation rule whose definition -- and the definitions of the rules it counts -- did not
change. Added rules start empty; removed rules drop their state.

``stats`` counts events, predicate evaluations, matches and detections; :meth:`Engine.snapshot`
adds per-correlation group counts and evictions.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from analyzer.alerts import Detection
from analyzer.sigma.correlation import MAX_GROUPS, MAX_RELATED, CorrelationState, Firing
from analyzer.sigma.index import RuleIndex
from analyzer.sigma.loader import Correlation, Rule, RuleSet
from sensor.events import Timestamp

__all__ = ["Engine", "event_time"]


def event_time(event: Mapping[str, Any]) -> float:
    """``@timestamp`` as epoch seconds: a float in the live stream, ISO 8601 text in stored documents."""
    ts = event.get("@timestamp")
    cls = ts.__class__
    if cls is Timestamp or cls is float or cls is int:
        return float(ts)  # type: ignore[arg-type]
    if cls is str:
        try:
            parsed = datetime.fromisoformat(ts)  # type: ignore[arg-type]
        except ValueError:
            return 0.0
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.timestamp()
    return 0.0


@dataclass(slots=True)
class _Corr:
    meta: Correlation
    state: CorrelationState
    parents: tuple[tuple[_Corr, int], ...] = ()  # correlations that reference this one


@dataclass(slots=True)
class _Snapshot:
    ruleset: RuleSet
    index: RuleIndex
    feeds: dict[str, tuple[tuple[_Corr, int], ...]]  # rule key -> (correlation, ref index)
    correlations: tuple[_Corr, ...]


class Engine:
    """Evaluates a :class:`RuleSet` on a stream of flat events."""

    def __init__(self, ruleset: RuleSet, max_groups: int = MAX_GROUPS, max_related: int = MAX_RELATED) -> None:
        self.max_groups = max_groups
        self.max_related = max_related
        self.stats: dict[str, int] = {
            "events": 0, "candidates": 0, "matches": 0, "detections": 0, "correlation_detections": 0,
            "predicate_errors": 0, "reloads": 0, "rules": 0, "correlations": 0,
        }
        self._snap = self._build(ruleset, {})

    # -- building ----------------------------------------------------------------------------------

    def _build(self, ruleset: RuleSet, keep: dict[str, CorrelationState]) -> _Snapshot:
        rules = [r for r in ruleset.rules if isinstance(r, Rule)]
        corr_metas = [c for c in ruleset.rules if isinstance(c, Correlation)]
        corrs: dict[str, _Corr] = {}
        for meta in corr_metas:
            assert meta.spec is not None
            state = keep.get(meta.fingerprint)
            if state is None or state.spec != meta.spec:
                state = CorrelationState(meta.spec, self.max_groups, self.max_related)
            corrs[meta.key] = _Corr(meta, state)
        feeds: dict[str, list[tuple[_Corr, int]]] = {}
        for corr in corrs.values():
            assert corr.meta.spec is not None
            for i, ref in enumerate(corr.meta.spec.refs):
                feeds.setdefault(ref, []).append((corr, i))
        for key, corr in corrs.items():
            corr.parents = tuple(feeds.get(key, ()))
        self.stats["rules"] = len(rules)
        self.stats["correlations"] = len(corrs)
        return _Snapshot(ruleset, RuleIndex(rules), {k: tuple(v) for k, v in feeds.items()}, tuple(corrs.values()))

    @property
    def ruleset(self) -> RuleSet:
        return self._snap.ruleset

    def reload(self, ruleset: RuleSet) -> dict[str, int]:
        """Swap in ``ruleset``; correlation state survives for unchanged correlation rules."""
        old = self._snap
        keep = {c.meta.fingerprint: c.state for c in old.correlations}
        old_prints = {r.fingerprint for r in old.ruleset.rules}
        new_prints = {r.fingerprint for r in ruleset.rules}
        snap = self._build(ruleset, keep)
        self._snap = snap  # one assignment: match() sees the old or the new snapshot, never a mix
        self.stats["reloads"] += 1
        kept = sum(1 for c in snap.correlations if any(c.state is o.state for o in old.correlations))
        return {"rules": len(ruleset.rules), "unchanged": len(old_prints & new_prints),
                "added_or_changed": len(new_prints - old_prints), "removed_or_changed": len(old_prints - new_prints),
                "correlation_states_kept": kept, "errors": len(ruleset.errors)}

    # -- matching ----------------------------------------------------------------------------------

    def match(self, event: Mapping[str, Any]) -> list[Detection]:
        """Detections raised by one event (plain rules first, then correlations), in rule order."""
        snap = self._snap
        stats = self.stats
        stats["events"] += 1
        candidates = snap.index.candidates(event)
        if not candidates:
            return []
        stats["candidates"] += len(candidates)
        out: list[Detection] = []
        fed: dict[int, tuple[_Corr, list[int]]] | None = None
        for rule in candidates:
            try:
                hit = rule.predicate(event)
            except Exception:  # noqa: BLE001 - a predicate must never stop the stream; counted
                stats["predicate_errors"] += 1
                continue
            if not hit:
                continue
            stats["matches"] += 1
            if rule.output:
                out.append(rule.detection(event))
            targets = snap.feeds.get(rule.key)
            if targets:
                if fed is None:
                    fed = {}
                for corr, index in targets:
                    entry = fed.get(id(corr))
                    if entry is None:
                        fed[id(corr)] = (corr, [index])
                    else:
                        entry[1].append(index)
        stats["detections"] += len(out)
        if fed:
            ts = event_time(event)
            for corr, indices in fed.values():
                for firing in corr.state.feed(indices, event, ts):
                    out.extend(self._fired(corr, firing, ts))
        return out

    def _fired(self, corr: _Corr, firing: Firing, ts: float) -> list[Detection]:
        event, related = firing
        out: list[Detection] = []
        if corr.meta.output:
            out.append(corr.meta.detection(event, related))
            self.stats["correlation_detections"] += 1
        for parent, index in corr.parents:  # correlations of correlations
            for parent_firing in parent.state.feed([index], event, ts):
                out.extend(self._fired(parent, parent_firing, ts))
        return out

    def advance(self, now: float) -> list[Detection]:
        """Event time moved to ``now`` without events (idle link): close due correlation windows."""
        out: list[Detection] = []
        for corr in self._snap.correlations:
            for firing in corr.state.advance(now):
                out.extend(self._fired(corr, firing, now))
        return out

    def flush(self) -> list[Detection]:
        """End of the stream (end of a capture): close every open correlation window."""
        out: list[Detection] = []
        for corr in self._snap.correlations:
            for firing in corr.state.flush():
                out.extend(self._fired(corr, firing, event_time(firing[0])))
        return out

    # -- introspection -----------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Counters plus index shape and per-correlation state sizes."""
        snap = self._snap
        return {**self.stats, "index": snap.index.stats(),
                "correlation_state": {c.meta.rule_id: c.state.stats() for c in snap.correlations}}

    def explain(self, rule_id: str) -> str | None:
        """The generated predicate source of a rule (for ``icsmon rules test``)."""
        rule = self._snap.ruleset.get(rule_id)
        return rule.source if isinstance(rule, Rule) else None
