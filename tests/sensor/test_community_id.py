"""Community ID v1 against Wireshark's implementation (``tshark --enable-protocol communityid``):
every TCP/UDP flow of shared IPv4 and IPv6 captures and of crafted traffic (VLANs, fragments,
equal addresses), and the ICMP type/code mapping for both directions of every message type."""

from __future__ import annotations

import logging
import subprocess
from ipaddress import ip_address
from pathlib import Path
from typing import Any

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP, fragment
from scapy.layers.inet6 import (
    ICMPv6DestUnreach,
    ICMPv6EchoReply,
    ICMPv6EchoRequest,
    ICMPv6HAADReply,
    ICMPv6HAADRequest,
    ICMPv6MLDone,
    ICMPv6MLQuery,
    ICMPv6MLReport,
    ICMPv6MLReport2,
    ICMPv6MPAdv,
    ICMPv6MPSol,
    ICMPv6ND_NA,
    ICMPv6ND_NS,
    ICMPv6ND_RA,
    ICMPv6ND_Redirect,
    ICMPv6ND_RS,
    ICMPv6NIQueryNOOP,
    ICMPv6NIReplyNOOP,
    ICMPv6PacketTooBig,
    ICMPv6ParamProblem,
    ICMPv6TimeExceeded,
    IPv6,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    fragment6,
)
from scapy.layers.l2 import Dot1AD, Dot1Q, Ether
from scapy.utils import wrpcap

from sensor.capture.pcapfile import open_capture
from sensor.community_id import community_id
from sensor.dissect import Event
from sensor.pipeline import Sensor
from sensor.settings import SensorSettings

logging.getLogger("scapy.runtime").setLevel(logging.ERROR)

# Explicit addresses: a bare Ether() makes scapy look the destination MAC up on the network.
L2 = {"src": "02:00:00:00:00:01", "dst": "02:00:00:00:00:02"}

REPO = Path(__file__).resolve().parents[2]
PCAPS = REPO.parent / "shared" / "pcaps"

SHARED_CAPTURES = [
    "iti/pcaps/ModbusTCP/Modbus/modbus_test_2.pcap",  # IPv4 TCP (the reference case)
    "icsnpp-opcua-binary/pcaps/open62541_browse_request_with_results.pcap",  # IPv6 TCP, BSD loopback
    "icsnpp-opcua-binary/pcaps/open62541_client-server_encrypted.pcap",  # IPv6 TCP
    "iti/pcaps/MELSEC/melsoft_UDP_unclean_1.pcap",  # IPv4 and IPv6 UDP, many flows
    "iti/pcaps/s7/S7Comm/wrapup.pcapng",  # IPv4 TCP and UDP, IPv6 UDP
    "icsnpp-s7comm/tests/traces/s7comm_plus.pcap",  # Linux cooked capture
    "icsnpp-enip/tests/traces/set_attribute_single_service_cip.pcapng",  # 802.1Q
    "icsnpp-bacnet/testing/traces/bacnet_services.pcap",  # UDP
    "suricata-verify/tests/dnp3/dnp3-flood/input.pcap",  # raw IPv4
]

FIELDS = ("communityid", "ip.src", "ip.dst", "ipv6.src", "ipv6.dst", "tcp.srcport", "tcp.dstport",
          "udp.srcport", "udp.dstport")

FlowTuple = tuple[str, int, str, int, str]


def tshark_ids(path: Path, seed: int = 0) -> list[tuple[FlowTuple, str]]:
    """(5-tuple as sent, Community ID) of every TCP/UDP packet, as Wireshark computes them."""
    cmd = ["tshark", "-r", str(path), "-n", "--enable-protocol", "communityid",
           "-o", f"communityid.seed:{seed}",
           "-Y", "(tcp or udp) and not icmp and not icmpv6", "-T", "fields", "-E", "occurrence=f"]
    for name in FIELDS:
        cmd += ["-e", name]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    rows = []
    for line in out.splitlines():
        f = dict(zip(FIELDS, line.split("\t"), strict=True))
        transport = "tcp" if f["tcp.srcport"] else "udp"
        src, dst = f["ip.src"] or f["ipv6.src"], f["ip.dst"] or f["ipv6.dst"]
        sport, dport = f[f"{transport}.srcport"], f[f"{transport}.dstport"]
        assert f["communityid"].startswith("1:"), line
        rows.append(((src, int(sport), dst, int(dport), transport), f["communityid"]))
    return rows


