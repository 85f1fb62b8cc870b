"""TCP stream reassembly for one direction of one connection.

:meth:`Stream.add` takes a segment's sequence number and payload and returns
what the protocol layer may now consume, in order:

* ``bytes`` -- the common case: the segment was exactly the next data and
  nothing was waiting, so the payload itself is returned (no copy);
* otherwise a list of chunks, each either ``bytes`` (in-order data) or an
  ``int`` (a gap: that many bytes were never captured; the dissector must
  resynchronise). The list may be empty (segment buffered or a duplicate).

Retransmissions are dropped, overlaps trimmed (data already delivered wins,
as most end hosts do), out-of-order segments held until the hole fills. A
hole becomes a gap when the receiver acknowledges past it (the bytes passed
the sensor unseen and will never be retransmitted), when this direction
holds too many bytes or segments, or when the flow ends. Sequence numbers
wrap modulo 2**32.
"""

from __future__ import annotations

__all__ = ["Stream", "BufferBudget", "MASK"]

MASK = 0xFFFFFFFF
HALF = 0x80000000
Chunk = bytes | int


class BufferBudget:
    """Out-of-order bytes held across all streams, against a global cap."""

    __slots__ = ("held", "limit", "forced_gaps")

    def __init__(self, limit: int) -> None:
        self.held = 0
        self.limit = limit
        self.forced_gaps = 0


def _after(a: int, b: int) -> int:
    """Distance from b forward to a, or a negative number if a is before b."""
    d = (a - b) & MASK
    return d if d < HALF else d - (MASK + 1)


class Stream:
    __slots__ = ("next_seq", "pending", "pending_bytes", "missed", "retransmitted", "overlaps",
                 "budget", "max_bytes", "max_segments")

    def __init__(self, budget: BufferBudget, max_bytes: int, max_segments: int) -> None:
        self.next_seq = -1  # unknown until the SYN or the first packet of a picked-up stream
        self.pending: dict[int, bytes] = {}
        self.pending_bytes = 0
        self.missed = 0
        self.retransmitted = 0
        self.overlaps = 0
        self.budget = budget
        self.max_bytes = max_bytes
        self.max_segments = max_segments

    def add(self, seq: int, data: bytes) -> bytes | list[Chunk]:
        if seq == self.next_seq and not self.pending:
            self.next_seq = (seq + len(data)) & MASK
            return data
        return self._add_slow(seq, data)

    def _add_slow(self, seq: int, data: bytes) -> list[Chunk]:
        if self.next_seq < 0:
            self.next_seq = seq
        ahead = _after(seq, self.next_seq)
        out: list[Chunk] = []
        if ahead < 0:
            if ahead + len(data) <= 0:
                self.retransmitted += 1
                return out
            self.overlaps += 1
            data = data[-ahead:]
            ahead = 0
        if ahead == 0:
            out.append(data)
            self.next_seq = (self.next_seq + len(data)) & MASK
            self._drain(out)
            return out
        self._hold(seq, data)
        budget = self.budget
        if budget.held > budget.limit:
            budget.forced_gaps += 1
        # Give up holes, oldest first, until every cap holds again. One skip is not enough when
        # several holes are pending. The global budget is only relieved with this stream's own
        # bytes: it was within its cap before this segment, and emptying this stream's queue
        # takes back at least the bytes just added, so the cap holds after every call.
        while self.pending and (self.pending_bytes > self.max_bytes or len(self.pending) > self.max_segments
                                or budget.held > budget.limit):
            self._skip_to_first_pending(out)
            self._drain(out)
        return out

    def _hold(self, seq: int, data: bytes) -> None:
        old = self.pending.get(seq)
        if old is not None:
            if len(old) >= len(data):
                self.retransmitted += 1
                return
            self._release(len(old))
        self.pending[seq] = data
        self.pending_bytes += len(data)
        self.budget.held += len(data)

    def _release(self, n: int) -> None:
        self.pending_bytes -= n
        self.budget.held -= n

    def _drain(self, out: list[Chunk]) -> None:
        """Move held segments that now continue the stream into ``out``."""
        pending = self.pending
        while pending:
            data = pending.pop(self.next_seq, None)
            if data is None:
                data = self._pop_overlapping()
                if data is None:
                    return
            else:
                self._release(len(data))
            out.append(data)
            self.next_seq = (self.next_seq + len(data)) & MASK

    def _pop_overlapping(self) -> bytes | None:
        """A held segment that starts before next_seq: drop it or return its new tail."""
        for seq in sorted(self.pending, key=lambda s: _after(s, self.next_seq)):
            ahead = _after(seq, self.next_seq)
            if ahead > 0:
                return None
            data = self.pending.pop(seq)
            self._release(len(data))
            if ahead + len(data) > 0:
                self.overlaps += 1
                return data[-ahead:]
            self.retransmitted += 1
        return None

    def _skip_to_first_pending(self, out: list[Chunk]) -> None:
        first = min(self.pending, key=lambda s: _after(s, self.next_seq))
        gap = _after(first, self.next_seq)
        if gap > 0:
            out.append(gap)
            self.missed += gap
            self.next_seq = first

    def acked(self, ack: int) -> list[Chunk]:
        """The peer acknowledged up to ``ack``: bytes before it that we lack are lost for good."""
        out: list[Chunk] = []
        while self.pending and _after(ack, self.next_seq) > 0:
            first = min(self.pending, key=lambda s: _after(s, self.next_seq))
            resume = first if _after(first, ack) <= 0 else ack
            gap = _after(resume, self.next_seq)
            out.append(gap)
            self.missed += gap
            self.next_seq = resume
            self._drain(out)
        return out

    def flush(self) -> list[Chunk]:
        """The flow ends: deliver everything held, with gaps for the holes."""
        out: list[Chunk] = []
        while self.pending:
            self._skip_to_first_pending(out)
            self._drain(out)
        return out
