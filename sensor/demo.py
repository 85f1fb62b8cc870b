"""A small synthetic plant capture: the input of ``icsmon demo`` and of tests.

The plant is one 10.10.0.0/16 Ethernet network seen from a trunk mirror port;
devices outside the default VLAN show up with their 802.1Q tag on every frame
to or from them. It speaks the six protocols the sensor dissects.

Modbus/TCP (port 502). An HMI (10.10.1.10) and an engineering workstation
(10.10.1.20) talk to three PLCs (10.10.2.11-13); PLC3 sits in VLAN 20:

* the HMI ARPs for each PLC, opens one TCP connection to each (three-way
  handshake with real options, correct sequence and acknowledgement numbers)
  and polls every second: read holding registers (FC 3) each cycle, read
  input registers (FC 4) every 2nd cycle, read coils (FC 1) every 5th. To
  PLC1 it pipelines FC 3 and FC 1 in one TCP segment, as busy HMIs do. Its
  connections are still open when the capture ends;
* the engineering workstation connects to PLC2 a quarter into the capture,
  reads the device identification (FC 43/14), reads registers, writes the
  setpoint register (FC 6), reads it back, asks for an address the PLC does
  not have (exception 2, illegal data address) and closes with FIN/FIN; later
  it connects to PLC3, reads, and aborts with a RST;
* PLC1 refreshes its ARP entry for the HMI halfway through.

S7comm (ISO-on-TCP, port 102). An S7-300 (PLC4, 10.10.2.21, CPU 315-2 PN/DP,
rack 0 slot 2). The HMI connects (COTP CR/CC, called TSAP 0x0202: OP
connection to rack 0 slot 2), sets up communication (PDU size 240) and every
second reads DB1.DBW0 (tank level, INT), DB1.DBD4 (flow, REAL), M10.0 (pump
running) and DB1.DBW8 (level setpoint) in one read-var job. The engineering
workstation connects at 40 % (TSAP 0x0102: PG), reads SZL 0x0011 (module
identification) through a userdata request, 6 s later (a tenth of the
capture) writes a new setpoint to DB1.DBW8, reads it back and closes; the
HMI's reads show the new value.

EtherNet/IP and CIP (port 44818). A CompactLogix (PLC5, 10.10.2.31). At 15 %
the engineering workstation broadcasts a ListIdentity (UDP) and the PLC
answers (vendor 1 Rockwell Automation, device type 14, product name, serial);
1.5 s later it opens a TCP session: RegisterSession, a Get_Attribute_Single
of the Identity object's product name, three unconnected Read_Tag requests of
``Tank_Level`` (a REAL) one second apart, each in a SendRRData, then
UnRegisterSession and FIN/FIN.

DNP3 (TCP 20000), substation VLAN 30. A substation automation controller
(10.10.3.10, DNP3 master, link address 1) polls a feeder protection relay
(10.10.3.21, outstation, link address 10): every frame carries CRC-16/DNP per
block. At start an integrity poll (read class 1, 2, 3 and 0) answered with
g1v2 binary inputs, g30v1 32-bit and g30v5 float analog inputs; the relay
reports a restart and that it needs time, so the master clears the restart
bit (write g80v1), synchronises time (record current time, then write the
last recorded time g50v3, the LAN procedure of IEEE 1815) and enables
unsolicited reporting. Then a class 1-3 event poll every 10 s (every third,
from the second on, an integrity poll), an unsolicited response with g32v3
analog events that the master confirms, a select and operate of a CROB
(g12v1, close the capacitor bank breaker, binary input 0) and the unsolicited
g2v2 event of the breaker closing.

IEC 60870-5-104 (TCP 2404). A SCADA front-end (10.10.1.30) and a substation
RTU (10.10.3.31, VLAN 30, common address 47): STARTDT act/con, general
interrogation (C_IC_NA_1 act, actcon, M_SP_NA_1 and M_ME_NC_1 with cause 20,
actterm), clock synchronisation (C_CS_NA_1), spontaneous M_ME_TF_1 with
CP56Time2a every few seconds, S-frames acknowledging (within t2 or after w =
8 I-frames), a quiet spell of more than t3 = 20 s that makes the front-end
send TESTFR act (answered con), and a select-before-operate single command
(C_SC_NA_1 select, execute, actcon, actterm) followed by the breaker's new
position (M_SP_NA_1, cause 11).

BACnet/IP (UDP 47808), building VLAN 40. A BMS workstation (10.10.4.10)
broadcasts Who-Is, two Delta Controls air-handler controllers (10.10.4.21,
.22; devices 1021 and 1022) broadcast I-Am; the workstation then polls the
present-value of their analog inputs every 10 s (ReadProperty and
complex-ACK), reads several properties of two objects with one
ReadPropertyMultiple, writes a zone setpoint (WriteProperty, priority 8,
answered by a simple-ACK) and reads it back.

Values come from small simulated devices: :class:`PlcModel` for the PLCs (a
tank level that random-walks, a temperature drifting on a slow sine, a pump
speed with a little jitter, a setpoint that changes when the engineering
workstation writes it) and :class:`Telemetry` for the relay, the RTU and the
air handlers (bounded random walks sampled each second, plus writes).

Extending it (an attack scenario, another protocol...): a *conversation* is a
callable ``(plant) -> Iterator[Frame]``. Calling it does the setup
(registering flows, scheduling writes) before any frame exists; the iterator
then yields ``(microseconds since the start, scapy packet)`` in time order.
The writer merges all conversations by time, numbers IP ids per sending host
in capture order and writes a classic pcap. Pass your own list as
``conversations``. :class:`TcpLink` gives a new conversation realistic
acknowledgements (piggybacked, else delayed, never duplicated) for free.

Determinism: every random choice comes from ``random.Random`` seeded with the
seed and the conversation's name (string seeds hash with SHA-512, not with
Python's per-process hash), timestamps are integer microseconds from
2026-01-05T08:00:00Z, and the pcap is written with :mod:`struct`, so one seed
always gives the same bytes. Scapy builds the frames: this is not the sensor's
per-packet path, and ~1,500 frames take well under a second.
"""

from __future__ import annotations

import heapq
import math
import random
import struct
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import ARP, Dot1Q, Ether
from scapy.packet import Packet as ScapyPacket
from scapy.packet import Raw

__all__ = [
    "START", "DemoCapture", "ExpectedFlow", "Host", "Plant", "PlcModel", "Telemetry", "TcpConnection", "TcpLink",
    "ModbusClient", "Frame", "Conversation", "DEFAULT_CONVERSATIONS", "HOSTS", "PROTOCOL_PORTS", "BROADCAST_IP",
    "write_demo_capture",
    "hmi_polling", "engineering_session", "engineering_abort", "arp_refresh",
    "dnp3_crc", "dnp3_frame", "dnp3_polling", "s7_hmi_polling", "s7_engineering", "enip_session",
    "iec104_scada", "bacnet_bms",
]

START = datetime(2026, 1, 5, 8, 0, 0, tzinfo=UTC)
"""Time of the first microsecond of every demo capture."""

Frame = tuple[int, ScapyPacket]
"""(microseconds since :data:`START`, packet)."""

MODBUS_PORT = 502
DNP3_PORT = 20000
S7_PORT = 102
ENIP_PORT = 44818
IEC104_PORT = 2404
BACNET_PORT = 47808
PROTOCOL_PORTS: dict[int, str] = {
    MODBUS_PORT: "modbus", DNP3_PORT: "dnp3", S7_PORT: "s7comm", ENIP_PORT: "enip", IEC104_PORT: "iec104",
    BACNET_PORT: "bacnet",
}
"""Server port -> protocol: how the writer attributes a frame's TCP or UDP payload (both transports)."""

BROADCAST_IP = "10.10.255.255"
BROADCAST_MAC = "ff:ff:ff:ff:ff:ff"
ETH_MIN_FRAME = 60  # without the FCS: what a mirror port delivers for short frames
SECOND = 1_000_000
MS = 1_000

_PCAP_HEADER = struct.Struct("<IHHiIII")
_PCAP_RECORD = struct.Struct("<IIII")
_MBAP = struct.Struct(">HHHB")  # transaction id, protocol id, length, unit id
_HH = struct.Struct(">HH")


# -- the plant ---------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Host:
    """One device. ``ttl`` is its stack's initial TTL (Windows 128, embedded stacks 64)."""

    name: str
    role: str
    ip: str
    mac: str
    vlan: int | None = None
    ttl: int = 64
    vendor: str = ""


HOSTS: dict[str, Host] = {
    h.name: h for h in (
        Host("hmi", "hmi", "10.10.1.10", "b8:ca:3a:10:01:0a", ttl=128, vendor="Dell"),
        Host("ews", "engineering-workstation", "10.10.1.20", "3c:52:82:10:01:14", ttl=128, vendor="HP"),
        Host("plc1", "plc", "10.10.2.11", "00:80:f4:10:02:0b", vendor="Schneider Electric"),
        Host("plc2", "plc", "10.10.2.12", "00:80:f4:10:02:0c", vendor="Schneider Electric"),
        Host("plc3", "plc", "10.10.2.13", "00:30:de:10:02:0d", vlan=20, vendor="WAGO"),
        Host("plc4", "plc", "10.10.2.21", "00:1b:1b:10:02:15", vendor="Siemens"),
        Host("plc5", "plc", "10.10.2.31", "00:1d:9c:10:02:1f", vendor="Rockwell Automation"),
        Host("scada", "scada-server", "10.10.1.30", "d0:67:e5:10:01:1e", vendor="Dell"),
        Host("rtac", "substation-controller", "10.10.3.10", "00:30:a7:10:03:0a", vlan=30,
             vendor="Schweitzer Engineering Laboratories"),
        Host("relay", "protection-relay", "10.10.3.21", "00:30:a7:10:03:15", vlan=30,
             vendor="Schweitzer Engineering Laboratories"),
        Host("rtu", "rtu", "10.10.3.31", "00:0e:8c:10:03:1f", vlan=30, vendor="Siemens"),
        Host("bms", "bms-workstation", "10.10.4.10", "3c:52:82:10:04:0a", vlan=40, ttl=128, vendor="HP"),
        Host("ahu1", "building-controller", "10.10.4.21", "00:40:ae:10:04:15", vlan=40, vendor="Delta Controls"),
        Host("ahu2", "building-controller", "10.10.4.22", "00:40:ae:10:04:16", vlan=40, vendor="Delta Controls"),
    )
}
"""The default plant. OUIs are the vendors' real ones (Dell, HP, Schneider/Telemecanique, WAGO, Siemens,
Rockwell, Schweitzer Engineering Laboratories, Delta Controls). New hosts go at the end: the IP id of each
host is drawn in this order, so appending one leaves the others' unchanged."""

DEVICE_IDS: dict[str, tuple[str, str, str]] = {
    "plc1": ("Schneider Electric", "BMX P34 2020", "v3.20"),
    "plc2": ("Schneider Electric", "BMX P34 2020", "v3.20"),
    "plc3": ("WAGO", "750-8202 PFC200", "03.10.08"),
}
"""Read Device Identification basic objects: vendor name, product code, revision."""


@dataclass(slots=True)
class ExpectedFlow:
    """One connection the capture contains, as a sensor should report it."""

    client: str
    client_port: int
    server: str
    server_port: int
    transport: str
    vlan: int | None
    end: str  # "open" (still open when the capture ends; every UDP flow), "fin" or "rst"
    modbus_pdus: int = 0  # requests + responses, exception responses included
    protocol: str = "modbus"  # a PROTOCOL_PORTS value


@dataclass(slots=True)
class DemoCapture:
    """What :func:`write_demo_capture` put in the file: the expected results of reading it."""

    path: Path
    seed: int
    start: datetime
    duration_s: float
    hosts: tuple[Host, ...]
    flows: list[ExpectedFlow]
    packets: int = 0
    modbus_pdus: int = 0  # every MBAP frame (request, response, exception)
    modbus_frames: int = 0  # Ethernet frames carrying at least one of them
    modbus_requests: dict[int, int] = field(default_factory=dict)  # function code -> requests
    modbus_exceptions: int = 0
    arp_frames: int = 0
    vlan_frames: int = 0
    protocol_frames: dict[str, int] = field(default_factory=dict)  # frames with TCP/UDP payload, by protocol
    messages: dict[str, dict[str, int]] = field(default_factory=dict)  # protocol -> message kind -> count

    def __str__(self) -> str:
        tcp = sum(1 for f in self.flows if f.transport == "tcp")
        frames = ", ".join(f"{p} {n:,}" + (f" ({self.modbus_pdus:,} PDUs)" if p == "modbus" else "")
                           for p, n in self.protocol_frames.items())
        return (f"{self.packets:,} packets, {len(self.hosts)} hosts, {tcp} TCP connections, "
                f"{len(self.flows) - tcp} UDP flows over {self.duration_s:g} s; application frames: {frames}")


