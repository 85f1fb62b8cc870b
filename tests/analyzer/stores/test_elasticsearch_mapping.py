"""The generated templates, and what the real Elasticsearch makes of them (types read back from the mapping API)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from elasticsearch import Elasticsearch

from analyzer.alerts import ALERT_FIELDS
from analyzer.stores import Document
from analyzer.stores.elasticsearch import ElasticsearchStore
from analyzer.stores.mapping import alert_fields, event_fields, export, ilm_policies, index_name, templates
from analyzer.stores.semantics import STORE_ID_FIELD
from sensor.schema import all_fields

REPO = Path(__file__).resolve().parents[3]


def leaf(mapping: dict[str, Any], dotted: str) -> dict[str, Any]:
    node: dict[str, Any] = mapping
    for part in dotted.split("."):
        node = node["properties"][part]
    return node


def test_templates_compose_settings_and_generated_mappings() -> None:
    bodies = templates("plant1", shards=2, replicas=0)
    assert set(bodies["component"]) == {"plant1-settings", "plant1-events-mappings", "plant1-alerts-mappings"}
    alerts = bodies["index"]["plant1-alerts"]
    assert alerts["index_patterns"] == ["plant1-alerts-*"]
    assert alerts["composed_of"] == ["plant1-settings", "plant1-alerts-mappings"]
    assert bodies["index"]["plant1-events"]["index_patterns"] == ["plant1-events-*"]
    assert "template" not in alerts  # no ILM unless asked for
    settings = bodies["component"]["plant1-settings"]["template"]["settings"]["index"]
    assert (settings["number_of_shards"], settings["number_of_replicas"]) == (2, 0)

    mapping = bodies["component"]["plant1-alerts-mappings"]["template"]["mappings"]
    assert mapping["dynamic"] is False
    assert leaf(mapping, "icsmon.alert.evidence") == {"type": "object", "enabled": False}
    assert leaf(mapping, "icsmon.triage.notes") == {"type": "object", "enabled": False}
    assert leaf(mapping, "source.ip") == {"type": "ip"}
    assert leaf(mapping, STORE_ID_FIELD)["type"] == "keyword"
    events = bodies["component"]["plant1-events-mappings"]["template"]["mappings"]
    assert "alert" not in events["properties"]["icsmon"]["properties"]
    assert {f.name for f in alert_fields()} == {f.name for f in event_fields()} | {f.name for f in ALERT_FIELDS}


def test_ilm_is_attached_only_when_configured() -> None:
    bodies = templates("icsmon", ilm=True)
    assert bodies["index"]["icsmon-events"]["template"]["settings"]["index"]["lifecycle"] == {"name": "icsmon-events"}
    assert list(export(ilm=True))[:2] == ["_ilm/policy/icsmon-events", "_ilm/policy/icsmon-alerts"]
    assert not any(key.startswith("_ilm") for key in export())


def test_shipped_ilm_policy_file_is_the_generated_one() -> None:
    shipped = json.loads((REPO / "deploy/elasticsearch/ilm-policy.json").read_text())
    assert shipped == ilm_policies("icsmon")
    for name, days in (("icsmon-events", "90d"), ("icsmon-alerts", "365d")):
        phases = shipped[name]["policy"]["phases"]
        assert phases["delete"] == {"min_age": days, "actions": {"delete": {}}}
        actions = {action for phase in phases.values() for action in phase["actions"]}
        assert not actions & {"rollover", "readonly", "forcemerge", "shrink"}  # see the README


def test_daily_index_names() -> None:
    assert index_name("icsmon", "alert", 1767225600000) == "icsmon-alerts-2026.01.01"
    assert index_name("p", "event", 1767225600000 + 86_400_000) == "p-events-2026.01.02"


# --- on the real node ----------------------------------------------------------------------------------------


@pytest.mark.elasticsearch
def test_installed_templates_give_every_schema_field_its_type(es_store: ElasticsearchStore,
                                                              es_client: Elasticsearch) -> None:
    prefix = es_store.prefix
    installed = es_client.indices.get_index_template(name=f"{prefix}-*").body["index_templates"]
    assert {t["name"] for t in installed} == {f"{prefix}-alerts", f"{prefix}-events"}

    es_store.write([
        Document("event", "e", {"@timestamp": "2026-01-01T00:00:00Z", "vendor.note": "not in the schema"}),
        Document("alert", "a", {"@timestamp": "2026-01-01T00:00:00Z", "icsmon.alert.first_seen":
                                "2026-01-01T00:00:00Z"}),
    ])
    events_index, alerts_index = f"{prefix}-events-2026.01.01", f"{prefix}-alerts-2026.01.01"
    mappings = es_client.indices.get_mapping(index=f"{events_index},{alerts_index}").body
    for index, fields in ((events_index, all_fields()), (alerts_index, (*all_fields(), *ALERT_FIELDS))):
        mapping = mappings[index]["mappings"]
        assert mapping["dynamic"] == "false"
        wrong = []
        for field in {f.name: f for f in fields}.values():
            got = leaf(mapping, field.name)
            if got.get("type", "object") != field.type:
                wrong.append(f"{field.name}: {got} (schema: {field.type})")
            if field.type == "object" and got.get("enabled") is not False:
                wrong.append(f"{field.name} is indexed")
        assert wrong == []
        assert "vendor" not in mapping["properties"]
    alerts = mappings[alerts_index]["mappings"]
    assert leaf(alerts, "source.ip")["type"] == "ip"
    assert leaf(alerts, "@timestamp")["type"] == "date"
    assert leaf(alerts, "icsmon.alert.count")["type"] == "long"
    assert leaf(alerts, "rule.description")["type"] == "text"
    settings = es_client.indices.get_settings(index=alerts_index).body[alerts_index]["settings"]["index"]
    assert settings["number_of_replicas"] == "0"
    assert settings["mapping"]["total_fields"]["limit"] == "2000"