def sensor_ids(path: Path) -> tuple[dict[FlowTuple, str], list[Event]]:
    """Community IDs of our connection events, under both directions of their 5-tuple."""
    events: list[Event] = []
    sensor = Sensor(SensorSettings(sensor_id="cid"), sink=events.append, dissectors=[])
    with open_capture(path) as capture:
        sensor.run(capture)
    sensor.finish()
    ids: dict[FlowTuple, str] = {}
    for e in events:
        if e["event.dataset"] != "icsmon.conn" or e["network.transport"] not in ("tcp", "udp"):
            continue
        src, dst = str(ip_address(e["source.ip"])), str(ip_address(e["destination.ip"]))
        t = e["network.transport"]
        for key in ((src, e["source.port"], dst, e["destination.port"], t),
                    (dst, e["destination.port"], src, e["source.port"], t)):
            assert ids.setdefault(key, e["network.community_id"]) == e["network.community_id"]
    return ids, events


def compare(path: Path) -> int:
    expected = tshark_ids(path)
    ours, _ = sensor_ids(path)
    assert expected
    for (src, sport, dst, dport, t), cid in expected:
        key = (str(ip_address(src)), sport, str(ip_address(dst)), dport, t)
        assert ours.get(key) == cid, (key, cid)
    # And no flow of ours that Wireshark does not know.
    assert set(ours.values()) == {cid for _, cid in expected}
    return len({cid for _, cid in expected})


@pytest.mark.parametrize("rel", SHARED_CAPTURES)
def test_every_tcp_udp_flow_of_shared_captures_matches_wireshark(rel: str) -> None:
    assert compare(PCAPS / rel) >= 1


def test_shared_captures_include_ipv6_flows() -> None:
    ours, _ = sensor_ids(PCAPS / SHARED_CAPTURES[1])
    assert any(":" in key[0] for key in ours)


def test_crafted_ipv6_vlan_and_fragmented_flows_match_wireshark(tmp_path: Path) -> None:
    def eth() -> Ether:
        return Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")

    frames: list[Any] = []
    # IPv6 TCP both ways, addresses ordered either way round, with QinQ tags.
    for a, b, sport, dport in (("2001:db8::1", "2001:db8::2", 40000, 502), ("fe80::9", "fe80::1", 502, 40000),
                               ("2001:db8:ffff::1", "2001:db8::", 1, 65535)):
        frames.append(eth() / Dot1AD(vlan=10) / Dot1Q(vlan=20) / IPv6(src=a, dst=b)
                      / TCP(sport=sport, dport=dport, flags="S"))
        frames.append(eth() / IPv6(src=b, dst=a) / TCP(sport=dport, dport=sport, flags="SA"))
    # IPv6 UDP behind a hop-by-hop header, and fragmented.
    frames.append(eth() / IPv6(src="2001:db8::5", dst="ff02::1:3") / IPv6ExtHdrHopByHop()
                  / UDP(sport=5355, dport=5355))
    big6 = IPv6(src="2001:db8::7", dst="2001:db8::8") / IPv6ExtHdrFragment(id=1) / UDP(sport=3000, dport=4000)
    frames += [eth() / f for f in fragment6(big6 / (b"u" * 3000), 1280)]
    # IPv4: fragmented UDP, TCP in a VLAN, equal addresses (the ports decide the order).
    frames += [eth() / f for f in fragment(IP(src="10.9.0.2", dst="10.9.0.1") / UDP(sport=47808, dport=47808)
                                           / (b"b" * 3000), 1000)]
    frames.append(eth() / Dot1Q(vlan=7) / IP(src="10.9.0.1", dst="10.9.0.2") / TCP(sport=20000, dport=2404))
    frames.append(eth() / IP(src="127.0.0.1", dst="127.0.0.1") / UDP(sport=5000, dport=4000))
    frames.append(eth() / IP(src="127.0.0.1", dst="127.0.0.1") / TCP(sport=1000, dport=3000))
    path = tmp_path / "crafted.pcap"
    wrpcap(str(path), frames)
    assert compare(path) == 9


