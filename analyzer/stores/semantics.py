"""What both stores agree on: field catalogues, query checking, value coercion, dates, IPs, merges.

The stores answer a :class:`~analyzer.stores.Query` identically because neither
interprets it directly: :func:`check_query` turns it into :class:`CheckedFilter`
objects first, with every value coerced to the field's type (dates to epoch
milliseconds, IPs to canonical text, numbers to int/float), and refuses what
one of the two stores could not answer the same way:

* a field outside the schema (Elasticsearch maps ``dynamic: false``, so an
  unknown field is never indexed and could never match);
* ``eq``/``in``/``range``/``prefix``/``contains``/``cidr`` on ``text`` or
  ``object`` fields (analysed or not indexed in Elasticsearch), ``cidr`` on
  anything but an ``ip`` field, ``prefix``/``contains`` on anything but
  ``keyword``;
* pages that end beyond :data:`MAX_RESULT_WINDOW` (Elasticsearch's
  ``index.max_result_window``).

Those raise :class:`~analyzer.stores.InvalidRequest` with one line. Dates are
compared at millisecond precision (Elasticsearch's ``date`` type); a value
without a zone is UTC.

Alert documents are merged on update by :func:`merge_alert`: the stored
document's ``icsmon.triage.*`` keys win over the incoming ones, so an
aggregation update (the sensor always sends ``open``) never undoes an analyst's
triage.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache, lru_cache
from typing import Any

import orjson

from analyzer.alerts import ALERT_FIELDS
from analyzer.stores import Document, Filter, InvalidRequest, Query
from sensor.schema import Field, all_fields

__all__ = [
    "INTERVAL_MS", "MAX_RESULT_WINDOW", "STORE_ID_FIELD", "TRIAGE_PREFIX", "TRIAGE_STATUSES", "CheckedFilter",
    "Prepared", "apply_triage", "catalog", "check_count_field", "check_interval", "check_query", "format_ms",
    "canonical_ip", "ip_in", "ip_key", "merge_alert", "network_range", "parse_ms", "prepare",
]

MAX_RESULT_WINDOW = 10_000
"""offset + size of one page at most (Elasticsearch's default ``index.max_result_window``)."""
MAX_COUNT_SIZE = 10_000
"""Most values :meth:`Store.count_by` returns."""
MAX_BUCKETS = 65_536
"""Most non-empty histogram buckets one call returns (Elasticsearch's ``search.max_buckets``)."""
MAX_ID_BYTES = 512
"""Longest document id (Elasticsearch refuses longer ``_id`` values)."""
STORE_ID_FIELD = "icsmon.document_id"
"""Keyword copy of the document id that Elasticsearch sorts on (``_id`` has no doc values); never returned."""
TRIAGE_PREFIX = "icsmon.triage."
TRIAGE_STATUSES = ("open", "acknowledged", "closed")
INTERVAL_MS: dict[str, int] = {"1s": 1_000, "1m": 60_000, "5m": 300_000, "1h": 3_600_000, "1d": 86_400_000}

STORE_FIELDS: tuple[Field, ...] = (
    Field(STORE_ID_FIELD, "keyword", "Store document id, for stable sorting in Elasticsearch (not returned)."),
)
NUMBER_TYPES = frozenset({"long", "integer", "short", "byte", "float", "double"})
INTEGER_TYPES = frozenset({"long", "integer", "short", "byte"})
# Which operators apply to which field types; the rest raise InvalidRequest.
OPS_BY_TYPE: dict[str, frozenset[str]] = {
    "keyword": frozenset({"eq", "in", "range", "exists", "missing", "prefix", "contains"}),
    "ip": frozenset({"eq", "in", "range", "cidr", "exists", "missing"}),
    "date": frozenset({"eq", "in", "range", "exists", "missing"}),
    "boolean": frozenset({"eq", "in", "exists", "missing"}),
    "text": frozenset({"exists", "missing"}),
    "object": frozenset(),
    **{t: frozenset({"eq", "in", "range", "exists", "missing"}) for t in NUMBER_TYPES},
}
SORTABLE_TYPES = frozenset({"keyword", "ip", "date", "boolean", *NUMBER_TYPES})


@cache
def catalog(kind: str) -> dict[str, Field]:
    """Every field a document of ``kind`` may be queried on: the event schema, plus the alert fields for alerts."""
    fields: dict[str, Field] = {f.name: f for f in all_fields()}
    if kind == "alert":
        fields.update((f.name, f) for f in ALERT_FIELDS)
    elif kind != "event":
        raise InvalidRequest(f"unknown document kind {kind!r} (alert or event)")
    return fields


# --- dates -------------------------------------------------------------------------------------------------

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
_LONG_FRACTION = re.compile(r"(\.\d{6})\d+")


@lru_cache(maxsize=4096)
def _parse_text_ms(text: str) -> int:
    if text.lstrip("-").isdigit():
        return int(text)  # epoch milliseconds as text, as Elasticsearch's epoch_millis format reads it
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        moment = datetime.fromisoformat(_LONG_FRACTION.sub(r"\1", text))  # nanoseconds: keep microseconds
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // _MS


def parse_ms(value: Any) -> int:
    """Epoch milliseconds of an ISO 8601 text (zone optional, UTC by default) or of epoch milliseconds.

    Raises ValueError for anything else.
    """
    if isinstance(value, bool):
        raise ValueError(f"not a date: {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value:
        try:
            return _parse_text_ms(value)
        except ValueError:
            pass
    raise ValueError(f"not an ISO 8601 date: {value!r}")


def sql_ms(value: Any) -> int | None:
    """:func:`parse_ms` for SQLite: None instead of an error (a stored value that is no date matches nothing)."""
    try:
        return parse_ms(value)
    except ValueError:
        return None


def format_ms(ms: int) -> str:
    """ISO 8601 UTC text of epoch milliseconds: ``2026-01-01T00:00:00Z``, or with ``.123`` when not whole."""
    moment = _EPOCH + timedelta(milliseconds=ms)
    if ms % 1000:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


# --- IP addresses ------------------------------------------------------------------------------------------

@lru_cache(maxsize=65536)
def ip_key(value: Any) -> bytes | None:
    """16-byte sort key of an address, IPv4 as IPv4-mapped IPv6 (the order Elasticsearch's ip type uses)."""
    if not isinstance(value, str):
        return None
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    if address.version == 4:
        return b"\0" * 10 + b"\xff\xff" + address.packed
    return address.packed


@lru_cache(maxsize=1024)
def network_range(network: str) -> tuple[bytes, bytes]:
    """Lowest and highest ip_key() of a network (IPv4 networks within ::ffff:0:0/96, as Elasticsearch maps them)."""
    net = ipaddress.ip_network(network, strict=False)
    low, high = net.network_address.packed, net.broadcast_address.packed
    if net.version == 4:
        return b"\0" * 10 + b"\xff\xff" + low, b"\0" * 10 + b"\xff\xff" + high
    return low, high


def ip_in(value: Any, network: str) -> int:
    """1 if the address text ``value`` lies in ``network`` (v4 and v6, v4 in ``::ffff:0:0/96`` too), else 0."""
    key = ip_key(value)
    if key is None:
        return 0
    low, high = network_range(network)
    return int(low <= key <= high)


def canonical_ip(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"not an IP address: {value!r}")
    address = ipaddress.ip_address(value)
    if address.version == 6 and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


# --- queries -----------------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class CheckedFilter:
    """A :class:`Filter` with its field's type and its value coerced: what both stores translate.

    ``value`` is one coerced value (``eq``), a tuple of them (``in``), ``(low, high)`` with None for an
    open side (``range``), canonical network text (``cidr``), a string (``prefix``/``contains``) or None.
    Dates are epoch milliseconds; IPs canonical text.
    """

    field: str
    op: str
    type: str
    array: bool
    value: Any
    negate: bool


def _coerce(field: Field, value: Any) -> Any:
    kind = field.type
    if kind == "keyword":
        if isinstance(value, str):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
    elif kind == "ip":
        return canonical_ip(value)
    elif kind == "date":
        return parse_ms(value)
    elif kind == "boolean":
        if isinstance(value, bool):
            return value
        if value in ("true", "false"):
            return value == "true"
    elif kind in INTEGER_TYPES:
        if isinstance(value, bool):
            raise ValueError(f"not an integer: {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            return int(value)
    elif kind in NUMBER_TYPES:
        if isinstance(value, bool):
            raise ValueError(f"not a number: {value!r}")
        if isinstance(value, int | float):
            return float(value)
        if isinstance(value, str):
            return float(value)
    raise ValueError(f"{value!r} is not a valid {kind} value")


def _field(kind: str, name: str) -> Field:
    field = catalog(kind).get(name)
    if field is None:
        raise InvalidRequest(f"unknown field {name!r} for {kind}s (not in the schema)")
    return field


def check_filter(kind: str, flt: Filter) -> CheckedFilter:
    field = _field(kind, flt.field)
    if flt.op not in OPS_BY_TYPE[field.type]:
        raise InvalidRequest(f"filter {flt.op!r} does not apply to {field.type} field {flt.field!r}")
    value: Any = None
    try:
        if flt.op == "eq":
            value = _coerce(field, flt.value)
        elif flt.op == "in":
            if isinstance(flt.value, str | bytes) or not isinstance(flt.value, Sequence | set | frozenset):
                raise ValueError("'in' takes a list of values")
            value = tuple(dict.fromkeys(_coerce(field, v) for v in flt.value))
        elif flt.op == "range":
            if isinstance(flt.value, str | bytes) or not isinstance(flt.value, Sequence) or len(flt.value) != 2:
                raise ValueError("'range' takes (low, high), either side None")
            low, high = (None if v is None else _coerce(field, v) for v in flt.value)
            if low is None and high is None:
                raise ValueError("'range' needs at least one bound")
            value = (low, high)
        elif flt.op == "cidr":
            if not isinstance(flt.value, str):
                raise ValueError("'cidr' takes a network as text, e.g. 10.0.0.0/8")
            value = str(ipaddress.ip_network(flt.value, strict=False))
        elif flt.op in ("prefix", "contains"):
            if not isinstance(flt.value, str):
                raise ValueError(f"{flt.op!r} takes text")
            value = flt.value
    except ValueError as exc:
        raise InvalidRequest(f"filter {flt.op} on {flt.field!r}: {exc}") from None
    return CheckedFilter(flt.field, flt.op, field.type, field.array, value, flt.negate)


def check_query(query: Query) -> tuple[list[CheckedFilter], list[tuple[str, str, str, bool]]]:
    """Checked filters (``start``/``end`` folded in as a range on ``@timestamp``) and checked sort keys.

    Sort keys are ``(field, direction, type, array)``; ``_id`` sorts by document id.
    """
    catalog(query.kind)
    if query.offset < 0 or query.size < 0:
        raise InvalidRequest("offset and size must not be negative")
    if query.offset + query.size > MAX_RESULT_WINDOW:
        raise InvalidRequest(f"page ends at {query.offset + query.size}, beyond the first {MAX_RESULT_WINDOW}"
                             " results; narrow the query")
    filters = [check_filter(query.kind, f) for f in query.filters]
    if query.start is not None or query.end is not None:
        try:
            start = None if query.start is None else parse_ms(query.start)
            end = None if query.end is None else parse_ms(query.end) - 1  # exclusive end at ms precision
        except ValueError as exc:
            raise InvalidRequest(f"start/end: {exc}") from None
        filters.append(CheckedFilter("@timestamp", "range", "date", False, (start, end), False))
    sort = []
    for name, direction in query.sort:
        if direction not in ("asc", "desc"):
            raise InvalidRequest(f"sort direction {direction!r} (asc or desc)")
        if name == "_id":
            sort.append((name, direction, "keyword", False))
            continue
        field = _field(query.kind, name)
        if field.type not in SORTABLE_TYPES:
            raise InvalidRequest(f"cannot sort on {field.type} field {name!r}")
        sort.append((name, direction, field.type, field.array))
    return filters, sort


def check_count_field(kind: str, name: str, size: int) -> Field:
    field = _field(kind, name)
    if field.type not in SORTABLE_TYPES:
        raise InvalidRequest(f"cannot count values of {field.type} field {name!r}")
    if not 1 <= size <= MAX_COUNT_SIZE:
        raise InvalidRequest(f"count size {size} outside 1..{MAX_COUNT_SIZE}")
    return field


def check_interval(interval: str) -> int:
    try:
        return INTERVAL_MS[interval]
    except KeyError:
        raise InvalidRequest(f"histogram interval {interval!r} (one of {', '.join(INTERVAL_MS)})") from None


def typed_value(field: Field, value: Any) -> Any:
    """A value read back from a store, as the field's Python type (count_by keys)."""
    if value is None:
        return None
    if field.type == "boolean":
        return bool(value)
    if field.type == "date":
        return format_ms(int(value))
    if field.type in ("float", "double"):
        return float(value)
    return value


# --- writes ------------------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Prepared:
    """A document checked for writing: its body (alert version filled in), @timestamp and index day in ms."""

    doc: Document
    body: dict[str, Any]
    ts: int
    day: int  # ms of the UTC midnight that names the document's daily index


def prepare(doc: Document) -> Prepared | str:
    """The checked document, or the reason it can never be stored (both stores refuse the same documents)."""
    if doc.kind not in ("alert", "event"):
        return f"unknown document kind {doc.kind!r}"
    if not isinstance(doc.id, str) or not doc.id or len(doc.id.encode()) > MAX_ID_BYTES:
        return f"document id must be text of 1 to {MAX_ID_BYTES} bytes"
    if not isinstance(doc.body, Mapping):
        return "document body is not a mapping"
    body = dict(doc.body)
    for key in body:
        if not isinstance(key, str) or not key or key.startswith("_"):
            return f"field name {key!r} is empty or starts with '_' (reserved)"
    stamp = body.get("@timestamp")
    if not isinstance(stamp, str):
        return f"@timestamp must be ISO 8601 text, got {type(stamp).__name__}"
    try:
        ts = parse_ms(stamp)
        day_from = body.get("icsmon.alert.first_seen", stamp) if doc.kind == "alert" else stamp
        day = parse_ms(day_from) // 86_400_000 * 86_400_000
    except ValueError as exc:
        return str(exc)
    if doc.kind == "alert":
        if isinstance(doc.version, bool) or not isinstance(doc.version, int) or doc.version < 1:
            return f"alert version must be a positive integer, got {doc.version!r}"
        body["icsmon.alert.version"] = doc.version
    try:
        orjson.dumps(body)
    except TypeError as exc:
        return f"body is not JSON: {exc}"
    return Prepared(doc, body, ts, day)


def collapse(prepared: Sequence[Prepared]) -> list[Prepared]:
    """One document per id, the highest version (the last one written among equals), in first-seen order."""
    best: dict[str, Prepared] = {}
    for item in prepared:
        held = best.get(item.doc.id)
        if held is None or item.doc.version >= held.doc.version:
            best[item.doc.id] = item
    return list(best.values())


def merge_alert(stored: Mapping[str, Any], incoming: Mapping[str, Any]) -> dict[str, Any]:
    """The incoming (newer) alert body with the stored triage fields, if the stored document has any."""
    triage = {k: v for k, v in stored.items() if k.startswith(TRIAGE_PREFIX)}
    if not triage:
        return dict(incoming)
    merged = {k: v for k, v in incoming.items() if not k.startswith(TRIAGE_PREFIX)}
    merged.update(triage)
    return merged


def apply_triage(body: Mapping[str, Any], *, status: str | None, assignee: str | None,
                 note: Mapping[str, Any] | None, now: float) -> dict[str, Any]:
    """The alert body after an analyst's change: status, assignee, and one more note in the history.

    A note records who and what (``author``, ``text``; ``time`` defaults to now) plus the status and
    assignee this call set. A call that changes status or assignee without a note still records one
    (author ``unknown``, empty text) so the history shows every change.
    """
    if status is not None and status not in TRIAGE_STATUSES:
        raise InvalidRequest(f"triage status {status!r} (one of {', '.join(TRIAGE_STATUSES)})")
    if note is not None and not isinstance(note, Mapping):
        raise InvalidRequest("triage note must be a mapping with author and text")
    out = dict(body)
    if status is not None:
        out["icsmon.triage.status"] = status
    if assignee is not None:
        out["icsmon.triage.assignee"] = assignee
    if note is not None or status is not None or assignee is not None:
        entry = {"time": format_ms(int(now * 1000)), "author": "unknown", "text": ""}
        entry.update(note or {})
        if status is not None:
            entry["status"] = status
        if assignee is not None:
            entry["assignee"] = assignee
        try:
            orjson.dumps(entry)
        except TypeError as exc:
            raise InvalidRequest(f"triage note is not JSON: {exc}") from None
        out["icsmon.triage.notes"] = [*(out.get("icsmon.triage.notes") or ()), entry]
    return out
