"""The rule pack evaluated over the shared captures: which rules fire on which capture, and how fast.

``python -m analyzer.detection_report`` runs every shared capture of the six protocols the sensor
dissects (``../shared/pcaps``, chosen by :func:`shared_captures`) through the real sensor
(:class:`sensor.pipeline.Sensor`) and the real Sigma engine loaded with the pack in ``rules/`` and
the site placeholders of ``deploy/placeholders.yml`` (the demo plant's), and writes
``build/reports/detections.md``: per capture the detections by level and rule, per rule the
captures it fired on. Given a reviewed table of expectations (:class:`Expectation`, kept by the
test that owns the review), the report also says whether each attack capture raised what it must
and whether each benign capture stayed free of high and critical detections.

``--bench`` adds the engine benchmark of the issue: events per second through the engine with
the pack and with the pack grown to 1,000 rules by variants of its own rules (:func:`variants`),
side by side on the same events from the shared captures.

The helpers here are shared with ``icsmon rules`` (:mod:`api.rules_cli`): :func:`capture_events`
(a capture through the sensor), :func:`run_engine` (events through the engine, windows flushed at
the end), :func:`shared_root`, and the pack's default locations.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from analyzer.alerts import Detection
from analyzer.sigma import Engine, RuleSet, load_placeholders
from sensor.capture import CaptureError
from sensor.pipeline import Sensor
from sensor.settings import SensorSettings

__all__ = [
    "DEFAULT_PLACEHOLDERS", "PACK", "REPO", "REPORT", "CaptureResult", "Expectation", "Report", "benchmark",
    "build_report", "capture_events", "render_markdown", "run_engine", "shared_captures", "shared_root",
    "variants",
]

REPO = Path(__file__).resolve().parents[1]
PACK = REPO / "rules"
"""The shipped rule pack."""
DEFAULT_PLACEHOLDERS = REPO / "deploy" / "placeholders.yml"
"""The site placeholder template (the demo plant's values)."""
REPORT = REPO / "build" / "reports" / "detections.md"

PROTOCOLS = ("modbus", "dnp3", "s7comm", "enip", "iec104", "bacnet")
"""The protocols the sensor dissects, as ``network.protocol`` names them."""
SEVERE = ("high", "critical")

Event = dict[str, Any]


def shared_root() -> Path:
    """The shared public captures: ``$ICSMON_SHARED_PCAPS``, else ``../shared/pcaps`` next to the repository."""
    return Path(os.environ.get("ICSMON_SHARED_PCAPS") or REPO.parent / "shared" / "pcaps")


# -- captures and the engine ---------------------------------------------------------------------------

@dataclass(slots=True)
class CaptureResult:
    """The events the sensor produced from one capture, and the capture error that ended it, if any."""

    events: list[Event]
    error: str | None = None


def _read_capture(path: Path, sensor_id: str) -> CaptureResult:
    from sensor.capture.pcapfile import open_capture

    events: list[Event] = []
    sensor = Sensor(SensorSettings(sensor_id=sensor_id), sink=events.append)
    error = None
    with open_capture(path) as source:  # CaptureError (unreadable, not a capture) propagates
        try:
            sensor.run(source)
        except CaptureError as exc:  # truncated: keep what was readable
            error = str(exc)
    sensor.finish()
    return CaptureResult(events, error)


@lru_cache(maxsize=64)
def _cached(path: str, mtime: float, size: int, sensor_id: str) -> CaptureResult:
    return _read_capture(Path(path), sensor_id)


def capture_events(path: Path | str, sensor_id: str = "icsmon-rules") -> CaptureResult:
    """Run one pcap/pcapng file through the sensor (default settings); results are cached per file
    version, so the same shared capture used by several fixtures is read once. Callers must not
    modify the events. Raises :class:`~sensor.capture.CaptureError` for a file that cannot be read."""
    p = Path(path)
    try:
        st = p.stat()
    except OSError as exc:
        raise CaptureError(f"{p}: {exc.strerror or exc}") from None
    return _cached(str(p.resolve()), st.st_mtime, st.st_size, sensor_id)


def run_engine(ruleset: RuleSet, events: Iterable[Mapping[str, Any]]) -> tuple[list[Detection], int]:
    """All detections of ``ruleset`` on ``events`` (in order), open correlation windows closed at
    the end; and the number of events looked at."""
    engine = Engine(ruleset)
    out: list[Detection] = []
    seen = 0
    for event in events:
        seen += 1
        out.extend(engine.match(event))
    out.extend(engine.flush())
    return out, seen


# -- which captures --------------------------------------------------------------------------------------

_WIRESHARK_NAMES = ("mbtcp", "modbus", "dnp3", "s7comm", "enip", "cip", "iec60870", "bvlc", "bacnet")
_PATH_HINTS = ("modbus", "dnp3", "s7", "enip", "ethernetip", "cip", "iec60870", "iec104", "bacnet")
_CAPTURE_SUFFIXES = (".pcap", ".pcapng", ".cap")


def shared_captures(root: Path | None = None) -> list[Path]:
    """The shared captures of the six protocols, sorted: those in which Wireshark finds one of them
    (the capture index, ``INDEX.md``), and those whose path names one (DNP3 on a port Wireshark does
    not bind, say). Other protocols' captures (OPC UA, IEC 61850, MELSEC...) are left out."""
    root = root or shared_root()
    chosen: set[Path] = set()
    index = root / "INDEX.md"
    if index.is_file():
        for line in index.read_text(encoding="utf-8").splitlines():
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if len(cells) == 3 and cells[0].endswith(_CAPTURE_SUFFIXES):
                if any(name in cells[2].lower() for name in _WIRESHARK_NAMES):
                    chosen.add(root / cells[0])
    for path in root.rglob("*"):
        if path.suffix in _CAPTURE_SUFFIXES and path.is_file():
            rel = path.relative_to(root).as_posix().lower()
            if any(hint in rel for hint in _PATH_HINTS) and "iec61850" not in rel:
                chosen.add(path)
    return sorted(p for p in chosen if p.is_file())


# -- the report -------------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Expectation:
    """A reviewed expectation for one shared capture.

    ``attack``: each rule of ``rules`` (rule names) must raise at least one detection on the capture.
    ``benign``: normal polling and reads; no rule of level high or critical may fire.
    """

    capture: str  # path under the shared root
    kind: str  # attack | benign
    rules: tuple[str, ...] = ()
    note: str = ""


@dataclass(slots=True)
class RuleInfo:
    key: str
    name: str
    title: str
    level: str
    techniques: tuple[str, ...]
    kind: str


@dataclass(slots=True)
class CaptureReport:
    capture: str
    events: int
    protocols: tuple[str, ...]
    detections: Counter[str] = field(default_factory=Counter)  # rule name -> detections
    error: str | None = None


@dataclass(slots=True)
class Report:
    rules: dict[str, RuleInfo]  # by name
    captures: list[CaptureReport]
    expectations: tuple[Expectation, ...] = ()
    failures: list[str] = field(default_factory=list)
    load_errors: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0
    bench: list[dict[str, float]] = field(default_factory=list)

    def fired(self, capture: str) -> CaptureReport | None:
        return next((c for c in self.captures if c.capture == capture), None)


_LEVEL_ORDER = {"critical": 0, "high": 1, "medium": 2, "low": 3, "informational": 4}


def load_pack(rules: Path = PACK, placeholders: Path | Mapping[str, Sequence[str]] = DEFAULT_PLACEHOLDERS
              ) -> RuleSet:
    values = load_placeholders(placeholders) if isinstance(placeholders, Path) else placeholders
    return RuleSet.load([rules], values)


def _rule_infos(ruleset: RuleSet) -> tuple[dict[str, RuleInfo], dict[str, str]]:
    infos: dict[str, RuleInfo] = {}
    by_id: dict[str, str] = {}
    for rule in ruleset.rules:
        if not rule.output:
            continue
        name = rule.name or rule.rule_id
        infos[name] = RuleInfo(rule.key, name, rule.title, rule.level, rule.techniques, rule.kind)
        by_id[rule.rule_id] = name
    return infos, by_id


def check_expectations(report: Report) -> list[str]:
    """One line per expectation a capture does not meet."""
    failures: list[str] = []
    for exp in report.expectations:
        result = report.fired(exp.capture)
        if result is None:
            failures.append(f"{exp.capture}: not among the captures evaluated")
            continue
        if exp.kind == "attack":
            missing = [r for r in exp.rules if not result.detections.get(r)]
            if missing:
                failures.append(f"{exp.capture}: attack capture did not raise {', '.join(missing)}")
        elif exp.kind == "benign":
            severe = sorted(r for r in result.detections if report.rules[r].level in SEVERE)
            if severe:
                failures.append(f"{exp.capture}: benign capture raised high/critical rules {', '.join(severe)}")
        else:
            failures.append(f"{exp.capture}: unknown expectation kind {exp.kind!r}")
    return failures


def build_report(captures: Sequence[Path] | None = None, rules: Path = PACK,
                 placeholders: Path | Mapping[str, Sequence[str]] = DEFAULT_PLACEHOLDERS,
                 expectations: Sequence[Expectation] = (), root: Path | None = None) -> Report:
    """Every capture through the sensor and the engine with the pack; detections counted per rule."""
    root = root or shared_root()
    started = time.perf_counter()
    ruleset = load_pack(rules, placeholders)
    infos, by_id = _rule_infos(ruleset)
    results: list[CaptureReport] = []
    for path in captures if captures is not None else shared_captures(root):
        rel = path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)
        try:
            result = capture_events(path, sensor_id="icsmon-report")
        except CaptureError as exc:
            results.append(CaptureReport(rel, 0, (), error=str(exc)))
            continue
        detections, seen = run_engine(ruleset, result.events)
        counts: Counter[str] = Counter(by_id.get(d.detector_id, d.detector_id) for d in detections)
        protocols = tuple(sorted({str(e["network.protocol"]) for e in result.events
                                  if e.get("network.protocol") in PROTOCOLS}))
        results.append(CaptureReport(rel, seen, protocols, counts, result.error))
    report = Report(infos, results, tuple(expectations), load_errors=[str(e) for e in ruleset.errors])
    report.failures = check_expectations(report)
    report.elapsed_s = time.perf_counter() - started
    return report


