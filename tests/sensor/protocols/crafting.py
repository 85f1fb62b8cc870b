"""Crafting helpers shared by the protocol tests: captures written by hand, and the fuzz driver.

* ``tcp_records`` / ``udp_frame`` build Ethernet/IPv4 frames (no scapy, so thousands of frames are
  cheap); ``write_pcap`` writes them as a classic little-endian pcap (microsecond timestamps).
* ``sensor_events`` runs a capture through the whole sensor with one dissector.
* ``drive`` feeds hostile chunks to a session and checks the only outcomes the dissector contract
  allows: events with declared fields, or the one documented ProtocolViolation.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

from sensor.capture import CaptureError
from sensor.capture.pcapfile import open_capture
from sensor.dissect import OPERATIONS, Dissector, Event, ProtocolViolation, Session
from sensor.pipeline import Sensor
from sensor.settings import SensorSettings

# -- writing captures -------------------------------------------------------------------------------

_PCAP_HEADER = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)  # version 2.4, snaplen, Ethernet
_RECORD = struct.Struct("<IIII")
_IPV4 = struct.Struct("!BBHHHBBH4s4s")
_MAC = bytes.fromhex("020000000001"), bytes.fromhex("020000000002")  # client, server
SERVER = bytes([10, 0, 255, 2])


def _checksum(header: bytes) -> int:
    total = sum(struct.unpack(f"!{len(header) // 2}H", header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _ipv4(src: bytes, dst: bytes, proto: int, payload: bytes) -> bytes:
    """An IPv4 header (DF set, TTL 64, valid checksum) in front of ``payload``."""
    ip = bytearray(_IPV4.pack(0x45, 0, 20 + len(payload), 0, 0x4000, 64, proto, 0, src, dst))
    ip[10:12] = struct.pack("!H", _checksum(bytes(ip)))
    return bytes(ip) + payload


def _tcp_frame(src: tuple[bytes, int], dst: tuple[bytes, int], seq: int, ack: int, flags: int, payload: bytes,
               to_server: bool) -> bytes:
    tcp = struct.pack("!HHIIBBHHH", src[1], dst[1], seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 5 << 4, flags, 65535, 0, 0)
    macs = _MAC[1] + _MAC[0] if to_server else _MAC[0] + _MAC[1]
    return macs + b"\x08\x00" + _ipv4(src[0], dst[0], 6, tcp + payload)


def udp_frame(src: tuple[bytes, int], dst: tuple[bytes, int], payload: bytes) -> bytes:
    """One UDP datagram (address, port) -> (address, port) as an Ethernet frame (no UDP checksum)."""
    udp = struct.pack("!HHHH", src[1], dst[1], 8 + len(payload), 0) + payload
    return _MAC[1] + _MAC[0] + b"\x08\x00" + _ipv4(src[0], dst[0], 17, udp)


def tcp_records(segments: Sequence[tuple[bool, bytes]], server_port: int, server: bytes = SERVER, client: int = 1,
                port: int = 40000, t0: float = 1.7e9, step: float = 0.001) -> list[tuple[float, bytes]]:
    """One TCP connection 10.0.<client>:port -> server:server_port as timestamped frames: the handshake,
    one segment per item (True: towards the server), then FIN both ways."""
    c = (bytes([10, 0, client >> 8 & 0xFF, client & 0xFF]), port)
    s = (server, server_port)
    cseq, sseq, ts = 1000, 5000, t0
    out = [(ts, _tcp_frame(c, s, cseq, 0, 0x02, b"", True)), (ts, _tcp_frame(s, c, sseq, cseq + 1, 0x12, b"", False)),
           (ts, _tcp_frame(c, s, cseq + 1, sseq + 1, 0x10, b"", True))]
    cseq += 1
    sseq += 1
    for to_server, payload in segments:
        ts += step
        if to_server:
            out.append((ts, _tcp_frame(c, s, cseq, sseq, 0x18, payload, True)))
            cseq += len(payload)
        else:
            out.append((ts, _tcp_frame(s, c, sseq, cseq, 0x18, payload, False)))
            sseq += len(payload)
    out.append((ts + step, _tcp_frame(c, s, cseq, sseq, 0x11, b"", True)))
    out.append((ts + step, _tcp_frame(s, c, sseq, cseq + 1, 0x11, b"", False)))
    out.append((ts + 2 * step, _tcp_frame(c, s, cseq + 1, sseq + 1, 0x10, b"", True)))
    return out


def write_pcap(path: Path, records: Sequence[tuple[float, bytes]]) -> Path:
    """Write (timestamp, Ethernet frame) records as a pcap file; returns ``path``."""
    with path.open("wb") as f:
        f.write(_PCAP_HEADER)
        for ts, frame in records:
            sec = int(ts)
            f.write(_RECORD.pack(sec, int(round((ts - sec) * 1e6)), len(frame), len(frame)))
            f.write(frame)
    return path


# -- hostile bytes ----------------------------------------------------------------------------------


def _finite_number(value: object) -> bool:
    return isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))


def drive(session: Session, chunks: Sequence[tuple[bool, bytes | int]],
          declared_fields: Collection[str]) -> list[Event]:
    """Feed chunks (an int is a gap of that many bytes) until the session refuses the flow, then finish it.

    Only events or ProtocolViolation may come out; every event (finish's included, which are returned
    too) uses declared fields only, names its action, has an operation of the closed vocabulary and
    finite numbers as values.
    """
    events: list[Event] = []
    try:
        for to_server, chunk in chunks:
            if isinstance(chunk, int):
                session.on_gap(chunk, to_server)
            else:
                events += session.feed(chunk, to_server, 1.0)
    except ProtocolViolation as exc:
        assert isinstance(exc.reason, str) and exc.offset >= 0
    events += session.finish(2.0)
    for event in events:
        assert set(event) <= set(declared_fields), set(event) - set(declared_fields)
        assert isinstance(event["event.action"], str), event
        assert event["ics.operation"] in OPERATIONS, event["ics.operation"]
        assert all(_finite_number(v) for v in event.get("ics.values", ())), event["ics.values"]
    return events


# -- running the sensor --------------------------------------------------------------------------------


def sensor_events(capture: Path, dissector: Dissector) -> tuple[list[Event], dict[str, Any]]:
    """``dissector``'s events from ``capture`` through the whole sensor, and the run's statistics.

    A truncated capture is not an error here: what was readable counts (as tshark does)."""
    events: list[Event] = []
    sensor = Sensor(SensorSettings(sensor_id="test"), sink=events.append, dissectors=[dissector])
    with open_capture(capture) as source:
        try:
            sensor.run(source)
        except CaptureError:
            pass
    sensor.finish()
    dataset = "icsmon." + dissector.name
    return [e for e in events if e.get("event.dataset") == dataset], sensor.stats_dict()