class Plant:
    """Shared state of one generation run: hosts, simulated PLCs, seeded randomness, what was made."""

    def __init__(self, seed: int, duration_s: float, hosts: dict[str, Host] | None = None) -> None:
        self.seed = seed
        self.duration_us = int(duration_s * SECOND)
        self.hosts = dict(hosts or HOSTS)
        self.plcs = {name: PlcModel(name, self.rng(f"plc:{name}"), duration_s)
                     for name, host in self.hosts.items() if host.role == "plc"}
        self.flows: list[ExpectedFlow] = []
        self.modbus_requests: dict[int, int] = {}
        self.modbus_pdus = 0
        self.modbus_exceptions = 0
        self.messages: dict[str, dict[str, int]] = {}
        self.telemetry: dict[str, Telemetry] = {}
        ids = self.rng("ip-id")
        self._ip_ids = {h.ip: ids.randrange(1, 65536) for h in self.hosts.values()}

    def rng(self, name: str) -> random.Random:
        """An independent generator per purpose, so adding a conversation never changes the others."""
        return random.Random(f"icsmon-demo:{self.seed}:{name}")

    def count(self, protocol: str, kind: str) -> None:
        """One application message of ``kind`` (a request, a response...) went on the wire."""
        kinds = self.messages.setdefault(protocol, {})
        kinds[kind] = kinds.get(kind, 0) + 1

    def device(self, name: str, channels: dict[str, tuple[float, float, float, float]]) -> Telemetry:
        """The simulated process values of one field device, made once and shared by its conversations."""
        if name not in self.telemetry:
            seconds = self.duration_us // SECOND + 2
            self.telemetry[name] = Telemetry(self.rng(f"telemetry:{name}"), seconds, channels)
        return self.telemetry[name]

    def next_ip_id(self, ip: str) -> int:
        """Hosts number datagrams with one counter, in the order they send them."""
        value = self._ip_ids.get(ip, 1)
        self._ip_ids[ip] = (value + 1) & 0xFFFF
        return value