def _levels(report: Report, counts: Counter[str]) -> Counter[str]:
    out: Counter[str] = Counter()
    for name, n in counts.items():
        out[report.rules[name].level if name in report.rules else "?"] += n
    return out


def render_markdown(report: Report) -> str:
    """``build/reports/detections.md``."""
    total_events = sum(c.events for c in report.captures)
    all_counts: Counter[str] = Counter()
    for c in report.captures:
        all_counts.update(c.detections)
    levels = _levels(report, all_counts)
    fired = [name for name in report.rules if all_counts.get(name)]
    lines = [
        "# Detection report: the rule pack over the shared captures",
        "",
        "Generated by `python -m analyzer.detection_report` (and the test `tests/analyzer/test_detection_report.py`,"
        " which adds the reviewed expectations): every shared capture of the six protocols through the sensor and"
        " the Sigma engine, with the rule pack of `rules/` and the placeholders of `deploy/placeholders.yml` (the demo"
        " plant's addresses, so every host of these captures is \"unknown\"). Counts are detections (one per"
        " matching event, one per correlation firing), before alert aggregation.",
        "",
        f"- captures: {len(report.captures)}, events: {total_events:,}, detections: {sum(all_counts.values()):,}"
        f" (" + ", ".join(f"{lvl} {levels[lvl]:,}" for lvl in sorted(levels, key=lambda x: _LEVEL_ORDER.get(x, 9)))
        + ")",
        f"- rules: {len(report.rules)}, {len(fired)} of them fired on at least one shared capture"
        f" (the others are exercised by their crafted fixtures)",
        f"- pack load errors: {len(report.load_errors)}",
    ]
    if report.expectations:
        ok = len(report.expectations) - len(report.failures)
        lines += [f"- reviewed expectations: {ok} of {len(report.expectations)} met", "",
                  "## Reviewed expectations", "", "| capture | kind | must raise | result |", "|---|---|---|---|"]
        failing = {f.split(":", 1)[0] for f in report.failures}
        for exp in report.expectations:
            result = report.fired(exp.capture)
            if exp.kind == "attack":
                got = ", ".join(f"{r} {result.detections.get(r, 0) if result else 0}" for r in exp.rules)
            else:
                severe = sorted(r for r in (result.detections if result else {}) if report.rules[r].level in SEVERE)
                got = "no high/critical" if not severe else "raised " + ", ".join(severe)
            verdict = "FAILED" if exp.capture in failing else "ok"
            must = ", ".join(f"`{r}`" for r in exp.rules) if exp.kind == "attack" else "nothing high or critical"
            lines.append(f"| `{exp.capture}` | {exp.kind} | {must} | {verdict}: {got} |")
    if report.bench:
        lines += ["", "## Engine benchmark", "", render_bench(report.bench)]
    lines += ["", "## Detections per capture", "",
              "| capture | protocols | events | critical | high | medium | low | rules (detections) |",
              "|---|---|---:|---:|---:|---:|---:|---|"]
    for c in report.captures:
        lv = _levels(report, c.detections)
        ranked = sorted(c.detections.items(), key=lambda kv: (_LEVEL_ORDER.get(
            report.rules[kv[0]].level if kv[0] in report.rules else "?", 9), kv[0]))
        fired_text = ", ".join(f"`{name}` {n:,}" for name, n in ranked) or "-"
        if c.error:
            fired_text += f" (capture error: {c.error})"
        lines.append(f"| `{c.capture}` | {', '.join(c.protocols) or '-'} | {c.events:,} | {lv['critical'] or ''} |"
                     f" {lv['high'] or ''} | {lv['medium'] or ''} | {lv['low'] or ''} | {fired_text} |")
    lines += ["", "## Captures per rule", "", "| rule | level | techniques | captures | detections |",
              "|---|---|---|---:|---:|"]
    for info in sorted(report.rules.values(), key=lambda r: (_LEVEL_ORDER.get(r.level, 9), r.name)):
        caps = sum(1 for c in report.captures if c.detections.get(info.name))
        lines.append(f"| `{info.name}` | {info.level} | {', '.join(info.techniques)} | {caps} |"
                     f" {all_counts.get(info.name, 0):,} |")
    if report.failures:
        lines += ["", "## Failures", ""] + [f"- {f}" for f in report.failures]
    return "\n".join(lines) + "\n"


