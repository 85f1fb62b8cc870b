"""Frame decoding: every link type, VLAN tags, IP options and extension headers, fragments, every
malformation counted by reason, flow keys, and a frame-by-frame differential run against tshark."""

from __future__ import annotations

import logging
import struct
import subprocess
from ipaddress import ip_address
from pathlib import Path

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPOption_RR, IPOption_Timestamp, fragment
from scapy.layers.inet6 import (
    ICMPv6EchoRequest,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
    fragment6,
)
from scapy.layers.ipsec import AH
from scapy.layers.l2 import ARP, CookedLinux, CookedLinuxV2, Dot1AD, Dot1Q, Ether
from scapy.packet import Packet as ScapyPacket
from scapy.packet import Raw

from sensor.capture import (
    LINKTYPE_ETHERNET,
    LINKTYPE_IPV4,
    LINKTYPE_IPV6,
    LINKTYPE_LINUX_SLL,
    LINKTYPE_LINUX_SLL2,
    LINKTYPE_LOOP,
    LINKTYPE_NULL,
    LINKTYPE_RAW,
)
from sensor.capture.pcapfile import open_capture
from sensor.decode import Decoded, decode, link_macs, reverse_key, split_key
from sensor.ipfrag import Defragmenter

logging.getLogger("scapy.runtime").setLevel(logging.ERROR)

REPO = Path(__file__).resolve().parents[2]
PCAPS = REPO.parent / "shared" / "pcaps"

C4, S4 = "192.0.2.10", "198.51.100.20"
C6, S6 = "2001:db8::10", "2001:db8:ffff::20"
MAC_A, MAC_B = "02:00:00:00:00:0a", "02:00:00:00:00:0b"


class Decoder:
    """decode() with its counters and a defragmenter, as the pipeline holds them."""

    def __init__(self, defrag: Defragmenter | None = None) -> None:
        self.errors: dict[str, int] = {}
        self.counters: dict[str, int] = {}
        self.defrag = defrag or Defragmenter()

    def __call__(self, frame: bytes | ScapyPacket, linktype: int = LINKTYPE_ETHERNET,
                 ts: float = 1.0) -> Decoded | None:
        return decode(linktype, bytes(frame), ts, self.errors, self.counters, self.defrag)


def eth() -> Ether:
    return Ether(src=MAC_A, dst=MAC_B)


def key4(src: str, dst: str, sport: int, dport: int, proto: int, vlans: tuple[int, ...] = ()) -> bytes:
    return (ip_address(src).packed + ip_address(dst).packed + struct.pack("!HHB", sport, dport, proto)
            + b"".join(struct.pack("!H", v) for v in vlans))


TCP_PAYLOAD = b"\x00\x01\x00\x00\x00\x06\x01\x03\x00\x00\x00\x0a"
TCP4 = IP(src=C4, dst=S4) / TCP(sport=40000, dport=502, flags="PA", seq=123456, ack=654321) / TCP_PAYLOAD
TCP6 = IPv6(src=C6, dst=S6) / TCP(sport=40000, dport=502, flags="PA", seq=123456, ack=654321) / TCP_PAYLOAD


def check_tcp(result: Decoded | None, v6: bool = False, vlans: tuple[int, ...] = ()) -> None:
    src, dst = (C6, S6) if v6 else (C4, S4)
    assert result == (6, key4(src, dst, 40000, 502, 6, vlans), TCP_PAYLOAD, 0x18, 123456, 654321)


# -- link types -------------------------------------------------------------------------------------


def test_ethernet_ipv4_tcp_is_one_flat_tuple() -> None:
    d = Decoder()
    check_tcp(d(eth() / TCP4))
    assert d.errors == {} and d.counters == {}


def test_ethernet_ipv6_tcp() -> None:
    check_tcp(Decoder()(eth() / TCP6), v6=True)


