"""One direction of TCP reassembly (:class:`sensor.reassembly.Stream`) on its own: ordering,
retransmissions, overlaps, holes, every way a hole becomes a gap, caps, and sequence wraparound."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from sensor.reassembly import MASK, BufferBudget, Stream

ISN = 1_000_000


def stream(next_seq: int = ISN, max_bytes: int = 1 << 20, max_segments: int = 1024,
           budget: BufferBudget | None = None) -> Stream:
    s = Stream(budget or BufferBudget(1 << 30), max_bytes, max_segments)
    s.next_seq = next_seq
    return s


def chunks(result: bytes | list[bytes | int]) -> list[bytes | int]:
    return [result] if isinstance(result, bytes) else list(result)


def test_in_order_segment_is_returned_as_is() -> None:
    s = stream()
    data = b"hello"
    assert s.add(ISN, data) is data  # the common case: no copy, no list
    assert s.add(ISN + 5, b" world") == b" world"
    assert s.next_seq == ISN + 11
    assert (s.missed, s.retransmitted, s.overlaps, s.pending_bytes) == (0, 0, 0, 0)


def test_retransmission_is_dropped() -> None:
    s = stream()
    s.add(ISN, b"abcdef")
    assert chunks(s.add(ISN, b"abcdef")) == []
    assert chunks(s.add(ISN + 2, b"cd")) == []
    assert s.retransmitted == 2 and s.next_seq == ISN + 6


def test_partial_overlap_is_trimmed_and_delivered_bytes_win() -> None:
    s = stream()
    s.add(ISN, b"abcdef")
    assert chunks(s.add(ISN + 4, b"XYghij")) == [b"ghij"]
    assert s.overlaps == 1 and s.next_seq == ISN + 10


def test_out_of_order_is_held_then_drained() -> None:
    budget = BufferBudget(1 << 20)
    s = stream(budget=budget)
    assert chunks(s.add(ISN + 10, b"klmno")) == []
    assert chunks(s.add(ISN + 5, b"fghij")) == []
    assert s.pending_bytes == 10 and budget.held == 10
    assert chunks(s.add(ISN, b"abcde")) == [b"abcde", b"fghij", b"klmno"]
    assert s.pending_bytes == 0 and budget.held == 0 and s.next_seq == ISN + 15


def test_held_segments_that_overlap_are_trimmed_when_drained() -> None:
    s = stream()
    s.add(ISN + 4, b"efgh")  # 4..8
    s.add(ISN + 6, b"GHIJ")  # 6..10, overlaps the held one
    s.add(ISN + 5, b"F")  # 5..6, lies inside the first
    assert chunks(s.add(ISN, b"abcd")) == [b"abcd", b"efgh", b"IJ"]
    assert s.next_seq == ISN + 10 and s.pending == {} and s.pending_bytes == 0
    assert s.overlaps == 1 and s.retransmitted == 1


def test_longer_copy_of_a_held_segment_replaces_it() -> None:
    budget = BufferBudget(1 << 20)
    s = stream(budget=budget)
    s.add(ISN + 4, b"ef")
    s.add(ISN + 4, b"efgh")
    s.add(ISN + 4, b"e")
    assert s.pending_bytes == 4 and budget.held == 4 and s.retransmitted == 1
    assert chunks(s.add(ISN, b"abcd")) == [b"abcd", b"efgh"]


def test_ack_beyond_a_hole_declares_the_gap() -> None:
    s = stream()
    s.add(ISN, b"0123")
    s.add(ISN + 10, b"ABCD")  # bytes 4..10 were never seen
    assert s.acked(ISN + 4) == []  # the receiver is not past the hole yet: keep waiting
    assert s.acked(ISN + 14) == [6, b"ABCD"]
    assert s.missed == 6 and s.next_seq == ISN + 14 and s.pending == {}


def test_ack_into_a_hole_gaps_only_what_was_acknowledged() -> None:
    s = stream()
    s.add(ISN + 10, b"ABCD")
    assert s.acked(ISN + 6) == [6]
    assert s.next_seq == ISN + 6 and s.pending_bytes == 4
    # The rest of the hole is then filled normally.
    assert chunks(s.add(ISN + 6, b"6789")) == [b"6789", b"ABCD"]
    assert s.missed == 6


def test_ack_behind_next_seq_does_nothing() -> None:
    s = stream()
    s.add(ISN, b"0123")
    s.add(ISN + 8, b"89")
    assert s.acked(ISN) == [] and s.acked(ISN - 100) == []
    assert s.pending_bytes == 2


def test_several_holes_on_one_ack() -> None:
    s = stream()
    s.add(ISN + 2, b"23")
    s.add(ISN + 6, b"67")
    s.add(ISN + 12, b"CD")
    assert s.acked(ISN + 14) == [2, b"23", 2, b"67", 4, b"CD"]
    assert s.missed == 8


def test_per_flow_byte_cap_forces_a_gap() -> None:
    s = stream(max_bytes=1024)
    assert chunks(s.add(ISN + 100, b"a" * 600)) == []
    out = chunks(s.add(ISN + 700, b"b" * 600))  # 1200 held > 1024
    assert out == [100, b"a" * 600, b"b" * 600]
    assert s.pending_bytes == 0 and s.missed == 100


def test_per_flow_byte_cap_holds_with_many_holes() -> None:
    """One skip is not always enough: the cap must hold after every segment."""
    s = stream(max_bytes=1024)
    s.add(ISN + 10, b"x")
    s.add(ISN + 20, b"y" * 1000)
    out = chunks(s.add(ISN + 2000, b"z" * 100))
    assert out == [10, b"x", 9, b"y" * 1000]
    assert s.pending_bytes == 100 <= 1024


def test_per_flow_segment_cap_forces_a_gap() -> None:
    s = stream(max_segments=4)
    for i in range(4):
        assert chunks(s.add(ISN + 10 * (i + 1), b"s")) == []
    out = chunks(s.add(ISN + 50, b"s"))
    assert out == [10, b"s"]
    assert len(s.pending) <= 4


def test_global_budget_forces_a_gap_in_the_stream_that_overflows_it() -> None:
    budget = BufferBudget(limit=1000)
    a, b = stream(budget=budget), stream(budget=budget)
    assert chunks(a.add(ISN + 10, b"a" * 800)) == []
    assert budget.held == 800
    out = chunks(b.add(ISN + 5, b"b" * 300))  # 1100 > 1000: stream b gives up its own hole
    assert out == [5, b"b" * 300]
    assert budget.held == 800 <= budget.limit and budget.forced_gaps == 1
    assert a.pending_bytes == 800 and b.pending_bytes == 0


def test_global_budget_holds_with_many_holes() -> None:
    budget = BufferBudget(limit=1000)
    a, b = stream(budget=budget), stream(budget=budget)
    a.add(ISN + 10, b"a" * 700)
    b.add(ISN + 10, b"b")
    b.add(ISN + 100, b"c" * 200)
    assert budget.held == 901
    b.add(ISN + 1000, b"d" * 200)
    assert budget.held <= budget.limit


def test_flush_delivers_everything_with_gaps() -> None:
    budget = BufferBudget(1 << 20)
    s = stream(budget=budget)
    s.add(ISN, b"ab")
    s.add(ISN + 4, b"ef")
    s.add(ISN + 9, b"jk")
    s.add(ISN + 10, b"KLM")  # overlaps the previous held segment
    assert s.flush() == [2, b"ef", 3, b"jk", b"LM"]
    assert s.pending == {} and budget.held == 0 and s.missed == 5
    assert s.flush() == []


def test_sequence_numbers_wrap_around() -> None:
    start = MASK - 5  # six bytes before the wrap
    s = stream(next_seq=start)
    assert s.add(start, b"012") == b"012"
    # Out of order across the wrap: bytes 6.. arrive before bytes 3..6.
    assert chunks(s.add((start + 6) & MASK, b"6789")) == []
    assert chunks(s.add(start + 3, b"345")) == [b"345", b"6789"]
    assert s.next_seq == (start + 10) & MASK == 4
    # Retransmission and overlap across the wrap.
    assert chunks(s.add(start + 2, b"23456")) == []
    assert chunks(s.add(start + 8, b"89ab")) == [b"ab"]
    assert (s.retransmitted, s.overlaps) == (1, 1)
    # A hole across the wrap, declared by an ACK that itself wrapped.
    t = stream(next_seq=MASK - 1)
    t.add((MASK - 1 + 6) & MASK, b"xy")
    assert t.acked((MASK - 1 + 8) & MASK) == [6, b"xy"]
    assert t.next_seq == 6


def test_mid_stream_start_takes_the_first_sequence_number() -> None:
    s = Stream(BufferBudget(1 << 20), 1 << 20, 1024)
    assert s.next_seq == -1
    assert chunks(s.add(3_000_000_000, b"first")) == [b"first"]
    assert s.next_seq == 3_000_000_005
    assert s.add(3_000_000_005, b"next") == b"next"


def replay(original: bytes, start: int, out: list[bytes | int], cursor: int) -> int:
    """Check delivered chunks against the original stream; return the new cursor."""
    for chunk in out:
        if isinstance(chunk, int):
            assert chunk > 0
            cursor += chunk
        else:
            assert chunk == original[cursor:cursor + len(chunk)], cursor
            cursor += len(chunk)
    return cursor


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    length=st.integers(min_value=1, max_value=5000),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
    start=st.one_of(st.integers(min_value=0, max_value=MASK), st.just(MASK - 100)),
    drop=st.floats(min_value=0.0, max_value=0.3),
    max_bytes=st.sampled_from([1024, 4096, 1 << 20]),
    max_segments=st.sampled_from([2, 16, 1024]),
)
def test_any_segment_order_delivers_the_stream_exactly(length: int, seed: int, start: int, drop: float,
                                                       max_bytes: int, max_segments: int) -> None:
    """Random segmentation, reordering, duplication, overlaps and losses: what comes out is the
    original stream, in order, with gaps exactly where bytes are missing, and every cap holds."""
    rng = random.Random(seed)
    original = rng.randbytes(length)
    segments = []
    pos = 0
    while pos < length:
        size = rng.randint(1, 700)
        segments.append((pos, original[pos:pos + size]))
        pos += size
    lost = {i for i in range(len(segments)) if rng.random() < drop}
    # Extra overlapping and duplicate segments, from arbitrary offsets.
    for _ in range(rng.randint(0, 10)):
        a = rng.randrange(length)
        b = min(length, a + rng.randint(1, 900))
        segments.append((a, original[a:b]))
    sent = [seg for i, seg in enumerate(segments) if i not in lost]
    rng.shuffle(sent)
    budget = BufferBudget(1 << 16)
    s = stream(next_seq=start, max_bytes=max_bytes, max_segments=max_segments, budget=budget)
    cursor = 0
    for offset, data in sent:
        cursor = replay(original, start, chunks(s.add((start + offset) & MASK, data)), cursor)
        assert s.pending_bytes <= max_bytes and len(s.pending) <= max_segments
        assert budget.held <= budget.limit and budget.held == s.pending_bytes
    cursor = replay(original, start, s.flush(), cursor)
    highest = max((offset + len(data) for offset, data in sent), default=0)
    assert cursor == highest
    if not lost and max_bytes == 1 << 20 and max_segments == 1024:
        assert s.missed == 0  # nothing lost and no cap reached: no gap at all
