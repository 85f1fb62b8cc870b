"""The benchmark: the capture builder checked with tshark, then a small measured run."""

from __future__ import annotations

import ipaddress
import subprocess
from decimal import Decimal
from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP, UDP, IPOption_RR
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import ARP, CookedLinux, Dot1Q, Ether
from scapy.utils import PcapNgWriter, PcapWriter

from sensor.bench import (
    COPY_GAP_US,
    DEFAULT_SOURCES,
    MAX_GAP_US,
    PROTOCOL_SOURCES,
    START,
    BenchError,
    build_bench_capture,
    count_packets,
    default_sources,
    format_table,
    main_bench,
    run_bench,
    write_prefix,
)
from sensor.protocols import registry

REPO = Path(__file__).resolve().parents[2]
PCAPS = REPO.parent / "shared" / "pcaps"
# Sources whose TCP analysis and checksums are clean in the original, so any flag or bad checksum in the
# output was made by copying.
CLEAN = [PCAPS / p for p in ("iti/pcaps/ModbusTCP/Modbus/modbus_test.pcap",
                             "icsnpp-bacnet/testing/traces/bacnet_example.pcap",
                             "icsnpp-dnp3/testing/traces/dnp3_example.pcap")]
FIELDS = ("frame.time_epoch", "ip.src", "ip.dst", "ip.checksum.status", "tcp.checksum.status",
          "udp.checksum.status", "udp.checksum", "tcp.analysis.flags", "vlan.id")


def tshark(path: Path) -> list[dict[str, str]]:
    """Every frame's fields, with tshark validating IPv4, TCP and UDP checksums."""
    argv = ["tshark", "-n", "-r", str(path), "-o", "ip.check_checksum:TRUE", "-o", "tcp.check_checksum:TRUE",
            "-o", "udp.check_checksum:TRUE", "-T", "fields"]
    for name in FIELDS:
        argv += ["-e", name]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    return [dict(zip(FIELDS, line.split("\t"))) for line in out.splitlines()]


def shifted(address: str, copy: int) -> str:
    return str(ipaddress.IPv4Address(int(ipaddress.IPv4Address(address)) + (copy << 8)))


Bench = tuple[Path, list[dict[str, str]]]


@pytest.fixture(scope="module")
def clean_bench(tmp_path_factory: pytest.TempPathFactory) -> Bench:
    path = tmp_path_factory.mktemp("bench") / "bench.pcap"
    assert build_bench_capture(path, 20_000, CLEAN) == 20_000
    return path, tshark(path)


def test_copies_are_new_connections_with_valid_checksums(clean_bench: Bench) -> None:
    path, frames = clean_bench
    assert len(frames) == count_packets(path) == 20_000
    assert [f for f in frames if f["tcp.analysis.flags"]] == []  # no retransmission, dup ack, lost segment...
    assert {f["ip.checksum.status"] for f in frames} == {"1"}  # 1: good
    assert {f["tcp.checksum.status"] for f in frames} == {"1", ""}
    assert {f["udp.checksum.status"] for f in frames} == {"1", ""}
    times = [Decimal(f["frame.time_epoch"]) for f in frames]
    assert times == sorted(times)
    assert times[0] == int(START.timestamp())


def test_each_copy_moves_its_hosts_one_network_up(clean_bench: Bench) -> None:
    _, frames = clean_bench
    originals = [tshark(p) for p in CLEAN]
    position, copy = 0, 0
    while position < len(frames):
        original = originals[copy % len(originals)]
        part = frames[position:position + len(original)]
        assert [(f["ip.src"], f["ip.dst"]) for f in part] == [
            (shifted(o["ip.src"], copy), shifted(o["ip.dst"], copy)) for o in original[:len(part)]]
        position += len(part)
        copy += 1
    assert copy > len(CLEAN)  # the 20,000 packets went round the sources more than once


def test_same_input_same_bytes_and_a_prefix_is_the_smaller_bench(
        tmp_path: Path, clean_bench: Bench) -> None:
    path, _ = clean_bench
    again, small, prefix = tmp_path / "again.pcap", tmp_path / "small.pcap", tmp_path / "prefix.pcap"
    build_bench_capture(again, 20_000, CLEAN)
    assert again.read_bytes() == path.read_bytes()
    assert build_bench_capture(small, 7_777, CLEAN) == 7_777
    assert write_prefix(path, prefix, 7_777) == 7_777
    assert prefix.read_bytes() == small.read_bytes()


