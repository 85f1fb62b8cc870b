"""Captures the rule fixtures need and the shared captures lack, crafted with scapy at test time.

A fixture source ``crafted:<name>`` names a function registered here with :func:`crafted`; the
fixture runner calls it with a path in a temporary folder and reads the capture it writes through
the real sensor, like any shared capture. Nothing here is ever written into the repository.

Two ways of crafting, both on real TCP (handshake, correct sequence and acknowledgement numbers,
delayed ACKs: :class:`sensor.demo.TcpLink`):

* **from the protocol's specification**: payloads built with :mod:`struct` (MBAP, DNP3 link frames
  with their CRCs, IEC 104 APCI/ASDU, BACnet/IP BVLC/NPDU/APDU, EtherNet/IP encapsulation and CIP);
* **restaged from a shared capture**: :func:`restage` replays the application payloads of every TCP
  flow of a capture in ``/work/shared/pcaps`` between other hosts, at its original pace, optionally
  edited (a PLC stop followed by a program download from one host, a download from the engineering
  workstation, an S7 ``_INSE`` turned into ``_DELE``).

The plant's addresses are those of :mod:`sensor.demo` and ``deploy/placeholders.yml``; the attacker
is ``10.10.9.66``, a host that is in no placeholder list.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable
from pathlib import Path

from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Packet as ScapyPacket
from scapy.packet import Raw
from scapy.utils import PcapReader, wrpcap

from analyzer.detection_report import shared_root
from sensor.demo import (
    BACNET_PORT,
    DNP3_PORT,
    ENIP_PORT,
    IEC104_PORT,
    MODBUS_PORT,
    START,
    Host,
    TcpConnection,
    TcpLink,
    bvlc,
    dnp3_frame,
    enip,
    iec104_asdu,
    write_demo_capture,
)

__all__ = ["CRAFTED", "Craft", "crafted", "host", "restage"]

SECOND, MS = 1_000_000, 1_000
S7_PORT = 102

Writer = Callable[[Path], None]
CRAFTED: dict[str, Writer] = {}
"""Crafted capture name -> function writing it to the path it is given."""


def crafted(func: Writer) -> Writer:
    """Register ``func`` under its own name as the source ``crafted:<name>``."""
    CRAFTED[func.__name__] = func
    return func


def host(ip: str, name: str = "", ttl: int = 64) -> Host:
    """A host of the crafted plant; its MAC is derived from its address (locally administered)."""
    octets = bytes(int(x) for x in ip.split("."))
    return Host(name or ip, "crafted", ip, "02:00:" + ":".join(f"{b:02x}" for b in octets), ttl=ttl)


ATTACKER = host("10.10.9.66", "attacker", ttl=128)
EWS = host("10.10.1.20", "ews", ttl=128)
SCADA = host("10.10.1.30", "scada", ttl=128)
RTAC = host("10.10.3.10", "rtac")
PLC1 = host("10.10.2.11", "plc1")
PLC4 = host("10.10.2.21", "plc4")
PLC5 = host("10.10.2.31", "plc5")
RELAY = host("10.10.3.21", "relay")
RTU = host("10.10.3.31", "rtu")
AHU1 = host("10.10.4.21", "ahu1")
BROADCAST = "10.10.255.255"


class Session:
    """One TCP connection of a :class:`Craft`: handshake at creation, then data both ways."""

    def __init__(self, craft: Craft, client: Host, server: Host, port: int, t_us: int) -> None:
        self.craft = craft
        conn = TcpConnection(client, server, craft.rng.randrange(49152, 65536), port, craft.rng)
        self.link = TcpLink(conn, craft.frames)
        self.t = self.link.handshake(t_us)

    def send(self, payload: bytes, gap_ms: float = 20, from_client: bool = True) -> int:
        """A data segment ``gap_ms`` after the previous one (at least 1 us later)."""
        self.t = self.link.data(self.t + max(1, int(gap_ms * MS)), from_client, payload)
        return self.t

    def reply(self, payload: bytes, gap_ms: float = 4) -> int:
        return self.send(payload, gap_ms, from_client=False)

    def at(self, t_us: int, payload: bytes, from_client: bool) -> int:
        """A data segment at ``t_us`` (kept after the previous segment of this connection)."""
        self.t = self.link.data(max(t_us, self.t + 1), from_client, payload)
        return self.t

    def close(self, gap_ms: float = 50) -> int:
        self.t = self.link.close(self.t + int(gap_ms * MS))
        return self.t


class Craft:
    """Frames of one crafted capture, in any order; :meth:`write` sorts them by time."""

    def __init__(self, name: str) -> None:
        self.rng = random.Random(f"icsmon-crafted:{name}")
        self.frames: list[tuple[int, ScapyPacket]] = []

    def connect(self, client: Host, server: Host, port: int, t_us: int) -> Session:
        return Session(self, client, server, port, t_us)

    def syn(self, t_us: int, client: Host, server: Host, port: int, answer: str = "RA") -> None:
        """A lone SYN (a scan probe) and the server's answer: ``RA`` closed port, ``SA`` open port."""
        sport = self.rng.randrange(49152, 65536)
        seq = self.rng.getrandbits(32)
        ip = IP(src=client.ip, dst=server.ip, ttl=client.ttl)
        self.frames.append((t_us, Ether(src=client.mac, dst=server.mac) / ip / TCP(sport=sport, dport=port,
                                                                                      seq=seq, flags="S")))
        if answer:
            back = IP(src=server.ip, dst=client.ip, ttl=server.ttl)
            flags_ack = (seq + 1) & 0xFFFFFFFF
            tcp = TCP(sport=port, dport=sport, seq=0 if answer == "RA" else self.rng.getrandbits(32), ack=flags_ack,
                      flags=answer)
            self.frames.append((t_us + self.rng.randint(150, 900), Ether(src=server.mac, dst=client.mac) / back / tcp))

    def udp(self, t_us: int, src: Host, dst_ip: str, sport: int, dport: int, payload: bytes) -> None:
        dst_mac = "ff:ff:ff:ff:ff:ff" if dst_ip.endswith(".255") else "02:00:" + ":".join(
            f"{int(x):02x}" for x in dst_ip.split("."))
        packet = Ether(src=src.mac, dst=dst_mac) / IP(src=src.ip, dst=dst_ip, ttl=src.ttl) / UDP(
            sport=sport, dport=dport) / Raw(payload)
        self.frames.append((t_us, packet))

    def write(self, path: Path) -> None:
        start = START.timestamp()
        packets = []
        for t_us, packet in sorted(self.frames, key=lambda f: f[0]):
            packet.time = start + t_us / SECOND
            packets.append(packet)
        wrpcap(str(path), packets)


