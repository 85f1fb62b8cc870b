"""The benchmark behind ``icsmon bench``: icsmon and tshark on the same large ICS capture.

Building the input (:func:`build_bench_capture`). Public ICS captures are
small, so the benchmark capture is a sequence of *copies* of a mix of them
(Modbus, S7comm, EtherNet/IP-CIP, BACnet, DNP3, IEC 60870-5-104). Concatenating
plain copies would be wrong: a reassembler sees the second copy as
retransmissions of the first (same addresses, same sequence numbers) and
takes a cheap path. So every copy ``c`` (0, 1, 2, ... over the whole file)

* adds ``c * 256`` to every IPv4 address, i.e. moves each host ``c`` /24
  networks up (the first copy keeps the original addresses). Within a copy
  this is a bijection, and the hosts of one /24 never meet another copy's
  hosts of that /24, so copies do not share 5-tuples (ports are kept).
  Unspecified, loopback, multicast and limited-broadcast addresses are kept
  (a group address stays a group address); subnet broadcasts move with their
  subnet. MAC addresses are kept;
* rewrites the IPv4 header checksum (computed, so captures recorded with
  checksum offload get valid ones) and updates TCP and UDP checksums
  incrementally for the address change (RFC 1624), which keeps each one
  exactly as valid as it was in the original; a zero UDP checksum (none)
  stays zero. Addresses quoted inside ICMP errors are not rewritten;
* starts one second after the previous copy's last packet. Timestamps inside
  a copy keep their spacing, except that a packet earlier than its
  predecessor is moved up to it (the output never goes back in time) and
  silences longer than :data:`MAX_GAP_US` are shortened to it (some public
  captures glue together recordings made years apart).

Only classic pcap files with Ethernet link type are used, and of their frames
only IPv4 ones (VLAN tags are walked): others are skipped and counted. The
sources are parsed once into per-packet pieces (bytes before the IP checksum,
addresses, the bytes up to the transport checksum, the rest) so that writing
a copy is a few dictionary lookups, additions and one ``bytes.join`` per
packet: about a million packets in a few seconds.

Measuring (:func:`run_bench`): each tool runs as its own process on the same
file, one after the other; wall time is measured around the process
(start-up included, for both) and peak memory is the process's ``ru_maxrss``
from :func:`os.wait4`. A child's ``ru_maxrss`` starts at the resident size of
the process it was forked from, so the tools are started by a small launcher
process (see ``_LAUNCHER``), not by this one, which holds the parsed sources:
the floor is the launcher's few MiB, not ours. tshark runs with
the protocol hierarchy tap (:data:`TSHARK_ARGS`), because without something to
print or count it skips dissection altogether. Memory flatness:
icsmon's full pipeline also runs on the first half of the capture (a prefix
of a bench capture is the bench capture of that size); a streaming sensor
needs about the same peak memory for both.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

__all__ = [
    "BenchError", "BenchResult", "BenchRow", "DEFAULT_SOURCES", "MAX_GAP_US", "build_bench_capture",
    "count_packets", "default_sources", "format_table", "main_bench", "run_bench", "run_protocol_bench",
    "write_prefix",
]

DEFAULT_SOURCES = (
    "iti/pcaps/ModbusTCP/Modbus/modbus_test_2.pcap",
    "iti/pcaps/s7/s7comm_varservice_libnodavedemo_bench.pcap",
    "iti/pcaps/CIP/cip_only.pcap",
    "icsnpp-bacnet/testing/traces/bacnet_services.pcap",
    "icsnpp-dnp3/testing/traces/dnp3_example.pcap",
    "iti/pcaps/IEC60870-5-104/JavaRMI_and_IEC_Misc.pcap",
    "iti/pcaps/IEC60870-5-104/TestDissectIec104.pcap",
    "iti/pcaps/bro/modbus/modbusBig.pcap",
)
"""The mix, relative to the shared captures folder: the larger Ethernet classic-pcap ICS captures."""

PROTOCOL_SOURCES = {
    "modbus": ("iti/pcaps/ModbusTCP/Modbus/modbus_test_2.pcap", "iti/pcaps/ModbusTCP/Modbus/modbus_test.pcap"),
    "dnp3": ("icsnpp-dnp3/testing/traces/dnp3_example.pcap", "iti/pcaps/dnp3/dnp3_test_data_part1.pcap"),
    "s7comm": ("iti/pcaps/s7/s7comm_varservice_libnodavedemo_bench.pcap", "iti/pcaps/s7/S7Comm/s7comm_clean.pcap"),
    "enip": ("iti/pcaps/CIP/cip_only.pcap", "icsnpp-enip/tests/traces/enip_cip_example.pcap"),
    "iec104": ("iti/pcaps/IEC60870-5-104/JavaRMI_and_IEC_Misc.pcap",
               "iti/pcaps/IEC60870-5-104/TestDissectIec104.pcap"),
    "bacnet": ("icsnpp-bacnet/testing/traces/bacnet_services.pcap", "icsnpp-bacnet/testing/traces/bacnet_example.pcap"),
}
"""Per-protocol benchmark inputs: shared captures of that protocol only (Ethernet, classic pcap)."""

START = datetime(2026, 1, 5, 0, 0, 0, tzinfo=UTC)
"""Time of the first packet of every bench capture."""

MAX_GAP_US = 3_600_000_000
"""Longest silence kept inside a copy (an hour: longer than any flow timeout, shorter than years)."""
COPY_GAP_US = 1_000_000
"""Time between the last packet of a copy and the first of the next."""
SNAPLEN = 262144
TSHARK_ARGS = ("-r", "-n", "-q", "-z", "io,phs")
"""tshark's command (the file goes after ``-r``). Plain ``tshark -r FILE -n -q`` does *not* dissect: with
nothing to print, filter or tap it only reads the records (1M packets in 0.2 s). The protocol hierarchy
tap makes it dissect every frame with TCP reassembly, like the sensor, and print one summary."""

# file magic -> (byte order, timestamp fraction units per microsecond)
_PCAP_MAGICS = {b"\xd4\xc3\xb2\xa1": ("<", 1), b"\xa1\xb2\xc3\xd4": (">", 1),
                b"\x4d\x3c\xb2\xa1": ("<", 1000), b"\xa1\xb2\x3c\x4d": (">", 1000)}
_HEADER = {bo: struct.Struct(bo + "IHHiIII") for bo in "<>"}
_RECORD = {bo: struct.Struct(bo + "IIII") for bo in "<>"}
_OUT_HEADER = struct.Struct("<IHHiIII")
_OUT_RECORD = struct.Struct("<IIII")
_U16 = struct.Struct("!H")
_WORDS = tuple(struct.Struct(f"!{n}H") for n in range(31))  # up to 60 bytes of IPv4 header
_VLAN_TPIDS = (0x8100, 0x88A8, 0x9100)
_LINKTYPE_ETHERNET = 1

Piece = tuple[int, int, int, bytes, bytes, bytes, bytes, int, bytes, int, int]
"""One source packet, ready to copy: (relative us, caplen, origlen, bytes before the IP checksum,
source address, destination address, bytes up to the transport checksum (or the rest), inverted
transport checksum (-1: leave the rest alone), bytes after the transport checksum, partial IP header
sum without checksum and addresses, 1 if UDP)."""


class BenchError(Exception):
    """The benchmark cannot run; the message is one line for the user."""


# -- reading the sources -------------------------------------------------------------------------------

@dataclass(slots=True)
class _Source:
    path: Path
    pieces: list[Piece]
    addresses: set[bytes]
    duration_us: int
    skipped: int


def default_sources(root: Path | None = None) -> list[Path]:
    """The default mix under ``root`` (default: the shared captures beside the repository)."""
    base = root or Path(__file__).resolve().parents[1].parent / "shared" / "pcaps"
    return [base / rel for rel in DEFAULT_SOURCES]


def _load(path: Path) -> _Source:
    """Parse a classic Ethernet pcap into copy-ready pieces; raise BenchError if it cannot be used."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BenchError(f"{path}: cannot read: {exc.strerror}") from None
    layout = _PCAP_MAGICS.get(data[:4])
    if layout is None or len(data) < 24:
        raise BenchError(f"{path}: not a classic pcap file (pcapng and others are not used)")
    order, per_us = layout
    linktype = _HEADER[order].unpack_from(data, 0)[6] & 0x0FFFFFFF
    if linktype != _LINKTYPE_ETHERNET:
        raise BenchError(f"{path}: link type {linktype}, only Ethernet (1) captures are used")
    record = _RECORD[order]
    pieces: list[Piece] = []
    addresses: set[bytes] = set()
    pos, end, skipped = 24, len(data), 0
    latest, rel = -1, 0
    while pos + 16 <= end:
        sec, frac, caplen, origlen = record.unpack_from(data, pos)
        pos += 16
        if caplen > SNAPLEN or pos + caplen > end:
            break  # a truncated or corrupt tail: use what came before
        frame = data[pos:pos + caplen]
        pos += caplen
        ts = sec * 1_000_000 + frac // per_us
        if latest >= 0:  # never back in time, silences shortened
            rel += min(max(ts - latest, 0), MAX_GAP_US)
        latest = max(latest, ts)
        piece = _piece(frame, rel, origlen)
        if piece is None:
            skipped += 1
            continue
        pieces.append(piece)
        addresses.add(piece[4])
        addresses.add(piece[5])
    if not pieces:
        raise BenchError(f"{path}: no IPv4 packets")
    return _Source(path, pieces, addresses, pieces[-1][0], skipped)


