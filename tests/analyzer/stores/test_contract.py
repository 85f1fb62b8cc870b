"""The store contract: every test runs on SQLite and on the real Elasticsearch with the same assertions.

Expected results are written out by hand (or, for sorting, computed from the documented rules),
never read from one store to check the other.
"""

from __future__ import annotations

import ipaddress
import random
from typing import Any

import orjson
import pytest

from analyzer.alerts import ALERT_FIELDS, Alert, AlertAggregator, Detection, TriageNote
from analyzer.stores import Document, Filter, InvalidRequest, Query, Store
from analyzer.stores.semantics import parse_ms
from sensor.capture.pcapfile import open_capture
from sensor.events import to_json
from sensor.pipeline import Sensor
from sensor.schema import Field, all_fields
from sensor.settings import SensorSettings

PCAPS = "/work/shared/pcaps"


def event(doc_id: str, ts: str, **fields: Any) -> Document:
    body = {"@timestamp": ts, "event.kind": "event"}
    body.update({name.replace("__", "."): value for name, value in fields.items()})
    return Document("event", doc_id, body)


def ids(page_or_items: Any) -> list[str]:
    items = page_or_items.items if hasattr(page_or_items, "items") else page_or_items
    return sorted(item["_id"] for item in items)


def write_all(store: Store, documents: list[Document]) -> None:
    result = store.write(documents)
    assert result.rejected == ()
    assert result.written == len(documents)
    store.refresh()


# --- the fixed event set most tests query ------------------------------------------------------------------

EVENTS = [
    event("e1", "2026-01-01T00:00:00Z", source__ip="10.1.2.3", destination__ip="192.168.0.10", source__port=40000,
          destination__port=502, network__protocol="modbus", event__dataset="icsmon.modbus",
          event__category=["network"], ics__operation="read", ics__function="read_holding_registers",
          ics__values=[1.5, 20.0], ics__tag=["hr:40001", "hr:40002"], icsmon__flow__midstream=False,
          event__start="2025-12-31T23:59:59.500Z", ics__unit="1"),
    event("e2", "2026-01-01T00:00:30.250+00:00", source__ip="10.1.200.4", destination__ip="fe80::1",
          source__port=40001, network__protocol="modbus", event__dataset="icsmon.modbus",
          event__category=["network"], ics__operation="write", ics__function="write_single_register",
          ics__values=[100.0], ics__tag=["hr:40010"], icsmon__flow__midstream=True, icsmon__packet=7),
    # 01:00 at +02:00 is 23:00 UTC the day before: earlier than e1.
    event("e3", "2026-01-01T01:00:00+02:00", source__ip="2001:db8::5", destination__ip="2001:db8::1",
          source__port=50000, network__protocol="bacnet", event__dataset="icsmon.bacnet",
          event__category=["network", "intrusion_detection"], ics__operation="read", ics__function="ReadProperty"),
    event("e4", "2026-01-02T12:00:00Z", source__ip="172.16.5.5", destination__ip="192.168.0.10",
          network__protocol="iec104", event__dataset="icsmon.iec104", event__category=["network"],
          ics__operation="unknown-99", ics__function="Read*Special?"),
    event("e5", "2026-01-02T12:00:00Z", source__ip="9.0.0.1", destination__ip="192.168.0.11", source__port=40000,
          event__dataset="icsmon.conn", event__category=["network", "network"]),
    event("e6", "2026-01-03T00:00:00.000Z", event__dataset="icsmon.decode_error", event__category=["network"],
          event__reason="truncated"),
]
ALL = ["e1", "e2", "e3", "e4", "e5", "e6"]


@pytest.fixture
def loaded(store: Store) -> Store:
    write_all(store, EVENTS)
    return store


