"""The rule pack: it loads, its metadata and tags are right, and every rule's fixtures behave.

Every rule file has a positive and a negative fixture (``rules/README.md``): captures from
``../shared/pcaps`` and crafted ones go through the real sensor, then every event through the real
engine loaded with the rule file alone; the positive case must raise between ``min`` and ``max``
detections of the rule, the negative none.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from analyzer.detection_report import DEFAULT_PLACEHOLDERS, PACK
from analyzer.sigma import Correlation, Engine, Rule, RuleSet, load_placeholders
from analyzer.sigma.attack_ics import TECHNIQUES
from api.rules_cli import (
    Case,
    Source,
    fixtures_path,
    lint,
    load_fixtures,
    read_rule_file,
    rule_files,
    run_case,
    write_crafted,
)
from tests.rules.crafted import CRAFTED

FILES = rule_files([PACK])
PLACEHOLDERS = load_placeholders(DEFAULT_PLACEHOLDERS)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One folder for the crafted captures of the whole module (each is written once)."""
    yield tmp_path_factory.mktemp("crafted")


@pytest.fixture(scope="module")
def pack() -> RuleSet:
    return RuleSet.load([PACK], PLACEHOLDERS)


def primary(path: Path) -> dict:
    parsed = read_rule_file(path)
    return parsed.docs[parsed.primary]


# -- the pack loads, and lint finds nothing ---------------------------------------------------------------

def test_the_pack_loads_without_errors_or_warnings(pack: RuleSet) -> None:
    assert pack.errors == []
    assert pack.warnings == []
    alerting = [r for r in pack.rules if r.output]
    assert len(alerting) == len(FILES) >= 45  # one alerting rule per file; helpers are not output
    assert {r.name for r in alerting} == {p.name.removesuffix(".yml") for p in FILES}
    helpers = [r for r in pack.rules if not r.output]
    assert helpers and all(r.name and "__" in r.name and r.level == "informational" for r in helpers)


def test_lint_finds_no_problem_in_the_pack() -> None:
    assert [str(p) for p in lint([PACK], PLACEHOLDERS)] == []


def test_every_placeholder_the_pack_uses_is_in_the_site_template() -> None:
    used = set()
    for path in FILES:
        used |= set(re.findall(r"%([a-z_]+)%", path.read_text()))
    assert used == set(PLACEHOLDERS)
    assert all(PLACEHOLDERS[name] for name in used)
    # Without them, exactly the rules that use one fail to load, each with a one-line reason.
    bare = RuleSet.load([PACK], {})
    assert {Path(e.file).name for e in bare.errors} == {p.name for p in FILES if "%" in p.read_text()}
    assert all("placeholder" in e.reason and "\n" not in str(e) for e in bare.errors)


# -- metadata and tags ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_metadata(path: Path) -> None:
    doc = primary(path)
    assert doc["name"] == path.stem
    assert uuid.UUID(str(doc["id"])).version == 4
    assert doc["status"] == "test"
    assert doc["level"] in ("low", "medium", "high", "critical")
    assert len(doc["description"].split()) >= 20, "say what, why it matters and which events"
    assert doc["author"] and doc["date"]
    assert doc["falsepositives"] and all(len(fp.split()) >= 3 for fp in doc["falsepositives"])
    assert doc["references"][0].startswith("https://attack.mitre.org/techniques/T08")
    assert doc["fields"][:2] == ["source.ip", "destination.ip"]
    parsed = read_rule_file(path)
    for helper in (d for i, d in enumerate(parsed.docs) if i != parsed.primary):
        assert helper["name"].startswith(f"{path.stem}__") and helper["level"] == "informational"


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_attack_tags_are_ics_techniques_with_their_tactics(path: Path, pack: RuleSet) -> None:
    rule = pack.get(str(primary(path)["id"]))
    assert rule is not None
    assert rule.techniques and rule.tactics
    for tid in rule.techniques:
        technique = TECHNIQUES[tid]
        assert not technique.deprecated
        assert {t.replace("-", " ").title() for t in technique.tactics} & {t.title() for t in rule.tactics}, tid
    references = " ".join(primary(path)["references"])
    assert all(f"/techniques/{t}/" in references for t in rule.techniques[:1])


def test_ids_and_titles_are_unique(pack: RuleSet) -> None:
    ids = Counter(r.rule_id for r in pack.rules)
    titles = Counter(r.title for r in pack.rules if r.output)
    assert max(ids.values()) == 1
    assert max(titles.values()) == 1


def test_the_pack_covers_what_the_issue_asks_for(pack: RuleSet) -> None:
    alerting = [r for r in pack.rules if r.output]
    techniques = {t for r in alerting for t in r.techniques}
    for tid in ("T0855", "T0836", "T0843", "T0845", "T0809", "T0858", "T0875", "T0816", "T0839", "T0878",
                "T0846", "T0888", "T0806", "T0814"):
        assert tid in techniques, tid
    # Device restart (T0816) for every protocol that has such a command.
    restarts = {r.name for r in alerting if "T0816" in r.techniques}
    assert {"modbus_restart_communications", "dnp3_restart", "enip_cip_reset", "bacnet_reinitialize_device",
            "iec104_reset_process"} <= restarts
    # Rate and sequence detections are correlations of every kind the engine evaluates.
    kinds = Counter(r.spec.type for r in alerting if isinstance(r, Correlation) and r.spec)
    assert set(kinds) == {"event_count", "value_count", "temporal", "temporal_ordered"}
    # Every protocol, and the flow and decode-error categories, have rules of their own.
    routes = {r.route[1] for r in alerting if isinstance(r, Rule) and r.route}
    routes |= {(r.file.split("/")[-2]) for r in alerting}
    assert {"modbus", "dnp3", "s7comm", "enip", "iec104", "bacnet", "icsmon.conn", "icsmon.decode_error"} <= routes