def test_udp_and_icmp_keys() -> None:
    d = Decoder()
    udp = d(eth() / IP(src=C4, dst=S4) / UDP(sport=47808, dport=47808) / b"\x81\x0b\x00\x0c")
    assert udp == (17, key4(C4, S4, 47808, 47808, 17), b"\x81\x0b\x00\x0c", 0, 0, 0)
    # All ICMP between two hosts is one flow: zero ports in the key, type and code kept in the payload.
    icmp = d(eth() / IP(src=C4, dst=S4) / ICMP(type=8, code=0, id=7, seq=1) / b"ping")
    assert icmp is not None
    assert icmp[0] == 1 and icmp[1] == key4(C4, S4, 0, 0, 1)
    assert icmp[2][:2] == b"\x08\x00" and icmp[2].endswith(b"ping")
    icmp6 = d(eth() / IPv6(src=C6, dst=S6) / ICMPv6EchoRequest(data=b"ping6"))
    assert icmp6 is not None
    assert icmp6[0] == 58 and icmp6[1] == key4(C6, S6, 0, 0, 58) and icmp6[2][0] == 128
    assert d.errors == {}


def test_802_1q_tag_id_is_in_the_key_without_priority_bits() -> None:
    d = Decoder()
    result = d(eth() / Dot1Q(vlan=100, prio=5, dei=1) / TCP4)
    check_tcp(result, vlans=(100,))
    assert result is not None and split_key(result[1])[5] == (100,)


def test_qinq_keeps_both_vlan_ids_outer_first() -> None:
    d = Decoder()
    frame = eth() / Dot1AD(vlan=300, prio=7) / Dot1Q(vlan=4094) / TCP4
    assert bytes(frame)[12:14] == b"\x88\xa8" and bytes(frame)[16:18] == b"\x81\x00"
    result = d(frame)
    check_tcp(result, vlans=(300, 4094))
    assert result is not None
    assert split_key(result[1]) == (C4, S4, 40000, 502, 6, (300, 4094), "ipv4")
    v6 = d(eth() / Dot1AD(vlan=1) / Dot1Q(vlan=2) / TCP6)
    check_tcp(v6, v6=True, vlans=(1, 2))
    assert v6 is not None and split_key(v6[1]) == (C6, S6, 40000, 502, 6, (1, 2), "ipv6")


def test_different_vlans_are_different_flows() -> None:
    d = Decoder()
    a, b = d(eth() / Dot1Q(vlan=10) / TCP4), d(eth() / Dot1Q(vlan=11) / TCP4)
    assert a is not None and b is not None and a[1] != b[1]


def test_more_than_four_vlan_tags_is_refused() -> None:
    d = Decoder()
    frame = eth() / Dot1Q(vlan=1) / Dot1Q(vlan=2) / Dot1Q(vlan=3) / Dot1Q(vlan=4) / TCP4
    check_tcp(d(frame), vlans=(1, 2, 3, 4))
    frame5 = eth() / Dot1Q(vlan=1) / Dot1Q(vlan=2) / Dot1Q(vlan=3) / Dot1Q(vlan=4) / Dot1Q(vlan=5) / TCP4
    assert d(frame5) is None
    assert d.errors == {"vlan-too-many-tags": 1}


def test_linux_cooked_captures() -> None:
    d = Decoder()
    check_tcp(d(CookedLinux(pkttype=0, lladdrtype=1, lladdrlen=6, src=b"\x02\0\0\0\0\x0a\0\0") / TCP4,
                LINKTYPE_LINUX_SLL))
    check_tcp(d(CookedLinux() / TCP6, LINKTYPE_LINUX_SLL), v6=True)
    check_tcp(d(CookedLinuxV2(ifindex=3) / TCP4, LINKTYPE_LINUX_SLL2))
    check_tcp(d(CookedLinuxV2() / TCP6, LINKTYPE_LINUX_SLL2), v6=True)
    # A cooked capture that kept the 802.1Q tag in the frame (protocol 0x8100).
    check_tcp(d(CookedLinux(proto=0x8100) / Dot1Q(vlan=42) / TCP4, LINKTYPE_LINUX_SLL), vlans=(42,))
    assert d.errors == {} and d.counters == {}
    assert link_macs(LINKTYPE_LINUX_SLL, bytes(CookedLinux() / TCP4)) == (None, None)


@pytest.mark.parametrize("linktype", [LINKTYPE_RAW, LINKTYPE_IPV4, LINKTYPE_IPV6])
def test_raw_ip_link_types(linktype: int) -> None:
    d = Decoder()
    check_tcp(d(TCP4, linktype))
    check_tcp(d(TCP6, linktype), v6=True)
    assert d(b"\x50" + bytes(TCP4)[1:], linktype) is None
    assert d(b"", linktype) is None
    assert d.errors == {"raw-bad-ip-version": 1, "raw-empty": 1}