FILTER_CASES: list[tuple[str, list[Filter], list[str]]] = [
    ("eq keyword", [Filter("network.protocol", "eq", "modbus")], ["e1", "e2"]),
    ("eq array element", [Filter("event.category", "eq", "intrusion_detection")], ["e3"]),
    ("negated eq includes missing", [Filter("network.protocol", "eq", "modbus", negate=True)],
     ["e3", "e4", "e5", "e6"]),
    ("in", [Filter("ics.operation", "in", ["read", "write"])], ["e1", "e2", "e3"]),
    ("in empty", [Filter("ics.operation", "in", [])], []),
    ("range number closed", [Filter("source.port", "range", (40000, 40001))], ["e1", "e2", "e5"]),
    ("range number open", [Filter("source.port", "range", (40001, None))], ["e2", "e3"]),
    ("range number as text", [Filter("source.port", "range", (None, "40000"))], ["e1", "e5"]),
    ("range date inclusive", [Filter("@timestamp", "range", ("2026-01-01T00:00:00Z", "2026-01-01T00:00:30.250Z"))],
     ["e1", "e2"]),
    ("range date across zones", [Filter("@timestamp", "range", (None, "2026-01-01T00:00:00+01:00"))], ["e3"]),
    ("range date epoch millis", [Filter("@timestamp", "range", (1767312000000, None))], ["e4", "e5", "e6"]),
    ("range other date", [Filter("event.start", "range", (None, "2026-01-01T00:00:00Z"))], ["e1"]),
    ("eq date other format", [Filter("@timestamp", "eq", "2026-01-01T00:00:30.250Z")], ["e2"]),
    ("cidr v4 /16", [Filter("source.ip", "cidr", "10.1.0.0/16")], ["e1", "e2"]),
    ("cidr v4 /24", [Filter("source.ip", "cidr", "10.1.2.0/24")], ["e1"]),
    ("cidr v4 not strict", [Filter("source.ip", "cidr", "10.1.2.77/24")], ["e1"]),
    ("cidr v6 /32", [Filter("source.ip", "cidr", "2001:db8::/32")], ["e3"]),
    ("cidr v6 link local", [Filter("destination.ip", "cidr", "fe80::/10")], ["e2"]),
    ("cidr v4 destination", [Filter("destination.ip", "cidr", "192.168.0.0/24")], ["e1", "e4", "e5"]),
    ("cidr negated", [Filter("source.ip", "cidr", "10.0.0.0/8", negate=True)], ["e3", "e4", "e5", "e6"]),
    ("cidr all v4", [Filter("source.ip", "cidr", "0.0.0.0/0")], ["e1", "e2", "e4", "e5"]),
    ("cidr all v6 includes v4", [Filter("source.ip", "cidr", "::/0")], ["e1", "e2", "e3", "e4", "e5"]),
    ("eq ip", [Filter("source.ip", "eq", "10.1.2.3")], ["e1"]),
    ("eq ip non-canonical", [Filter("destination.ip", "eq", "fe80:0::0001")], ["e2"]),
    ("in ip", [Filter("destination.ip", "in", ["192.168.0.10", "2001:db8::1"])], ["e1", "e3", "e4"]),
    ("range ip", [Filter("source.ip", "range", ("9.0.0.0", "10.1.2.3"))], ["e1", "e5"]),
    ("exists", [Filter("source.port", "exists")], ["e1", "e2", "e3", "e5"]),
    ("exists array", [Filter("ics.values", "exists")], ["e1", "e2"]),
    ("missing", [Filter("source.ip", "missing")], ["e6"]),
    ("negated missing", [Filter("source.ip", "missing", negate=True)], ["e1", "e2", "e3", "e4", "e5"]),
    ("prefix is case-sensitive", [Filter("ics.function", "prefix", "read")], ["e1"]),
    ("prefix", [Filter("ics.function", "prefix", "Read")], ["e3", "e4"]),
    ("contains", [Filter("ics.function", "contains", "register")], ["e1", "e2"]),
    ("contains is case-sensitive", [Filter("ics.function", "contains", "Register")], []),
    ("contains wildcard characters literally", [Filter("ics.function", "contains", "*Spec")], ["e4"]),
    ("contains question mark literally", [Filter("ics.function", "contains", "l?")], ["e4"]),
    ("eq boolean true", [Filter("icsmon.flow.midstream", "eq", True)], ["e2"]),
    ("eq boolean false text", [Filter("icsmon.flow.midstream", "eq", "false")], ["e1"]),
    ("eq double array element", [Filter("ics.values", "eq", 20)], ["e1"]),
    ("range double array any element", [Filter("ics.values", "range", (50, None))], ["e2"]),
    ("eq keyword given a number", [Filter("ics.unit", "eq", 1)], ["e1"]),
    ("eq long given text", [Filter("icsmon.packet", "eq", "7")], ["e2"]),
    ("range keyword", [Filter("event.dataset", "range", ("icsmon.c", "icsmon.e"))], ["e5", "e6"]),
    ("and", [Filter("network.protocol", "eq", "modbus"), Filter("ics.operation", "eq", "write")], ["e2"]),
]


