"""A durable, bounded, on-disk FIFO for documents the store could not take (yet).

Layout of a spool directory::

    spool/
      alert/000000000001.seg   segment files: append-only records
      alert/cursor             persisted read position (segment, offset, crc)
      event/000000000001.seg
      event/cursor

Alerts and events live in two logs so that events can be dropped before alerts
(an incoming alert evicts the oldest spooled events when the spool is full; an
incoming event is dropped when it is full). Every record carries a sequence
number from one counter, and :meth:`Spool.peek` merges the heads of both logs by
it, so documents come out in exactly the order they went in.

A segment starts with the 8-byte magic ``ICSPOOL1``; a record is a 16-byte
little-endian header -- payload length (u32), CRC-32 of sequence and payload
(u32), sequence number (u64) -- and the payload. :meth:`Spool.append` writes a
batch with one ``write`` per log and one ``fsync`` per log, and only returns when
the batch is on disk. A crash can leave a torn last record: opening the spool
checks every pending record's CRC, truncates the torn tail and counts it
(``torn``); a bad record in the middle of a segment (bit rot, an edited file)
ends that segment and is counted (``corrupt``).

Acknowledging records (:meth:`Spool.ack`) advances the log's read cursor (written
to a temporary file and renamed over ``cursor``) and deletes segments that are
fully delivered. The cursor is not fsynced: after a power loss an old cursor
means some delivered records are delivered again, which the stores absorb
(documents are written by id); a record is never lost that way.

The byte bound (``max_bytes``) counts pending records (headers included). Disk
use may exceed it by the delivered part of the oldest segment of each log, at
most one segment (``segment_bytes``) per log.

A :class:`Spool` is safe to share between threads (one lock); two processes
must not open the same directory at once (an ``fcntl`` lock refuses the second).
"""

from __future__ import annotations

import fcntl
import heapq
import os
import struct
import threading
import zlib
from collections import deque
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Literal

__all__ = ["Spool", "SpoolError", "SpoolRecord", "open_slot"]

Kind = Literal["alert", "event"]
KINDS: tuple[Kind, ...] = ("alert", "event")
MAGIC = b"ICSPOOL1"
HEADER = struct.Struct("<IIQ")  # payload length, crc32(seq + payload), seq
SEQ = struct.Struct("<Q")
CURSOR = struct.Struct("<QQI")  # segment, offset, crc32 of the first 16 bytes
READ_CHUNK = 1 << 20
MAX_RECORD = 1 << 30


class SpoolError(Exception):
    """The spool directory cannot be used (permissions, another process holds it); one line."""


class SpoolRecord:
    """One spooled record: its kind, sequence number and payload bytes."""

    __slots__ = ("kind", "seq", "data", "_end")

    def __init__(self, kind: Kind, seq: int, data: bytes, end: tuple[int, int]) -> None:
        self.kind = kind
        self.seq = seq
        self.data = data
        self._end = end  # (segment, offset) just after this record

    @property
    def size(self) -> int:
        return HEADER.size + len(self.data)

    def __repr__(self) -> str:
        return f"SpoolRecord({self.kind!r}, seq={self.seq}, {len(self.data)} bytes)"


def _crc(seq: int, data: bytes | memoryview) -> int:
    return zlib.crc32(data, zlib.crc32(SEQ.pack(seq)))


def _walk(data: bytes, pos: int) -> tuple[int, bool, int, int, int]:
    """Check the records of ``data`` from ``pos``.

    Returns (end of the last good record, whether bad bytes follow, records, bytes, last sequence).
    """
    end = len(data)
    view = memoryview(data)
    unpack = HEADER.unpack_from
    records = nbytes = 0
    last_seq = -1
    while pos < end:
        if pos + HEADER.size > end:
            return pos, True, records, nbytes, last_seq
        length, crc, seq = unpack(view, pos)
        stop = pos + HEADER.size + length
        if length > MAX_RECORD or stop > end or _crc(seq, view[pos + HEADER.size:stop]) != crc:
            return pos, True, records, nbytes, last_seq
        records += 1
        nbytes += HEADER.size + length
        last_seq = max(last_seq, seq)
        pos = stop
    return pos, False, records, nbytes, last_seq