# -- restaging a shared capture ------------------------------------------------------------------------

KNOWN_PORTS = frozenset({MODBUS_PORT, S7_PORT, ENIP_PORT, DNP3_PORT, IEC104_PORT, BACNET_PORT})


def _tcp_flows(path: Path) -> list[tuple[int, list[tuple[float, bool, bytes]]]]:
    """Per TCP flow to a known port, in order of first payload: (server port, [(time, from client, payload)]).

    Retransmissions (a sequence number already seen in that direction) are left out.
    """
    flows: dict[tuple[str, int, str, int], list[tuple[float, bool, bytes]]] = {}
    seen: set[tuple[tuple[str, int, str, int], bool, int]] = set()
    with PcapReader(str(path)) as reader:
        for packet in reader:
            if IP not in packet or TCP not in packet:
                continue
            ip, tcp = packet[IP], packet[TCP]
            # The IP total length bounds the segment: Ethernet padding of short frames is no payload.
            size = ip.len - ip.ihl * 4 - tcp.dataofs * 4
            payload = bytes(tcp.payload)[:size]
            if size <= 0 or tcp.flags.S:
                continue
            if tcp.dport in KNOWN_PORTS:
                key, from_client = (ip.src, tcp.sport, ip.dst, tcp.dport), True
            elif tcp.sport in KNOWN_PORTS:
                key, from_client = (ip.dst, tcp.dport, ip.src, tcp.sport), False
            else:
                continue
            mark = (key, from_client, tcp.seq)
            if mark in seen:
                continue
            seen.add(mark)
            flows.setdefault(key, []).append((float(packet.time), from_client, payload))
    return [(key[3], segments) for key, segments in flows.items()]


