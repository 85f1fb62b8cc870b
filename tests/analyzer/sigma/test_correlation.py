"""Correlation rules on the stream: each type with group-by and timespan, and bounded state."""

from __future__ import annotations

from typing import Any

from analyzer.sigma import Engine, RuleSet
from tests.analyzer.sigma.helpers import EWS, RULES

T0 = 1_700_000_000.0
BURST = "Modbus brute force I/O"
SWEEP = "Modbus unit id sweep"
STOP_DOWNLOAD = "S7 PLC stop followed by a program download from the same host"


def engine(**kwargs: Any) -> Engine:
    return Engine(RuleSet.load([RULES], EWS), **kwargs)


def write(ts: float, src: str = "10.0.0.9", address: int = 40001, **extra: Any) -> dict[str, Any]:
    return {"@timestamp": ts, "network.protocol": "modbus", "modbus.function": "write_single_register",
            "ics.operation": "write", "ics.role": "request", "source.ip": src, "destination.ip": "10.0.1.1",
            "ics.address_start": address, **extra}


def request(ts: float, unit: int, src: str = "10.0.0.66") -> dict[str, Any]:
    return {"@timestamp": ts, "network.protocol": "modbus", "modbus.function": "read_device_identification",
            "ics.operation": "identity", "ics.role": "request", "source.ip": src, "ics.unit": str(unit)}


def s7(ts: float, operation: str, src: str = "10.0.0.9", dst: str = "10.0.2.2") -> dict[str, Any]:
    return {"@timestamp": ts, "network.protocol": "s7comm", "ics.operation": operation, "ics.role": "request",
            "source.ip": src, "destination.ip": dst}


def titles(e: Engine, events: list[dict[str, Any]]) -> list[str]:
    return [d.title for ev in events for d in e.match(ev)]


# -- event_count ------------------------------------------------------------------------------------

def test_event_count_fires_at_the_threshold_within_the_timespan() -> None:
    e = engine()
    writes = [write(T0 + i * 0.4) for i in range(10)]
    results = [e.match(w) for w in writes]
    burst = [d for ds in results for d in ds if d.title == BURST]
    assert [i for i, ds in enumerate(results) if any(d.title == BURST for d in ds)] == [9]
    (detection,) = burst
    assert detection.event is writes[9]
    assert detection.related_events == tuple(writes[:9])
    assert detection.severity == "high" and detection.techniques == ("T0806",)


def test_event_count_starts_over_after_firing() -> None:
    e = engine()
    fired = [i for i in range(25) if any(d.title == BURST for d in e.match(write(T0 + i * 0.1)))]
    assert fired == [9, 19]


def test_event_count_outside_the_timespan_does_not_fire() -> None:
    e = engine()
    assert BURST not in titles(e, [write(T0 + i * 0.7) for i in range(12)])  # 10 writes span 6.3 s > 5 s


def test_event_count_groups_by_every_group_by_field() -> None:
    e = engine()
    events = [write(T0 + i * 0.1, address=40001 + i % 2) for i in range(18)]  # 9 per address
    assert BURST not in titles(e, events)
    events = [write(T0 + 1 + i * 0.1, src=f"10.0.0.{i % 3}") for i in range(27)]  # 9 per source
    assert BURST not in titles(e, events)


def test_referenced_rule_without_generate_is_not_output_itself() -> None:
    e = engine()
    assert e.match(write(T0, src="10.0.0.5")) == []  # counted by the burst and sweep correlations only
    assert e.stats["matches"] == 2


# -- value_count ------------------------------------------------------------------------------------

def test_value_count_distinct_unit_ids_from_one_source() -> None:
    e = engine()
    events = [request(T0 + i, unit) for i, unit in enumerate(range(1, 22))]
    fired = [i for i, ev in enumerate(events) if any(d.title == SWEEP for d in e.match(ev))]
    assert fired == [20]  # gt: 20 -> the 21st distinct unit


def test_value_count_repeated_values_do_not_count() -> None:
    e = engine()
    assert SWEEP not in titles(e, [request(T0 + i * 0.1, unit=1 + i % 5) for i in range(200)])


