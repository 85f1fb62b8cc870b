"""Value matchers: one small function per Sigma value type and modifier, built once per rule.

pySigma turns a detection value and its modifiers into a typed value (``SigmaString`` with
wildcards, ``SigmaRegularExpression`` with flags, ``SigmaCIDRExpression``...). This module turns
each typed value into a plain Python function ``match(value) -> bool`` over the raw event value,
which may be ``None`` (field missing), a scalar, or a list (array fields such as ``ics.values``:
a list matches when any element matches). The semantics are documented in SEMANTICS.md.

:func:`key` is the one normalisation used for equality: strings compare case-insensitively,
numbers by their canonical text (``5``, ``5.0`` and ``"5"`` are equal), booleans as
``true``/``false``. The rule index (:mod:`analyzer.sigma.index`) uses the same function, so an
event reaches a rule through the index exactly when its equality test could hold.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from functools import lru_cache
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address
from typing import Any

from sigma.types import (
    CompareOperators,
    SigmaBool,
    SigmaCasedString,
    SigmaCIDRExpression,
    SigmaCompareExpression,
    SigmaExists,
    SigmaExpansion,
    SigmaNull,
    SigmaNumber,
    SigmaRegularExpression,
    SigmaString,
    SigmaTimestampPart,
    SigmaType,
    SpecialChars,
    TimestampPart,
)

from sensor.events import Timestamp

__all__ = ["Matcher", "MatcherSpec", "UnsupportedValue", "either", "key", "matcher_for", "number"]

Matcher = Callable[[Any], bool]


class UnsupportedValue(ValueError):
    """A detection value the evaluator cannot match (reported as a rule error)."""


def key(value: Any) -> str:
    """Canonical text of a scalar event or rule value for equality tests and the rule index."""
    cls = value.__class__
    if cls is str:
        return value.lower()
    if cls is bool:
        return "true" if value else "false"
    if cls is int:
        return str(value)
    if cls is float or cls is Timestamp:
        return str(int(value)) if value.is_integer() else repr(value)
    return str(value).lower()


def _text(value: Any, cased: bool) -> str | None:
    """Text a string matcher looks at: strings as they are (lower-cased unless cased), numbers
    and booleans by their canonical text; other types (objects) never match a string."""
    cls = value.__class__
    if cls is str:
        return value if cased else value.lower()
    if cls is int or cls is float or cls is bool or cls is Timestamp:
        return key(value)
    return None


def _any(test: Matcher) -> Matcher:
    """Lift a scalar test to event values: None never matches, lists match on any element."""

    def match(value: Any) -> bool:
        if value is None:
            return False
        cls = value.__class__
        if cls is list or cls is tuple:
            for item in value:
                if item is not None and item.__class__ is not list and test(item):
                    return True
            return False
        return test(value)

    return match


# -- equality -------------------------------------------------------------------------------------

def equals_any(keys: frozenset[str]) -> Matcher:
    """Case-insensitive equality with any of ``keys`` (already normalised with :func:`key`)."""
    if len(keys) == 1:
        (only,) = keys

        def one(value: Any) -> bool:
            if value is None:
                return False
            cls = value.__class__
            if cls is str:
                return value.lower() == only
            if cls is list or cls is tuple:
                return any(item is not None and item.__class__ is not list and key(item) == only
                           for item in value)
            return key(value) == only

        return one

    def many(value: Any) -> bool:
        if value is None:
            return False
        cls = value.__class__
        if cls is str:
            return value.lower() in keys
        if cls is list or cls is tuple:
            return any(item is not None and item.__class__ is not list and key(item) in keys for item in value)
        return key(value) in keys

    return many


def _cased_equals(text: str) -> Matcher:
    return _any(lambda v: _text(v, True) == text)


# -- strings with wildcards -----------------------------------------------------------------------

def _string_parts(value: SigmaString) -> list[str | SpecialChars]:
    parts: list[str | SpecialChars] = []
    for part in value.s:
        if isinstance(part, str | SpecialChars):
            parts.append(part)
        else:  # a Placeholder left over: expand() must have resolved it before
            raise UnsupportedValue(f"unresolved placeholder %{part.name}% in value {value.original!r}")
    return parts


def _plain(value: SigmaString) -> str | None:
    parts = _string_parts(value)
    if any(isinstance(p, SpecialChars) for p in parts):
        return None
    return "".join(p for p in parts if isinstance(p, str))


def _wildcard(value: SigmaString, cased: bool) -> Matcher:
    parts = _string_parts(value)
    fold: Callable[[str], str] = (lambda s: s) if cased else str.lower
    star, qmark = SpecialChars.WILDCARD_MULTI, SpecialChars.WILDCARD_SINGLE
    texts = [p for p in parts if isinstance(p, str)]
    # The common shapes compile to str methods instead of a regular expression.
    if qmark not in parts and len(texts) == 1:
        text = fold(texts[0])
        shape = tuple(p is star for p in parts)
        if shape == (True, False, True):
            return _any(lambda v: (t := _text(v, cased)) is not None and text in t)
        if shape == (False, True):
            return _any(lambda v: (t := _text(v, cased)) is not None and t.startswith(text))
        if shape == (True, False):
            return _any(lambda v: (t := _text(v, cased)) is not None and t.endswith(text))
    if parts and all(p is star for p in parts):
        return _any(lambda v: _text(v, cased) is not None)
    pattern = "".join(".*" if p is star else "." if p is qmark else re.escape(fold(p)) for p in parts)
    regex = re.compile(pattern, re.DOTALL)
    return _any(lambda v: (t := _text(v, cased)) is not None and regex.fullmatch(t) is not None)


def _regex(value: SigmaRegularExpression) -> Matcher:
    flags = 0
    for flag in value.flags:
        flags |= SigmaRegularExpression.sigma_to_python_flags[flag]
    if value.regexp.contains_placeholder():
        raise UnsupportedValue(f"unresolved placeholder in regular expression {value.regexp.original!r}")
    try:
        regex = re.compile(str(value.regexp), flags)
    except re.error as exc:
        raise UnsupportedValue(f"invalid regular expression {str(value.regexp)!r}: {exc}") from None
    return _any(lambda v: (t := _text(v, True)) is not None and regex.search(t) is not None)


# -- networks, numbers, time ----------------------------------------------------------------------

@lru_cache(maxsize=8192)
def _address(text: str) -> IPv4Address | IPv6Address | None:
    try:
        return ip_address(text.split("%", 1)[0])
    except ValueError:
        return None


def _cidr(networks: Iterable[IPv4Network | IPv6Network]) -> Matcher:
    nets = tuple(networks)

    def test(value: Any) -> bool:
        if value.__class__ is not str:
            return False
        addr = _address(value)
        if addr is None:
            return False
        mapped = getattr(addr, "ipv4_mapped", None)  # ::ffff:10.0.0.1 is in 10.0.0.0/8
        return any(addr in net or (mapped is not None and mapped in net) for net in nets)

    return _any(test)


def number(value: Any) -> float | None:
    """A field value as a number for gt/gte/lt/lte: numbers as they are, numeric text parsed, else None."""
    cls = value.__class__
    if cls is int or cls is float or cls is Timestamp:
        return value
    if cls is str:
        try:
            return float(value)
        except ValueError:
            return None
    return None


_COMPARE: dict[CompareOperators, Callable[[float, float], bool]] = {
    CompareOperators.LT: lambda a, b: a < b,
    CompareOperators.LTE: lambda a, b: a <= b,
    CompareOperators.GT: lambda a, b: a > b,
    CompareOperators.GTE: lambda a, b: a >= b,
    CompareOperators.NEQ: lambda a, b: a != b,
}


def _compare(value: SigmaCompareExpression) -> Matcher:
    op = _COMPARE[value.op]
    bound = value.number.number
    return _any(lambda v: (n := number(v)) is not None and op(n, bound))


def _time(value: Any) -> datetime | None:
    cls = value.__class__
    try:
        if cls is int or cls is float or cls is Timestamp:
            return datetime.fromtimestamp(value, UTC)
        if cls is str:
            parsed = datetime.fromisoformat(value)
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    except (ValueError, OverflowError, OSError):
        return None
    return None


_TIME_PARTS: dict[TimestampPart, Callable[[datetime], int]] = {
    TimestampPart.MINUTE: lambda t: t.minute,
    TimestampPart.HOUR: lambda t: t.hour,
    TimestampPart.DAY: lambda t: t.day,
    TimestampPart.WEEK: lambda t: t.isocalendar().week,
    TimestampPart.MONTH: lambda t: t.month,
    TimestampPart.YEAR: lambda t: t.year,
}


def _timestamp_part(value: SigmaTimestampPart) -> Matcher:
    part = _TIME_PARTS[value.timestamp_part]
    wanted = value.number
    return _any(lambda v: (t := _time(v)) is not None and part(t) == wanted)


def _null(value: Any) -> bool:
    return value is None or value == []


# -- dispatch -------------------------------------------------------------------------------------

class MatcherSpec:
    """A built matcher plus what the rule index may use of it.

    ``keys``: the value can only match when ``key(event value)`` is one of these; ``exact``: the
    match is precisely that membership test. ``prefixes``: the value can only match when its text
    (lower-cased) starts with one of these. ``bounds``: a numeric value can only match inside
    ``[low, high]`` (either may be None). None means "nothing to say" (regex, cidr, null...).
    """

    __slots__ = ("match", "keys", "text", "exact", "prefixes", "bounds")

    def __init__(self, match: Matcher, keys: frozenset[str] | None, text: str, exact: bool = False,
                 prefixes: frozenset[str] | None = None,
                 bounds: tuple[float | None, float | None] | None = None) -> None:
        self.match = match
        self.keys = keys
        self.text = text  # short human description, for errors and explain()
        self.exact = exact
        self.prefixes = prefixes
        self.bounds = bounds


def matcher_for(value: SigmaType, cased: bool = False) -> MatcherSpec:
    """The matcher for one typed detection value (placeholders already expanded)."""
    if isinstance(value, SigmaExpansion):
        specs = [matcher_for(v, cased) for v in value.values]
        return _either(specs)
    if isinstance(value, SigmaString):
        cased = cased or isinstance(value, SigmaCasedString)
        text = _plain(value)
        if text is not None:
            if cased:
                return MatcherSpec(_cased_equals(text), frozenset({text.lower()}), f"== {text!r} (cased)")
            k = frozenset({text.lower()})
            return MatcherSpec(equals_any(k), k, f"== {text!r}", exact=True)
        parts = _string_parts(value)
        lead = parts[0] if parts and isinstance(parts[0], str) else ""
        return MatcherSpec(_wildcard(value, cased), None, f"like {value.original!r}",
                           prefixes=frozenset({lead.lower()}) if lead else None)
    if isinstance(value, SigmaTimestampPart):
        return MatcherSpec(_timestamp_part(value), None, f"{value.timestamp_part.name.lower()} == {value.number}")
    if isinstance(value, SigmaNumber):
        k = frozenset({key(value.number)})
        return MatcherSpec(equals_any(k), k, f"== {value.number}", exact=True)
    if isinstance(value, SigmaBool):
        k = frozenset({key(value.boolean)})
        return MatcherSpec(equals_any(k), k, f"== {value.boolean}", exact=True)
    if isinstance(value, SigmaNull):
        return MatcherSpec(_null, None, "is null")
    if isinstance(value, SigmaExists):
        wanted = bool(value.exists)
        return MatcherSpec(lambda v: (not _null(v)) is wanted, None, "exists" if wanted else "does not exist")
    if isinstance(value, SigmaRegularExpression):
        return MatcherSpec(_regex(value), None, f"=~ /{value.regexp}/")
    if isinstance(value, SigmaCIDRExpression):
        return MatcherSpec(_cidr([value.network]), None, f"in {value.network}")
    if isinstance(value, SigmaCompareExpression):
        bound = value.number.number
        bounds = {CompareOperators.LT: (None, bound), CompareOperators.LTE: (None, bound),
                  CompareOperators.GT: (bound, None), CompareOperators.GTE: (bound, None)}.get(value.op)
        return MatcherSpec(_compare(value), None, f"{value.op.name.lower()} {bound}", bounds=bounds)
    raise UnsupportedValue(f"value type {type(value).__name__} is not supported by the icsmon evaluator")


def _either(specs: list[MatcherSpec]) -> MatcherSpec:
    """OR of several matchers on the same field; stays an equality test when all are."""
    if not specs:
        return MatcherSpec(lambda v: False, frozenset(), "nothing", exact=True)
    if len(specs) == 1:
        return specs[0]
    if all(s.exact and s.keys is not None for s in specs):
        keys = frozenset().union(*(s.keys for s in specs if s.keys is not None))
        return MatcherSpec(equals_any(keys), keys, f"in {sorted(keys)!r}", exact=True)
    funcs = tuple(s.match for s in specs)
    keys_or_none = (frozenset().union(*(s.keys for s in specs if s.keys is not None))
                    if all(s.keys is not None for s in specs) else None)
    prefixes = None
    if keys_or_none is None and all(s.keys is not None or s.prefixes is not None for s in specs):
        prefixes = frozenset().union(*((s.prefixes or s.keys or frozenset()) for s in specs))
    bounds = None
    if all(s.bounds is not None for s in specs):
        lows = [s.bounds[0] for s in specs if s.bounds is not None]
        highs = [s.bounds[1] for s in specs if s.bounds is not None]
        bounds = (None if None in lows else min(x for x in lows if x is not None),
                  None if None in highs else max(x for x in highs if x is not None))
    return MatcherSpec(lambda v: any(f(v) for f in funcs), keys_or_none, " or ".join(s.text for s in specs),
                       prefixes=prefixes, bounds=bounds)


def either(specs: list[MatcherSpec]) -> MatcherSpec:
    """Public OR of matchers on one field (used by the compiler to fold value lists)."""
    return _either(specs)


def field_reference(starts_with: bool, ends_with: bool, cased: bool = False) -> Callable[[Any, Any], bool]:
    """Matcher of a ``fieldref`` test: the field's value against the referenced field's value
    (equal, or with ``contains``/``startswith``/``endswith`` the referenced value inside it)."""

    def texts(value: Any) -> list[str]:
        if value is None:
            return []
        items = value if value.__class__ in (list, tuple) else (value,)
        return [t for t in (_text(i, cased) for i in items if i is not None) if t is not None]

    def test(value: Any, other: Any) -> bool:
        mine = texts(value)
        if not mine:
            return False
        for ref in texts(other):
            for text in mine:
                if starts_with and ends_with:
                    if ref in text:
                        return True
                elif starts_with:
                    if text.startswith(ref):
                        return True
                elif ends_with:
                    if text.endswith(ref):
                        return True
                elif text == ref:
                    return True
        return False

    return test


def keyword_matcher(spec: MatcherSpec) -> Callable[[Any], bool]:
    """A keyword (no field) test: the value matched against every field of the event."""
    match = spec.match

    def test(event: Any) -> bool:
        for value in event.values():
            if value is not None and match(value):
                return True
        return False

    return test