def restage(craft: Craft, shared: str, client: Host, server: Host, t0_us: int,
            edit: Callable[[bytes, bool], bytes] | None = None) -> int:
    """Replay every TCP flow of the shared capture ``shared`` from ``client`` to ``server``, starting at
    ``t0_us`` at the original pace; ``edit(payload, from_client)`` may change payloads. Returns the time
    of the last segment."""
    flows = _tcp_flows(shared_root() / shared)
    if not flows:
        raise ValueError(f"{shared}: no TCP flow to an industrial port")
    origin = min(segments[0][0] for _port, segments in flows)
    last = t0_us
    for port, segments in flows:
        first = t0_us + int((segments[0][0] - origin) * SECOND)
        session = craft.connect(client, server, port, max(0, first - 2 * MS))
        for ts, from_client, payload in segments:
            data = edit(payload, from_client) if edit else payload
            last = max(last, session.at(t0_us + int((ts - origin) * SECOND), data, from_client))
        session.close()
    return last


# -- protocol payloads -----------------------------------------------------------------------------------

def mbap(tid: int, unit: int, pdu: bytes) -> bytes:
    return struct.pack(">HHHB", tid, 0, len(pdu) + 1, unit) + pdu


def dnp3_request(seq: int, function: int, objects: bytes = b"", destination: int = 10, source: int = 1,
                 transport: int = 0) -> bytes:
    """One DNP3 request fragment (FIR, FIN) in one link frame from the master."""
    return dnp3_frame(bytes((0xC0 | transport & 0x3F, 0xC0 | seq & 0x0F, function)) + objects, destination, source,
                      True)


def dnp3_response(seq: int, objects: bytes = b"", destination: int = 1, source: int = 10, transport: int = 0,
                  iin: int = 0) -> bytes:
    return dnp3_frame(bytes((0xC0 | transport & 0x3F, 0xC0 | seq & 0x0F, 0x81)) + struct.pack("<H", iin)
                      + objects, destination, source, False)


def apci_i(ns: int, nr: int, asdu: bytes) -> bytes:
    return struct.pack("<BBHH", 0x68, 4 + len(asdu), ns << 1, nr << 1) + asdu


def apci_u(code: int) -> bytes:
    return bytes((0x68, 4, code, 0, 0, 0))


STARTDT_ACT, STARTDT_CON, STOPDT_ACT, STOPDT_CON = 0x07, 0x0B, 0x13, 0x23


def bacnet_confirmed(invoke: int, service: int, request: bytes) -> bytes:
    """A confirmed request (max 1476 octets, no segmentation) in an Original-Unicast-NPDU expecting a reply."""
    return bvlc(0x0A, bytes((0x01, 0x04)), bytes((0x00, 0x05, invoke, service)) + request)


def bacnet_simple_ack(invoke: int, service: int) -> bytes:
    return bvlc(0x0A, bytes((0x01, 0x00)), bytes((0x20, invoke, service)))


def bacnet_object(object_type: int, instance: int) -> bytes:
    return (object_type << 22 | instance).to_bytes(4, "big")


def enip_rr(session: int, context: int, cip: bytes) -> bytes:
    """SendRRData with one unconnected CIP message (null address item, unconnected data item)."""
    data = struct.pack("<IHHHHHH", 0, 10, 2, 0, 0, 0xB2, len(cip)) + cip
    return enip(0x6F, session, context.to_bytes(8, "little"), data)