def _piece(frame: bytes, rel_us: int, origlen: int) -> Piece | None:
    """Cut one Ethernet frame at the fields a copy rewrites; None unless it is a whole IPv4 header."""
    caplen = len(frame)
    if caplen < 14:
        return None
    ethertype = _U16.unpack_from(frame, 12)[0]
    ipo = 14
    while ethertype in _VLAN_TPIDS and caplen >= ipo + 4:
        ethertype = _U16.unpack_from(frame, ipo + 2)[0]
        ipo += 4
    if ethertype != 0x0800 or caplen < ipo + 20 or frame[ipo] >> 4 != 4:
        return None
    ihl = (frame[ipo] & 0x0F) * 4
    if ihl < 20 or caplen < ipo + ihl:
        return None
    words = _WORDS[ihl // 2].unpack_from(frame, ipo)
    base = sum(words[:5]) + sum(words[10:])
    proto = frame[ipo + 9]
    first_fragment = not _U16.unpack_from(frame, ipo + 6)[0] & 0x1FFF
    l4 = ipo + ihl
    ck_off = -1
    if first_fragment and proto == 6 and caplen >= l4 + 18:
        ck_off = l4 + 16
    elif first_fragment and proto == 17 and caplen >= l4 + 8 and frame[l4 + 6:l4 + 8] != b"\0\0":
        ck_off = l4 + 6
    head, src, dst = frame[:ipo + 10], frame[ipo + 12:ipo + 16], frame[ipo + 16:ipo + 20]
    if ck_off < 0:
        return (rel_us, caplen, origlen, head, src, dst, frame[ipo + 20:], -1, b"", base, 0)
    inverted = ~_U16.unpack_from(frame, ck_off)[0] & 0xFFFF
    return (rel_us, caplen, origlen, head, src, dst, frame[ipo + 20:ck_off], inverted, frame[ck_off + 2:],
            base, 1 if proto == 17 else 0)


def _kept(address: bytes) -> bool:
    """Addresses that must not move: unspecified, loopback, multicast, limited broadcast."""
    first = address[0]
    return address == b"\0\0\0\0" or first == 127 or 224 <= first <= 239 or address == b"\xff\xff\xff\xff"


def _address_table(addresses: Iterable[bytes], copy: int) -> dict[bytes, tuple[bytes, int, int]]:
    """For one copy: address -> (new address, sum of its two 16-bit words, checksum delta old->new)."""
    table: dict[bytes, tuple[bytes, int, int]] = {}
    for old in addresses:
        value = int.from_bytes(old, "big")
        new_value = value if _kept(old) else (value + (copy << 8)) & 0xFFFFFFFF
        hi, lo, nhi, nlo = value >> 16, value & 0xFFFF, new_value >> 16, new_value & 0xFFFF
        table[old] = (new_value.to_bytes(4, "big"), nhi + nlo, (0xFFFF - hi) + (0xFFFF - lo) + nhi + nlo)
    return table


# -- writing -------------------------------------------------------------------------------------------

def _write_copy(out: list[bytes], source: _Source, copy: int, start_us: int, limit: int) -> int:
    """Append up to ``limit`` rewritten records of ``source`` to ``out``; return how many."""
    table = _address_table(source.addresses, copy)
    record = _OUT_RECORD.pack
    append = out.append
    join = b"".join
    n = 0
    for rel, caplen, origlen, head, src, dst, mid, inverted, tail, base, udp in source.pieces:
        if n == limit:
            break
        nsrc, ssum, sdelta = table[src]
        ndst, dsum, ddelta = table[dst]
        s = base + ssum + dsum
        s = (s & 0xFFFF) + (s >> 16)
        s = (s & 0xFFFF) + (s >> 16)
        sec, usec = divmod(start_us + rel, 1_000_000)
        ip_checksum = (~s & 0xFFFF).to_bytes(2, "big")
        if inverted < 0:
            append(join((record(sec, usec, caplen, origlen), head, ip_checksum, nsrc, ndst, mid)))
        else:
            x = inverted + sdelta + ddelta
            x = (x & 0xFFFF) + (x >> 16)
            x = (x & 0xFFFF) + (x >> 16)
            x = ~x & 0xFFFF
            if udp and not x:
                x = 0xFFFF  # zero means "no checksum" in UDP
            append(join((record(sec, usec, caplen, origlen), head, ip_checksum, nsrc, ndst, mid,
                         x.to_bytes(2, "big"), tail)))
        n += 1
    return n


def build_bench_capture(path: str | os.PathLike[str], packets: int = 1_000_000,
                        sources: Sequence[str | os.PathLike[str]] | None = None,
                        log: Callable[[str], None] | None = None) -> int:
    """Write a classic pcap of exactly ``packets`` IPv4 frames copied from ``sources``; return the count.

    Sources that cannot be used (missing, pcapng, not Ethernet, no IPv4) are reported through ``log``
    and left out; if none is usable, :class:`BenchError`.
    """
    if packets < 1:
        raise BenchError(f"benchmark capture size {packets}: need at least one packet")
    loaded: list[_Source] = []
    problems: list[str] = []
    for source in (sources if sources is not None else default_sources()):
        try:
            loaded.append(_load(Path(source)))
        except BenchError as exc:
            problems.append(str(exc))
    for problem in problems:
        if log:
            log(f"skipping {problem}")
    if not loaded:
        raise BenchError("no usable source capture" + (f": {problems[0]}" if problems else ""))
    if log:
        skipped = sum(s.skipped for s in loaded)
        log(f"sources: {len(loaded)} captures, {sum(len(s.pieces) for s in loaded):,} IPv4 frames per round"
            + (f" ({skipped:,} non-IPv4 frames left out)" if skipped else ""))
    written = copy = 0
    cursor = int(START.timestamp()) * 1_000_000
    with open(path, "wb", buffering=1 << 20) as out:
        out.write(_OUT_HEADER.pack(0xA1B2C3D4, 2, 4, 0, 0, SNAPLEN, _LINKTYPE_ETHERNET))
        while written < packets:
            source = loaded[copy % len(loaded)]
            chunk: list[bytes] = []
            written += _write_copy(chunk, source, copy, cursor, packets - written)
            out.write(b"".join(chunk))
            cursor += source.duration_us + COPY_GAP_US
            copy += 1
    return written


# -- scanning ------------------------------------------------------------------------------------------

def _scan(path: Path, stop_after: int | None = None) -> tuple[int, int]:
    """(records, byte offset after them) of a classic pcap, reading only record headers."""
    with open(path, "rb") as f:
        head = f.read(24)
        layout = _PCAP_MAGICS.get(head[:4])
        if layout is None or len(head) < 24:
            raise BenchError(f"{path}: not a classic pcap file")
        record = _RECORD[layout[0]]
        size = os.fstat(f.fileno()).st_size
        count, offset = 0, 24
        buf, base = b"", 24
        while offset + 16 <= size and (stop_after is None or count < stop_after):
            if offset + 16 > base + len(buf):
                f.seek(offset)
                buf, base = f.read(1 << 20), offset
                if len(buf) < 16:
                    break
            caplen = record.unpack_from(buf, offset - base)[2]
            if offset + 16 + caplen > size:
                break
            offset += 16 + caplen
            count += 1
    return count, offset


def count_packets(path: str | os.PathLike[str]) -> int:
    """Records in a classic pcap (a truncated last record is not counted)."""
    return _scan(Path(path))[0]


def write_prefix(path: str | os.PathLike[str], target: str | os.PathLike[str], packets: int) -> int:
    """Copy the file header and the first ``packets`` records of a classic pcap; return how many."""
    count, offset = _scan(Path(path), packets)
    with open(path, "rb") as src, open(target, "wb") as dst:
        remaining = offset
        while remaining:
            block = src.read(min(remaining, 1 << 22))
            if not block:
                break
            dst.write(block)
            remaining -= len(block)
    return count


# -- measuring -----------------------------------------------------------------------------------------

@dataclass(slots=True)
class BenchRow:
    tool: str
    what: str
    packets: int
    seconds: float
    peak_rss_mib: float
    loop_rate: float = 0.0  # icsmon's own packets/s over its packet loop (stats), start-up excluded

    @property
    def packets_per_second(self) -> float:
        return self.packets / self.seconds if self.seconds > 0 else 0.0


@dataclass(slots=True)
class BenchResult:
    capture: Path
    packets: int
    capture_bytes: int
    rows: list[BenchRow]
    flatness: list[tuple[int, float]] = field(default_factory=list)  # (packets, icsmon peak RSS MiB)
    per_protocol: list[tuple[str, BenchRow, BenchRow | None]] = field(default_factory=list)  # icsmon, tshark
    machine: str = ""
    versions: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


@dataclass(slots=True)
class _Run:
    seconds: float
    peak_rss_mib: float


# Started fresh for every measurement: a child's ru_maxrss starts at the high-water mark of the memory
# it was forked (or vfork-spawned) from, and this process holds the parsed sources, so spawning the tools
# from here would bill them for our memory. The launcher (isolated, no site: a few MiB) spawns the tool,
# waits for it and prints its wall time, peak RSS (KiB) and exit status.
_LAUNCHER = """
import os, sys, time
err = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
actions = [(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
           (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0), (os.POSIX_SPAWN_DUP2, err, 2)]
started = time.perf_counter()
try:
    pid = os.posix_spawnp(sys.argv[2], sys.argv[2:], os.environ, file_actions=actions)
except OSError as exc:
    print("spawn", exc.strerror)
    sys.exit(0)
_, status, usage = os.wait4(pid, 0)
print(time.perf_counter() - started, usage.ru_maxrss, os.waitstatus_to_exitcode(status))
"""


def _measure(argv: list[str], what: str, workdir: Path, env: dict[str, str] | None = None) -> _Run:
    """Run one tool to completion through the launcher: wall time and the tool's own peak RSS.

    ``env`` adds variables to the tool's environment."""
    errors = workdir / "bench-stderr.txt"
    launcher = subprocess.run([sys.executable, "-I", "-S", "-c", _LAUNCHER, str(errors), *argv],
                              stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              env={**os.environ, **env} if env else None)
    fields = launcher.stdout.split()
    if launcher.returncode != 0 or len(fields) < 2:
        raise BenchError(f"{what}: the measuring launcher failed: {launcher.stderr.strip() or 'no output'}")
    if fields[0] == "spawn":
        raise BenchError(f"{what}: cannot start {argv[0]}: {' '.join(fields[1:])}")
    seconds, maxrss_kib, status = float(fields[0]), int(fields[1]), int(fields[2])
    if status != 0:
        lines = errors.read_text(errors="replace").strip().splitlines() if errors.exists() else []
        raise BenchError(f"{what} failed (exit {status}): {lines[-1] if lines else 'no message'}")
    return _Run(seconds, maxrss_kib / 1024)


def _icsmon_row(capture: Path, work: Path, what: str, *options: str) -> BenchRow:
    """Run ``icsmon read CAPTURE OPTIONS`` measured; packets and loop rate come from its statistics."""
    stats = work / "bench-stats.json"
    argv = [sys.executable, "-m", "api.cli", "read", str(capture), *options, "--stats", str(stats),
            "--no-progress", "-q"]  # this interpreter: the benchmark measures this installation
    # Detection runs keep their store, spool and dead letters in the work folder (removed after the run)
    # and use the demo plant's placeholders, so every rule of the pack loads.
    own = work / "bench-analyzer"
    env = {"ICSMON_ANALYZER__SQLITE__PATH": str(own / "store.db"),
           "ICSMON_ANALYZER__DELIVERY__SPOOL_DIR": str(own / "spool"),
           "ICSMON_ANALYZER__DELIVERY__DEAD_LETTER": str(own / "dead-letter.jsonl"),
           "ICSMON_ANALYZER__RULES__PLACEHOLDERS": str(Path(__file__).resolve().parents[1] / "deploy"
                                                       / "placeholders.yml")}
    try:
        run = _measure(argv, f"icsmon read {' '.join(options)}".rstrip(), work, env)
    finally:
        shutil.rmtree(own, ignore_errors=True)
    try:
        data = json.loads(stats.read_text())
        packets, rate = int(data["packets"]), float(data["packets_per_second"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BenchError(f"{stats}: icsmon wrote no usable statistics ({exc})") from None
    return BenchRow("icsmon", what, packets, run.seconds, run.peak_rss_mib, rate)


def run_bench(capture: str | os.PathLike[str], workdir: str | os.PathLike[str],
              log: Callable[[str], None] | None = None) -> BenchResult:
    """Run icsmon (flows only, full pipeline) and tshark on ``capture``, plus the half-size memory run.

    ``capture`` is a classic pcap (what :func:`build_bench_capture` writes); ``workdir`` holds the
    temporary files (statistics, the half-size prefix), removed before returning.
    """
    capture, work = Path(capture), Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    say = log or (lambda _line: None)
    packets = count_packets(capture)
    result = BenchResult(capture, packets, capture.stat().st_size, [], machine=machine_description(),
                         versions=tool_versions())
    half = work / "bench-half.pcap"
    try:
        say(f"icsmon read --no-dissect: {packets:,} packets")
        result.rows.append(_icsmon_row(capture, work, "decode, flows, TCP reassembly"
                                       " (`read --no-dissect --no-detect`)", "--no-dissect", "--no-detect"))
        say("icsmon read, full sensor pipeline, events to /dev/null")
        full = _icsmon_row(capture, work, "full sensor pipeline, events serialised"
                           " (`read --no-detect --events /dev/null`)", "--no-detect", "--events", os.devnull)
        result.rows.append(full)
        say("icsmon read, sensor and detection (rule pack), alerts to an embedded store")
        result.rows.append(_icsmon_row(capture, work, "sensor + Sigma rule pack + alerts to SQLite"
                                       " (`read --events /dev/null`)", "--events", os.devnull))
        tshark = shutil.which("tshark")
        if tshark:
            say(f"tshark {' '.join(TSHARK_ARGS[:1])} FILE {' '.join(TSHARK_ARGS[1:])}")
            run = _measure([tshark, TSHARK_ARGS[0], str(capture), *TSHARK_ARGS[1:]], "tshark", work)
            result.rows.append(BenchRow("tshark", "dissect every frame, protocol summary (`-n -q -z io,phs`)",
                                        packets, run.seconds, run.peak_rss_mib))
        else:
            result.notes.append("tshark was not found on PATH: no comparison row.")
        half_packets = write_prefix(capture, half, packets // 2)
        say(f"icsmon read, full pipeline, on the first {half_packets:,} packets (memory flatness)")
        small = _icsmon_row(half, work, "half", "--no-detect", "--events", os.devnull)
        result.flatness = [(small.packets, small.peak_rss_mib), (full.packets, full.peak_rss_mib)]
    finally:
        for leftover in (half, work / "bench-stats.json", work / "bench-stderr.txt"):
            leftover.unlink(missing_ok=True)
    return result


def run_protocol_bench(result: BenchResult, workdir: str | os.PathLike[str], packets: int,
                       log: Callable[[str], None] | None = None, root: Path | None = None) -> None:
    """Per protocol: a capture of ``packets`` built from that protocol's shared captures, run through
    icsmon's full pipeline and through ``tshark -T fields`` with the protocol's key fields."""
    from sensor.protocols import registry

    work = Path(workdir)
    say = log or (lambda _line: None)
    base = root or Path(__file__).resolve().parents[1].parent / "shared" / "pcaps"
    tshark = shutil.which("tshark")
    for name, dissector in registry().items():
        sources = PROTOCOL_SOURCES.get(name)
        if not sources:
            result.notes.append(f"{name}: no benchmark capture configured (PROTOCOL_SOURCES).")
            continue
        capture = work / f"bench-{name}.pcap"
        try:
            build_bench_capture(capture, packets, [base / s for s in sources])
            say(f"{name}: icsmon read, full pipeline, {packets:,} packets")
            ours = _icsmon_row(capture, work, name, "--no-detect", "--events", os.devnull)
            theirs = None
            if tshark and dissector.wireshark:
                columns = sorted(set(dissector.wireshark.fields.values()))
                say(f"{name}: tshark -T fields with {len(columns)} key fields")
                argv = [tshark, "-r", str(capture), "-n", "-T", "fields", "-E", "occurrence=a"]
                for column in columns:
                    argv += ["-e", column]
                run = _measure(argv, f"tshark ({name})", work)
                theirs = BenchRow("tshark", name, ours.packets, run.seconds, run.peak_rss_mib)
            result.per_protocol.append((name, ours, theirs))
        finally:
            for leftover in (capture, work / "bench-stats.json", work / "bench-stderr.txt"):
                leftover.unlink(missing_ok=True)


# -- reporting -----------------------------------------------------------------------------------------

def machine_description() -> str:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = os.cpu_count() or 0
    return f"{model or platform.processor() or platform.machine()}, {cores} cores, {platform.system()} " \
           f"{platform.release()}"


def tool_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    try:
        from importlib.metadata import version

        versions["icsmon"] = version("icsmon")
    except Exception:  # noqa: BLE001 - not installed as a distribution: leave it out
        pass
    tshark = shutil.which("tshark")
    if tshark:
        try:
            out = subprocess.run([tshark, "--version"], capture_output=True, text=True, timeout=30).stdout
            found = re.search(r"\d+\.\d+\.\d+", out.splitlines()[0] if out else "")
            versions["tshark"] = found.group(0) if found else "?"
        except (OSError, subprocess.SubprocessError):
            versions["tshark"] = "?"
    return versions


def format_table(result: BenchResult) -> str:
    """Markdown, ready for the README: the table, the machine, the versions, the memory check."""
    versions = ", ".join(f"{k} {v}" for k, v in result.versions.items())
    lines = [
        f"{result.packets:,} packets ({result.capture_bytes / (1 << 20):,.0f} MiB) built by `icsmon bench` "
        f"from shared ICS captures; {result.machine}; {versions}.",
        "",
        "| tool | what | packets | seconds | packets/s | peak RSS |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for row in result.rows:
        lines.append(f"| {row.tool} | {row.what} | {row.packets:,} | {row.seconds:,.2f} | "
                     f"{row.packets_per_second:,.0f} | {row.peak_rss_mib:,.0f} MiB |")
    lines.append("")
    lines.append("Seconds are wall time of the whole process (start-up included); peak RSS is the "
                 "process's own maximum resident set size.")
    loops = [row for row in result.rows if row.loop_rate]
    if loops:
        rates = [f"{row.loop_rate:,.0f} packets/s ({row.what.split(' (')[0]})" for row in loops]
        lines.append(f"icsmon's packet loop alone (its statistics, start-up excluded): {', '.join(rates)}.")
    if len(result.flatness) == 2:
        (n1, m1), (n2, m2) = result.flatness
        lines.append(f"Memory flatness: icsmon's full pipeline peaks at {m1:,.0f} MiB on {n1:,} packets "
                     f"and {m2:,.0f} MiB on {n2:,}.")
    if result.per_protocol:
        lines += ["", "Per protocol: icsmon's full pipeline (events serialised) against tshark extracting the "
                  "protocol's key fields (`tshark -r FILE -n -T fields -e ...`, the fields the differential "
                  "test compares), each on a capture built from that protocol's shared captures.", "",
                  "| protocol | packets | icsmon packets/s | icsmon peak RSS | tshark packets/s | tshark peak RSS"
                  " | icsmon / tshark |", "|---|---:|---:|---:|---:|---:|---:|"]
        for name, ours, theirs in result.per_protocol:
            if theirs:
                ratio = ours.packets_per_second / theirs.packets_per_second if theirs.packets_per_second else 0
                lines.append(f"| {name} | {ours.packets:,} | {ours.packets_per_second:,.0f} | "
                             f"{ours.peak_rss_mib:,.0f} MiB | {theirs.packets_per_second:,.0f} | "
                             f"{theirs.peak_rss_mib:,.0f} MiB | {ratio:.1f}x |")
            else:
                lines.append(f"| {name} | {ours.packets:,} | {ours.packets_per_second:,.0f} | "
                             f"{ours.peak_rss_mib:,.0f} MiB | - | - | - |")
    lines.extend(result.notes)
    return "\n".join(lines) + "\n"


def main_bench(packets: int, workdir: str | None, keep: bool, protocol_packets: int = 200_000) -> int:
    """``icsmon bench``: build, measure, print the table (stdout); progress on stderr. Exit status.

    Without ``workdir`` a temporary folder is used (removed afterwards unless ``keep``); with it, only
    the files the benchmark made are removed (unless ``keep``).
    """

    def log(line: str) -> None:
        print(f"icsmon bench: {line}", file=sys.stderr, flush=True)

    def fail(message: str) -> int:
        print(f"icsmon: error: {message}", file=sys.stderr)
        return 2

    try:
        work = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="icsmon-bench-"))
        work.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return fail(f"cannot use {workdir or 'a temporary folder'} as the work folder: {exc.strerror}")
    capture = work / f"bench-{packets}.pcap"
    try:
        log(f"building {capture} ({packets:,} packets)")
        started = time.perf_counter()
        written = build_bench_capture(capture, packets, log=log)
        took = time.perf_counter() - started
        log(f"built {written:,} packets in {took:.1f} s ({written / took:,.0f} packets/s)")
        result = run_bench(capture, work, log=log)
        if protocol_packets:
            run_protocol_bench(result, work, protocol_packets, log=log)
    except BenchError as exc:
        return fail(str(exc))
    except OSError as exc:
        return fail(f"{exc.filename or work}: {exc.strerror}")
    finally:
        if keep:
            log(f"kept {capture}")
        elif workdir:
            capture.unlink(missing_ok=True)
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(format_table(result), end="")
    return 0
