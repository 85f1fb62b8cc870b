"""The logsource taxonomy, the ATT&CK for ICS table and tag check, and the conversion notes."""

from __future__ import annotations

import pytest
from sigma.collection import SigmaCollection

from analyzer.sigma.attack_ics import TACTICS, TECHNIQUES, check_tags, tactic_name, technique_id
from analyzer.sigma.pipeline import conversion_notes, icsmon_pipeline
from analyzer.sigma.taxonomy import (
    CATEGORIES,
    SERVICES,
    LogsourceError,
    logsource_tests,
    markdown_reference,
)
from sensor.dissect import Dissector
from tests.analyzer.sigma.helpers import RULES


def test_taxonomy_tests_per_logsource() -> None:
    assert logsource_tests("icsmon", "modbus", None).tests == (("network.protocol", "modbus"),)
    assert logsource_tests("ics", "iec104", "decode_error").tests == (
        ("network.protocol", "iec104"), ("event.dataset", "icsmon.decode_error"))
    assert logsource_tests("ICSMON", None, "flow").route == ("event.dataset", "icsmon.conn")
    assert logsource_tests("icsmon", None, None).tests == ()
    with pytest.raises(LogsourceError, match="product 'zeek' is not icsmon's"):
        logsource_tests("zeek", "modbus", None)
    with pytest.raises(LogsourceError, match="unknown logsource category 'process_creation'"):
        logsource_tests(None, None, "process_creation")


def test_every_dissector_protocol_has_a_service() -> None:
    import importlib
    import pkgutil

    import sensor.protocols

    checked = []
    for info in pkgutil.iter_modules(sensor.protocols.__path__):
        try:  # modules are added by other work in progress; check those that import
            module = importlib.import_module(f"sensor.protocols.{info.name}")
        except Exception:  # noqa: BLE001
            continue
        dissector = module.DISSECTOR
        assert isinstance(dissector, Dissector)
        assert SERVICES[dissector.name][:2] == ("network.protocol", dissector.name)
        checked.append(dissector.name)
    assert {"modbus", "iec104", "bacnet"} <= set(checked)
    assert SERVICES["cip"][:2] == ("network.protocol", "enip")  # CIP rides on the enip dissector


def test_taxonomy_reference_lists_every_term() -> None:
    text = markdown_reference()
    for name in (*SERVICES, *CATEGORIES):
        assert f": {name}`" in text


def test_attack_ics_table() -> None:
    assert len(TACTICS) == 12
    assert TECHNIQUES["T0855"].name == "Unauthorized Command Message"
    assert TECHNIQUES["T0816"].tactics == ("inhibit-response-function",)
    assert all(t in TACTICS for tech in TECHNIQUES.values() for t in tech.tactics)
    # Every technique the rule pack is asked to cover exists.
    for tid in ("T0855", "T0836", "T0843", "T0845", "T0809", "T0858", "T0875", "T0816", "T0839", "T0878",
                "T0846", "T0888", "T0806", "T0814"):
        assert tid in TECHNIQUES and not TECHNIQUES[tid].deprecated


def test_tag_check() -> None:
    check = check_tags(["attack.t0855", "attack.impair_process_control", "attack.inhibit-response-function",
                        "attack.ta0102", "attack.g0088", "attack.t1059", "attack.t0833", "attack.bogus",
                        "cve.2021-1234", "attack.t0855"])
    assert check.techniques == ("T0855", "T0833")
    assert check.tactics == ("Impair Process Control", "Inhibit Response Function", "Discovery")
    assert check.problems == (
        "tag attack.t1059: T1059 is not an ATT&CK for ICS technique (Enterprise ids T1xxx are not used for ICS rules)",
        "tag attack.t0833: T0833 (Modify Control Logic) is deprecated in ATT&CK for ICS",
        "tag attack.bogus: not an ATT&CK for ICS tactic, technique, group or software",
    )
    assert technique_id("t0806") == "T0806" and technique_id("t1059") is None
    assert tactic_name("ta0106") == "Impair Process Control" and tactic_name("persistence") == "Persistence"