@pytest.mark.parametrize(("case", "filters", "expected"), FILTER_CASES, ids=[c[0] for c in FILTER_CASES])
def test_filter(loaded: Store, case: str, filters: list[Filter], expected: list[str]) -> None:
    page = loaded.search(Query("event", filters=tuple(filters), size=50))
    assert ids(page) == expected
    assert page.total == len(expected)


def test_start_inclusive_end_exclusive(loaded: Store) -> None:
    page = loaded.search(Query("event", start="2026-01-01T00:00:00Z", end="2026-01-02T12:00:00Z"))
    assert ids(page) == ["e1", "e2"]
    page = loaded.search(Query("event", start="2026-01-02T12:00:00Z", end="2026-01-02T12:00:00.001Z"))
    assert ids(page) == ["e4", "e5"]


def test_no_filter_finds_everything_with_total(loaded: Store) -> None:
    page = loaded.search(Query("event", size=2))
    assert page.total == 6
    assert len(page.items) == 2
    assert loaded.search(Query("event", size=0)).total == 6
    assert loaded.search(Query("alert")).total == 0


@pytest.mark.parametrize(("query", "message"), [
    (Query("event", filters=(Filter("vendor.note", "eq", "x"),)), "unknown field 'vendor.note'"),
    (Query("event", filters=(Filter("source.ip", "contains", "10."),)), "does not apply to ip field"),
    (Query("event", filters=(Filter("ics.function", "cidr", "10.0.0.0/8"),)), "does not apply to keyword"),
    (Query("event", filters=(Filter("source.ip", "cidr", "10.0.0.0/33"),)), "cidr on 'source.ip'"),
    (Query("event", filters=(Filter("source.ip", "eq", "10.0.0.0/8"),)), "eq on 'source.ip'"),
    (Query("event", filters=(Filter("@timestamp", "range", ("yesterday", None)),)), "not an ISO 8601 date"),
    (Query("event", filters=(Filter("source.port", "eq", 1.5),)), "not a valid integer"),
    (Query("event", filters=(Filter("source.port", "range", (None, None)),)), "at least one bound"),
    (Query("event", filters=(Filter("ics.values", "in", "12"),)), "takes a list"),
    (Query("alert", filters=(Filter("icsmon.alert.evidence", "exists"),)), "object field"),
    (Query("alert", filters=(Filter("rule.description", "eq", "x"),)), "text field"),
    (Query("alert", sort=(("rule.description", "asc"),)), "cannot sort on text"),
    (Query("event", offset=9_990, size=20), "beyond the first 10000"),
    (Query("event", start="not a date"), "start/end"),
])
def test_invalid_queries_are_refused_the_same_way(store: Store, query: Query, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message.replace("(", r"\(")) as caught:
        store.search(query)
    assert "\n" not in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_count_and_histogram_refuse_what_they_cannot_answer(store: Store) -> None:
    with pytest.raises(InvalidRequest, match="cannot count values of object field"):
        store.count_by(Query("alert"), "icsmon.triage.notes")
    with pytest.raises(InvalidRequest, match="unknown field"):
        store.count_by(Query("event"), "nope")
    with pytest.raises(InvalidRequest, match="interval '2m'"):
        store.histogram(Query("event"), "2m")  # type: ignore[arg-type]