def test_original_retransmissions_stay_and_copies_add_none(tmp_path: Path) -> None:
    """modbus_test_2 has real retransmissions: three copies have exactly three times as many."""
    source = PCAPS / "iti/pcaps/ModbusTCP/Modbus/modbus_test_2.pcap"
    path = tmp_path / "bench.pcap"
    original = [f for f in tshark(source) if f["tcp.analysis.flags"]]
    assert original
    assert build_bench_capture(path, 3 * 4901, [source]) == 3 * 4901
    assert len([f for f in tshark(path) if f["tcp.analysis.flags"]]) == 3 * len(original)


def crafted_source(path: Path) -> list[tuple[float, bool]]:
    """Edge cases: offloaded and bad checksums, no UDP checksum, multicast, broadcast, a VLAN tag, IP
    options, a later fragment, frames going back in time and a two-year silence, and frames that are
    not IPv4 (left out)."""
    a, b = "192.168.5.10", "192.168.5.20"
    frames = [
        (1000.0, Ether() / IP(src=a, dst=b, chksum=0) / TCP(sport=40000, dport=502, flags="S")),
        (1000.5, Ether() / IP(src=b, dst=a) / TCP(sport=502, dport=40000, flags="SA", chksum=0x1234)),
        (1000.25, Ether() / IP(src=a, dst="239.192.1.1") / UDP(sport=2222, dport=2222) / b"cip io"),
        (1001.0, Ether() / ARP(psrc=a, pdst=b)),
        (1001.5, Ether() / IP(src=a, dst="255.255.255.255") / UDP(sport=47808, dport=47808, chksum=0) / b"!"),
        (1002.0, Ether() / IPv6(src="fe80::1", dst="ff02::1") / UDP(sport=1, dport=2)),
        (1002.5, Ether() / Dot1Q(vlan=20) / IP(src=b, dst=a) / TCP(sport=502, dport=40000, flags="A")),
        (1003.0, Ether() / IP(src=a, dst=b, options=[IPOption_RR()]) / UDP(sport=5000, dport=20000) / b"x"),
        (1003.5, Ether() / IP(src=a, dst=b, proto=17, frag=10) / (b"y" * 40)),
        (1003.5 + 2 * 365 * 86400, Ether() / IP(src=b, dst=a) / TCP(sport=502, dport=40000, flags="FA")),
    ]
    with PcapWriter(str(path), linktype=1, sync=True) as writer:
        for ts, packet in frames:
            packet.time = ts
            writer.write(packet)
    return [(ts, IP in p) for ts, p in frames]


def test_edge_cases(tmp_path: Path) -> None:
    source, path = tmp_path / "source.pcap", tmp_path / "bench.pcap"
    times = crafted_source(source)
    per_copy = sum(1 for _, ipv4 in times if ipv4)
    assert build_bench_capture(path, 3 * per_copy, [source]) == 3 * per_copy
    original, frames = tshark(source), tshark(path)
    original = [o for o in original if o["ip.src"]]
    assert len(frames) == 3 * per_copy
    assert {f["ip.checksum.status"] for f in frames} == {"1"}  # computed, offloaded zero included
    expected_times: list[Decimal] = []
    start = Decimal(int(START.timestamp()))
    for copy in range(3):
        part = frames[copy * per_copy:(copy + 1) * per_copy]
        for o, f in zip(original, part):
            assert f["ip.src"] == shifted(o["ip.src"], copy)
            kept = o["ip.dst"] in ("239.192.1.1", "255.255.255.255")
            assert f["ip.dst"] == (o["ip.dst"] if kept else shifted(o["ip.dst"], copy))
            # transport checksums are exactly as (in)valid as they were; no UDP checksum stays none
            assert (f["tcp.checksum.status"], f["udp.checksum.status"]) == (
                o["tcp.checksum.status"], o["udp.checksum.status"])
            assert f["vlan.id"] == o["vlan.id"]
        # spacing kept, measured from the latest time so far (non-IPv4 frames count), long silences cut
        rel, latest, relative = 0.0, times[0][0], []
        for ts, ipv4 in times:
            rel += min(max(ts - latest, 0.0), MAX_GAP_US / 1e6)
            latest = max(latest, ts)
            if ipv4:
                relative.append(rel)
        expected_times += [start + Decimal(str(r)) for r in relative]
        start += Decimal(str(relative[-1])) + Decimal(COPY_GAP_US) / 1_000_000
    assert [Decimal(f["frame.time_epoch"]) for f in frames] == expected_times
    # the cases were there: bad and good TCP checksums, good and absent UDP ones
    assert {o["tcp.checksum.status"] for o in original} == {"0", "1", ""}
    assert {o["udp.checksum.status"] for o in original} == {"1", "3", ""}


