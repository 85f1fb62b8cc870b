"""The rule index only skips rules that cannot match: indexed results equal evaluating every rule."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from analyzer.sigma import Engine, Rule, RuleSet
from analyzer.sigma.bench import format_table, generate_events, generate_rules, run
from tests.analyzer.sigma.helpers import rule_yaml


def brute_force(ruleset: RuleSet, event: dict[str, Any]) -> list[str]:
    return [r.rule_id for r in ruleset.rules if isinstance(r, Rule) and r.predicate(event)]


def indexed(engine: Engine, event: dict[str, Any]) -> list[str]:
    return [r.rule_id for r in engine._snap.index.candidates(event) if r.predicate(event)]


def mutate(event: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """Odd but legal shapes: upper case, numbers as text, arrays, missing fields, booleans."""
    out = dict(event)
    choice = rng.randrange(8)
    if choice == 0:
        out = {k: v.upper() if isinstance(v, str) and k != "source.ip" else v for k, v in out.items()}
    elif choice == 1 and "ics.address_start" in out:
        out["ics.address_start"] = str(out["ics.address_start"])
    elif choice == 2 and "ics.address_start" in out:
        out["ics.address_start"] = [out["ics.address_start"] - 300, out["ics.address_start"]]
    elif choice == 3:
        out.pop(rng.choice(sorted(out)), None)
    elif choice == 4:
        out["ics.unit"] = int(out.get("ics.unit", "1"))
    elif choice == 5 and "ics.tag" in out:
        out["ics.tag"] = out["ics.tag"][0][:5]
    elif choice == 6:
        out["ics.address_start"] = True
    return out


def test_index_equals_brute_force_on_generated_rules(tmp_path: Path) -> None:
    generate_rules(400, tmp_path)
    ruleset = RuleSet.load([tmp_path], {"control_stations": ["10.0.0.5", "10.1.0.5"]})
    assert ruleset.errors == []
    engine = Engine(ruleset)
    stats = engine.snapshot()["index"]
    assert stats["filed_eq"] and stats["filed_prefix"] and stats["filed_range"]
    rng = random.Random(3)
    events = [mutate(e, rng) for e in generate_events(4000, seed=5)]
    matched = 0
    for event in events:
        expected = brute_force(ruleset, event)
        assert indexed(engine, event) == expected, event
        matched += bool(expected)
    assert matched > 200  # the comparison saw many matches, not only empty lists
    evaluated = engine.stats["candidates"]
    for event in events:
        engine.match(event)
    assert engine.stats["candidates"] - evaluated < len(events) * 4  # far fewer than 400 per event


def test_index_edge_cases(load) -> None:
    rules = [
        rule_yaml("sel:\n  ics.address_start|gte: 40100\n  ics.address_start|lte: 40199\ncondition: sel",
                  title="range", rule_id="00000000-0000-4000-8000-00000000000a"),
        rule_yaml("sel:\n  modbus.function|startswith: [write_s, mask_]\ncondition: sel", "service: modbus",
                  title="prefix", rule_id="00000000-0000-4000-8000-00000000000b"),
        rule_yaml("sel:\n  ics.unit: [7, '8']\ncondition: sel", title="units",
                  rule_id="00000000-0000-4000-8000-00000000000c"),
        rule_yaml("sel:\n  ics.unit: 9\nflt:\n  ics.operation: read\ncondition: sel and not flt", title="not",
                  rule_id="00000000-0000-4000-8000-00000000000d"),
        rule_yaml("sel:\n  - ics.unit: '10'\n  - ics.unit: '11'\n    ics.operation: write\ncondition: sel",
                  title="or", rule_id="00000000-0000-4000-8000-00000000000e"),
    ]
    ruleset = load(*rules)
    engine = Engine(ruleset)
    cases = [
        ({"ics.address_start": 40150}, ["range"]),
        ({"ics.address_start": "40199"}, ["range"]),
        ({"ics.address_start": [1, 40100.0]}, ["range"]),
        ({"ics.address_start": 40200}, []),
        ({"network.protocol": "MODBUS", "modbus.function": "Write_Single_Coil"}, ["prefix"]),
        ({"network.protocol": "modbus", "modbus.function": "mask_write_register"}, ["prefix"]),
        ({"network.protocol": "modbus", "modbus.function": "write"}, []),
        ({"ics.unit": 7}, ["units"]),
        ({"ics.unit": 8.0}, ["units"]),
        ({"ics.unit": ["1", "8"]}, ["units"]),
        ({"ics.unit": "9", "ics.operation": "write"}, ["not"]),
        ({"ics.unit": "9", "ics.operation": "read"}, []),
        ({"ics.unit": "11"}, []),
        ({"ics.unit": "11", "ics.operation": "write"}, ["or"]),
        ({"ics.unit": "10"}, ["or"]),
    ]
    for event, titles in cases:
        assert [d.title for d in engine.match(event)] == titles, event
        assert indexed(engine, event) == brute_force(ruleset, event)
    assert engine.snapshot()["index"]["filed_always"] == 0


def test_bench_runs() -> None:
    results = run([10, 30], events=3000)
    assert [int(r["rules"]) for r in results] == [11, 33]  # every tenth rule brings a correlation
    assert all(r["events_per_s"] > 0 and r["detections"] > 0 for r in results)
    lines = format_table(results).splitlines()
    assert lines[0].startswith("rules  events/s") and len(lines) == 3


def test_rare_values_of_common_fields_are_indexed(load: Any) -> None:
    """`event.type: error` and non-polling operations make a rule selective although their fields are not."""
    ruleset = load("""title: anomaly
id: 7d7b0e0e-1111-4a4a-9b9b-000000000001
logsource: {product: icsmon}
detection:
  sel:
    event.type: error
    event.dataset: [icsmon.modbus, icsmon.dnp3]
  condition: sel
---
title: restart
id: 7d7b0e0e-1111-4a4a-9b9b-000000000002
logsource: {product: icsmon}
detection:
  sel:
    ics.operation: [restart, firmware_update]
    network.protocol: [modbus, dnp3, s7comm]
  condition: sel
""")
    engine = Engine(ruleset)
    assert engine.snapshot()["index"]["filed_always"] == 0
    polling = {"event.type": ["protocol"], "event.dataset": "icsmon.modbus", "network.protocol": "modbus",
               "ics.operation": "read"}
    assert engine._snap.index.candidates(polling) == []
    anomaly = {**polling, "event.type": ["protocol", "error"]}
    restart = {**polling, "ics.operation": "restart"}
    assert [r.title for r in engine._snap.index.candidates(anomaly)] == ["anomaly"]
    assert [r.title for r in engine._snap.index.candidates(restart)] == ["restart"]
    assert [d.title for d in engine.match(anomaly)] == ["anomaly"]
