"""The demo's intrusion: crafted correctly (every dissector decodes it) and deterministic."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from sensor.capture.pcapfile import open_capture
from sensor.demo import DEFAULT_CONVERSATIONS, HOSTS, write_demo_capture
from sensor.demo_attack import ATTACK_CONVERSATIONS, INTRUDER, attack_hosts
from sensor.pipeline import Sensor
from sensor.settings import SensorSettings


def run(path: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    events: list[dict[str, Any]] = []
    sensor = Sensor(SensorSettings(sensor_id="t"), sink=events.append)
    with open_capture(path) as source:
        sensor.run(source)
    sensor.finish()
    return events, sensor.stats_dict()


def attack_capture(path: Path) -> Path:
    write_demo_capture(path, conversations=DEFAULT_CONVERSATIONS + ATTACK_CONVERSATIONS, hosts=attack_hosts(HOSTS))
    return path


def test_the_intrusion_decodes_cleanly_in_every_protocol(tmp_path: Path) -> None:
    events, stats = run(attack_capture(tmp_path / "attack.pcap"))
    assert stats["decode_errors"] == {} or not any(k.startswith("dissector-bug") for k in stats["decode_errors"])
    assert all(p["bugs"] == 0 and p["violations"] == 0 for p in stats["protocols"].values())
    from_intruder = [e for e in events if INTRUDER.ip in (e.get("source.ip"), e.get("destination.ip"))
                     and e["event.dataset"] != "icsmon.conn"]
    assert not [e for e in from_intruder if "error" in e.get("event.type", ())]
    requests = Counter((e["network.protocol"], e["ics.function"]) for e in from_intruder
                       if e.get("ics.role") == "request")
    assert requests[("modbus", "encapsulated_interface_transport")] == 32
    assert len({e["ics.unit"] for e in from_intruder if e["network.protocol"] == "modbus"
                and e.get("ics.function") == "encapsulated_interface_transport"}) == 32
    assert requests[("modbus", "write_single_register")] == 60
    assert requests[("bacnet", "who_is")] == 40
    operations = {(e["network.protocol"], e["ics.operation"]) for e in from_intruder if e.get("ics.role") == "request"}
    assert {("s7comm", "control_stop"), ("s7comm", "program_download"), ("dnp3", "restart"),
            ("bacnet", "restart"), ("modbus", "mode_change")} <= operations


def test_the_benign_plant_is_unchanged_and_the_intrusion_is_deterministic(tmp_path: Path) -> None:
    benign = write_demo_capture(tmp_path / "benign.pcap")
    first = attack_capture(tmp_path / "a.pcap").read_bytes()
    assert attack_capture(tmp_path / "b.pcap").read_bytes() == first
    assert INTRUDER.name not in {h.name for h in benign.hosts} and len(first) > benign.path.stat().st_size
