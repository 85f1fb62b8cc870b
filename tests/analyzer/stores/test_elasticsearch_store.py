"""ElasticsearchStore behaviour that only Elasticsearch has: rejections, retries, start-up errors, indices.

Retries and outages are staged with a small HTTP proxy in front of the real node that
answers chosen requests itself (429, 503, or a rewritten bulk item) and forwards the
rest; credentials errors with a stand-in server that answers like a secured cluster
(the test node runs without security).
"""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from elasticsearch import Elasticsearch

from analyzer.stores import Document, Query, StoreAuthError, StoreUnavailable
from analyzer.stores.elasticsearch import ElasticsearchStore
from analyzer.stores.measure import synthetic_alerts, synthetic_events
from tests.analyzer.stores.support import es_settings

pytestmark = pytest.mark.elasticsearch

# A stand-in answer: (status, JSON body) or None to forward the request to the real node.
Answer = Callable[[str, str, bytes], tuple[int, Any] | None]


class Proxy:
    """HTTP server on 127.0.0.1 that lets ``answer`` reply, else forwards to ``upstream``.

    ``rewrite(path, response_json)`` may change a forwarded answer. Every request is recorded as
    (method, path, body length).
    """

    def __init__(self, upstream: str | None, answer: Answer | None = None,
                 rewrite: Callable[[str, Any], Any] | None = None) -> None:
        self.upstream, self.answer, self.rewrite = upstream, answer, rewrite
        self.requests: list[tuple[str, str, int]] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                proxy.requests.append((self.command, self.path, len(body)))
                reply = proxy.answer(self.command, self.path, body) if proxy.answer else None
                if reply is None:
                    assert proxy.upstream is not None
                    headers = {k: v for k, v in self.headers.items() if k.lower() in ("content-type", "accept")}
                    request = urllib.request.Request(proxy.upstream + self.path, data=body or None,
                                                     method=self.command, headers=headers)
                    try:
                        with urllib.request.urlopen(request, timeout=30) as response:
                            status, payload = response.status, response.read()
                    except urllib.error.HTTPError as exc:
                        status, payload = exc.code, exc.read()
                    if proxy.rewrite and payload:
                        payload = json.dumps(proxy.rewrite(self.path, json.loads(payload))).encode()
                else:
                    status, payload = reply[0], json.dumps(reply[1]).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("x-elastic-product", "Elasticsearch")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def bulk_requests(self) -> list[int]:
        return [size for method, path, size in self.requests if path.startswith("/_bulk")]


@pytest.fixture
def proxies(es_url: str) -> Iterator[Callable[..., Proxy]]:
    made: list[Proxy] = []

    def make(answer: Answer | None = None, rewrite: Callable[[str, Any], Any] | None = None,
             upstream: str | None = es_url) -> Proxy:
        made.append(Proxy(upstream, answer, rewrite))
        return made[-1]

    yield make
    for proxy in made:
        proxy.close()


def store_via(url: str, prefix: str, **overrides: Any) -> ElasticsearchStore:
    return ElasticsearchStore(es_settings(url, prefix, **overrides), sleep=lambda s: None)


