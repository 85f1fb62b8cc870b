"""Bounded IP fragment reassembly (IPv4 and IPv6).

Fragments are rare on ICS networks and a classic evasion and resource
exhaustion vector, so everything here is capped: the number of datagrams in
progress, the bytes held in total, the size of one datagram, the number of
fragments of one datagram and the time a datagram may wait for its missing
pieces. Every give-up is counted by reason in :attr:`Defragmenter.counters`.

The fragment cap also bounds CPU: overlap checks and reassembly cost grow
with the pieces of a datagram, and a 64 KiB datagram cut into 8-byte
fragments (8,192 pieces) would otherwise cost seconds of CPU per datagram.
Reassembly is only attempted once the bytes held reach the datagram's
length, so a well-formed datagram is joined exactly once.

Overlapping fragments are counted, since an overlap is itself a sign of
evasion; a duplicate offset keeps the first copy, and where pieces overlap
the piece that starts earlier supplies the bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Defragmenter"]

MAX_DATAGRAM = 65535
MAX_FRAGMENTS = 256
"""Fragments of one datagram. 64 KiB over a 576-byte MTU needs 120; FreeBSD stops at 16."""


@dataclass(slots=True)
class _Pending:
    first_ts: float
    pieces: dict[int, bytes] = field(default_factory=dict)  # offset -> bytes
    total: int = -1  # known once the last fragment (more=False) arrived
    held: int = 0


class Defragmenter:
    """Collects fragments per datagram key until the datagram is whole."""

    def __init__(self, max_datagrams: int = 1024, max_bytes: int = 8 << 20, timeout: float = 30.0,
                 max_fragments: int = MAX_FRAGMENTS) -> None:
        self.max_datagrams = max_datagrams
        self.max_fragments = max_fragments
        self.max_bytes = max_bytes
        self.timeout = timeout
        self.held = 0
        self.counters: dict[str, int] = {}
        self._pending: dict[bytes, _Pending] = {}

    def _count(self, reason: str) -> None:
        self.counters[reason] = self.counters.get(reason, 0) + 1

    def add(self, key: bytes, offset: int, more: bool, data: bytes, ts: float) -> bytes | None:
        """Add one fragment; return the whole payload when complete, else ``None``."""
        self._count("fragments")
        if offset + len(data) > MAX_DATAGRAM:
            self._count("fragment-beyond-64k")
            return None
        entry = self._pending.get(key)
        if entry is None:
            self.expire(ts)
            if len(self._pending) >= self.max_datagrams:
                self._drop(next(iter(self._pending)), "datagrams-evicted")
            entry = self._pending[key] = _Pending(ts)
        elif ts - entry.first_ts > self.timeout:
            self._drop(key, "datagrams-timed-out")
            return self.add(key, offset, more, data, ts)
        if not more:
            end = offset + len(data)
            if entry.total not in (-1, end):
                self._count("conflicting-last-fragment")
                self._drop(key, "datagrams-invalid")
                return None
            entry.total = end
        if offset in entry.pieces or self._overlaps(entry, offset, len(data)):
            self._count("overlapping-fragments")
            if offset in entry.pieces:
                return None
        if len(entry.pieces) >= self.max_fragments:
            self._drop(key, "datagrams-too-many-fragments")
            return None
        if self.held + len(data) > self.max_bytes:
            self._drop(key, "datagrams-over-memory-cap")
            return None
        entry.pieces[offset] = data
        entry.held += len(data)
        self.held += len(data)
        if entry.total < 0 or entry.held < entry.total:
            return None  # last fragment not seen yet, or certainly still a hole
        return self._assemble(key, entry)

    @staticmethod
    def _overlaps(entry: _Pending, offset: int, length: int) -> bool:
        end = offset + length
        return any(o < end and offset < o + len(d) for o, d in entry.pieces.items())

    def _assemble(self, key: bytes, entry: _Pending) -> bytes | None:
        """Join the pieces if they cover [0, total) without holes."""
        buf = bytearray()
        for off in sorted(entry.pieces):
            piece = entry.pieces[off]
            if off > len(buf):
                return None  # still a hole
            if off + len(piece) > len(buf):
                buf += piece[len(buf) - off:]
        if len(buf) < entry.total:
            return None
        self._drop(key, "datagrams-reassembled")
        return bytes(buf[:entry.total])

    def _drop(self, key: bytes, reason: str) -> None:
        entry = self._pending.pop(key, None)
        if entry is not None:
            self.held -= entry.held
            self._count(reason)

    def expire(self, now: float) -> None:
        """Forget datagrams older than the timeout (called when new datagrams start)."""
        while self._pending:
            key, entry = next(iter(self._pending.items()))
            if now - entry.first_ts <= self.timeout:
                break
            self._drop(key, "datagrams-timed-out")

    @property
    def in_progress(self) -> int:
        return len(self._pending)
