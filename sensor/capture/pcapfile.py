"""Offline capture readers: classic pcap and pcapng files, streamed.

:func:`open_capture` looks at the magic number, not the file name (shared
captures named ``.pcapng`` are often classic pcap and the other way round),
and returns a :class:`CaptureFile` that is a :class:`~sensor.capture.PacketSource`.

Why it is written the way it is:

* **Streaming, constant memory.** The file is read in :data:`CHUNK_SIZE`
  pieces into one ``bytes`` buffer; records are cut out of it with
  precompiled ``struct.Struct.unpack_from``. A record is never longer than
  :data:`MAX_CAPLEN` (plus block overhead), so the buffer never holds more
  than a chunk and one record; blocks pcapng readers skip (name resolution,
  decryption secrets, custom...) are streamed past whatever their size.
* **One tuple per packet.** The per-packet loop allocates the frame slice
  (a copy, so the chunk can be freed) and the ``(ts, linktype, frame,
  interface)`` tuple, nothing else. Counters (``stats().received``,
  ``bytes_read``) live in locals and are written back to the object when
  the buffer is refilled and when iteration stops, so they lag by at most
  one chunk while a loop runs and are exact afterwards.
* **Errors after data.** Every packet that can be read is yielded; then a
  :class:`~sensor.capture.CaptureError` names the file, the byte offset of
  the bad record and what was wrong. Corruption is never "resynchronised"
  past: a guessed resync point produces garbage packets that look real.
  Every loop step consumes at least one record header or stops, so hostile
  input cannot make the reader hang.
* **Resumable.** ``iter()`` may be called again after a ``break``: the
  generator saves its position when it is closed, so the next loop goes on
  with the next packet (like a file object), and a ``for`` loop that stops
  early still leaves exact statistics behind. After the end or an error the
  capture is finished: iterating again yields nothing.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from typing import IO

from sensor.capture import CaptureError, CaptureStats, Packet

__all__ = ["CaptureFile", "PcapFile", "PcapngFile", "open_capture", "CHUNK_SIZE", "MAX_CAPLEN", "MAX_BLOCK",
           "MAX_INTERFACES"]

CHUNK_SIZE = 1 << 20
"""Bytes read from the file at a time."""

MAX_CAPLEN = 262144
"""Largest captured length accepted (libpcap's and Wireshark's limit for ordinary link types)."""

MAX_BLOCK = MAX_CAPLEN + 65536
"""Largest pcapng block read whole into memory: a packet block with room for options.
Bigger blocks of types this reader skips are streamed past; bigger blocks it must parse are corrupt."""

MAX_INTERFACES = 65536
"""Interfaces one pcapng section may describe; more means the file is garbage (and would grow memory)."""

_MIN_SNAPLEN_SLACK = 65535
"""A pcap record may exceed the header's snapshot length (some writers set it wrong), but not by
more than twice max(snaplen, this): past that the record header is garbage."""

# -- classic pcap ------------------------------------------------------------------------------------

# First four bytes of the file, read big-endian -> (byte order, seconds per timestamp fraction unit).
_PCAP_MAGICS: dict[int, tuple[str, float]] = {
    0xA1B2C3D4: (">", 1e-6),
    0xD4C3B2A1: ("<", 1e-6),
    0xA1B23C4D: (">", 1e-9),
    0x4D3CB2A1: ("<", 1e-9),
}
_PCAPNG_MAGIC = 0x0A0D0D0A
_MAGIC = struct.Struct(">I")
# magic, version major, version minor, thiszone, sigfigs, snaplen, link type (+ FCS bits)
_PCAP_HEADER = {bo: struct.Struct(bo + "IHHiIII") for bo in "<>"}
# ts seconds, ts fraction, captured length, original length
_PCAP_RECORD = {bo: struct.Struct(bo + "IIII") for bo in "<>"}
_PCAP_HEADER_LEN = 24
_PCAP_RECORD_LEN = 16

# -- pcapng --------------------------------------------------------------------------------------

SHB, IDB, PB, SPB, NRB, ISB, EPB = 0x0A0D0D0A, 1, 2, 3, 4, 5, 6
_BLOCK_NAMES = {
    SHB: "section header block", IDB: "interface description block", PB: "packet block",
    SPB: "simple packet block", NRB: "name resolution block", ISB: "interface statistics block",
    EPB: "enhanced packet block", 0x0A: "decryption secrets block", 0x0BAD: "custom block",
    0x40000BAD: "custom block",
}
_PARSED = frozenset((SHB, IDB, PB, SPB, ISB, EPB))
_BOM_LE, _BOM_BE = b"\x4d\x3c\x2b\x1a", b"\x1a\x2b\x3c\x4d"
_OPT_IF_NAME, _OPT_IF_TSRESOL, _OPT_IF_TSOFFSET = 2, 9, 14
_OPT_ISB_IFDROP, _OPT_ISB_OSDROP = 5, 7
_EPB_FIXED = 32  # type, length, interface, ts high, ts low, caplen, origlen, trailing length
_PB_FIXED = 32
_SPB_FIXED = 16
# Shortest valid block of each type: its fixed fields plus the two length words.
_MIN_LENGTH = {SHB: 28, IDB: 20, PB: _PB_FIXED, SPB: _SPB_FIXED, ISB: 24, EPB: _EPB_FIXED}


class _Layout:
    """The pcapng structs for one byte order; a section picks one with its byte-order magic."""

    __slots__ = ("order", "head", "u32", "epb", "pb", "spb", "idb", "isb", "shb", "opt", "u64", "i64")

    def __init__(self, order: str) -> None:
        self.order = order
        self.head = struct.Struct(order + "II")  # block type, block total length
        self.u32 = struct.Struct(order + "I")
        # type, length, interface, ts high, ts low, caplen, origlen
        self.epb = struct.Struct(order + "IIIIIII")
        # type, length, interface, drops, ts high, ts low, caplen, origlen
        self.pb = struct.Struct(order + "IIHHIIII")
        self.spb = struct.Struct(order + "III")  # type, length, origlen
        self.idb = struct.Struct(order + "IIHHI")  # type, length, link type, reserved, snaplen
        self.isb = struct.Struct(order + "III")  # type, length, interface
        # type, length, byte-order magic, major, minor, section length
        self.shb = struct.Struct(order + "IIIHHq")
        self.opt = struct.Struct(order + "HH")  # option code, option length
        self.u64 = struct.Struct(order + "Q")
        self.i64 = struct.Struct(order + "q")


_LAYOUTS = {"<": _Layout("<"), ">": _Layout(">")}

# An interface as the packet loop needs it: link type, name, timestamp units per second,
# timestamp offset in seconds, snapshot length.
_Interface = tuple[int, str, int, int, int]


def open_capture(path: str | os.PathLike[str]) -> CaptureFile:
    """Open a classic pcap or pcapng file, whatever its name says, for streaming.

    Raises :class:`CaptureError` (one line) when the file cannot be opened or is
    not a capture; errors inside the file surface while iterating.
    """
    shown = os.fspath(path)
    try:
        file = open(path, "rb", buffering=0)  # unbuffered: we read big chunks ourselves; closed by close()
    except OSError as exc:
        raise CaptureError(f"{shown}: cannot open ({exc.strerror or exc})") from None
    try:
        size = os.fstat(file.fileno()).st_size
        head = _read_at_least(file, _PCAP_HEADER_LEN, shown, 0)
        if len(head) < 4:
            raise CaptureError(f"{shown}: not a pcap or pcapng file (only {len(head)} bytes long)")
        magic = _MAGIC.unpack_from(head)[0]
        if magic == _PCAPNG_MAGIC:
            return PcapngFile(shown, file, size, head)
        if magic in _PCAP_MAGICS:
            return PcapFile(shown, file, size, head)
        raise CaptureError(f"{shown}: not a pcap or pcapng file (magic 0x{magic:08x})")
    except BaseException:
        file.close()
        raise


def _read_at_least(file: IO[bytes], n: int, shown: str, offset: int) -> bytes:
    """Read until ``n`` bytes or end of file (pipes return short reads)."""
    data = b""
    while len(data) < n:
        try:
            more = file.read(max(n - len(data), CHUNK_SIZE))
        except OSError as exc:
            raise CaptureError(f"{shown}: read error at byte offset {offset + len(data)} "
                               f"({exc.strerror or exc})") from None
        if not more:
            break
        data += more
    return data


class CaptureFile:
    """A capture file being streamed: iterate for ``(ts, linktype, frame, interface)`` tuples.

    ``path`` is the path as given, ``size`` its size in bytes when opened,
    ``bytes_read`` the offset up to which records have been consumed
    (updated once per chunk while iterating, exact when iteration stops).
    """

    path: str
    name: str
    size: int
    bytes_read: int

    def __init__(self, path: str, file: IO[bytes], size: int) -> None:
        self.path = path
        self.name = os.path.basename(path)
        self.size = size
        self.bytes_read = 0
        self._file = file
        self._received = 0
        self._done = False
        self._iterating = False
        # Where the next record starts: ``_buf[_pos:]`` are unconsumed bytes, ``_buf[0]`` is at file
        # offset ``_base``.
        self._buf = b""
        self._pos = 0
        self._base = 0

    def __iter__(self) -> Iterator[Packet]:
        if self._iterating:
            raise RuntimeError(f"{self.path} is already being iterated")
        return self._records()

    def _records(self) -> Iterator[Packet]:
        raise NotImplementedError

    def stats(self) -> CaptureStats:
        """Packets yielded so far; subclasses add what the file says about loss."""
        return CaptureStats(received=self._received)

    def close(self) -> None:
        self._file.close()
        self._buf = b""

    def __enter__(self) -> CaptureFile:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.path!r} {self.bytes_read}/{self.size} bytes>"

    # -- helpers shared by the readers (cold path) --

    def _read(self, offset: int) -> bytes:
        """The next chunk of the file (b"" at end); ``offset`` is where it starts, for messages."""
        try:
            return self._file.read(CHUNK_SIZE)
        except OSError as exc:
            raise CaptureError(f"{self.path}: read error at byte offset {offset} "
                               f"({exc.strerror or exc})") from None
        except ValueError:  # read of closed file
            raise CaptureError(f"{self.path}: read after the capture was closed") from None

    def _fail(self, what: str, offset: int, detail: str) -> CaptureError:
        self._done = True
        return CaptureError(f"{self.path}: {what} at byte offset {offset} ({detail})")

    def _save(self, buf: bytes, pos: int, base: int, received: int) -> None:
        """Write the loop's locals back (on refill and when the generator stops)."""
        self._buf, self._pos, self._base, self._received = buf, pos, base, received
        self.bytes_read = base + pos


