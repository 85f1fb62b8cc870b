"""The offline capture readers against tshark, crafted files, truncation, garbage and a memory bound."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import tempfile
import tracemalloc
from decimal import Decimal
from pathlib import Path
from typing import NamedTuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether
from scapy.utils import wrpcap

from sensor.capture import LINKTYPE_ETHERNET, LINKTYPE_RAW, CaptureError, Packet
from sensor.capture.pcapfile import (
    CHUNK_SIZE,
    MAX_BLOCK,
    MAX_INTERFACES,
    PcapFile,
    PcapngFile,
    open_capture,
)

REPO = Path(__file__).resolve().parents[3]
PCAPS = REPO.parent / "shared" / "pcaps"

# tshark reports wiretap's WTAP_ENCAP_* numbers, not the LINKTYPE_* values files carry.
WTAP_TO_LINKTYPE = {1: 1, 7: 101, 15: 0, 25: 113, 104: 195, 129: 228}

TSHARK_CASES = [
    "iti/pcaps/s7/step7_s300_download.pcapng",  # a classic pcap despite its name
    "iti/pcaps/s7/S7Comm/wrapup.pcapng",  # pcapng over several 1 MiB chunks
    "iti/pcaps/s7/s7comm_varservice_libnodavedemo_bench.pcap",  # pcap over several chunks
    *sorted(p.relative_to(PCAPS).as_posix() for p in (PCAPS / "iti/pcaps/beckoff").glob("*.pcapng")),
    "icsnpp-enip/tests/traces/multiple_service_packet_cip.pcapng",
    "icsnpp-enip/tests/traces/set_attribute_single_service_cip.pcapng",  # if_tsresol 9, an ISB
    "iti/pcaps/hart/hart_ip.pcap",  # pcapng with a name resolution block
    "icsnpp-opcua-binary/pcaps/open62541_browse_next.pcap",  # pcapng, BSD loopback link type
    "icsnpp-opcua-binary/pcaps/open62541_client-server_minimal.pcap",  # pcap, BSD loopback
    "iti/pcaps/IEC61850/m-send-req.mms.pcap",  # big-endian pcap
    "icsnpp-s7comm/tests/traces/s7comm_plus.pcap",  # Linux cooked capture
    "iti/pcaps/Zigbee/control4-sample.pcap",  # IEEE 802.15.4
    "suricata-verify/tests/dnp3/dnp3-flood/input.pcap",  # raw IPv4
    "icsnpp-modbus/testing/traces/modbus_example.pcap",
]


class TsharkFrame(NamedTuple):
    time: Decimal | None  # exact, as tshark prints it; None for a record without a time
    caplen: int
    interface_id: int
    interface_name: str | None
    linktype: int | None  # None for records that are not packets (tshark shows custom blocks as frames)
    data: bytes


def tshark_frames(path: Path) -> list[TsharkFrame]:
    """What tshark reads from ``path``, frame by frame."""
    out = subprocess.run(["tshark", "-r", str(path), "-T", "json", "-x", "-J", "frame"],
                         capture_output=True, text=True, check=False).stdout
    frames = []
    for packet in json.loads(out):
        layers = packet["_source"]["layers"]
        frame = layers["frame"]
        frames.append(TsharkFrame(
            time=Decimal(frame["frame.time_epoch"]) if "frame.time_epoch" in frame else None,
            caplen=int(frame["frame.cap_len"]),
            interface_id=int(frame.get("frame.interface_id", 0)),
            interface_name=frame.get("frame.interface_id_tree", {}).get("frame.interface_name"),
            linktype=(WTAP_TO_LINKTYPE[int(frame["frame.encap_type"])]
                      if "frame.encap_type" in frame else None),
            data=bytes.fromhex(layers["frame_raw"][0]),
        ))
    return frames


def read_all(path: Path | str) -> list[Packet]:
    with open_capture(path) as capture:
        return list(capture)


def read_until_error(path: Path | str) -> tuple[list[Packet], str | None]:
    """Everything the reader yields, and the error it ends with (None for a clean end)."""
    packets: list[Packet] = []
    try:
        with open_capture(path) as capture:
            for packet in capture:
                packets.append(packet)
    except CaptureError as exc:
        return packets, str(exc)
    return packets, None


def assert_same_time(ours: float, theirs: Decimal | float | None) -> None:
    assert theirs is not None
    assert abs(Decimal(ours) - Decimal(theirs)) < Decimal("0.000001"), (ours, theirs)


# -- differential: tshark -------------------------------------------------------------------------


@pytest.mark.parametrize("case", TSHARK_CASES)
def test_agrees_with_tshark_per_packet(case: str) -> None:
    path = PCAPS / case
    expected = tshark_frames(path)
    with open_capture(path) as capture:
        packets = list(capture)
        stats = capture.stats()
        assert capture.bytes_read == capture.size == path.stat().st_size
    assert len(packets) == len(expected) > 0
    assert stats.received == len(packets)
    pcapng = isinstance(capture, PcapngFile)
    for (ts, linktype, frame, interface), want in zip(packets, expected, strict=True):
        assert_same_time(ts, want.time)
        assert len(frame) == want.caplen
        assert frame == want.data
        assert linktype == want.linktype
        if not pcapng:
            assert interface == path.name
        elif want.interface_name not in (None, "unknown"):  # tshark's words for "no if_name option"
            assert interface == want.interface_name
        else:
            assert interface == f"{path.name}#{want.interface_id}"


def test_windows_interface_name_and_statistics_block() -> None:
    # The file ends with an ISB from dumpcap: isb_ifrecv 130, isb_ifdrop 0.
    path = PCAPS / "iti/pcaps/beckoff/beckoffiplinktc.pcapng"
    with open_capture(path) as capture:
        list(capture)
        assert isinstance(capture, PcapngFile)
        assert capture.stats().interface_dropped == 0
        npf = r"\Device\NPF_{245C5977-B51E-4686-A519-4E7507A5DBF9}"  # a Windows capture's if_name
        assert capture.interfaces == [(LINKTYPE_ETHERNET, npf)]


def test_truncated_shared_capture_yields_what_tshark_reads_then_names_the_offset() -> None:
    path = PCAPS / "iti/pcaps/MELSEC/melsoft_129_clean.pcap"  # cut short in its last record
    expected = tshark_frames(path)
    packets, error = read_until_error(path)
    assert len(packets) == len(expected) == 2041
    assert_same_time(packets[-1][0], expected[-1].time)
    assert error == f"{path}: truncated packet record at byte offset 331665 (header says 157 bytes, 95 left)"


# -- crafted classic pcap -------------------------------------------------------------------------


def sample_packets() -> list[Ether]:
    packets = [
        Ether(src="00:11:22:33:44:55", dst="66:77:88:99:aa:bb") / IP(src="10.0.0.1", dst="10.0.0.2")
        / TCP(sport=40000, dport=502, flags="S"),
        Ether(src="66:77:88:99:aa:bb", dst="00:11:22:33:44:55") / IP(src="10.0.0.2", dst="10.0.0.1")
        / TCP(sport=502, dport=40000, flags="SA"),
        Ether() / IP(src="10.0.0.1", dst="10.0.0.9") / UDP(sport=20000, dport=20000)
        / (b"\x05\x64" + b"x" * 40),
        Ether() / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=40000, dport=502, flags="PA")
        / bytes.fromhex("000100000006010300000002"),
    ]
    for n, packet in enumerate(packets):
        packet.time = Decimal("1700000000.123456789") + n * Decimal("0.5")
    return packets


def test_scapy_little_endian_microsecond_pcap(tmp_path: Path) -> None:
    path = tmp_path / "le-usec.pcap"
    packets = sample_packets()
    wrpcap(str(path), packets)
    got = read_all(path)
    assert [(linktype, frame, interface) for _, linktype, frame, interface in got] == [
        (LINKTYPE_ETHERNET, bytes(p), "le-usec.pcap") for p in packets]
    for (ts, *_), packet in zip(got, packets, strict=True):
        assert_same_time(ts, packet.time.quantize(Decimal("0.000001"), rounding="ROUND_DOWN"))
    with open_capture(path) as capture:
        assert isinstance(capture, PcapFile)
        assert (capture.linktype, capture.snaplen, capture.nanosecond) == (LINKTYPE_ETHERNET, 65535, False)
        assert (capture.version_major, capture.version_minor) == (2, 4)


def test_scapy_nanosecond_pcap_keeps_nanoseconds(tmp_path: Path) -> None:
    path = tmp_path / "le-nsec.pcap"
    packets = sample_packets()
    wrpcap(str(path), packets, nano=True)
    got = read_all(path)
    assert [frame for _, _, frame, _ in got] == [bytes(p) for p in packets]
    for (ts, *_), packet in zip(got, packets, strict=True):
        # A float holds about 0.24 us at this epoch; the nanosecond part must not be truncated to us.
        assert abs(Decimal(ts) - packet.time) < Decimal("0.0000003")
    assert abs(Decimal(got[0][0]) - Decimal("1700000000.123456789")) < abs(
        Decimal(got[0][0]) - Decimal("1700000000.123456"))
    with open_capture(path) as capture:
        assert isinstance(capture, PcapFile) and capture.nanosecond


def pcap_bytes(order: str, records: list[tuple[int, int, bytes]], nano: bool = False, linktype: int = 1,
               snaplen: int = 65535) -> bytes:
    """A classic pcap built by hand: (seconds, fraction, frame) records."""
    magic = 0xA1B23C4D if nano else 0xA1B2C3D4
    out = [struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype)]
    for sec, frac, frame in records:
        out.append(struct.pack(order + "IIII", sec, frac, len(frame), len(frame) + 4) + frame)
    return b"".join(out)


@pytest.mark.parametrize("nano", [False, True])
def test_big_endian_pcap(tmp_path: Path, nano: bool) -> None:
    frames = [bytes(range(20, 20 + n)) for n in (20, 33, 1)]
    fractions = [0, 999_999_999 if nano else 999_999, 1]
    records = [(1600000000 + i, frac, f) for i, (frac, f) in enumerate(zip(fractions, frames, strict=True))]
    path = tmp_path / "be.pcap"
    path.write_bytes(pcap_bytes(">", records, nano=nano, linktype=LINKTYPE_RAW))
    got = read_all(path)
    scale = Decimal(10) ** (-9 if nano else -6)
    assert [(lt, f, i) for _, lt, f, i in got] == [(LINKTYPE_RAW, f, "be.pcap") for f in frames]
    for (ts, *_), (sec, frac, _) in zip(got, records, strict=True):
        assert_same_time(ts, sec + frac * scale)
    theirs = subprocess.run(["tshark", "-r", str(path), "-T", "fields", "-e", "frame.time_epoch"],
                            capture_output=True, text=True, check=False).stdout.split()
    for (ts, *_), want in zip(got, theirs, strict=True):
        assert_same_time(ts, Decimal(want))


def test_link_type_fcs_bits_are_masked(tmp_path: Path) -> None:
    path = tmp_path / "fcs.pcap"
    # Bits 26-31 of the link type field say "frames carry a 4-byte FCS"; the link type is the low 16 bits.
    linktype = (1 << 28) | (4 << 26) | LINKTYPE_ETHERNET
    path.write_bytes(pcap_bytes("<", [(1, 2, b"\x00" * 64)], linktype=linktype))
    assert read_all(path)[0][1] == LINKTYPE_ETHERNET


# -- crafted pcapng -------------------------------------------------------------------------------


def ng_block(order: str, btype: int, body: bytes) -> bytes:
    body += b"\0" * (-len(body) & 3)
    length = 12 + len(body)
    return struct.pack(order + "II", btype, length) + body + struct.pack(order + "I", length)


def ng_options(order: str, *options: tuple[int, bytes]) -> bytes:
    out = b""
    for code, value in options:
        out += struct.pack(order + "HH", code, len(value)) + value + b"\0" * (-len(value) & 3)
    return out + struct.pack(order + "HH", 0, 0) if options else b""


def ng_shb(order: str) -> bytes:
    return ng_block(order, 0x0A0D0D0A, struct.pack(order + "IHHq", 0x1A2B3C4D, 1, 0, -1))


def ng_idb(order: str, linktype: int, snaplen: int, *options: tuple[int, bytes]) -> bytes:
    return ng_block(order, 1, struct.pack(order + "HHI", linktype, 0, snaplen) + ng_options(order, *options))


def ng_epb(order: str, ifid: int, ts: int, frame: bytes, origlen: int | None = None) -> bytes:
    head = struct.pack(order + "IIIII", ifid, ts >> 32, ts & 0xFFFFFFFF, len(frame), origlen or len(frame))
    return ng_block(order, 6, head + frame + b"\0" * (-len(frame) & 3)
                    + ng_options(order, (1, b"a packet comment")))


def ng_pb(order: str, ifid: int, ts: int, frame: bytes) -> bytes:
    head = struct.pack(order + "HHIIII", ifid, 0, ts >> 32, ts & 0xFFFFFFFF, len(frame), len(frame))
    return ng_block(order, 2, head + frame)


def ng_spb(order: str, frame: bytes) -> bytes:
    return ng_block(order, 3, struct.pack(order + "I", len(frame)) + frame)


def ng_isb(order: str, ifid: int, ifdrop: int, osdrop: int) -> bytes:
    return ng_block(order, 5, struct.pack(order + "III", ifid, 0, 0) + ng_options(
        order, (4, struct.pack(order + "Q", 1000)), (5, struct.pack(order + "Q", ifdrop)),
        (7, struct.pack(order + "Q", osdrop))))


ETH_FRAME = bytes(Ether(src="00:11:22:33:44:55", dst="66:77:88:99:aa:bb") / IP(src="10.1.1.1", dst="10.1.1.2")
                  / TCP(sport=1024, dport=102, flags="S"))
IP_FRAME = bytes(IP(src="192.168.0.1", dst="192.168.0.2") / UDP(sport=2222, dport=44818) / b"cip")
ETH_FRAME_2 = bytes(Ether() / IP(src="10.1.1.2", dst="10.1.1.1") / TCP(sport=102, dport=1024, flags="SA")
                    / b"odd")
NS = 1_700_000_000_123_456_789  # interface 0 of section 1 counts nanoseconds
TICKS = 1_650_000_000 * 1024 + 512  # interface 1 counts 1/1024 s, plus if_tsoffset
TSOFFSET = 3600
US = 1_600_000_000_654_321  # section 2 counts microseconds (the default)


def crafted_pcapng() -> tuple[list[bytes], list[Packet | None], str]:
    """Two sections (little- then big-endian) with every block type; packets as the reader should yield.

    Returns the blocks, the packet each block should produce (None for none), and the file's name.
    """
    name = "crafted.pcapng"
    le, be = "<", ">"
    t0 = NS / 10**9
    t1 = TICKS / 1024 + TSOFFSET
    t2 = US / 10**6
    blocks: list[tuple[bytes, Packet | None]] = [
        (ng_shb(le), None),
        (ng_idb(le, LINKTYPE_ETHERNET, 0, (2, b"eth0"), (9, b"\x09")), None),
        (ng_idb(le, LINKTYPE_RAW, 65535, (9, b"\x8a"), (14, struct.pack("<q", TSOFFSET))), None),
        (ng_epb(le, 0, NS, ETH_FRAME), (t0, LINKTYPE_ETHERNET, ETH_FRAME, "eth0")),
        (ng_block(le, 0x0BAD, struct.pack("<I", 32473) + b"custom data"), None),
        (ng_block(le, 0x12345678, b"a block type nobody defined"), None),
        (ng_block(le, 4, struct.pack("<HH", 1, 8) + bytes([10, 1, 1, 1]) + b"plc\0"  # one IPv4 record
                  + struct.pack("<HH", 0, 0)), None),
        (ng_epb(le, 1, TICKS, IP_FRAME), (t1, LINKTYPE_RAW, IP_FRAME, f"{name}#1")),
        (ng_spb(le, ETH_FRAME_2), (t1, LINKTYPE_ETHERNET, ETH_FRAME_2, "eth0")),  # previous packet's time
        (ng_isb(le, 0, 2, 1), None),  # counters are cumulative: the next one replaces this one
        (ng_pb(le, 1, TICKS + 1024, IP_FRAME), (t1 + 1, LINKTYPE_RAW, IP_FRAME, f"{name}#1")),
        (ng_isb(le, 0, 7, 3), None),
        (ng_isb(le, 9, 1000, 1000), None),  # no interface 9: ignored
        (ng_shb(be), None),
        (ng_idb(be, LINKTYPE_ETHERNET, 65535), None),
        (ng_epb(be, 0, US, ETH_FRAME_2), (t2, LINKTYPE_ETHERNET, ETH_FRAME_2, f"{name}#2")),
        (ng_isb(be, 0, 5, 0), None),
    ]
    return [b for b, _ in blocks], [p for _, p in blocks], name


def test_crafted_pcapng_every_field(tmp_path: Path) -> None:
    blocks, expected, name = crafted_pcapng()
    path = tmp_path / name
    path.write_bytes(b"".join(blocks))
    with open_capture(path) as capture:
        assert isinstance(capture, PcapngFile)
        got = list(capture)
        stats = capture.stats()
        assert capture.sections == 2
        assert capture.interfaces == [(LINKTYPE_ETHERNET, f"{name}#2")]  # the last section's
        assert capture.bytes_read == capture.size == path.stat().st_size
    want = [p for p in expected if p is not None]
    assert [p[1:] for p in got] == [p[1:] for p in want]
    for (ts, *_), (want_ts, *_) in zip(got, want, strict=True):
        assert ts == pytest.approx(want_ts, abs=1e-7)
    assert abs(Decimal(got[0][0]) - Decimal(NS) / 10**9) < Decimal("0.0000003")
    assert (stats.received, stats.interface_dropped, stats.kernel_dropped) == (5, 12, 3)


def test_crafted_pcapng_agrees_with_tshark(tmp_path: Path) -> None:
    blocks, expected, name = crafted_pcapng()
    path = tmp_path / name
    path.write_bytes(b"".join(blocks))
    got = read_all(path)
    theirs = [frame for frame in tshark_frames(path) if frame.linktype is not None]
    assert len(got) == len(theirs) == 5
    for n, ((ts, linktype, frame, _), want) in enumerate(zip(got, theirs, strict=True)):
        assert (linktype, frame) == (want.linktype, want.data)
        if n != 2:  # a simple packet block has no time; tshark shows none, we reuse the previous one
            assert_same_time(ts, want.time)


# -- truncation, garbage, corruption --------------------------------------------------------------


def pcap_sample() -> tuple[list[bytes], str]:
    """A small classic pcap as its pieces: the file header, then one piece per record."""
    records = [(1700000000 + n, n * 1000, frame) for n, frame in enumerate(
        [ETH_FRAME, IP_FRAME, b"", ETH_FRAME_2])]
    data = pcap_bytes("<", records)
    pieces, at = [data[:24]], 24
    for _, _, frame in records:
        pieces.append(data[at:at + 16 + len(frame)])
        at += 16 + len(frame)
    return pieces, "cut.pcap"


def check_every_cut(tmp_path: Path, pieces: list[bytes], yields: list[bool], name: str) -> None:
    """Cut the file at every offset: the packets wholly before the cut, then an error naming where."""
    data = b"".join(pieces)
    (tmp_path / "full").mkdir()
    full = read_all(_write(tmp_path / "full" / name, data))
    starts = [sum(map(len, pieces[:i])) for i in range(len(pieces))]
    ends = [start + len(piece) for start, piece in zip(starts, pieces, strict=True)]
    path = tmp_path / name
    for cut in range(len(data) + 1):
        path.write_bytes(data[:cut])
        packets, error = read_until_error(path)
        wholly_before = sum(1 for end, y in zip(ends, yields, strict=True) if y and end <= cut)
        assert packets == full[:wholly_before], cut
        if cut in ends:
            assert error is None, (cut, error)
        elif cut < 4:
            assert error == f"{path}: not a pcap or pcapng file (only {cut} bytes long)"
        else:
            broken = max(start for start in starts if start < cut)
            assert error is not None and error.startswith(f"{path}: truncated "), (cut, error)
            assert f" at byte offset {broken} (" in error, (cut, error)
            assert "\n" not in error


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_pcap_truncated_at_every_offset(tmp_path: Path) -> None:
    pieces, name = pcap_sample()
    check_every_cut(tmp_path, pieces, [False] + [True] * (len(pieces) - 1), name)


def test_pcapng_truncated_at_every_offset(tmp_path: Path) -> None:
    blocks, expected, name = crafted_pcapng()
    check_every_cut(tmp_path, blocks, [p is not None for p in expected], name)


def test_pcap_with_garbage_appended(tmp_path: Path) -> None:
    pieces, _ = pcap_sample()
    clean = b"".join(pieces)
    path = _write(tmp_path / "garbage.pcap", clean + b"\xff" * 37)
    packets, error = read_until_error(path)
    (tmp_path / "clean").mkdir()
    assert packets == read_all(_write(tmp_path / "clean" / "garbage.pcap", clean))
    assert error == (f"{path}: corrupt packet record at byte offset {len(clean)} (captured length 4294967295 "
                     f"bytes, more than the 131070 a snapshot length of 65535 allows)")


def test_pcapng_with_garbage_appended(tmp_path: Path) -> None:
    blocks, expected, _ = crafted_pcapng()
    clean = b"".join(blocks)
    # The last section is big-endian: an enhanced packet block type, then a length of 19.
    path = _write(tmp_path / "garbage.pcapng", clean + b"\x00\x00\x00\x06\x00\x00\x00\x13" + b"\xaa" * 40)
    packets, error = read_until_error(path)
    assert len(packets) == sum(p is not None for p in expected)
    assert error == f"{path}: corrupt block at byte offset {len(clean)} (length 19, not a multiple of 4)"


def pcapng_head() -> bytes:
    return ng_shb("<") + ng_idb("<", LINKTYPE_ETHERNET, 65535)


@pytest.mark.parametrize(("block", "message"), [
    (struct.pack("<II", 6, 0) + b"\0" * 24, "corrupt block at byte offset {at} (length 0)"),
    (ng_epb("<", 3, 0, ETH_FRAME),
     "corrupt enhanced packet block at byte offset {at} "
     "(unknown interface id 3, the section has 1 interface(s))"),
    (ng_block("<", 6, struct.pack("<IIIII", 0, 0, 0, 500, 500) + b"\0" * 12),
     "corrupt enhanced packet block at byte offset {at} (captured length 500, more than the block's 12)"),
    (ng_block("<", 6, struct.pack("<IIIII", 0, 0, 0, 300000, 300000) + b"\0" * 300000),
     "corrupt enhanced packet block at byte offset {at} (captured length 300000, more than 262144)"),
    (ng_block("<", 6, struct.pack("<IIII", 0, 0, 0, 0)),
     "corrupt enhanced packet block at byte offset {at} (length 28, less than 32)"),
    (ng_block("<", 1, b"\0" * 400000), "corrupt interface description block at byte offset {at} "
                                       f"(length 400012, more than {MAX_BLOCK})"),
    (ng_epb("<", 0, 0, ETH_FRAME)[:-4] + struct.pack("<I", 8),
     "corrupt enhanced packet block at byte offset {at} (length 112 at the start, 8 at the end)"),
    (ng_block("<", 0x0A0D0D0A, b"\x11\x22\x33\x44" + b"\0" * 12),
     "corrupt section header block at byte offset {at} (byte-order magic 0x11223344)"),
    (ng_block("<", 0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 2, 0, -1)),
     "unsupported section header block at byte offset {at} (pcapng version 2.0)"),
    (ng_spb("<", ETH_FRAME)[:8] + b"\xff" * 3, "truncated simple packet block at byte offset {at} "
                                               "(block length says 72 bytes, 11 left)"),
    (b"\x01\x00\x00", "truncated block header at byte offset {at} (8 bytes needed, 3 left)"),
])
def test_pcapng_corruption_is_one_line_with_the_offset(tmp_path: Path, block: bytes, message: str) -> None:
    good = pcapng_head() + ng_epb("<", 0, 10**6, ETH_FRAME)
    path = _write(tmp_path / "bad.pcapng", good + block + ng_epb("<", 0, 2 * 10**6, ETH_FRAME))
    if message.startswith("truncated"):
        path.write_bytes(good + block)
    packets, error = read_until_error(path)
    assert [p[2] for p in packets] == [ETH_FRAME]
    assert error == f"{path}: " + message.format(at=len(good))


@pytest.mark.parametrize(("caplen", "snaplen", "limit"), [(262145, 0, 262144), (131071, 65535, 131070),
                                                          (65536 * 2 + 1, 96, 131070)])
def test_pcap_absurd_captured_length_is_corruption(tmp_path: Path, caplen: int, snaplen: int,
                                                   limit: int) -> None:
    data = pcap_bytes("<", [(1, 0, ETH_FRAME)], snaplen=snaplen)
    path = _write(tmp_path / "absurd.pcap", data + struct.pack("<IIII", 2, 0, caplen, caplen) + b"\0" * 100)
    packets, error = read_until_error(path)
    assert [p[2] for p in packets] == [ETH_FRAME]
    assert error == (f"{path}: corrupt packet record at byte offset {len(data)} (captured length {caplen} "
                     f"bytes, more than the {limit} a snapshot length of {snaplen} allows)")


def test_pcap_record_over_a_small_snaplen_within_slack_is_read(tmp_path: Path) -> None:
    frame = bytes(9000)  # a jumbo frame in a file whose header claims 1514
    path = _write(tmp_path / "jumbo.pcap", pcap_bytes("<", [(1, 0, frame)], snaplen=1514))
    assert read_all(path)[0][2] == frame


def test_open_errors_are_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "missing.pcap"
    with pytest.raises(CaptureError, match=r"^.*missing\.pcap: cannot open \(No such file or directory\)$"):
        open_capture(missing)
    with pytest.raises(CaptureError, match=r": cannot open \(Is a directory\)$"):
        open_capture(tmp_path)
    text = _write(tmp_path / "notes.pcap", b"hello, this is text\n")
    with pytest.raises(CaptureError) as info:
        open_capture(text)
    assert str(info.value) == f"{text}: not a pcap or pcapng file (magic 0x68656c6c)"
    empty = _write(tmp_path / "empty.pcapng", b"")
    with pytest.raises(CaptureError) as info:
        open_capture(empty)
    assert str(info.value) == f"{empty}: not a pcap or pcapng file (only 0 bytes long)"
    short = _write(tmp_path / "short.pcap", pcap_bytes("<", [])[:20])
    with pytest.raises(CaptureError) as info:
        open_capture(short)
    assert str(info.value) == (f"{short}: truncated file header at byte offset 0 "
                               "(24 bytes needed, 20 in the file)")


# -- hypothesis: garbage never escapes as anything but CaptureError -------------------------------

FUZZ_DIR = Path(tempfile.mkdtemp(prefix="icsmon-pcapfile-"))
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def survives(data: bytes, name: str) -> list[Packet]:
    """Read ``data`` as a file: any outcome but packets then at most one CaptureError fails the test."""
    path = _write(FUZZ_DIR / name, data)
    try:
        capture = open_capture(path)
    except CaptureError:
        return []
    packets: list[Packet] = []
    with capture:
        try:
            for packet in capture:
                assert isinstance(packet[2], bytes) and len(packet[2]) <= 262144
                packets.append(packet)
        except CaptureError as exc:
            assert "\n" not in str(exc) and str(path) in str(exc)
        assert capture.stats().received == len(packets)
        assert list(capture) == []  # finished for good, no second error, no hang
    return packets


@FUZZ
@given(st.binary(max_size=3000))
def test_random_bytes_after_a_pcap_header(garbage: bytes) -> None:
    survives(pcap_bytes("<", [(1, 2, ETH_FRAME)]) + garbage, "fuzz.pcap")


@FUZZ
@given(st.binary(max_size=3000))
def test_random_bytes_after_pcapng_headers(garbage: bytes) -> None:
    survives(pcapng_head() + garbage, "fuzz.pcapng")


@st.composite
def block_soup(draw: st.DrawFn) -> bytes:
    """Blocks of real types with plausible but often wrong lengths, ids and captured lengths."""
    out = pcapng_head()
    for _ in range(draw(st.integers(1, 8))):
        btype = draw(st.sampled_from([0x0A0D0D0A, 1, 2, 3, 4, 5, 6, 0x0BAD, 0xDEADBEEF]))
        body = draw(st.binary(max_size=80))
        if btype == 0x0A0D0D0A and draw(st.booleans()):
            body = draw(st.sampled_from([b"\x4d\x3c\x2b\x1a", b"\x1a\x2b\x3c\x4d"])) + body
        if btype == 6 and draw(st.booleans()):
            body = struct.pack("<IIIII", draw(st.integers(0, 3)), 0, 0, draw(st.integers(0, 100)), 60) + body
        length = 12 + len(body) + (-len(body) & 3)
        length = draw(st.sampled_from([length, length, length + 4, length - 4, 0, 12, 0xFFFFFFFC]))
        body += b"\0" * (-len(body) & 3)
        out += struct.pack("<II", btype, length & 0xFFFFFFFF) + body + struct.pack("<I", length & 0xFFFFFFFF)
    return out


@FUZZ
@given(block_soup())
def test_pcapng_block_soup(data: bytes) -> None:
    survives(data, "soup.pcapng")


@FUZZ
@given(st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=6))
def test_pcapng_with_flipped_bytes(flips: list[tuple[int, int]]) -> None:
    data = bytearray(b"".join(crafted_pcapng()[0]))
    for at, value in flips:
        data[at % len(data)] = value
    survives(bytes(data), "flipped.pcapng")


# -- streaming: chunk boundaries, big skipped blocks, resuming, constant memory -------------------


def synthetic_pcap(path: Path, count: int, sizes: tuple[int, ...] = (60,)) -> None:
    """``count`` records written straight with struct (scapy would take minutes)."""
    record = struct.Struct("<IIII")
    with path.open("wb") as out:
        out.write(pcap_bytes("<", []))
        batch = []
        for n in range(count):
            size = sizes[n % len(sizes)]
            batch.append(record.pack(1700000000 + n // 1000, n % 1000 * 1000, size, size))
            batch.append(n.to_bytes(4, "big") * (size // 4) + b"\x01" * (size % 4))
            if len(batch) >= 20000:
                out.write(b"".join(batch))
                batch.clear()
        out.write(b"".join(batch))


def test_records_straddling_chunks_are_intact(tmp_path: Path) -> None:
    path = tmp_path / "sizes.pcap"
    sizes = (60, 1514, 9000, 61, 255, 1)
    count = 3 * CHUNK_SIZE // 1800
    synthetic_pcap(path, count, sizes)
    assert path.stat().st_size > 2 * CHUNK_SIZE
    for n, (ts, _, frame, _) in enumerate(read_all(path)):
        size = sizes[n % len(sizes)]
        assert frame == n.to_bytes(4, "big") * (size // 4) + b"\x01" * (size % 4)
        assert ts == 1700000000 + n // 1000 + n % 1000 / 1000
    assert n == count - 1


@pytest.mark.parametrize("complete", [True, False])
def test_pcapng_blocks_bigger_than_the_buffer_are_streamed_past(tmp_path: Path, complete: bool) -> None:
    head = pcapng_head() + ng_epb("<", 0, 10**6, ETH_FRAME)
    huge = ng_block("<", 0x0A, struct.pack("<II", 0x544C534B, 3 * CHUNK_SIZE) + os.urandom(3 * CHUNK_SIZE))
    tail = ng_epb("<", 0, 2 * 10**6, ETH_FRAME_2) + ng_epb("<", 0, 3 * 10**6, IP_FRAME)
    path = _write(tmp_path / "secrets.pcapng", head + (huge + tail if complete else huge[:-100]))
    packets, error = read_until_error(path)
    if complete:
        assert error is None
        assert [(p[0], p[2]) for p in packets] == [(1.0, ETH_FRAME), (2.0, ETH_FRAME_2), (3.0, IP_FRAME)]
    else:
        assert [p[2] for p in packets] == [ETH_FRAME]
        assert error == (f"{path}: truncated decryption secrets block at byte offset {len(head)} "
                         f"(block length says {len(huge)} bytes, {len(huge) - 100} left)")


def test_iteration_resumes_after_break_with_exact_counts(tmp_path: Path) -> None:
    path = tmp_path / "resume.pcap"
    synthetic_pcap(path, 30000)
    with open_capture(path) as capture:
        first = []
        for packet in capture:
            first.append(packet)
            if len(first) == 10:
                break
        assert capture.stats().received == 10
        assert capture.bytes_read == 24 + 10 * 76
        rest = list(capture)
        assert capture.stats().received == 30000
        assert capture.bytes_read == capture.size
    assert [p[2][:4] for p in first + rest] == [n.to_bytes(4, "big") for n in range(30000)]


def peak_memory_reading(path: Path) -> tuple[int, int]:
    tracemalloc.start()
    try:
        count = 0
        with open_capture(path) as capture:
            for _packet in capture:
                count += 1
        return count, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def synthetic_pcapng(path: Path, count: int, size: int = 400) -> None:
    """``count`` enhanced packet blocks of ``size``-byte frames, written straight with struct."""
    epb = struct.Struct("<IIIIIII")
    blen = 32 + size
    with path.open("wb") as out:
        out.write(pcapng_head())
        batch = []
        for n in range(count):
            ts = 1_700_000_000_000_000 + n
            batch.append(epb.pack(6, blen, 0, ts >> 32, ts & 0xFFFFFFFF, size, size)
                         + n.to_bytes(4, "big") * (size // 4) + blen.to_bytes(4, "little"))
            if len(batch) >= 20000:
                out.write(b"".join(batch))
                batch.clear()
        out.write(b"".join(batch))


@pytest.mark.parametrize(("suffix", "small_count", "large_count"), [(".pcap", 50_000, 200_000),
                                                                    (".pcapng", 12_000, 48_000)])
def test_memory_is_constant_in_file_size(tmp_path: Path, suffix: str, small_count: int,
                                         large_count: int) -> None:
    small, large = tmp_path / ("small" + suffix), tmp_path / ("large" + suffix)
    write = synthetic_pcap if suffix == ".pcap" else synthetic_pcapng
    write(small, small_count)
    write(large, large_count)
    assert small.stat().st_size > 3 * CHUNK_SIZE and large.stat().st_size > 14 * CHUNK_SIZE
    count_small, peak_small = peak_memory_reading(small)
    count_large, peak_large = peak_memory_reading(large)
    assert (count_small, count_large) == (small_count, large_count)
    assert peak_large < 8 * 2**20
    assert peak_large < peak_small + 256 * 1024, (peak_small, peak_large)


def test_pcapng_with_too_many_interfaces_is_corrupt(tmp_path: Path) -> None:
    idb = ng_idb("<", LINKTYPE_ETHERNET, 65535)
    head = ng_shb("<") + idb * MAX_INTERFACES
    path = _write(tmp_path / "interfaces.pcapng", head + idb + ng_epb("<", 0, 0, ETH_FRAME))
    packets, error = read_until_error(path)
    assert packets == []
    assert error == (f"{path}: corrupt interface description block at byte offset {len(head)} "
                     f"(more than {MAX_INTERFACES} interfaces in one section)")