def write_report(report: Report, path: Path = REPORT) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_markdown(report), encoding="utf-8")
    return path


# -- the engine benchmark ---------------------------------------------------------------------------------

BENCH_CAPTURES = (
    "iti/pcaps/ModbusTCP/Modbus/modbus_test_2.pcap",
    "iti/pcaps/bro/modbus/modbusBig.pcap",
    "iti/pcaps/s7/S7Comm/s7comm_clean.pcap",
    "icsnpp-bacnet/testing/traces/bacnet_services.pcap",
    "icsnpp-dnp3/testing/traces/dnp3_example.pcap",
    "icsnpp-enip/tests/traces/enip_cip_example.pcap",
    "iti/pcaps/CIP/cip_only.pcap",
    "iti/pcaps/IEC60870-5-104/JavaRMI_and_IEC_Misc.pcap",
    "iti/pcaps/IEC60870-5-104/TestDissectIec104.pcap",
)
"""A mix of the six protocols: polling, writes, file access, discovery; about 45,000 events."""

_ICS_PORTS = (102, 502, 2404, 20000, 44818, 47808)
_FUNCTION_FIELDS = {"ics.function": None, "modbus.function": "modbus", "dnp3.function": "dnp3",
                    "bacnet.service": "bacnet", "cip.service": "enip", "ics.operation": "*"}


