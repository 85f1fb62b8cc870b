"""Shared pytest fixtures.

Elasticsearch: tests marked ``elasticsearch`` talk to the real single node that
``deploy/elasticsearch.sh start`` runs (``deploy/test.sh`` starts it and exports
ICSMON_TEST_ES_URL). A server that does not answer fails those tests instead of
skipping them: a green run must mean the store was really exercised.
"""

from __future__ import annotations

import os
import re
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator

import pytest
from elasticsearch import Elasticsearch

ES_URL_DEFAULT = "http://127.0.0.1:9200"


@pytest.fixture(scope="session")
def es_url() -> str:
    """URL of the test Elasticsearch, checked once per session with a plain HTTP GET.

    The check asks for cluster health, not ``GET /``: the integ-test distribution
    leaves out the rest-root module that serves ``/``.
    """
    url = os.environ.get("ICSMON_TEST_ES_URL", ES_URL_DEFAULT).rstrip("/")
    try:
        with urllib.request.urlopen(url + "/_cluster/health", timeout=10) as response:
            response.read()
    except (urllib.error.URLError, OSError) as exc:
        message = f"Elasticsearch is not running at {url}: start it with bash deploy/elasticsearch.sh start"
        pytest.fail(f"{message} ({exc})", pytrace=False)
    return url


@pytest.fixture(scope="session")
def es_client(es_url: str) -> Iterator[Elasticsearch]:
    """The official client, one per session."""
    client = Elasticsearch(es_url, request_timeout=30)
    yield client
    client.close()


@pytest.fixture
def es_index_prefix(request: pytest.FixtureRequest, es_client: Elasticsearch) -> Iterator[str]:
    """A prefix no other test uses; every index named with it is deleted after the test.

    Index names must be lower case without most punctuation, and the server refuses
    wildcard deletes by default (action.destructive_requires_name), so the indices
    are listed first and deleted by name.
    """
    test_name = re.sub(r"[^a-z0-9_]+", "-", request.node.name.lower()).strip("-_")[:60]
    prefix = f"icsmon-test-{test_name}-{uuid.uuid4().hex[:8]}"
    yield prefix
    found = es_client.indices.get(index=f"{prefix}*", allow_no_indices=True, ignore_unavailable=True)
    names = list(found.body)
    if names:
        es_client.indices.delete(index=",".join(names))


@pytest.fixture(scope="session", autouse=True)
def own_data_directory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Every icsmon run in the tests (in process or as a command) keeps its store, spool and dead
    letters in a temporary folder, never in the user's ~/.local/share/icsmon."""
    data = tmp_path_factory.mktemp("icsmon-data")
    values = {"ICSMON_ANALYZER__SQLITE__PATH": str(data / "icsmon.db"),
              "ICSMON_ANALYZER__DELIVERY__SPOOL_DIR": str(data / "spool"),
              "ICSMON_ANALYZER__DELIVERY__DEAD_LETTER": str(data / "dead-letter.jsonl")}
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