def enip_list_identity(context: int) -> bytes:
    return enip(0x63, 0, context.to_bytes(8, "little"))


def _seconds(s: float) -> int:
    return int(s * SECOND)


# -- the captures ----------------------------------------------------------------------------------------

@crafted
def demo_plant(path: Path) -> None:
    """The demo plant (``icsmon demo``): normal operation with every placeholder list honoured."""
    write_demo_capture(path)


@crafted
def s7_download_from_ews(path: Path) -> None:
    """STEP 7's program download (shared step7_s300_download) from the engineering workstation."""
    craft = Craft("s7_download_from_ews")
    restage(craft, "iti/pcaps/s7/step7_s300_download.pcapng", EWS, PLC4, _seconds(1))
    craft.write(path)


@crafted
def s7_stop_then_download(path: Path) -> None:
    """One host stops the S7-300 (snap7) and 40 s later downloads a program to it (STEP 7)."""
    craft = Craft("s7_stop_then_download")
    end = restage(craft, "iti/pcaps/s7/snap7_s300_stop.pcapng", ATTACKER, PLC4, _seconds(1))
    restage(craft, "iti/pcaps/s7/step7_s300_download.pcapng", ATTACKER, PLC4, end + _seconds(40))
    craft.write(path)


@crafted
def s7_download_then_stop(path: Path) -> None:
    """The same two operations in the other order: a download, then a stop (no stop-then-download)."""
    craft = Craft("s7_download_then_stop")
    end = restage(craft, "iti/pcaps/s7/step7_s300_download.pcapng", ATTACKER, PLC4, _seconds(1))
    restage(craft, "iti/pcaps/s7/snap7_s300_stop.pcapng", ATTACKER, PLC4, end + _seconds(40))
    craft.write(path)


@crafted
def s7_block_delete(path: Path) -> None:
    """The shared DB1 download with its activating PI service ``_INSE`` replaced by ``_DELE`` (same length):
    a PLC control job that deletes DB1."""
    craft = Craft("s7_block_delete")

    def edit(payload: bytes, from_client: bool) -> bytes:
        return payload.replace(b"_INSE", b"_DELE") if from_client else payload

    restage(craft, "iti/pcaps/s7/s7comm_downloading_block_db1.pcap", ATTACKER, PLC4, _seconds(1), edit)
    craft.write(path)


@crafted
def modbus_umas_from_ews(path: Path) -> None:
    """The shared Schneider UMAS (function 90) session, from the engineering workstation."""
    craft = Craft("modbus_umas_from_ews")
    restage(craft, "iti/pcaps/modicon/modicon_test.pcap", EWS, PLC1, _seconds(1))
    craft.write(path)


@crafted
def modbus_unit_id_sweep(path: Path) -> None:
    """A scanner asks a Modbus gateway for holding register 0 behind unit ids 1-30, one every 300 ms;
    units that do not exist answer with exception 11 (gateway target device failed to respond)."""
    craft = Craft("modbus_unit_id_sweep")
    session = craft.connect(ATTACKER, PLC1, MODBUS_PORT, _seconds(1))
    for unit in range(1, 31):
        session.send(mbap(unit, unit, bytes((3, 0, 0, 0, 1))), gap_ms=300)
        answer = bytes((3, 2, 0, 42)) if unit in (1, 2) else bytes((0x83, 11))
        session.reply(mbap(unit, unit, answer), gap_ms=6)
    session.close()
    craft.write(path)


