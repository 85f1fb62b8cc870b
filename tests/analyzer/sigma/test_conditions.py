"""Conditions, filters, logsources and the Detection a rule raises: inline rule + event -> exact output."""

from __future__ import annotations

from typing import Any

import pytest

from analyzer.alerts import Detection
from analyzer.sigma import Engine, RuleSet
from tests.analyzer.sigma.helpers import EWS, RULES, rule_yaml

SELECTIONS = """\
sel_write:
  ics.operation: write
sel_unit:
  ics.unit: '7'
sel_coil:
  modbus.function: write_single_coil
flt_ews:
  source.ip: 10.0.0.5
"""


def ev(**fields: Any) -> dict[str, Any]:
    return {"network.protocol": "modbus", **{k.replace("__", "."): v for k, v in fields.items()}}


WRITE_UNIT7 = ev(ics__operation="write", ics__unit="7", modbus__function="write_single_register",
                 source__ip="10.0.0.9")

CONDITIONS = [
    ("sel_write and sel_unit", True),
    ("sel_write and sel_coil", False),
    ("sel_write or sel_coil", True),
    ("not sel_coil", True),
    ("not sel_write", False),
    ("sel_write and not flt_ews", True),
    ("1 of sel_*", True),
    ("all of sel_*", False),
    ("all of sel_w* ", True),
    ("1 of them", True),
    ("all of them", False),
    ("any of sel_c*", False),
    ("sel_write and (sel_coil or sel_unit)", True),
    ("(sel_write and sel_coil) or sel_unit", True),
    ("sel_write and (sel_coil or flt_ews)", False),
    ("not (sel_coil or flt_ews)", True),
    ("not 1 of sel_c* and sel_write", True),
    ("sel_write and not 1 of flt_*", True),
    ("sel_coil or not sel_write or sel_unit and flt_ews", False),  # not > and > or
]


@pytest.mark.parametrize(("condition", "expected"), CONDITIONS, ids=[c for c, _ in CONDITIONS])
def test_condition_language(matches, condition: str, expected: bool) -> None:
    assert matches(SELECTIONS + f"condition: {condition}", WRITE_UNIT7) is expected


def test_condition_list_matches_when_any_condition_does(matches) -> None:
    detection = SELECTIONS + "condition:\n  - sel_coil\n  - sel_unit"
    assert matches(detection, WRITE_UNIT7)
    assert not matches(detection, ev(ics__unit="8"))


def test_list_of_maps_is_an_or_and_a_map_is_an_and(matches) -> None:
    detection = """\
    sel:
      - ics.operation: write
        ics.unit: '8'
      - modbus.function: read_coils
    condition: sel
    """
    assert not matches(detection, WRITE_UNIT7)  # write but unit 7
    assert matches(detection, ev(ics__operation="write", ics__unit="8"))
    assert matches(detection, ev(modbus__function="read_coils"))


def test_logsource_service_selects_the_protocol(load) -> None:
    ruleset = load(rule_yaml("sel:\n  ics.operation: write\ncondition: sel", "service: modbus"))
    engine = Engine(ruleset)
    assert engine.match({"network.protocol": "modbus", "ics.operation": "write"})
    assert not engine.match({"network.protocol": "dnp3", "ics.operation": "write"})
    assert not engine.match({"ics.operation": "write"})


def test_logsource_category_selects_the_dataset(load) -> None:
    ruleset = load(rule_yaml("sel:\n  destination.port: 502\ncondition: sel", "category: flow"))
    engine = Engine(ruleset)
    assert engine.match({"event.dataset": "icsmon.conn", "destination.port": 502})
    assert not engine.match({"event.dataset": "icsmon.modbus", "destination.port": 502})


