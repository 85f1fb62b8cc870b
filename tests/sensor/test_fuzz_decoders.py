"""Hostile input for the packet path: random bytes and mutated valid frames into ``decode()`` for
every link type, random packet lists through the whole sensor, and a memory bound under a flood
of out-of-order TCP segments. Hypothesis runs derandomized with fixed budgets so the file is
fast and repeatable."""

from __future__ import annotations

import random
import struct
from collections.abc import Iterator
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPOption_RR, fragment
from scapy.layers.inet6 import (
    ICMPv6EchoRequest,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
    fragment6,
)
from scapy.layers.l2 import ARP, CookedLinux, CookedLinuxV2, Dot1AD, Dot1Q, Ether

from sensor.capture import (
    LINKTYPE_ETHERNET,
    LINKTYPE_IPV4,
    LINKTYPE_IPV6,
    LINKTYPE_LINUX_SLL,
    LINKTYPE_LINUX_SLL2,
    LINKTYPE_LOOP,
    LINKTYPE_NULL,
    LINKTYPE_RAW,
    Packet,
)
from sensor.decode import decode, reverse_key, split_key
from sensor.dissect import Dissector, Event, ProtocolViolation
from sensor.events import to_json
from sensor.ipfrag import Defragmenter
from sensor.pipeline import Sensor
from sensor.settings import FlowSettings, FragmentSettings, SensorSettings

