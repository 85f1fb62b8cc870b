"""The engine on the sensor's own events from shared captures, as the live sensor feeds it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from analyzer.alerts import Detection
from analyzer.sigma import Engine, RuleSet
from sensor.capture.pcapfile import open_capture
from sensor.pipeline import Sensor
from sensor.settings import SensorSettings
from tests.analyzer.sigma.helpers import EWS, RULES

PCAPS = Path(__file__).resolve().parents[4] / "shared" / "pcaps"
MODBUS = PCAPS / "icsnpp-modbus" / "testing" / "traces" / "modbus_example.pcap"
S7_STOP = PCAPS / "iti" / "pcaps" / "s7" / "snap7_s300_stop.pcapng"
S7_DOWNLOAD = PCAPS / "iti" / "pcaps" / "s7" / "s7comm_downloading_block_db1.pcap"


def sensor_events(path: Path) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    sensor = Sensor(SensorSettings(sensor_id="sigma-test"), sink=events.append)
    with open_capture(path) as source:
        sensor.run(source)
    sensor.finish()
    return events


def detect(engine: Engine, events: list[dict[str, Any]]) -> list[Detection]:
    return [d for event in events for d in engine.match(event)] + engine.flush()


def test_modbus_writes_from_a_host_that_is_not_an_engineering_workstation() -> None:
    events = sensor_events(MODBUS)
    writes = [e for e in events if e.get("ics.operation") == "write" and e.get("ics.role") == "request"]
    assert len(writes) == 8
    detections = detect(Engine(RuleSet.load([RULES], EWS)), events)
    assert [d.event for d in detections] == writes
    assert {d.title for d in detections} == {"Modbus write from a host that is not an engineering workstation"}
    assert all(d.techniques == ("T0855",) and isinstance(d.event["@timestamp"], float) for d in detections)
    # The capture's client is an engineering workstation: nothing.
    assert detect(Engine(RuleSet.load([RULES], {"engineering_workstations": ["127.0.0.1"]})), events) == []


def test_s7_stop_then_program_download_from_the_same_host() -> None:
    (stop,) = [e for e in sensor_events(S7_STOP) if e.get("ics.operation") == "control_stop"
               and e.get("ics.role") == "request"]
    download = sensor_events(S7_DOWNLOAD)
    first_download = next(e for e in download if e.get("ics.operation") == "program_download")
    # The stop came from another lab: move it onto the download's flow, 5 minutes before it.
    stop = {**stop, "source.ip": first_download["source.ip"], "destination.ip": first_download["destination.ip"],
            "@timestamp": first_download["@timestamp"] - 300}
    detections = detect(Engine(RuleSet.load([RULES], EWS)), [stop, *download])
    (detection,) = detections
    assert detection.title == "S7 PLC stop followed by a program download from the same host"
    assert detection.severity == "critical"
    assert detection.event is first_download and detection.related_events == (stop,)
    late = {**stop, "@timestamp": first_download["@timestamp"] - 601}
    assert detect(Engine(RuleSet.load([RULES], EWS)), [late, *download]) == []