def test_bsd_null_in_both_byte_orders_and_loop() -> None:
    d = Decoder()
    v4, v6 = bytes(TCP4), bytes(TCP6)
    check_tcp(d(struct.pack("<I", 2) + v4, LINKTYPE_NULL))  # little-endian capturing host
    check_tcp(d(struct.pack(">I", 2) + v4, LINKTYPE_NULL))  # big-endian capturing host
    for family in (24, 28, 30):  # AF_INET6 on NetBSD/OpenBSD, FreeBSD, macOS
        check_tcp(d(struct.pack("<I", family) + v6, LINKTYPE_NULL), v6=True)
        check_tcp(d(struct.pack(">I", family) + v6, LINKTYPE_NULL), v6=True)
        check_tcp(d(struct.pack(">I", family) + v6, LINKTYPE_LOOP), v6=True)
    check_tcp(d(struct.pack(">I", 2) + v4, LINKTYPE_LOOP))
    assert d.errors == {}
    # LOOP is always big-endian: a little-endian family is not AF_INET there.
    assert d(struct.pack("<I", 2) + v4, LINKTYPE_LOOP) is None
    assert d(struct.pack("<I", 7) + v4, LINKTYPE_NULL) is None
    assert d(b"\x02\x00\x00", LINKTYPE_NULL) is None
    assert d.errors == {"null-unknown-family": 2, "null-truncated": 1}


def test_unsupported_link_type_is_counted() -> None:
    d = Decoder()
    assert d(bytes(TCP4), 195) is None  # IEEE 802.15.4
    assert d.errors == {"unsupported-linktype-195": 1}


def test_arp_and_other_ethertypes_are_counted_not_errors() -> None:
    d = Decoder()
    assert d(eth() / ARP(psrc=C4, pdst=S4)) is None
    goose = Ether(dst="01:0c:cd:01:00:01", type=0x88B8) / (b"\x00\x01\x00\x10" + b"\0" * 40)
    assert d(goose) is None
    assert d(eth() / Dot1Q(vlan=5, type=0x8892) / (b"\xfe\xfe" + b"\0" * 40)) is None  # PROFINET in a VLAN
    assert d(eth() / Dot1Q(vlan=5) / ARP()) is None
    assert d(Ether(dst=MAC_B, type=0x0026) / (b"\xaa" * 38)) is None  # 802.3 length field
    assert d.errors == {}
    assert d.counters == {"arp": 2, "non-ip": 3}


def test_other_ip_protocols_are_counted() -> None:
    d = Decoder()
    assert d(eth() / IP(src=C4, dst=S4, proto=2) / b"\x16\0\0\0\xe0\0\0\x01") is None  # IGMP
    assert d(eth() / IP(src=C4, dst=S4, proto=132) / (b"\0" * 12)) is None  # SCTP
    assert d(eth() / IPv6(src=C6, dst=S6, nh=59)) is None  # no next header
    assert d.counters == {"ip-proto-2": 1, "ip-proto-132": 1, "ip-proto-59": 1}
    assert d.errors == {}


# -- IP details ------------------------------------------------------------------------------------


def test_ipv4_options_are_skipped() -> None:
    d = Decoder()
    pkt = IP(src=C4, dst=S4, options=[IPOption_RR(routers=["10.0.0.1", "10.0.0.2"]), IPOption_Timestamp()])
    frame = eth() / pkt / TCP(sport=40000, dport=502, flags="PA", seq=123456, ack=654321) / TCP_PAYLOAD
    assert bytes(frame)[14] & 0x0F > 5
    check_tcp(d(frame))


def test_tcp_options_are_skipped() -> None:
    seg = TCP(sport=40000, dport=502, flags="PA", seq=123456, ack=654321,
              options=[("MSS", 1460), ("SAckOK", b""), ("Timestamp", (1, 2)), ("WScale", 7)])
    check_tcp(Decoder()(eth() / IP(src=C4, dst=S4) / seg / TCP_PAYLOAD))