def test_value_count_separate_sources_and_expired_values() -> None:
    e = engine()
    interleaved = [request(T0 + i, unit=i, src=f"10.0.0.{i % 2}") for i in range(40)]  # 20 each
    assert SWEEP not in titles(e, interleaved)
    e = engine()
    slow = [request(T0 + i * 4, unit=i) for i in range(30)]  # 30 units over 116 s: at most 15 per minute
    assert SWEEP not in titles(e, slow)


def test_value_count_related_events_are_bounded() -> None:
    e = engine(max_related=4)
    detections = [d for i in range(21) for d in e.match(request(T0 + i, unit=i))]
    (sweep,) = [d for d in detections if d.title == SWEEP]
    assert len(sweep.related_events) <= 4
    assert sweep.related_events[-1]["ics.unit"] == "19"


# -- temporal_ordered ---------------------------------------------------------------------------------

def test_temporal_ordered_stop_then_download() -> None:
    e = engine()
    stop, download = s7(T0, "control_stop"), s7(T0 + 300, "program_download")
    assert e.match(stop) == []
    (detection,) = e.match(download)
    assert detection.title == STOP_DOWNLOAD and detection.severity == "critical"
    assert detection.event is download and detection.related_events == (stop,)
    assert detection.techniques == ("T0858", "T0843")


def test_temporal_ordered_wrong_order_late_or_other_host() -> None:
    e = engine()
    assert STOP_DOWNLOAD not in titles(e, [s7(T0, "program_download"), s7(T0 + 10, "control_stop")])
    e = engine()
    assert STOP_DOWNLOAD not in titles(e, [s7(T0, "control_stop"), s7(T0 + 601, "program_download")])
    e = engine()
    assert STOP_DOWNLOAD not in titles(e, [s7(T0, "control_stop"), s7(T0 + 1, "program_download", dst="10.0.2.3")])
    e = engine()
    assert STOP_DOWNLOAD not in titles(e, [s7(T0, "control_stop"), s7(T0 + 1, "program_download", src="10.0.0.8")])


def test_temporal_ordered_with_iso_timestamps() -> None:
    e = engine()
    events = [s7(0, "control_stop"), s7(0, "program_download")]
    events[0]["@timestamp"] = "2024-05-01T10:00:00Z"
    events[1]["@timestamp"] = "2024-05-01T10:09:59.5Z"
    assert titles(e, events) == [STOP_DOWNLOAD]
    e = engine()
    events[1]["@timestamp"] = "2024-05-01T10:10:00.5Z"
    assert titles(e, events) == []


# -- temporal (unordered) with aliases ------------------------------------------------------------------

TEMPORAL = """\
title: Scan
name: scan
logsource: {product: icsmon, service: enip}
detection:
  sel: {ics.operation: discovery}
  condition: sel
---
title: Reset
name: reset
logsource: {product: icsmon, service: cip}
detection:
  sel: {ics.operation: restart}
  condition: sel
---
title: Scan and reset of the same device
id: 66666666-6666-4666-8666-666666666666
correlation:
  type: temporal
  rules: [scan, reset]
  group-by: [device]
  aliases:
    device:
      scan: destination.ip
      reset: destination.ip
  timespan: 30s
  generate: true
level: high
"""


def test_temporal_any_order_with_aliases_and_generate(load) -> None:
    e = Engine(load(TEMPORAL))
    reset = {"@timestamp": T0, "network.protocol": "enip", "ics.operation": "restart", "destination.ip": "10.0.3.3"}
    scan = {"@timestamp": T0 + 20, "network.protocol": "enip", "ics.operation": "discovery",
            "destination.ip": "10.0.3.3"}
    assert [d.title for d in e.match(reset)] == ["Reset"]  # generate: true -> the rules are output too
    detections = e.match(scan)
    assert [d.title for d in detections] == ["Scan", "Scan and reset of the same device"]
    assert detections[1].related_events == (reset,)


def test_temporal_needs_every_rule_in_the_window(load) -> None:
    e = Engine(load(TEMPORAL))
    reset = {"@timestamp": T0, "network.protocol": "enip", "ics.operation": "restart", "destination.ip": "10.0.3.3"}
    late = {"@timestamp": T0 + 31, "network.protocol": "enip", "ics.operation": "discovery",
            "destination.ip": "10.0.3.3"}
    other = {**late, "@timestamp": T0 + 1, "destination.ip": "10.0.3.4"}
    assert [d.title for ev in (reset, other, late) for d in e.match(ev)] == ["Reset", "Scan", "Scan"]


