"""Engine throughput with few and many rules, side by side (``python -m analyzer.sigma.bench``).

Rule sets of any size are generated as variants of realistic ICS rules -- equality on a protocol
function with an address range, operations from a host outside a station list (placeholders),
wildcard and regex tests, CIDR tests, unit id lists, and a correlation every tenth rule -- spread
over the Modbus, IEC 104, BACnet and DNP3 logsources. Like a real rule pack, the rules look for
what is rare on the wire (writes, commands, restarts, identity requests: each protocol's function
list without its first two, the polling functions); the event stream is dominated by polling,
as plant traffic is, with connection records mixed in. Each size is loaded, compiled and timed on
the same events (CPU time, best of several passes); the figures are events per second, rule
predicates evaluated per event and load time.
"""

from __future__ import annotations

import random
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from analyzer.sigma.engine import Engine
from analyzer.sigma.loader import RuleSet

__all__ = ["format_table", "generate_events", "generate_rules", "measure", "run"]

_PROTOCOLS: dict[str, tuple[str, list[str]]] = {
    # service: (function field, function names)
    "modbus": ("modbus.function", ["read_coils", "read_holding_registers", "write_single_coil",
                                   "write_single_register", "write_multiple_registers", "read_device_identification",
                                   "diagnostics", "mask_write_register", "read_write_multiple_registers"]),
    "iec104": ("iec104.type", ["M_SP_NA_1", "M_ME_NC_1", "C_SC_NA_1", "C_DC_NA_1", "C_SE_NC_1", "C_IC_NA_1",
                               "C_CS_NA_1", "C_RP_NA_1", "M_EI_NA_1"]),
    "bacnet": ("bacnet.service", ["read_property", "write_property", "who_is", "i_am", "reinitialize_device",
                                  "device_communication_control", "subscribe_cov", "read_property_multiple"]),
    "dnp3": ("dnp3.function", ["read", "write", "select", "operate", "direct_operate", "cold_restart",
                               "warm_restart", "enable_unsolicited", "disable_unsolicited"]),
}
_OPERATIONS = ["write", "restart", "control_stop", "program_download", "discovery", "identity", "time_sync",
               "firmware_update"]


def _rule(i: int, rng: random.Random) -> str:
    service = rng.choice(list(_PROTOCOLS))
    field, all_functions = _PROTOCOLS[service]
    functions = all_functions[2:]  # not the polling functions
    head = (f"title: bench rule {i}\nid: 00000000-0000-4000-8000-{i:012d}\nname: bench_{i}\nstatus: test\n"
            f"logsource:\n  product: icsmon\n  service: {service}\n")
    kind = i % 10
    if kind in (0, 1, 2, 3):  # function + address range
        fn = rng.choice(functions)
        lo = rng.randrange(0, 60000)
        body = (f"detection:\n  sel:\n    {field}: {fn}\n    ics.address_start|gte: {lo}\n"
                f"    ics.address_start|lt: {lo + rng.randrange(10, 500)}\n  condition: sel\n")
    elif kind in (4, 5):  # operation from a host that is not a control station
        op = rng.choice(_OPERATIONS)
        body = (f"detection:\n  sel:\n    ics.operation: {op}\n    ics.role: request\n"
                f"  station:\n    source.ip|expand: '%control_stations%'\n  condition: sel and not station\n")
    elif kind == 6:  # wildcards and a regular expression
        body = (f"detection:\n  sel:\n    {field}|endswith: {rng.choice(functions)[-5:]}\n"
                f"    ics.tag|startswith: 'hr:4{rng.randrange(100, 999)}'\n"
                f"  vendor:\n    ics.tag|re: '^hr:4[0-9]{{3}}[05]$'\n  condition: sel and not vendor\n")
    elif kind == 7:  # CIDR and a value list
        body = (f"detection:\n  sel:\n    {field}:\n      - {rng.choice(functions)}\n      - {rng.choice(functions)}\n"
                f"    source.ip|cidr: 10.{rng.randrange(0, 255)}.0.0/16\n  condition: sel\n")
    elif kind == 8:  # unit id list
        units = sorted(rng.sample(range(1, 248), 3))
        body = (f"detection:\n  sel:\n    ics.unit: [{', '.join(repr(str(u)) for u in units)}]\n"
                f"    ics.operation: write\n  condition: sel\n")
    else:  # counted by a correlation
        fn = rng.choice(functions)
        body = f"detection:\n  sel:\n    {field}: {fn}\n  condition: sel\n"
        body += (f"level: low\n---\ntitle: bench correlation {i}\nid: 10000000-0000-4000-8000-{i:012d}\n"
                 f"correlation:\n  type: event_count\n  rules: [bench_{i}]\n  group-by: [source.ip]\n"
                 f"  timespan: 10s\n  condition: {{gte: 50}}\n")
    return head + body + "level: medium\n"


