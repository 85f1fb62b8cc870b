"""Where alerts and events are kept: one interface, two stores.

* :class:`~analyzer.stores.sqlite.SQLiteStore` -- the embedded default, a local
  SQLite database; nothing to configure.
* :class:`~analyzer.stores.elasticsearch.ElasticsearchStore` -- a production
  Elasticsearch cluster (index templates generated from the schema, date-based
  indices, bulk writes).

Both take flat documents (dotted ECS-style names, ``@timestamp`` as ISO 8601
text) and answer the same :class:`Query` with the same semantics, so the API
and the tests do not care which one is configured. One contract test suite
(``tests/analyzer/stores/``) runs against both.

Writes are idempotent: a :class:`Document` has a stable id, and writing it
again (a retry, a replay after a sensor restart) never duplicates it. Alerts
carry a ``version`` that grows with every aggregation update; a store keeps
the highest version it has seen and ignores older ones, and an aggregation
update never overwrites the triage fields (``icsmon.triage.*``) an analyst
has set through :meth:`Store.update_triage`.

Errors: every store error is a :class:`StoreError` with a one-line message.
:class:`StoreUnavailable` is transient (connection refused, timeouts, 429/5xx
after the store's own retries): the documents of that call were not all
written and the caller keeps them (the delivery spool). :class:`StoreAuthError`
is permanent (wrong credentials, missing privilege) and is raised by
:meth:`Store.check` at start-up rather than retried forever. A document the
store refuses for good (a mapping conflict) comes back in
:attr:`WriteResult.rejected` with the reason; the rest of the batch is written.
:class:`InvalidRequest` (also a ``ValueError``) means the caller asked for
something no store answers (a field outside the schema, a filter that does not
fit the field's type, a page beyond the first 10,000 results, an unknown triage
status): an HTTP 400 in the API, never retried.

Query semantics shared by both stores (see :mod:`analyzer.stores.semantics`):
only schema fields are queried; dates compare at millisecond precision (a date
without a zone is UTC); array fields match when any element does, and a negated
filter matches documents where no element does, or the field is missing; sorting
puts documents without the field last in both directions, sorts an array field by
its smallest element ascending and its largest descending, sorts IPs as
addresses (IPv4 before IPv6), and breaks ties by id ascending; ``count_by``
counts a value once per document.

Events are written once: a second write of an event id is a no-op (counted as
written). :func:`create_store` builds the configured store from
:class:`analyzer.settings.AnalyzerSettings`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from analyzer.settings import AnalyzerSettings

__all__ = [
    "Document", "Filter", "InvalidRequest", "Kind", "Page", "Query", "Store", "StoreAuthError", "StoreError",
    "StoreUnavailable", "WriteResult", "create_store",
]

Kind = Literal["alert", "event"]
FilterOp = Literal["eq", "in", "range", "cidr", "exists", "missing", "prefix", "contains"]
Interval = Literal["1s", "1m", "5m", "1h", "1d"]


class StoreError(Exception):
    """A store operation failed; ``str(error)`` is one line naming what and why."""


class StoreUnavailable(StoreError):
    """Transient: the store cannot be reached or refuses for now; retry later."""


class StoreAuthError(StoreError):
    """Permanent: the store rejects the credentials or they lack a needed privilege."""


class InvalidRequest(StoreError, ValueError):
    """Permanent: the query or update cannot be answered (unknown field, wrong type, page too deep)."""


@dataclass(frozen=True, slots=True)
class Document:
    """One alert or event to store. ``body`` is flat (dotted names), times as ISO 8601 text."""

    kind: Kind
    id: str
    body: Mapping[str, Any]
    version: int = 1  # alerts: icsmon.alert.version; events: always 1


@dataclass(frozen=True, slots=True)
class WriteResult:
    written: int  # documents stored (including idempotent no-ops for already stored ids/versions)
    rejected: tuple[tuple[Document, str], ...] = ()  # permanently refused, with the store's reason


@dataclass(frozen=True, slots=True)
class Filter:
    """One condition on a field.

    ``eq`` (value equals, or for array fields any element equals), ``in`` (value is
    one of a list), ``range`` (value is ``(gte, lte)``, either side ``None``; dates as
    ISO text, numbers as numbers), ``cidr`` (an IP field inside an IPv4/IPv6 network
    given as text), ``exists``/``missing`` (value ignored), ``prefix`` and ``contains``
    (case-sensitive substring of a keyword field). ``negate`` inverts the condition.
    """

    field: str
    op: FilterOp
    value: Any = None
    negate: bool = False


@dataclass(frozen=True, slots=True)
class Query:
    """A search over one kind of document; every filter must hold (AND).

    ``start``/``end`` bound ``@timestamp`` (ISO text, inclusive start, exclusive end).
    ``sort`` is a sequence of ``(field, "asc"|"desc")``; ties are broken by id so that
    paging is stable. ``offset``/``size`` page through the result.
    """

    kind: Kind
    filters: tuple[Filter, ...] = ()
    start: str | None = None
    end: str | None = None
    sort: tuple[tuple[str, Literal["asc", "desc"]], ...] = (("@timestamp", "desc"),)
    offset: int = 0
    size: int = 50


@dataclass(frozen=True, slots=True)
class Page:
    items: list[dict[str, Any]]  # flat documents, each with its store id under "_id"
    total: int  # documents matching the query, over all pages
    offset: int = 0
    size: int = 50
    extra: dict[str, Any] = field(default_factory=dict)


class Store(Protocol):
    """What the sensor, the delivery loop and the API need from a store."""

    name: str  # "sqlite" or "elasticsearch", for statistics and errors

    def check(self) -> None:
        """Connect, verify credentials and privileges, install templates/tables. Raises StoreError."""
        ...

    def write(self, documents: Sequence[Document]) -> WriteResult:
        """Store a batch (any mix of alerts and events). Raises StoreUnavailable if not all were handled."""
        ...

    def get(self, kind: Kind, doc_id: str) -> dict[str, Any] | None:
        """One document by id, flat, with ``_id``; None if absent."""
        ...

    def search(self, query: Query) -> Page:
        ...

    def count_by(self, query: Query, field: str, size: int = 10) -> list[tuple[Any, int]]:
        """The ``size`` most frequent values of ``field`` among matches (array fields count each element),
        most frequent first, ties by value."""
        ...

    def histogram(self, query: Query, interval: Interval) -> list[tuple[str, int]]:
        """Matches per ``@timestamp`` bucket (UTC, aligned to the interval), as (ISO bucket start, count),
        oldest first, empty buckets omitted."""
        ...

    def update_triage(self, doc_id: str, *, status: str | None = None, assignee: str | None = None,
                      note: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Change an alert's triage status/assignee and append a note; returns the updated alert.
        Later aggregation updates of the same alert keep these triage fields. KeyError if absent."""
        ...

    def refresh(self) -> None:
        """Make everything written so far visible to searches (a no-op where writes are immediate)."""
        ...

    def close(self) -> None:
        ...


def create_store(settings: AnalyzerSettings) -> Store:
    """The store the settings choose (SQLite unless Elasticsearch is configured); not yet checked."""
    if settings.store_kind == "elasticsearch":
        from analyzer.stores.elasticsearch import ElasticsearchStore

        return ElasticsearchStore(settings.elasticsearch)
    from analyzer.stores.sqlite import SQLiteStore

    return SQLiteStore(settings.sqlite)
