"""Every value modifier and value type: an inline rule, an event, exactly match or no match."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from analyzer.sigma.modifiers import key

MODBUS = {"network.protocol": "modbus", "@timestamp": 1_700_000_000.0}


def ev(**fields: Any) -> dict[str, Any]:
    return {**MODBUS, **{k.replace("__", "."): v for k, v in fields.items()}}


CASES = [
    # (id, detection block, event fields, expected)
    # -- plain values: case-insensitive strings, numbers by value, lists any element, missing fields
    ("eq-case", "sel:\n  ics.operation: WRITE\ncondition: sel", {"ics.operation": "write"}, True),
    ("eq-other", "sel:\n  ics.operation: write\ncondition: sel", {"ics.operation": "read"}, False),
    ("eq-missing", "sel:\n  ics.operation: write\ncondition: sel", {}, False),
    ("eq-not-substring", "sel:\n  ics.operation: write\ncondition: sel", {"ics.operation": "write_multiple"}, False),
    ("num-int", "sel:\n  modbus.unit_id: 5\ncondition: sel", {"modbus.unit_id": 5}, True),
    ("num-float-equal", "sel:\n  modbus.unit_id: 5\ncondition: sel", {"modbus.unit_id": 5.0}, True),
    ("num-vs-keyword", "sel:\n  ics.unit: 5\ncondition: sel", {"ics.unit": "5"}, True),
    ("str-vs-number", "sel:\n  modbus.unit_id: '5'\ncondition: sel", {"modbus.unit_id": 5}, True),
    ("num-other", "sel:\n  modbus.unit_id: 5\ncondition: sel", {"modbus.unit_id": 50}, False),
    ("bool", "sel:\n  icsmon.flow.midstream: true\ncondition: sel", {"icsmon.flow.midstream": True}, True),
    ("bool-false", "sel:\n  icsmon.flow.midstream: true\ncondition: sel", {"icsmon.flow.midstream": False}, False),
    ("value-list-any", "sel:\n  modbus.function:\n    - write_single_coil\n    - write_single_register\n"
     "condition: sel", {"modbus.function": "write_single_register"}, True),
    ("array-any", "sel:\n  ics.tag: hr:40001\ncondition: sel", {"ics.tag": ["coil:1", "HR:40001"]}, True),
    ("array-none", "sel:\n  ics.tag: hr:40001\ncondition: sel", {"ics.tag": ["coil:1"]}, False),
    ("null-missing", "sel:\n  modbus.exception: null\ncondition: sel", {}, True),
    ("null-none", "sel:\n  modbus.exception: null\ncondition: sel", {"modbus.exception": None}, True),
    ("null-empty-list", "sel:\n  ics.tag: null\ncondition: sel", {"ics.tag": []}, True),
    ("null-present", "sel:\n  modbus.exception: null\ncondition: sel", {"modbus.exception": "x"}, False),
    ("exists", "sel:\n  modbus.exception|exists: true\ncondition: sel", {"modbus.exception": "busy"}, True),
    ("exists-missing", "sel:\n  modbus.exception|exists: true\ncondition: sel", {}, False),
    ("not-exists", "sel:\n  modbus.exception|exists: false\ncondition: sel", {}, True),
    ("not-exists-present", "sel:\n  modbus.exception|exists: false\ncondition: sel", {"modbus.exception": "x"}, False),
    ("alias-field", "sel:\n  dst_port: 502\ncondition: sel", {"destination.port": 502}, True),
    # -- wildcards and string modifiers
    ("wild-star", "sel:\n  modbus.function: write_*\ncondition: sel", {"modbus.function": "Write_Single_Coil"}, True),
    ("wild-star-no", "sel:\n  modbus.function: write_*\ncondition: sel", {"modbus.function": "read_coils"}, False),
    ("wild-qmark", "sel:\n  ics.tag: hr:4000?\ncondition: sel", {"ics.tag": "hr:40001"}, True),
    ("wild-qmark-one-char", "sel:\n  ics.tag: hr:4000?\ncondition: sel", {"ics.tag": "hr:400012"}, False),
    ("wild-middle", "sel:\n  ics.tag: hr:*1\ncondition: sel", {"ics.tag": "hr:40001"}, True),
    ("wild-escaped", "sel:\n  modbus.server_id: 'a\\*b'\ncondition: sel", {"modbus.server_id": "a*b"}, True),
    ("wild-escaped-literal", "sel:\n  modbus.server_id: 'a\\*b'\ncondition: sel", {"modbus.server_id": "axb"}, False),
    ("contains", "sel:\n  modbus.server_id|contains: plc\ncondition: sel", {"modbus.server_id": "My PLC 7"}, True),
    ("contains-no", "sel:\n  modbus.server_id|contains: plc\ncondition: sel", {"modbus.server_id": "rtu"}, False),
    ("startswith", "sel:\n  modbus.function|startswith: write\ncondition: sel", {"modbus.function": "write_x"}, True),
    ("startswith-no", "sel:\n  modbus.function|startswith: write\ncondition: sel", {"modbus.function": "x_write"},
     False),
    ("endswith", "sel:\n  modbus.function|endswith: _coil\ncondition: sel", {"modbus.function": "write_single_coil"},
     True),
    ("contains-number", "sel:\n  ics.unit|contains: '2'\ncondition: sel", {"ics.unit": 123}, True),
    ("contains-all", "sel:\n  modbus.server_id|contains|all:\n    - siemens\n    - s7\ncondition: sel",
     {"modbus.server_id": "Siemens S7-1500"}, True),
    ("contains-all-partial", "sel:\n  modbus.server_id|contains|all:\n    - siemens\n    - s7\ncondition: sel",
     {"modbus.server_id": "Siemens LOGO"}, False),
    ("cased", "sel:\n  modbus.server_id|cased: PLC\ncondition: sel", {"modbus.server_id": "PLC"}, True),
    ("cased-no", "sel:\n  modbus.server_id|cased: PLC\ncondition: sel", {"modbus.server_id": "plc"}, False),
    ("cased-contains", "sel:\n  modbus.server_id|contains|cased: PLC\ncondition: sel",
     {"modbus.server_id": "my PLC"}, True),
    ("cased-contains-no", "sel:\n  modbus.server_id|contains|cased: PLC\ncondition: sel",
     {"modbus.server_id": "my plc"}, False),
    # -- regular expressions: a search (unanchored), case-sensitive unless |i, flags m and s
    ("re-search", "sel:\n  modbus.server_id|re: 'S7-1[25]00'\ncondition: sel", {"modbus.server_id": "CPU S7-1500 x"},
     True),
    ("re-case", "sel:\n  modbus.server_id|re: 'S7-1[25]00'\ncondition: sel", {"modbus.server_id": "s7-1500"}, False),
    ("re-i", "sel:\n  modbus.server_id|re|i: 'S7-1[25]00'\ncondition: sel", {"modbus.server_id": "s7-1500"}, True),
    ("re-anchored", "sel:\n  modbus.server_id|re: '^plc$'\ncondition: sel", {"modbus.server_id": "my plc"}, False),
    ("re-m", "sel:\n  modbus.server_id|re|m: '^two$'\ncondition: sel", {"modbus.server_id": "one\ntwo\nthree"}, True),
    ("re-no-m", "sel:\n  modbus.server_id|re: '^two$'\ncondition: sel", {"modbus.server_id": "one\ntwo\nthree"},
     False),
    ("re-s", "sel:\n  modbus.server_id|re|s: 'one.two'\ncondition: sel", {"modbus.server_id": "one\ntwo"}, True),
    ("re-no-s", "sel:\n  modbus.server_id|re: 'one.two'\ncondition: sel", {"modbus.server_id": "one\ntwo"}, False),
    ("re-number", "sel:\n  modbus.unit_id|re: '^2[0-9]$'\ncondition: sel", {"modbus.unit_id": 25}, True),
    # -- networks
    ("cidr-v4", "sel:\n  source.ip|cidr: 10.1.0.0/16\ncondition: sel", {"source.ip": "10.1.200.3"}, True),
    ("cidr-v4-out", "sel:\n  source.ip|cidr: 10.1.0.0/16\ncondition: sel", {"source.ip": "10.2.0.3"}, False),
    ("cidr-v4-list", "sel:\n  source.ip|cidr:\n    - 10.1.0.0/16\n    - 172.16.0.0/12\ncondition: sel",
     {"source.ip": "172.20.1.1"}, True),
    ("cidr-v6", "sel:\n  source.ip|cidr: 2001:db8::/32\ncondition: sel", {"source.ip": "2001:db8:0:1::7"}, True),
    ("cidr-v6-out", "sel:\n  source.ip|cidr: 2001:db8::/32\ncondition: sel", {"source.ip": "2001:db9::7"}, False),
    ("cidr-v4-in-v6-net", "sel:\n  source.ip|cidr: 2001:db8::/32\ncondition: sel", {"source.ip": "10.0.0.1"}, False),
    ("cidr-v4-mapped", "sel:\n  source.ip|cidr: 10.0.0.0/8\ncondition: sel", {"source.ip": "::ffff:10.0.0.1"}, True),
    ("cidr-not-an-ip", "sel:\n  source.ip|cidr: 10.0.0.0/8\ncondition: sel", {"source.ip": "plc-1"}, False),
    # -- numeric comparisons (numbers, numeric text, any element of an array)
    ("gt", "sel:\n  ics.address_count|gt: 100\ncondition: sel", {"ics.address_count": 125}, True),
    ("gt-equal", "sel:\n  ics.address_count|gt: 100\ncondition: sel", {"ics.address_count": 100}, False),
    ("gte-equal", "sel:\n  ics.address_count|gte: 100\ncondition: sel", {"ics.address_count": 100}, True),
    ("lt", "sel:\n  ics.address_count|lt: 2\ncondition: sel", {"ics.address_count": 1}, True),
    ("lte", "sel:\n  ics.address_count|lte: 2\ncondition: sel", {"ics.address_count": 3}, False),
    ("gt-text-number", "sel:\n  ics.unit|gt: 200\ncondition: sel", {"ics.unit": "247"}, True),
    ("gt-text-nan", "sel:\n  ics.unit|gt: 200\ncondition: sel", {"ics.unit": "0x10"}, False),
    ("gt-array", "sel:\n  ics.values|gt: 1000\ncondition: sel", {"ics.values": [1.0, 2000.5]}, True),
    ("gt-array-none", "sel:\n  ics.values|gt: 1000\ncondition: sel", {"ics.values": [1.0, 999.5]}, False),
    ("gt-missing", "sel:\n  ics.values|gt: 1000\ncondition: sel", {}, False),
    ("gt-bool-is-not-a-number", "sel:\n  ics.values|gt: 0\ncondition: sel", {"ics.values": True}, False),
    ("neq", "sel:\n  modbus.unit_id|neq: 1\ncondition: sel", {"modbus.unit_id": 2}, True),
    ("neq-equal", "sel:\n  modbus.unit_id|neq: 1\ncondition: sel", {"modbus.unit_id": 1}, False),
    ("neq-string", "sel:\n  ics.operation|neq: read\ncondition: sel", {"ics.operation": "READ"}, False),
    ("neq-missing", "sel:\n  ics.operation|neq: read\ncondition: sel", {}, True),
    # -- field references
    ("fieldref", "sel:\n  destination.port|fieldref: source.port\ncondition: sel",
     {"source.port": 502, "destination.port": 502}, True),
    ("fieldref-differs", "sel:\n  destination.port|fieldref: source.port\ncondition: sel",
     {"source.port": 40000, "destination.port": 502}, False),
    ("fieldref-missing", "sel:\n  destination.port|fieldref: source.port\ncondition: sel", {"destination.port": 502},
     False),
    ("fieldref-case", "sel:\n  source.mac|fieldref: destination.mac\ncondition: sel",
     {"source.mac": "AA-BB", "destination.mac": "aa-bb"}, True),
    ("fieldref-startswith", "sel:\n  modbus.server_id|fieldref|startswith: observer.hostname\ncondition: sel",
     {"modbus.server_id": "plc7-rack2", "observer.hostname": "PLC7"}, True),
    # -- encodings (case-sensitive: an encoding's case is data)
    ("base64", "sel:\n  modbus.diagnostic_data|base64: 'stop'\ncondition: sel",
     {"modbus.diagnostic_data": base64.b64encode(b"stop").decode()}, True),
    ("base64-case", "sel:\n  modbus.diagnostic_data|base64: 'stop'\ncondition: sel",
     {"modbus.diagnostic_data": base64.b64encode(b"stop").decode().lower()}, False),
    *[(f"base64offset-{pad}", "sel:\n  modbus.diagnostic_data|base64offset|contains: 'reset'\ncondition: sel",
       {"modbus.diagnostic_data": base64.b64encode(b"x" * pad + b"reset plc").decode()}, True) for pad in range(3)],
    ("base64offset-absent", "sel:\n  modbus.diagnostic_data|base64offset|contains: 'reset'\ncondition: sel",
     {"modbus.diagnostic_data": base64.b64encode(b"xx restart plc").decode()}, False),
    # -- time parts of @timestamp (float in the stream, ISO text in stored documents)
    ("hour-float", "sel:\n  '@timestamp|hour': 22\ncondition: sel", {"@timestamp": 1_700_000_000.0}, True),
    ("hour-iso", "sel:\n  '@timestamp|hour': 22\ncondition: sel", {"@timestamp": "2023-11-14T22:13:20Z"}, True),
    ("hour-other", "sel:\n  '@timestamp|hour': 3\ncondition: sel", {"@timestamp": "2023-11-14T22:13:20Z"}, False),
    # -- keywords: searched as a case-insensitive substring of any field
    ("keyword", "keywords:\n  - 'S7-1500'\ncondition: keywords", {"modbus.server_id": "cpu s7-1500 v2"}, True),
    ("keyword-list-field", "keywords:\n  - 'hr:40001'\ncondition: keywords", {"ics.tag": ["hr:40001"]}, True),
    ("keyword-absent", "keywords:\n  - 'S7-1500'\ncondition: keywords", {"modbus.server_id": "cpu 1200"}, False),
]


@pytest.mark.parametrize(("detection", "fields", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_value_modifiers(matches, detection: str, fields: dict[str, Any], expected: bool) -> None:
    assert matches(detection, ev(**{k.replace(".", "__"): v for k, v in fields.items()})) is expected


@pytest.mark.parametrize(("source_ip", "expected"), [("10.0.0.5", False), ("10.0.0.6", False), ("10.0.0.7", True)])
def test_expand_with_placeholders_from_configuration(matches, source_ip: str, expected: bool) -> None:
    detection = ("sel:\n  ics.operation: write\new:\n  source.ip|expand: '%engineering_workstations%'\n"
                 "condition: sel and not ew")
    placeholders = {"engineering_workstations": ["10.0.0.5", "10.0.0.6"]}
    assert matches(detection, ev(ics__operation="write", source__ip=source_ip), placeholders) is expected


def test_expand_inside_a_longer_value_and_with_cidr_placeholders(matches) -> None:
    detection = "sel:\n  ics.tag|expand: 'hr:%setpoints%'\ncondition: sel"
    assert matches(detection, ev(ics__tag="hr:40010"), {"setpoints": ["40010", "40011"]})
    assert not matches(detection, ev(ics__tag="hr:40012"), {"setpoints": ["40010", "40011"]})


def test_key_normalisation() -> None:
    assert key("WRITE") == "write"
    assert key(5) == key(5.0) == key("5") == "5"
    assert key(0.5) == "0.5"
    assert key(True) == "true"
