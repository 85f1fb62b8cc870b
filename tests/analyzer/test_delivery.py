"""The delivery loop against a small real store kept in memory that can be switched off on demand.

Every test checks the two things delivery promises: nothing put is lost (it is in the store, the
spool, the dead-letter file or a drop counter) and nothing reaches the store twice or out of order.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from analyzer.alerts import Detection
from analyzer.delivery import Delivery, decode_document, encode_document
from analyzer.detect import Analyzer, event_document
from analyzer.spool import Spool
from analyzer.stores import Document, StoreAuthError, StoreUnavailable, WriteResult


class MemoryStore:
    """A store in a dict: highest version wins, writes logged in order, switchable and gateable."""

    name = "memory"

    def __init__(self) -> None:
        self.docs: dict[tuple[str, str], Document] = {}
        self.first_writes: list[str] = []  # ids in the order the store first saw them
        self.calls = 0
        self.writes_per_id: dict[str, int] = {}
        self.available = True
        self.auth_ok = True
        self.gate: threading.Event | None = None  # when set, write() waits for it
        self.entered = threading.Event()
        self.reject: dict[str, str] = {}  # id -> reason
        self.explode: set[str] = set()  # ids whose write raises a non-store error (a store bug)
        self.checks = 0
        self.lock = threading.Lock()

    def check(self) -> None:
        self.checks += 1
        if not self.auth_ok:
            raise StoreAuthError("memory: wrong password")
        if not self.available:
            raise StoreUnavailable("memory: connection refused")

    def write(self, documents: Sequence[Document]) -> WriteResult:
        self.calls += 1
        self.entered.set()
        if self.gate is not None:
            self.gate.wait(30)
        if not self.available:
            raise StoreUnavailable("memory: connection refused")
        if any(d.id in self.explode for d in documents):
            raise TypeError("cannot serialise")
        rejected: list[tuple[Document, str]] = []
        written = 0
        with self.lock:
            for doc in documents:
                if doc.id in self.reject:
                    rejected.append((doc, self.reject[doc.id]))
                    continue
                key = (doc.kind, doc.id)
                old = self.docs.get(key)
                if old is None:
                    self.first_writes.append(doc.id)
                self.writes_per_id[doc.id] = self.writes_per_id.get(doc.id, 0) + 1
                if old is None or doc.version >= old.version:
                    self.docs[key] = doc
                written += 1
        return WriteResult(written=written, rejected=tuple(rejected))


def docs(n: int, kind: str = "alert", start: int = 0) -> list[Document]:
    return [Document(kind=kind, id=f"{kind}-{i:06d}", body={"n": i, "@timestamp": "2026-01-01T00:00:00Z"})
            for i in range(start, start + n)]  # type: ignore[arg-type]


def fast(store: Any, spool: Spool, **kw: Any) -> Delivery:
    kw.setdefault("backoff_initial", 0.01)
    kw.setdefault("backoff_max", 0.05)
    kw.setdefault("linger", 0.0)
    return Delivery(store, spool, rng=random.Random(4), **kw).start()


def test_document_round_trip_through_the_spool_format() -> None:
    doc = Document(kind="alert", id="a1", body={"x": [1, 2], "t": "2026-01-01T00:00:00Z"}, version=7)
    assert decode_document(encode_document(doc)) == doc


def test_direct_delivery_in_order(tmp_path: Path) -> None:
    store = MemoryStore()
    delivery = fast(store, Spool(tmp_path), batch_size=64)
    for doc in docs(1000):
        delivery.put(doc)
    assert delivery.flush(10)
    delivery.close()
    assert store.first_writes == [d.id for d in docs(1000)]
    stats = delivery.stats()
    assert stats["written"] == 1000 and stats["spooled"] == 0 and stats["spooled_total"] == 0
    assert stats["retries"] == 0 and stats["last_error"] is None


def test_outage_spools_everything_and_delivers_in_order_afterwards(tmp_path: Path) -> None:
    store = MemoryStore()
    delivery = fast(store, Spool(tmp_path), batch_size=50)
    items = docs(300, "alert") + docs(300, "event")
    random.Random(1).shuffle(items)
    for doc in items[:100]:
        delivery.put(doc)
    assert delivery.flush(10)
    store.available = False
    for doc in items[100:500]:
        delivery.put(doc)
    deadline = time.monotonic() + 10
    while delivery.stats()["retries"] < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    stats = delivery.stats()
    assert stats["retries"] >= 3 and "connection refused" in stats["last_error"]
    assert stats["spooled"] + stats["queued"] == 400 and stats["spooled"] > 0
    for doc in items[500:]:
        delivery.put(doc)  # new documents go behind the spooled ones
    store.available = True
    assert delivery.flush(10)
    delivery.close()
    assert store.first_writes == [d.id for d in items]
    assert set(store.writes_per_id.values()) == {1}
    assert delivery.stats()["spooled"] == 0


def test_put_never_waits_for_a_stuck_store(tmp_path: Path) -> None:
    """The store hangs on the first batch; 20,000 puts go through the spool without waiting for it."""
    store = MemoryStore()
    store.gate = threading.Event()
    delivery = fast(store, Spool(tmp_path), batch_size=100, queue_size=500)
    items = docs(20_000)
    delivery.put(items[0])
    assert store.entered.wait(5)
    slowest = 0.0
    started = time.perf_counter()
    for doc in items[1:]:
        t = time.perf_counter()
        delivery.put(doc)
        slowest = max(slowest, time.perf_counter() - t)
    elapsed = time.perf_counter() - started
    assert elapsed < 5 and slowest < 0.5
    assert delivery.stats()["spooled_total"] >= 19_000
    store.gate.set()
    assert delivery.flush(20)
    delivery.close()
    # The batch in flight when the queue spilled was written once, then removed from the spool.
    assert store.first_writes == [d.id for d in items]
    assert set(store.writes_per_id.values()) == {1}


def test_batch_in_flight_during_a_spill_that_then_fails_is_not_lost(tmp_path: Path) -> None:
    store = MemoryStore()
    store.gate = threading.Event()
    delivery = fast(store, Spool(tmp_path), batch_size=10, queue_size=20)
    items = docs(100)
    delivery.put(items[0])
    assert store.entered.wait(5)
    for doc in items[1:]:
        delivery.put(doc)  # spills the queue, in-flight batch first
    store.available = False
    store.gate.set()
    time.sleep(0.1)
    store.gate = None
    store.available = True
    assert delivery.flush(10)
    delivery.close()
    assert store.first_writes == [d.id for d in items]
    assert set(store.writes_per_id.values()) == {1}


def test_rejected_documents_go_to_the_dead_letter_file(tmp_path: Path) -> None:
    store = MemoryStore()
    store.reject = {"alert-000003": "mapper_parsing_exception: failed to parse field [source.ip] of type [ip]"}
    dead = tmp_path / "dead" / "letters.jsonl"
    delivery = fast(store, Spool(tmp_path / "spool"), dead_letter=dead)
    for doc in docs(10):
        delivery.put(doc)
    assert delivery.flush(10)
    delivery.close()
    lines = [json.loads(line) for line in dead.read_text().splitlines()]
    assert len(lines) == 1
    (line,) = lines
    assert line["id"] == "alert-000003" and line["kind"] == "alert" and line["version"] == 1
    assert "mapper_parsing_exception" in line["reason"] and line["store"] == "memory"
    assert line["document"] == {"n": 3, "@timestamp": "2026-01-01T00:00:00Z"}
    assert line["time"].endswith("Z")
    assert len(store.docs) == 9
    stats = delivery.stats()
    assert stats["dead_letters"] == 1 and stats["written"] == 9 and stats["dead_letter_path"] == str(dead)


def test_a_store_bug_on_one_document_dead_letters_only_that_document(tmp_path: Path) -> None:
    store = MemoryStore()
    store.explode = {"alert-000005"}
    delivery = fast(store, Spool(tmp_path), batch_size=10)
    for doc in docs(10):
        delivery.put(doc)
    assert delivery.flush(10)
    delivery.close()
    assert len(store.docs) == 9
    line = json.loads((tmp_path / "dead-letter.jsonl").read_text())
    assert line["id"] == "alert-000005" and "TypeError" in line["reason"]


def test_close_leaves_the_rest_in_the_spool_and_a_restart_delivers_it_once(tmp_path: Path) -> None:
    store = MemoryStore()
    delivery = fast(store, Spool(tmp_path), batch_size=20)
    items = docs(200)
    for doc in items[:50]:
        delivery.put(doc)
    assert delivery.flush(10)
    store.available = False
    for doc in items[50:]:
        delivery.put(doc)
    started = time.monotonic()
    delivery.close(timeout=0.3)
    assert time.monotonic() - started < 2
    stats = delivery.stats()
    assert stats["spooled"] == 150 and stats["queued"] == 0 and stats["written"] == 50

    store.available = True  # the next sensor process, same spool directory
    spool = Spool(tmp_path)
    assert len(spool) == 150
    again = fast(store, spool, batch_size=20)
    assert again.flush(10)
    again.close()
    assert store.first_writes == [d.id for d in items]
    assert set(store.writes_per_id.values()) == {1}


def test_close_flushes_everything_when_the_store_is_up(tmp_path: Path) -> None:
    store = MemoryStore()
    delivery = fast(store, Spool(tmp_path), batch_size=7, linger=5.0)
    for doc in docs(30):
        delivery.put(doc)
    delivery.close(timeout=5)
    assert len(store.docs) == 30 and delivery.stats()["spooled"] == 0


def test_unreachable_at_start_up_checks_again_before_the_first_write(tmp_path: Path) -> None:
    store = MemoryStore()
    store.available = False
    delivery = fast(store, Spool(tmp_path), check_first=True)
    for doc in docs(5):
        delivery.put(doc)
    deadline = time.monotonic() + 5
    while store.checks < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert store.calls == 0 and delivery.stats()["spooled"] == 5  # waiting on disk, not in memory
    store.available = True
    assert delivery.flush(10)
    delivery.close()
    assert store.checks >= 3 and len(store.docs) == 5


def test_full_spool_during_an_outage_drops_events_before_alerts(tmp_path: Path) -> None:
    store = MemoryStore()
    store.available = False
    alerts, events = docs(40, "alert"), docs(400, "event")
    record = len(encode_document(events[0])) + 16
    delivery = fast(store, Spool(tmp_path, max_bytes=120 * record), queue_size=10, batch_size=10)
    for i, event in enumerate(events):
        delivery.put(event)
        if i % 10 == 0:
            delivery.put(alerts[i // 10])
    delivery.close(timeout=0.2)
    stats = delivery.stats()
    assert stats["dropped_alerts"] == 0
    assert stats["dropped_events"] > 250
    assert stats["spooled"] + stats["dropped_events"] == 440  # nothing unaccounted for

    store.available = True
    again = fast(store, Spool(tmp_path, max_bytes=120 * record))
    assert again.flush(10)
    again.close()
    assert {d.id for d in alerts} <= {doc_id for _, doc_id in store.docs}


def test_alert_updates_keep_their_id_and_the_store_keeps_the_final_version(tmp_path: Path) -> None:
    store = MemoryStore()
    delivery = fast(store, Spool(tmp_path))
    analyzer = Analyzer([flag_writes], deliver=delivery.put, update_interval=3600)
    for i in range(500):
        analyzer(write_event(i, unit=1))
    analyzer(write_event(500, unit=2))
    analyzer.flush()
    delivery.close()
    alerts = {doc_id: doc for (kind, doc_id), doc in store.docs.items() if kind == "alert"}
    assert len(alerts) == 2
    big = max(alerts.values(), key=lambda d: d.version)
    assert big.version == 500 and big.body["icsmon.alert.count"] == 500
    assert big.body["icsmon.alert.version"] == 500 and big.body["icsmon.alert.id"] == big.id
    assert analyzer.alert_documents == 3  # two new alerts and one coalesced update, not 501 writes


def test_tick_hands_on_pending_updates_once_the_interval_has_passed() -> None:
    """Between events (a quiet link) tick() hands on the latest state when due, and not before."""
    now = [0.0]
    got: list[Document] = []
    analyzer = Analyzer([flag_writes], deliver=got.append, update_interval=1.0, clock=lambda: now[0])
    for i in range(3):
        analyzer(write_event(i))
    assert [d.version for d in got] == [1]  # the new alert at once; its two updates wait
    now[0] = 0.5
    analyzer.tick()
    assert len(got) == 1
    now[0] = 1.0
    analyzer.tick()
    assert [d.version for d in got] == [1, 3] and got[-1].body["icsmon.alert.count"] == 3
    now[0] = 5.0
    analyzer.tick()
    assert len(got) == 2  # nothing pending: nothing repeated


def flag_writes(event: dict[str, Any]) -> list[Detection]:
    if event.get("ics.operation") != "write":
        return []
    return [Detection(detector_type="test", detector_id="test-write", title="write", severity="high", event=event)]


def write_event(i: int, unit: int = 1) -> dict[str, Any]:
    return {"@timestamp": 1_767_225_600.0 + i * 0.001, "event.dataset": "icsmon.modbus", "source.ip": "10.0.0.1",
            "destination.ip": f"10.0.0.{unit + 1}", "ics.operation": "write", "event.sequence": i}


def test_event_document_ids_are_stable_and_distinct() -> None:
    a = dict(write_event(1), **{"icsmon.packet": 40, "observer.id": "s1"})
    assert event_document(a).id == event_document(dict(a, **{"event.sequence": 99})).id == "s1:1767225600001000:40:0"
    assert event_document(a, ordinal=1).id != event_document(a).id  # two PDUs in one packet
    assert event_document(dict(a, **{"icsmon.packet": 41})).id != event_document(a).id
    assert event_document(dict(a, **{"observer.id": "s2"})).id != event_document(a).id
    # Without a packet number (connections, summaries): the content, without the run's numbering.
    conn = {"@timestamp": 1767225600.5, "event.dataset": "icsmon.conn", "network.community_id": "1:x"}
    first, later = dict(conn, **{"event.sequence": 1}), dict(conn, **{"event.sequence": 7})
    assert event_document(first).id == event_document(later).id
    assert event_document(conn).id != event_document(dict(conn, **{"network.community_id": "1:y"})).id
    assert event_document(a).body["@timestamp"] == "2026-01-01T00:00:00.001000Z"
    assert event_document(a).kind == "event" and a["@timestamp"] == 1_767_225_600.001  # the event is not changed


def test_analyzer_numbers_events_within_a_packet(tmp_path: Path) -> None:
    got: list[Document] = []
    analyzer = Analyzer(deliver=got.append, store_events=True)
    same = dict(write_event(1), **{"icsmon.packet": 7})
    for event in (same, dict(same), dict(same, **{"icsmon.packet": 8})):
        analyzer(event)
    assert [d.id.rsplit(":", 2)[1:] for d in got] == [["7", "0"], ["7", "1"], ["8", "0"]]


def test_a_broken_detector_is_counted_and_the_others_still_run(tmp_path: Path) -> None:
    def broken(event: dict[str, Any]) -> list[Detection]:
        raise KeyError("ics.unit")

    got: list[Document] = []
    analyzer = Analyzer([broken, flag_writes], deliver=got.append)
    analyzer(write_event(1))
    assert analyzer.detector_errors == {"broken": 1} and len(got) == 1


def test_auth_error_while_running_is_retried_not_dropped(tmp_path: Path) -> None:
    class Revoked(MemoryStore):
        def write(self, documents: Sequence[Document]) -> WriteResult:
            if not self.auth_ok:
                raise StoreAuthError("memory: api key revoked")
            return super().write(documents)

    store = Revoked()
    store.auth_ok = False
    delivery = fast(store, Spool(tmp_path))
    for doc in docs(3):
        delivery.put(doc)
    time.sleep(0.1)
    assert "authentication" in delivery.stats()["last_error"]
    store.auth_ok = True
    assert delivery.flush(10)
    delivery.close()
    assert len(store.docs) == 3


@pytest.mark.parametrize("n", [1, 499, 500, 501])
def test_batch_boundaries(tmp_path: Path, n: int) -> None:
    store = MemoryStore()
    delivery = fast(store, Spool(tmp_path), batch_size=500)
    for doc in docs(n):
        delivery.put(doc)
    delivery.close()
    assert store.first_writes == [d.id for d in docs(n)]


@pytest.mark.elasticsearch
def test_elasticsearch_rejection_goes_to_the_dead_letter_file_and_the_rest_is_indexed(
        tmp_path: Path, es_url: str, es_index_prefix: str) -> None:
    """The real store: an event whose source.ip is not an address cannot be indexed (mapping conflict)."""
    from analyzer.settings import ElasticsearchSettings
    from analyzer.stores.elasticsearch import ElasticsearchStore

    store = ElasticsearchStore(ElasticsearchSettings(url=es_url, index_prefix=es_index_prefix,
                                                     number_of_replicas=0))
    store.check()
    try:
        good = [event_document(dict(write_event(i), **{"icsmon.packet": i, "observer.id": "t"})) for i in range(20)]
        bad = event_document(dict(write_event(99), **{"icsmon.packet": 99, "observer.id": "t",
                                                      "source.ip": "not-an-address"}))
        analyzer = Analyzer([flag_writes], update_interval=3600)
        delivery = fast(store, Spool(tmp_path / "spool"), dead_letter=tmp_path / "dead.jsonl")
        analyzer.deliver = delivery.put
        for doc in good[:10]:
            delivery.put(doc)
        delivery.put(bad)
        for doc in good[10:]:
            delivery.put(doc)
        for i in range(5):
            analyzer(write_event(i))
        analyzer.flush()
        assert delivery.flush(30)
        delivery.close()

        (line,) = [json.loads(x) for x in (tmp_path / "dead.jsonl").read_text().splitlines()]
        assert line["id"] == bad.id and line["kind"] == "event" and line["store"] == "elasticsearch"
        assert "source.ip" in line["reason"] and "(400)" in line["reason"]
        assert line["document"]["source.ip"] == "not-an-address"
        store.refresh()
        client = store._client
        events = client.search(index=f"{es_index_prefix}-events-*", size=100).body["hits"]
        assert sorted(h["_id"] for h in events["hits"]) == sorted(d.id for d in good)
        alerts = client.search(index=f"{es_index_prefix}-alerts-*", size=10).body["hits"]["hits"]
        assert len(alerts) == 1 and alerts[0]["_source"]["icsmon.alert.version"] == 5
        stats = delivery.stats()
        assert stats["dead_letters"] == 1 and stats["written"] == 20 + 2
    finally:
        store.uninstall_templates()
        store.close()