def bench_events(root: Path | None = None, captures: Sequence[str] = BENCH_CAPTURES) -> list[Event]:
    root = root or shared_root()
    events: list[Event] = []
    for rel in captures:
        events += capture_events(root / rel, sensor_id="icsmon-bench").events
    return events


def _function_names() -> dict[str, list[str]]:
    from sensor.dissect import OPERATIONS
    from sensor.protocols import registry

    names = {name: sorted({k.split("/", 1)[0] for k in d.operations if "<" not in k})
             for name, d in registry().items()}
    names["*"] = list(OPERATIONS)
    return names


def _vary(value: Any, pool: list[str], rng: random.Random) -> Any:
    if isinstance(value, list):
        return [rng.choice(pool) for _ in value] if pool else value
    return rng.choice(pool) if pool and isinstance(value, str) else value


def variants(count: int, folder: Path, pack: Path = PACK, seed: int = 5) -> int:
    """Write ``count`` variants of the pack's rules into ``folder`` (one file each) and return the number
    written. A variant keeps its rule's shape -- logsource, modifiers, placeholders, correlation type
    -- with new ids and names, and other function or operation values from the dissectors' own tables
    (and other thresholds for correlations): what a site adds when it copies a rule for another
    function, which spreads over the rule index as real rule sets do."""
    rng = random.Random(seed)
    names = _function_names()
    files = sorted(p for p in pack.rglob("*.yml"))
    namespace = uuid.UUID("6f1c1b8e-1f0e-4a53-9d3c-6c7a7a1c0de5")
    written = 0
    for i in range(count):
        source = files[i % len(files)]
        docs = [d for d in yaml.safe_load_all(source.read_text(encoding="utf-8")) if d]
        suffix = f"_v{i:04d}"
        renamed = {str(d.get("name")): f"{d.get('name')}{suffix}" for d in docs if d.get("name")}
        service = next((d.get("logsource", {}).get("service") for d in docs if d.get("logsource")), None)
        for doc in docs:
            doc["id"] = str(uuid.uuid5(namespace, f"{doc.get('id')}:{i}"))
            if doc.get("name"):
                doc["name"] = renamed[str(doc["name"])]
            doc["title"] = f"{doc.get('title')} (variant {i})"
            detection = doc.get("detection")
            if isinstance(detection, dict):
                varied = False
                first: dict[str, Any] | None = None
                for sel, body in detection.items():
                    items = body if isinstance(body, list) else [body]
                    for item in items:
                        if not isinstance(item, dict) or sel == "condition":
                            continue
                        first = first if first is not None else item
                        for key in list(item):
                            base = str(key).split("|", 1)[0]
                            if base in _FUNCTION_FIELDS and "|" not in str(key):
                                proto = _FUNCTION_FIELDS[base] or service or "*"
                                item[key] = _vary(item[key], names.get(proto, []), rng)
                                varied = True
                if not varied and first is not None:  # narrow the copy to one function, port or protocol
                    category = (doc.get("logsource") or {}).get("category")
                    if service:
                        first["ics.function"] = rng.choice(names.get(service) or ["read"])
                    elif category == "flow":
                        first["destination.port"] = rng.choice(_ICS_PORTS)
                    elif category == "decode_error":
                        first["icsmon.error.layer"] = rng.choice(PROTOCOLS)
                    else:
                        first["network.protocol"] = rng.choice(PROTOCOLS)
            corr = doc.get("correlation")
            if isinstance(corr, dict):
                corr["rules"] = [renamed.get(str(r), r) for r in corr.get("rules") or []]
                cond = corr.get("condition")
                if isinstance(cond, dict):
                    for op in ("gt", "gte"):
                        if op in cond:
                            cond[op] = int(cond[op]) * rng.choice((1, 2, 3))
        (folder / f"{source.stem}{suffix}.yml").write_text(yaml.safe_dump_all(docs, sort_keys=False),
                                                          encoding="utf-8")
        written += 1
    return written


