"""The part every TCP dissector shares: cutting a byte stream into frames.

:class:`FramedSession` keeps, per direction, the bytes not yet framed and their
stream offset, resynchronises after a capture gap, and makes a framing
violation sticky (the events before it are still reported; the next call
raises it). A protocol subclasses it and implements two methods:

* ``_frames(data, d, to_server, ts, events) -> int`` turns every whole frame at
  the start of ``data`` into events and returns the bytes consumed; it raises
  :class:`~sensor.dissect.ProtocolViolation` (with ``self._pos[d] + offset``)
  when the bytes cannot be the protocol.
* ``_find_frame(data, d) -> bytes`` is called after a gap: it looks for the
  next frame start it trusts and ends with ``self._skip(data, d, i, found)``
  (``found`` false: keep ``data[i:]`` buffered and wait for more bytes).

``d`` is 0 for the client-to-server direction and 1 for the reverse. A
subclass may override :meth:`_after_gap` to forget sequence state, and sets
``frame_name`` (for messages) and ``max_resync`` (bytes it may skip looking
for a frame before giving up with a violation).
"""

from __future__ import annotations

from sensor.dissect import Event, ProtocolViolation

__all__ = ["FramedSession"]


class FramedSession:
    __slots__ = ("_buf", "_pos", "_resync", "_scanned", "_violation", "stats")

    frame_name = "frame"
    max_resync = 64 << 10

    def __init__(self, stats: dict[str, int]) -> None:
        self._buf = [b"", b""]  # [to_server, to_client] bytes not yet framed
        self._pos = [0, 0]  # stream offset of each buffer's first byte
        self._resync = [False, False]
        self._scanned = [0, 0]  # bytes skipped while resynchronising after a gap
        self._violation: ProtocolViolation | None = None
        stats.setdefault("gaps", 0)
        stats.setdefault("resync_skipped_bytes", 0)
        self.stats = stats

    # -- the Session protocol -------------------------------------------------------------------

    def feed(self, data: bytes, to_server: bool, ts: float) -> list[Event]:
        if self._violation is not None:
            raise self._violation
        d = 0 if to_server else 1
        buf = self._buf[d]
        if buf:
            data = buf + data
        if self._resync[d]:
            data = self._find_frame(data, d)
            if not data:
                return []
        events: list[Event] = []
        try:
            off = self._frames(data, d, to_server, ts, events)
        except ProtocolViolation as exc:
            self._violation = exc
            self._buf[d] = b""
            if not events:
                raise
            return events  # report the frames before it first; the next call raises
        self._pos[d] += off
        self._buf[d] = data[off:] if off < len(data) else b""
        return events

    def on_gap(self, nbytes: int, to_server: bool) -> None:
        """Lost bytes: drop the buffer and look for the next frame start."""
        d = 0 if to_server else 1
        self._pos[d] += len(self._buf[d]) + nbytes
        self._buf[d] = b""
        self._resync[d] = True
        self._scanned[d] = 0
        self.stats["gaps"] += 1
        self._after_gap(d)

    def finish(self, ts: float) -> list[Event]:
        return []

    # -- for subclasses -------------------------------------------------------------------------

    def _frames(self, data: bytes, d: int, to_server: bool, ts: float, events: list[Event]) -> int:
        raise NotImplementedError

    def _find_frame(self, data: bytes, d: int) -> bytes:
        raise NotImplementedError

    def _after_gap(self, d: int) -> None:
        """Forget state the lost bytes may have changed (sequence numbers...)."""

    def _skip(self, data: bytes, d: int, keep: int, found: bool) -> bytes:
        """Drop ``data[:keep]``; return the rest if a frame starts there (``found``), else buffer it."""
        self._scanned[d] += keep
        self.stats["resync_skipped_bytes"] += keep
        self._pos[d] += keep
        if found:
            self._resync[d] = False
            self._buf[d] = b""
            return data[keep:]
        if self._scanned[d] > self.max_resync:
            raise ProtocolViolation(f"no {self.frame_name} within {self.max_resync} bytes after a gap", self._pos[d])
        self._buf[d] = data[keep:]
        return b""
