"""analyzer.settings: the store choice and the Elasticsearch connection settings, and create_store."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from pydantic import ValidationError

from analyzer.settings import AnalyzerSettings, ElasticsearchSettings, SQLiteSettings
from analyzer.stores import create_store
from analyzer.stores.elasticsearch import ElasticsearchStore
from analyzer.stores.sqlite import SQLiteStore


def test_sqlite_is_the_default(tmp_path: Path) -> None:
    settings = AnalyzerSettings()
    assert settings.store_kind == "sqlite"
    assert SQLiteSettings().path == Path.home() / ".local/share/icsmon/icsmon.db"
    store = create_store(AnalyzerSettings(sqlite=SQLiteSettings(path=tmp_path / "x.db")))
    assert isinstance(store, SQLiteStore)
    store.close()


def test_an_elasticsearch_url_switches_the_store() -> None:
    settings = AnalyzerSettings(elasticsearch=ElasticsearchSettings(url="https://es1:9200, https://es2:9200"))
    assert settings.store_kind == "elasticsearch"
    assert settings.elasticsearch.urls == ["https://es1:9200", "https://es2:9200"]
    store = create_store(settings)
    assert isinstance(store, ElasticsearchStore)
    store.close()
    assert AnalyzerSettings(store="sqlite", elasticsearch={"url": "http://es:9200"}).store_kind == "sqlite"


@pytest.mark.parametrize(("values", "message"), [
    ({"url": "es.example:9200"}, "is not an http:// or https:// URL"),
    ({"url": "http://es:9200", "index_prefix": "ICS*"}, "lower-case letters"),
    ({"url": "http://es:9200", "username": "ana"}, "username and password go together"),
    ({"url": "http://es:9200", "api_key": "abc", "username": "a", "password": "b-long-secret"}, "either api_key"),
    ({"url": "http://es:9200", "username": "elastic", "password": "changeme"}, "well-known placeholder"),
    ({"url": "https://es:9200", "ca_file": "/nonexistent/ca.pem"}, "CA file /nonexistent/ca.pem does not exist"),
    ({"url": "http://es:9200", "bulk_max_docs": 0}, "greater than or equal to 1"),
])
def test_bad_elasticsearch_settings_are_refused(values: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message.replace("*", r"\*")):
        ElasticsearchSettings(**values)


def test_store_elasticsearch_needs_a_url() -> None:
    with pytest.raises(ValidationError, match="elasticsearch.url is not set"):
        AnalyzerSettings(store="elasticsearch")


def test_secrets_stay_out_of_reprs_and_messages() -> None:
    key = base64.b64encode(b"key-id:very-secret").decode()
    settings = ElasticsearchSettings(url="https://user:pw@es:9200", api_key=key)
    assert key not in repr(settings)
    store = ElasticsearchStore(settings)
    assert store.url == "https://es:9200"
    assert store._who() == "API key id 'key-id'"
    store.close()
