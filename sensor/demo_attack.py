"""The attack in the demo plant: an intruder's laptop on the control network.

``icsmon demo`` adds these conversations to the plant of :mod:`sensor.demo`, so
the demo shows detections next to normal traffic. An intruder (10.10.1.66, a
Linux laptop plugged into the control VLAN, in no placeholder list) works
through a typical ICS intrusion in the last third of the capture:

1. discovery (T0846, T0888): Modbus Read Device Identification of PLC1 with
   every unit id from 1 to 32, and a burst of BACnet Who-Is broadcasts;
2. impair process control (T0855, T0836, T0806): sixty Write Single Register
   requests to PLC2's setpoint in three seconds, then a Modbus diagnostics
   "force listen only mode" (T0814);
3. PLC4 (S7-300): a PG connection, PLC STOP (T0858/T0881) and a program block
   download request (T0843) -- the stop-then-download sequence;
4. the protection relay: a DNP3 association from a master address the relay
   never saw, disable unsolicited responses (T0878) and a cold restart (T0816);
5. the air handler AHU1: BACnet DeviceCommunicationControl "disable" (T0814)
   and ReinitializeDevice warm start (T0816).

Every frame is built with the demo's own helpers (TCP with realistic
acknowledgements, the simulated devices answer), so the capture stays
deterministic for a seed.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Iterator

from sensor.demo import (
    BACNET_PORT,
    BACNET_SERVICES,
    DNP3_FUNCTIONS,
    DNP3_PORT,
    MODBUS_PORT,
    MS,
    S7_FUNCTIONS,
    S7_PORT,
    S7_TSAP_PG,
    SECOND,
    AirHandler,
    BacnetClient,
    Conversation,
    Dnp3Association,
    Dnp3Outstation,
    Frame,
    Host,
    ModbusClient,
    Plant,
    S7Cpu,
    S7Session,
    TcpLink,
    _connect,
    _deferred,
    _udp_flow,
    arp_exchange,
)

__all__ = ["ATTACK_CONVERSATIONS", "INTRUDER", "attack_hosts", "intrusion"]

INTRUDER = Host("intruder", "unknown", "10.10.1.66", "f4:4d:30:10:01:42", ttl=64, vendor="Elitegroup")
"""The intruder's laptop: no role in the plant, in no placeholder list."""

S7_PLC_STOP, S7_REQUEST_DOWNLOAD = 0x29, 0x1A
DNP3_COLD_RESTART, DNP3_DISABLE_UNSOLICITED = 13, 21
BACNET_DCC, BACNET_REINITIALIZE = 17, 20


def attack_hosts(hosts: dict[str, Host]) -> dict[str, Host]:
    """The plant's hosts plus the intruder (appended: the other hosts' IP ids stay the same)."""
    return {**hosts, INTRUDER.name: INTRUDER}


def intrusion(at: float = 0.7) -> Conversation:
    """The whole intrusion, starting at ``at`` of the capture's duration."""

    def conversation(plant: Plant) -> Iterator[Frame]:
        DNP3_FUNCTIONS.setdefault(DNP3_COLD_RESTART, "cold_restart")
        DNP3_FUNCTIONS.setdefault(DNP3_DISABLE_UNSOLICITED, "disable_unsolicited")
        S7_FUNCTIONS.setdefault(S7_PLC_STOP, "plc_stop")
        S7_FUNCTIONS.setdefault(S7_REQUEST_DOWNLOAD, "request_download")
        BACNET_SERVICES.setdefault(BACNET_DCC, "device_communication_control")
        BACNET_SERVICES.setdefault(BACNET_REINITIALIZE, "reinitialize_device")
        rng = plant.rng("intrusion")
        intruder = plant.hosts[INTRUDER.name]
        start = int(plant.duration_us * at)
        modbus_id = _connect(plant, intruder, plant.hosts["plc1"], rng, "fin", MODBUS_PORT)
        modbus_write = _connect(plant, intruder, plant.hosts["plc2"], rng, "fin", MODBUS_PORT)
        s7 = _connect(plant, intruder, plant.hosts["plc4"], rng, "fin", S7_PORT)
        dnp3 = _connect(plant, intruder, plant.hosts["relay"], rng, "fin", DNP3_PORT)
        _udp_flow(plant, intruder, BACNET_PORT, None, BACNET_PORT)
        _udp_flow(plant, intruder, BACNET_PORT, plant.hosts["ahu1"], BACNET_PORT)
        relay = Dnp3Outstation(plant.device("relay", {}), rng)

        def frames() -> list[Frame]:
            out: list[Frame] = []
            t = _identification_sweep(plant, modbus_id, rng, start, out)
            t = _write_burst(plant, modbus_write, rng, t + 2 * SECOND, out)
            t = _s7_stop_and_download(plant, s7, rng, t + 2 * SECOND, out)
            t = _dnp3_restart(plant, dnp3, relay, rng, t + 2 * SECOND, out)
            _bacnet_takeover(plant, intruder, rng, t + 2 * SECOND, out)
            out.sort(key=lambda frame: frame[0])
            return out

        return _deferred(frames)

    return conversation


