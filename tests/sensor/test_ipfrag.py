"""The bounded IP defragmenter on its own: assembly in any order, overlap policy, and every cap
(datagrams, bytes, fragments per datagram, time) enforced and counted."""

from __future__ import annotations

import random
import time

from hypothesis import given, settings
from hypothesis import strategies as st

from sensor.ipfrag import MAX_FRAGMENTS, Defragmenter

DATA = bytes(range(256)) * 8  # 2048 bytes


def pieces(data: bytes, size: int) -> list[tuple[int, bool, bytes]]:
    """(offset, more, bytes) fragments of ``data``; ``size`` a multiple of 8."""
    out = []
    for off in range(0, len(data), size):
        chunk = data[off:off + size]
        out.append((off, off + size < len(data), chunk))
    return out


def feed(defrag: Defragmenter, key: bytes, frags: list[tuple[int, bool, bytes]],
         ts: float = 0.0) -> list[bytes]:
    done = []
    for off, more, chunk in frags:
        whole = defrag.add(key, off, more, chunk, ts)
        if whole is not None:
            done.append(whole)
    return done


def test_in_order_and_reverse_order_make_the_same_datagram() -> None:
    d = Defragmenter()
    frags = pieces(DATA, 200)
    assert feed(d, b"a", frags) == [DATA]
    assert feed(d, b"b", frags[::-1]) == [DATA]
    assert d.counters == {"fragments": 2 * len(frags), "datagrams-reassembled": 2}
    assert d.held == 0 and d.in_progress == 0


def test_nothing_comes_out_while_a_hole_remains() -> None:
    d = Defragmenter()
    frags = pieces(DATA, 256)
    missing = frags.pop(3)
    assert feed(d, b"k", frags) == []
    assert d.in_progress == 1 and d.held == len(DATA) - len(missing[2])
    assert feed(d, b"k", [missing]) == [DATA]
    assert d.held == 0


def test_datagrams_are_kept_apart_by_key() -> None:
    d = Defragmenter()
    a, b = pieces(b"A" * 64, 16), pieces(b"B" * 64, 16)
    mixed = [x for pair in zip(a, b, strict=True) for x in pair]
    out = []
    for i, (off, more, chunk) in enumerate(mixed):
        whole = d.add(b"a" if i % 2 == 0 else b"b", off, more, chunk, 0.0)
        if whole is not None:
            out.append(whole)
    assert out == [b"A" * 64, b"B" * 64]


def test_overlap_policy_and_counter() -> None:
    d = Defragmenter()
    assert d.add(b"k", 8, True, b"2" * 16, 0.0) is None  # bytes 8..24
    assert d.add(b"k", 0, True, b"1" * 16, 0.0) is None  # bytes 0..16: overlaps, starts earlier
    assert d.add(b"k", 8, True, b"X" * 24, 0.0) is None  # duplicate offset: the first copy stays
    whole = d.add(b"k", 24, False, b"3" * 8, 0.0)
    assert whole == b"1" * 16 + b"2" * 8 + b"3" * 8
    assert d.counters["overlapping-fragments"] == 2
    assert d.held == 0


def test_conflicting_last_fragments_invalidate_the_datagram() -> None:
    d = Defragmenter()
    assert d.add(b"k", 16, False, b"x" * 8, 0.0) is None  # datagram ends at 24
    assert d.add(b"k", 16, False, b"x" * 16, 0.0) is None  # ... no, at 32
    assert d.counters["conflicting-last-fragment"] == 1
    assert d.counters["datagrams-invalid"] == 1
    assert d.in_progress == 0 and d.held == 0


def test_fragment_beyond_64k_is_refused() -> None:
    d = Defragmenter()
    assert d.add(b"k", 65528, False, b"x" * 7, 0.0) is None  # ends at 65535: the largest datagram
    assert d.in_progress == 1
    assert d.add(b"k2", 65528, False, b"x" * 8, 0.0) is None
    assert d.counters["fragment-beyond-64k"] == 1
    assert d.in_progress == 1


def test_max_datagrams_evicts_the_oldest() -> None:
    d = Defragmenter(max_datagrams=3)
    for i in range(5):
        assert d.add(bytes([i]), 0, True, b"x" * 8, float(i)) is None
    assert d.in_progress == 3 and d.held == 24
    assert d.counters["datagrams-evicted"] == 2
    # Datagrams 0 and 1 are gone: their last pieces start new, incomplete datagrams.
    assert d.add(b"\x00", 8, False, b"y" * 8, 5.0) is None
    assert d.add(b"\x04", 8, False, b"y" * 8, 5.0) == b"x" * 8 + b"y" * 8