def test_readme_lists_every_rule() -> None:
    text = (PACK / "README.md").read_text()
    table = text[text.index("## The rules"):]
    listed = re.findall(r"^\| `([a-z0-9_]+)` \|", table, re.MULTILINE)
    assert sorted(listed) == sorted(p.stem for p in FILES)
    for name in listed:
        doc = primary(next(p for p in FILES if p.stem == name))
        row = next(line for line in table.splitlines() if line.startswith(f"| `{name}` |"))
        assert f"| {doc['level']} |" in row, name


# -- fixtures -----------------------------------------------------------------------------------------------

CASES = [(path, name) for path in FILES for name in ("positive", "negative")]


@pytest.mark.parametrize(("path", "name"), CASES, ids=[f"{p.stem}-{n}" for p, n in CASES])
def test_fixture(path: Path, name: str, workdir: Path) -> None:
    fixtures = load_fixtures(fixtures_path(path))
    assert fixtures.rule == path.stem
    case: Case = getattr(fixtures, name)
    result = run_case(path, case, PLACEHOLDERS, workdir)
    assert result.error is None, result.error
    assert result.ok, str(result)
    assert result.events > 0
    if name == "positive":
        for detection in result.detections:  # the evidence is the triggering event itself
            assert detection.severity in ("low", "medium", "high", "critical")
            assert detection.event.get("source.ip") and detection.event.get("destination.ip")


def test_fixtures_prefer_real_traffic() -> None:
    kinds: Counter[str] = Counter()
    for path in FILES:
        fixtures = load_fixtures(fixtures_path(path))
        for case in fixtures.cases:
            kinds.update(s.kind for s in case.sources)
            assert case.note, f"{path.stem} {case.name}: say why this traffic"
    assert kinds["shared"] > kinds["crafted"] > kinds["inline"]
    used = {s.ref for p in FILES for c in load_fixtures(fixtures_path(p)).cases for s in c.sources
            if s.kind == "crafted"}
    assert used == set(CRAFTED), "every crafted capture is used, and only registered ones"


def test_a_fixture_that_does_not_behave_fails(workdir: Path) -> None:
    rule = PACK / "dnp3" / "dnp3_restart.yml"
    wrong = Case("positive", [Source("shared", "iti/pcaps/dnp3/read_and_response.pcap")])
    result = run_case(rule, wrong, PLACEHOLDERS, workdir)
    assert not result.ok and result.count == 0
    assert "FAILED, 0 matches in 4 events, expected at least 1 match" in str(result)
    missing = Case("positive", [Source("shared", "no/such/capture.pcap")])
    result = run_case(rule, missing, PLACEHOLDERS, workdir)
    assert not result.ok and "not found" in str(result.error)
    overridden = Case("negative", [Source("shared", "iti/pcaps/dnp3/cold_restart_and_response.pcap")], min=0, max=0)
    assert not run_case(rule, overridden, PLACEHOLDERS, workdir).ok


def test_inline_and_json_lines_sources(tmp_path: Path) -> None:
    rule = PACK / "iec104" / "iec104_stopdt.yml"
    event = {"@timestamp": 1767603600.0, "event.dataset": "icsmon.iec104", "network.protocol": "iec104",
             "ics.function": "stopdt_act", "ics.role": "request", "source.ip": "10.10.9.66",
             "destination.ip": "10.10.3.31"}
    inline = Case("positive", [Source("inline", inline=(event,))], min=1, max=1)
    assert run_case(rule, inline, PLACEHOLDERS, tmp_path).ok
    (tmp_path / "events.jsonl").write_text('{"ics.function": "stopdt_con"}\n\n' + __import__("json").dumps(event))
    lines = Case("positive", [Source("events", "events.jsonl")], min=1, max=1)
    copy = tmp_path / "iec104_stopdt.yml"
    copy.write_text(rule.read_text())
    assert run_case(copy, lines, PLACEHOLDERS, tmp_path).ok


# -- crafted captures --------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["s7_stop_then_download", "modbus_unit_id_sweep", "bacnet_who_is_flood"])
def test_crafted_captures_are_reproducible(name: str, tmp_path: Path) -> None:
    first, second = tmp_path / "a.pcap", tmp_path / "b.pcap"
    write_crafted(name, first)
    write_crafted(name, second)
    assert hashlib.sha256(first.read_bytes()).digest() == hashlib.sha256(second.read_bytes()).digest()
    assert first.stat().st_size > 200


def test_crafted_captures_only_use_the_placeholder_hosts_they_mean_to(workdir: Path) -> None:
    """The attacker address of crafted attacks is in no placeholder list, so 'unexpected host' rules see it."""
    listed = {ip for values in PLACEHOLDERS.values() for ip in values}
    assert "10.10.9.66" not in listed
    assert {"10.10.1.20", "10.10.1.30"} <= listed


def test_engine_explains_a_pack_rule(pack: RuleSet) -> None:
    """The compiled predicate of a pack rule is plain Python over event fields (what `rules test` shows)."""
    engine = Engine(pack)
    rule = pack.get("ics_unauthorized_write")
    assert rule is not None
    source = engine.explain(rule.rule_id)
    assert source is not None and "ics.operation" in source and "source.ip" in source
    data = yaml.safe_load((PACK / "ics" / "ics_unauthorized_write.yml").read_text())
    assert data["detection"]["condition"] == "write and not iec104 and not allowed"