# --- every field through the store -------------------------------------------------------------------------

def sample(field: Field, doc_index: int = 0) -> Any:
    """A value of the field's type, distinct per field (so an eq query finds only its document)."""
    n = sum(field.name.encode()) % 200 + doc_index
    one: Any
    if field.type == "keyword":
        one = f"v{doc_index}-{field.name}"
    elif field.type == "text":
        one = f"free text about {field.name}"
    elif field.type == "ip":
        one = f"10.{doc_index}.{n}.7" if n % 2 else f"2001:db8:{doc_index}::{n:x}"
    elif field.type == "date":
        one = f"2026-03-04T05:{n % 60:02d}:07.123Z"
    elif field.type == "boolean":
        one = doc_index == 0
    elif field.type in ("long", "integer"):
        one = 40_000 + n
    elif field.type == "short":
        one = 300 + n
    elif field.type == "byte":
        one = 7 + n % 100
    elif field.type in ("float", "double"):
        one = 0.5 + n
    else:  # object: kept verbatim, nested and with dotted keys, never indexed
        one = {"source.ip": "10.9.9.9", "nested": {"list": [1, "two", {"three": 3.5}]}, "n": n}
    if field.array:
        second = one if field.type in ("object", "boolean") else sample(Field(field.name + "x", field.type, ""), 1)
        return [one, second]
    return one


def queries_for(field: Field, value: Any) -> list[Filter]:
    if field.type == "object":
        return []
    if field.type == "text":
        return [Filter(field.name, "exists")]
    wanted = value[-1] if field.array else value
    filters = [Filter(field.name, "eq", wanted)]
    if field.type == "ip":
        network = ipaddress.ip_network(f"{wanted}/{120 if ':' in wanted else 28}", strict=False)
        filters.append(Filter(field.name, "cidr", str(network)))
    if field.type in ("date", "long", "integer", "short", "byte", "float", "double"):
        filters.append(Filter(field.name, "range", (wanted, wanted)))
    return filters


def every_field_document(kind: str, fields: tuple[Field, ...]) -> dict[str, Any]:
    body = {f.name: sample(f) for f in fields}
    body["@timestamp"] = "2026-03-04T05:06:07.123Z"
    if kind == "alert":
        body["icsmon.alert.first_seen"] = "2026-03-04T05:00:00Z"
        body["icsmon.alert.version"] = 2
    return body


@pytest.mark.parametrize("kind", ["event", "alert"])
def test_every_field_round_trips_and_answers_its_query(store: Store, kind: str) -> None:
    fields = all_fields() if kind == "event" else (*all_fields(), *ALERT_FIELDS)
    fields = tuple({f.name: f for f in fields}.values())
    body = every_field_document(kind, fields)
    other: dict[str, Any] = {"@timestamp": "2027-01-01T00:00:00Z", "event.kind": "other"}
    if kind == "alert":
        other["icsmon.alert.version"] = 1  # the store records the Document's version in the body
    full = Document(kind, "full", body, version=body.get("icsmon.alert.version", 1))  # type: ignore[arg-type]
    write_all(store, [full, Document(kind, "other", other)])  # type: ignore[arg-type]

    assert store.get(kind, "full") == {**body, "_id": "full"}  # type: ignore[arg-type]
    assert store.get(kind, "other") == {**other, "_id": "other"}  # type: ignore[arg-type]
    failures = []
    for field in fields:
        for flt in queries_for(field, body[field.name]):
            found = ids(store.search(Query(kind, filters=(flt,))))  # type: ignore[arg-type]
            if found != ["full"]:
                failures.append(f"{flt.op} {field.name}={flt.value!r} ({field.type}): {found}")
    assert failures == []