def _measure(ruleset: RuleSet, events: Sequence[Event], repeat: int) -> dict[str, float]:
    best = float("inf")
    candidates = detections = 0
    for _ in range(repeat):
        engine = Engine(ruleset)
        match = engine.match
        started = time.perf_counter()
        found = 0
        for event in events:
            found += len(match(event))
        found += len(engine.flush())
        best = min(best, time.perf_counter() - started)
        candidates, detections = engine.stats["candidates"], found
    return {"rules": float(sum(1 for r in ruleset.rules if r.output)),
            "compiled": float(len(ruleset.rules)),
            "events": float(len(events)), "events_per_s": len(events) / best if best else 0.0,
            "seconds": best, "predicates_per_event": candidates / len(events) if events else 0.0,
            "detections": float(detections)}


def benchmark(events: Sequence[Event], total: int = 1000, pack: Path = PACK,
              placeholders: Path = DEFAULT_PLACEHOLDERS, repeat: int = 3) -> list[dict[str, float]]:
    """Events/s through the engine with the pack, then with the pack grown to ``total`` alerting rules
    by :func:`variants`, on the same events in one run. No assertion about speed: figures only."""
    values = load_placeholders(placeholders)
    started = time.perf_counter()
    ruleset = RuleSet.load([pack], values)
    small_load = time.perf_counter() - started
    if ruleset.errors:
        raise RuntimeError(f"the pack does not load: {ruleset.errors[0]}")
    rows = [{**_measure(ruleset, events, repeat), "load_s": small_load}]
    own = sum(1 for r in ruleset.rules if r.output)
    with tempfile.TemporaryDirectory(prefix="icsmon-variants-") as tmp:
        variants(max(0, total - own), Path(tmp), pack)
        started = time.perf_counter()
        grown = RuleSet.load([pack, Path(tmp)], values)
        load = time.perf_counter() - started
    if grown.errors:
        raise RuntimeError(f"generated variants do not load: {grown.errors[0]}")
    rows.append({**_measure(grown, events, repeat), "load_s": load})
    base = rows[0]["events_per_s"]
    for row in rows:
        row["cost_vs_pack"] = base / row["events_per_s"] if row["events_per_s"] else 0.0
    return rows