def test_ethernet_padding_and_trailer_never_reach_the_payload() -> None:
    d = Decoder()
    frame = bytes(eth() / IP(src=C4, dst=S4) / UDP(sport=1, dport=2) / b"ab")
    assert len(frame) < 60
    padded = frame + b"\x00" * (60 - len(frame)) + b"\xde\xad\xbe\xef"  # padding plus an FCS
    assert d(padded) == (17, key4(C4, S4, 1, 2, 17), b"ab", 0, 0, 0)
    tcp = bytes(eth() / IP(src=C4, dst=S4) / TCP(sport=1, dport=2, flags="A"))
    result = d(tcp + b"\x00" * 6 + b"FCS!")
    assert result is not None and result[2] == b""
    v6 = bytes(eth() / IPv6(src=C6, dst=S6) / UDP(sport=1, dport=2) / b"xyz")
    v6_result = d(v6 + b"trailer")
    assert v6_result is not None and v6_result[2] == b"xyz"


def test_udp_length_shorter_than_ip_payload_wins() -> None:
    raw = bytearray(bytes(IP(src=C4, dst=S4) / UDP(sport=1, dport=2) / b"abcdef"))
    raw[24:26] = struct.pack("!H", 8 + 3)  # UDP length: three payload bytes only
    assert Decoder()(bytes(raw), LINKTYPE_RAW) == (17, key4(C4, S4, 1, 2, 17), b"abc", 0, 0, 0)


def test_ipv6_extension_headers_before_tcp() -> None:
    d = Decoder()
    pkt = (IPv6(src=C6, dst=S6) / IPv6ExtHdrHopByHop() / IPv6ExtHdrRouting(addresses=["2001:db8::99"])
           / IPv6ExtHdrDestOpt() / TCP(sport=40000, dport=502, flags="PA", seq=123456, ack=654321)
           / TCP_PAYLOAD)
    check_tcp(d(eth() / pkt), v6=True)
    ah = IPv6(src=C6, dst=S6) / AH(nh=6, payloadlen=4, icv=b"\0" * 12) / TCP(
        sport=40000, dport=502, flags="PA", seq=123456, ack=654321) / TCP_PAYLOAD
    check_tcp(d(eth() / ah), v6=True)
    assert d.errors == {}


def test_ipv6_extension_chain_is_bounded() -> None:
    d = Decoder()
    chain = IPv6(src=C6, dst=S6)
    for _ in range(17):
        chain = chain / IPv6ExtHdrDestOpt()
    assert d(eth() / chain / UDP(sport=1, dport=2)) is None
    assert d.errors == {"ipv6-ext-chain-too-long": 1}


# -- fragments -------------------------------------------------------------------------------------


def test_ipv4_fragments_out_of_order_make_one_tcp_payload() -> None:
    d = Decoder()
    data = bytes(range(256)) * 12
    pkt = IP(src=C4, dst=S4, id=0x4242) / TCP(sport=40000, dport=502, flags="PA", seq=7, ack=9) / data
    frags = fragment(pkt, fragsize=400)
    assert len(frags) >= 8
    results = [d(eth() / f) for f in reversed(frags)]
    assert results[:-1] == [None] * (len(frags) - 1)
    assert results[-1] == (6, key4(C4, S4, 40000, 502, 6), data, 0x18, 7, 9)
    assert d.defrag.counters == {"fragments": len(frags), "datagrams-reassembled": 1}
    assert d.defrag.held == 0 and d.defrag.in_progress == 0 and d.errors == {}


def test_ipv4_fragments_shuffled_make_one_udp_payload_in_a_vlan() -> None:
    d = Decoder()
    data = b"udp-datagram-" * 200
    frags = fragment(IP(src=C4, dst=S4, id=77) / UDP(sport=20000, dport=20000) / data, fragsize=512)
    order = [2, 0, 4, 1, 3] + list(range(5, len(frags)))
    results = [d(eth() / Dot1Q(vlan=9) / frags[i]) for i in order]
    whole = [r for r in results if r is not None]
    assert whole == [(17, key4(C4, S4, 20000, 20000, 17, (9,)), data, 0, 0, 0)]


def test_fragments_in_different_vlans_do_not_mix() -> None:
    d = Decoder()
    frags = fragment(IP(src=C4, dst=S4, id=5) / UDP(sport=1, dport=2) / (b"z" * 1000), fragsize=504)
    assert d(eth() / Dot1Q(vlan=1) / frags[0]) is None
    assert d(eth() / Dot1Q(vlan=2) / frags[1]) is None
    assert d.defrag.in_progress == 2