@crafted
def modbus_identity_sweep(path: Path) -> None:
    """Read Device Identification (43/14, basic) of twelve addresses in turn, one connection each."""
    craft = Craft("modbus_identity_sweep")
    t = _seconds(1)
    for last in range(1, 13):
        target = host(f"10.10.2.{last}")
        session = craft.connect(ATTACKER, target, MODBUS_PORT, t)
        session.send(mbap(1, 255, bytes((0x2B, 0x0E, 0x01, 0x00))), gap_ms=2)
        objects = b"".join(bytes((i, len(v))) + v for i, v in enumerate((b"Schneider Electric", b"BMX P34 2020",
                                                                          b"v3.20")))
        session.reply(mbap(1, 255, bytes((0x2B, 0x0E, 0x01, 0x01, 0x00, 0x00, 3)) + objects), gap_ms=5)
        t = session.close(gap_ms=20) + 400 * MS
    craft.write(path)


@crafted
def modbus_malformed_burst(path: Path) -> None:
    """A fuzzer opens eight connections to a PLC; on each, after one good read, it sends an MBAP header whose
    protocol id is not 0 -- framing the dissector refuses (a decode error per connection)."""
    craft = Craft("modbus_malformed_burst")
    t = _seconds(1)
    for n in range(8):
        session = craft.connect(ATTACKER, PLC1, MODBUS_PORT, t)
        session.send(mbap(1, 1, bytes((3, 0, 0, 0, 1))), gap_ms=2)
        session.reply(mbap(1, 1, bytes((3, 2, 0, 42))), gap_ms=5)
        session.send(struct.pack(">HHHB", 2, 0x1337 + n, 6, 1) + bytes((3, 0, 0, 0, 1)), gap_ms=20)
        t = session.close(gap_ms=30) + 500 * MS
    craft.write(path)


@crafted
def flow_syn_scan(path: Path) -> None:
    """A SYN scan of Modbus/TCP over 30 addresses of the PLC network, 100 ms apart; two answer."""
    craft = Craft("flow_syn_scan")
    for last in range(1, 31):
        craft.syn(_seconds(1) + last * 100 * MS, ATTACKER, host(f"10.10.2.{last}"), MODBUS_PORT,
                  "SA" if last in (11, 12) else "RA")
    craft.write(path)


@crafted
def flow_service_sweep(path: Path) -> None:
    """One address probed on the six industrial ports (and two others), a quarter of a second apart."""
    craft = Craft("flow_service_sweep")
    for n, port in enumerate((21, 80, MODBUS_PORT, S7_PORT, ENIP_PORT, DNP3_PORT, IEC104_PORT, 20547)):
        craft.syn(_seconds(1) + n * 250 * MS, ATTACKER, PLC4, port, "SA" if port == S7_PORT else "RA")
    craft.write(path)


@crafted
def flow_syn_flood(path: Path) -> None:
    """300 SYNs to one PLC's Modbus port within 1.5 s, from changing source ports, none completed."""
    craft = Craft("flow_syn_flood")
    for n in range(300):
        craft.syn(_seconds(1) + n * 5 * MS, ATTACKER, PLC1, MODBUS_PORT, "")
    craft.write(path)


@crafted
def dnp3_firmware_update(path: Path) -> None:
    """The shared DNP3 file write (``./helloworld.txt`` to the outstation), then a cold restart from the same
    master 30 s later: a file transfer activated by a restart, the way firmware and configuration
    images are installed."""
    craft = Craft("dnp3_firmware_update")
    master, outstation = host("192.168.1.2"), host("192.168.1.1")
    end = restage(craft, "iti/pcaps/dnp3/file_write.pcap", master, outstation, _seconds(1))
    session = craft.connect(master, outstation, DNP3_PORT, end + _seconds(30))
    session.send(dnp3_request(3, 13, destination=1024, source=1, transport=5))  # cold restart
    session.reply(dnp3_response(3, bytes((52, 2, 0x07, 1)) + struct.pack("<H", 5000), destination=1,
                                source=1024, transport=9), gap_ms=12)  # g52v2 time delay fine: 5 s
    session.close()
    craft.write(path)


