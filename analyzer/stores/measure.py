"""Write-rate measurement of a store, for the benchmark table.

:func:`measure_write_rate` writes ``n`` fresh documents shaped like the
sensor's (Modbus/TCP request events with their flow fields; alerts raised by a
detector on them, one evidence event each) in batches, and returns documents
per second. Ids are fresh on every call, so each call measures real inserts.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from typing import Any

from analyzer.alerts import Alert, AlertAggregator, Detection
from analyzer.stores import Document, Kind, Store, StoreError
from sensor.events import iso_time

__all__ = ["measure_write_rate", "synthetic_alerts", "synthetic_events"]

_START = 1_767_225_600.0  # 2026-01-01T00:00:00Z
_OPERATIONS = (("read_holding_registers", "read", 3), ("write_single_register", "write", 6),
               ("read_coils", "read", 1), ("write_multiple_coils", "write", 15))


def _event(i: int, tag: str) -> dict[str, Any]:
    function, operation, code = _OPERATIONS[i % len(_OPERATIONS)]
    client = f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"
    ts = _START + i * 0.01
    return {
        "@timestamp": iso_time(ts), "event.kind": "event", "event.category": ["network"], "event.type": ["protocol"],
        "event.dataset": "icsmon.modbus", "event.action": function, "event.sequence": i,
        "source.ip": client, "source.port": 40000 + i % 20000, "destination.ip": "192.168.10.5",
        "destination.port": 502, "source.mac": "00-1b-1b-00-00-01", "destination.mac": "00-1b-1b-00-00-02",
        "network.transport": "tcp", "network.type": "ipv4", "network.protocol": "modbus",
        "network.direction": "to_server", "network.community_id": f"1:{tag}{i:012d}=",
        "observer.id": "bench-sensor", "observer.hostname": "bench", "observer.type": "sensor",
        "observer.product": "icsmon", "observer.ingress.interface.name": "eth1", "icsmon.packet": i + 1,
        "modbus.transaction_id": i & 0xFFFF, "modbus.unit_id": 1, "modbus.function_code": code,
        "modbus.function": function, "ics.function": function, "ics.operation": operation, "ics.role": "request",
        "ics.unit": "1", "ics.address_start": i % 1000, "ics.address_count": 4,
        "ics.tag": [f"hr:{40001 + i % 1000}"],
    }


def synthetic_events(n: int, tag: str | None = None) -> list[Document]:
    """``n`` distinct protocol events (one hundredth of a second apart from 2026-01-01)."""
    tag = tag or uuid.uuid4().hex[:8]
    return [Document("event", f"{tag}-{i}", _event(i, tag)) for i in range(n)]


def synthetic_alerts(n: int, tag: str | None = None) -> list[Document]:
    """``n`` distinct alerts (new aggregation keys), each with its triggering event as evidence."""
    tag = tag or uuid.uuid4().hex[:8]
    alerts: list[Alert] = []
    aggregator = AlertAggregator(alerts.append, max_open=1)
    for i in range(n):
        aggregator.add(Detection(
            detector_type="rule", detector_id=f"bench-{tag}", title="Modbus write from an unexpected client",
            severity="high", event=_event(i, tag), techniques=("T0855",), tactics=("Impair Process Control",),
            description="A client outside the engineering workstations wrote to a PLC."))
    return [Document("alert", a.id, a.to_document(), version=a.version) for a in alerts]


def measure_write_rate(store: Store, kind: Kind, n: int, batch: int = 500) -> float:
    """Documents per second that ``store.write`` accepts, writing ``n`` fresh ``kind`` documents ``batch`` at a time.

    Document generation is not timed; a write that rejects anything raises StoreError (the figure would lie).
    """
    documents: Sequence[Document] = synthetic_alerts(n) if kind == "alert" else synthetic_events(n)
    started = time.perf_counter()
    for i in range(0, len(documents), batch):
        result = store.write(documents[i:i + batch])
        if result.rejected:
            doc, reason = result.rejected[0]
            raise StoreError(f"{store.name}: {len(result.rejected)} {kind}s rejected while measuring, e.g. {reason}")
    elapsed = time.perf_counter() - started
    return n / elapsed if elapsed > 0 else float("inf")