def test_unusable_sources_are_named(tmp_path: Path) -> None:
    pcapng, cooked, good = tmp_path / "a.pcapng", tmp_path / "cooked.pcap", tmp_path / "good.pcap"
    with PcapNgWriter(str(pcapng)) as writer:
        writer.write(Ether() / IP() / TCP())
    with PcapWriter(str(cooked), linktype=113) as writer:
        writer.write(CookedLinux() / IP() / TCP())
    with PcapWriter(str(good), linktype=1) as writer:
        writer.write(Ether() / IP(src="10.0.0.1", dst="10.0.0.2") / TCP())
    logged: list[str] = []
    assert build_bench_capture(tmp_path / "out.pcap", 5, [pcapng, cooked, tmp_path / "missing.pcap", good],
                               log=logged.append) == 5
    problems = [line for line in logged if line.startswith("skipping")]
    assert len(problems) == 3
    assert str(pcapng) in problems[0] and "not a classic pcap" in problems[0]
    assert str(cooked) in problems[1] and "link type 113" in problems[1]
    assert str(tmp_path / "missing.pcap") in problems[2]
    with pytest.raises(BenchError, match="no usable source capture: .*a.pcapng") as caught:
        build_bench_capture(tmp_path / "out.pcap", 5, [pcapng])
    assert "\n" not in str(caught.value)


def test_default_sources_are_shared_ethernet_pcaps() -> None:
    paths = default_sources()
    assert [p.relative_to(PCAPS).as_posix() for p in paths] == list(DEFAULT_SOURCES)
    for path in paths:
        with path.open("rb") as f:
            head = f.read(24)
        assert head[:4] in (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4"), path
        assert int.from_bytes(head[20:24], "little" if head[0] == 0xD4 else "big") == 1, path


def test_run_bench_measures_icsmon_and_tshark(tmp_path: Path,
                                              clean_bench: Bench) -> None:
    path, _ = clean_bench
    result = run_bench(path, tmp_path)
    assert [(r.tool, r.packets) for r in result.rows] == [("icsmon", 20_000)] * 3 + [("tshark", 20_000)]
    for row in result.rows:
        assert row.seconds > 0 and row.packets_per_second > 0 and row.peak_rss_mib > 0
    assert [n for n, _ in result.flatness] == [10_000, 20_000]
    assert all(mib > 0 for _, mib in result.flatness)
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing left behind
    table = format_table(result)
    assert "| tool | what | packets | seconds | packets/s | peak RSS |" in table
    assert len([line for line in table.splitlines() if line.startswith(("| icsmon", "| tshark"))]) == 4
    assert "tshark 4." in table and "python 3." in table and "cores" in table


def test_main_bench(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main_bench(3000, str(tmp_path), keep=True, protocol_packets=2000) == 0
    out, err = capsys.readouterr()
    assert out.startswith("3,000 packets") and "| tshark |" in out
    assert "icsmon bench: built 3,000 packets" in err
    assert [p.name for p in tmp_path.iterdir()] == ["bench-3000.pcap"]  # per-protocol captures removed
    # One per-protocol row per registered dissector, icsmon and tshark side by side.
    rows = [line.split(" | ") for line in out.splitlines() if line.startswith("| ") and line.endswith("x |")]
    assert {row[0].lstrip("| ") for row in rows} == set(registry())
    assert all(row[1] == "2,000" for row in rows)


def test_every_protocol_has_benchmark_captures() -> None:
    assert set(PROTOCOL_SOURCES) >= set(registry())
    for name, sources in PROTOCOL_SOURCES.items():
        for source in sources:
            assert (PCAPS / source).is_file(), f"{name}: {source}"


def test_main_bench_bad_workdir_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    occupied = tmp_path / "file"
    occupied.write_text("")
    assert main_bench(3000, str(occupied), keep=False) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"icsmon: error: cannot use {occupied} as the work folder")
    assert err.count("\n") == 1
