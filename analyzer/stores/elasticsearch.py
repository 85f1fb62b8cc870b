"""Alerts and events in Elasticsearch: daily indices, schema-generated templates, bulk writes with retries.

Writes (:meth:`ElasticsearchStore.write`):

* Events: bulk ``create`` into ``<prefix>-events-YYYY.MM.DD`` (the day of
  ``@timestamp``) with the document id, so a replay never duplicates an event
  (Elasticsearch answers 409 and the event counts as written).
* Alerts: one ``mget`` of the batch's ids (real-time, from the index of the
  alert's ``icsmon.alert.first_seen`` day) reads each stored version and triage
  fields; then a bulk ``create`` for new alerts, nothing for ids whose stored
  version is as high or higher, and an ``index`` guarded by ``if_seq_no`` /
  ``if_primary_term`` that carries the stored triage fields for newer versions.
  A concurrent change (an analyst's triage update, another writer) makes that
  guarded write fail with 409, and the alert is read and merged again. No
  scripts are used, so clusters without Painless work too.
* Batches are bounded in documents and bytes. A whole request that fails with
  429, 5xx, a timeout or a connection error is retried with jittered exponential
  backoff, as are single items answered 429 or 5xx; after ``max_attempts`` the
  call raises :class:`StoreUnavailable` (everything not confirmed may be sent
  again: ids make that safe). Items refused for good (400: mapping conflicts,
  values that do not parse) come back in ``WriteResult.rejected`` with
  Elasticsearch's reason while the rest are written.

Reads search ``<prefix>-alerts-*`` or ``<prefix>-events-*`` and see writes
after :meth:`refresh` (Elasticsearch's near-real-time search); :meth:`get` and
:meth:`update_triage` refresh once by themselves before deciding a document is
absent.
"""

from __future__ import annotations

import base64
import random
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson
from elasticsearch import (
    ApiError,
    AuthenticationException,
    AuthorizationException,
    ConflictError,
    Elasticsearch,
    TransportError,
    UnsupportedProductError,
)
from elasticsearch import ConnectionError as ESConnectionError
from elasticsearch import ConnectionTimeout as ESConnectionTimeout
from elasticsearch import SSLError as ESSSLError

from analyzer.settings import ElasticsearchSettings
from analyzer.stores import (
    Document,
    Interval,
    InvalidRequest,
    Kind,
    Page,
    Query,
    StoreAuthError,
    StoreError,
    StoreUnavailable,
    WriteResult,
)
from analyzer.stores.mapping import ilm_policies, index_name, index_pattern, templates
from analyzer.stores.semantics import (
    STORE_ID_FIELD,
    TRIAGE_PREFIX,
    CheckedFilter,
    Prepared,
    apply_triage,
    check_count_field,
    check_interval,
    check_query,
    collapse,
    format_ms,
    merge_alert,
    prepare,
    typed_value,
)

__all__ = ["ElasticsearchStore"]

T = TypeVar("T")
ALERT_ROUNDS = 5  # read-merge-write rounds before concurrent changes count as unavailability
INDEX_CACHE = 100_000  # alert id -> index entries kept for real-time get and triage
RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
REQUIRED_INDEX_PRIVILEGES = ("create_index", "index", "read")
_ERRNO = re.compile(r"\[Errno -?\d+\] ([^)'\"]+)")


class _Retry(Exception):
    """Raised inside a retried call for a transient condition found in a successful response."""


@dataclass(slots=True)
class _Op:
    item: Prepared
    lines: bytes  # action line + source line, newline-terminated