def test_product_ics_is_icsmon_and_other_products_are_refused(load) -> None:
    ok = load(rule_yaml("sel:\n  ics.operation: write\ncondition: sel", "product: ics"))
    assert not ok.errors and len(ok.rules) == 1
    refused = load(rule_yaml("sel:\n  EventID: 4624\ncondition: sel", "product: windows"))
    assert refused.rules == []
    assert "logsource product 'windows' is not icsmon's" in str(refused.errors[0])


def test_detection_carries_the_rule_metadata(load) -> None:
    text = rule_yaml("sel:\n  ics.operation: write\ncondition: sel", "service: modbus",
                     extra="description: Writes happen.\ntags:\n  - attack.impair_process_control\n"
                           "  - attack.t0855\n  - attack.t0836\n  - cve.2020-0001\n",
                     title="Modbus write")
    event = ev(ics__operation="write")
    (detection,) = Engine(load(text)).match(event)
    assert detection == Detection(
        detector_type="rule", detector_id="00000000-0000-4000-8000-000000000001", title="Modbus write",
        severity="medium", event=event, techniques=("T0855", "T0836"), tactics=("Impair Process Control",),
        description="Writes happen.")


@pytest.mark.parametrize(("level", "severity"), [("informational", "low"), ("low", "low"), ("medium", "medium"),
                                                  ("high", "high"), ("critical", "critical")])
def test_level_maps_to_severity(load, level: str, severity: str) -> None:
    text = rule_yaml("sel:\n  ics.operation: write\ncondition: sel").replace("level: medium", f"level: {level}")
    (detection,) = Engine(load(text)).match(ev(ics__operation="write"))
    assert detection.severity == severity


def test_unknown_attack_tags_are_warnings_not_errors(load) -> None:
    text = rule_yaml("sel:\n  ics.operation: write\ncondition: sel", extra="tags:\n  - attack.t1059\n")
    ruleset = load(text)
    assert not ruleset.errors and len(ruleset.rules) == 1
    assert "T1059 is not an ATT&CK for ICS technique" in ruleset.warnings[0]


def test_filter_rule_removes_matches_of_the_rules_it_names() -> None:
    engine = Engine(RuleSet.load([RULES], EWS))
    write = ev(ics__operation="write", ics__role="request")
    assert [d.title for d in engine.match({**write, "source.ip": "10.9.9.9"})] == [
        "Modbus write from a host that is not an engineering workstation"]
    assert engine.match({**write, "source.ip": "10.0.0.5"}) == []  # engineering workstation (placeholder)
    assert engine.match({**write, "source.ip": "192.168.250.17"}) == []  # the filter's lab network


def test_filter_with_rules_any_applies_to_every_rule_of_its_logsource(load) -> None:
    rule_a = rule_yaml("sel:\n  ics.operation: write\ncondition: sel", "service: modbus", title="a")
    rule_b = rule_yaml("sel:\n  ics.operation: restart\ncondition: sel", "service: modbus", title="b",
                       rule_id="00000000-0000-4000-8000-000000000002")
    flt = """\
    title: lab
    logsource:
      product: icsmon
      service: modbus
    filter:
      rules: any
      lab:
        source.ip|cidr: 192.168.0.0/16
      condition: not lab
    """
    engine = Engine(load(rule_a, rule_b, flt))
    assert len(engine.match(ev(ics__operation="write", source__ip="10.0.0.1"))) == 1
    assert engine.match(ev(ics__operation="write", source__ip="192.168.1.1")) == []
    assert engine.match(ev(ics__operation="restart", source__ip="192.168.1.1")) == []
    assert len(engine.match(ev(ics__operation="restart", source__ip="10.0.0.1"))) == 1


def test_rules_are_reported_in_rule_order(load) -> None:
    first = rule_yaml("sel:\n  ics.operation: write\ncondition: sel", title="first")
    second = rule_yaml("sel:\n  ics.unit: '7'\ncondition: sel", title="second",
                       rule_id="00000000-0000-4000-8000-000000000002")
    engine = Engine(load(first, second))
    assert [d.title for d in engine.match(WRITE_UNIT7)] == ["first", "second"]