def _segment_name(number: int) -> str:
    return f"{number:012d}.seg"


class _Log:
    """One kind's segment files, write position, read cursor and read-ahead buffer."""

    def __init__(self, path: Path, kind: Kind, segment_bytes: int, sync: bool) -> None:
        self.path = path
        self.kind = kind
        self.segment_bytes = segment_bytes
        self.sync = sync
        self.torn = 0
        self.torn_bytes = 0
        self.corrupt = 0
        self.records = 0  # pending (not yet acknowledged or evicted)
        self.bytes = 0
        self.last_seq = -1
        self._wbuf = bytearray()
        self._dirty = False
        self._ahead: deque[SpoolRecord] = deque()  # decoded records from the cursor on
        self._scan: tuple[int, int] = (0, 0)  # where reading continues after _ahead
        self._rfile: Any = None
        self._rseg = -1
        path.mkdir(parents=True, exist_ok=True)
        self.segments = sorted(int(p.name[:-4]) for p in path.glob("*.seg") if p.name[:-4].isdigit())
        self.sizes: dict[int, int] = {}
        cursor = self._load_cursor()
        if not self.segments:
            self._create_segment(cursor[0] + 1 if cursor else 1)
        first = self.segments[0]
        if cursor is None or cursor[0] < first or cursor[0] > self.segments[-1]:
            cursor = (first, len(MAGIC))
        for number in [n for n in self.segments if n < cursor[0]]:
            self._delete(number)
        self.cursor = cursor
        self._recover()
        self._wseg = self.segments[-1]
        self._wfd = os.open(self._file(self._wseg), os.O_WRONLY | os.O_APPEND)
        self._scan = self.cursor
        self._normalise_cursor()

    # -- files -----------------------------------------------------------------------------------

    def _file(self, number: int) -> Path:
        return self.path / _segment_name(number)

    def _create_segment(self, number: int) -> None:
        fd = os.open(self._file(number), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        try:
            os.write(fd, MAGIC)
            if self.sync:
                os.fsync(fd)
        finally:
            os.close(fd)
        if self.sync:
            _fsync_dir(self.path)
        self.segments.append(number)
        self.sizes[number] = len(MAGIC)

    def _delete(self, number: int) -> None:
        if self._rseg == number and self._rfile is not None:
            self._rfile.close()
            self._rfile, self._rseg = None, -1
        try:
            os.unlink(self._file(number))
        except FileNotFoundError:
            pass
        self.segments.remove(number)
        self.sizes.pop(number, None)

    def _load_cursor(self) -> tuple[int, int] | None:
        try:
            raw = (self.path / "cursor").read_bytes()
        except FileNotFoundError:
            return None
        if len(raw) != CURSOR.size:
            return None
        seg, off, crc = CURSOR.unpack(raw)
        if zlib.crc32(raw[:16]) != crc:
            return None  # a damaged cursor: start from the oldest segment (redelivery, never loss)
        return seg, off

    def _save_cursor(self) -> None:
        seg, off = self.cursor
        head = struct.pack("<QQ", seg, off)
        tmp = self.path / "cursor.tmp"
        with open(tmp, "wb") as f:
            f.write(head + struct.pack("<I", zlib.crc32(head)))
        os.replace(tmp, self.path / "cursor")

    # -- recovery --------------------------------------------------------------------------------

    def _recover(self) -> None:
        """Check every pending record; truncate a torn tail, cut a segment at a bad record."""
        last = self.segments[-1]
        for number in list(self.segments):
            path = self._file(number)
            data = path.read_bytes()
            start = len(MAGIC)
            if number == self.cursor[0]:
                if len(MAGIC) <= self.cursor[1] <= len(data):
                    start = self.cursor[1]
                else:
                    self.cursor = (number, start)  # outside the file: read the segment again
            if data[:len(MAGIC)] != MAGIC:
                # Not our file, or a crash while creating it: nothing in it can be trusted.
                good, bad = len(MAGIC), data != MAGIC[:len(data)]
                records = nbytes = 0
                last_seq = -1
                rewrite = True
            else:
                good, bad, records, nbytes, last_seq = _walk(data, start)
                rewrite = False
            if bad:
                if number == last:
                    self.torn += 1
                    self.torn_bytes += max(0, len(data) - good)
                else:
                    self.corrupt += 1
            if bad or rewrite:
                with open(path, "r+b") as f:
                    if rewrite:
                        f.seek(0)
                        f.write(MAGIC)
                    f.truncate(good)
                    f.flush()
                    os.fsync(f.fileno())
            self.records += records
            self.bytes += nbytes
            self.last_seq = max(self.last_seq, last_seq)
            self.sizes[number] = good

    # -- writing ---------------------------------------------------------------------------------

    def add(self, seq: int, data: bytes) -> None:
        """Buffer one record; :meth:`flush` writes it."""
        record = HEADER.pack(len(data), _crc(seq, data), seq)
        size = len(record) + len(data)
        if self.sizes[self._wseg] + len(self._wbuf) + size > self.segment_bytes and (
                self.sizes[self._wseg] + len(self._wbuf) > len(MAGIC)):
            self.flush()
            self._rotate()
        self._wbuf += record
        self._wbuf += data
        self.records += 1
        self.bytes += size
        self.last_seq = seq

    def flush(self) -> bool:
        """Write buffered records (no fsync); True if anything was written."""
        if not self._wbuf:
            return False
        view = memoryview(self._wbuf)
        written = 0
        while written < len(view):
            written += os.write(self._wfd, view[written:])
        view.release()
        self.sizes[self._wseg] += len(self._wbuf)
        self._wbuf.clear()
        self._dirty = True
        return True

    def fsync(self) -> None:
        if self.sync and self._dirty:
            os.fsync(self._wfd)
        self._dirty = False

    def _rotate(self) -> None:
        self.fsync()
        os.close(self._wfd)
        self._create_segment(self._wseg + 1)
        self._wseg = self.segments[-1]
        self._wfd = os.open(self._file(self._wseg), os.O_WRONLY | os.O_APPEND)

    # -- reading ---------------------------------------------------------------------------------

    def _next_position(self, pos: tuple[int, int]) -> tuple[int, int] | None:
        """The position after ``pos`` where a record may start, or None at the end of the log."""
        seg, off = pos
        while True:
            if off < self.sizes.get(seg, 0):
                return seg, off
            if seg >= self._wseg:
                return None
            later = [n for n in self.segments if n > seg]
            if not later:
                return None
            seg, off = later[0], len(MAGIC)

    def read_ahead(self, want: int) -> None:
        """Decode records after the read-ahead buffer until it holds ``want`` or the log ends."""
        while len(self._ahead) < want:
            pos = self._next_position(self._scan)
            if pos is None:
                return
            seg, off = pos
            if self._rseg != seg:
                if self._rfile is not None:
                    self._rfile.close()
                self._rfile = open(self._file(seg), "rb")
                self._rseg = seg
            limit = self.sizes[seg]
            self._rfile.seek(off)
            chunk = self._rfile.read(min(max(READ_CHUNK, HEADER.size), limit - off))
            if len(chunk) < HEADER.size:
                self._cut(seg, off)
                continue
            length = HEADER.unpack_from(chunk, 0)[0]
            if HEADER.size + length > len(chunk) and off + HEADER.size + length <= limit:
                chunk += self._rfile.read(HEADER.size + length - len(chunk))
            self._decode(chunk, seg, off, want)

    def _decode(self, chunk: bytes, seg: int, off: int, want: int) -> None:
        view = memoryview(chunk)
        pos, end = 0, len(chunk)
        unpack = HEADER.unpack_from
        kind = self.kind
        ahead = self._ahead
        while pos + HEADER.size <= end and len(ahead) < want:
            length, crc, seq = unpack(view, pos)
            stop = pos + HEADER.size + length
            if stop > end:
                break
            data = bytes(view[pos + HEADER.size:stop])
            if _crc(seq, data) != crc:
                self._cut(seg, off + pos)
                return
            ahead.append(SpoolRecord(kind, seq, data, (seg, off + stop)))
            pos = stop
        if pos == 0 and len(ahead) < want:
            self._cut(seg, off)  # not even one record fits where the file says it should
            return
        self._scan = (seg, off + pos)

    def _cut(self, seg: int, off: int) -> None:
        """A bad record while reading (the file changed under us): the rest of this segment is lost."""
        self.corrupt += 1
        if seg == self._wseg:
            self.flush()
            os.ftruncate(self._wfd, off)
        self.sizes[seg] = off
        self._scan = (seg, off)
        self._recount()

    def _recount(self) -> None:
        """Pending records and bytes from the files again (after damage was found)."""
        records, nbytes = len(self._ahead), sum(r.size for r in self._ahead)
        pos: tuple[int, int] | None = self._scan
        while pos is not None:
            pos = self._next_position(pos)
            if pos is None:
                break
            seg, off = pos
            with open(self._file(seg), "rb") as f:
                f.seek(off)
                data = f.read(self.sizes[seg] - off)
            good, _bad, n, b, _ = _walk(data, 0)
            records += n
            nbytes += b
            self.sizes[seg] = off + good
            pos = (seg, self.sizes[seg])
        self.records, self.bytes = records, nbytes

    def head(self) -> Iterator[SpoolRecord]:
        return iter(self._ahead)

    # -- consuming -------------------------------------------------------------------------------

    def consume_through(self, seq: int) -> int:
        """Drop head records with sequence <= ``seq``; returns how many."""
        n = 0
        ahead = self._ahead
        while ahead and ahead[0].seq <= seq:
            record = ahead.popleft()
            self.records -= 1
            self.bytes -= record.size
            self.cursor = record._end
            n += 1
        return n

    def evict(self, need: int) -> tuple[int, int]:
        """Drop the oldest records until ``need`` bytes are free; returns (records, bytes) dropped."""
        freed = dropped = 0
        self.flush()
        while freed < need:
            if not self._ahead:
                self.read_ahead(256)
                if not self._ahead:
                    break
            record = self._ahead.popleft()
            self.records -= 1
            self.bytes -= record.size
            self.cursor = record._end
            freed += record.size
            dropped += 1
        return dropped, freed

    def commit(self) -> None:
        """Persist the cursor and delete fully delivered segments."""
        self._normalise_cursor()
        if self.records == 0 and not self._wbuf and self.cursor[0] == self._wseg and (
                self.sizes[self._wseg] > self.segment_bytes // 4):
            self._rotate()  # all delivered: start a fresh segment so the old one can go
            self.cursor = self._scan = (self._wseg, len(MAGIC))
        self._save_cursor()
        for number in [n for n in self.segments if n < self.cursor[0]]:
            self._delete(number)

    def _normalise_cursor(self) -> None:
        seg, off = self.cursor
        while off >= self.sizes.get(seg, 0) and seg < self._wseg:
            later = [n for n in self.segments if n > seg]
            seg, off = later[0], len(MAGIC)
        self.cursor = (seg, off)
        if not self._ahead and self.records == 0:
            self._scan = self.cursor

    def close(self) -> None:
        self.flush()
        self.fsync()
        os.close(self._wfd)
        if self._rfile is not None:
            self._rfile.close()
            self._rfile = None

    def disk_bytes(self) -> int:
        return sum(self.sizes.values())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Spool:
    """Durable FIFO of alert and event records, bounded by ``max_bytes``.

    ``append`` takes ``(kind, payload)`` pairs and returns how many it kept;
    ``peek`` returns the oldest records without removing them; ``ack`` removes
    records returned by ``peek`` once they are delivered. Counters:
    ``dropped_events``, ``dropped_alerts`` (refused or evicted because the spool
    was full), ``torn`` and ``corrupt`` (records lost to a crash or damage).
    """

    def __init__(self, directory: str | os.PathLike[str], max_bytes: int = 256 << 20,
                 segment_bytes: int | None = None, sync: bool = True) -> None:
        if max_bytes < HEADER.size:
            raise ValueError(f"spool max_bytes must be at least {HEADER.size}")
        self.path = Path(directory)
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes or max(64 << 10, min(16 << 20, max_bytes // 8))
        self.sync = sync
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            self._lockfile = open(self.path / "lock", "a+b")
        except OSError as exc:
            raise SpoolError(f"spool {self.path}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(self._lockfile.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._lockfile.close()
            raise SpoolError(f"spool {self.path} is in use by another process") from None
        try:
            self._logs: dict[str, _Log] = {k: _Log(self.path / k, k, self.segment_bytes, sync) for k in KINDS}
        except OSError as exc:
            self._lockfile.close()
            raise SpoolError(f"spool {self.path}: {exc.strerror or exc}") from None
        self._lock = threading.Lock()
        self._next_seq = max(log.last_seq for log in self._logs.values()) + 1
        self.dropped_events = 0
        self.dropped_alerts = 0
        self.appended = 0
        self.acked = 0
        self.closed = False

    # -- state -----------------------------------------------------------------------------------

    @property
    def records(self) -> int:
        return self._logs["alert"].records + self._logs["event"].records

    @property
    def bytes(self) -> int:
        return self._logs["alert"].bytes + self._logs["event"].bytes

    def __len__(self) -> int:
        return self.records

    @property
    def torn(self) -> int:
        return sum(log.torn for log in self._logs.values())

    @property
    def corrupt(self) -> int:
        return sum(log.corrupt for log in self._logs.values())

    def stats(self) -> dict[str, int]:
        alerts, events = self._logs["alert"], self._logs["event"]
        return {
            "records": alerts.records + events.records, "alerts": alerts.records, "events": events.records,
            "bytes": alerts.bytes + events.bytes, "max_bytes": self.max_bytes,
            "disk_bytes": alerts.disk_bytes() + events.disk_bytes(),
            "appended": self.appended, "acked": self.acked,
            "dropped_events": self.dropped_events, "dropped_alerts": self.dropped_alerts,
            "torn": self.torn, "torn_bytes": alerts.torn_bytes + events.torn_bytes, "corrupt": self.corrupt,
        }

    # -- writing ---------------------------------------------------------------------------------

    def append(self, items: Iterable[tuple[Kind, bytes]]) -> list[int | None]:
        """Spool records in order, one fsync per log touched, and return once they are on disk.

        Returns each item's sequence number, or None for an item dropped because the spool was full.
        """
        seqs: list[int | None] = []
        kept = 0
        with self._lock:
            self._check_open()
            logs = self._logs
            events = logs["event"]
            limit = self.max_bytes
            total = self.bytes
            touched: set[str] = set()
            evicted = False
            for kind, data in items:
                size = HEADER.size + len(data)
                if total + size > limit:
                    if kind == "event":
                        self.dropped_events += 1
                        seqs.append(None)
                        continue
                    if kind != "alert":
                        raise ValueError(f"unknown spool record kind {kind!r}")
                    if size <= limit - logs["alert"].bytes:
                        dropped, _ = events.evict(total + size - limit)
                        self.dropped_events += dropped
                        evicted = evicted or dropped > 0
                        total = self.bytes
                    if total + size > limit:
                        self.dropped_alerts += 1
                        seqs.append(None)
                        continue
                log = logs[kind]
                seqs.append(self._next_seq)
                log.add(self._next_seq, data)
                self._next_seq += 1
                touched.add(kind)
                total += size
                kept += 1
            for kind in touched:
                log = logs[kind]
                log.flush()
                log.fsync()
            if evicted:
                events.commit()
            self.appended += kept
        return seqs

    # -- reading ---------------------------------------------------------------------------------

    def peek(self, max_records: int = 500, max_bytes: int | None = None) -> list[SpoolRecord]:
        """The oldest pending records, in the order they were appended (not removed)."""
        with self._lock:
            self._check_open()
            for log in self._logs.values():
                log.read_ahead(max_records)
            out: list[SpoolRecord] = []
            size = 0
            for record in heapq.merge(*(log.head() for log in self._logs.values()), key=_seq):
                if len(out) >= max_records or (max_bytes is not None and out and size + record.size > max_bytes):
                    break
                out.append(record)
                size += record.size
            return out

    def ack(self, records: Iterable[SpoolRecord]) -> int:
        """Remove delivered records (from :meth:`peek`); records evicted meanwhile are skipped."""
        upto: dict[str, int] = {}
        for record in records:
            if record.seq > upto.get(record.kind, -1):
                upto[record.kind] = record.seq
        n = 0
        with self._lock:
            self._check_open()
            for kind, seq in upto.items():
                log = self._logs[kind]
                done = log.consume_through(seq)
                if done:
                    log.commit()
                n += done
            self.acked += n
        return n

    def absorb(self, other: Spool, chunk: int = 5000) -> int:
        """Move every pending record of ``other`` behind this spool's (in order); returns how many.

        Each chunk is on disk here before it is acknowledged there, so a crash can duplicate, not lose.
        """
        moved = 0
        while records := other.peek(chunk):
            self.append([(r.kind, r.data) for r in records])
            other.ack(records)
            moved += len(records)
        return moved

    def pending(self) -> list[SpoolRecord]:
        """Every pending record, oldest first, without removing any (inspection and tests)."""
        return self.peek(max(1, self.records))

    # -- life cycle ------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self.closed:
            raise SpoolError(f"spool {self.path} is closed")

    def close(self) -> None:
        with self._lock:
            if self.closed:
                return
            self.closed = True
            for log in self._logs.values():
                log.close()
            fcntl.flock(self._lockfile.fileno(), fcntl.LOCK_UN)
            self._lockfile.close()

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def _seq(record: SpoolRecord) -> int:
    return record.seq


def open_slot(parent: str | os.PathLike[str], max_bytes: int = 256 << 20, slots: int = 64) -> Spool:
    """The spool of this process under ``parent``: the first free slot ``parent/0``, ``parent/1``, ...

    A sensor service always gets slot 0 and finds what its previous run left there; a second
    process running at the same time (a ``read`` beside a ``live``) gets the next free slot
    instead of failing. Records left in slots nobody holds are moved into the returned spool,
    so they are delivered by whichever process starts next.
    """
    base = Path(parent)
    spool: Spool | None = None
    for n in range(slots):
        try:
            spool = Spool(base / str(n), max_bytes=max_bytes)
            break
        except SpoolError as exc:
            if "in use" not in str(exc):
                raise
    if spool is None:
        raise SpoolError(f"spool {base}: all {slots} slots are in use by other processes")
    for path in sorted(base.iterdir(), key=lambda p: p.name):
        if not path.name.isdigit() or path == spool.path or not path.is_dir():
            continue
        try:
            other = Spool(path, max_bytes=max(max_bytes, 1 << 30))
        except SpoolError:
            continue  # held by a running process: it delivers its own
        with other:
            if len(other):
                spool.absorb(other)
    return spool