def real_capture_events(path: str, limit: int = 400) -> list[Document]:
    events: list[dict[str, Any]] = []
    sensor = Sensor(SensorSettings(sensor_id="store-test"), sink=lambda e: events.append(orjson.loads(to_json(e))))
    with open_capture(path) as source:
        sensor.run(source)
    sensor.finish()
    return [Document("event", f"{path.rsplit('/', 1)[-1]}-{i}", e) for i, e in enumerate(events[:limit])]


def test_real_sensor_events_round_trip(store: Store) -> None:
    captures = ["icsnpp-modbus/testing/traces/modbus_example.pcap", "icsnpp-bacnet/testing/traces/bacnet_example.pcap"]
    documents = [d for c in captures for d in real_capture_events(f"{PCAPS}/{c}")]
    assert {d.body.get("network.protocol") for d in documents} >= {"modbus", "bacnet"}
    write_all(store, documents)
    for doc in documents:
        assert store.get("event", doc.id) == {**doc.body, "_id": doc.id}
    page = store.search(Query("event", filters=(Filter("event.dataset", "eq", "icsmon.modbus"),), size=0))
    assert page.total == sum(d.body["event.dataset"] == "icsmon.modbus" for d in documents) > 0


# --- sorting and paging ------------------------------------------------------------------------------------

def sort_set() -> list[Document]:
    rng = random.Random(7)
    addresses = ["10.0.0.2", "9.0.0.1", "10.0.0.10", "2001:db8::1", "fe80::2", "192.168.1.1"]
    docs = []
    for i in range(25):
        fields: dict[str, Any] = {"event.dataset": rng.choice(["icsmon.modbus", "icsmon.conn", "icsmon.bacnet"])}
        if i % 5:
            fields["source.port"] = rng.choice([502, 40000, 102])
        if i % 4:
            fields["source.ip"] = rng.choice(addresses)
        if i % 3:
            fields["ics.values"] = [rng.choice([1.0, 5.0, 9.0]) for _ in range(rng.randint(1, 3))]
        ts = ["2026-01-01T00:00:00Z", "2026-01-01T00:00:01Z", "2026-01-01T00:00:00.5Z"][i % 3]
        docs.append(Document("event", f"s{(i * 7) % 25:02d}", {"@timestamp": ts, **fields}))
    return docs


def expected_order(docs: list[Document], field: str, direction: str) -> list[str]:
    def value(doc: Document) -> Any:
        v = doc.body.get(field)
        if isinstance(v, list):
            v = min(v) if direction == "asc" else max(v)
        if v is None:
            return None
        if field == "@timestamp":
            return parse_ms(v)
        if field == "source.ip":
            address = ipaddress.ip_address(v)
            return (address.version, int(address))  # IPv4 (mapped) sorts before any IPv6 address
        return v

    present = sorted((d for d in docs if value(d) is not None), key=lambda d: d.id)
    present.sort(key=value, reverse=direction == "desc")
    missing = sorted(d.id for d in docs if value(d) is None)
    return [d.id for d in present] + missing


@pytest.mark.parametrize(("field", "direction"), [
    ("@timestamp", "desc"), ("@timestamp", "asc"), ("source.port", "asc"), ("source.port", "desc"),
    ("source.ip", "asc"), ("source.ip", "desc"), ("ics.values", "asc"), ("ics.values", "desc"),
    ("event.dataset", "asc"), ("_id", "desc"),
])
def test_sort_with_id_tie_break_and_stable_paging(store: Store, field: str, direction: str) -> None:
    docs = sort_set()
    write_all(store, docs)
    expected = expected_order(docs, field, direction) if field != "_id" else sorted((d.id for d in docs), reverse=True)
    seen: list[str] = []
    for offset in range(0, 30, 7):
        page = store.search(Query("event", sort=((field, direction),), offset=offset, size=7))  # type: ignore[arg-type]
        assert page.total == 25
        seen += [item["_id"] for item in page.items]
    assert seen == expected


