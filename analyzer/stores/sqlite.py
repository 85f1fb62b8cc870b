"""The embedded store: alerts and events in one SQLite file, nothing to configure.

One table per kind (``alerts``, ``events``): the id, the alert version, the
``@timestamp`` in epoch milliseconds and the JSON body (kept verbatim). The
fields the API filters on most are also columns, each indexed with the
timestamp (:data:`INDEXED`); they are filled from the body on every write, in
Python rather than as generated columns, so that an IP field can be stored as
its 16-byte address key: equality, CIDR and ranges then use the index and
compare addresses, not spellings. Other fields are read with ``json_each``,
which treats a scalar as a one-element array, so "any element matches" holds
for arrays and scalars alike. Python functions registered on every connection
(``icsmon_ms``, ``icsmon_ip_key``) give dates, IP order and CIDR the same
meaning as in Elasticsearch; the query semantics themselves are
in :mod:`analyzer.stores.semantics`.

Concurrency: WAL journal; each thread reads through its own connection, and
writes are serialised by a lock (one writer thread plus API readers is the
intended use). ``:memory:`` databases use one shared connection under the lock.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson

from analyzer.settings import SQLiteSettings
from analyzer.stores import (
    Document,
    Interval,
    InvalidRequest,
    Kind,
    Page,
    Query,
    StoreError,
    WriteResult,
)
from analyzer.stores.semantics import (
    MAX_BUCKETS,
    CheckedFilter,
    apply_triage,
    canonical_ip,
    check_count_field,
    check_interval,
    check_query,
    collapse,
    format_ms,
    ip_key,
    merge_alert,
    network_range,
    prepare,
    sql_ms,
    typed_value,
)

__all__ = ["INDEXED", "SQLiteStore"]

SCHEMA_VERSION = 1
TABLES: dict[str, str] = {"alert": "alerts", "event": "events"}
INDEXED: dict[str, tuple[str, str]] = {
    "rule.id": ("c_rule_id", "keyword"),
    "icsmon.triage.status": ("c_triage_status", "keyword"),
    "source.ip": ("c_source_ip", "ip"),
    "destination.ip": ("c_destination_ip", "ip"),
    "network.protocol": ("c_network_protocol", "keyword"),
    "event.dataset": ("c_event_dataset", "keyword"),
    "ics.operation": ("c_ics_operation", "keyword"),
}
"""Scalar schema fields that are also indexed columns: field -> (column, kind). IP columns hold ip_key()."""
_COLUMNS = tuple(col for col, _kind in INDEXED.values())
_CHUNK = 500  # ids per IN (...) lookup


def _path(field: str) -> str:
    return '$."' + field.replace('"', '') + '"'


def _column_value(value: Any, kind: str) -> Any:
    if value is None or isinstance(value, list | dict):
        return None  # not a scalar: the schema says these never are; json_each still finds them
    if kind == "ip":
        return ip_key(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else str(value)


def _columns(body: Mapping[str, Any]) -> tuple[Any, ...]:
    return tuple(_column_value(body.get(name), kind) for name, (_col, kind) in INDEXED.items())


def _ddl(table: str) -> list[str]:
    columns = "".join(f",\n  {col} {'BLOB' if kind == 'ip' else 'TEXT'}" for col, kind in INDEXED.values())
    statements = [
        f"CREATE TABLE IF NOT EXISTS {table} (\n  id TEXT NOT NULL PRIMARY KEY,\n  version INTEGER NOT NULL,\n"
        f"  ts INTEGER NOT NULL,\n  body TEXT NOT NULL{columns}\n)",
        f"CREATE INDEX IF NOT EXISTS {table}_ts ON {table} (ts)",
    ]
    statements += [f"CREATE INDEX IF NOT EXISTS {table}_{col} ON {table} ({col}, ts)" for col in _COLUMNS]
    return statements


class SQLiteStore:
    """:class:`~analyzer.stores.Store` on a local SQLite database."""

    name = "sqlite"

    def __init__(self, settings: SQLiteSettings | None = None, *, path: str | Path | None = None) -> None:
        settings = settings or SQLiteSettings()
        self.path = str(path if path is not None else settings.path)
        self.busy_timeout = settings.busy_timeout
        self._memory = self.path == ":memory:"
        self._lock = threading.RLock()
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._ready = False
        self._closed = False
        self.stats = {"written": 0, "noop": 0, "rejected": 0}

    # --- connections ---------------------------------------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        if not self._memory:
            try:
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"SQLite database {self.path}: cannot create its folder ({exc.strerror})") from None
        try:
            conn = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None,
                                   check_same_thread=False)
            conn.create_function("icsmon_ms", 1, sql_ms, deterministic=True)
            conn.create_function("icsmon_ip_key", 1, ip_key, deterministic=True)
            if not self._memory:
                mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
                if mode.lower() != "wal":
                    raise StoreError(f"SQLite database {self.path}: cannot use the WAL journal (got {mode})")
                conn.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.Error as exc:
            raise StoreError(f"SQLite database {self.path}: cannot open ({exc})") from None
        self._connections.append(conn)
        return conn

    def _conn(self) -> sqlite3.Connection:
        if self._closed:
            raise StoreError(f"SQLite database {self.path}: store is closed")
        with self._lock:
            if self._memory:
                if not self._connections:
                    self._connections.append(self._open_memory())
                conn = self._connections[0]
            else:
                conn = getattr(self._local, "conn", None)
                if conn is None:
                    conn = self._local.conn = self._open()
            if not self._ready:
                self._create(conn)
                self._ready = True
        return conn

    def _open_memory(self) -> sqlite3.Connection:
        conn = self._open()
        self._connections.remove(conn)
        return conn

    def _create(self, conn: sqlite3.Connection) -> None:
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreError(f"SQLite database {self.path}: schema version {version} is newer than this icsmon"
                                 f" ({SCHEMA_VERSION})")
            conn.execute("BEGIN IMMEDIATE")
            expected = [(name, 0) for name in ("id", "version", "ts", "body", *_COLUMNS)]
            for table in TABLES.values():
                create_table, *create_indexes = _ddl(table)
                conn.execute(create_table)
                layout = [(row[1], row[6]) for row in conn.execute(f"PRAGMA table_xinfo({table})")]
                if layout != expected:
                    raise StoreError(f"SQLite database {self.path}: table {table} has another layout than this"
                                     " icsmon expects (made by an incompatible build); move the file away")
                for statement in create_indexes:
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StoreError(f"SQLite database {self.path}: cannot create tables ({exc})") from None
        finally:
            if conn.in_transaction:
                conn.execute("ROLLBACK")

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        conn = self._conn()
        if self._memory:
            with self._lock:
                yield conn
        else:
            yield conn

    # --- Store ---------------------------------------------------------------------------------------------

    def check(self) -> None:
        with self._reading() as conn:
            try:
                conn.execute("SELECT count(*) FROM alerts WHERE 0").fetchone()
            except sqlite3.Error as exc:
                raise StoreError(f"SQLite database {self.path}: {exc}") from None

    def write(self, documents: Sequence[Document]) -> WriteResult:
        rejected: list[tuple[Document, str]] = []
        alerts, events = [], []
        for doc in documents:
            ready = prepare(doc)
            if isinstance(ready, str):
                rejected.append((doc, ready))
            else:
                (alerts if doc.kind == "alert" else events).append(ready)
        conn = self._conn()
        with self._lock:
            try:
                conn.execute("BEGIN IMMEDIATE")
                if events:
                    conn.executemany(_INSERT["events"] + " ON CONFLICT (id) DO NOTHING",
                                     [(p.doc.id, 1, p.ts, orjson.dumps(p.body).decode(), *_columns(p.body))
                                      for p in events])
                noop = self._write_alerts(conn, collapse(alerts)) if alerts else 0
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise StoreError(f"SQLite database {self.path}: write failed ({exc})") from None
        written = len(documents) - len(rejected)
        self.stats["written"] += written
        self.stats["noop"] += noop
        self.stats["rejected"] += len(rejected)
        return WriteResult(written=written, rejected=tuple(rejected))

    def _write_alerts(self, conn: sqlite3.Connection, alerts: list[Any]) -> int:
        stored: dict[str, tuple[int, str]] = {}
        ids = [p.doc.id for p in alerts]
        for i in range(0, len(ids), _CHUNK):
            chunk = ids[i:i + _CHUNK]
            marks = ",".join("?" * len(chunk))
            for doc_id, version, body in conn.execute(
                    f"SELECT id, version, body FROM alerts WHERE id IN ({marks})", chunk):
                stored[doc_id] = (version, body)
        inserts, updates, noop = [], [], 0
        for p in alerts:
            held = stored.get(p.doc.id)
            if held is None:
                inserts.append((p.doc.id, p.doc.version, p.ts, orjson.dumps(p.body).decode(), *_columns(p.body)))
            elif held[0] >= p.doc.version:
                noop += 1
            else:
                body = merge_alert(orjson.loads(held[1]), p.body)
                updates.append((p.doc.version, p.ts, orjson.dumps(body).decode(), *_columns(body), p.doc.id))
        if inserts:
            conn.executemany(_INSERT["alerts"], inserts)
        if updates:
            conn.executemany(_UPDATE, updates)
        return noop

    def get(self, kind: Kind, doc_id: str) -> dict[str, Any] | None:
        table = _table(kind)
        with self._reading() as conn:
            row = conn.execute(f"SELECT body FROM {table} WHERE id = ?", (doc_id,)).fetchone()
        if row is None:
            return None
        return {**orjson.loads(row[0]), "_id": doc_id}

    def search(self, query: Query) -> Page:
        filters, sort = check_query(query)
        table = _table(query.kind)
        where, params = _where(filters)
        order = ", ".join(_order(name, direction, typ, array) for name, direction, typ, array in sort)
        order = f"{order}, t.id ASC" if order else "t.id ASC"
        with self._reading() as conn:
            conn.execute("BEGIN")  # one snapshot for the total and the page
            try:
                total = conn.execute(f"SELECT count(*) FROM {table} t WHERE {where}", params).fetchone()[0]
                rows = conn.execute(
                    f"SELECT t.id, t.body FROM {table} t WHERE {where} ORDER BY {order} LIMIT ? OFFSET ?",
                    [*params, query.size, query.offset]).fetchall() if query.size else []
            finally:
                conn.execute("COMMIT")
        items = [{**orjson.loads(body), "_id": doc_id} for doc_id, body in rows]
        return Page(items=items, total=total, offset=query.offset, size=query.size)

    def count_by(self, query: Query, field: str, size: int = 10) -> list[tuple[Any, int]]:
        filters, _sort = check_query(Query(query.kind, query.filters, query.start, query.end, (), 0, 0))
        info = check_count_field(query.kind, field, size)
        table = _table(query.kind)
        where, params = _where(filters)
        if field == "@timestamp":
            source = f"SELECT t.ts AS v FROM {table} t WHERE {where}"
        elif field in INDEXED and info.type == "keyword":
            source = f"SELECT t.{INDEXED[field][0]} AS v FROM {table} t WHERE {where}"
        else:
            # One row per (document, distinct value): Elasticsearch counts documents per term.
            value = _comparable("j.value", info.type, "json") if info.type == "date" else "j.value"
            source = (f"SELECT DISTINCT t.rowid, {value} AS v FROM {table} t, json_each(t.body, ?) j"
                      f" WHERE j.type != 'null' AND {where}")
            params = [_path(field), *params]
        if info.type == "ip":  # group by address, not spelling; show the canonical text
            sql = (f"SELECT min(v), count(*) AS n FROM (SELECT icsmon_ip_key(v) AS k, v FROM ({source}))"
                   f" WHERE k IS NOT NULL GROUP BY k ORDER BY n DESC, k ASC LIMIT ?")
        else:
            sql = f"SELECT v, count(*) AS n FROM ({source}) WHERE v IS NOT NULL GROUP BY v ORDER BY n DESC, v LIMIT ?"
        with self._reading() as conn:
            rows = conn.execute(sql, [*params, size]).fetchall()
        if info.type == "ip":
            return [(canonical_ip(v), n) for v, n in rows]
        return [(typed_value(info, v), n) for v, n in rows]

    def histogram(self, query: Query, interval: Interval) -> list[tuple[str, int]]:
        filters, _sort = check_query(Query(query.kind, query.filters, query.start, query.end, (), 0, 0))
        step = check_interval(interval)
        table = _table(query.kind)
        where, params = _where(filters)
        bucket = f"(t.ts - (((t.ts % {step}) + {step}) % {step}))"
        sql = (f"SELECT {bucket} AS b, count(*) FROM {table} t WHERE {where} GROUP BY b ORDER BY b"
               f" LIMIT {MAX_BUCKETS + 1}")
        with self._reading() as conn:
            rows = conn.execute(sql, params).fetchall()
        if len(rows) > MAX_BUCKETS:
            raise InvalidRequest(f"more than {MAX_BUCKETS} {interval} buckets; use a longer interval")
        return [(format_ms(b), n) for b, n in rows]

    def update_triage(self, doc_id: str, *, status: str | None = None, assignee: str | None = None,
                      note: Mapping[str, Any] | None = None) -> dict[str, Any]:
        conn = self._conn()
        with self._lock:
            # Read and write in one write transaction: a writer in another process (the sensor, while
            # the API triages) cannot slip an aggregation update in between and lose the analyst's change.
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    row = conn.execute("SELECT body FROM alerts WHERE id = ?", (doc_id,)).fetchone()
                    if row is None:
                        raise KeyError(doc_id)
                    body = apply_triage(orjson.loads(row[0]), status=status, assignee=assignee, note=note,
                                        now=time.time())
                    conn.execute(_UPDATE_BODY, (orjson.dumps(body).decode(), *_columns(body), doc_id))
                    conn.execute("COMMIT")
                finally:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
            except sqlite3.Error as exc:
                raise StoreError(f"SQLite database {self.path}: triage update failed ({exc})") from None
        return {**body, "_id": doc_id}

    def refresh(self) -> None:
        """Writes are visible as soon as they commit."""

    def close(self) -> None:
        with self._lock:
            self._closed = True
            for conn in self._connections:
                conn.close()
            self._connections.clear()
            self._local = threading.local()


_INSERT = {table: f"INSERT INTO {table} (id, version, ts, body, {', '.join(_COLUMNS)})"
                  f" VALUES ({', '.join('?' * (4 + len(_COLUMNS)))})" for table in TABLES.values()}
_UPDATE = f"UPDATE alerts SET version = ?, ts = ?, body = ?, {', '.join(c + ' = ?' for c in _COLUMNS)} WHERE id = ?"
_UPDATE_BODY = f"UPDATE alerts SET body = ?, {', '.join(c + ' = ?' for c in _COLUMNS)} WHERE id = ?"


def _table(kind: str) -> str:
    try:
        return TABLES[kind]
    except KeyError:
        raise InvalidRequest(f"unknown document kind {kind!r} (alert or event)") from None


# --- query translation ---------------------------------------------------------------------------------------

def _comparable(expr: str, typ: str, stored: str) -> str:
    """SQL for a value that compares like Elasticsearch does for the field type.

    ``stored`` says what ``expr`` holds: ``json`` (a value from the body), ``key`` (an IP column: already
    ip_key bytes), ``ms`` (the ts column: already epoch ms) or ``text`` (a keyword column).
    """
    if typ == "ip" and stored != "key":
        return f"icsmon_ip_key({expr})"
    if typ == "date" and stored != "ms":
        return f"icsmon_ms({expr})"
    return expr


def _bind(value: Any, typ: str) -> Any:
    if typ == "ip":
        return ip_key(value)
    return int(value) if isinstance(value, bool) else value


def _predicate(f: CheckedFilter, expr: str, stored: str, params: list[Any]) -> str:
    """Condition on one value ``expr`` (a column or a json_each value)."""
    op, typ = f.op, f.type
    value = _comparable(expr, typ, stored)
    if op == "eq":
        params.append(_bind(f.value, typ))
        return f"{value} = ?"
    if op == "in":
        params.extend(_bind(v, typ) for v in f.value)
        return f"{value} IN ({','.join('?' * len(f.value))})"
    if op == "range":
        low, high = f.value
        parts = [] if typ != "keyword" else [f"typeof({expr}) = 'text'"]
        for bound, sign in ((low, ">="), (high, "<=")):
            if bound is not None:
                params.append(_bind(bound, typ))
                parts.append(f"{value} {sign} ?")
        return " AND ".join(parts)
    if op == "cidr":
        params.extend(network_range(f.value))
        return f"{value} BETWEEN ? AND ?"
    if op == "prefix":
        params.append(f.value)
        return f"(typeof({expr}) = 'text' AND instr({expr}, ?) = 1)"
    if op == "contains":
        params.append(f.value)
        return f"(typeof({expr}) = 'text' AND instr({expr}, ?) > 0)"
    raise AssertionError(op)


def _condition(f: CheckedFilter, params: list[Any]) -> str:
    if f.op in ("exists", "missing"):
        if f.field == "@timestamp":
            sql = "1"
        else:
            params.append(_path(f.field))
            sql = "EXISTS (SELECT 1 FROM json_each(t.body, ?) j WHERE j.type != 'null')"
        if f.op == "missing":
            sql = f"NOT {sql}"
    elif f.field == "@timestamp":
        sql = _predicate(f, "t.ts", "ms", params)
    elif f.field in INDEXED and not f.array:
        column, kind = INDEXED[f.field]
        sql = _predicate(f, f"t.{column}", "key" if kind == "ip" else "text", params)
    else:
        params.append(_path(f.field))
        sql = f"EXISTS (SELECT 1 FROM json_each(t.body, ?) j WHERE {_predicate(f, 'j.value', 'json', params)})"
    # A condition on a missing value is NULL, false in WHERE; its negation must be true (Elasticsearch's
    # must_not), hence COALESCE there only: around a positive condition it would hide the index.
    return f"NOT COALESCE(({sql}), 0)" if f.negate else f"({sql})"


def _where(filters: list[CheckedFilter]) -> tuple[str, list[Any]]:
    params: list[Any] = []
    parts = [_condition(f, params) for f in filters]
    return (" AND ".join(parts) if parts else "1"), params


def _order(name: str, direction: str, typ: str, array: bool) -> str:
    if name == "_id":
        return f"t.id {direction.upper()}"
    if name == "@timestamp":
        return f"t.ts {direction.upper()}"
    path = _path(name).replace("'", "''")
    if array:
        pick = "MIN" if direction == "asc" else "MAX"
        value = _comparable("j.value", typ, "json")
        expr = f"(SELECT {pick}({value}) FROM json_each(t.body, '{path}') j WHERE j.type != 'null')"
    elif name in INDEXED:
        column, kind = INDEXED[name]
        expr = f"t.{column}"
    else:
        expr = _comparable(f"json_extract(t.body, '{path}')", typ, "json")
    return f"{expr} {direction.upper()} NULLS LAST"