def _identification_sweep(plant: Plant, connection: tuple, rng: random.Random, t: int, out: list[Frame]) -> int:
    """Read Device Identification (basic) with every unit id from 1 to 32, one after the other."""
    conn, flow = connection
    out += arp_exchange(t, conn.client, conn.server, rng)
    out += conn.handshake(t + 2 * MS)
    t = out[-1][0] + rng.randint(5 * MS, 20 * MS)
    for unit in range(1, 33):
        client = ModbusClient(plant, conn, flow, unit=unit, first_tid=unit)
        frames, t = client.transact(t, [bytes((0x2B, 0x0E, 0x01, 0x00))])
        out += frames
        t += rng.randint(15 * MS, 40 * MS)
    out.append(conn.ack(t, True))
    out += conn.close(t + rng.randint(20 * MS, 60 * MS))
    return out[-1][0]


def _write_burst(plant: Plant, connection: tuple, rng: random.Random, t: int, out: list[Frame]) -> int:
    """Sixty writes of PLC2's setpoint register in about three seconds, then force listen only mode."""
    conn, flow = connection
    out += conn.handshake(t)
    t = out[-1][0] + rng.randint(5 * MS, 20 * MS)
    client = ModbusClient(plant, conn, flow, unit=1, first_tid=0x4000)
    for _ in range(60):
        frames, t = client.transact(t, [bytes((0x06,)) + struct.pack(">HH", 4, rng.choice((0, 9999, 65535)))])
        out += frames
        t += rng.randint(20 * MS, 50 * MS)
    frames, t = client.transact(t, [bytes((0x08,)) + struct.pack(">HH", 0x0004, 0)])  # force listen only mode
    out += frames
    out.append(conn.ack(t + rng.randint(20 * MS, 60 * MS), True))
    out += conn.close(t + rng.randint(100 * MS, 300 * MS))
    return out[-1][0]


def _s7_stop_and_download(plant: Plant, connection: tuple, rng: random.Random, t: int, out: list[Frame]) -> int:
    conn, _flow = connection
    link = TcpLink(conn, out)
    session = S7Session(plant, link, S7Cpu(plant.plcs[conn.server.name]), rng, S7_TSAP_PG)
    t = session.connect(link.handshake(t) + rng.randint(5 * MS, 20 * MS))
    service = b"P_PROGRAM"
    stop = bytes((S7_PLC_STOP, 0, 0, 0, 0, 0, len(service))) + service
    t = session.job(t + rng.randint(200 * MS, 600 * MS), stop, b"", lambda _t: (bytes((S7_PLC_STOP, 0x07)), b""))
    # Request download of FC 1 into the passive file system: "_" block type "0C" number "00001" "P",
    # then "1" + load memory length and MC7 length (six digits each).
    name = b"_0C00001P"
    lengths = b"1000256000128"
    download = (bytes((S7_REQUEST_DOWNLOAD, 0x00, 0x01, 0x00, 0, 0, 0, 0, len(name))) + name
                + bytes((len(lengths),)) + lengths)
    t = session.job(t + rng.randint(1 * SECOND, 2 * SECOND), download, b"",
                    lambda _t: (bytes((S7_REQUEST_DOWNLOAD,)), b""))
    return link.close(t + rng.randint(50 * MS, 200 * MS))


def _dnp3_restart(plant: Plant, connection: tuple, relay: Dnp3Outstation, rng: random.Random, t: int,
                  out: list[Frame]) -> int:
    conn, _flow = connection
    link = TcpLink(conn, out)
    dnp = Dnp3Association(plant, link, relay, rng, master_address=100)
    t = link.handshake(t) + rng.randint(5 * MS, 20 * MS)
    classes = bytes((60, 2, 0x06, 60, 3, 0x06, 60, 4, 0x06))  # class 1, 2, 3 data, all points
    t = dnp.request(t, DNP3_DISABLE_UNSOLICITED, classes)
    # Cold restart: the outstation answers with the time it needs (g52v2, qualifier 07, count 1), in ms.
    t = dnp.request(t + rng.randint(300 * MS, 900 * MS), DNP3_COLD_RESTART, b"",
                    lambda _t: bytes((52, 2, 0x07, 1)) + struct.pack("<H", 5000))
    return link.close(t + rng.randint(50 * MS, 200 * MS))


def _bacnet_takeover(plant: Plant, intruder: Host, rng: random.Random, t: int, out: list[Frame]) -> int:
    bacnet = BacnetClient(plant, intruder, out, rng)
    for _ in range(40):  # a Who-Is flood: every device on the network answers nothing new
        bacnet.broadcast(t, intruder, bytes((0x10, 0x08)), "who_is")
        t += rng.randint(30 * MS, 90 * MS)
    ahu = AirHandler("ahu1", plant.hosts["ahu1"], plant.device("ahu1", {}))
    # DeviceCommunicationControl: duration 60 min (context 0), disable (context 1 = 1).
    t = bacnet.confirmed(t + 200 * MS, ahu, BACNET_DCC, bytes((0x09, 60, 0x19, 0x01)), lambda _t: None)
    # ReinitializeDevice: warmstart (context 0 = 1).
    return bacnet.confirmed(t + rng.randint(500 * MS, 1500 * MS), ahu, BACNET_REINITIALIZE, bytes((0x09, 0x01)),
                            lambda _t: None)


ATTACK_CONVERSATIONS: tuple[Conversation, ...] = (intrusion(0.7),)
"""What ``icsmon demo`` adds to :data:`sensor.demo.DEFAULT_CONVERSATIONS`."""