# -- conditions decided at the end of a window -----------------------------------------------------------

QUIET = """\
title: Poll
name: poll
logsource: {product: icsmon, service: modbus}
detection:
  sel: {ics.operation: read}
  condition: sel
---
title: Polling almost stopped
id: 77777777-7777-4777-8777-777777777777
correlation:
  type: event_count
  rules: [poll]
  group-by: [destination.ip]
  timespan: 60s
  condition: {lt: 3}
level: medium
"""


def poll(ts: float, dst: str) -> dict[str, Any]:
    return {"@timestamp": ts, "network.protocol": "modbus", "ics.operation": "read", "destination.ip": dst}


def test_lt_is_decided_when_the_window_closes(load) -> None:
    e = Engine(load(QUIET))
    busy = [poll(T0 + i, "10.0.4.1") for i in range(10)]
    quiet = [poll(T0 + 5, "10.0.4.2"), poll(T0 + 6, "10.0.4.2")]
    assert [d for ev in sorted(busy + quiet, key=lambda x: x["@timestamp"]) for d in e.match(ev)] == []
    (detection,) = e.advance(T0 + 70)  # both windows closed: only the quiet device had fewer than 3
    assert detection.event["destination.ip"] == "10.0.4.2"
    assert detection.related_events == (quiet[0],)
    assert e.advance(T0 + 200) == []


def test_flush_closes_open_windows(load) -> None:
    e = Engine(load(QUIET))
    e.match(poll(T0, "10.0.4.9"))
    assert [d.event["destination.ip"] for d in e.flush()] == ["10.0.4.9"]
    assert e.flush() == []


def test_windows_close_as_event_time_moves_on(load) -> None:
    e = Engine(load(QUIET))
    e.match(poll(T0, "10.0.4.9"))
    detections = e.match(poll(T0 + 61, "10.0.4.8"))  # the first device's window is over
    assert [d.event["destination.ip"] for d in detections] == ["10.0.4.9"]


# -- bounded state -------------------------------------------------------------------------------------

def test_groups_are_capped_and_evictions_counted() -> None:
    e = engine(max_groups=3)
    for i in range(50):
        e.match(write(T0 + i * 0.01, src=f"10.1.0.{i}"))
    state = e.snapshot()["correlation_state"]["8e3f5a4b-3c4d-4e5f-9a6b-8c9d0e1f2a02"]
    assert state == {"groups": 3, "evicted": 47, "fired": 0}


def test_idle_groups_are_dropped() -> None:
    e = engine()
    for i in range(100):
        e.match(write(T0 + i * 0.01, src=f"10.1.0.{i}"))
    e.match(write(T0 + 3600, src="10.2.0.1"))  # an hour later: every earlier group is idle
    state = e.snapshot()["correlation_state"]["8e3f5a4b-3c4d-4e5f-9a6b-8c9d0e1f2a02"]
    assert state["groups"] == 1


def test_sliding_window_entries_are_bounded_by_the_threshold() -> None:
    e = engine()
    corr = next(c for c in e._snap.correlations if c.meta.title == SWEEP)
    for i in range(15):
        e.match(request(T0 + i, unit=i))
    (group,) = corr.state.groups.values()
    assert len(group.entries) == 15 and len(group.sample) <= 10


def test_correlation_of_a_correlation(load) -> None:
    chain = TEMPORAL.replace("  generate: true\n", "") + """\
---
title: Repeated scan and reset
id: 88888888-8888-4888-8888-888888888888
correlation:
  type: event_count
  rules: [66666666-6666-4666-8666-666666666666]
  group-by: [destination.ip]
  timespan: 10m
  condition: {gte: 2}
level: critical
"""
    e = Engine(load(chain))
    out = []
    for k in range(2):
        out += e.match({"@timestamp": T0 + k * 60, "network.protocol": "enip", "ics.operation": "restart",
                        "destination.ip": "10.0.3.3"})
        out += e.match({"@timestamp": T0 + k * 60 + 1, "network.protocol": "enip", "ics.operation": "discovery",
                        "destination.ip": "10.0.3.3"})
    assert [d.title for d in out] == ["Repeated scan and reset"]
