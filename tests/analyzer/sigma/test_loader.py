"""Loading: bad rules are reported with file, rule id and reason while the others load."""

from __future__ import annotations

from pathlib import Path

from analyzer.sigma import Engine, RuleError, RuleSet, load_placeholders
from tests.analyzer.sigma.helpers import EWS, RULES, rule_yaml

GOOD = rule_yaml("sel:\n  ics.operation: write\ncondition: sel", "service: modbus", title="good",
                 rule_id="11111111-1111-4111-8111-111111111111")


def bad(detection: str, logsource: str = "service: modbus", rule_id: str = "22222222-2222-4222-8222-222222222222",
        extra: str = "") -> str:
    return rule_yaml(detection, logsource, title="bad", rule_id=rule_id, extra=extra)


def only_error(ruleset: RuleSet) -> RuleError:
    assert len(ruleset.errors) == 1, [str(e) for e in ruleset.errors]
    assert [r.title for r in ruleset.rules] == ["good"]
    return ruleset.errors[0]


def test_example_rules_load_cleanly() -> None:
    ruleset = RuleSet.load([RULES], EWS)
    assert ruleset.errors == [] and ruleset.warnings == []
    assert sorted(r.kind for r in ruleset.rules) == ["correlation"] * 3 + ["rule"] * 5
    assert len(ruleset.files) == 5


def test_unknown_modifier(load) -> None:
    error = only_error(load(GOOD, bad("sel:\n  ics.operation|sounds_like: write\ncondition: sel")))
    assert error.file.endswith("rule_1.yml")
    assert error.rule_id == "22222222-2222-4222-8222-222222222222"
    assert "Unknown modifier" in error.reason and "sounds_like" in error.reason


def test_undefined_detection_in_condition(load) -> None:
    error = only_error(load(GOOD, bad("sel:\n  ics.operation: write\ncondition: sel and missing")))
    assert "Detection 'missing' not defined" in error.reason


def test_condition_syntax_error(load) -> None:
    error = only_error(load(GOOD, bad("sel:\n  ics.operation: write\ncondition: sel and or sel")))
    assert error.rule_id == "22222222-2222-4222-8222-222222222222"
    assert "\n" not in str(error)


def test_invalid_regular_expression(load) -> None:
    error = only_error(load(GOOD, bad("sel:\n  modbus.server_id|re: 'a(b'\ncondition: sel")))
    assert "invalid" in error.reason.lower()


def test_invalid_cidr(load) -> None:
    error = only_error(load(GOOD, bad("sel:\n  source.ip|cidr: 10.0.0.300/8\ncondition: sel")))
    assert "CIDR" in error.reason


def test_logsource_outside_the_taxonomy(load) -> None:
    error = only_error(load(GOOD, bad("sel:\n  x: 1\ncondition: sel", "service: profibus")))
    assert error.reason == ("unknown logsource service 'profibus'"
                            " (known: modbus, dnp3, s7comm, enip, cip, iec104, bacnet)")


def test_unconfigured_placeholder(load) -> None:
    text = bad("sel:\n  source.ip|expand: '%historians%'\ncondition: sel")
    error = only_error(load(GOOD, text, placeholders=EWS))
    assert error.reason == "placeholder %historians% is not configured (known: engineering_workstations)"


def test_broken_yaml_file(load) -> None:
    ruleset = load(GOOD, "title: broken\ndetection: [unclosed\n")
    assert [r.title for r in ruleset.rules] == ["good"]
    (error,) = ruleset.errors
    assert error.rule_id is None and error.file.endswith("rule_1.yml")
    assert error.reason.startswith("YAML: line ")


def test_yaml_that_is_not_a_rule(load) -> None:
    ruleset = load(GOOD, "- just\n- a list\n")
    assert [r.title for r in ruleset.rules] == ["good"]
    assert "not a Sigma rule file" in ruleset.errors[0].reason


def test_missing_detection_section(load) -> None:
    ruleset = load(GOOD, "title: nothing\nid: 33333333-3333-4333-8333-333333333333\nlogsource:\n  product: icsmon\n")
    assert [r.title for r in ruleset.rules] == ["good"]
    assert ruleset.errors[0].rule_id == "33333333-3333-4333-8333-333333333333"


def test_duplicate_rule_id_keeps_the_first(load) -> None:
    ruleset = load(GOOD, GOOD.replace("title: good", "title: copy"))
    assert [r.title for r in ruleset.rules] == ["good"]
    assert ruleset.errors[0].reason.startswith("duplicate rule id, first defined in ")


def test_correlation_with_missing_reference(load) -> None:
    corr = """\
    title: count
    id: 44444444-4444-4444-8444-444444444444
    correlation:
      type: event_count
      rules: [no_such_rule]
      group-by: [source.ip]
      timespan: 1m
      condition: {gte: 3}
    """
    error = only_error(load(GOOD, corr))
    assert error.rule_id == "44444444-4444-4444-8444-444444444444"
    assert error.reason == "correlation references unknown or unloaded rule 'no_such_rule'"


def test_correlation_of_an_unsupported_type(load) -> None:
    base = GOOD.replace("title: good", "title: good\nname: good_rule")
    corr = """\
    title: sum
    id: 55555555-5555-4555-8555-555555555555
    correlation:
      type: value_sum
      rules: [good_rule]
      group-by: [source.ip]
      timespan: 1m
      condition: {gte: 3, field: ics.address_count}
    """
    error = only_error(load(base, corr))
    assert "correlation type value_sum is not supported" in error.reason


def test_missing_path_is_an_error() -> None:
    ruleset = RuleSet.load([Path("/nonexistent/rules")])
    assert [str(e) for e in ruleset.errors] == ["/nonexistent/rules: no such file or directory"]


def test_rule_error_is_one_line() -> None:
    assert str(RuleError("rules/a.yml", "abc", "bad modifier")) == "rules/a.yml: rule abc: bad modifier"
    assert str(RuleError("rules/a.yml", None, "YAML: line 3: x")) == "rules/a.yml: YAML: line 3: x"


def test_a_bad_rule_does_not_stop_detection(load) -> None:
    ruleset = load(bad("sel:\n  ics.operation|nope: x\ncondition: sel"), GOOD)
    assert len(Engine(ruleset).match({"network.protocol": "modbus", "ics.operation": "write"})) == 1


def test_placeholders_file_plain_or_pipeline_vars(tmp_path: Path) -> None:
    plain = tmp_path / "plain.yml"
    plain.write_text("engineering_workstations: [10.0.0.5, 10.0.0.6]\nport: 502\n")
    pipeline = tmp_path / "pipeline.yml"
    pipeline.write_text("name: placeholders\npriority: 10\nvars:\n  engineering_workstations:\n    - 10.0.0.5\n")
    assert load_placeholders(plain) == {"engineering_workstations": ["10.0.0.5", "10.0.0.6"], "port": ["502"]}
    assert load_placeholders(pipeline) == {"engineering_workstations": ["10.0.0.5"]}