def test_seed_changes_the_id_like_wireshark(tmp_path: Path) -> None:
    path = tmp_path / "seed.pcap"
    wrpcap(str(path), [Ether(**L2) / IP(src="10.0.0.2", dst="10.0.0.1") / TCP(sport=502, dport=40000)])
    ((_, with_seed),) = tshark_ids(path, seed=1234)
    ((_, without),) = tshark_ids(path)
    src, dst = ip_address("10.0.0.2").packed, ip_address("10.0.0.1").packed
    assert community_id(src, dst, 6, 502, 40000, seed=1234) == with_seed
    assert community_id(src, dst, 6, 502, 40000) == without != with_seed


# -- ICMP: type/code as ports, counterpart types, one-way messages -------------------------------------

ICMP4_TYPES = [(0, 0), (8, 0), (13, 0), (14, 0), (15, 0), (16, 0), (17, 0), (18, 0), (9, 0), (10, 0),
               (3, 3), (3, 1), (5, 1), (11, 0), (12, 0), (4, 0), (30, 0), (40, 0)]
ICMP6_LAYERS = [ICMPv6EchoRequest(), ICMPv6EchoReply(), ICMPv6ND_RS(), ICMPv6ND_RA(),
                ICMPv6ND_NS(tgt="fe80::1"), ICMPv6ND_NA(tgt="fe80::1"), ICMPv6ND_Redirect(), ICMPv6MLQuery(),
                ICMPv6MLReport(), ICMPv6MLDone(), ICMPv6MLReport2(), ICMPv6NIQueryNOOP(), ICMPv6NIReplyNOOP(),
                ICMPv6HAADRequest(), ICMPv6HAADReply(), ICMPv6MPSol(), ICMPv6MPAdv(),
                ICMPv6DestUnreach(code=4) / IPv6(src="fe80::1", dst="fe80::9") / UDP(sport=1, dport=2),
                ICMPv6PacketTooBig() / IPv6(src="fe80::1", dst="fe80::9") / UDP(sport=1, dport=2),
                ICMPv6TimeExceeded() / IPv6(src="fe80::1", dst="fe80::9") / UDP(sport=1, dport=2),
                ICMPv6ParamProblem() / IPv6(src="fe80::1", dst="fe80::9") / UDP(sport=1, dport=2)]


def test_icmp_ids_match_wireshark_in_both_directions(tmp_path: Path) -> None:
    frames: list[Any] = []
    for a, b in (("10.0.0.9", "10.0.0.1"), ("10.0.0.1", "10.0.0.9")):
        for icmp_type, code in ICMP4_TYPES:
            frames.append(Ether(**L2) / IP(src=a, dst=b) / ICMP(type=icmp_type, code=code) / (b"\0" * 40))
    for a, b in (("fe80::9", "fe80::1"), ("fe80::1", "fe80::9")):
        frames += [Ether(**L2) / IPv6(src=a, dst=b) / layer for layer in ICMP6_LAYERS]
    path = tmp_path / "icmp.pcap"
    wrpcap(str(path), frames)
    out = subprocess.run(["tshark", "-r", str(path), "-n", "--enable-protocol", "communityid", "-T", "fields",
                          "-E", "occurrence=f", "-e", "communityid"],
                         capture_output=True, text=True, check=True).stdout.splitlines()
    assert len(out) == len(frames)
    compared = 0
    for frame, expected in zip(frames, out, strict=True):
        ip_layer = frame[IP] if IP in frame else frame[IPv6]
        raw = bytes(ip_layer.payload)
        proto = 1 if IP in frame else 58
        src, dst = ip_address(ip_layer.src).packed, ip_address(ip_layer.dst).packed
        assert expected.startswith("1:"), frame.summary()
        ours = community_id(src, dst, proto, raw[0], raw[1])
        assert ours == expected, (proto, raw[0], raw[1], ip_layer.src)
        compared += 1
    assert compared == 2 * (len(ICMP4_TYPES) + len(ICMP6_LAYERS))


def test_request_and_reply_share_an_id_one_way_messages_do_not() -> None:
    a, b = ip_address("10.0.0.9").packed, ip_address("10.0.0.1").packed
    assert community_id(a, b, 1, 8, 0) == community_id(b, a, 1, 0, 0)  # echo request / reply
    # Destination unreachable is one-way: hashed as sent, so each direction is its own flow.
    assert community_id(a, b, 1, 3, 1) != community_id(b, a, 1, 3, 1)
