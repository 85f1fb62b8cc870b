"""The real Elasticsearch that deploy/elasticsearch.sh runs, and the event schema on it.

These tests need the node started by ``bash deploy/elasticsearch.sh start`` (or by
``bash deploy/test.sh``); without it they fail rather than skip.
"""

from __future__ import annotations

from typing import Any

import pytest
from elasticsearch import Elasticsearch

from sensor.schema import DATASET_CONN, elasticsearch_mapping

pytestmark = pytest.mark.elasticsearch

# Two flat, dotted events as the sensor writes them. "vendor.note" is in no schema:
# the mapping's dynamic: false must keep it in _source without indexing it.
EVENTS: dict[str, dict[str, Any]] = {
    "plc": {
        "@timestamp": "2026-01-01T00:00:00Z",
        "source.ip": "10.1.2.3",
        "destination.ip": "fe80::1",
        "source.port": 502,
        "event.dataset": DATASET_CONN,
        "network.community_id": "1:abc",
        "vendor.note": "kept in _source only",
    },
    "hmi": {
        "@timestamp": "2026-02-01T12:00:00Z",
        "source.ip": "10.2.0.9",
        "destination.ip": "192.168.0.10",
        "source.port": 40000,
        "event.dataset": DATASET_CONN,
        "network.community_id": "1:def",
    },
}


def matching_ids(client: Elasticsearch, index: str, query: dict[str, Any]) -> list[str]:
    response = client.search(index=index, query=query, size=10)
    return sorted(hit["_id"] for hit in response["hits"]["hits"])


@pytest.fixture
def event_index(es_client: Elasticsearch, es_index_prefix: str) -> str:
    """An index created with the schema's mapping, holding EVENTS, searchable at once."""
    index = f"{es_index_prefix}-events"
    es_client.indices.create(index=index, mappings=elasticsearch_mapping(),
                             settings={"number_of_shards": 1, "number_of_replicas": 0})
    for doc_id, event in EVENTS.items():
        es_client.index(index=index, id=doc_id, document=event)
    es_client.indices.refresh(index=index)
    return index


def test_round_trip_with_the_official_client(es_client: Elasticsearch, es_index_prefix: str) -> None:
    index = f"{es_index_prefix}-roundtrip"
    es_client.indices.create(index=index, settings={"number_of_shards": 1, "number_of_replicas": 0})
    document = {"message": "write single register on unit 7", "count": 3}
    es_client.index(index=index, id="1", document=document)
    es_client.indices.refresh(index=index)

    response = es_client.search(index=index, query={"match": {"message": "register"}})

    assert response["hits"]["total"]["value"] == 1
    hit = response["hits"]["hits"][0]
    assert (hit["_id"], hit["_source"]) == ("1", document)


def test_schema_mapping_is_what_the_server_holds(es_client: Elasticsearch, event_index: str) -> None:
    mapping = es_client.indices.get_mapping(index=event_index)[event_index]["mappings"]

    assert mapping["dynamic"] == "false"
    assert mapping["properties"]["@timestamp"]["type"] == "date"
    assert mapping["properties"]["source"]["properties"]["ip"]["type"] == "ip"
    assert mapping["properties"]["source"]["properties"]["port"]["type"] == "integer"
    assert mapping["properties"]["network"]["properties"]["community_id"]["type"] == "keyword"


def test_cidr_term_query_on_source_ip(es_client: Elasticsearch, event_index: str) -> None:
    assert matching_ids(es_client, event_index, {"term": {"source.ip": "10.1.0.0/16"}}) == ["plc"]
    assert matching_ids(es_client, event_index, {"term": {"source.ip": "10.2.0.0/16"}}) == ["hmi"]
    assert matching_ids(es_client, event_index, {"term": {"source.ip": "172.16.0.0/12"}}) == []


def test_ipv6_address_and_prefix(es_client: Elasticsearch, event_index: str) -> None:
    assert matching_ids(es_client, event_index, {"term": {"destination.ip": "fe80::1"}}) == ["plc"]
    assert matching_ids(es_client, event_index, {"term": {"destination.ip": "fe80::/10"}}) == ["plc"]
    assert matching_ids(es_client, event_index, {"term": {"destination.ip": "2001:db8::/32"}}) == []


def test_date_range_on_timestamp(es_client: Elasticsearch, event_index: str) -> None:
    new_year = {"range": {"@timestamp": {"gte": "2025-12-31T23:00:00Z", "lt": "2026-01-01T01:00:00Z"}}}
    january = {"range": {"@timestamp": {"gt": "2026-01-01T00:00:00Z", "lt": "2026-02-01T00:00:00Z"}}}

    assert matching_ids(es_client, event_index, new_year) == ["plc"]
    assert matching_ids(es_client, event_index, january) == []


def test_keyword_fields_match_exactly(es_client: Elasticsearch, event_index: str) -> None:
    assert matching_ids(es_client, event_index, {"term": {"event.dataset": DATASET_CONN}}) == ["hmi", "plc"]
    assert matching_ids(es_client, event_index, {"term": {"network.community_id": "1:abc"}}) == ["plc"]
    assert matching_ids(es_client, event_index, {"term": {"source.port": 502}}) == ["plc"]


def test_unknown_field_is_stored_but_not_indexed(es_client: Elasticsearch, event_index: str) -> None:
    stored = es_client.get(index=event_index, id="plc")["_source"]
    mapping = es_client.indices.get_mapping(index=event_index)[event_index]["mappings"]

    assert stored["vendor.note"] == "kept in _source only"
    assert "vendor" not in mapping["properties"]
    assert matching_ids(es_client, event_index, {"exists": {"field": "vendor.note"}}) == []
    assert matching_ids(es_client, event_index, {"match": {"vendor.note": "kept"}}) == []