def test_sort_by_two_fields(store: Store) -> None:
    docs = sort_set()
    write_all(store, docs)
    page = store.search(Query("event", sort=(("event.dataset", "asc"), ("@timestamp", "desc")), size=25))
    got = [(item["event.dataset"], parse_ms(item["@timestamp"]), item["_id"]) for item in page.items]
    assert got == sorted(got, key=lambda t: (t[0], -t[1], t[2]))


# --- counts and histograms ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("field", "size", "expected"), [
    ("network.protocol", 10, [("modbus", 2), ("bacnet", 1), ("iec104", 1)]),
    ("event.category", 10, [("network", 6), ("intrusion_detection", 1)]),  # e5's duplicate counts once
    ("destination.ip", 10, [("192.168.0.10", 2), ("192.168.0.11", 1), ("2001:db8::1", 1), ("fe80::1", 1)]),
    ("icsmon.flow.midstream", 10, [(False, 1), (True, 1)]),
    ("source.port", 10, [(40000, 2), (40001, 1), (50000, 1)]),
    ("ics.tag", 2, [("hr:40001", 1), ("hr:40002", 1)]),
    ("ics.values", 10, [(1.5, 1), (20.0, 1), (100.0, 1)]),
    ("@timestamp", 3, [("2026-01-02T12:00:00Z", 2), ("2025-12-31T23:00:00Z", 1), ("2026-01-01T00:00:00Z", 1)]),
    ("event.start", 10, [("2025-12-31T23:59:59.500Z", 1)]),
])
def test_count_by(loaded: Store, field: str, size: int, expected: list[tuple[Any, int]]) -> None:
    got = loaded.count_by(Query("event"), field, size)
    assert got == expected
    assert [type(v) for v, _ in got] == [type(v) for v, _ in expected]


def test_count_by_respects_filters_and_time(loaded: Store) -> None:
    modbus = Query("event", filters=(Filter("network.protocol", "eq", "modbus"),))
    assert loaded.count_by(modbus, "ics.operation") == [("read", 1), ("write", 1)]
    window = Query("event", start="2026-01-02T00:00:00Z")
    assert loaded.count_by(window, "event.dataset") == [("icsmon.conn", 1), ("icsmon.decode_error", 1),
                                                         ("icsmon.iec104", 1)]


@pytest.mark.parametrize(("interval", "query", "expected"), [
    ("1h", Query("event"), [("2025-12-31T23:00:00Z", 1), ("2026-01-01T00:00:00Z", 2), ("2026-01-02T12:00:00Z", 2),
                            ("2026-01-03T00:00:00Z", 1)]),
    ("1d", Query("event"), [("2025-12-31T00:00:00Z", 1), ("2026-01-01T00:00:00Z", 2), ("2026-01-02T00:00:00Z", 2),
                            ("2026-01-03T00:00:00Z", 1)]),
    ("1m", Query("event", filters=(Filter("network.protocol", "eq", "modbus"),)), [("2026-01-01T00:00:00Z", 2)]),
    ("1s", Query("event", filters=(Filter("network.protocol", "eq", "modbus"),)),
     [("2026-01-01T00:00:00Z", 1), ("2026-01-01T00:00:30Z", 1)]),
    ("5m", Query("event", start="2026-01-02T00:00:00Z", end="2026-01-03T00:00:00Z"), [("2026-01-02T12:00:00Z", 2)]),
    ("1h", Query("alert"), []),
])
def test_histogram_buckets_are_utc_aligned(loaded: Store, interval: str, query: Query,
                                           expected: list[tuple[str, int]]) -> None:
    assert loaded.histogram(query, interval) == expected  # type: ignore[arg-type]


# --- writes: idempotence, versions, triage -----------------------------------------------------------------

def make_alert(version_hits: int = 1) -> tuple[Alert, list[dict[str, Any]]]:
    """An alert from the real aggregator, and the document it emitted after each hit."""
    emitted: list[dict[str, Any]] = []
    aggregator = AlertAggregator(lambda a: emitted.append(a.to_document()), window=300,
                                 assets=lambda ip: {"10.1.2.3": "hmi-1", "192.168.0.10": "plc-1"}.get(ip or ""))
    alert = None
    for i in range(version_hits):
        alert = aggregator.add(Detection(
            detector_type="rule", detector_id="modbus-write", title="Modbus write", severity="high",
            event={**EVENTS[0].body, "@timestamp": f"2026-01-01T00:0{i}:00Z", "ics.operation": "write"},
            techniques=("T0855",), tactics=("Impair Process Control",), description="Unexpected write."))
    assert alert is not None
    return alert, emitted