def render_bench(rows: Sequence[Mapping[str, float]]) -> str:
    lines = ["| alerting rules | compiled rules | events | events/s | predicates/event | cost vs pack | load s |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {int(r['rules']):,} | {int(r['compiled']):,} | {int(r['events']):,} |"
                     f" {r['events_per_s']:,.0f} | {r['predicates_per_event']:.2f} | {r['cost_vs_pack']:.2f}x |"
                     f" {r['load_s']:.2f} |")
    return "\n".join(lines) + "\n"


# -- command line -------------------------------------------------------------------------------------------

def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analyzer.detection_report", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=REPORT, help=f"report path (default {REPORT})")
    parser.add_argument("--rules", type=Path, default=PACK, help="rule folder (default: the pack)")
    parser.add_argument("--placeholders", type=Path, default=DEFAULT_PLACEHOLDERS)
    parser.add_argument("--bench", action="store_true", help="also run the engine benchmark")
    parser.add_argument("--bench-rules", type=int, default=1000, help="rule count of the grown set (default 1000)")
    args = parser.parse_args(argv)
    report = build_report(rules=args.rules, placeholders=args.placeholders)
    if args.bench:
        report.bench = benchmark(bench_events(), args.bench_rules, args.rules, args.placeholders)
    path = write_report(report, args.out)
    sys.stdout.write(f"{path}: {len(report.captures)} captures, "
                     f"{sum(sum(c.detections.values()) for c in report.captures):,} detections\n")
    if report.bench:
        sys.stdout.write(render_bench(report.bench))
    return 1 if report.load_errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
