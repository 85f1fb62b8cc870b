"""Rule index: which rules can possibly match an event, without evaluating every rule.

Two levels, both built from tests every match of a rule must pass (the compiler's
``necessary`` tests):

1. **Route** by logsource: a ``service: modbus`` rule sits under ``network.protocol = modbus``,
   a ``category: flow`` rule under ``event.dataset = icsmon.conn``; product-only rules under no
   route. An event looks up one group per route field plus the unrouted group.
2. **One selective test** within a group, the most selective the rule has (estimated from the
   field's number of distinct values, :data:`FIELD_CARDINALITY`):

   * equality -- the rule is filed under each value it accepts (``modbus.function`` in a few
     values); the event looks its own value up (normalised with :func:`~analyzer.sigma.modifiers.key`);
   * prefix -- ``startswith`` and wildcards with a literal start: filed under the prefix, the
     event looks up the start of its value for each prefix length in use;
   * numeric range -- ``gte``/``lt`` pairs such as a register range: filed under each bucket of
     :data:`RANGE_BUCKET` values the range covers, the event looks up its value's bucket.

   Rules with nothing usable (only regex, CIDR, ``not``, keywords...) are evaluated for every
   event of their group.

So the work per event is a handful of dict lookups plus the predicates of the rules that share
the event's values; it grows with how many rules look at the same values, not with the rule
count. A rule is filed once; the predicate still checks everything, the index only skips.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from operator import attrgetter
from typing import Any, Protocol

from analyzer.sigma.modifiers import key
from analyzer.sigma.modifiers import number as to_number  # `number` names a local below

__all__ = ["COMMON_VALUES", "FIELD_CARDINALITY", "IndexedRule", "RANGE_BUCKET", "RARE_VALUES", "RuleIndex",
           "UNSELECTIVE_FIELDS"]

UNSELECTIVE_FIELDS = frozenset({
    "event.kind", "event.category", "event.type", "event.outcome", "network.transport", "network.type",
    "network.direction", "ics.role", "ics.status", "observer.type", "observer.product",
})
"""Fields whose few values most events share: filing rules under them would not skip anything."""

RARE_VALUES: dict[str, frozenset[str]] = {
    "event.type": frozenset({"error"}),  # anomalies and decode errors: a small share of the events
    "ics.role": frozenset({"unsolicited"}),
}
"""Values of unselective fields that few events carry: a rule requiring one of them is filed under it."""
_RARE_CARDINALITY = 100  # as selective as a test on a field with about this many values

COMMON_VALUES: dict[str, frozenset[str]] = {
    "ics.operation": frozenset({"read", "report", "session", "diagnostic", "other"}),
}
"""The values most events of a field carry (polling): a test on the field's other values is ten times as
selective as the field's cardinality alone says."""

FIELD_CARDINALITY: dict[str, int] = {
    "network.protocol": 10, "event.dataset": 12, "ics.operation": 23, "event.action": 200, "ics.function": 200,
    "ics.unit": 256, "modbus.unit_id": 256, "modbus.function": 20, "modbus.function_code": 20,
    "ics.address_start": 65536, "ics.address_count": 2000, "ics.tag": 65536, "source.ip": 10_000,
    "destination.ip": 10_000, "source.port": 65536, "destination.port": 1000,
}
"""Rough number of distinct values per field, to estimate how selective a test is."""
_DEFAULT_CARDINALITY = 50  # a protocol's function/service/type names
RANGE_BUCKET = 256  # width of a numeric range bucket (addresses: 256 buckets in 16 bits)
_RANGE_DOMAIN = 65536.0  # assumed span of a numeric field, to estimate a range's selectivity
_MAX_ENTRIES = 64  # a rule needing more keys, prefixes or buckets than this is not filed by that test


class IndexedRule(Protocol):
    ordinal: int
    route: tuple[str, str] | None
    necessary: Sequence[tuple[str, str, Any]]


def _cardinality(field: str) -> int:
    return FIELD_CARDINALITY.get(field, _DEFAULT_CARDINALITY)