class PcapFile(CaptureFile):
    """Classic libpcap format: a 24-byte file header, then 16-byte record headers and frames."""

    def __init__(self, path: str, file: IO[bytes], size: int, head: bytes) -> None:
        super().__init__(path, file, size)
        if len(head) < _PCAP_HEADER_LEN:
            raise CaptureError(f"{path}: truncated file header at byte offset 0 "
                               f"({_PCAP_HEADER_LEN} bytes needed, {len(head)} in the file)")
        order, self._unit = _PCAP_MAGICS[_MAGIC.unpack_from(head)[0]]
        _magic, self.version_major, self.version_minor, _zone, _sigfigs, self.snaplen, network = (
            _PCAP_HEADER[order].unpack_from(head))
        self.linktype = network & 0xFFFF  # the upper bits may carry FCS information
        self.nanosecond = self._unit < 1e-6
        self._record = _PCAP_RECORD[order]
        self._caplen_limit = (MAX_CAPLEN if not self.snaplen
                              else min(MAX_CAPLEN, 2 * max(self.snaplen, _MIN_SNAPLEN_SLACK)))
        self._buf = head[_PCAP_HEADER_LEN:]
        self._base = _PCAP_HEADER_LEN
        self.bytes_read = _PCAP_HEADER_LEN

    def _records(self) -> Iterator[Packet]:
        """The per-packet loop: one unpack, one slice, one tuple per record."""
        buf, pos, base, received = self._buf, self._pos, self._base, self._received
        unpack = self._record.unpack_from
        unit, linktype, name, limit = self._unit, self.linktype, self.name, self._caplen_limit
        self._iterating = True
        try:
            while not self._done:
                end = len(buf)
                last = end - _PCAP_RECORD_LEN
                while pos <= last:
                    sec, frac, caplen, _ = unpack(buf, pos)
                    start = pos + _PCAP_RECORD_LEN
                    stop = start + caplen
                    if stop > end or caplen > limit:
                        break
                    pos = stop
                    received += 1
                    yield (sec + frac * unit, linktype, buf[start:stop], name)
                buf, pos, base = self._refill(buf, pos, base, received)
        finally:
            self._iterating = False
            self._save(buf, pos, base, received)

    def _refill(self, buf: bytes, pos: int, base: int, received: int) -> tuple[bytes, int, int]:
        """The unconsumed bytes plus the next chunk, as (buffer, position, file offset of the buffer).

        At the end of the file: nothing if every byte was consumed, else the error saying what is cut.
        (The old buffer stays alive until the new one exists: freeing it first measured 25% slower,
        glibc then hands back fresh pages that fault in every chunk.)
        """
        left = len(buf) - pos
        caplen = self._record.unpack_from(buf, pos)[2] if left >= _PCAP_RECORD_LEN else -1
        if caplen > self._caplen_limit:
            raise self._fail("corrupt packet record", base + pos,
                             f"captured length {caplen} bytes, more than the {self._caplen_limit} "
                             f"a snapshot length of {self.snaplen} allows")
        self._save(buf, pos, base, received)
        chunk = self._read(base + len(buf))
        if chunk:
            return buf[pos:] + chunk, 0, base + pos
        if not left:
            self._done = True
            return b"", 0, base + pos
        if caplen < 0:
            raise self._fail("truncated packet record header", base + pos,
                             f"{_PCAP_RECORD_LEN} bytes needed, {left} left")
        raise self._fail("truncated packet record", base + pos,
                         f"header says {caplen} bytes, {left - _PCAP_RECORD_LEN} left")


