"""Every shared capture through the whole sensor: no dissector bug, no exception, books that balance.

The shared set holds fuzzed and malformed captures (Zeek's Modbus fuzz cases, the OpenICS malformed
DNP3 capture, Wireshark bug reproducers) next to clean ones. Whatever they contain, a capture must end
with every protocol event accounted for and without a single dissector bug.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sensor.capture import CaptureError
from sensor.capture.pcapfile import open_capture
from sensor.pipeline import Sensor
from sensor.settings import SensorSettings

REPO = Path(__file__).resolve().parents[2]
PCAPS = REPO.parent / "shared" / "pcaps"
CAPTURES = sorted(p for p in PCAPS.rglob("*") if p.suffix in (".pcap", ".pcapng") and p.is_file())


def run(path: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    events: list[dict[str, Any]] = []
    sensor = Sensor(SensorSettings(sensor_id="shared"), sink=events.append)
    with open_capture(path) as source:
        try:
            sensor.run(source)
        except CaptureError:
            pass  # a truncated capture: everything readable was processed
    sensor.finish()
    return sensor.stats_dict(), events


def test_the_shared_set_is_there() -> None:
    assert len(CAPTURES) > 150


@pytest.mark.parametrize("path", CAPTURES, ids=[str(p.relative_to(PCAPS)) for p in CAPTURES])
def test_capture_runs_without_dissector_bugs(path: Path) -> None:
    stats, events = run(path)
    bugs = {name: c["bugs"] for name, c in stats["protocols"].items() if c["bugs"]}
    assert bugs == {}, [e["event.reason"] for e in events if "dissector-bug" in str(e.get("event.reason"))][:5]
    assert not [reason for reason in stats["decode_errors"] if reason.startswith("dissector-bug")]
    # Books balance: every event counted once, every protocol event from a registered protocol.
    assert stats["events"] == len(events) == sum(stats["events_by_dataset"].values())
    for name, counters in stats["protocols"].items():
        assert counters["events"] == sum(1 for e in events if e["event.dataset"] == f"icsmon.{name}")
    assert stats["flows"]["active"] == 0 and stats["flows"]["created"] == stats["flows"]["ended"]