def count(es_client: Elasticsearch, index: str) -> int:
    es_client.indices.refresh(index=index, ignore_unavailable=True, allow_no_indices=True)
    return es_client.count(index=index, ignore_unavailable=True, allow_no_indices=True)["count"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- rejections --------------------------------------------------------------------------------------------

def test_a_document_elasticsearch_refuses_comes_back_with_its_reason(es_store: ElasticsearchStore) -> None:
    good = synthetic_events(3, tag="ok")
    bad_event = Document("event", "bad-event", {**good[0].body, "source.port": "not a port"})
    alerts = synthetic_alerts(2, tag="al")
    bad_alert = Document("alert", "bad-alert", {**alerts[0].body, "icsmon.alert.count": "many"})

    result = es_store.write([good[0], bad_event, *alerts, good[1], bad_alert, good[2]])

    assert result.written == 5
    reasons = {doc.id: reason for doc, reason in result.rejected}
    assert set(reasons) == {"bad-event", "bad-alert"}
    assert "failed to parse field [source.port] of type [integer]" in reasons["bad-event"]
    assert "(400)" in reasons["bad-event"]
    assert "failed to parse field [icsmon.alert.count] of type [long]" in reasons["bad-alert"]
    assert all("\n" not in r for r in reasons.values())
    es_store.refresh()
    assert sorted(i["_id"] for i in es_store.search(Query("event")).items) == sorted(d.id for d in good)
    assert es_store.search(Query("alert", size=0)).total == 2
    assert es_store.stats["rejected"] == 2


# --- start-up errors ---------------------------------------------------------------------------------------

def test_check_against_a_closed_port_is_unavailable_at_once() -> None:
    port = free_port()
    store = ElasticsearchStore(es_settings(f"http://127.0.0.1:{port}", "icsmon", check_timeout=2))
    started = time.monotonic()
    with pytest.raises(StoreUnavailable) as caught:
        store.check()
    assert time.monotonic() - started < 2
    assert str(caught.value) == f"Elasticsearch at http://127.0.0.1:{port}: unreachable (connection refused)"


def test_check_against_a_silent_server_times_out_quickly() -> None:
    with socket.socket() as silent:  # accepts connections (backlog) but never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        store = ElasticsearchStore(es_settings(f"http://127.0.0.1:{port}", "icsmon", check_timeout=1))
        started = time.monotonic()
        with pytest.raises(StoreUnavailable, match="unreachable \\(timed out\\)"):
            store.check()
        assert time.monotonic() - started < 3


def test_wrong_password_is_one_clear_line(proxies: Callable[..., Proxy]) -> None:
    def secured(method: str, path: str, body: bytes) -> tuple[int, Any]:
        return 401, {"error": {"type": "security_exception", "reason": "unable to authenticate user [ana]"},
                     "status": 401}

    proxy = proxies(secured, upstream=None)
    store = ElasticsearchStore(es_settings(proxy.url, "icsmon", username="ana", password="wrong-one"))
    with pytest.raises(StoreAuthError) as caught:
        store.check()
    assert str(caught.value) == f"Elasticsearch at {proxy.url}: authentication failed for user 'ana' (401)"
    assert len(proxy.requests) == 1  # no retry loop on bad credentials


def test_wrong_api_key_names_the_key_id(proxies: Callable[..., Proxy]) -> None:
    proxy = proxies(lambda m, p, b: (401, {"error": {"type": "security_exception", "reason": "bad key"}}),
                    upstream=None)
    key = base64.b64encode(b"VuaCfGcBCdbkQm-e5aOx:ui2lp2axTNmsyakw9tvNnw").decode()
    store = ElasticsearchStore(es_settings(proxy.url, "icsmon", api_key=key))
    with pytest.raises(StoreAuthError) as caught:
        store.check()
    assert str(caught.value) == (f"Elasticsearch at {proxy.url}: authentication failed for API key id"
                                 " 'VuaCfGcBCdbkQm-e5aOx' (401)")


def test_missing_index_privileges_are_named(proxies: Callable[..., Proxy]) -> None:
    def secured(method: str, path: str, body: bytes) -> tuple[int, Any]:
        if path.startswith("/_security/_authenticate"):
            return 200, {"username": "writer", "roles": ["icsmon_writer"]}
        if path.startswith("/_security/user/_has_privileges"):
            return 200, {"username": "writer", "has_all_requested": False,
                         "cluster": {"manage_index_templates": True},
                         "index": {"plant-alerts-*": {"create_index": True, "index": True, "read": False},
                                   "plant-events-*": {"create_index": True, "index": True, "read": True}}}
        return 500, {"error": "unexpected"}

    proxy = proxies(secured, upstream=None)
    store = ElasticsearchStore(es_settings(proxy.url, "plant", username="writer", password="s3cret-enough"))
    with pytest.raises(StoreAuthError) as caught:
        store.check()
    assert str(caught.value) == f"Elasticsearch at {proxy.url}: user 'writer' lacks read on plant-alerts-*"


def test_forbidden_write_is_an_auth_error_not_a_retry(proxies: Callable[..., Proxy],
                                                      es_index_prefix: str) -> None:
    def forbid_bulk(method: str, path: str, body: bytes) -> tuple[int, Any] | None:
        if path.startswith("/_bulk"):
            return 403, {"error": {"type": "security_exception", "reason": "action [indices:data/write/bulk]"
                                   " is unauthorized for user [reader]"}, "status": 403}
        return None

    proxy = proxies(forbid_bulk)
    store = store_via(proxy.url, es_index_prefix, username="reader", password="s3cret-enough")
    with pytest.raises(StoreAuthError, match="user 'reader' may not write to .* is unauthorized .*\\(403\\)$"):
        store.write(synthetic_events(2))
    assert len(proxy.bulk_requests()) == 1


# --- retries -----------------------------------------------------------------------------------------------

def failing_first(n: int, status: int, path_prefix: str = "/_bulk") -> Answer:
    seen = {"n": 0}

    def answer(method: str, path: str, body: bytes) -> tuple[int, Any] | None:
        if path.startswith(path_prefix) and seen["n"] < n:
            seen["n"] += 1
            return status, {"error": {"type": "es_rejected_execution_exception", "reason": "queue full"},
                            "status": status}
        return None

    return answer


@pytest.mark.parametrize("status", [429, 503])
def test_a_refused_bulk_request_is_retried_without_duplicates(proxies: Callable[..., Proxy], es_client: Elasticsearch,
                                                              es_index_prefix: str, status: int) -> None:
    proxy = proxies(failing_first(2, status))
    store = store_via(proxy.url, es_index_prefix)
    store.check()
    events = synthetic_events(50)
    result = store.write(events)
    assert (result.written, result.rejected) == (50, ())
    assert store.stats["retries"] == 2
    assert len(proxy.bulk_requests()) == 3
    assert count(es_client, f"{es_index_prefix}-events-*") == 50
    store.uninstall_templates()


def test_items_answered_429_are_retried_alone(proxies: Callable[..., Proxy], es_client: Elasticsearch,
                                              es_index_prefix: str) -> None:
    rewritten = {"n": 0}

    def reject_first_item(path: str, response: Any) -> Any:
        if path.startswith("/_bulk") and rewritten["n"] == 0:
            rewritten["n"] += 1
            action = next(iter(response["items"][0]))
            response["items"][0][action] = {"status": 429, "error": {"type": "es_rejected_execution_exception",
                                                                    "reason": "rejected execution"}}
        return response

    proxy = proxies(rewrite=reject_first_item)
    store = store_via(proxy.url, es_index_prefix)
    store.check()
    result = store.write(synthetic_events(10))
    assert (result.written, result.rejected) == (10, ())
    assert proxy.bulk_requests()[1] < proxy.bulk_requests()[0] / 5  # the retry carries one document
    assert count(es_client, f"{es_index_prefix}-events-*") == 10
    store.uninstall_templates()


def test_an_outage_ends_in_store_unavailable_after_bounded_attempts(proxies: Callable[..., Proxy],
                                                                   es_index_prefix: str) -> None:
    proxy = proxies(failing_first(10**6, 503))
    store = store_via(proxy.url, es_index_prefix, max_attempts=4, install_templates=False)
    with pytest.raises(StoreUnavailable) as caught:
        store.write(synthetic_events(5))
    assert str(caught.value) == (f"Elasticsearch at {proxy.url}: bulk write of 5 documents failed after 4 attempts:"
                                 " es_rejected_execution_exception: queue full (503)")
    assert len(proxy.bulk_requests()) == 4


def test_a_dead_node_ends_in_store_unavailable() -> None:
    sleeps: list[float] = []
    store = ElasticsearchStore(es_settings(f"http://127.0.0.1:{free_port()}", "icsmon", max_attempts=5,
                                           backoff_initial=1.0, backoff_max=4.0), sleep=sleeps.append)
    with pytest.raises(StoreUnavailable, match="failed after 5 attempts: connection refused"):
        store.write(synthetic_alerts(3))
    # Jittered exponential backoff: within [c/2, c] for c = 1, 2, 4, 4.
    assert len(sleeps) == 4
    for pause, ceiling in zip(sleeps, [1.0, 2.0, 4.0, 4.0]):
        assert ceiling / 2 <= pause <= ceiling


# --- batching and indices ----------------------------------------------------------------------------------

def test_bulk_batches_are_bounded_in_documents_and_bytes(proxies: Callable[..., Proxy], es_client: Elasticsearch,
                                                         es_index_prefix: str) -> None:
    proxy = proxies()
    store = store_via(proxy.url, es_index_prefix, bulk_max_docs=7)
    store.check()
    assert store.write(synthetic_events(20)).written == 20
    assert len(proxy.bulk_requests()) == 3  # 7 + 7 + 6

    proxy.requests.clear()
    store = store_via(proxy.url, es_index_prefix, bulk_max_bytes=65536, install_templates=False)
    big = [Document("event", f"big-{i}", {**d.body, "event.reason": "x" * 10_000})
           for i, d in enumerate(synthetic_events(20))]
    assert store.write(big).written == 20
    sizes = proxy.bulk_requests()
    assert len(sizes) >= 4
    assert max(sizes) <= 65536
    assert count(es_client, f"{es_index_prefix}-events-*") == 40
    store.uninstall_templates()


def test_daily_indices_and_alerts_stay_in_their_first_day(es_store: ElasticsearchStore,
                                                          es_client: Elasticsearch) -> None:
    prefix = es_store.prefix
    events = [Document("event", "d1", {"@timestamp": "2026-01-01T23:59:59.999Z"}),
              Document("event", "d2", {"@timestamp": "2026-01-02T00:00:00Z"})]
    alert = {"@timestamp": "2026-01-01T23:59:00Z", "icsmon.alert.first_seen": "2026-01-01T23:59:00Z",
             "icsmon.alert.count": 1}
    later = {**alert, "@timestamp": "2026-01-02T00:30:00Z", "icsmon.alert.count": 2}
    es_store.write([*events, Document("alert", "a", alert, version=1)])
    es_store.write([Document("alert", "a", later, version=2)])
    es_store.refresh()
    indices = sorted(es_client.indices.get(index=f"{prefix}-*").body)
    assert indices == [f"{prefix}-alerts-2026.01.01", f"{prefix}-events-2026.01.01", f"{prefix}-events-2026.01.02"]
    assert es_store.get("alert", "a")["icsmon.alert.count"] == 2
    assert count(es_client, f"{prefix}-alerts-*") == 1


def test_events_can_be_turned_off(es_url: str, es_index_prefix: str, es_client: Elasticsearch) -> None:
    store = store_via(es_url, es_index_prefix, events=False)
    store.check()
    result = store.write([*synthetic_events(5), *synthetic_alerts(2)])
    assert (result.written, result.rejected) == (7, ())
    assert store.stats["events_skipped"] == 5
    assert es_client.indices.get(index=f"{es_index_prefix}-events-*", allow_no_indices=True).body == {}
    assert count(es_client, f"{es_index_prefix}-alerts-*") == 2
    store.uninstall_templates()


def test_a_second_store_finds_unrefreshed_writes_by_id(es_store: ElasticsearchStore, es_url: str) -> None:
    es_store.check()  # installing the templates again changes nothing
    alerts = synthetic_alerts(3, tag="shared")
    es_store.write(alerts)  # no refresh: get() and update_triage() refresh before saying absent
    other = store_via(es_url, es_store.prefix)
    other.check()
    assert other.get("alert", alerts[1].id)["rule.id"] == "bench-shared"
    assert other.update_triage(alerts[2].id, status="closed")["icsmon.triage.status"] == "closed"
    assert other.get("event", alerts[0].id) is None


def test_a_triage_change_racing_an_aggregation_update_is_kept(proxies: Callable[..., Proxy], es_client: Elasticsearch,
                                                              es_index_prefix: str) -> None:
    [first] = synthetic_alerts(1)
    second = Document("alert", first.id, {**first.body, "icsmon.alert.count": 2}, version=2)
    raced = []

    def analyst_gets_there_first(method: str, path: str, body: bytes) -> None:
        # Between the store's read of the stored alert and its guarded write, an analyst closes it.
        if path.startswith("/_bulk") and b'{"index"' in body and not raced:
            index = json.loads(body.split(b"\n")[0])["index"]["_index"]
            current = es_client.get(index=index, id=first.id)["_source"]
            es_client.index(index=index, id=first.id, document={**current, "icsmon.triage.status": "closed"})
            raced.append(index)
        return None

    proxy = proxies(analyst_gets_there_first)
    store = store_via(proxy.url, es_index_prefix)
    store.check()
    assert store.write([first]).written == 1
    assert store.write([second]).written == 1
    assert raced and store.stats["conflicts"] == 1  # the guarded write failed once, then read and merged again
    stored = store.get("alert", first.id)
    assert (stored["icsmon.alert.count"], stored["icsmon.triage.status"]) == (2, "closed")
    store.uninstall_templates()