def _buckets(bounds: tuple[float | None, float | None]) -> range | None:
    low, high = bounds
    if low is None or high is None or high < low:
        return None
    first, last = int(low // RANGE_BUCKET), int(high // RANGE_BUCKET)
    return range(first, last + 1) if last - first < _MAX_ENTRIES else None


class _Group:
    __slots__ = ("always", "eq", "prefix", "range")

    def __init__(self) -> None:
        self.always: list[Any] = []
        self.eq: dict[str, dict[str, list[Any]]] = {}
        self.prefix: dict[str, dict[str, list[Any]]] = {}  # field -> prefix -> rules
        self.range: dict[str, dict[int, list[Any]]] = {}  # field -> bucket -> rules

    def freeze(self) -> tuple[Any, ...]:
        prefixes = tuple((f, tuple(sorted({len(p) for p in table})), table) for f, table in self.prefix.items())
        return (tuple(self.always), tuple(self.eq.items()), prefixes, tuple(self.range.items()))


class RuleIndex:
    """Files rules once at build time; :meth:`candidates` returns those worth evaluating."""

    def __init__(self, rules: Sequence[IndexedRule]) -> None:
        groups: dict[tuple[str, str], _Group] = {}
        generic = _Group()
        self.filed = {"eq": 0, "prefix": 0, "range": 0, "always": 0}
        for rule in rules:
            group = generic if rule.route is None else groups.setdefault(rule.route, _Group())
            choice = self._choose(rule)
            if choice is None:
                group.always.append(rule)
                self.filed["always"] += 1
                continue
            kind, field, entries = choice
            table: dict[Any, list[Any]] = getattr(group, kind).setdefault(field, {})
            for entry in entries:
                table.setdefault(entry, []).append(rule)
            self.filed[kind] += 1
        self._route_fields = tuple(sorted({f for f, _ in groups}))
        self._groups = {route: g.freeze() for route, g in groups.items()}
        self._generic = generic.freeze()

    @staticmethod
    def _choose(rule: IndexedRule) -> tuple[str, str, Any] | None:
        """The most selective test of the rule: (kind, field, entries to file it under)."""
        best: tuple[float, str, str, Any] | None = None
        for kind, field, payload in rule.necessary:
            if rule.route is not None and field == rule.route[0]:
                continue
            if field in UNSELECTIVE_FIELDS:
                rare = RARE_VALUES.get(field)
                if kind != "eq" or rare is None or not payload or not all(v in rare for v in payload):
                    continue
                entries, score = payload, len(payload) / _RARE_CARDINALITY
            elif kind == "eq":
                if not payload or len(payload) > _MAX_ENTRIES:
                    continue
                entries, score = payload, len(payload) / _cardinality(field)
                common = COMMON_VALUES.get(field)
                if common is not None and not any(v in common for v in payload):
                    score /= 10
            elif kind == "prefix":
                if not payload or len(payload) > _MAX_ENTRIES or min(len(p) for p in payload) < 2:
                    continue
                entries, score = payload, 2 * len(payload) / _cardinality(field)
            else:
                buckets = _buckets(payload)
                if buckets is None:
                    continue
                entries, score = buckets, (payload[1] - payload[0] + 1) / _RANGE_DOMAIN
            if best is None or (score, field) < (best[0], best[2]):
                best = (score, kind, field, entries)
        return None if best is None else (best[1], best[2], best[3])

    def candidates(self, event: Mapping[str, Any]) -> list[Any]:
        """Rules that may match ``event``, in rule order, each once."""
        get = event.get
        out: list[Any] = []
        for field in self._route_fields:
            value = get(field)
            if value.__class__ is str:
                group = self._groups.get((field, value.lower()))
                if group is not None:
                    _collect(group, get, out)
        _collect(self._generic, get, out)
        if len(out) > 1:
            out.sort(key=_ORDINAL)
            if _has_duplicates(out):
                out = [r for i, r in enumerate(out) if i == 0 or out[i - 1] is not r]
        return out

    def stats(self) -> dict[str, int]:
        return {"routes": len(self._groups), **{f"filed_{k}": v for k, v in self.filed.items()},
                "indexed_rules": self.filed["eq"] + self.filed["prefix"] + self.filed["range"]}


_ORDINAL = attrgetter("ordinal")


def _has_duplicates(rules: list[Any]) -> bool:
    return len(set(map(id, rules))) != len(rules)


def _scalars(value: Any) -> Sequence[Any]:
    cls = value.__class__
    if cls is list or cls is tuple:
        return [v for v in value if v is not None and v.__class__ not in (list, tuple, dict)]
    return (value,)


def _collect(group: tuple[Any, ...], get: Any, out: list[Any]) -> None:
    always, eq, prefix, ranges = group
    if always:
        out.extend(always)
    for field, table in eq:
        value = get(field)
        if value is None:
            continue
        if value.__class__ is str:
            hit = table.get(value.lower())
            if hit:
                out.extend(hit)
            continue
        for item in _scalars(value):
            hit = table.get(key(item))
            if hit:
                out.extend(hit)
    for field, lengths, table in prefix:
        value = get(field)
        if value is None:
            continue
        for item in _scalars(value):
            text = key(item)
            for n in lengths:
                hit = table.get(text[:n])
                if hit:
                    out.extend(hit)
    for field, table in ranges:
        value = get(field)
        if value is None:
            continue
        for item in _scalars(value):
            number = to_number(item) if item.__class__ is not bool else None
            if number is not None and -1e18 < number < 1e18:  # not NaN or infinite
                hit = table.get(int(number // RANGE_BUCKET))
                if hit:
                    out.extend(hit)