def test_ipv6_fragment_header() -> None:
    d = Decoder()
    data = b"six" * 700
    pkt = IPv6(src=C6, dst=S6) / IPv6ExtHdrFragment(id=0xABCDEF) / UDP(sport=5000, dport=6000) / data
    frags = fragment6(pkt, 600)
    assert len(frags) >= 4
    results = [d(eth() / f) for f in [frags[-1], *frags[1:-1], frags[0]]]
    assert results[-1] == (17, key4(C6, S6, 5000, 6000, 17), data, 0, 0, 0)
    assert results[:-1] == [None] * (len(frags) - 1)


def test_ipv6_headers_after_the_fragment_header_are_walked() -> None:
    """Destination options in the fragmentable part come out of reassembly before TCP."""
    d = Decoder()
    pkt = (IPv6(src=C6, dst=S6) / IPv6ExtHdrHopByHop() / IPv6ExtHdrFragment(id=3) / IPv6ExtHdrDestOpt()
           / TCP(sport=40000, dport=502, flags="PA", seq=123456, ack=654321) / (TCP_PAYLOAD * 200))
    frags = fragment6(pkt, 800)
    results = [d(eth() / f) for f in frags]
    assert results[-1] == (6, key4(C6, S6, 40000, 502, 6), TCP_PAYLOAD * 200, 0x18, 123456, 654321)
    assert d.counters == {}


def test_ipv6_atomic_fragment_is_decoded_at_once() -> None:
    d = Decoder()
    pkt = IPv6(src=C6, dst=S6) / IPv6ExtHdrFragment(id=9, m=0, offset=0) / UDP(sport=1, dport=2) / b"atomic"
    assert d(eth() / pkt) == (17, key4(C6, S6, 1, 2, 17), b"atomic", 0, 0, 0)