class PcapngFile(CaptureFile):
    """pcapng: sections of blocks, each section with its own byte order and interfaces.

    Enhanced packet blocks go through a tight loop; every other block (and any
    enhanced packet block that fails a check) takes the slow path, which
    parses it or explains what is wrong with it.
    """

    def __init__(self, path: str, file: IO[bytes], size: int, head: bytes) -> None:
        super().__init__(path, file, size)
        self._buf = head
        self._layout = _LAYOUTS["<"]
        self.sections = 0  # section header blocks read so far
        self._interfaces: list[_Interface] = []  # the current section's, by interface id
        self._first_interface = 0  # file-wide number of the current section's interface 0
        self._last_ts = 0.0
        # Interface id -> (isb_ifdrop, isb_osdrop) of its latest statistics block in this section,
        # and the sums over the sections before it.
        self._drops: dict[int, tuple[int, int]] = {}
        self._earlier_drops = (0, 0)

    def stats(self) -> CaptureStats:
        """Packets yielded plus the drop counters of the last statistics block of each interface."""
        ifdrop, osdrop = self._earlier_drops
        return CaptureStats(
            received=self._received,
            interface_dropped=ifdrop + sum(drops[0] for drops in self._drops.values()),
            kernel_dropped=osdrop + sum(drops[1] for drops in self._drops.values()),
        )

    @property
    def interfaces(self) -> list[tuple[int, str]]:
        """(link type, name) of the current section's interfaces, by interface id."""
        return [(linktype, name) for linktype, name, *_ in self._interfaces]

    def _records(self) -> Iterator[Packet]:
        buf, pos, base, received, last_ts = self._buf, self._pos, self._base, self._received, self._last_ts
        self._iterating = True
        try:
            while not self._done:
                layout = self._layout
                head, epb, u32 = layout.head.unpack_from, layout.epb.unpack_from, layout.u32.unpack_from
                interfaces = self._interfaces
                count = len(interfaces)
                end = len(buf)
                # Fast path: well-formed enhanced packet blocks wholly in the buffer.
                while pos + 8 <= end:
                    btype, blen = head(buf, pos)
                    stop = pos + blen
                    if btype != EPB or stop > end or blen < _EPB_FIXED or blen & 3:
                        break
                    _, _, ifid, high, low, caplen, _ = epb(buf, pos)
                    if (ifid >= count or caplen > blen - _EPB_FIXED or caplen > MAX_CAPLEN
                            or u32(buf, stop - 4)[0] != blen):
                        break
                    linktype, name, units, offset, _ = interfaces[ifid]
                    start = pos + 28
                    pos = stop
                    received += 1
                    last_ts = ((high << 32) | low) / units + offset
                    yield (last_ts, linktype, buf[start:start + caplen], name)
                # Slow path: one block of another kind, a bad block, or the end of the buffer.
                need = self._block_size(buf, pos, base)
                if need and need <= end - pos:
                    packet = self._block(buf, pos, need, base + pos, last_ts)
                    pos += need
                    if packet is not None:
                        received += 1
                        last_ts = packet[0]
                        yield packet
                    continue
                if need > MAX_BLOCK:
                    buf, base = self._skip(buf, pos, base, need)
                    pos = 0
                    continue
                # Let the consumed bytes go before reading more: the peak stays near two chunks.
                buf, pos, base = buf[pos:], 0, base + pos
                self._save(buf, pos, base, received)
                chunk = self._read(base + len(buf))
                if chunk:
                    buf += chunk
                    continue
                if buf:
                    raise self._truncated(buf, pos, base, need)
                self._done = True
        finally:
            self._iterating = False
            self._last_ts = last_ts
            self._save(buf, pos, base, received)

    # -- slow path --

    def _block_size(self, buf: bytes, pos: int, base: int) -> int:
        """Total length of the block at ``pos``, 0 if its header is not wholly buffered yet.

        A section header block is read with its own byte-order magic, every other
        block with the current section's. Raises on a length no block can have.
        """
        left = len(buf) - pos
        if left < 8:
            return 0
        btype = self._layout.u32.unpack_from(buf, pos)[0]
        blen: int
        if btype == SHB:
            if left < 12:
                return 0
            blen = self._section_layout(buf, pos, base + pos).u32.unpack_from(buf, pos + 4)[0]
        else:
            blen = self._layout.u32.unpack_from(buf, pos + 4)[0]
        if blen < 12 or blen & 3:
            misaligned = ", not a multiple of 4" if blen & 3 else ""
            raise self._fail("corrupt block", base + pos, f"length {blen}{misaligned}")
        if blen > MAX_BLOCK and btype in _PARSED:
            raise self._fail(f"corrupt {_block_name(btype)}", base + pos,
                             f"length {blen}, more than {MAX_BLOCK}")
        return blen

    def _section_layout(self, buf: bytes, pos: int, offset: int) -> _Layout:
        """The byte order a section header block at ``pos`` declares."""
        bom = buf[pos + 8:pos + 12]
        if bom == _BOM_LE:
            return _LAYOUTS["<"]
        if bom == _BOM_BE:
            return _LAYOUTS[">"]
        raise self._fail("corrupt section header block", offset, f"byte-order magic 0x{bom.hex()}")

    def _truncated(self, buf: bytes, pos: int, base: int, need: int) -> CaptureError:
        left = len(buf) - pos
        if not need:
            wanted = 12 if left >= 4 and self._layout.u32.unpack_from(buf, pos)[0] == SHB else 8
            return self._fail("truncated block header", base + pos, f"{wanted} bytes needed, {left} left")
        btype = self._layout.u32.unpack_from(buf, pos)[0]
        return self._fail(f"truncated {_block_name(btype)}", base + pos,
                          f"block length says {need} bytes, {left} left")

    def _skip(self, buf: bytes, pos: int, base: int, blen: int) -> tuple[bytes, int]:
        """Stream past a block too big to buffer (one this reader ignores).

        Returns the bytes read past the block's end and their file offset.
        """
        start = base + pos
        btype = self._layout.u32.unpack_from(buf, pos)[0]
        have = len(buf) - pos
        chunk = b""
        while have < blen:
            self.bytes_read = start + have
            chunk = self._read(start + have)
            if not chunk:
                raise self._fail(f"truncated {_block_name(btype)}", start,
                                 f"block length says {blen} bytes, {have} left")
            have += len(chunk)
        return chunk[len(chunk) - (have - blen):], start + blen

    def _block(self, buf: bytes, pos: int, blen: int, offset: int, last_ts: float) -> Packet | None:
        """Check and parse one whole block at ``pos``; return the packet it carries, if any."""
        btype = self._layout.u32.unpack_from(buf, pos)[0]
        layout = self._section_layout(buf, pos, offset) if btype == SHB else self._layout
        what = _block_name(btype)
        minimum = _MIN_LENGTH.get(btype, 12)
        if blen < minimum:
            raise self._fail(f"corrupt {what}", offset, f"length {blen}, less than {minimum}")
        trailer = layout.u32.unpack_from(buf, pos + blen - 4)[0]
        if trailer != blen:
            raise self._fail(f"corrupt {what}", offset, f"length {blen} at the start, {trailer} at the end")
        if btype == EPB:
            return self._enhanced_packet(buf, pos, blen, offset)
        if btype == SPB:
            return self._simple_packet(buf, pos, blen, offset, last_ts)
        if btype == PB:
            return self._obsolete_packet(buf, pos, blen, offset)
        if btype == SHB:
            self._section_header(buf, pos, offset, layout)
        elif btype == IDB:
            self._interface_description(buf, pos, blen, offset)
        elif btype == ISB:
            self._interface_statistics(buf, pos, blen)
        return None

    def _section_header(self, buf: bytes, pos: int, offset: int, layout: _Layout) -> None:
        """A new section: its own byte order and a fresh interface table."""
        _, _, _, major, minor, _ = layout.shb.unpack_from(buf, pos)
        if major != 1:
            raise self._fail("unsupported section header block", offset, f"pcapng version {major}.{minor}")
        self._layout = layout
        self.sections += 1
        self._first_interface += len(self._interfaces)
        self._interfaces = []
        totals = self.stats()
        self._earlier_drops = (totals.interface_dropped, totals.kernel_dropped)
        self._drops = {}

    def _interface_description(self, buf: bytes, pos: int, blen: int, offset: int) -> None:
        """Link type, name and timestamp resolution and offset of the section's next interface."""
        if len(self._interfaces) >= MAX_INTERFACES:
            raise self._fail("corrupt interface description block", offset,
                             f"more than {MAX_INTERFACES} interfaces in one section")
        layout = self._layout
        _, _, linktype, _, snaplen = layout.idb.unpack_from(buf, pos)
        # Unnamed interfaces are numbered file-wide (the same as the interface id in a one-section
        # file) so that interface 0 of two sections does not get one name.
        name = f"{self.name}#{self._first_interface + len(self._interfaces)}"
        units, tsoffset = 1_000_000, 0
        for code, value in _options(buf, pos + 16, pos + blen - 4, layout):
            if code == _OPT_IF_NAME and value:
                name = value.rstrip(b"\0").decode("utf-8", "replace") or name
            elif code == _OPT_IF_TSRESOL and value:
                # High bit set: a negative power of 2, else a negative power of 10.
                units = 2 ** (value[0] & 0x7F) if value[0] & 0x80 else 10 ** value[0]
            elif code == _OPT_IF_TSOFFSET and len(value) == 8:
                tsoffset = layout.i64.unpack_from(value)[0]
        self._interfaces.append((linktype, name, units, tsoffset, snaplen))

    def _interface_statistics(self, buf: bytes, pos: int, blen: int) -> None:
        """Drop counters are cumulative: the latest block of an interface replaces earlier ones."""
        layout = self._layout
        ifid = layout.isb.unpack_from(buf, pos)[2]
        if ifid >= len(self._interfaces):
            return  # statistics of an interface never described count for nothing
        ifdrop, osdrop = self._drops.get(ifid, (0, 0))
        for code, value in _options(buf, pos + 20, pos + blen - 4, layout):
            if code == _OPT_ISB_IFDROP and len(value) == 8:
                ifdrop = layout.u64.unpack_from(value)[0]
            elif code == _OPT_ISB_OSDROP and len(value) == 8:
                osdrop = layout.u64.unpack_from(value)[0]
        self._drops[ifid] = (ifdrop, osdrop)

    def _interface(self, ifid: int, what: str, offset: int) -> _Interface:
        if ifid >= len(self._interfaces):
            raise self._fail(f"corrupt {what}", offset, f"unknown interface id {ifid}, the section has "
                             f"{len(self._interfaces)} interface(s)")
        return self._interfaces[ifid]

    def _packet_data(self, buf: bytes, start: int, caplen: int, room: int, what: str, offset: int) -> bytes:
        if caplen > MAX_CAPLEN:
            raise self._fail(f"corrupt {what}", offset, f"captured length {caplen}, more than {MAX_CAPLEN}")
        if caplen > room:
            raise self._fail(f"corrupt {what}", offset,
                             f"captured length {caplen}, more than the block's {room}")
        return buf[start:start + caplen]

    def _enhanced_packet(self, buf: bytes, pos: int, blen: int, offset: int) -> Packet:
        what = "enhanced packet block"
        _, _, ifid, high, low, caplen, _ = self._layout.epb.unpack_from(buf, pos)
        linktype, name, units, tsoffset, _ = self._interface(ifid, what, offset)
        frame = self._packet_data(buf, pos + 28, caplen, blen - _EPB_FIXED, what, offset)
        return (((high << 32) | low) / units + tsoffset, linktype, frame, name)

    def _obsolete_packet(self, buf: bytes, pos: int, blen: int, offset: int) -> Packet:
        what = "packet block"
        _, _, ifid, _, high, low, caplen, _ = self._layout.pb.unpack_from(buf, pos)
        linktype, name, units, tsoffset, _ = self._interface(ifid, what, offset)
        frame = self._packet_data(buf, pos + 28, caplen, blen - _PB_FIXED, what, offset)
        return (((high << 32) | low) / units + tsoffset, linktype, frame, name)

    def _simple_packet(self, buf: bytes, pos: int, blen: int, offset: int, last_ts: float) -> Packet:
        """Interface 0, no timestamp of its own: the previous packet's time is the best estimate."""
        what = "simple packet block"
        origlen = self._layout.spb.unpack_from(buf, pos)[2]
        linktype, name, _, _, snaplen = self._interface(0, what, offset)
        # The block holds min(original length, snaplen) bytes plus padding.
        caplen = min(origlen, blen - _SPB_FIXED, snaplen or MAX_CAPLEN, MAX_CAPLEN)
        return (last_ts, linktype, buf[pos + 12:pos + 12 + caplen], name)


def _options(buf: bytes, start: int, stop: int, layout: _Layout) -> Iterator[tuple[int, bytes]]:
    """(code, value) of each option in ``buf[start:stop]`` until opt_endofopt.

    Options are metadata: a malformed tail ends the list rather than the capture.
    """
    opt = layout.opt.unpack_from
    while start + 4 <= stop:
        code, length = opt(buf, start)
        if code == 0:
            return
        value_end = start + 4 + length
        if value_end > stop:
            return
        yield code, buf[start + 4:value_end]
        start = value_end + (-length & 3)


def _block_name(btype: int) -> str:
    return _BLOCK_NAMES.get(btype, f"block of type 0x{btype:08x}")