def alert_doc(body: dict[str, Any]) -> Document:
    return Document("alert", body["icsmon.alert.id"], body, version=body["icsmon.alert.version"])


def test_real_alert_round_trips_with_evidence_and_notes(store: Store) -> None:
    alert, emitted = make_alert(3)
    alert.assignee = "ana"
    alert.notes.append(TriageNote(time=1767225600.0, author="ana", text="looking", status="acknowledged"))
    body = alert.to_document()
    assert {f.name for f in ALERT_FIELDS} <= set(body)
    write_all(store, [alert_doc(body)])
    assert store.get("alert", alert.id) == {**body, "_id": alert.id}
    assert store.get("alert", alert.id)["icsmon.alert.evidence"][0]["source.ip"] == "10.1.2.3"
    found = store.search(Query("alert", filters=(Filter("threat.technique.id", "eq", "T0855"),
                                                 Filter("source.asset.name", "eq", "hmi-1"),
                                                 Filter("icsmon.alert.count", "range", (3, 3)))))
    assert ids(found) == [alert.id]


def test_rewriting_the_same_documents_changes_nothing(store: Store) -> None:
    _alert, emitted = make_alert(1)
    batch = [*EVENTS, alert_doc(emitted[0])]
    write_all(store, batch)
    result = store.write(batch)
    store.refresh()
    assert (result.written, result.rejected) == (len(batch), ())
    assert store.search(Query("event", size=0)).total == 6
    assert store.search(Query("alert", size=0)).total == 1
    assert store.get("event", "e3") == {**EVENTS[2].body, "_id": "e3"}


def test_an_event_is_written_once(store: Store) -> None:
    write_all(store, [EVENTS[0]])
    changed = Document("event", "e1", {**EVENTS[0].body, "network.protocol": "changed"})
    assert store.write([changed]).written == 1
    store.refresh()
    assert store.get("event", "e1")["network.protocol"] == "modbus"


def test_alerts_keep_the_highest_version(store: Store) -> None:
    _alert, emitted = make_alert(4)  # versions 1..4, counts 1..4
    docs = [alert_doc(body) for body in emitted]
    write_all(store, [docs[2]])
    result = store.write([docs[1], docs[0]])  # older versions: no-ops that still count as written
    store.refresh()
    assert (result.written, result.rejected) == (2, ())
    assert store.get("alert", docs[2].id)["icsmon.alert.count"] == 3
    write_all(store, [docs[3]])
    assert store.get("alert", docs[3].id)["icsmon.alert.count"] == 4
    assert store.get("alert", docs[3].id)["icsmon.alert.version"] == 4


def test_versions_within_one_batch(store: Store) -> None:
    _alert, emitted = make_alert(3)
    docs = [alert_doc(body) for body in emitted]
    write_all(store, [docs[0], docs[2], docs[1]])
    stored = store.get("alert", docs[0].id)
    assert (stored["icsmon.alert.version"], stored["icsmon.alert.count"]) == (3, 3)
    assert store.search(Query("alert", size=0)).total == 1


def test_document_version_wins_over_the_body(store: Store) -> None:
    _alert, emitted = make_alert(1)
    write_all(store, [Document("alert", "a1", emitted[0], version=5)])
    write_all(store, [Document("alert", "a1", {**emitted[0], "icsmon.alert.version": 9}, version=4)])
    assert store.get("alert", "a1")["icsmon.alert.version"] == 5