@crafted
def dnp3_address_scan(path: Path) -> None:
    """A class 0 read to link addresses 1-20 of one outstation, one every 200 ms, none answered but one."""
    craft = Craft("dnp3_address_scan")
    session = craft.connect(ATTACKER, RELAY, DNP3_PORT, _seconds(1))
    for n, address in enumerate(range(1, 21)):
        session.send(dnp3_request(n, 1, bytes((60, 1, 0x06)), destination=address, source=3, transport=n), 200)
        if address == 10:
            session.reply(dnp3_response(n, destination=3, source=10, transport=0), gap_ms=8)
    session.close()
    craft.write(path)


@crafted
def enip_cip_reset(path: Path) -> None:
    """An EtherNet/IP session that sends CIP Reset (service 0x05, type 0: power cycle) to the Identity
    object of a CompactLogix, which accepts it."""
    craft = Craft("enip_cip_reset")
    session = craft.connect(ATTACKER, PLC5, ENIP_PORT, _seconds(1))
    session.send(enip(0x65, 0, (1).to_bytes(8, "little"), struct.pack("<HH", 1, 0)))
    handle = 0x1A2B3C01
    session.reply(enip(0x65, handle, (1).to_bytes(8, "little"), struct.pack("<HH", 1, 0)))
    reset = bytes((0x05, 2, 0x20, 0x01, 0x24, 0x01, 0x00))  # Reset, path class 1 instance 1, type 0
    session.send(enip_rr(handle, 2, reset), gap_ms=30)
    session.reply(enip_rr(handle, 2, bytes((0x85, 0, 0, 0))), gap_ms=6)  # reply: general status 0
    session.close()
    craft.write(path)


@crafted
def enip_list_identity_broadcast(path: Path) -> None:
    """A ListIdentity broadcast on UDP 44818 from a host that is not an engineering workstation."""
    craft = Craft("enip_list_identity_broadcast")
    craft.udp(_seconds(1), ATTACKER, BROADCAST, 50123, ENIP_PORT, enip_list_identity(0x77))
    craft.write(path)


@crafted
def enip_identity_sweep(path: Path) -> None:
    """Unicast ListIdentity requests (UDP) to twelve addresses of the PLC network, 150 ms apart."""
    craft = Craft("enip_identity_sweep")
    for last in range(20, 32):
        craft.udp(_seconds(1) + last * 150 * MS, ATTACKER, f"10.10.2.{last}", 50124, ENIP_PORT,
                  enip_list_identity(last))
    craft.write(path)


def _iec104_session(craft: Craft, client: Host, t_us: int) -> Session:
    session = craft.connect(client, RTU, IEC104_PORT, t_us)
    session.send(apci_u(STARTDT_ACT))
    session.reply(apci_u(STARTDT_CON))
    return session


@crafted
def iec104_reset_process(path: Path) -> None:
    """The SCADA front-end sends C_RP_NA_1 (reset process command, QRP 1: general reset) to the RTU."""
    craft = Craft("iec104_reset_process")
    session = _iec104_session(craft, SCADA, _seconds(1))
    session.send(apci_i(0, 0, iec104_asdu(105, 6, [(0, bytes((1,)))])), gap_ms=100)
    session.reply(apci_i(0, 1, iec104_asdu(105, 7, [(0, bytes((1,)))])), gap_ms=8)
    session.close()
    craft.write(path)


@crafted
def iec104_stopdt(path: Path) -> None:
    """A station opens data transfer, then stops it (STOPDT act/con) after a few seconds."""
    craft = Craft("iec104_stopdt")
    session = _iec104_session(craft, ATTACKER, _seconds(1))
    session.send(apci_u(STOPDT_ACT), gap_ms=4000)
    session.reply(apci_u(STOPDT_CON))
    session.close()
    craft.write(path)