class ElasticsearchStore:
    """:class:`~analyzer.stores.Store` on an Elasticsearch cluster (8.x)."""

    name = "elasticsearch"

    def __init__(self, settings: ElasticsearchSettings, *, client: Elasticsearch | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if not settings.urls:
            raise StoreError("Elasticsearch: no url configured (analyzer.elasticsearch.url)")
        self.settings = settings
        self.prefix = settings.index_prefix
        self.url = re.sub(r"//[^/@]*@", "//", settings.urls[0])  # never show credentials in messages
        self.events_enabled = settings.events
        self.user: str | None = None  # who check() authenticated as, when the cluster has security on
        self._client = client or self._make_client()
        self._sleep = sleep
        self._alert_index: OrderedDict[str, str] = OrderedDict()
        self._cache_lock = threading.Lock()
        self.stats = {"written": 0, "noop": 0, "rejected": 0, "retries": 0, "conflicts": 0, "events_skipped": 0,
                      "requests": 0}

    def _make_client(self) -> Elasticsearch:
        s = self.settings
        kwargs: dict[str, Any] = {"request_timeout": s.request_timeout, "max_retries": 0, "retry_on_timeout": False,
                                  "http_compress": s.http_compress}
        if s.api_key is not None:
            kwargs["api_key"] = s.api_key.get_secret_value()
        elif s.username and s.password is not None:
            kwargs["basic_auth"] = (s.username, s.password.get_secret_value())
        if any(u.startswith("https://") for u in s.urls):
            kwargs["verify_certs"] = s.verify
            if s.ca_file is not None:
                kwargs["ca_certs"] = str(s.ca_file)
            if not s.verify:
                kwargs["ssl_show_warn"] = False
        return Elasticsearch(s.urls, **kwargs)

    # --- errors and retries --------------------------------------------------------------------------------

    def _who(self) -> str:
        s = self.settings
        if s.api_key is not None:
            key = s.api_key.get_secret_value()
            try:
                key_id = base64.b64decode(key, validate=True).decode().split(":", 1)[0]
            except (ValueError, UnicodeDecodeError):
                key_id = ""
            return f"API key id '{key_id}'" if key_id else "the API key"
        if s.username:
            return f"user '{s.username}'"
        return "anonymous access (no credentials configured)"

    def _auth_error(self, exc: ApiError, what: str) -> StoreAuthError:
        status = exc.meta.status
        if status == 401:
            return StoreAuthError(f"Elasticsearch at {self.url}: authentication failed for {self._who()} ({status})")
        return StoreAuthError(f"Elasticsearch at {self.url}: {self._who()} may not {what}: {_reason(exc)} ({status})")

    def _backoff(self, attempt: int) -> float:
        ceiling = min(self.settings.backoff_max, self.settings.backoff_initial * 2 ** (attempt - 1))
        return random.uniform(ceiling / 2, ceiling)

    def _call(self, what: str, fn: Callable[[], T], *, attempts: int | None = None) -> T:
        """``fn()`` with retries on transient failures; one-line StoreError subclasses otherwise."""
        attempts = attempts or self.settings.max_attempts
        last = ""
        for attempt in range(1, attempts + 1):
            self.stats["requests"] += 1
            try:
                return fn()
            except _Retry as exc:
                last = str(exc)
            except (AuthenticationException, AuthorizationException) as exc:
                raise self._auth_error(exc, what) from None
            except UnsupportedProductError:
                raise StoreError(f"Elasticsearch at {self.url}: the server is not Elasticsearch") from None
            except ApiError as exc:
                if exc.meta.status not in RETRY_STATUS:
                    raise InvalidRequest(f"Elasticsearch at {self.url}: {what} refused: {_reason(exc)}"
                                         f" ({exc.meta.status})") from None
                last = f"{_reason(exc)} ({exc.meta.status})"
            except ESSSLError as exc:
                raise StoreError(f"Elasticsearch at {self.url}: TLS failed ({_transport_reason(exc)});"
                                 " check ca_file and the URL's host name") from None
            except (ESConnectionTimeout, ESConnectionError, TransportError) as exc:
                last = _transport_reason(exc)
            if attempt < attempts:
                self.stats["retries"] += 1
                self._sleep(self._backoff(attempt))
        raise StoreUnavailable(f"Elasticsearch at {self.url}: {what} failed after {attempts} attempt"
                               f"{'s' if attempts > 1 else ''}: {last}")

    # --- start-up ------------------------------------------------------------------------------------------

    def check(self) -> None:
        """Reach the cluster, authenticate, verify index privileges, install the templates (if configured).

        StoreUnavailable when it cannot be reached in ``check_timeout`` seconds, StoreAuthError for wrong
        credentials or missing privileges, StoreError for the rest; each with one line.
        """
        client = self._client.options(request_timeout=self.settings.check_timeout)
        try:
            self.user = client.security.authenticate().body.get("username") or ""
        except (AuthenticationException, AuthorizationException) as exc:
            raise self._auth_error(exc, "authenticate") from None
        except UnsupportedProductError:
            raise StoreError(f"Elasticsearch at {self.url}: the server is not Elasticsearch") from None
        except ApiError as exc:
            if exc.meta.status in RETRY_STATUS and exc.meta.status != 500:
                raise StoreUnavailable(f"Elasticsearch at {self.url}: not ready: {_reason(exc)}"
                                       f" ({exc.meta.status})") from None
            self.user = None  # security is off: the authenticate API does not exist
        except ESSSLError as exc:
            raise StoreError(f"Elasticsearch at {self.url}: TLS failed ({_transport_reason(exc)});"
                             " check ca_file and the URL's host name") from None
        except (ESConnectionTimeout, ESConnectionError, TransportError) as exc:
            raise StoreUnavailable(f"Elasticsearch at {self.url}: unreachable ({_transport_reason(exc)})") from None
        if self.user is not None:
            self._check_privileges(client)
        if self.settings.install_templates:
            self.install_templates(client)

    def _check_privileges(self, client: Elasticsearch) -> None:
        kinds = ["alert", "event"] if self.events_enabled else ["alert"]
        cluster = ["manage_index_templates"] if self.settings.install_templates else []
        if self.settings.install_templates and self.settings.ilm:
            cluster.append("manage_ilm")
        try:
            answer = client.security.has_privileges(
                cluster=cluster or None,
                index=[{"names": [index_pattern(self.prefix, k)], "privileges": list(REQUIRED_INDEX_PRIVILEGES)}
                       for k in kinds]).body
        except ApiError as exc:
            raise StoreError(f"Elasticsearch at {self.url}: cannot check privileges: {_reason(exc)}") from None
        except (ESConnectionError, TransportError) as exc:
            raise StoreUnavailable(f"Elasticsearch at {self.url}: unreachable ({_transport_reason(exc)})") from None
        missing = [name for name, ok in answer.get("cluster", {}).items() if not ok]
        for pattern, privileges in answer.get("index", {}).items():
            missing += [f"{name} on {pattern}" for name, ok in privileges.items() if not ok]
        if missing:
            hint = ("; or set install_templates false and install them as an administrator"
                    if any(name in missing for name in cluster) else "")
            raise StoreAuthError(f"Elasticsearch at {self.url}: user '{self.user}' lacks {', '.join(missing)}{hint}")

    def install_templates(self, client: Elasticsearch | None = None) -> None:
        """PUT the ILM policies (if configured), component templates and index templates (idempotent)."""
        client = client or self._client
        s = self.settings
        bodies = templates(self.prefix, shards=s.number_of_shards, replicas=s.number_of_replicas, ilm=s.ilm)
        try:
            if s.ilm:
                for name, body in ilm_policies(self.prefix).items():
                    client.ilm.put_lifecycle(name=name, policy=body["policy"])
            for name, body in bodies["component"].items():
                client.cluster.put_component_template(name=name, **body)
            for name, body in bodies["index"].items():
                client.indices.put_index_template(name=name, **body)
        except (AuthenticationException, AuthorizationException) as exc:
            raise self._auth_error(exc, "install index templates (manage_index_templates); set install_templates"
                                   " false if an administrator installs them") from None
        except ApiError as exc:
            raise StoreError(f"Elasticsearch at {self.url}: cannot install index templates: {_reason(exc)}"
                             f" ({exc.meta.status})") from None
        except (ESConnectionError, TransportError) as exc:
            raise StoreUnavailable(f"Elasticsearch at {self.url}: unreachable ({_transport_reason(exc)})") from None

    def uninstall_templates(self) -> None:
        """Delete this prefix's index and component templates (tests; indices stay)."""
        for name in (f"{self.prefix}-events", f"{self.prefix}-alerts"):
            self._client.options(ignore_status=404).indices.delete_index_template(name=name)
        for name in (f"{self.prefix}-settings", f"{self.prefix}-events-mappings", f"{self.prefix}-alerts-mappings"):
            self._client.options(ignore_status=404).cluster.delete_component_template(name=name)

    # --- writes --------------------------------------------------------------------------------------------

    def write(self, documents: Sequence[Document]) -> WriteResult:
        rejected: list[tuple[Document, str]] = []
        alerts: list[Prepared] = []
        events: list[Prepared] = []
        skipped = 0
        for doc in documents:
            if doc.kind == "event" and not self.events_enabled:
                skipped += 1
                continue
            ready = prepare(doc)
            if isinstance(ready, str):
                rejected.append((doc, ready))
            else:
                (alerts if doc.kind == "alert" else events).append(ready)
        if alerts:
            rejected += self._write_alerts(collapse(alerts))
        if events:
            rejected += self._write_events(events)
        self.stats["events_skipped"] += skipped
        self.stats["rejected"] += len(rejected)
        written = len(documents) - len(rejected)
        self.stats["written"] += written
        return WriteResult(written=written, rejected=tuple(rejected))

    def _write_events(self, events: list[Prepared]) -> list[tuple[Document, str]]:
        ops = []
        for p in events:
            action = {"create": {"_index": index_name(self.prefix, "event", p.day), "_id": p.doc.id}}
            ops.append(_Op(p, _lines(action, {**p.body, STORE_ID_FIELD: p.doc.id})))
        rejected = []
        for outcome, op, reason in self._bulk_all(ops):
            if outcome == "rejected":
                rejected.append((op.item.doc, reason))
            elif outcome == "conflict":
                self.stats["noop"] += 1  # already stored: the same event again
        return rejected

    def _write_alerts(self, alerts: list[Prepared]) -> list[tuple[Document, str]]:
        rejected: list[tuple[Document, str]] = []
        for start in range(0, len(alerts), self.settings.bulk_max_docs):
            pending = alerts[start:start + self.settings.bulk_max_docs]
            for _round in range(ALERT_ROUNDS):
                stored = self._stored_alerts(pending)
                ops = []
                for p in pending:
                    index = index_name(self.prefix, "alert", p.day)
                    held = stored.get(p.doc.id)
                    if held is None:
                        action = {"create": {"_index": index, "_id": p.doc.id}}
                        ops.append(_Op(p, _lines(action, {**p.body, STORE_ID_FIELD: p.doc.id})))
                    elif held[0] >= p.doc.version:
                        self.stats["noop"] += 1
                        self._remember(p.doc.id, index)
                    else:
                        action = {"index": {"_index": index, "_id": p.doc.id, "if_seq_no": held[1],
                                            "if_primary_term": held[2]}}
                        body = merge_alert(held[3], p.body)
                        ops.append(_Op(p, _lines(action, {**body, STORE_ID_FIELD: p.doc.id})))
                pending = []
                for outcome, op, reason in self._bulk_all(ops):
                    if outcome == "rejected":
                        rejected.append((op.item.doc, reason))
                    elif outcome == "conflict":
                        self.stats["conflicts"] += 1
                        pending.append(op.item)  # created or changed meanwhile: read and merge again
                    else:
                        self._remember(op.item.doc.id, index_name(self.prefix, "alert", op.item.day))
                if not pending:
                    break
            else:
                raise StoreUnavailable(f"Elasticsearch at {self.url}: {len(pending)} alerts kept changing"
                                       f" concurrently over {ALERT_ROUNDS} attempts")
        return rejected

    def _stored_alerts(self, items: list[Prepared]) -> dict[str, tuple[int, int, int, dict[str, Any]]]:
        """id -> (version, seq_no, primary_term, triage fields) of the alerts already stored."""
        docs = [{"_index": index_name(self.prefix, "alert", p.day), "_id": p.doc.id,
                 "_source": {"includes": [TRIAGE_PREFIX + "*", "icsmon.alert.version"]}} for p in items]

        def fetch() -> dict[str, tuple[int, int, int, dict[str, Any]]]:
            found = {}
            for doc in self._client.mget(docs=docs).body["docs"]:
                error = doc.get("error")
                if error:
                    if error.get("type") == "index_not_found_exception":
                        continue
                    raise _Retry(f"{error.get('type')}: {error.get('reason')}")
                if doc.get("found"):
                    source = doc.get("_source") or {}
                    version = source.get("icsmon.alert.version")
                    found[doc["_id"]] = (version if isinstance(version, int) else 0, doc["_seq_no"],
                                         doc["_primary_term"], source)
            return found

        return self._call("reading stored alert versions", fetch)

    def _batches(self, ops: list[_Op]) -> list[list[_Op]]:
        batches: list[list[_Op]] = []
        current: list[_Op] = []
        size = 0
        for op in ops:
            if current and (len(current) >= self.settings.bulk_max_docs
                            or size + len(op.lines) > self.settings.bulk_max_bytes):
                batches.append(current)
                current, size = [], 0
            current.append(op)
            size += len(op.lines)
        if current:
            batches.append(current)
        return batches

    def _bulk_all(self, ops: list[_Op]) -> list[tuple[str, _Op, str]]:
        out = []
        for batch in self._batches(ops):
            out += self._bulk(batch)
        return out

    def _bulk(self, ops: list[_Op]) -> list[tuple[str, _Op, str]]:
        """Send one bounded batch until every item is done or attempts run out.

        Returns ``(outcome, op, reason)`` per op: ``ok``, ``conflict`` (409) or ``rejected``.
        """
        done: list[tuple[str, _Op, str]] = []
        pending = ops
        last = ""
        for attempt in range(1, self.settings.max_attempts + 1):
            payload = b"".join(op.lines for op in pending)
            self.stats["requests"] += 1
            retry: list[_Op] = []
            try:
                response = self._client.bulk(operations=payload, filter_path="items.*.status,items.*.error").body
            except (AuthenticationException, AuthorizationException) as exc:
                raise self._auth_error(exc, f"write to {self.prefix}-* indices") from None
            except UnsupportedProductError:
                raise StoreError(f"Elasticsearch at {self.url}: the server is not Elasticsearch") from None
            except ApiError as exc:
                if exc.meta.status == 413 and len(pending) > 1:
                    half = len(pending) // 2
                    return done + self._bulk(pending[:half]) + self._bulk(pending[half:])
                if exc.meta.status == 413:
                    return [*done, ("rejected", pending[0], f"document of {len(pending[0].lines)} bytes is larger"
                                    " than the cluster accepts (http.max_content_length)")]
                if exc.meta.status not in RETRY_STATUS:
                    raise StoreError(f"Elasticsearch at {self.url}: bulk request refused: {_reason(exc)}"
                                     f" ({exc.meta.status})") from None
                retry, last = pending, f"{_reason(exc)} ({exc.meta.status})"
            except ESSSLError as exc:
                retry, last = pending, f"TLS failed ({_transport_reason(exc)})"
            except (ESConnectionTimeout, ESConnectionError, TransportError) as exc:
                retry, last = pending, _transport_reason(exc)
            else:
                items = response.get("items", [])
                if len(items) != len(pending):
                    raise StoreError(f"Elasticsearch at {self.url}: bulk answered {len(items)} items for"
                                     f" {len(pending)}")
                for op, item in zip(pending, items):
                    result = next(iter(item.values()))
                    status = result.get("status", 0)
                    if 200 <= status < 300:
                        done.append(("ok", op, ""))
                    elif status == 409:
                        done.append(("conflict", op, ""))
                    elif status in RETRY_STATUS:
                        retry.append(op)
                        last = f"{_error_text(result.get('error'))} ({status})"
                    else:
                        done.append(("rejected", op, f"{_error_text(result.get('error'))} ({status})"))
            if not retry:
                return done
            pending = retry
            if attempt < self.settings.max_attempts:
                self.stats["retries"] += 1
                self._sleep(self._backoff(attempt))
        raise StoreUnavailable(f"Elasticsearch at {self.url}: bulk write of {len(pending)} documents failed after"
                               f" {self.settings.max_attempts} attempts: {last}")

    def _remember(self, doc_id: str, index: str) -> None:
        with self._cache_lock:
            self._alert_index[doc_id] = index
            self._alert_index.move_to_end(doc_id)
            if len(self._alert_index) > INDEX_CACHE:
                self._alert_index.popitem(last=False)

    # --- reads ---------------------------------------------------------------------------------------------

    def _pattern(self, kind: str) -> str:
        if kind not in ("alert", "event"):
            raise InvalidRequest(f"unknown document kind {kind!r} (alert or event)")
        return index_pattern(self.prefix, kind)

    def _read(self, what: str, fn: Callable[[], T]) -> T:
        return self._call(what, fn, attempts=min(2, self.settings.max_attempts))

    def _locate(self, kind: str, doc_id: str) -> tuple[str, dict[str, Any], int, int] | None:
        """(index, source, seq_no, primary_term) of a document, read in real time; None if absent."""
        index = self._alert_index.get(doc_id) if kind == "alert" else None
        if index is None:
            index = self._find_index(kind, doc_id)
            if index is None:
                self.refresh_kind(kind)
                index = self._find_index(kind, doc_id)
            if index is None:
                return None
        response = self._read("reading a document",
                              lambda: self._client.options(ignore_status=404).get(index=index, id=doc_id).body)
        if not response.get("found"):
            return None
        return index, response["_source"], response["_seq_no"], response["_primary_term"]

    def _find_index(self, kind: str, doc_id: str) -> str | None:
        response = self._read("looking up a document", lambda: self._client.search(
            index=self._pattern(kind), query={"ids": {"values": [doc_id]}}, size=1, source=False,
            ignore_unavailable=True, allow_no_indices=True).body)
        hits = response["hits"]["hits"]
        return hits[0]["_index"] if hits else None

    def get(self, kind: Kind, doc_id: str) -> dict[str, Any] | None:
        found = self._locate(kind, doc_id)
        if found is None:
            return None
        source = dict(found[1])
        source.pop(STORE_ID_FIELD, None)
        return {**source, "_id": doc_id}

    def _query(self, filters: list[CheckedFilter]) -> dict[str, Any]:
        must, must_not = [], []
        for f in filters:
            (must_not if f.negate else must).append(_es_filter(f))
        return {"bool": {"filter": must, "must_not": must_not}}

    def search(self, query: Query) -> Page:
        filters, sort = check_query(query)
        keys: list[dict[str, Any]] = []
        for name, direction, typ, array in sort:
            if name == "_id":
                keys.append({STORE_ID_FIELD: {"order": direction}})
                continue
            key: dict[str, Any] = {"order": direction, "missing": "_last", "unmapped_type": typ}
            if array:
                key["mode"] = "min" if direction == "asc" else "max"
            keys.append({name: key})
        keys.append({STORE_ID_FIELD: {"order": "asc", "unmapped_type": "keyword"}})
        response = self._read("search", lambda: self._client.search(
            index=self._pattern(query.kind), query=self._query(filters), sort=keys, from_=query.offset,
            size=query.size, track_total_hits=True, ignore_unavailable=True, allow_no_indices=True).body)
        items = []
        for hit in response["hits"]["hits"]:
            source = dict(hit["_source"])
            source.pop(STORE_ID_FIELD, None)
            source["_id"] = hit["_id"]
            items.append(source)
        return Page(items=items, total=response["hits"]["total"]["value"], offset=query.offset, size=query.size)

    def count_by(self, query: Query, field: str, size: int = 10) -> list[tuple[Any, int]]:
        filters, _sort = check_query(Query(query.kind, query.filters, query.start, query.end, (), 0, 0))
        info = check_count_field(query.kind, field, size)
        terms = {"field": field, "size": size, "shard_size": max(size * 10, 1000),
                 "order": [{"_count": "desc"}, {"_key": "asc"}]}
        response = self._read("count by field", lambda: self._client.search(
            index=self._pattern(query.kind), query=self._query(filters), size=0, aggs={"v": {"terms": terms}},
            ignore_unavailable=True, allow_no_indices=True).body)
        buckets = (response.get("aggregations") or {}).get("v", {}).get("buckets", [])
        out = []
        for bucket in buckets:
            key = bucket["key"]
            if info.type == "float":
                key = float(f"{key:.7g}")  # a 32-bit float comes back widened; show what was written
            out.append((typed_value(info, key), bucket["doc_count"]))
        return out

    def histogram(self, query: Query, interval: Interval) -> list[tuple[str, int]]:
        filters, _sort = check_query(Query(query.kind, query.filters, query.start, query.end, (), 0, 0))
        check_interval(interval)
        agg = {"date_histogram": {"field": "@timestamp", "fixed_interval": interval, "min_doc_count": 1}}
        response = self._read("histogram", lambda: self._client.search(
            index=self._pattern(query.kind), query=self._query(filters), size=0, aggs={"h": agg},
            ignore_unavailable=True, allow_no_indices=True).body)
        buckets = (response.get("aggregations") or {}).get("h", {}).get("buckets", [])
        return [(format_ms(int(b["key"])), b["doc_count"]) for b in buckets]

    # --- triage and the rest -------------------------------------------------------------------------------

    def update_triage(self, doc_id: str, *, status: str | None = None, assignee: str | None = None,
                      note: Mapping[str, Any] | None = None) -> dict[str, Any]:
        for _attempt in range(ALERT_ROUNDS):
            found = self._locate("alert", doc_id)
            if found is None:
                raise KeyError(doc_id)
            index, source, seq_no, primary_term = found
            source = dict(source)
            source.pop(STORE_ID_FIELD, None)
            body = apply_triage(source, status=status, assignee=assignee, note=note, now=time.time())

            def put(index: str = index, body: dict[str, Any] = body, seq_no: int = seq_no,
                    primary_term: int = primary_term) -> bool:
                try:
                    self._client.index(index=index, id=doc_id, document={**body, STORE_ID_FIELD: doc_id},
                                       if_seq_no=seq_no, if_primary_term=primary_term, refresh=True)
                except ConflictError:
                    return False
                return True

            if not self._call("triage update", put):
                self.stats["conflicts"] += 1
                continue
            self._remember(doc_id, index)
            return {**body, "_id": doc_id}
        raise StoreUnavailable(f"Elasticsearch at {self.url}: alert {doc_id} kept changing during the triage update")

    def refresh_kind(self, kind: str) -> None:
        self._call("refresh", lambda: self._client.indices.refresh(
            index=self._pattern(kind), ignore_unavailable=True, allow_no_indices=True),
            attempts=min(2, self.settings.max_attempts))

    def refresh(self) -> None:
        for kind in ("alert", "event"):
            self.refresh_kind(kind)

    def close(self) -> None:
        self._client.close()


# --- helpers -------------------------------------------------------------------------------------------------

def _lines(action: dict[str, Any], source: dict[str, Any]) -> bytes:
    return orjson.dumps(action) + b"\n" + orjson.dumps(source) + b"\n"


def _error_text(error: Any) -> str:
    """``type: reason (caused by type: reason)`` of an Elasticsearch error object, on one line."""
    if not isinstance(error, dict):
        return str(error or "unknown error")
    text = f"{error.get('type', 'error')}: {error.get('reason', '')}"
    cause = error.get("caused_by")
    if isinstance(cause, dict) and cause.get("reason"):
        text += f" (caused by {cause.get('type', 'error')}: {cause['reason']})"
    return " ".join(text.split())


def _reason(exc: ApiError) -> str:
    body = exc.body
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            return _error_text(error)
        if error:
            return " ".join(str(error).split())
    return " ".join(str(exc.message or body or "no reason given").split())


def _transport_reason(exc: Exception) -> str:
    """Short cause of a transport failure: ``connection refused``, ``timed out``, a TLS reason..."""
    parts = [str(part) for part in (getattr(exc, "message", ""), exc, exc.__cause__) if part]
    if isinstance(exc, ESConnectionTimeout) or any("timed out" in part.lower() for part in parts):
        return "timed out"
    for part in parts:
        match = _ERRNO.search(part)
        if match:
            return match.group(1).strip().lower()
    return " ".join(str(getattr(exc, "message", "") or exc).split())[:200]


def _es_filter(f: CheckedFilter) -> dict[str, Any]:
    if f.op == "eq":
        return {"term": {f.field: f.value}}
    if f.op == "in":
        return {"terms": {f.field: list(f.value)}}
    if f.op == "range":
        low, high = f.value
        bounds: dict[str, Any] = {}
        if low is not None:
            bounds["gte"] = low
        if high is not None:
            bounds["lte"] = high
        if f.type == "date":
            bounds["format"] = "epoch_millis"
        return {"range": {f.field: bounds}}
    if f.op == "cidr":
        return {"term": {f.field: f.value}}  # the ip type matches a CIDR given as a term
    if f.op == "exists":
        return {"exists": {"field": f.field}}
    if f.op == "missing":
        return {"bool": {"must_not": [{"exists": {"field": f.field}}]}}
    if f.op == "prefix":
        return {"prefix": {f.field: {"value": f.value}}}
    if f.op == "contains":
        escaped = re.sub(r"([*?\\])", r"\\\1", f.value)
        return {"wildcard": {f.field: {"value": f"*{escaped}*"}}}
    raise AssertionError(f.op)