def notes(text: str, target: str) -> list[str]:
    return conversion_notes(SigmaCollection.from_yaml(text).rules[0], target)


RULE = "title: t\nlogsource: {{product: icsmon, service: modbus}}\ndetection:\n  sel: {{{sel}}}\n  condition: sel\n"


@pytest.mark.parametrize(("selection", "expected"), [
    ("ics.operation: write", []),
    ("modbus.function: write_single_coil", []),
    ("source.ip|cidr: 10.0.0.0/8", []),
    ("ics.address_start|gte: 40000", []),
    ("modbus.server_id|contains: Siemens", ["modbus.server_id: strings match case-insensitively here,"
                                            " case-sensitively in Elasticsearch"]),
    ("ics.operation: WRITE", ["ics.operation: strings match case-insensitively here, case-sensitively in"
                              " Elasticsearch"]),
    ("modbus.server_id|re: 's7'", ["modbus.server_id: regular expressions search here, match the whole value in"
                                   " Elasticsearch (Lucene syntax, no inline flags)"]),
    ("ics.unit|gt: 200", ["ics.unit: numeric comparison of a text field compares text in Elasticsearch"]),
    ("modbus.server_id|cased: PLC", ["modbus.server_id: case-sensitive matching (cased) is not supported by the"
                                     " Elasticsearch backends"]),
])
def test_conversion_notes_for_plain_rules(selection: str, expected: list[str]) -> None:
    assert notes(RULE.format(sel=selection), "lucene") == expected


def test_conversion_notes_for_multi_valued_fields() -> None:
    case = "ics.tag: strings match case-insensitively here, case-sensitively in Elasticsearch"
    pattern = RULE.format(sel="ics.tag|startswith: 'hr:'")
    assert notes(pattern, "esql") == ["ics.tag: several values in one field: ES|QL takes a pattern, regular"
                                      " expression or CIDR test on them as null, the engine tests each value", case]
    assert notes(pattern, "lucene") == [case]  # a Lucene query tests each value, as the engine
    assert notes(RULE.format(sel="ics.tag: 'hr:40001'"), "esql") == [case]  # equality: match()
    assert notes(RULE.format(sel="ics.values|gt: 10"), "esql") == []  # comparison: mv_max()


def test_conversion_notes_for_fieldref_and_correlations() -> None:
    text = RULE.format(sel="destination.port|fieldref: source.port")
    assert notes(text, "lucene") == ["destination.port: field references cannot be expressed in Lucene"]
    assert notes(text, "esql") == []
    collection = SigmaCollection.load_ruleset([RULES / "s7_stop_then_program_download.yml"])
    correlation = collection.rules[-1]
    assert conversion_notes(correlation, "esql") == [
        "correlation: ES|QL counts in fixed time buckets (date_trunc), the engine in a sliding window",
        "correlation: ES|QL has no ordered sequences (temporal_ordered cannot be converted)"]


def test_pipeline_refuses_rules_outside_the_taxonomy() -> None:
    from sigma.backends.elasticsearch import LuceneBackend
    from sigma.exceptions import SigmaTransformationError

    windows = "title: w\nlogsource: {product: windows}\ndetection:\n  sel: {EventID: 1}\n  condition: sel\n"
    with pytest.raises(SigmaTransformationError, match="not part of the icsmon taxonomy"):
        LuceneBackend(processing_pipeline=icsmon_pipeline()).convert(SigmaCollection.from_yaml(windows))
    flow = "title: f\nlogsource: {product: ics, category: flow}\ndetection:\n  sel: {dst_port: 502}\n  condition: sel\n"
    (query,) = LuceneBackend(processing_pipeline=icsmon_pipeline()).convert(SigmaCollection.from_yaml(flow))
    assert query == "event.dataset:icsmon.conn AND destination.port:502"


def test_semantics_document_has_the_current_taxonomy() -> None:
    from pathlib import Path

    text = (Path(__file__).resolve().parents[3] / "analyzer" / "sigma" / "SEMANTICS.md").read_text()
    assert markdown_reference() in text
