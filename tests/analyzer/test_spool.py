"""The durable spool: order, restart, acknowledgement, torn records, bounds and drops."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analyzer.spool import HEADER, MAGIC, Spool, SpoolError, open_slot


def drain(spool: Spool, batch: int = 100) -> list[tuple[str, bytes]]:
    out: list[tuple[str, bytes]] = []
    while True:
        records = spool.peek(batch)
        if not records:
            return out
        out.extend((r.kind, r.data) for r in records)
        spool.ack(records)


def segments(path: Path, kind: str) -> list[Path]:
    return sorted((path / kind).glob("*.seg"))


def test_fifo_across_kinds_and_restart(tmp_path: Path) -> None:
    items = [("alert" if i % 3 == 0 else "event", f"doc-{i}".encode()) for i in range(50)]
    with Spool(tmp_path) as spool:
        assert all(s is not None for s in spool.append(items[:30]))
        first = spool.peek(10)
        spool.ack(first)
        assert [(r.kind, r.data) for r in first] == items[:10]
    with Spool(tmp_path) as spool:  # a new process on the same directory resumes
        assert len(spool) == 20
        spool.append(items[30:])
        assert drain(spool, batch=7) == items[10:]
        assert len(spool) == 0 and spool.bytes == 0
    with Spool(tmp_path) as spool:
        assert spool.pending() == []


def test_sequence_numbers_keep_growing_over_restarts(tmp_path: Path) -> None:
    with Spool(tmp_path) as spool:
        spool.append([("event", b"a"), ("alert", b"b")])
    with Spool(tmp_path) as spool:
        seqs = spool.append([("event", b"c")])
        assert seqs == [2]
        assert [r.data for r in spool.pending()] == [b"a", b"b", b"c"]


def test_acknowledged_segments_are_deleted(tmp_path: Path) -> None:
    with Spool(tmp_path, max_bytes=1 << 20, segment_bytes=4096) as spool:
        for _ in range(20):
            spool.append([("event", os.urandom(200)) for _ in range(5)])
        assert len(segments(tmp_path, "event")) >= 5
        disk_before = spool.stats()["disk_bytes"]
        drain(spool)
        assert len(segments(tmp_path, "event")) == 1
        assert spool.stats()["disk_bytes"] < disk_before // 4
    with Spool(tmp_path, segment_bytes=4096) as spool:
        assert len(spool) == 0


def test_unacknowledged_records_come_back_after_restart(tmp_path: Path) -> None:
    with Spool(tmp_path) as spool:
        spool.append([("alert", b"1"), ("alert", b"2")])
        assert [r.data for r in spool.peek(2)] == [b"1", b"2"]  # peeked, never acknowledged
    with Spool(tmp_path) as spool:
        assert [r.data for r in spool.pending()] == [b"1", b"2"]


@pytest.mark.parametrize("cut", range(1, HEADER.size + 12))
def test_torn_last_record_is_dropped_and_counted(tmp_path: Path, cut: int) -> None:
    with Spool(tmp_path) as spool:
        spool.append([("alert", b"first"), ("alert", b"second-record")])
    (seg,) = segments(tmp_path, "alert")
    data = seg.read_bytes()
    seg.write_bytes(data[:len(data) - min(cut, HEADER.size + len(b"second-record"))])
    with Spool(tmp_path) as spool:
        assert spool.torn == 1
        assert [r.data for r in spool.pending()] == [b"first"]
        spool.append([("alert", b"third")])  # the file was truncated at the last good record
    with Spool(tmp_path) as spool:
        assert spool.torn == 0
        assert [r.data for r in spool.pending()] == [b"first", b"third"]


def test_garbage_after_the_last_record_is_a_torn_record(tmp_path: Path) -> None:
    with Spool(tmp_path) as spool:
        spool.append([("event", b"ok")])
    (seg,) = segments(tmp_path, "event")
    with open(seg, "ab") as f:
        f.write(b"\xff" * 40)  # a length that runs past the end of the file
    with Spool(tmp_path) as spool:
        assert spool.torn == 1 and spool.stats()["torn_bytes"] == 40
        assert [r.data for r in spool.pending()] == [b"ok"]


def test_flipped_bit_in_an_older_segment_is_counted_as_corrupt(tmp_path: Path) -> None:
    with Spool(tmp_path, segment_bytes=4096) as spool:
        for i in range(30):
            spool.append([("alert", bytes([i]) * 300)])
    first = segments(tmp_path, "alert")[0]
    data = bytearray(first.read_bytes())
    data[len(MAGIC) + HEADER.size + 300 + HEADER.size + 10] ^= 0x01  # inside the second record's payload
    first.write_bytes(bytes(data))
    with Spool(tmp_path, segment_bytes=4096) as spool:
        assert spool.corrupt == 1 and spool.torn == 0
        kept = [r.data[0] for r in spool.pending()]
        assert kept[0] == 0 and 1 not in kept  # the segment ends at the bad record
        assert kept[-1] == 29 and kept == sorted(kept)


def test_damaged_cursor_means_redelivery_not_loss(tmp_path: Path) -> None:
    with Spool(tmp_path) as spool:
        spool.append([("event", b"a"), ("event", b"b")])
        spool.ack(spool.peek(1))
    (tmp_path / "event" / "cursor").write_bytes(b"nonsense")
    with Spool(tmp_path) as spool:
        assert [r.data for r in spool.pending()] == [b"a", b"b"]


def test_full_spool_drops_incoming_events_and_counts_them(tmp_path: Path) -> None:
    record = HEADER.size + 100
    with Spool(tmp_path, max_bytes=10 * record) as spool:
        seqs = spool.append([("event", b"e" * 100) for _ in range(15)])
        assert seqs.count(None) == 5 and seqs[:10] == list(range(10))
        assert spool.dropped_events == 5 and spool.dropped_alerts == 0
        assert spool.bytes == 10 * record


def test_alert_evicts_the_oldest_events_when_full(tmp_path: Path) -> None:
    record = HEADER.size + 100
    with Spool(tmp_path, max_bytes=10 * record) as spool:
        spool.append([("event", bytes([i]) * 100) for i in range(10)])
        spool.append([("alert", b"A" * 100), ("alert", b"B" * 250)])
        assert spool.dropped_events == 1 + 3  # 116 bytes for A, then 266 bytes (3 events) for B, oldest first
        assert spool.dropped_alerts == 0
        kinds = [(r.kind, r.data[0]) for r in spool.pending()]
        assert kinds == [("event", i) for i in range(4, 10)] + [("alert", ord("A")), ("alert", ord("B"))]
        assert spool.bytes <= spool.max_bytes
    with Spool(tmp_path, max_bytes=10 * record) as spool:  # eviction is persisted
        assert [r.kind for r in spool.pending()].count("event") == 6


def test_alerts_are_dropped_only_when_no_event_is_left(tmp_path: Path) -> None:
    record = HEADER.size + 100
    with Spool(tmp_path, max_bytes=4 * record) as spool:
        spool.append([("event", b"e" * 100), ("alert", b"a" * 100), ("event", b"e" * 100)])
        seqs = spool.append([("alert", b"b" * 100)] * 4)
        assert seqs[3] is None and seqs.count(None) == 1  # room for 1, then 2 by evicting both events
        assert spool.dropped_events == 2 and spool.dropped_alerts == 1
        assert [r.kind for r in spool.pending()] == ["alert"] * 4
        assert spool.stats()["dropped_alerts"] == 1


def test_eviction_of_a_peeked_batch_is_skipped_by_ack(tmp_path: Path) -> None:
    record = HEADER.size + 10
    with Spool(tmp_path, max_bytes=5 * record) as spool:
        spool.append([("event", bytes([i]) * 10) for i in range(5)])
        batch = spool.peek(3)  # being delivered ...
        spool.append([("alert", b"x" * 10)])  # ... while an alert evicts the oldest event
        assert spool.ack(batch) == 2
        assert [r.data[0] for r in spool.pending()] == [3, 4, ord("x")]


def test_second_process_on_the_same_directory_is_refused(tmp_path: Path) -> None:
    with Spool(tmp_path):
        with pytest.raises(SpoolError, match="in use by another process"):
            Spool(tmp_path)
    Spool(tmp_path).close()  # released on close


def test_absorb_moves_everything_in_order(tmp_path: Path) -> None:
    with Spool(tmp_path / "a") as a, Spool(tmp_path / "b") as b:
        a.append([("alert", b"a1")])
        b.append([("event", b"b1"), ("alert", b"b2")])
        assert a.absorb(b, chunk=1) == 2
        assert len(b) == 0
        assert [(r.kind, r.data) for r in a.pending()] == [("alert", b"a1"), ("event", b"b1"), ("alert", b"b2")]


def test_slots_for_concurrent_processes_and_leftovers_are_adopted(tmp_path: Path) -> None:
    first = open_slot(tmp_path)
    second = open_slot(tmp_path)  # another process at the same time
    assert (first.path.name, second.path.name) == ("0", "1")
    second.append([("alert", b"left behind")])
    second.close()
    first.close()
    with open_slot(tmp_path) as again:  # the next start takes slot 0 and adopts slot 1's records
        assert again.path.name == "0"
        assert [r.data for r in again.pending()] == [b"left behind"]
    with Spool(tmp_path / "1") as old:
        assert len(old) == 0


def test_unusable_directory_is_a_one_line_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(SpoolError) as info:
        Spool(blocker / "spool")
    assert "\n" not in str(info.value) and "spool" in str(info.value)


def test_records_larger_than_a_segment(tmp_path: Path) -> None:
    big = os.urandom(200_000)
    with Spool(tmp_path, max_bytes=1 << 20, segment_bytes=65536) as spool:
        spool.append([("event", b"small"), ("alert", big), ("event", b"after")])
    with Spool(tmp_path, max_bytes=1 << 20, segment_bytes=65536) as spool:
        assert [r.data for r in spool.pending()] == [b"small", big, b"after"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.one_of(
    st.tuples(st.just("append"), st.lists(st.tuples(st.sampled_from(["alert", "event"]),
                                                    st.binary(max_size=300)), min_size=1, max_size=20)),
    st.tuples(st.just("deliver"), st.integers(1, 30)),
    st.tuples(st.just("restart"), st.none()),
), max_size=25))
def test_model_based_order_survives_any_sequence(tmp_path_factory: pytest.TempPathFactory,
                                                 ops: list[tuple[str, object]]) -> None:
    """Against a plain list: whatever is appended comes out once, in order, across restarts and segments."""
    path = tmp_path_factory.mktemp("spool")
    model: list[tuple[str, bytes]] = []
    delivered: list[tuple[str, bytes]] = []
    expected_delivered: list[tuple[str, bytes]] = []
    spool = Spool(path, max_bytes=1 << 24, segment_bytes=65536)
    try:
        for op, arg in ops:
            if op == "append":
                spool.append(arg)  # type: ignore[arg-type]
                model.extend(arg)  # type: ignore[arg-type]
            elif op == "deliver":
                records = spool.peek(arg)  # type: ignore[arg-type]
                spool.ack(records)
                delivered.extend((r.kind, r.data) for r in records)
                expected_delivered.extend(model[:len(records)])
                del model[:len(records)]
            else:
                spool.close()
                spool = Spool(path, max_bytes=1 << 24, segment_bytes=65536)
            assert len(spool) == len(model)
        assert delivered == expected_delivered
        assert [(r.kind, r.data) for r in spool.pending()] == model
    finally:
        spool.close()


def test_write_and_drain_rates(tmp_path: Path) -> None:
    """Records of 600 bytes (a typical alert document), batches of 500: measured, with a floor."""
    payload = os.urandom(600)
    n, batch = 50_000, 500
    with Spool(tmp_path, max_bytes=1 << 30) as spool:
        started = time.perf_counter()
        for _ in range(n // batch):
            spool.append([("alert", payload)] * batch)
        write_rate = n / (time.perf_counter() - started)
        started = time.perf_counter()
        drained = 0
        while records := spool.peek(batch):
            spool.ack(records)
            drained += len(records)
        drain_rate = n / (time.perf_counter() - started)
    assert drained == n
    print(f"\nspool: write {write_rate:,.0f} records/s, drain {drain_rate:,.0f} records/s (600-byte records)")
    assert write_rate > 20_000 and drain_rate > 20_000