def test_triage_survives_a_later_aggregation_update(store: Store) -> None:
    alert, emitted = make_alert(2)
    first, second = (alert_doc(body) for body in emitted)
    write_all(store, [first])

    updated = store.update_triage(alert.id, status="acknowledged", assignee="ana",
                                  note={"author": "ana", "text": "calling the plant"})
    assert updated["_id"] == alert.id
    assert updated["icsmon.triage.status"] == "acknowledged"
    assert updated["icsmon.triage.assignee"] == "ana"
    [note] = updated["icsmon.triage.notes"]
    assert (note["author"], note["text"], note["status"], note["assignee"]) == (
        "ana", "calling the plant", "acknowledged", "ana")
    parse_ms(note["time"])

    assert second.body["icsmon.triage.status"] == "open"  # what the sensor sends on every update
    write_all(store, [second])
    stored = store.get("alert", alert.id)
    assert stored["icsmon.alert.count"] == 2
    assert stored["icsmon.triage.status"] == "acknowledged"
    assert stored["icsmon.triage.assignee"] == "ana"
    assert len(stored["icsmon.triage.notes"]) == 1
    acknowledged = Query("alert", filters=(Filter("icsmon.triage.status", "eq", "acknowledged"),))
    assert ids(store.search(acknowledged)) == [alert.id]
    assert store.count_by(Query("alert"), "icsmon.triage.status") == [("acknowledged", 1)]

    closed = store.update_triage(alert.id, status="closed", note={"author": "bo", "text": "done"})
    assert closed["icsmon.triage.status"] == "closed"
    assert closed["icsmon.triage.assignee"] == "ana"
    assert [n["author"] for n in closed["icsmon.triage.notes"]] == ["ana", "bo"]
    assert closed["icsmon.alert.count"] == 2
    assert store.get("alert", alert.id) == closed


def test_update_triage_right_after_the_write(store: Store) -> None:
    _alert, emitted = make_alert(1)
    doc = alert_doc(emitted[0])
    assert store.write([doc]).written == 1  # no refresh in between
    assert store.update_triage(doc.id, assignee="zoe")["icsmon.triage.assignee"] == "zoe"


def test_absent_documents(store: Store) -> None:
    write_all(store, EVENTS[:1])
    assert store.get("event", "nope") is None
    assert store.get("alert", "e1") is None
    with pytest.raises(KeyError):
        store.update_triage("nope", status="closed")


def test_bad_triage_status_is_refused(store: Store) -> None:
    _alert, emitted = make_alert(1)
    write_all(store, [alert_doc(emitted[0])])
    with pytest.raises(InvalidRequest, match="triage status 'done'"):
        store.update_triage(emitted[0]["icsmon.alert.id"], status="done")


@pytest.mark.parametrize(("document", "reason"), [
    (Document("event", "x", {"source.ip": "10.0.0.1"}), "@timestamp must be ISO 8601 text, got NoneType"),
    (Document("event", "x", {"@timestamp": 1767225600.0}), "@timestamp must be ISO 8601 text, got float"),
    (Document("event", "x", {"@timestamp": "tuesday"}), "not an ISO 8601 date"),
    (Document("event", "", {"@timestamp": "2026-01-01T00:00:00Z"}), "document id must be text"),
    (Document("event", "x" * 513, {"@timestamp": "2026-01-01T00:00:00Z"}), "document id must be text"),
    (Document("event", "x", {"@timestamp": "2026-01-01T00:00:00Z", "_id": "y"}), "starts with '_'"),
    (Document("event", "x", {"@timestamp": "2026-01-01T00:00:00Z", "v": {1, 2}}), "not JSON"),
    (Document("alert", "x", {"@timestamp": "2026-01-01T00:00:00Z"}, version=0), "positive integer"),
])
def test_documents_no_store_can_keep_are_rejected_and_the_rest_written(store: Store, document: Document,
                                                                      reason: str) -> None:
    result = store.write([EVENTS[0], document, EVENTS[1]])
    store.refresh()
    assert result.written == 2
    [(doc, why)] = result.rejected
    assert doc is document
    assert reason in why
    assert ids(store.search(Query("event"))) == ["e1", "e2"]