class PlcModel:
    """A PLC's data tables and its answers to Modbus requests.

    Holding registers 0-99: 0 tank level (0.1 %), 1 pump speed (rpm), 2 temperature (0.1 degC),
    3 pressure (mbar), 4 level setpoint (0.1 %), 5-99 constants. Input registers 0-49: raw
    analog inputs (0-27648). Coils 0-63: pump/valve states. Anything else is an illegal address.
    """

    HOLDING, INPUTS, COILS = 100, 50, 64

    def __init__(self, name: str, rng: random.Random, duration_s: float) -> None:
        self.name = name
        seconds = int(duration_s) + 2
        level = rng.randint(400, 700)
        self.level: list[int] = []
        for _ in range(seconds):
            level = min(1000, max(0, level + rng.choice((-2, -1, -1, 0, 0, 1, 1, 2))))
            self.level.append(level)
        self.pump = [1480 + rng.randint(-3, 3) for _ in range(seconds)]
        phase, base = rng.uniform(0, 2 * math.pi), rng.randint(190, 230)
        self.temperature = [base + round(12 * math.sin(phase + s / 95.0)) for s in range(seconds)]
        pressure = rng.randint(2480, 2520)
        self.pressure: list[int] = []
        for _ in range(seconds):
            pressure = min(2600, max(2400, pressure + rng.randint(-4, 4)))
            self.pressure.append(pressure)
        self.constants = [rng.randrange(0, 1000) for _ in range(self.HOLDING)]
        self.inputs = [rng.randrange(4000, 24000) for _ in range(self.INPUTS)]
        self.coils = rng.getrandbits(self.COILS)
        self.writes: list[tuple[int, int, int]] = []  # (time us, address, value), sorted
        self.setpoint = 650

    def schedule_write(self, t_us: int, address: int, value: int) -> None:
        """Known before generation starts, so reads after ``t_us`` in any conversation see it."""
        self.writes.append((t_us, address, value))
        self.writes.sort()

    def holding(self, address: int, t_us: int) -> int:
        s = t_us // SECOND
        written = [v for (t, a, v) in self.writes if a == address and t <= t_us]
        if written:
            return written[-1]
        if address == 0:
            return self.level[s]
        if address == 1:
            return self.pump[s]
        if address == 2:
            return self.temperature[s]
        if address == 3:
            return self.pressure[s]
        if address == 4:
            return self.setpoint
        return self.constants[address]

    def input_register(self, address: int, t_us: int) -> int:
        return (self.inputs[address] + 37 * self.level[t_us // SECOND]) % 27649

    def respond(self, pdu: bytes, t_us: int) -> bytes:
        """The response PDU to a request PDU received at ``t_us``."""
        fc = pdu[0]
        if fc in (3, 4):
            start, count = _HH.unpack_from(pdu, 1)
            limit = self.HOLDING if fc == 3 else self.INPUTS
            if not 1 <= count <= 125 or start + count > limit:
                return bytes((fc | 0x80, 2))
            read = self.holding if fc == 3 else self.input_register
            values = [read(a, t_us) for a in range(start, start + count)]
            return bytes((fc, 2 * count)) + struct.pack(f">{count}H", *values)
        if fc == 1:
            start, count = _HH.unpack_from(pdu, 1)
            if not 1 <= count <= 2000 or start + count > self.COILS:
                return bytes((0x81, 2))
            bits = (self.coils >> start) & ((1 << count) - 1)
            return bytes((1, (count + 7) // 8)) + bits.to_bytes((count + 7) // 8, "little")
        if fc == 6:
            address, _value = _HH.unpack_from(pdu, 1)
            if address >= self.HOLDING:
                return bytes((0x86, 2))
            return pdu  # the echo; the value itself was scheduled with schedule_write
        if fc == 0x2B and pdu[1] == 0x0E:
            objects = b"".join(bytes((i, len(v))) + v.encode()
                               for i, v in enumerate(DEVICE_IDS.get(self.name, ("", "", ""))))
            # MEI type 14, read code 1 (basic), conformity 0x01, no more follows, next 0, 3 objects
            return bytes((0x2B, 0x0E, 0x01, 0x01, 0x00, 0x00, 3)) + objects
        return bytes((fc | 0x80, 1))


class Telemetry:
    """The analog values of a field device: one sample a second per channel, and operator writes.

    A channel is ``(start, largest step per second, low, high)``: a bounded random walk, rounded to
    hundredths, so a value read twice in the same second is the same and values drift the way a
    monitor's baseline expects. Writes (a setpoint) are known before generation, like
    :meth:`PlcModel.schedule_write`, so any conversation reading after the write sees the new value.
    """

    def __init__(self, rng: random.Random, seconds: int,
                 channels: dict[str, tuple[float, float, float, float]]) -> None:
        self.series: dict[str, list[float]] = {}
        for name, (value, step, low, high) in channels.items():
            samples: list[float] = []
            for _ in range(seconds):
                value = min(high, max(low, value + rng.uniform(-step, step)))
                samples.append(round(value, 2))
            self.series[name] = samples
        self.writes: list[tuple[int, str, float]] = []  # (time us, channel, value), sorted

    def schedule_write(self, t_us: int, channel: str, value: float) -> None:
        self.writes.append((t_us, channel, value))
        self.writes.sort()

    def value(self, channel: str, t_us: int) -> float:
        written = [v for (t, c, v) in self.writes if c == channel and t <= t_us]
        return written[-1] if written else self.series[channel][t_us // SECOND]


# -- frames ------------------------------------------------------------------------------------------

def _ether(src: Host, dst_mac: str, vlan: int | None, ethertype: int) -> ScapyPacket:
    if vlan is None:
        return Ether(src=src.mac, dst=dst_mac, type=ethertype)
    return Ether(src=src.mac, dst=dst_mac) / Dot1Q(vlan=vlan, type=ethertype)


def arp_exchange(t_us: int, asker: Host, target: Host, rng: random.Random) -> list[Frame]:
    """A who-has broadcast and its reply (tagged if either side is in a VLAN)."""
    vlan = asker.vlan or target.vlan
    request = _ether(asker, "ff:ff:ff:ff:ff:ff", vlan, 0x0806) / ARP(
        op=1, hwsrc=asker.mac, psrc=asker.ip, hwdst="00:00:00:00:00:00", pdst=target.ip)
    reply = _ether(target, asker.mac, vlan, 0x0806) / ARP(
        op=2, hwsrc=target.mac, psrc=target.ip, hwdst=asker.mac, pdst=asker.ip)
    return [(t_us, request), (t_us + rng.randint(150, 900), reply)]


def udp_datagram(t_us: int, src: Host, dst: Host | None, sport: int, dport: int, payload: bytes) -> Frame:
    """One UDP datagram; ``dst`` None is the network's broadcast (in the sender's VLAN).

    Embedded stacks and Windows alike leave DF clear on UDP; scapy computes the checksum.
    """
    dst_ip, dst_mac = (BROADCAST_IP, BROADCAST_MAC) if dst is None else (dst.ip, dst.mac)
    vlan = src.vlan or (dst.vlan if dst is not None else None)
    ip = IP(src=src.ip, dst=dst_ip, ttl=src.ttl)
    return t_us, _ether(src, dst_mac, vlan, 0x0800) / ip / UDP(sport=sport, dport=dport) / Raw(payload)


SYN_OPTIONS = [("MSS", 1460), ("NOP", None), ("WScale", 8), ("NOP", None), ("NOP", None), ("SAckOK", b"")]
"""A Windows client's SYN options; the PLCs answer with MSS only (no window scaling, no SACK)."""


class TcpConnection:
    """One TCP connection's two sequence spaces; every method returns frames with correct numbers."""

    CLIENT_WINDOW = 64240
    SERVER_WINDOW = 2048  # embedded stacks advertise small windows

    def __init__(self, client: Host, server: Host, sport: int, dport: int, rng: random.Random) -> None:
        self.client, self.server = client, server
        self.sport, self.dport = sport, dport
        self.vlan = client.vlan or server.vlan
        self.rng = rng
        self.cseq = rng.getrandbits(32)  # next sequence number the client sends
        self.sseq = rng.getrandbits(32)

    def _segment(self, t_us: int, from_client: bool, flags: str, payload: bytes = b"",
                 options: list[tuple[str, Any]] | None = None) -> Frame:
        src, dst = (self.client, self.server) if from_client else (self.server, self.client)
        seq, ack = (self.cseq, self.sseq) if from_client else (self.sseq, self.cseq)
        sport, dport = (self.sport, self.dport) if from_client else (self.dport, self.sport)
        tcp = TCP(sport=sport, dport=dport, seq=seq, ack=ack if "A" in flags else 0, flags=flags,
                  window=self.CLIENT_WINDOW if from_client else self.SERVER_WINDOW, options=options or [])
        ip = IP(src=src.ip, dst=dst.ip, ttl=src.ttl, flags="DF")
        packet = _ether(src, dst.mac, self.vlan, 0x0800) / ip / tcp
        if payload:
            packet = packet / Raw(payload)
        consumed = len(payload) + (1 if "S" in flags else 0) + (1 if "F" in flags else 0)
        if from_client:
            self.cseq = (self.cseq + consumed) & 0xFFFFFFFF
        else:
            self.sseq = (self.sseq + consumed) & 0xFFFFFFFF
        return t_us, packet

    def handshake(self, t_us: int) -> list[Frame]:
        rtt = self.rng.randint(200, 900)
        return [
            self._segment(t_us, True, "S", options=SYN_OPTIONS),
            self._segment(t_us + rtt, False, "SA", options=[("MSS", 1460)]),
            self._segment(t_us + rtt + self.rng.randint(50, 200), True, "A"),
        ]

    def data(self, t_us: int, from_client: bool, payload: bytes) -> Frame:
        return self._segment(t_us, from_client, "PA", payload)

    def ack(self, t_us: int, from_client: bool) -> Frame:
        return self._segment(t_us, from_client, "A")

    def close(self, t_us: int, from_client: bool = True) -> list[Frame]:
        """FIN, FIN+ACK from the peer, last ACK."""
        first = self._segment(t_us, from_client, "FA")
        t_us += self.rng.randint(300, 2000)
        second = self._segment(t_us, not from_client, "FA")
        return [first, second, self._segment(t_us + self.rng.randint(50, 300), from_client, "A")]

    def reset(self, t_us: int, from_client: bool = True) -> Frame:
        return self._segment(t_us, from_client, "RA")


class TcpLink:
    """A :class:`TcpConnection` whose two ends acknowledge data the way real stacks do.

    Every data segment acknowledges what its sender received (piggybacking); data not answered
    within the receiver's delayed-ACK time (40-200 ms) gets a pure ACK at that time. A side only
    ever owes one ACK, so there is never a second pure ACK for the same data (tshark would flag it
    as a duplicate ACK). Frames go to ``out`` in time order as long as callers send in time order.
    """

    def __init__(self, conn: TcpConnection, out: list[Frame]) -> None:
        self.conn = conn
        self.out = out
        self.owed: tuple[bool, int] | None = None  # (the side owing an ACK is the client, when it sends it)

    def _settle(self, t_us: int) -> None:
        if self.owed is not None and self.owed[1] <= t_us:
            self.out.append(self.conn.ack(self.owed[1], self.owed[0]))
            self.owed = None

    def handshake(self, t_us: int) -> int:
        """SYN, SYN-ACK, ACK; returns the time of the last."""
        self.out.extend(self.conn.handshake(t_us))
        return self.out[-1][0]

    def data(self, t_us: int, from_client: bool, payload: bytes) -> int:
        """One data segment at ``t_us``; returns ``t_us``."""
        self._settle(t_us)
        self.out.append(self.conn.data(t_us, from_client, payload))
        if self.owed is None or self.owed[0] == from_client:  # piggybacked; the peer now owes one
            self.owed = (not from_client, t_us + self.conn.rng.randint(40 * MS, 200 * MS))
        return t_us

    def close(self, t_us: int, from_client: bool = True) -> int:
        """FIN/FIN/ACK (the FIN acknowledges everything); returns the time of the last ACK."""
        self._settle(t_us)
        self.owed = None
        self.out.extend(self.conn.close(t_us, from_client))
        return self.out[-1][0]

    def finish(self, end_us: int) -> None:
        """The capture ends at ``end_us``: the last delayed ACK goes out if it is due before."""
        self._settle(end_us)


class ModbusClient:
    """A Modbus/TCP client on one connection: builds ADUs, lets the PLC answer, counts PDUs."""

    def __init__(self, plant: Plant, conn: TcpConnection, flow: ExpectedFlow, unit: int = 1,
                 first_tid: int = 1) -> None:
        self.plant, self.conn, self.flow = plant, conn, flow
        self.plc = plant.plcs[conn.server.name]
        self.unit = unit
        self.tid = first_tid

    def _adu(self, tid: int, pdu: bytes) -> bytes:
        return _MBAP.pack(tid, 0, len(pdu) + 1, self.unit) + pdu

    def _count(self, pdus: int) -> None:
        self.flow.modbus_pdus += pdus
        self.plant.modbus_pdus += pdus

    def transact(self, t_us: int, requests: list[bytes], pipelined: bool = False) -> tuple[list[Frame], int]:
        """Send ``requests`` (PDUs) one by one, each after the previous answer, or all in one segment.

        Returns the frames and the time of the last response. The client's acknowledgement of the
        last response is left to the caller (piggybacked or delayed).
        """
        rng, conn = self.conn.rng, self.conn
        frames: list[Frame] = []
        last = t_us
        for n, batch in enumerate([requests] if pipelined else [[r] for r in requests]):
            if n:
                t_us = last + rng.randint(200, 900)  # the next request follows the answer closely
            tids: list[int] = []
            for pdu in batch:
                tids.append(self.tid)
                self.plant.modbus_requests[pdu[0]] = self.plant.modbus_requests.get(pdu[0], 0) + 1
                self.tid = (self.tid + 1) & 0xFFFF
            frames.append(conn.data(t_us, True, b"".join(self._adu(tid, p) for tid, p in zip(tids, batch))))
            self._count(len(batch))
            last = t_us
            for tid, pdu in zip(tids, batch):
                last += rng.randint(2 * MS, 9 * MS)  # turnaround bound by the PLC's scan cycle
                answer = self.plc.respond(pdu, last)
                if answer[0] & 0x80:
                    self.plant.modbus_exceptions += 1
                frames.append(conn.data(last, False, self._adu(tid, answer)))
                self._count(1)
        return frames, last


def read_request(fc: int, start: int, count: int) -> bytes:
    return bytes((fc,)) + _HH.pack(start, count)


# -- conversations -----------------------------------------------------------------------------------

Conversation = Callable[[Plant], Iterator[Frame]]


def _connect(plant: Plant, client: Host, server: Host, rng: random.Random, end: str,
             port: int = MODBUS_PORT) -> tuple[TcpConnection, ExpectedFlow]:
    sport = rng.randrange(49152, 65536)  # Windows' dynamic port range (Linux's is within it too)
    conn = TcpConnection(client, server, sport, port, rng)
    flow = ExpectedFlow(client.ip, sport, server.ip, port, "tcp", conn.vlan, end, protocol=PROTOCOL_PORTS[port])
    plant.flows.append(flow)
    return conn, flow


def _udp_flow(plant: Plant, sender: Host, sport: int, receiver: Host | None, dport: int) -> None:
    """Register the UDP flow a datagram from ``sender`` starts (``receiver`` None: the broadcast)."""
    dst_ip = BROADCAST_IP if receiver is None else receiver.ip
    vlan = sender.vlan or (receiver.vlan if receiver is not None else None)
    protocol = PROTOCOL_PORTS.get(dport) or PROTOCOL_PORTS[sport]
    plant.flows.append(ExpectedFlow(sender.ip, sport, dst_ip, dport, "udp", vlan, "open", protocol=protocol))


def hmi_polling(plc: str, offset_us: int, pipeline_coils: bool = False) -> Conversation:
    """The HMI's polling connection to one PLC, open from the start to the end of the capture.

    ``pipeline_coils``: the coil read goes in the same TCP segment as the register read.
    """

    def conversation(plant: Plant) -> Iterator[Frame]:
        rng = plant.rng(f"hmi-polling:{plc}")
        hmi, server = plant.hosts["hmi"], plant.hosts[plc]
        conn, flow = _connect(plant, hmi, server, rng, "open")
        client = ModbusClient(plant, conn, flow)
        return _hmi_frames(plant, conn, client, rng, offset_us, pipeline_coils)

    return conversation


def _hmi_frames(plant: Plant, conn: TcpConnection, client: ModbusClient, rng: random.Random,
                offset_us: int, pipeline_coils: bool) -> Iterator[Frame]:
    t = offset_us
    yield from arp_exchange(t, conn.client, conn.server, rng)
    t += 2 * MS
    yield from conn.handshake(t)
    cycle, first_poll = 0, t + 100 * MS
    while True:
        t = first_poll + cycle * SECOND + rng.randint(-3 * MS, 3 * MS)
        if t > plant.duration_us - SECOND // 2:
            return
        requests = [read_request(3, 0, 10)]
        coils = cycle % 5 == 0
        if coils:
            requests.append(read_request(1, 0, 16))
        if cycle % 2 == 0:
            requests.append(read_request(4, 0, 4))
        if pipeline_coils and coils:  # FC 3 and FC 1 in one segment, then the rest one by one
            frames, t_last = client.transact(t, requests[:2], pipelined=True)
            yield from frames
            if requests[2:]:
                frames, t_last = client.transact(t_last + rng.randint(200, 900), requests[2:])
                yield from frames
        else:
            frames, t_last = client.transact(t, requests)
            yield from frames
        yield conn.ack(t_last + rng.randint(20 * MS, 190 * MS), True)  # delayed ACK
        cycle += 1


def engineering_session(plc: str, at: float) -> Conversation:
    """The engineer identifies a PLC, changes its level setpoint, probes a bad address, disconnects."""

    def conversation(plant: Plant) -> Iterator[Frame]:
        rng = plant.rng(f"engineering:{plc}")
        t0 = int(plant.duration_us * at)
        ews, server = plant.hosts["ews"], plant.hosts[plc]
        conn, flow = _connect(plant, ews, server, rng, "fin")
        client = ModbusClient(plant, conn, flow, first_tid=rng.randrange(1, 60000))
        new_setpoint = rng.randrange(700, 800)
        write_at = t0 + 900 * MS  # written before it is read back; the PLC applies it on receipt
        plant.plcs[plc].schedule_write(write_at, 4, new_setpoint)
        return _engineering_frames(conn, client, rng, t0, write_at, new_setpoint)

    return conversation


def _engineering_frames(conn: TcpConnection, client: ModbusClient, rng: random.Random, t0: int,
                        write_at: int, setpoint: int) -> Iterator[Frame]:
    yield from arp_exchange(t0, conn.client, conn.server, rng)
    yield from conn.handshake(t0 + 3 * MS)
    frames, t = client.transact(t0 + 150 * MS, [bytes((0x2B, 0x0E, 0x01, 0x00)), read_request(3, 0, 10)])
    yield from frames
    yield conn.ack(t + 40 * MS, True)
    # the write request arrives at write_at - turnaround; the PLC model applies it at write_at
    frames, t = client.transact(write_at - 1 * MS, [bytes((6,)) + _HH.pack(4, setpoint)])
    yield from frames
    frames, t = client.transact(t + 300 * MS, [read_request(3, 4, 1), read_request(3, 200, 2)])
    yield from frames
    yield conn.ack(t + 40 * MS, True)
    yield from conn.close(t + 1 * SECOND)


def engineering_abort(plc: str, at: float) -> Conversation:
    """The engineering tool reads a PLC and is killed: the connection ends with a RST."""

    def conversation(plant: Plant) -> Iterator[Frame]:
        rng = plant.rng(f"engineering-abort:{plc}")
        t0 = int(plant.duration_us * at)
        conn, flow = _connect(plant, plant.hosts["ews"], plant.hosts[plc], rng, "rst")
        client = ModbusClient(plant, conn, flow, first_tid=rng.randrange(1, 60000))
        return _abort_frames(conn, client, rng, t0)

    return conversation


def _abort_frames(conn: TcpConnection, client: ModbusClient, rng: random.Random, t0: int) -> Iterator[Frame]:
    yield from arp_exchange(t0, conn.client, conn.server, rng)
    yield from conn.handshake(t0 + 3 * MS)
    frames, t = client.transact(t0 + 120 * MS, [read_request(3, 0, 10), read_request(4, 0, 8),
                                                read_request(1, 0, 32)])
    yield from frames
    yield conn.ack(t + 30 * MS, True)
    yield conn.reset(t + 600 * MS, True)


def arp_refresh(asker: str, target: str, at: float) -> Conversation:
    """A device re-resolving a peer's address (ARP cache expiry)."""

    def conversation(plant: Plant) -> Iterator[Frame]:
        rng = plant.rng(f"arp:{asker}:{target}")
        return iter(arp_exchange(int(plant.duration_us * at), plant.hosts[asker], plant.hosts[target], rng))

    return conversation


def _deferred(build: Callable[[], list[Frame]]) -> Iterator[Frame]:
    """Frames built on first use, that is after every conversation's setup, so writes another
    conversation schedules (a setpoint an engineer changes) are known to the readers."""
    yield from build()


# -- DNP3 (TCP 20000) ----------------------------------------------------------------------------------

_DNP3_LINK = struct.Struct("<2sBBHH")  # start octets 05 64, length, control, destination, source
_LE16 = struct.Struct("<H")  # CRCs (low octet first), object counts, IIN (IIN1 in the low byte goes first)
_DNP3_CROB = struct.Struct("<HHBBIIB")  # qualifier 0x28 count, index; control code, count, on ms, off ms, status
_DNP3_ANALOG_EVENT = struct.Struct("<HBi")  # index (prefix), flags, value; a 48-bit time follows (g32v3)
_DNP3_BINARY_EVENT = struct.Struct("<HB")  # index (prefix), flags with the state in bit 7; time follows (g2v2)
_DNP3_POINT_INT = struct.Struct("<Bi")  # g30v1: flags, 32-bit value
_DNP3_POINT_FLOAT = struct.Struct("<Bf")  # g30v5: flags, single-precision value


def _dnp3_crc_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA6BC if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_DNP3_CRC_TABLE = _dnp3_crc_table()

DNP3_FUNCTIONS: dict[int, str] = {
    0: "confirm", 1: "read", 2: "write", 3: "select", 4: "operate", 20: "enable_unsolicited",
    24: "record_current_time", 129: "response", 130: "unsolicited_response",
}
"""Application function codes the demo uses, by the names :attr:`DemoCapture.messages` counts them under."""

IIN_CLASS1_EVENTS, IIN_NEED_TIME, IIN_DEVICE_RESTART = 0x0002, 0x0010, 0x0080  # IIN1 bits
DNP3_ONLINE = 0x01  # point flags: online; bit 7 is a binary point's state

RELAY_CHANNELS: dict[str, tuple[float, float, float, float]] = {
    "ia": (212.0, 3.0, 150.0, 260.0), "ib": (208.0, 3.0, 150.0, 260.0), "ic": (215.0, 3.0, 150.0, 260.0),
    "va": (7205.0, 12.0, 7100.0, 7300.0), "vb": (7198.0, 12.0, 7100.0, 7300.0), "vc": (7210.0, 12.0, 7100.0, 7300.0),
    "kw": (4450.0, 40.0, 3500.0, 5200.0), "kvar": (980.0, 25.0, 600.0, 1300.0),
    "hz": (60.0, 0.01, 59.95, 60.05), "pf": (0.976, 0.002, 0.95, 0.99), "oil_c": (54.0, 0.15, 45.0, 65.0),
    "battery_v": (129.6, 0.05, 128.5, 130.5),
}
"""The relay's measurements: phase currents (A), phase voltages (V), kW, kvar, Hz, power factor,
transformer oil temperature (degC), station battery (V)."""
RELAY_INT_POINTS = ("ia", "ib", "ic", "va", "vb", "vc", "kw", "kvar")  # g30v1, indexes 0-7
RELAY_FLOAT_POINTS = ("hz", "pf", "oil_c", "battery_v")  # g30v5, indexes 8-11
RELAY_BINARY_POINTS = 16  # g1v2, indexes 0-15; 0 is the capacitor bank breaker


def dnp3_crc(data: bytes) -> int:
    """CRC-16/DNP: polynomial 0x3D65 bit-reflected (0xA6BC), initial value 0, result complemented."""
    crc = 0
    for byte in data:
        crc = (crc >> 8) ^ _DNP3_CRC_TABLE[(crc ^ byte) & 0xFF]
    return crc ^ 0xFFFF


def dnp3_frame(user_data: bytes, destination: int, source: int, from_master: bool) -> bytes:
    """One link-layer frame carrying ``user_data`` (transport header + application fragment).

    Control: DIR set from the master, PRM set, function 4 (unconfirmed user data), the usual over
    TCP. The 8-octet header and every 16-octet block of user data (the last may be shorter) are each
    followed by their CRC. LENGTH counts control, addresses and user data, not the CRCs.
    """
    if len(user_data) > 250:
        raise ValueError(f"DNP3 user data of {len(user_data)} octets does not fit one link frame (250 at most)")
    control = (0x80 if from_master else 0x00) | 0x40 | 0x04
    header = _DNP3_LINK.pack(b"\x05\x64", 5 + len(user_data), control, destination, source)
    parts = [header, _LE16.pack(dnp3_crc(header))]
    for i in range(0, len(user_data), 16):
        block = user_data[i:i + 16]
        parts += [block, _LE16.pack(dnp3_crc(block))]
    return b"".join(parts)


def _dnp3_classes(*variations: int) -> bytes:
    """Object headers g60vN, qualifier 0x06 (all objects): class data requests."""
    return b"".join(bytes((60, v, 0x06)) for v in variations)


DNP3_INTEGRITY = _dnp3_classes(2, 3, 4, 1)  # class 1, 2, 3 events, then class 0 (static data)
DNP3_EVENTS = _dnp3_classes(2, 3, 4)


def _dnp3_time(t_us: int) -> bytes:
    """DNP3 time: milliseconds since 1970-01-01 UTC, 48 bits, little-endian."""
    return ((int(START.timestamp()) * SECOND + t_us) // MS).to_bytes(6, "little")


def _dnp3_crob(index: int, code: int, on_ms: int, status: int = 0) -> bytes:
    """g12v1 control relay output block, qualifier 0x28 (16-bit count, 16-bit index prefix)."""
    return bytes((12, 1, 0x28)) + _DNP3_CROB.pack(1, index, code, 1, on_ms, 0, status)


class Dnp3Outstation:
    """The relay's DNP3 database and internal indications.

    16 binary inputs (index 0: capacitor bank breaker closed, open until the master closes it),
    analog inputs 0-7 reported as g30v1 and 8-11 as g30v5 from :data:`RELAY_CHANNELS`. It starts
    with *device restart* and *need time* set, as after a power cycle; the master clears both.
    """

    def __init__(self, values: Telemetry, rng: random.Random) -> None:
        self.values = values
        self.inputs = rng.getrandbits(RELAY_BINARY_POINTS) & ~1
        self.closed_at: int | None = None
        self.iin = IIN_DEVICE_RESTART | IIN_NEED_TIME

    def binary(self, index: int, t_us: int) -> bool:
        if index == 0:
            return self.closed_at is not None and self.closed_at <= t_us
        return bool(self.inputs >> index & 1)

    def static_data(self, t_us: int) -> bytes:
        """Class 0: g1v2 0-15, g30v1 0-7, g30v5 8-11 (qualifier 0x00: 8-bit start and stop)."""
        binaries = bytes(DNP3_ONLINE | (0x80 if self.binary(i, t_us) else 0) for i in range(RELAY_BINARY_POINTS))
        ints = b"".join(_DNP3_POINT_INT.pack(DNP3_ONLINE, round(self.values.value(n, t_us)))
                        for n in RELAY_INT_POINTS)
        floats = b"".join(_DNP3_POINT_FLOAT.pack(DNP3_ONLINE, self.values.value(n, t_us))
                          for n in RELAY_FLOAT_POINTS)
        last_int = len(RELAY_INT_POINTS) - 1
        return (bytes((1, 2, 0x00, 0, RELAY_BINARY_POINTS - 1)) + binaries
                + bytes((30, 1, 0x00, 0, last_int)) + ints
                + bytes((30, 5, 0x00, last_int + 1, last_int + len(RELAY_FLOAT_POINTS))) + floats)

    def analog_events(self, t_us: int, names: tuple[str, ...]) -> bytes:
        """g32v3 (32-bit with time), qualifier 0x28, for the analog inputs named."""
        body = b"".join(_DNP3_ANALOG_EVENT.pack(RELAY_INT_POINTS.index(n), DNP3_ONLINE,
                                                round(self.values.value(n, t_us))) + _dnp3_time(t_us)
                        for n in names)
        return bytes((32, 3, 0x28)) + _LE16.pack(len(names)) + body

    def breaker_event(self, t_us: int) -> bytes:
        """g2v2 (binary input event with time) for index 0 in its state at ``t_us``."""
        flags = DNP3_ONLINE | (0x80 if self.binary(0, t_us) else 0)
        return bytes((2, 2, 0x28)) + _LE16.pack(1) + _DNP3_BINARY_EVENT.pack(0, flags) + _dnp3_time(t_us)

    def clear_restart(self, t_us: int) -> bytes:
        self.iin &= ~IIN_DEVICE_RESTART
        return b""

    def set_time(self, t_us: int) -> bytes:
        self.iin &= ~IIN_NEED_TIME
        return b""


class Dnp3Association:
    """A DNP3 master and outstation over one :class:`TcpLink`.

    Keeps the three sequence numbers: transport (6 bits, per sender, every segment), the master's
    application sequence (4 bits, echoed by the solicited response) and the outstation's unsolicited
    sequence (echoed by the master's confirm). Every fragment fits one segment (FIR and FIN set).
    """

    def __init__(self, plant: Plant, link: TcpLink, outstation: Dnp3Outstation, rng: random.Random,
                 master_address: int = 1, outstation_address: int = 10) -> None:
        self.plant, self.link, self.outstation, self.rng = plant, link, outstation, rng
        self.master_address, self.outstation_address = master_address, outstation_address
        self.seq = rng.randrange(16)
        self.unsolicited_seq = rng.randrange(16)
        self.transport = {True: rng.randrange(64), False: rng.randrange(64)}  # by "from the master"

    def _send(self, t_us: int, from_master: bool, fragment: bytes) -> int:
        tseq = self.transport[from_master]
        self.transport[from_master] = (tseq + 1) & 0x3F
        if from_master:
            dst, src = self.outstation_address, self.master_address
        else:
            dst, src = self.master_address, self.outstation_address
        self.link.data(t_us, from_master, dnp3_frame(bytes((0xC0 | tseq,)) + fragment, dst, src, from_master))
        self.plant.count("dnp3", DNP3_FUNCTIONS[fragment[1]])
        return t_us

    def request(self, t_us: int, function: int, objects: bytes = b"",
                answer: Callable[[int], bytes] | None = None) -> int:
        """A request and its solicited response (``answer(t)``: the response's objects and side effects;
        none: a null response). Returns the time of the response."""
        seq = self.seq
        self.seq = (seq + 1) & 0x0F
        self._send(t_us, True, bytes((0xC0 | seq, function)) + objects)
        t_us += self.rng.randint(4 * MS, 15 * MS)
        data = answer(t_us) if answer else b""
        return self._send(t_us, False, bytes((0xC0 | seq, 0x81)) + _LE16.pack(self.outstation.iin) + data)

    def unsolicited(self, t_us: int, objects: bytes) -> int:
        """An unsolicited response with events (CON set) and the master's confirm; returns its time."""
        seq = self.unsolicited_seq
        self.unsolicited_seq = (seq + 1) & 0x0F
        iin = _LE16.pack(self.outstation.iin | IIN_CLASS1_EVENTS)
        self._send(t_us, False, bytes((0xF0 | seq, 0x82)) + iin + objects)  # FIR FIN CON UNS
        t_us += self.rng.randint(5 * MS, 25 * MS)
        return self._send(t_us, True, bytes((0xD0 | seq, 0x00)))  # FIR FIN UNS: confirm


def dnp3_polling(master: str, outstation: str, offset_us: int) -> Conversation:
    """The substation controller's DNP3 association with the relay, open all through the capture."""

    def conversation(plant: Plant) -> Iterator[Frame]:
        rng = plant.rng(f"dnp3:{master}:{outstation}")
        conn, _flow = _connect(plant, plant.hosts[master], plant.hosts[outstation], rng, "open", DNP3_PORT)
        relay = Dnp3Outstation(plant.device(outstation, RELAY_CHANNELS), rng)
        return _deferred(lambda: _dnp3_frames(plant, conn, relay, rng, offset_us))

    return conversation


def _dnp3_frames(plant: Plant, conn: TcpConnection, relay: Dnp3Outstation, rng: random.Random,
                 offset_us: int) -> list[Frame]:
    out = arp_exchange(offset_us, conn.client, conn.server, rng)
    link = TcpLink(conn, out)
    dnp = Dnp3Association(plant, link, relay, rng)
    t = link.handshake(offset_us + 2 * MS) + rng.randint(10 * MS, 30 * MS)
    t = dnp.request(t, 1, DNP3_INTEGRITY, relay.static_data)
    # the relay said "restart" and "need time": clear the restart bit (g80v1 index 7 := 0) ...
    t = dnp.request(t + rng.randint(2 * MS, 8 * MS), 2, bytes((80, 1, 0x00, 7, 7, 0x00)), relay.clear_restart)
    # ... and set its clock the LAN way: record current time, then write when that request was sent
    recorded = t + rng.randint(2 * MS, 8 * MS)
    t = dnp.request(recorded, 24)
    t = dnp.request(t + rng.randint(2 * MS, 8 * MS), 2, bytes((50, 3, 0x07, 1)) + _dnp3_time(recorded),
                    relay.set_time)
    t = dnp.request(t + rng.randint(2 * MS, 8 * MS), 20, DNP3_EVENTS)
    end = plant.duration_us - SECOND
    plan = [(offset_us + k * 10 * SECOND + rng.randint(-5 * MS, 5 * MS), "integrity" if k % 3 == 2 else "events")
            for k in range(1, plant.duration_us // (10 * SECOND) + 1)]
    plan += [(int(plant.duration_us * 0.35) + rng.randint(0, 500 * MS), "unsolicited"),
             (int(plant.duration_us * 0.7) + rng.randint(0, 500 * MS), "control")]
    for when, what in sorted(plan):
        t = max(when, t + 50 * MS)
        if t > end:
            break
        if what == "integrity":
            t = dnp.request(t, 1, DNP3_INTEGRITY, relay.static_data)
        elif what == "events":
            t = dnp.request(t, 1, DNP3_EVENTS)
        elif what == "unsolicited":
            t = dnp.unsolicited(t, relay.analog_events(t - rng.randint(20 * MS, 80 * MS), ("ia", "kw")))
        else:
            t = _dnp3_close_breaker(dnp, relay, rng, t)
    link.finish(plant.duration_us)
    return out


def _dnp3_close_breaker(dnp: Dnp3Association, relay: Dnp3Outstation, rng: random.Random, t_us: int) -> int:
    """Select before operate of a CROB (pulse on 500 ms, close) on index 0, then the breaker's event."""
    crob = _dnp3_crob(0, 0x41, 500)  # 0x41: pulse on, close
    t_us = dnp.request(t_us, 3, crob, lambda _t: crob)
    operate = t_us + rng.randint(20 * MS, 60 * MS)

    def operated(t: int) -> bytes:
        relay.closed_at = t + rng.randint(60 * MS, 90 * MS)  # the breaker's closing time
        return crob

    t_us = dnp.request(operate, 4, crob, operated)
    assert relay.closed_at is not None
    report = relay.closed_at + rng.randint(30 * MS, 80 * MS)
    return dnp.unsolicited(report, relay.breaker_event(relay.closed_at) + relay.analog_events(report, ("kvar",)))


# -- S7comm (ISO-on-TCP, TCP 102) -----------------------------------------------------------------------

_TPKT = struct.Struct(">BBH")  # version 3, reserved, length including this header
_COTP_CONNECT = struct.Struct(">BHHB")  # TPDU code, destination reference, source reference, class 0
_S7_HEADER = struct.Struct(">BBHHHH")  # protocol id 0x32, ROSCTR, reserved, PDU reference, param length, data length
_S7_ITEM = struct.Struct(">BBBBHHB")  # 0x12, spec length 10, syntax S7ANY, transport size, count, DB, area
_S7_DATA_ITEM = struct.Struct(">BBH")  # return code, transport size, length (bits or bytes, by size)
_S7_SETUP = struct.Struct(">BBHHH")  # function 0xF0, reserved, max AmQ calling, max AmQ called, PDU length
_S7_SZL = struct.Struct(">HHHH")  # SZL id, index, record length, record count

S7_JOB, S7_ACK_DATA, S7_USERDATA = 1, 3, 7
S7_SETUP, S7_READ, S7_WRITE = 0xF0, 0x04, 0x05
S7_FUNCTIONS = {S7_SETUP: "setup_communication", S7_READ: "read_var", S7_WRITE: "write_var"}
S7_AREA_M, S7_AREA_DB = 0x83, 0x84
S7_TSAP_LOCAL = 0x0100
S7_TSAP_OP, S7_TSAP_PG = 0x0202, 0x0102  # connection type (2 OP, 1 PG), rack 0 * 32 + slot 2
S7_SETPOINT = 4  # PlcModel holding register behind DB1.DBW8

S7_MODULE = "6ES7 315-2EH14-0AB0 "  # CPU 315-2 PN/DP, the 20-character order number SZL 0x0011 reports
S7_IDENTIFICATION = (  # SZL 0x0011 records: index, order number, BGTyp, Ausbg, Ausbe
    (0x0001, S7_MODULE, 0x00C0, 0x0004, 0x0004),  # module
    (0x0006, S7_MODULE, 0x00C0, 0x0004, 0x0004),  # basic hardware
    (0x0007, " " * 20, 0x00C0, 0x5603, 0x0210),  # basic firmware: V3.2.16
)


@dataclass(frozen=True, slots=True)
class S7Item:
    """One read/write-var item in S7ANY addressing (one element of ``transport`` size)."""

    name: str
    transport: int  # request transport size: 1 BIT, 4 WORD, 8 REAL
    area: int
    db: int
    byte: int
    bit: int = 0

    def spec(self) -> bytes:
        head = _S7_ITEM.pack(0x12, 0x0A, 0x10, self.transport, 1, self.db, self.area)
        return head + (self.byte * 8 + self.bit).to_bytes(3, "big")


S7_ITEMS: dict[str, S7Item] = {i.name: i for i in (
    S7Item("DB1.DBW0", 4, S7_AREA_DB, 1, 0),  # tank level, 0.1 %
    S7Item("DB1.DBD4", 8, S7_AREA_DB, 1, 4),  # outlet flow, m3/h
    S7Item("M10.0", 1, S7_AREA_M, 0, 10, 0),  # pump running
    S7Item("DB1.DBW8", 4, S7_AREA_DB, 1, 8),  # level setpoint, 0.1 %
)}


def tpkt(payload: bytes) -> bytes:
    return _TPKT.pack(3, 0, 4 + len(payload)) + payload


def cotp_connect(code: int, dst_ref: int, src_ref: int, calling: int, called: int) -> bytes:
    """COTP CR (0xE0) or CC (0xD0) in a TPKT: TPDU size 1024, calling and called TSAPs."""
    params = (bytes((0xC0, 1, 0x0A, 0xC1, 2)) + calling.to_bytes(2, "big")
              + bytes((0xC2, 2)) + called.to_bytes(2, "big"))
    body = _COTP_CONNECT.pack(code, dst_ref, src_ref, 0) + params
    return tpkt(bytes((len(body),)) + body)


def s7_pdu(rosctr: int, ref: int, params: bytes, data: bytes = b"") -> bytes:
    """An S7 PDU in a COTP data TPDU (last data unit) in a TPKT; ack-data carries error class/code 0."""
    header = _S7_HEADER.pack(0x32, rosctr, 0, ref, len(params), len(data))
    if rosctr in (2, S7_ACK_DATA):
        header += b"\x00\x00"
    return tpkt(bytes((2, 0xF0, 0x80)) + header + params + data)


class S7Cpu:
    """The S7-300's data, taken from the plant's :class:`PlcModel` of the same name.

    DB1.DBW0 is the tank level (holding register 0), DB1.DBD4 the flow the pump speed gives,
    M10.0 coil 0, DB1.DBW8 the setpoint (holding register 4, which writes change).
    """

    def __init__(self, model: PlcModel) -> None:
        self.model = model

    def value(self, item: S7Item, t_us: int) -> float:
        if item.name == "DB1.DBD4":
            return round(self.model.holding(1, t_us) / 1480 * 42.5, 2)
        if item.name == "M10.0":
            return float(self.model.coils & 1)
        return float(self.model.holding(S7_SETPOINT if item.name == "DB1.DBW8" else 0, t_us))

    def read(self, items: list[S7Item], t_us: int) -> bytes:
        """Read-var response data: per item return code, transport size, length, value; odd lengths are
        padded to even except after the last item."""
        out = []
        for n, item in enumerate(items):
            value = self.value(item, t_us)
            if item.transport == 8:
                data = _S7_DATA_ITEM.pack(0xFF, 0x07, 4) + struct.pack(">f", value)  # REAL: length in bytes
            elif item.transport == 1:
                data = _S7_DATA_ITEM.pack(0xFF, 0x03, 1) + bytes((int(value),))  # BIT
                if n < len(items) - 1:
                    data += b"\x00"
            else:
                data = _S7_DATA_ITEM.pack(0xFF, 0x04, 16) + struct.pack(">h", int(value))  # WORD: length in bits
            out.append(data)
        return b"".join(out)


class S7Session:
    """One S7 connection over a :class:`TcpLink`: COTP connect, setup communication, jobs, userdata."""

    def __init__(self, plant: Plant, link: TcpLink, cpu: S7Cpu, rng: random.Random, called_tsap: int) -> None:
        self.plant, self.link, self.cpu, self.rng = plant, link, cpu, rng
        self.called_tsap = called_tsap
        self.ref = rng.randrange(1, 0x8000)
        self.szl_seq = 0

    def _turnaround(self, t_us: int) -> int:
        return t_us + self.rng.randint(3 * MS, 12 * MS)  # an S7-300 answers between two scan cycles

    def connect(self, t_us: int) -> int:
        """COTP CR and CC, then setup communication (the CPU grants a 240-octet PDU)."""
        ref = self.rng.randrange(1, 0x10000)
        self.link.data(t_us, True, cotp_connect(0xE0, 0, ref, S7_TSAP_LOCAL, self.called_tsap))
        self.plant.count("s7comm", "cotp_connect_request")
        t_us = self._turnaround(t_us)
        self.link.data(t_us, False, cotp_connect(0xD0, ref, self.rng.randrange(1, 0x10000), S7_TSAP_LOCAL,
                                                 self.called_tsap))
        self.plant.count("s7comm", "cotp_connect_confirm")
        request = _S7_SETUP.pack(S7_SETUP, 0, 1, 1, 480)
        return self.job(t_us + self.rng.randint(1 * MS, 3 * MS), request, b"",
                        lambda _t: (_S7_SETUP.pack(S7_SETUP, 0, 1, 1, 240), b""))

    def job(self, t_us: int, params: bytes, data: bytes, answer: Callable[[int], tuple[bytes, bytes]]) -> int:
        """A job and its ack-data (``answer(t)``: parameters and data); returns the ack's time."""
        ref = self.ref
        self.ref = ref % 0xFFFF + 1
        name = S7_FUNCTIONS[params[0]]
        self.link.data(t_us, True, s7_pdu(S7_JOB, ref, params, data))
        self.plant.count("s7comm", f"job:{name}")
        t_us = self._turnaround(t_us)
        ack_params, ack_data = answer(t_us)
        self.link.data(t_us, False, s7_pdu(S7_ACK_DATA, ref, ack_params, ack_data))
        self.plant.count("s7comm", f"ack_data:{name}")
        return t_us

    def read(self, t_us: int, items: list[S7Item]) -> int:
        params = bytes((S7_READ, len(items))) + b"".join(i.spec() for i in items)
        return self.job(t_us, params, b"",
                        lambda t: (bytes((S7_READ, len(items))), self.cpu.read(items, t)))

    def write(self, t_us: int, item: S7Item, value: int) -> int:
        params = bytes((S7_WRITE, 1)) + item.spec()
        data = _S7_DATA_ITEM.pack(0x00, 0x04, 16) + struct.pack(">h", value)
        return self.job(t_us, params, data, lambda _t: (bytes((S7_WRITE, 1)), b"\xff"))

    def read_szl(self, t_us: int, szl_id: int, index: int) -> int:
        """Userdata, CPU functions group (4), read SZL (subfunction 1); the answer fits one PDU."""
        ref = self.ref
        self.ref = ref % 0xFFFF + 1
        params = bytes((0x00, 0x01, 0x12, 0x04, 0x11, 0x44, 0x01, 0x00))  # head, length 4, request, type 4 group 4
        request = bytes((0xFF, 0x09)) + struct.pack(">HHH", 4, szl_id, index)
        self.link.data(t_us, True, s7_pdu(S7_USERDATA, ref, params, request))
        self.plant.count("s7comm", "userdata:read_szl_request")
        t_us = self._turnaround(t_us)
        self.szl_seq = self.szl_seq % 0xFF + 1
        records = b"".join(struct.pack(">H20sHHH", i, mlfb.encode(), bg, ausbg, ausbe)
                           for i, mlfb, bg, ausbg, ausbe in S7_IDENTIFICATION)
        szl = _S7_SZL.pack(szl_id, index, 28, len(S7_IDENTIFICATION)) + records
        # head, length 8, response, type 8 group 4, read SZL, sequence, data unit 0, last unit, no error
        params = bytes((0x00, 0x01, 0x12, 0x08, 0x12, 0x84, 0x01, self.szl_seq, 0x00, 0x00, 0x00, 0x00))
        data = bytes((0xFF, 0x09)) + struct.pack(">H", len(szl)) + szl
        self.link.data(t_us, False, s7_pdu(S7_USERDATA, ref, params, data))
        self.plant.count("s7comm", "userdata:read_szl_response")
        return t_us


def s7_hmi_polling(plc: str, offset_us: int) -> Conversation:
    """The HMI's S7 connection (OP) to the S7-300: one read-var job of four items every second."""

    def conversation(plant: Plant) -> Iterator[Frame]:
        rng = plant.rng(f"s7-hmi:{plc}")
        conn, _flow = _connect(plant, plant.hosts["hmi"], plant.hosts[plc], rng, "open", S7_PORT)
        return _deferred(lambda: _s7_hmi_frames(plant, conn, S7Cpu(plant.plcs[plc]), rng, offset_us))

    return conversation


def _s7_hmi_frames(plant: Plant, conn: TcpConnection, cpu: S7Cpu, rng: random.Random,
                   offset_us: int) -> list[Frame]:
    out = arp_exchange(offset_us, conn.client, conn.server, rng)
    link = TcpLink(conn, out)
    s7 = S7Session(plant, link, cpu, rng, S7_TSAP_OP)
    t = s7.connect(link.handshake(offset_us + 2 * MS) + rng.randint(1 * MS, 5 * MS))
    items = list(S7_ITEMS.values())
    first = t + 100 * MS
    for cycle in range(plant.duration_us // SECOND):
        t = first + cycle * SECOND + rng.randint(-3 * MS, 3 * MS)
        if t > plant.duration_us - SECOND // 2:
            break
        s7.read(t, items)
    link.finish(plant.duration_us)
    return out


def s7_engineering(plc: str, at: float) -> Conversation:
    """The engineering workstation (PG) identifies the S7-300 through SZL 0x0011, writes the level
    setpoint DB1.DBW8 a tenth of the capture later, reads it back and disconnects."""

    def conversation(plant: Plant) -> Iterator[Frame]:
        rng = plant.rng(f"s7-engineering:{plc}")
        t0 = int(plant.duration_us * at)
        conn, _flow = _connect(plant, plant.hosts["ews"], plant.hosts[plc], rng, "fin", S7_PORT)
        setpoint = rng.randrange(660, 760)
        write_at = t0 + plant.duration_us // 10  # 6 s into a default capture
        plant.plcs[plc].schedule_write(write_at, S7_SETPOINT, setpoint)  # the CPU applies it on receipt
        cpu = S7Cpu(plant.plcs[plc])
        return _deferred(lambda: _s7_engineering_frames(plant, conn, cpu, rng, t0, write_at, setpoint))

    return conversation


def _s7_engineering_frames(plant: Plant, conn: TcpConnection, cpu: S7Cpu, rng: random.Random, t0: int,
                           write_at: int, setpoint: int) -> list[Frame]:
    out = arp_exchange(t0, conn.client, conn.server, rng)
    link = TcpLink(conn, out)
    s7 = S7Session(plant, link, cpu, rng, S7_TSAP_PG)
    t = s7.connect(link.handshake(t0 + 3 * MS) + rng.randint(1 * MS, 5 * MS))
    s7.read_szl(t + rng.randint(20 * MS, 60 * MS), 0x0011, 0x0000)
    t = s7.write(write_at, S7_ITEMS["DB1.DBW8"], setpoint)
    t = s7.read(t + rng.randint(200 * MS, 400 * MS), [S7_ITEMS["DB1.DBW8"]])
    link.close(t + 2 * SECOND)
    return out


# -- EtherNet/IP and CIP (TCP and UDP 44818) ------------------------------------------------------------

_ENIP = struct.Struct("<HHII8sI")  # command, length, session handle, status, sender context, options
_ENIP_SOCKADDR = struct.Struct(">hHI8x")  # sin_family, sin_port, sin_addr, zero: big-endian inside ENIP
_ENIP_IDENTITY = struct.Struct("<HHHBBHI")  # vendor, device type, product code, revision, status, serial
_ENIP_RR = struct.Struct("<IHHHHHH")  # interface handle, timeout, 2 items: null address (type, length), data
_CPF_ITEM = struct.Struct("<HHH")  # item count, type id, length (one item)

ENIP_COMMANDS = {0x63: "list_identity", 0x65: "register_session", 0x66: "unregister_session",
                 0x6F: "send_rr_data"}
CIP_SERVICES = {0x0E: "get_attribute_single", 0x4C: "read_tag"}
CIP_REAL = 0x00CA
LOGIX_NAME = "1769-L33ER/A LOGIX5333ER"
LOGIX_TAG = "Tank_Level"


def enip(command: int, session: int, context: bytes, data: bytes = b"") -> bytes:
    return _ENIP.pack(command, len(data), session, 0, context, 0) + data


def enip_list_identity_reply(host: Host, serial: int) -> bytes:
    """The CIP Identity item (type 0x0C) of a ListIdentity reply: vendor 1, device type 14 (PLC)."""
    name = LOGIX_NAME.encode()
    address = int.from_bytes(bytes(int(x) for x in host.ip.split(".")), "big")
    # encapsulation version 1; status 0x0060: an I/O connection in run mode; state 3: operational
    item = (struct.pack("<H", 1) + _ENIP_SOCKADDR.pack(2, ENIP_PORT, address)
            + _ENIP_IDENTITY.pack(1, 14, 155, 32, 11, 0x0060, serial) + bytes((len(name),)) + name + bytes((3,)))
    return _CPF_ITEM.pack(1, 0x0C, len(item)) + item


def cip_read_tag(tag: str) -> bytes:
    """Read Tag (0x4C) of one element; the path is one ANSI extended symbolic segment (0x91), padded even."""
    symbol = tag.encode()
    path = bytes((0x91, len(symbol))) + symbol + (b"\x00" if len(symbol) % 2 else b"")
    return bytes((0x4C, len(path) // 2)) + path + struct.pack("<H", 1)


CIP_IDENTITY_NAME = bytes((0x0E, 3, 0x20, 0x01, 0x24, 0x01, 0x30, 0x07))  # Get_Attribute_Single 1/1/7


class EnipSession:
    """The engineering tool's explicit-messaging session with the CompactLogix over a :class:`TcpLink`."""

    def __init__(self, plant: Plant, link: TcpLink, rng: random.Random) -> None:
        self.plant, self.link, self.rng = plant, link, rng
        self.session = 0
        self.context = rng.getrandbits(32)

    def _command(self, t_us: int, from_client: bool, command: int, context: int, data: bytes = b"") -> None:
        self.link.data(t_us, from_client, enip(command, self.session, context.to_bytes(8, "little"), data))
        self.plant.count("enip", f"{'request' if from_client else 'reply'}:{ENIP_COMMANDS[command]}")

    def register(self, t_us: int) -> int:
        self.context += 1
        self._command(t_us, True, 0x65, self.context, struct.pack("<HH", 1, 0))
        t_us += self.rng.randint(1 * MS, 4 * MS)
        self.session = self.rng.getrandbits(32) | 1
        self._command(t_us, False, 0x65, self.context, struct.pack("<HH", 1, 0))
        return t_us

    def unconnected(self, t_us: int, cip: bytes, answer: Callable[[int], bytes]) -> int:
        """SendRRData with an unconnected CIP request and its reply; returns the reply's time."""
        self.context += 1
        self._command(t_us, True, 0x6F, self.context, _ENIP_RR.pack(0, 10, 2, 0, 0, 0xB2, len(cip)) + cip)
        self.plant.count("enip", f"cip:{CIP_SERVICES[cip[0]]}")
        t_us += self.rng.randint(2 * MS, 8 * MS)
        reply = answer(t_us)
        self._command(t_us, False, 0x6F, self.context, _ENIP_RR.pack(0, 0, 2, 0, 0, 0xB2, len(reply)) + reply)
        self.plant.count("enip", f"cip:{CIP_SERVICES[cip[0]]}_reply")
        return t_us

    def unregister(self, t_us: int) -> int:
        self.context += 1
        self._command(t_us, True, 0x66, self.context)
        return t_us


def enip_session(client: str, plc: str, at: float) -> Conversation:
    """RSLinx-style browsing: a ListIdentity broadcast and the PLC's answer, then an explicit session."""

    def conversation(plant: Plant) -> Iterator[Frame]:
        rng = plant.rng(f"enip:{client}:{plc}")
        ews, logix = plant.hosts[client], plant.hosts[plc]
        browse_port = rng.randrange(49152, 65536)
        _udp_flow(plant, ews, browse_port, None, ENIP_PORT)
        _udp_flow(plant, logix, ENIP_PORT, ews, browse_port)
        conn, _flow = _connect(plant, ews, logix, rng, "fin", ENIP_PORT)
        return _deferred(lambda: _enip_frames(plant, conn, rng, int(plant.duration_us * at), browse_port))

    return conversation


def _enip_frames(plant: Plant, conn: TcpConnection, rng: random.Random, t0: int, browse_port: int) -> list[Frame]:
    ews, logix, model = conn.client, conn.server, plant.plcs[conn.server.name]
    out = [udp_datagram(t0, ews, None, browse_port, ENIP_PORT, enip(0x63, 0, bytes(8)))]
    plant.count("enip", "request:list_identity")
    arp = arp_exchange(t0 + rng.randint(300, 900), logix, ews, rng)  # it must find the asker's address
    out += arp
    reply = enip(0x63, 0, bytes(8), enip_list_identity_reply(logix, 0x60C2A1F3 ^ rng.getrandbits(16)))
    out.append(udp_datagram(arp[-1][0] + rng.randint(100, 400), logix, ews, ENIP_PORT, browse_port, reply))
    plant.count("enip", "reply:list_identity")
    link = TcpLink(conn, out)  # the ARP request taught the workstation the PLC's address: no ARP now
    session = EnipSession(plant, link, rng)
    t = session.register(link.handshake(t0 + 1500 * MS) + rng.randint(1 * MS, 4 * MS))
    name = LOGIX_NAME.encode()
    t = session.unconnected(t + rng.randint(5 * MS, 20 * MS), CIP_IDENTITY_NAME,
                            lambda _t: bytes((0x8E, 0, 0, 0, len(name))) + name)
    for n in range(3):
        session.unconnected(t + (n + 1) * SECOND + rng.randint(-10 * MS, 10 * MS), cip_read_tag(LOGIX_TAG),
                            lambda t: bytes((0xCC, 0, 0, 0)) + struct.pack("<Hf", CIP_REAL,
                                                                           model.holding(0, t) / 10))
    t = session.unregister(t + 3 * SECOND + rng.randint(200 * MS, 400 * MS))
    link.close(t + rng.randint(1 * MS, 3 * MS))
    return out


# -- IEC 60870-5-104 (TCP 2404) ----------------------------------------------------------------------------

_APCI = struct.Struct("<BBHH")  # start 0x68, APDU length, control octets 1-2 and 3-4
_ASDU = struct.Struct("<BBBBH")  # type id, variable structure qualifier, cause, originator address, common address
_CP56 = struct.Struct("<HBBBBB")  # milliseconds (with seconds), minutes, hours, day|weekday, month, year
_FLOAT_QDS = struct.Struct("<fB")

IEC104_TYPES = {1: "M_SP_NA_1", 13: "M_ME_NC_1", 36: "M_ME_TF_1", 45: "C_SC_NA_1", 100: "C_IC_NA_1",
                103: "C_CS_NA_1"}
IEC104_CAUSES = {3: "spont", 6: "act", 7: "actcon", 10: "actterm", 11: "retrem", 20: "inrogen"}
IEC104_U = {0x07: "STARTDT act", 0x0B: "STARTDT con", 0x43: "TESTFR act", 0x83: "TESTFR con"}
IEC104_W, IEC104_T2, IEC104_T3 = 8, 10 * SECOND, 20 * SECOND  # the standard's defaults
RTU_COMMON_ADDRESS = 47
RTU_CHANNELS: dict[str, tuple[float, float, float, float]] = {
    "bus_kv": (110.4, 0.08, 109.0, 112.0), "line1_a": (312.0, 4.0, 200.0, 420.0),
    "line2_a": (287.0, 4.0, 200.0, 420.0), "mw": (58.2, 0.6, 45.0, 70.0), "mvar": (11.5, 0.3, 6.0, 16.0),
    "hz": (50.0, 0.01, 49.95, 50.05),
}
"""The RTU's measurands: 110 kV busbar voltage, two line currents (A), MW, Mvar, Hz."""
RTU_MEASURANDS = dict(zip(range(2001, 2001 + len(RTU_CHANNELS)), RTU_CHANNELS))  # IOA -> channel
RTU_SINGLE_POINTS = range(1001, 1009)  # 1001: line 2 breaker Q0 closed, open until commanded
RTU_BREAKER_COMMAND = 5001


def cp56time2a(t_us: int) -> bytes:
    """CP56Time2a of the capture time ``t_us`` (UTC, no summer time, day of week 1 = Monday)."""
    when = START + timedelta(microseconds=t_us)
    ms = when.second * 1000 + when.microsecond // 1000
    return _CP56.pack(ms, when.minute, when.hour, when.day | when.isoweekday() << 5, when.month, when.year % 100)


def iec104_asdu(type_id: int, cause: int, objects: list[tuple[int, bytes]],
                common: int = RTU_COMMON_ADDRESS) -> bytes:
    """An ASDU with one information object per (IOA, element) pair (SQ = 0), originator address 0."""
    return _ASDU.pack(type_id, len(objects), cause, 0, common) + b"".join(
        ioa.to_bytes(3, "little") + element for ioa, element in objects)


class Iec104Connection:
    """Both stations of one IEC 104 connection over a :class:`TcpLink` (the client controls).

    Numbers I-frames per direction (N(S), N(R) mod 32768). The RTU's I-frames are acknowledged by
    the front-end's next I-frame or, failing one, an S-frame at most t2 after the oldest
    unacknowledged one or as soon as w of them are waiting. The front-end tests an idle connection
    with TESTFR after t3 without anything received.
    """

    def __init__(self, plant: Plant, link: TcpLink, rng: random.Random) -> None:
        self.plant, self.link, self.rng = plant, link, rng
        self.sent = {True: 0, False: 0}  # I-frames sent, by "from the client"
        self.unacked = 0  # RTU I-frames the client has not acknowledged
        self.s_due: int | None = None
        self.last_rx = 0  # the client's last reception, for t3

    def settle(self, t_us: int) -> None:
        """Send what the client owes before ``t_us``: the S-frame, then TESTFR if idle for t3."""
        if self.s_due is not None and self.s_due <= t_us:
            self.link.data(self.s_due, True, _APCI.pack(0x68, 4, 0x0001, self.sent[False] << 1))
            self.plant.count("iec104", "S")
            self.unacked, self.s_due = 0, None
        while t_us - self.last_rx > IEC104_T3:
            test = self.last_rx + IEC104_T3
            self.u(test, True, 0x43)
            self.u(test + self.rng.randint(2 * MS, 9 * MS), False, 0x83)

    def u(self, t_us: int, from_client: bool, code: int) -> int:
        self.link.data(t_us, from_client, bytes((0x68, 4, code, 0, 0, 0)))
        self.plant.count("iec104", IEC104_U[code])
        if not from_client:
            self.last_rx = t_us
        return t_us

    def i(self, t_us: int, from_client: bool, asdu: bytes) -> int:
        self.settle(t_us)
        ns, nr = self.sent[from_client], self.sent[not from_client]
        self.link.data(t_us, from_client, _APCI.pack(0x68, 4 + len(asdu), ns << 1, nr << 1) + asdu)
        self.sent[from_client] = (ns + 1) & 0x7FFF
        self.plant.count("iec104", f"{IEC104_TYPES[asdu[0]]} {IEC104_CAUSES[asdu[2] & 0x3F]}")
        if from_client:
            self.unacked, self.s_due = 0, None
        else:
            self.last_rx = t_us
            self.unacked += 1
            if self.unacked == 1:
                self.s_due = t_us + IEC104_T2
            if self.unacked >= IEC104_W:
                self.s_due = min(self.s_due or t_us, t_us + self.rng.randint(1 * MS, 3 * MS))
        return t_us

    def rtu_burst(self, t_us: int, asdus: list[bytes]) -> int:
        """The RTU's answers, each a few milliseconds after the previous; returns the last one's time."""
        for asdu in asdus:
            t_us = self.i(t_us + self.rng.randint(2 * MS, 6 * MS), False, asdu)
        return t_us


class Rtu:
    """The substation RTU's points: single points 1001-1008 and measurands 2001-2006."""

    def __init__(self, values: Telemetry, rng: random.Random) -> None:
        self.values = values
        self.points = rng.getrandbits(len(RTU_SINGLE_POINTS)) & ~1 | 0x02  # breaker Q0 open, disconnector closed
        self.closed_at: int | None = None

    def single(self, ioa: int, t_us: int) -> int:
        if ioa == RTU_SINGLE_POINTS[0]:
            return int(self.closed_at is not None and self.closed_at <= t_us)
        return self.points >> (ioa - RTU_SINGLE_POINTS[0]) & 1

    def measurand(self, ioa: int, t_us: int) -> bytes:
        return _FLOAT_QDS.pack(self.values.value(RTU_MEASURANDS[ioa], t_us), 0)

    def interrogation(self, t_us: int) -> list[bytes]:
        """The station interrogation's answers: all single points, all measurands (cause 20)."""
        return [
            iec104_asdu(1, 20, [(ioa, bytes((self.single(ioa, t_us),))) for ioa in RTU_SINGLE_POINTS]),
            iec104_asdu(13, 20, [(ioa, self.measurand(ioa, t_us)) for ioa in RTU_MEASURANDS]),
        ]


def iec104_scada(client: str, rtu: str, offset_us: int) -> Conversation:
    """The SCADA front-end's IEC 104 connection to the substation RTU, open all through the capture."""

    def conversation(plant: Plant) -> Iterator[Frame]:
        rng = plant.rng(f"iec104:{client}:{rtu}")
        conn, _flow = _connect(plant, plant.hosts[client], plant.hosts[rtu], rng, "open", IEC104_PORT)
        station = Rtu(plant.device(rtu, RTU_CHANNELS), rng)
        return _deferred(lambda: _iec104_frames(plant, conn, station, rng, offset_us))

    return conversation


def _iec104_plan(plant: Plant, rng: random.Random) -> list[tuple[int, str]]:
    """Spontaneous measurands every 2.5-6.5 s, none for 24 s from 40 % (the front-end tests the
    connection meanwhile), and the breaker command at 85 %."""
    quiet = (int(plant.duration_us * 0.4), int(plant.duration_us * 0.4) + 24 * SECOND)
    plan, t = [], 3 * SECOND + rng.randint(0, 900 * MS)
    while t < plant.duration_us - 2 * SECOND:
        if not quiet[0] <= t < quiet[1]:
            plan.append((t, "spontaneous"))
        t += rng.randint(2500 * MS, 6500 * MS)
    return sorted(plan + [(int(plant.duration_us * 0.85) + rng.randint(0, 500 * MS), "command")])


def _iec104_frames(plant: Plant, conn: TcpConnection, rtu: Rtu, rng: random.Random, offset_us: int) -> list[Frame]:
    out = arp_exchange(offset_us, conn.client, conn.server, rng)
    link = TcpLink(conn, out)
    iec = Iec104Connection(plant, link, rng)
    t = iec.u(link.handshake(offset_us + 2 * MS) + rng.randint(2 * MS, 6 * MS), True, 0x07)
    t = iec.u(t + rng.randint(2 * MS, 6 * MS), False, 0x0B)
    station = [(0, bytes((20,)))]  # IOA 0, QOI 20: station interrogation
    t = iec.i(t + rng.randint(5 * MS, 20 * MS), True, iec104_asdu(100, 6, station))
    t = iec.rtu_burst(t, [iec104_asdu(100, 7, station), *rtu.interrogation(t), iec104_asdu(100, 10, station)])
    t += rng.randint(20 * MS, 60 * MS)
    t = iec.i(t, True, iec104_asdu(103, 6, [(0, cp56time2a(t))]))  # the front-end's clock when it sends
    t = iec.rtu_burst(t, [iec104_asdu(103, 7, [(0, cp56time2a(t))])])
    for when, what in _iec104_plan(plant, rng):
        t = max(when, t + 100 * MS)
        if what == "spontaneous":
            ioas = sorted(rng.sample(sorted(RTU_MEASURANDS), rng.choice((1, 1, 2))))
            measured = t - rng.randint(5 * MS, 40 * MS)  # the RTU time-tags the change, then reports it
            objects = [(ioa, rtu.measurand(ioa, measured) + cp56time2a(measured)) for ioa in ioas]
            t = iec.i(t, False, iec104_asdu(36, 3, objects))
        else:
            t = _iec104_close_breaker(iec, rtu, rng, t)
    iec.settle(plant.duration_us - 50 * MS)  # a last S-frame or TESTFR, if due with time to spare
    link.finish(plant.duration_us)
    return out


def _iec104_close_breaker(iec: Iec104Connection, rtu: Rtu, rng: random.Random, t_us: int) -> int:
    """Select, execute, actcon, the breaker's new position (cause 11), actterm."""
    select, execute = [(RTU_BREAKER_COMMAND, b"\x81")], [(RTU_BREAKER_COMMAND, b"\x01")]  # S/E, SCS = on
    t_us = iec.i(t_us, True, iec104_asdu(45, 6, select))
    t_us = iec.rtu_burst(t_us, [iec104_asdu(45, 7, select)])
    t_us = iec.i(t_us + rng.randint(100 * MS, 300 * MS), True, iec104_asdu(45, 6, execute))
    t_us = iec.rtu_burst(t_us, [iec104_asdu(45, 7, execute)])
    rtu.closed_at = t_us + rng.randint(50 * MS, 90 * MS)
    breaker = RTU_SINGLE_POINTS[0]
    t_us = iec.i(rtu.closed_at + rng.randint(5 * MS, 15 * MS), False,
                 iec104_asdu(1, 11, [(breaker, bytes((rtu.single(breaker, rtu.closed_at),)))]))
    return iec.rtu_burst(t_us, [iec104_asdu(45, 10, execute)])


# -- BACnet/IP (UDP 47808) --------------------------------------------------------------------------------

_BVLC = struct.Struct(">BBH")  # type 0x81 (BACnet/IP), function, length including this header
BVLC_UNICAST, BVLC_BROADCAST = 0x0A, 0x0B  # Original-Unicast-NPDU, Original-Broadcast-NPDU
NPDU_GLOBAL = bytes((0x01, 0x20, 0xFF, 0xFF, 0x00, 0xFF))  # version 1, DNET 0xFFFF (global), hop count 255
NPDU_EXPECTING_REPLY = bytes((0x01, 0x04))
NPDU_PLAIN = bytes((0x01, 0x00))
ANALOG_INPUT, ANALOG_VALUE, DEVICE = 0, 2, 8
PRESENT_VALUE, OBJECT_NAME, STATUS_FLAGS, UNITS = 85, 77, 111, 117
DEGREES_CELSIUS, PERCENT_RELATIVE_HUMIDITY = 62, 29
DELTA_CONTROLS = 8  # BACnet vendor identifier
BACNET_SERVICES = {12: "read_property", 14: "read_property_multiple", 15: "write_property"}

AHU_CHANNELS: dict[str, tuple[float, float, float, float]] = {
    "supply_c": (13.2, 0.08, 11.0, 16.0), "return_c": (22.4, 0.05, 20.0, 25.0),
    "humidity": (46.0, 0.3, 35.0, 60.0), "setpoint_c": (21.0, 0.0, 21.0, 21.0),
}
AHU_OBJECTS: dict[tuple[int, int], tuple[str, str, int]] = {  # (type, instance) -> channel, name, units
    (ANALOG_INPUT, 1): ("supply_c", "Supply Air Temp", DEGREES_CELSIUS),
    (ANALOG_INPUT, 2): ("return_c", "Return Air Temp", DEGREES_CELSIUS),
    (ANALOG_INPUT, 3): ("humidity", "Return Air Humidity", PERCENT_RELATIVE_HUMIDITY),
    (ANALOG_VALUE, 1): ("setpoint_c", "Zone Temp Setpoint", DEGREES_CELSIUS),
}
AHU_DEVICES = {"ahu1": 1021, "ahu2": 1022}  # device instances


def bvlc(function: int, npdu: bytes, apdu: bytes) -> bytes:
    return _BVLC.pack(0x81, function, 4 + len(npdu) + len(apdu)) + npdu + apdu


def _object_id(object_type: int, instance: int) -> bytes:
    return (object_type << 22 | instance).to_bytes(4, "big")


def _bacnet_real(value: float) -> bytes:
    return b"\x44" + struct.pack(">f", value)  # application tag 4 (REAL), length 4


def _bacnet_string(text: str) -> bytes:
    data = b"\x00" + text.encode()  # character set 0: UTF-8
    return bytes((0x75, len(data))) + data  # application tag 7, extended length


class AirHandler:
    """A Delta Controls air-handler controller: the property values of :data:`AHU_OBJECTS`."""

    def __init__(self, name: str, host: Host, values: Telemetry) -> None:
        self.name, self.host, self.values = name, host, values
        self.device = AHU_DEVICES[name]

    def property(self, obj: tuple[int, int], prop: int, t_us: int) -> bytes:
        channel, name, units = AHU_OBJECTS[obj]
        if prop == PRESENT_VALUE:
            return _bacnet_real(self.values.value(channel, t_us))
        if prop == OBJECT_NAME:
            return _bacnet_string(f"AHU-{self.name[-1]} {name}")
        if prop == STATUS_FLAGS:
            return bytes((0x82, 0x04, 0x00))  # bit string, 4 unused bits: in-alarm, fault, overridden, out-of-service
        return bytes((0x91, units))  # enumerated


class BacnetClient:
    """The BMS workstation's confirmed requests to the controllers (UDP, 47808 to 47808)."""

    def __init__(self, plant: Plant, bms: Host, out: list[Frame], rng: random.Random) -> None:
        self.plant, self.bms, self.out, self.rng = plant, bms, out, rng
        self.invoke = rng.randrange(256)

    def _send(self, t_us: int, src: Host, dst: Host | None, apdu: bytes, kind: str, request: bool = False) -> None:
        if dst is None:
            payload = bvlc(BVLC_BROADCAST, NPDU_GLOBAL, apdu)
        else:
            payload = bvlc(BVLC_UNICAST, NPDU_EXPECTING_REPLY if request else NPDU_PLAIN, apdu)
        self.out.append(udp_datagram(t_us, src, dst, BACNET_PORT, BACNET_PORT, payload))
        self.plant.count("bacnet", kind)

    def broadcast(self, t_us: int, src: Host, apdu: bytes, kind: str) -> None:
        self._send(t_us, src, None, apdu, kind)

    def confirmed(self, t_us: int, ahu: AirHandler, service: int, request: bytes,
                  answer: Callable[[int], bytes | None]) -> int:
        """A confirmed request and its complex-ACK (``answer`` gives the ACK's service data) or simple-ACK
        (``answer`` gives None). Returns the answer's time."""
        invoke = self.invoke
        self.invoke = (invoke + 1) & 0xFF
        name = BACNET_SERVICES[service]
        self._send(t_us, self.bms, ahu.host, bytes((0x00, 0x05, invoke, service)) + request, name, request=True)
        t_us += self.rng.randint(3 * MS, 18 * MS)
        data = answer(t_us)
        ack = bytes((0x20, invoke, service)) if data is None else bytes((0x30, invoke, service)) + data
        self._send(t_us, ahu.host, self.bms, ack, f"{name}_ack")
        return t_us

    def read_property(self, t_us: int, ahu: AirHandler, obj: tuple[int, int], prop: int = PRESENT_VALUE) -> int:
        request = b"\x0c" + _object_id(*obj) + bytes((0x19, prop))
        return self.confirmed(t_us, ahu, 12, request,
                              lambda t: request + b"\x3e" + ahu.property(obj, prop, t) + b"\x3f")

    def read_property_multiple(self, t_us: int, ahu: AirHandler,
                               wanted: list[tuple[tuple[int, int], tuple[int, ...]]]) -> int:
        request = b"".join(b"\x0c" + _object_id(*obj) + b"\x1e" + b"".join(bytes((0x09, p)) for p in props)
                           + b"\x1f" for obj, props in wanted)

        def answer(t: int) -> bytes:
            return b"".join(b"\x0c" + _object_id(*obj) + b"\x1e"
                            + b"".join(bytes((0x29, p)) + b"\x4e" + ahu.property(obj, p, t) + b"\x4f" for p in props)
                            + b"\x1f" for obj, props in wanted)

        return self.confirmed(t_us, ahu, 14, request, answer)

    def write_property(self, t_us: int, ahu: AirHandler, obj: tuple[int, int], value: float, priority: int) -> int:
        request = (b"\x0c" + _object_id(*obj) + bytes((0x19, PRESENT_VALUE)) + b"\x3e" + _bacnet_real(value)
                   + b"\x3f" + bytes((0x49, priority)))
        return self.confirmed(t_us, ahu, 15, request, lambda _t: None)


def bacnet_bms(bms: str, controllers: tuple[str, ...], at_us: int) -> Conversation:
    """The BMS workstation discovers the air handlers (Who-Is, I-Am) and polls, reads, writes."""

    def conversation(plant: Plant) -> Iterator[Frame]:
        rng = plant.rng(f"bacnet:{bms}")
        station = plant.hosts[bms]
        ahus = [AirHandler(name, plant.hosts[name], plant.device(name, AHU_CHANNELS)) for name in controllers]
        _udp_flow(plant, station, BACNET_PORT, None, BACNET_PORT)
        for ahu in ahus:
            _udp_flow(plant, ahu.host, BACNET_PORT, None, BACNET_PORT)
            _udp_flow(plant, station, BACNET_PORT, ahu.host, BACNET_PORT)
        return _deferred(lambda: _bacnet_frames(plant, station, ahus, rng, at_us))

    return conversation


def _bacnet_frames(plant: Plant, station: Host, ahus: list[AirHandler], rng: random.Random, t0: int) -> list[Frame]:
    out: list[Frame] = []
    bms = BacnetClient(plant, station, out, rng)
    bms.broadcast(t0, station, bytes((0x10, 0x08)), "who_is")
    answers = sorted((t0 + rng.randint(4 * MS, 60 * MS), ahu) for ahu in ahus)
    for t, ahu in answers:  # I-Am: device id, max APDU 1476, no segmentation, vendor
        i_am = (bytes((0x10, 0x00, 0xC4)) + _object_id(DEVICE, ahu.device) + bytes((0x22, 0x05, 0xC4, 0x91, 0x03))
                + bytes((0x21, DELTA_CONTROLS)))
        bms.broadcast(t, ahu.host, i_am, "i_am")
    t = answers[-1][0] + 400 * MS
    inputs = [(ANALOG_INPUT, n) for n in (1, 2, 3)]
    for ahu in ahus:
        arp = arp_exchange(t, station, ahu.host, rng)
        out.extend(arp)
        t = arp[-1][0] + rng.randint(200, 600)
        for obj in inputs:
            t = bms.read_property(t, ahu, obj) + rng.randint(2 * MS, 10 * MS)
    plan = [(t0 + k * 10 * SECOND + rng.randint(0, 20 * MS), "poll")
            for k in range(1, plant.duration_us // (10 * SECOND) + 1)]
    plan += [(int(plant.duration_us * 0.5) + rng.randint(0, 500 * MS), "multiple"),
             (int(plant.duration_us * 0.7) + rng.randint(0, 500 * MS), "write")]
    for when, what in sorted(plan):
        t = max(when, t + 50 * MS)
        if t > plant.duration_us - SECOND:
            break
        if what == "poll":
            for ahu in ahus:
                for obj in inputs:
                    t = bms.read_property(t, ahu, obj) + rng.randint(2 * MS, 10 * MS)
        elif what == "multiple":
            t = bms.read_property_multiple(t, ahus[0], [(inputs[0], (PRESENT_VALUE, STATUS_FLAGS, UNITS)),
                                                        (inputs[1], (PRESENT_VALUE, OBJECT_NAME))])
        else:  # only this workstation reads the setpoint: the write can be applied as it is generated
            setpoint = rng.choice((20.5, 21.5, 22.0, 22.5))
            ahus[0].values.schedule_write(t, "setpoint_c", setpoint)
            t = bms.write_property(t, ahus[0], (ANALOG_VALUE, 1), setpoint, 8)
            t = bms.read_property(t + rng.randint(800 * MS, 1200 * MS), ahus[0], (ANALOG_VALUE, 1))
    return out


DEFAULT_CONVERSATIONS: tuple[Conversation, ...] = (
    hmi_polling("plc1", 10 * MS, pipeline_coils=True),
    hmi_polling("plc2", 23 * MS),
    hmi_polling("plc3", 37 * MS),
    engineering_session("plc2", 0.25),
    arp_refresh("plc1", "hmi", 0.5),
    engineering_abort("plc3", 0.6),
    s7_hmi_polling("plc4", 51 * MS),
    dnp3_polling("rtac", "relay", 64 * MS),
    iec104_scada("scada", "rtu", 78 * MS),
    bacnet_bms("bms", ("ahu1", "ahu2"), 1500 * MS),
    enip_session("ews", "plc5", 0.15),
    s7_engineering("plc4", 0.4),
)


# -- writing -----------------------------------------------------------------------------------------

def write_demo_capture(path: str | Path, seed: int = 1, duration_s: float = 60.0,
                       conversations: Iterable[Conversation] | None = None,
                       hosts: dict[str, Host] | None = None) -> DemoCapture:
    """Write the plant capture (classic pcap, Ethernet, microseconds) and describe what is in it."""
    if duration_s < 10:
        raise ValueError(f"demo capture duration {duration_s:g} s is too short: at least 10 s")
    plant = Plant(seed, duration_s, hosts)
    streams = [conversation(plant) for conversation in (conversations or DEFAULT_CONVERSATIONS)]
    path = Path(path)
    described = DemoCapture(path, seed, START, duration_s, tuple(plant.hosts.values()), plant.flows)
    start_us = int(START.timestamp()) * SECOND
    described.protocol_frames = dict.fromkeys(PROTOCOL_PORTS.values(), 0)
    with path.open("wb") as out:
        out.write(_PCAP_HEADER.pack(0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for t_us, packet in heapq.merge(*streams, key=lambda frame: frame[0]):
            ip = packet.getlayer(IP)
            if ip is not None:
                ip.id = plant.next_ip_id(ip.src)
                protocol = _application(packet)
                if protocol:
                    described.protocol_frames[protocol] += 1
                if protocol == "modbus":
                    described.modbus_frames += 1
            elif packet.haslayer(ARP):
                described.arp_frames += 1
            if packet.haslayer(Dot1Q):
                described.vlan_frames += 1
            data = bytes(packet)
            if len(data) < ETH_MIN_FRAME:
                data += bytes(ETH_MIN_FRAME - len(data))
            seconds, micros = divmod(start_us + t_us, SECOND)
            out.write(_PCAP_RECORD.pack(seconds, micros, len(data), len(data)))
            out.write(data)
            described.packets += 1
    described.modbus_pdus = plant.modbus_pdus
    described.modbus_requests = dict(sorted(plant.modbus_requests.items()))
    described.modbus_exceptions = plant.modbus_exceptions
    order = list(PROTOCOL_PORTS.values())
    described.messages = {p: dict(sorted(plant.messages[p].items()))
                          for p in sorted(plant.messages, key=order.index)}
    return described


def _application(packet: ScapyPacket) -> str:
    """The protocol of a frame's TCP or UDP payload, by server port; "" for none (handshakes, ACKs)."""
    layer = packet.getlayer(TCP)
    if layer is None:
        layer = packet.getlayer(UDP)
    if layer is None or not layer.payload:
        return ""
    return PROTOCOL_PORTS.get(layer.dport) or PROTOCOL_PORTS.get(layer.sport) or ""
