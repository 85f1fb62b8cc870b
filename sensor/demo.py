"""A small synthetic plant capture: the input of ``icsmon demo`` and of tests.

The plant is one flat 10.10.0.0/16 Ethernet segment seen from a trunk mirror
port: an HMI (10.10.1.10) and an engineering workstation (10.10.1.20) talk
Modbus/TCP to three PLCs (10.10.2.11-13); PLC3 sits in VLAN 20, so every frame
to or from it carries an 802.1Q tag. Over ``duration_s`` seconds:

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

Register values come from a tiny simulated PLC (:class:`PlcModel`): a tank
level that random-walks, a temperature drifting on a slow sine, a pump speed
with a little jitter, a setpoint that changes when the engineering
workstation writes it (the HMI's later reads show the new value).

Extending it (DNP3, S7, an attack scenario...): a *conversation* is a callable
``(plant) -> Iterator[Frame]``. Calling it does the setup (registering flows,
scheduling PLC writes) before any frame exists; the iterator then yields
``(microseconds since the start, scapy packet)`` in time order. The writer
merges all conversations by time, numbers IP ids per sending host in capture
order and writes a classic pcap. Pass your own list as ``conversations``.

Determinism: every random choice comes from ``random.Random`` seeded with the
seed and the conversation's name (string seeds hash with SHA-512, not with
Python's per-process hash), timestamps are integer microseconds from
2026-01-05T08:00:00Z, and the pcap is written with :mod:`struct`, so one seed
always gives the same bytes. Scapy builds the frames: this is not the sensor's
per-packet path, and ~1,000 frames take well under a second.
"""

from __future__ import annotations

import heapq
import math
import random
import struct
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import ARP, Dot1Q, Ether
from scapy.packet import Packet as ScapyPacket
from scapy.packet import Raw

__all__ = [
    "START", "DemoCapture", "ExpectedFlow", "Host", "Plant", "PlcModel", "TcpConnection", "ModbusClient",
    "Frame", "Conversation", "DEFAULT_CONVERSATIONS", "HOSTS", "write_demo_capture",
    "hmi_polling", "engineering_session", "engineering_abort", "arp_refresh",
]

START = datetime(2026, 1, 5, 8, 0, 0, tzinfo=UTC)
"""Time of the first microsecond of every demo capture."""

Frame = tuple[int, ScapyPacket]
"""(microseconds since :data:`START`, packet)."""

MODBUS_PORT = 502
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
    )
}
"""The default plant. OUIs are the vendors' real ones (Dell, HP, Schneider/Telemecanique, WAGO)."""

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
    end: str  # "open" (still open when the capture ends), "fin" or "rst"
    modbus_pdus: int = 0  # requests + responses, exception responses included


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

    def __str__(self) -> str:
        return (f"{self.packets:,} packets, {len(self.hosts)} hosts, {len(self.flows)} TCP connections, "
                f"{self.modbus_pdus:,} Modbus PDUs over {self.duration_s:g} s")


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
        ids = self.rng("ip-id")
        self._ip_ids = {h.ip: ids.randrange(1, 65536) for h in self.hosts.values()}

    def rng(self, name: str) -> random.Random:
        """An independent generator per purpose, so adding a conversation never changes the others."""
        return random.Random(f"icsmon-demo:{self.seed}:{name}")

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


def _connect(plant: Plant, client: Host, server: Host, rng: random.Random,
             end: str) -> tuple[TcpConnection, ExpectedFlow]:
    sport = rng.randrange(49152, 65536)  # Windows' dynamic port range
    conn = TcpConnection(client, server, sport, MODBUS_PORT, rng)
    flow = ExpectedFlow(client.ip, sport, server.ip, MODBUS_PORT, "tcp", conn.vlan, end)
    plant.flows.append(flow)
    return conn, flow


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


DEFAULT_CONVERSATIONS: tuple[Conversation, ...] = (
    hmi_polling("plc1", 10 * MS, pipeline_coils=True),
    hmi_polling("plc2", 23 * MS),
    hmi_polling("plc3", 37 * MS),
    engineering_session("plc2", 0.25),
    arp_refresh("plc1", "hmi", 0.5),
    engineering_abort("plc3", 0.6),
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
    ports = {MODBUS_PORT}
    with path.open("wb") as out:
        out.write(_PCAP_HEADER.pack(0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for t_us, packet in heapq.merge(*streams, key=lambda frame: frame[0]):
            ip = packet.getlayer(IP)
            if ip is not None:
                ip.id = plant.next_ip_id(ip.src)
                tcp = packet.getlayer(TCP)
                if tcp is not None and tcp.payload and (tcp.sport in ports or tcp.dport in ports):
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
    return described
