"""The ``store`` fixture: every contract test runs once on SQLite and once on the real Elasticsearch.

The SQLite store is a fresh database file (WAL) under tmp_path. The Elasticsearch
store gets a prefix no other test uses (``es_index_prefix`` from tests/conftest.py,
which deletes the prefix's indices afterwards); its templates are installed by
``check()`` and removed here after the test.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from analyzer.settings import SQLiteSettings
from analyzer.stores import Store
from analyzer.stores.elasticsearch import ElasticsearchStore
from analyzer.stores.sqlite import SQLiteStore
from tests.analyzer.stores.support import es_settings


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[SQLiteStore]:
    store = SQLiteStore(SQLiteSettings(path=tmp_path / "icsmon.db"))
    store.check()
    yield store
    store.close()


@pytest.fixture
def es_store(request: pytest.FixtureRequest) -> Iterator[ElasticsearchStore]:
    url = request.getfixturevalue("es_url")
    prefix = request.getfixturevalue("es_index_prefix")
    store = ElasticsearchStore(es_settings(url, prefix))
    store.check()
    yield store
    store.uninstall_templates()
    store.close()


@pytest.fixture(params=[
    "sqlite",
    pytest.param("elasticsearch", marks=pytest.mark.elasticsearch),
])
def store(request: pytest.FixtureRequest) -> Store:
    """One store per parameter, empty, checked, ready."""
    return request.getfixturevalue("sqlite_store" if request.param == "sqlite" else "es_store")
