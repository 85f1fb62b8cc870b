"""Building events in the documented schema, and writing them as JSON lines.

In memory an event is a flat dict keyed by the dotted names of
:mod:`sensor.schema`; time fields (``@timestamp``, ``event.start``,
``event.end``) are epoch seconds as floats and become ISO 8601 strings only
when written. List-valued fields are tuples so that the per-flow common part
can be shared between events safely.
"""

from __future__ import annotations

import os
import sys
import time
from typing import IO, Any

import orjson

from sensor.community_id import community_id
from sensor.decode import split_key
from sensor.flows import Flow
from sensor.schema import DATASET_CONN, DATASET_DECODE_ERROR

__all__ = ["EventWriter", "Timestamp", "flow_base", "conn_start", "conn_end", "decode_error", "iso_time",
           "with_iso_times"]

TRANSPORTS = {6: "tcp", 17: "udp", 1: "icmp", 58: "ipv6-icmp"}
TIME_FIELDS = ("@timestamp", "event.start", "event.end")
_CATEGORY = ("network",)


def flow_info(flow: Flow) -> tuple[Any, ...]:
    if flow.info is None:
        flow.info = split_key(flow.key)
    return flow.info


def flow_base(flow: Flow, observer: dict[str, Any]) -> dict[str, Any]:
    """Fields every event of this flow shares (built once per flow)."""
    if flow.base is not None:
        return flow.base
    src, dst, sport, dport, proto, vlans, family = flow_info(flow)
    base: dict[str, Any] = {
        "event.kind": "event",
        "event.category": _CATEGORY,
        "source.ip": src,
        "destination.ip": dst,
        "network.transport": TRANSPORTS.get(proto, str(proto)),
        "network.type": family,
        **observer,
        "observer.ingress.interface.name": flow.interface,
    }
    if proto in (6, 17):
        # ICMP flows are keyed without type/code, so they get no Community ID.
        base["network.community_id"] = _community_id(flow, sport, dport, proto)
        base["source.port"] = sport
        base["destination.port"] = dport
    if flow.src_mac:
        base["source.mac"] = flow.src_mac
        base["destination.mac"] = flow.dst_mac
    if vlans:
        base["network.vlan.id"] = str(vlans[0])
        if len(vlans) > 1:
            base["network.inner.vlan.id"] = str(vlans[1])
    flow.base = base
    return base


def _community_id(flow: Flow, sport: int, dport: int, proto: int) -> str:
    a = 16 if len(flow.key) >= 37 else 4
    return community_id(flow.key[:a], flow.key[a:2 * a], proto, sport, dport)


def conn_start(flow: Flow, observer: dict[str, Any]) -> dict[str, Any]:
    ev = dict(flow_base(flow, observer))
    ev["@timestamp"] = flow.first
    ev["event.dataset"] = DATASET_CONN
    ev["event.type"] = ("connection", "start")
    ev["event.action"] = "connection-start"
    ev["event.start"] = flow.first
    if flow.midstream:
        ev["icsmon.flow.midstream"] = True
    return ev


def conn_end(flow: Flow, ts: float, observer: dict[str, Any]) -> dict[str, Any]:
    ev = dict(flow_base(flow, observer))
    c, s = flow.client, flow.server
    ev.update({
        "@timestamp": ts,
        "event.dataset": DATASET_CONN,
        "event.type": ("connection", "end"),
        "event.action": "connection-end",
        "event.start": flow.first,
        "event.end": flow.last,
        "event.duration": int(round((flow.last - flow.first) * 1e9)),
        "event.reason": flow.state,
        "icsmon.flow.state": flow.state,
        "source.bytes": c.bytes,
        "source.packets": c.packets,
        "destination.bytes": s.bytes,
        "destination.packets": s.packets,
        "network.bytes": c.bytes + s.bytes,
        "network.packets": c.packets + s.packets,
    })
    if flow.dissector is not None:
        ev["network.protocol"] = flow.dissector.name
    if flow.history:
        ev["icsmon.flow.history"] = flow.history
    if flow.midstream:
        ev["icsmon.flow.midstream"] = True
    missed = (c.stream.missed + s.stream.missed) if c.stream and s.stream else 0
    if missed:
        ev["icsmon.flow.missed_bytes"] = missed
    return ev


def decode_error(flow: Flow, ts: float, observer: dict[str, Any], layer: str, reason: str,
                 offset: int) -> dict[str, Any]:
    ev = dict(flow_base(flow, observer))
    ev.update({
        "@timestamp": ts,
        "event.dataset": DATASET_DECODE_ERROR,
        "event.type": ("protocol", "error"),
        "event.action": "decode-error",
        "event.reason": reason,
        "network.protocol": layer,
        "icsmon.error.layer": layer,
        "icsmon.error.offset": offset,
    })
    return ev


class Timestamp(float):
    """A protocol event's time: epoch seconds, a float to every reader, ISO 8601 text when written.

    The pipeline makes one per packet; the JSON writer turns it into text through orjson's
    ``default`` hook, so an event is serialised without first being copied.
    """

    __slots__ = ()


_second_cache: list[Any] = [None, ""]


def iso_time(ts: float) -> str:
    """Epoch seconds -> ``2026-01-05T08:00:00.123456Z`` (cached per second: hot path)."""
    sec, micro = divmod(round(ts * 1e6), 1_000_000)
    if _second_cache[0] != sec:
        _second_cache[0] = sec
        _second_cache[1] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
    return f"{_second_cache[1]}.{micro:06d}Z"


def with_iso_times(event: dict[str, Any]) -> dict[str, Any]:
    """The event with its time fields as ISO 8601 text: the event itself when none is a number, else a copy."""
    out = event
    for name in TIME_FIELDS:
        value = event.get(name)
        if value.__class__ is float or value.__class__ is Timestamp or value.__class__ is int:
            if out is event:
                out = dict(event)
            out[name] = iso_time(value)
    return out


_dumps = orjson.dumps
_APPEND_NEWLINE = orjson.OPT_APPEND_NEWLINE


def _json_default(value: Any) -> str:
    if value.__class__ is Timestamp:
        return iso_time(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def to_json(event: dict[str, Any]) -> bytes:
    """One event as a JSON line (time fields as ISO 8601 strings)."""
    if event.get("@timestamp").__class__ is not Timestamp or "event.start" in event or "event.end" in event:
        event = with_iso_times(event)
    return _dumps(event, default=_json_default, option=_APPEND_NEWLINE)


class EventWriter:
    """Writes events as JSON lines to a path, or to stdout for ``-``."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = str(path)
        self._own = self.path != "-"
        self._out: IO[bytes] = open(self.path, "wb", buffering=1 << 20) if self._own else sys.stdout.buffer
        self.written = 0

    def __call__(self, event: dict[str, Any]) -> None:
        if event.get("@timestamp").__class__ is Timestamp and "event.start" not in event and "event.end" not in event:
            self._out.write(_dumps(event, default=_json_default, option=_APPEND_NEWLINE))  # to_json, inlined
        else:
            self._out.write(to_json(event))
        self.written += 1

    def flush(self) -> None:
        """Hand buffered lines to the OS (safe from another thread: the file object locks)."""
        self._out.flush()

    def close(self) -> None:
        if self._own:
            self._out.close()
        else:
            self._out.flush()