def ipv4_fragment(ident: int, offset: int, more: bool, data: bytes, proto: int = 17) -> bytes:
    """An IPv4 fragment carrying ``data`` at byte ``offset`` (a multiple of 8)."""
    pkt = IP(src=C4, dst=S4, id=ident, proto=proto, flags="MF" if more else 0, frag=offset // 8) / Raw(data)
    return bytes(eth() / pkt)


def test_overlapping_ipv4_fragments_are_counted() -> None:
    d = Decoder()
    udp = bytes(UDP(sport=1, dport=2, len=8 + 24, chksum=0))
    first = udp + b"A" * 8  # bytes 0..16
    overlap = b"B" * 16  # bytes 8..24, overlaps the first fragment by 8 bytes
    last = b"C" * 8  # bytes 24..32
    assert d(ipv4_fragment(1, 0, True, first)) is None
    assert d(ipv4_fragment(1, 8, True, overlap)) is None
    result = d(ipv4_fragment(1, 24, False, last))
    # Where pieces overlap the piece that starts earlier supplies the bytes.
    assert result == (17, key4(C4, S4, 1, 2, 17), b"A" * 8 + b"B" * 8 + b"C" * 8, 0, 0, 0)
    assert d.defrag.counters["overlapping-fragments"] == 1


def test_duplicate_fragment_keeps_the_first_copy() -> None:
    d = Decoder()
    udp = bytes(UDP(sport=1, dport=2, len=8 + 16, chksum=0))
    assert d(ipv4_fragment(2, 0, True, udp + b"first!!!")) is None
    assert d(ipv4_fragment(2, 0, True, udp + b"SECOND!!")) is None
    result = d(ipv4_fragment(2, 16, False, b"tail...."))
    assert result is not None and result[2] == b"first!!!tail...."
    assert d.defrag.counters["overlapping-fragments"] == 1


def test_fragment_caps_through_decode() -> None:
    d = Decoder(Defragmenter(max_datagrams=2, max_bytes=65535, timeout=5.0))
    # Three datagrams in progress with room for two: the oldest is evicted.
    for ident in (1, 2, 3):
        assert d(ipv4_fragment(ident, 0, True, b"x" * 16)) is None
    assert d.defrag.counters["datagrams-evicted"] == 1 and d.defrag.in_progress == 2
    assert d(ipv4_fragment(1, 16, False, b"y" * 8)) is None  # datagram 1 was forgotten
    # Too late: the first piece of datagram 2 timed out, so its last piece cannot complete it.
    assert d(ipv4_fragment(2, 16, False, b"y" * 8), ts=100.0) is None
    assert d.defrag.counters["datagrams-timed-out"] >= 1
    # Beyond 64 KiB.
    assert d(ipv4_fragment(9, 65528, False, b"z" * 16)) is None
    assert d.defrag.counters["fragment-beyond-64k"] == 1


def test_fragment_memory_cap_through_decode() -> None:
    d = Decoder(Defragmenter(max_datagrams=100, max_bytes=70000, timeout=30.0))
    for ident in range(10):
        d(ipv4_fragment(ident, 0, True, b"m" * 8000))
    assert d.defrag.held <= 70000
    assert d.defrag.counters["datagrams-over-memory-cap"] == 2


# -- malformations: always None and one counted reason -----------------------------------------------


def mutate(frame: bytes, offset: int, value: bytes) -> bytes:
    return frame[:offset] + value + frame[offset + len(value):]


ETH_TCP = bytes(eth() / TCP4)
ETH_UDP = bytes(eth() / IP(src=C4, dst=S4) / UDP(sport=1, dport=2) / b"data")
ETH_ICMP = bytes(eth() / IP(src=C4, dst=S4) / ICMP())
ETH_TCP6 = bytes(eth() / TCP6)
ETH_EXT6 = bytes(eth() / IPv6(src=C6, dst=S6) / IPv6ExtHdrDestOpt() / UDP(sport=1, dport=2))
ETH_FRAG6 = bytes(eth() / IPv6(src=C6, dst=S6) / IPv6ExtHdrFragment(m=1) / UDP(sport=1, dport=2) / (b"f" * 8))

MALFORMED = {
    "ethernet-truncated": (LINKTYPE_ETHERNET, ETH_TCP[:13]),
    "vlan-truncated": (LINKTYPE_ETHERNET, bytes(eth() / Dot1Q(vlan=1) / TCP4)[:17]),
    "ipv4-truncated": (LINKTYPE_ETHERNET, ETH_TCP[:33]),
    "ipv4-truncated-by-total-length": (LINKTYPE_ETHERNET, ETH_TCP[:-1]),
    "ipv4-bad-header": (LINKTYPE_ETHERNET, mutate(ETH_TCP, 14, b"\x44")),  # IHL 4
    "ipv4-bad-header-version": (LINKTYPE_ETHERNET, mutate(ETH_TCP, 14, b"\x65")),
    "ipv4-bad-length": (LINKTYPE_ETHERNET, mutate(ETH_TCP, 16, b"\x00\x13")),  # total < header
    "ipv6-truncated": (LINKTYPE_ETHERNET, ETH_TCP6[:53]),
    "ipv6-truncated-by-payload-length": (LINKTYPE_ETHERNET, ETH_TCP6[:-1]),
    "ipv6-bad-version": (LINKTYPE_ETHERNET, mutate(ETH_TCP6, 14, b"\x40")),
    "ipv6-ext-truncated": (LINKTYPE_ETHERNET, mutate(ETH_EXT6, 55, b"\x09")),  # header longer than packet
    "ipv6-ext-truncated-fragment": (LINKTYPE_ETHERNET, mutate(ETH_FRAG6[:58], 18, b"\x00\x04")),
    "tcp-truncated": (LINKTYPE_ETHERNET, mutate(ETH_TCP[:46], 16, b"\x00\x20")),
    "tcp-bad-header-length": (LINKTYPE_ETHERNET, mutate(ETH_TCP, 46, b"\x40")),  # data offset 4
    "tcp-header-longer-than-packet": (LINKTYPE_ETHERNET, mutate(ETH_TCP, 46, b"\xf0")),
    "udp-truncated": (LINKTYPE_ETHERNET, mutate(ETH_UDP[:40], 16, b"\x00\x1a")),
    "udp-bad-length": (LINKTYPE_ETHERNET, mutate(ETH_UDP, 38, b"\x00\x07")),
    "udp-length-beyond-ip": (LINKTYPE_ETHERNET, mutate(ETH_UDP, 38, b"\x00\x40")),
    "icmp-truncated": (LINKTYPE_ETHERNET, mutate(ETH_ICMP[:37], 16, b"\x00\x17")),
    "sll-truncated": (LINKTYPE_LINUX_SLL, bytes(CookedLinux() / TCP4)[:15]),
    "sll2-truncated": (LINKTYPE_LINUX_SLL2, bytes(CookedLinuxV2() / TCP4)[:19]),
}
REASON = {
    "ipv4-truncated-by-total-length": "ipv4-truncated",
    "ipv4-bad-header-version": "ipv4-bad-header",
    "ipv6-truncated-by-payload-length": "ipv6-truncated",
    "ipv6-ext-truncated-fragment": "ipv6-ext-truncated",
    "tcp-header-longer-than-packet": "tcp-bad-header-length",
    "udp-length-beyond-ip": "udp-bad-length",
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_each_malformation_gives_none_and_its_reason(case: str) -> None:
    d = Decoder()
    linktype, frame = MALFORMED[case]
    assert d(frame, linktype) is None
    assert d.errors == {REASON.get(case, case): 1}
    assert d.counters == {} and d.defrag.in_progress == 0


VALID_FRAMES = {
    "eth-tcp": (LINKTYPE_ETHERNET, ETH_TCP),
    "eth-udp": (LINKTYPE_ETHERNET, ETH_UDP),
    "eth-icmp": (LINKTYPE_ETHERNET, ETH_ICMP),
    "qinq-tcp6": (LINKTYPE_ETHERNET, bytes(eth() / Dot1AD(vlan=1) / Dot1Q(vlan=2) / TCP6)),
    "eth-ext6": (LINKTYPE_ETHERNET, ETH_EXT6),
    "eth-frag6": (LINKTYPE_ETHERNET, ETH_FRAG6),
    "eth-ipopts": (LINKTYPE_ETHERNET, bytes(eth() / IP(src=C4, dst=S4, options=[IPOption_RR()]) / UDP())),
    "sll": (LINKTYPE_LINUX_SLL, bytes(CookedLinux() / TCP4)),
    "sll2": (LINKTYPE_LINUX_SLL2, bytes(CookedLinuxV2() / TCP6)),
    "raw": (LINKTYPE_RAW, bytes(TCP4)),
    "null": (LINKTYPE_NULL, struct.pack("<I", 30) + bytes(TCP6)),
    "loop": (LINKTYPE_LOOP, struct.pack(">I", 2) + bytes(TCP4)),
}


@pytest.mark.parametrize("name", sorted(VALID_FRAMES))
def test_truncation_at_every_offset_is_counted_never_raised(name: str) -> None:
    linktype, frame = VALID_FRAMES[name]
    for cut in range(len(frame)):
        d = Decoder()
        result = d(frame[:cut], linktype)
        assert result is None, (name, cut)
        counted = sum(d.errors.values()) + sum(d.counters.values()) + d.defrag.counters.get("fragments", 0)
        assert counted == 1, (name, cut, d.errors, d.counters)


# -- flow keys -------------------------------------------------------------------------------------


@pytest.mark.parametrize("v6", [False, True])
@pytest.mark.parametrize("vlans", [(), (7,), (100, 4095)])
def test_reverse_key_and_split_key_round_trip(v6: bool, vlans: tuple[int, ...]) -> None:
    d = Decoder()
    ip_layer = IPv6 if v6 else IP
    src, dst = (C6, S6) if v6 else (C4, S4)

    def frame(a: str, b: str, sport: int, dport: int) -> bytes:
        tags: ScapyPacket = Ether(src=MAC_A, dst=MAC_B)
        if len(vlans) == 2:
            tags = tags / Dot1AD(vlan=vlans[0]) / Dot1Q(vlan=vlans[1])
        elif vlans:
            tags = tags / Dot1Q(vlan=vlans[0])
        return bytes(tags / ip_layer(src=a, dst=b) / TCP(sport=sport, dport=dport))

    there = d(frame(src, dst, 61000, 20000))
    back = d(frame(dst, src, 20000, 61000))
    assert there is not None and back is not None
    assert reverse_key(there[1]) == back[1] and reverse_key(back[1]) == there[1]
    assert reverse_key(reverse_key(there[1])) == there[1]
    family = "ipv6" if v6 else "ipv4"
    assert split_key(there[1]) == (src, dst, 61000, 20000, 6, vlans, family)
    assert split_key(back[1]) == (dst, src, 20000, 61000, 6, vlans, family)


def test_link_macs() -> None:
    assert link_macs(LINKTYPE_ETHERNET, ETH_TCP) == ("02-00-00-00-00-0A", "02-00-00-00-00-0B")
    assert link_macs(LINKTYPE_RAW, bytes(TCP4)) == (None, None)
    assert link_macs(LINKTYPE_ETHERNET, b"\x00" * 11) == (None, None)


# -- differential: every frame of real captures against tshark ---------------------------------------

TSHARK_FIELDS = ("frame.number", "ip.proto", "ipv6.nxt", "tcp.srcport", "tcp.dstport", "tcp.len",
                 "tcp.seq_raw", "tcp.ack_raw", "tcp.flags", "udp.srcport", "udp.dstport", "udp.length",
                 "icmp.type", "icmpv6.type", "arp.opcode", "vlan.id")

DIFFERENTIAL_CAPTURES = [
    "iti/pcaps/ModbusTCP/Modbus/modbus_test_2.pcap",  # Ethernet, IPv4, TCP
    "icsnpp-s7comm/tests/traces/s7comm_plus.pcap",  # Linux cooked capture
    "icsnpp-opcua-binary/pcaps/open62541_browse_request_with_results.pcap",  # BSD loopback, IPv6
    "icsnpp-enip/tests/traces/set_attribute_single_service_cip.pcapng",  # 802.1Q
    "suricata-verify/tests/dnp3/dnp3-flood/input.pcap",  # raw IPv4
    "iti/pcaps/MELSEC/melsoft_UDP_unclean_1.pcap",  # UDP, ARP, IGMP, ICMPv6 behind hop-by-hop
    "icsnpp-bacnet/testing/traces/bacnet_services.pcap",  # UDP plus non-IP frames
]


def tshark_frames(path: Path) -> dict[int, dict[str, str]]:
    cmd = ["tshark", "-r", str(path), "-n", "-T", "fields", "-E", "occurrence=f"]
    for name in TSHARK_FIELDS:
        cmd += ["-e", name]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    frames = {}
    for line in out.splitlines():
        values = dict(zip(TSHARK_FIELDS, line.split("\t"), strict=True))
        frames[int(values["frame.number"])] = values
    return frames


@pytest.mark.parametrize("rel", DIFFERENTIAL_CAPTURES)
def test_every_frame_agrees_with_tshark(rel: str) -> None:
    path = PCAPS / rel
    expected = tshark_frames(path)
    d = Decoder()
    seen_tcp = seen_udp = arp = 0
    with open_capture(path) as capture:
        for number, (ts, linktype, frame, _iface) in enumerate(capture, 1):
            want = expected[number]
            arp_before = d.counters.get("arp", 0)
            result = d(frame, linktype, ts)
            if want["arp.opcode"]:
                assert result is None and d.counters["arp"] == arp_before + 1, number
                arp += 1
                continue
            if want["tcp.srcport"] and not want["icmp.type"] and not want["icmpv6.type"]:
                assert result is not None, (number, d.errors, d.counters)
                proto, key, payload, flags, seq, ack = result
                assert proto == 6
                assert split_key(key)[2:4] == (int(want["tcp.srcport"]), int(want["tcp.dstport"]))
                assert len(payload) == int(want["tcp.len"]), number
                assert (seq, ack, flags) == (int(want["tcp.seq_raw"]), int(want["tcp.ack_raw"] or 0),
                                             int(want["tcp.flags"], 16) & 0xFF), number
                if want["vlan.id"]:
                    assert split_key(key)[5][0] == int(want["vlan.id"])
                seen_tcp += 1
            elif want["udp.srcport"] and not want["icmp.type"] and not want["icmpv6.type"]:
                assert result is not None, (number, d.errors, d.counters)
                assert result[0] == 17
                assert split_key(result[1])[2:4] == (int(want["udp.srcport"]), int(want["udp.dstport"]))
                assert len(result[2]) == int(want["udp.length"]) - 8, number
                seen_udp += 1
            elif want["icmp.type"] or want["icmpv6.type"]:
                assert result is not None and result[0] in (1, 58), number
                assert result[2][0] == int(want["icmp.type"] or want["icmpv6.type"])
            else:
                assert result is None, number
    assert seen_tcp + seen_udp > 0
    assert d.errors == {}
    assert d.counters.get("arp", 0) == arp
