"""SQLiteStore specifics: the file, its journal and indexes, threads, and what happens on a bad path."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from analyzer.settings import SQLiteSettings
from analyzer.stores import Filter, Query, StoreError
from analyzer.stores.measure import measure_write_rate, synthetic_alerts, synthetic_events
from analyzer.stores.semantics import check_query
from analyzer.stores.sqlite import INDEXED, SQLiteStore, _where


def test_the_database_uses_wal_and_indexes_the_api_fields(sqlite_store: SQLiteStore) -> None:
    sqlite_store.write(synthetic_events(10))
    conn = sqlite3.connect(sqlite_store.path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    indexes = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    for table in ("alerts", "events"):
        assert f"{table}_ts" in indexes
        for column, _kind in INDEXED.values():
            assert f"{table}_{column}" in indexes
    conn.close()


@pytest.mark.parametrize(("filters", "index"), [
    ((Filter("rule.id", "eq", "r1"),), "alerts_c_rule_id"),
    ((Filter("source.ip", "cidr", "10.0.0.0/8"),), "alerts_c_source_ip"),
    ((Filter("icsmon.triage.status", "in", ["open", "acknowledged"]),), "alerts_c_triage_status"),
])
def test_api_filters_use_their_index(sqlite_store: SQLiteStore, filters: tuple[Filter, ...], index: str) -> None:
    checked, _sort = check_query(Query("alert", filters=filters))
    where, params = _where(checked)
    conn = sqlite_store._conn()
    plan = " ".join(row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN SELECT id FROM alerts t WHERE {where}",
                                                   params))
    assert f"USING INDEX {index}" in plan


def test_time_window_uses_the_timestamp_index(sqlite_store: SQLiteStore) -> None:
    checked, _sort = check_query(Query("event", start="2026-01-01T00:00:00Z", end="2026-01-02T00:00:00Z"))
    where, params = _where(checked)
    conn = sqlite_store._conn()
    plan = " ".join(row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN SELECT id FROM events t WHERE {where}",
                                                   params))
    assert "USING INDEX events_ts" in plan


def test_data_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "folder" / "icsmon.db"
    store = SQLiteStore(SQLiteSettings(path=path))
    alerts = synthetic_alerts(5)
    store.write(alerts)
    store.update_triage(alerts[0].id, status="closed")
    store.close()
    with pytest.raises(StoreError, match="store is closed"):
        store.get("alert", alerts[0].id)

    again = SQLiteStore(SQLiteSettings(path=path))
    assert again.search(Query("alert", size=0)).total == 5
    assert again.get("alert", alerts[0].id)["icsmon.triage.status"] == "closed"
    again.close()


def test_a_writer_thread_and_readers_at_once(sqlite_store: SQLiteStore) -> None:
    events = synthetic_events(2000)
    errors: list[BaseException] = []
    done = threading.Event()

    def write() -> None:
        try:
            for i in range(0, len(events), 100):
                assert sqlite_store.write(events[i:i + 100]).written == 100
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            done.set()

    def read() -> None:
        try:
            last = 0
            while not done.is_set():
                total = sqlite_store.search(Query("event", size=5)).total
                assert total >= last  # a reader never sees the count go back
                last = total
                sqlite_store.count_by(Query("event"), "ics.operation")
                sqlite_store.histogram(Query("event"), "1m")
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=write), *(threading.Thread(target=read) for _ in range(3))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert sqlite_store.search(Query("event", size=0)).total == 2000


def test_in_memory_database(tmp_path: Path) -> None:
    store = SQLiteStore(SQLiteSettings(path=":memory:"))
    store.check()
    store.write(synthetic_events(3))
    assert store.search(Query("event", filters=(Filter("ics.operation", "eq", "read"),))).total == 2
    store.close()


def test_unusable_path_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    store = SQLiteStore(SQLiteSettings(path=blocker / "icsmon.db"))
    with pytest.raises(StoreError) as caught:
        store.check()
    assert str(caught.value) == f"SQLite database {blocker}/icsmon.db: cannot create its folder (File exists)"


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "icsmon.db"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(StoreError, match="schema version 99 is newer than this icsmon"):
        SQLiteStore(SQLiteSettings(path=path)).check()


def test_measure_write_rate_writes_what_it_measures(sqlite_store: SQLiteStore) -> None:
    assert measure_write_rate(sqlite_store, "event", 1200, batch=500) > 0
    assert measure_write_rate(sqlite_store, "alert", 300) > 0
    assert sqlite_store.search(Query("event", size=0)).total == 1200
    assert sqlite_store.search(Query("alert", size=0)).total == 300


def test_a_database_with_another_layout_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "icsmon.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE alerts (id TEXT PRIMARY KEY, version INTEGER, ts INTEGER, body TEXT,"
                 " c_rule_id GENERATED ALWAYS AS (json_extract(body, '$.x')) VIRTUAL)")
    conn.close()
    with pytest.raises(StoreError) as caught:
        SQLiteStore(SQLiteSettings(path=path)).check()
    assert str(caught.value) == (f"SQLite database {path}: table alerts has another layout than this icsmon expects"
                                 " (made by an incompatible build); move the file away")