FUZZ = settings(derandomize=True, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

LINKTYPES = [LINKTYPE_NULL, LINKTYPE_ETHERNET, LINKTYPE_RAW, LINKTYPE_LOOP, LINKTYPE_LINUX_SLL,
             LINKTYPE_IPV4, LINKTYPE_IPV6, LINKTYPE_LINUX_SLL2, 195]
L2 = {"src": "02:00:00:00:00:01", "dst": "02:00:00:00:00:02"}
V4, V6 = {"src": "10.3.0.1", "dst": "10.3.0.2"}, {"src": "2001:db8::1", "dst": "2001:db8::2"}


def _corpus() -> list[tuple[int, bytes]]:
    """Valid frames of every layer combination decode() knows, as (linktype, frame)."""
    modbus = b"\x00\x01\x00\x00\x00\x06\x01\x03\x00\x00\x00\x01"
    tcp = TCP(sport=40000, dport=502, flags="PA", seq=1, ack=2) / modbus
    udp = UDP(sport=47808, dport=47808) / b"\x81\x0a\x00\x08\x01\x00\x10\x08"
    l3: list[Any] = [
        IP(**V4) / tcp, IP(**V4) / udp, IP(**V4) / ICMP() / b"ping", IP(**V4, options=[IPOption_RR()]) / tcp,
        IPv6(**V6) / tcp, IPv6(**V6) / udp, IPv6(**V6) / ICMPv6EchoRequest(),
        IPv6(**V6) / IPv6ExtHdrHopByHop() / IPv6ExtHdrRouting() / IPv6ExtHdrDestOpt() / tcp,
    ]
    frames: list[tuple[int, bytes]] = []
    for pkt in l3:
        frames.append((LINKTYPE_ETHERNET, bytes(Ether(**L2) / pkt)))
        frames.append((LINKTYPE_ETHERNET, bytes(Ether(**L2) / Dot1Q(vlan=5) / pkt)))
        frames.append((LINKTYPE_ETHERNET, bytes(Ether(**L2) / Dot1AD(vlan=6) / Dot1Q(vlan=7) / pkt)))
        frames.append((LINKTYPE_LINUX_SLL, bytes(CookedLinux() / pkt)))
        frames.append((LINKTYPE_LINUX_SLL2, bytes(CookedLinuxV2() / pkt)))
        frames.append((LINKTYPE_RAW, bytes(pkt)))
        v6 = IPv6 in pkt
        frames.append((LINKTYPE_IPV6 if v6 else LINKTYPE_IPV4, bytes(pkt)))
        frames.append((LINKTYPE_NULL, struct.pack("<I", 30 if v6 else 2) + bytes(pkt)))
        frames.append((LINKTYPE_LOOP, struct.pack(">I", 24 if v6 else 2) + bytes(pkt)))
    for f in fragment(IP(**V4, id=9) / UDP(sport=1, dport=2) / (b"f" * 600), fragsize=200):
        frames.append((LINKTYPE_ETHERNET, bytes(Ether(**L2) / f)))
    for f in fragment6(IPv6(**V6) / IPv6ExtHdrFragment(id=9) / UDP(sport=1, dport=2) / (b"g" * 1500), 1280):
        frames.append((LINKTYPE_ETHERNET, bytes(Ether(**L2) / f)))
    frames.append((LINKTYPE_ETHERNET, bytes(Ether(**L2) / ARP())))
    return frames


CORPUS = _corpus()


class Checker:
    """decode() with its counters; checks every result is None-and-counted or well formed."""

    def __init__(self) -> None:
        self.errors: dict[str, int] = {}
        self.counters: dict[str, int] = {}
        self.defrag = Defragmenter(max_datagrams=16, max_bytes=1 << 17, timeout=5.0)

    def counted(self) -> int:
        return (sum(self.errors.values()) + sum(self.counters.values())
                + self.defrag.counters.get("fragments", 0))

    def __call__(self, linktype: int, frame: bytes, ts: float = 1.0) -> None:
        before = self.counted()
        result = decode(linktype, frame, ts, self.errors, self.counters, self.defrag)
        if result is None:
            assert self.counted() > before, (linktype, frame.hex())
            return
        proto, key, payload, flags, seq, ack = result
        assert proto in (1, 6, 17, 58)
        assert isinstance(key, bytes) and isinstance(payload, bytes)
        assert len(key) in {13 + 2 * n for n in range(5)} | {37 + 2 * n for n in range(5)}
        a = 16 if len(key) >= 37 else 4
        assert key[2 * a + 4] == proto
        assert reverse_key(reverse_key(key)) == key
        src, dst, sport, dport, kproto, vlans, family = split_key(key)
        assert kproto == proto and family in ("ipv4", "ipv6") and all(0 <= v < 4096 for v in vlans)
        assert 0 <= flags <= 0xFF and 0 <= seq <= 0xFFFFFFFF and 0 <= ack <= 0xFFFFFFFF
        if proto not in (6, 17):
            assert (sport, dport) == (0, 0) and flags == seq == ack == 0
        assert len(payload) <= len(frame) or self.defrag.counters.get("datagrams-reassembled")
        assert self.defrag.held <= self.defrag.max_bytes


@settings(FUZZ, max_examples=600)
@given(linktype=st.sampled_from(LINKTYPES), frame=st.binary(max_size=200))
def test_random_bytes_never_raise(linktype: int, frame: bytes) -> None:
    Checker()(linktype, frame)


@settings(FUZZ, max_examples=400)
@given(linktype=st.sampled_from(LINKTYPES), head=st.sampled_from([b"", b"\x45", b"\x60", b"\x02\0\0\0",
                                                                    b"\0\0\0\x1e", b"\x08\x00"]),
       frame=st.binary(max_size=120))
def test_random_bytes_behind_plausible_headers_never_raise(linktype: int, head: bytes, frame: bytes) -> None:
    Checker()(linktype, head + frame)


Mutation = tuple[str, int, int]
MUTATIONS = st.lists(st.tuples(st.sampled_from(["set", "truncate", "insert", "delete", "append"]),
                               st.integers(min_value=0, max_value=2000),
                               st.integers(min_value=0, max_value=255)),
                     min_size=1, max_size=6)


def mutate(frame: bytes, mutations: list[Mutation]) -> bytes:
    buf = bytearray(frame)
    for op, pos, value in mutations:
        at = pos % (len(buf) + 1)
        if op == "set" and buf:
            buf[at % len(buf)] = value
        elif op == "truncate":
            del buf[at:]
        elif op == "insert":
            buf[at:at] = bytes([value]) * (1 + value % 8)
        elif op == "delete":
            del buf[at:at + 1 + value % 8]
        else:
            buf += bytes([value]) * (1 + value % 64)
    return bytes(buf)


@settings(FUZZ, max_examples=1500)
@given(index=st.integers(min_value=0, max_value=len(CORPUS) - 1), mutations=MUTATIONS,
       other_link=st.booleans(), linktype=st.sampled_from(LINKTYPES))
def test_mutated_valid_frames_never_raise(index: int, mutations: list[Mutation], other_link: bool,
                                          linktype: int) -> None:
    own, frame = CORPUS[index]
    Checker()(linktype if other_link else own, mutate(frame, mutations))


def test_every_valid_frame_truncated_at_every_offset_then_garbage() -> None:
    rng = random.Random(7)
    check = Checker()
    for linktype, frame in CORPUS:
        check(linktype, frame)
        for cut in range(len(frame)):
            check(linktype, frame[:cut])
            check(linktype, frame[:cut] + rng.randbytes(rng.randint(1, 40)))


def test_corpus_decodes_cleanly() -> None:
    check = Checker()
    for linktype, frame in CORPUS:
        check(linktype, frame)
    assert check.errors == {}
    assert check.defrag.counters["datagrams-reassembled"] == 2


# -- the whole sensor --------------------------------------------------------------------------------


class FuzzSession:
    """Accepts everything, emits one event per line, and misbehaves on request."""

    def __init__(self) -> None:
        self.buf = b""

    def feed(self, data: bytes, to_server: bool, ts: float) -> list[Event]:
        self.buf = (self.buf + data)[-4096:]
        events: list[Event] = []
        while b"\n" in self.buf:
            line, _, self.buf = self.buf.partition(b"\n")
            if line.startswith(b"V"):
                raise ProtocolViolation("fuzz-violation", len(line))
            if line.startswith(b"X"):
                raise ValueError("fuzz bug")
            events.append({"event.action": "fuzz-line", "fuzz.length": len(line)})
        return events

    def on_gap(self, nbytes: int, to_server: bool) -> None:
        assert nbytes > 0
        self.buf = b""

    def finish(self, ts: float) -> list[Event]:
        return [{"event.action": "fuzz-rest"}] if self.buf else []


FUZZ_DISSECTOR = Dissector(name="fuzz", description="fuzz test lines", tcp_ports=frozenset({502, 40000}),
                           udp_ports=frozenset({47808}), probe=lambda payload, to_server: True,
                           new_session=FuzzSession)

PACKETS = st.lists(
    st.tuples(
        st.floats(min_value=0, max_value=10_000, allow_nan=False),
        st.integers(min_value=0, max_value=len(CORPUS) - 1),
        MUTATIONS,
        st.booleans(),
    ),
    max_size=40,
)


def small_sensor(events: list[Event]) -> Sensor:
    flows = FlowSettings(max_flows=8, sweep_interval=1, tcp_idle_timeout=30, udp_idle_timeout=10,
                         absolute_timeout=100, max_buffer_per_flow=2048, max_segments_per_flow=4,
                         max_buffer_total=1 << 16)
    return Sensor(SensorSettings(sensor_id="fuzz", flows=flows, fragments=FragmentSettings(max_datagrams=4),
                                 max_probe_bytes=64), sink=events.append, dissectors=[FUZZ_DISSECTOR])


@settings(FUZZ, max_examples=250)
@given(packets=PACKETS)
def test_sensor_run_over_random_packet_lists_never_raises(
        packets: list[tuple[float, int, list[Mutation], bool]]) -> None:
    events: list[Event] = []
    sensor = small_sensor(events)
    source: list[Packet] = []
    for ts, index, mutations, pristine in packets:
        linktype, frame = CORPUS[index]
        source.append((ts, linktype, frame if pristine else mutate(frame, mutations), "fuzz0"))
    sensor.run(source)
    sensor.finish()
    stats = sensor.stats_dict()
    assert stats["packets"] == len(source) and stats["flows"]["active"] == 0
    assert stats["events"] == len(events) and stats["reassembly"]["buffered_bytes"] == 0
    assert sensor.table.budget.held == 0
    starts = sum(e.get("event.action") == "connection-start" for e in events)
    ends = sum(e.get("event.action") == "connection-end" for e in events)
    assert starts == ends == stats["flows"]["created"]
    for event in events:
        to_json(event)


@settings(FUZZ, max_examples=60)
@given(seed=st.integers(min_value=0, max_value=2**32 - 1), count=st.integers(min_value=1, max_value=300))
def test_sensor_over_random_tcp_conversations_keeps_its_books(seed: int, count: int) -> None:
    """Random segments (any flags, sequence and ACK numbers) across a few flows."""
    rng = random.Random(seed)
    events: list[Event] = []
    sensor = small_sensor(events)
    sensor.run(random_segments(rng, count, flows=12, window=6000, ts_step=0.5))
    sensor.finish()
    assert sensor.table.budget.held == 0 and not sensor.table.flows
    starts = sum(e.get("event.action") == "connection-start" for e in events)
    ends = sum(e.get("event.action") == "connection-end" for e in events)
    assert starts == ends


# -- memory bound under an out-of-order flood -------------------------------------------------------------

_TEMPLATE = bytes(Ether(**L2) / IP(src="10.4.0.1", dst="10.5.0.1") / TCP(sport=1, dport=502, flags="PA"))
_PAYLOAD = bytes(range(256)) * 6
_IP_TOTAL, _IP_SRC, _TCP_PORTS, _TCP_SEQ, _TCP_FLAGS = 16, 26, 34, 38, 47
FLAG_CHOICES = (0x18, 0x18, 0x18, 0x18, 0x10, 0x08, 0x02, 0x12, 0x11, 0x04)


def random_segments(rng: random.Random, count: int, flows: int, window: int, ts_step: float,
                    ack_window: int | None = None, flags: tuple[int, ...] = FLAG_CHOICES) -> Iterator[Packet]:
    """Valid Ethernet/IPv4/TCP frames with random flows, directions, flags and sequence numbers.

    ACK numbers fall within ``ack_window`` bytes of the peer's first sequence number (default: the
    same window as the data), so a small window keeps holes open instead of declaring gaps.
    """
    ack_window = window if ack_window is None else ack_window
    isn = [rng.getrandbits(32) for _ in range(2 * flows)]
    ts = 1_700_000_000.0
    for _ in range(count):
        flow = rng.randrange(flows)
        to_server = rng.random() < 0.7
        n = rng.choice((0, 1, 10, 100, 536, 1460)) if rng.random() < 0.9 else rng.randint(0, 1460)
        frame = bytearray(_TEMPLATE)
        struct.pack_into("!H", frame, _IP_TOTAL, 40 + n)
        client, server = 0x0A040000 + flow // 200, 0x0A050001
        cport, sport = 20000 + flow % 40000, 502
        half, peer = 2 * flow + (0 if to_server else 1), 2 * flow + (1 if to_server else 0)
        src, dst, sp, dp = (client, server, cport, sport) if to_server else (server, client, sport, cport)
        struct.pack_into("!II", frame, _IP_SRC, src, dst)
        struct.pack_into("!HHII", frame, _TCP_PORTS, sp, dp, (isn[half] + rng.randrange(window)) & 0xFFFFFFFF,
                         (isn[peer] + rng.randrange(ack_window + 1)) & 0xFFFFFFFF)
        frame[_TCP_FLAGS] = rng.choice(flags)
        start = rng.randrange(len(_PAYLOAD) - n + 1)
        ts += rng.random() * ts_step
        yield (ts, LINKTYPE_ETHERNET, bytes(frame) + _PAYLOAD[start:start + n], "eth0")


def test_out_of_order_flood_keeps_memory_and_flows_bounded() -> None:
    """200,000 random out-of-order segments over thousands of flows: the reassembly budget and the
    flow cap hold after every single packet, and the books balance."""
    cap, max_flows = 1 << 20, 1000
    flows = FlowSettings(max_flows=max_flows, max_buffer_total=cap, max_buffer_per_flow=64 << 10,
                         max_segments_per_flow=64, tcp_idle_timeout=300, sweep_interval=5)
    events: list[Event] = []
    sensor = Sensor(SensorSettings(sensor_id="flood", flows=flows), sink=events.append, dissectors=[])
    table = sensor.table
    peak = [0, 0]

    def checked(source: Iterator[Packet]) -> Iterator[Packet]:
        for packet in source:
            yield packet
            assert table.budget.held <= cap
            assert len(table.flows) <= max_flows
            peak[0] = max(peak[0], table.budget.held)
            peak[1] = max(peak[1], len(table.flows))

    rng = random.Random(2024)
    # First 800 flows (under the cap) pile up held segments against the budget; then 3,000 flows
    # churn through the table and evict. No FIN or RST: nothing releases memory but the caps.
    data_flags = (0x18, 0x18, 0x10, 0x08)
    sensor.run(checked(random_segments(rng, 120_000, flows=800, window=400_000, ts_step=0.001, ack_window=0,
                                       flags=data_flags)))
    assert peak[0] > cap * 3 // 4  # the budget was under pressure
    sensor.run(checked(random_segments(rng, 80_000, flows=3000, window=400_000, ts_step=0.001, ack_window=0,
                                       flags=data_flags)))
    held = sum(h.stream.pending_bytes for f in table.flows.values() for h in (f.client, f.server)
               if h.stream is not None)
    assert held == table.budget.held
    assert peak[1] == max_flows
    sensor.finish()
    stats = sensor.stats_dict()
    assert table.budget.held == 0 and stats["flows"]["active"] == 0
    assert stats["flows"]["evicted"] > 0 and stats["reassembly"]["forced_gaps"] > 0
    assert stats["packets"] == 200_000