def generate_rules(count: int, folder: Path, seed: int = 7) -> None:
    rng = random.Random(seed)
    for i in range(count):
        (folder / f"bench_{i:05d}.yml").write_text(_rule(i, rng))


def generate_events(count: int, seed: int = 11) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    events: list[dict[str, Any]] = []
    t = 1_700_000_000.0
    for _ in range(count):
        t += 0.001
        src = f"10.{rng.randrange(0, 4)}.{rng.randrange(0, 3)}.{rng.randrange(1, 30)}"
        if rng.random() < 0.05:
            events.append({"@timestamp": t, "event.dataset": "icsmon.conn", "event.action": "connection-start",
                           "source.ip": src, "destination.ip": "10.9.0.1", "destination.port": 502,
                           "network.transport": "tcp"})
            continue
        service = rng.choice(list(_PROTOCOLS))
        field, functions = _PROTOCOLS[service]
        fn = rng.choice(functions[:2]) if rng.random() < 0.85 else rng.choice(functions[2:])  # polling dominates
        address = rng.randrange(0, 65536)
        events.append({
            "@timestamp": t, "event.dataset": f"icsmon.{service}", "event.type": ["protocol"],
            "network.protocol": service, "network.direction": "to_server", "source.ip": src,
            "destination.ip": "10.9.0.1", field: fn, "ics.function": fn,
            "ics.operation": "write" if "write" in fn or fn.startswith("C_") else "read",
            "ics.role": rng.choice(("request", "response")), "ics.status": "ok",
            "ics.unit": str(rng.randrange(1, 248)), "ics.address_start": address, "ics.address_count": 1,
            "ics.tag": [f"hr:{40000 + address % 10000}"], "ics.values": [rng.random() * 100],
        })
    return events


def measure(rule_count: int, events: Sequence[dict[str, Any]], repeat: int = 5) -> dict[str, float]:
    """Events/s (best of ``repeat`` passes) for ``rule_count`` generated rules."""
    with tempfile.TemporaryDirectory() as tmp:
        generate_rules(rule_count, Path(tmp))
        started = time.perf_counter()
        ruleset = RuleSet.load([Path(tmp)], {"control_stations": ["10.0.0.5", "10.0.0.6", "10.1.0.5"]})
        load_s = time.perf_counter() - started
    if ruleset.errors:
        raise RuntimeError(f"generated rules failed to load: {ruleset.errors[0]}")
    best = float("inf")
    detections = candidates = 0
    for _ in range(repeat):
        engine = Engine(ruleset)
        match = engine.match
        started = time.process_time()
        found = 0
        for event in events:
            found += len(match(event))
        best = min(best, time.process_time() - started)
        detections, candidates = found, engine.stats["candidates"]
    return {"rules": float(len(ruleset.rules)), "events_per_s": len(events) / best,
            "predicates_per_event": candidates / len(events), "detections": float(detections), "load_s": load_s,
            "indexed_rules": float(Engine(ruleset).snapshot()["index"]["indexed_rules"])}


def run(sizes: Sequence[int] = (40, 400, 1000), events: int = 50_000) -> list[dict[str, float]]:
    stream = generate_events(events)
    return [measure(size, stream) for size in sizes]


def format_table(results: Sequence[dict[str, float]]) -> str:
    base = results[0]["events_per_s"]
    out = ["rules  events/s  predicates/event  cost vs first  indexed  load s"]
    for r in results:
        out.append(f"{int(r['rules']):5d}  {r['events_per_s']:8.0f}  {r['predicates_per_event']:16.2f}  "
                   f"{base / r['events_per_s']:12.2f}x  {int(r['indexed_rules']):7d}  {r['load_s']:6.2f}")
    return "\n".join(out) + "\n"


def main(argv: Sequence[str] = ()) -> int:
    """``python -m analyzer.sigma.bench [SIZE...]`` (default 40 400 1000 rules, 50,000 events)."""
    sys.stdout.write(format_table(run([int(a) for a in argv] or [40, 400, 1000])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