@crafted
def iec104_parameter_change(path: Path) -> None:
    """The SCADA front-end changes a measured-value threshold (P_ME_NC_1, short float, KPA 1 threshold)."""
    craft = Craft("iec104_parameter_change")
    session = _iec104_session(craft, SCADA, _seconds(1))
    element = struct.pack("<fB", 57.5, 1)
    session.send(apci_i(0, 0, iec104_asdu(112, 6, [(2001, element)])), gap_ms=200)
    session.reply(apci_i(0, 1, iec104_asdu(112, 7, [(2001, element)])), gap_ms=8)
    session.close()
    craft.write(path)


@crafted
def iec104_command_burst(path: Path) -> None:
    """Fifteen single commands (C_SC_NA_1, execute) toggling one breaker within 4.5 s."""
    craft = Craft("iec104_command_burst")
    session = _iec104_session(craft, ATTACKER, _seconds(1))
    for n in range(15):
        sco = bytes((n % 2,))  # execute, no qualifier, off/on
        session.send(apci_i(n, n, iec104_asdu(45, 6, [(3001, sco)])), gap_ms=300)
        session.reply(apci_i(n, n + 1, iec104_asdu(45, 7, [(3001, sco)])), gap_ms=5)
    session.close()
    craft.write(path)


def _bacnet_exchange(craft: Craft, t_us: int, src: Host, dst: Host, invoke: int, service: int,
                     request: bytes) -> None:
    craft.udp(t_us, src, dst.ip, BACNET_PORT, BACNET_PORT, bacnet_confirmed(invoke, service, request))
    craft.udp(t_us + 9 * MS, dst, src.ip, BACNET_PORT, BACNET_PORT, bacnet_simple_ack(invoke, service))


@crafted
def bacnet_dcc_disable_initiation(path: Path) -> None:
    """DeviceCommunicationControl disable-initiation for 60 minutes: the controller stops sending (its
    alarms and COV notifications included) but still answers."""
    craft = Craft("bacnet_dcc_disable_initiation")
    _bacnet_exchange(craft, _seconds(1), ATTACKER, AHU1, 1, 17, bytes((0x09, 60, 0x19, 2)))
    craft.write(path)


@crafted
def bacnet_dcc_enable(path: Path) -> None:
    """DeviceCommunicationControl enable: communication restored (the end of a maintenance window)."""
    craft = Craft("bacnet_dcc_enable")
    _bacnet_exchange(craft, _seconds(1), ATTACKER, AHU1, 2, 17, bytes((0x19, 0)))
    craft.write(path)


@crafted
def bacnet_who_is_flood(path: Path) -> None:
    """Forty global Who-Is broadcasts within 20 s from one host."""
    craft = Craft("bacnet_who_is_flood")
    who_is = bvlc(0x0B, bytes((0x01, 0x20, 0xFF, 0xFF, 0x00, 0xFF)), bytes((0x10, 0x08)))
    for n in range(40):
        craft.udp(_seconds(1) + n * 500 * MS, ATTACKER, BROADCAST, BACNET_PORT, BACNET_PORT, who_is)
    craft.write(path)


@crafted
def bacnet_alarm_settings_write(path: Path) -> None:
    """WriteProperty of analog-input 1: event-enable cleared (no to-offnormal, to-fault, to-normal
    notifications), then its high-limit raised to 90.0."""
    craft = Craft("bacnet_alarm_settings_write")
    ai1 = b"\x0c" + bacnet_object(0, 1)
    event_enable = ai1 + bytes((0x19, 35)) + b"\x3e" + bytes((0x82, 0x05, 0x00)) + b"\x3f"
    high_limit = ai1 + bytes((0x19, 45)) + b"\x3e" + b"\x44" + struct.pack(">f", 90.0) + b"\x3f"
    _bacnet_exchange(craft, _seconds(1), ATTACKER, AHU1, 3, 15, event_enable)
    _bacnet_exchange(craft, _seconds(2), ATTACKER, AHU1, 4, 15, high_limit)
    craft.write(path)
