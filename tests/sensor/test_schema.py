"""The event schema is the single source of the mapping, the docs and the field list."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from sensor.schema import COMMON_FIELDS, all_fields, elasticsearch_mapping, field_names, markdown_reference

REPO = Path(__file__).resolve().parents[2]


def test_field_names_are_unique_and_documented() -> None:
    names = [f.name for f in all_fields()]
    assert len(names) == len(set(names))
    assert all(f.doc for f in all_fields())


def test_mapping_nests_dotted_names_with_explicit_types() -> None:
    mapping = elasticsearch_mapping()
    assert mapping["dynamic"] is False
    props = mapping["properties"]
    assert props["source"]["properties"]["ip"]["type"] == "ip"
    assert props["@timestamp"]["type"] == "date"
    assert props["network"]["properties"]["vlan"]["properties"]["id"]["type"] == "keyword"
    assert props["event"]["properties"]["duration"]["type"] == "long"


def test_mapping_covers_every_field() -> None:
    mapping = elasticsearch_mapping()
    for name in field_names():
        node = mapping
        for part in name.split("."):
            node = node["properties"][part]
        assert "type" in node, name


def test_docs_are_generated_from_the_schema() -> None:
    """sensor/EVENTS.md is exactly what `icsmon schema` prints (regenerate: see its header)."""
    text = (REPO / "sensor" / "EVENTS.md").read_text()
    assert text == markdown_reference()


def test_emitted_events_only_use_declared_fields(tmp_path: Path) -> None:
    from sensor.capture.pcapfile import open_capture
    from sensor.pipeline import Sensor

    events: list[dict] = []
    sensor = Sensor(sink=events.append)
    capture = REPO.parent / "shared/pcaps/iti/pcaps/ModbusTCP/Modbus/modbus_test.pcap"
    with open_capture(capture) as source:
        sensor.run(source)
    sensor.finish()
    assert events
    declared = field_names()
    used = {k for e in events for k in e}
    assert used <= declared, sorted(used - declared)


def test_schema_command_prints_mapping() -> None:
    out = subprocess.run([sys.executable, "-m", "api.cli", "schema", "--format", "elasticsearch"],
                         capture_output=True, text=True, check=True, cwd=REPO).stdout
    assert json.loads(out) == elasticsearch_mapping()


def test_common_fields_have_ecs_names() -> None:
    names = {f.name for f in COMMON_FIELDS}
    for required in ("@timestamp", "event.kind", "event.dataset", "source.ip", "source.port", "source.mac",
                     "destination.ip", "network.transport", "network.protocol", "network.community_id",
                     "observer.id", "observer.ingress.interface.name"):
        assert required in names