def test_max_bytes_is_never_exceeded() -> None:
    d = Defragmenter(max_bytes=65535 + 100)
    for i in range(40):
        d.add(i.to_bytes(2, "big"), 0, True, b"x" * 4000, 0.0)
        assert d.held <= d.max_bytes
    assert d.counters["datagrams-over-memory-cap"] == 40 - (65535 + 100) // 4000
    # Memory comes back when datagrams complete or time out.
    d.expire(1000.0)
    assert d.held == 0 and d.in_progress == 0


def test_timeout_forgets_stale_pieces() -> None:
    d = Defragmenter(timeout=10.0)
    assert d.add(b"k", 0, True, b"a" * 8, 0.0) is None
    # 11 s later the rest arrives: the first piece is stale, the datagram cannot complete.
    assert d.add(b"k", 8, False, b"b" * 8, 11.0) is None
    assert d.counters["datagrams-timed-out"] == 1
    assert d.in_progress == 1 and d.held == 8
    # A fresh first piece completes the fresh datagram.
    assert d.add(b"k", 0, True, b"c" * 8, 12.0) == b"c" * 8 + b"b" * 8


def test_new_datagrams_expire_old_ones() -> None:
    d = Defragmenter(timeout=5.0)
    for i in range(10):
        d.add(bytes([i]), 0, True, b"z" * 100, float(i) * 0.1)
    assert d.in_progress == 10
    d.add(b"late", 0, True, b"z" * 8, 100.0)
    assert d.in_progress == 1 and d.held == 8
    assert d.counters["datagrams-timed-out"] == 10


def test_fragments_per_datagram_are_capped() -> None:
    d = Defragmenter()
    assert d.add(b"k", 65520, False, b"x" * 8, 0.0) is None
    for off in range(0, 8 * MAX_FRAGMENTS, 8):
        assert d.add(b"k", off, True, b"x" * 8, 0.0) is None
    assert d.counters["datagrams-too-many-fragments"] == 1


def test_tiny_fragment_flood_costs_little_cpu() -> None:
    """A 64 KiB datagram in 8-byte fragments, last piece first: 8,190 fragments.

    Without a per-datagram cap every fragment rescans and rejoins all earlier pieces, about five
    seconds of CPU for one datagram (half a megabyte of traffic).
    """
    d = Defragmenter()
    started = time.perf_counter()
    d.add(b"k", 65520, False, b"x" * 8, 0.0)
    for off in range(0, 65520 - 8, 8):
        d.add(b"k", off, True, b"x" * 8, 0.0)
    assert time.perf_counter() - started < 1.0
    assert d.held <= MAX_FRAGMENTS * 8


def test_overlap_flood_stays_cheap() -> None:
    """Overlapping pieces make the held bytes reach the length early; joins stay bounded."""
    d = Defragmenter()
    started = time.perf_counter()
    d.add(b"k", 8000, False, b"x" * 8, 0.0)
    for _ in range(40):
        for off in range(8, 8000, 512):
            d.add(b"k", off, True, b"y" * 1024, 0.0)
    assert time.perf_counter() - started < 1.0
    assert d.counters["overlapping-fragments"] > 0


@settings(max_examples=200, deadline=None, derandomize=True)
@given(
    data=st.binary(min_size=1, max_size=3000),
    size=st.integers(min_value=1, max_value=100).map(lambda n: n * 8),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
    duplicates=st.integers(min_value=0, max_value=5),
)
def test_any_order_with_duplicates_gives_the_datagram_once(data: bytes, size: int, seed: int,
                                                           duplicates: int) -> None:
    d = Defragmenter()
    frags = pieces(data, size)
    rng = random.Random(seed)
    frags += [rng.choice(frags) for _ in range(duplicates)]
    rng.shuffle(frags)
    out = feed(d, b"k", frags)
    assert out[:1] == [data]
    # A duplicate arriving after completion starts a new datagram, which can only ever come out
    # whole and identical (a one-fragment datagram).
    assert all(o == data for o in out)
    assert d.held <= sum(len(c) for _, _, c in frags)
    d.expire(1e9)
    assert d.held == 0 and d.in_progress == 0
