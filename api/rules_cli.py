"""``icsmon rules``: the analysts' workflow for Sigma rules -- lint, test, convert, new.

    icsmon rules lint [PATH...]                  pySigma validation (what ``sigma check`` reports) plus
                                                 icsmon's checks; one line per problem, ``file:line: ...``
    icsmon rules test RULE [--pcap F] [--events F]
                                                 the rule alone on captures or JSON-lines events: every
                                                 match with its evidence fields, the events looked at,
                                                 and the rule's declared fixtures checked
    icsmon rules convert RULE [--target esql|lucene|eql]
                                                 an Elasticsearch query through pySigma's backend and
                                                 the icsmon pipeline; approximate conversions say so
    icsmon rules new NAME --service S|--category C
                                                 a rule and its fixtures from a template

Runs standalone as ``python -m api.rules_cli``. Exit status: 0 fine, 1 problems found (lint
problems, a fixture that does not behave as declared), 2 bad input (one line,
``icsmon: error: ...``).

**Fixtures.** Every rule file ``<rule>.yml`` has a ``<rule>.fixtures.json`` next to it (the format
is documented in ``rules/README.md``): a ``positive`` and a ``negative`` case, each a list of
sources -- ``shared:<path under ../shared/pcaps>``, ``crafted:<name>`` (a capture written by a
scapy function of ``tests/rules/crafted.py`` into a temporary folder), ``events:<JSON-lines file
next to the fixtures>`` or ``{"events": [...]}`` inline -- with optional placeholder overrides and
the minimum and maximum number of detections of the rule (negative: none). Captures go through the
real sensor, events through the real engine; :func:`run_case` is what the pack's tests use too.
"""

from __future__ import annotations

import importlib
import json
import re
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, NoReturn

import click
import yaml

from analyzer.alerts import ALERT_FIELDS, Detection
from analyzer.detection_report import DEFAULT_PLACEHOLDERS, PACK, capture_events, run_engine, shared_root
from analyzer.sigma import RuleSet, load_placeholders
from analyzer.sigma.attack_ics import TACTICS, TECHNIQUES, check_tags
from analyzer.sigma.taxonomy import CATEGORIES, FIELD_ALIASES, SERVICES
from sensor.capture import CaptureError

__all__ = [
    "Case", "CaseResult", "Conversion", "FixtureError", "Fixtures", "LintProblem", "RuleFile", "Source",
    "convert_rule", "fixtures_path", "lint", "load_fixtures", "main", "read_rule_file", "rules", "run_case",
    "run_fixtures", "shared_root",
]

EXIT_PROBLEMS = 1
EXIT_BAD_INPUT = 2
LEVELS = ("informational", "low", "medium", "high", "critical")
STATUSES = ("stable", "test", "experimental")
DEFAULT_EVIDENCE = ("source.ip", "destination.ip", "network.protocol", "ics.function", "ics.operation")
CRAFTED_MODULE = "tests.rules.crafted"
"""Where ``crafted:`` sources are registered (``CRAFTED``: name -> function writing the capture)."""

Event = dict[str, Any]


class RulesCliError(Exception):
    """Bad input for ``icsmon rules``: the message is one line."""


def _fail(message: str) -> NoReturn:
    click.echo(f"icsmon: error: {message}", err=True)
    sys.exit(EXIT_BAD_INPUT)


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


# -- rule files and where things are in them -----------------------------------------------------------

@dataclass(slots=True)
class RuleFile:
    """One rule file: its YAML documents, and the line of each key (1-based) for problem reports."""

    path: Path
    docs: list[dict[str, Any]]
    nodes: list[yaml.Node | None]

    def kind(self, index: int) -> str:
        doc = self.docs[index]
        return "correlation" if "correlation" in doc else "filter" if "filter" in doc else "rule"

    @property
    def primary(self) -> int:
        """The document the file is about: its correlation if it has one, else its (only) rule."""
        kinds = [self.kind(i) for i in range(len(self.docs))]
        return kinds.index("correlation") if "correlation" in kinds else 0

    def line(self, index: int, *keys: str) -> int:
        """Line of the deepest of ``keys`` found in document ``index`` (the document's first line else)."""
        node = self.nodes[index] if index < len(self.nodes) else None
        if node is None:
            return 1
        best = node.start_mark.line + 1
        for key in keys:
            if not isinstance(node, yaml.MappingNode):
                break
            for k, v in node.value:
                if k.value == key:
                    best, node = k.start_mark.line + 1, v
                    break
            else:
                break
        return best

    def value_line(self, index: int, text: str, default: int | None = None) -> int:
        """Line of the first scalar of document ``index`` whose text is ``text`` (or that key)."""
        node = self.nodes[index] if index < len(self.nodes) else None
        stack = [node] if node is not None else []
        while stack:
            current = stack.pop(0)
            if isinstance(current, yaml.ScalarNode):
                if current.value == text or current.value.split("|", 1)[0] == text:
                    return current.start_mark.line + 1
            elif isinstance(current, yaml.MappingNode):
                for k, v in current.value:
                    stack += [k, v]
            elif isinstance(current, yaml.SequenceNode):
                stack += list(current.value)
        return default if default is not None else self.line(index)

    def index_of(self, rule_id: str | None, title: str | None = None) -> int:
        for i, doc in enumerate(self.docs):
            if rule_id is not None and rule_id in (str(doc.get("id")), doc.get("name")):
                return i
        for i, doc in enumerate(self.docs):
            if title is not None and doc.get("title") == title:
                return i
        return 0


def read_rule_file(path: Path) -> RuleFile:
    """Parse a rule file (every YAML document); :class:`RulesCliError` with the line for broken YAML."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RulesCliError(f"{path}: cannot read: {_one_line(exc)}") from None
    try:
        nodes = list(yaml.compose_all(text))
        docs = list(yaml.safe_load_all(text))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise RulesCliError(f"{where}: YAML: {getattr(exc, 'problem', None) or _one_line(exc)}") from None
    pairs = [(d, n) for d, n in zip(docs, nodes) if d is not None]
    if not pairs or not all(isinstance(d, dict) for d, _ in pairs):
        raise RulesCliError(f"{path}:1: not a Sigma rule file (every document must be a mapping)")
    return RuleFile(path, [d for d, _ in pairs], [n for _, n in pairs])


def rule_files(paths: Iterable[Path]) -> list[Path]:
    """The ``*.yml``/``*.yaml`` files under the given files and folders, sorted, each once."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.suffix in (".yml", ".yaml") and p.is_file())
        elif path.is_file():
            found.append(path)
        else:
            raise RulesCliError(f"{path}: no such file or directory")
    unique: dict[Path, Path] = {}
    for p in found:
        unique.setdefault(p.resolve(), p)
    return list(unique.values())


# -- fixtures ----------------------------------------------------------------------------------------------

class FixtureError(ValueError):
    """A fixtures file that does not follow the format (one line: file and reason)."""


@dataclass(frozen=True, slots=True)
class Source:
    """Where a fixture case's events come from."""

    kind: str  # shared | crafted | events | inline
    ref: str = ""
    inline: tuple[Event, ...] = ()

    def __str__(self) -> str:
        return f"{len(self.inline)} inline events" if self.kind == "inline" else f"{self.kind}:{self.ref}"


@dataclass(slots=True)
class Case:
    name: str  # positive | negative
    sources: list[Source]
    placeholders: dict[str, list[str]] = field(default_factory=dict)
    min: int = 1
    max: int | None = None
    note: str = ""

    def expected(self) -> str:
        if self.max == 0:
            return "no match"
        if self.max is None:
            return f"at least {self.min} match{'es' if self.min != 1 else ''}"
        return f"{self.min} match{'es' if self.min != 1 else ''}" if self.min == self.max else \
            f"{self.min} to {self.max} matches"

    def accepts(self, count: int) -> bool:
        return count >= self.min and (self.max is None or count <= self.max)


@dataclass(slots=True)
class Fixtures:
    path: Path
    rule: str
    positive: Case
    negative: Case

    @property
    def cases(self) -> tuple[Case, Case]:
        return self.positive, self.negative


def fixtures_path(rule_file: Path) -> Path:
    """``rules/x/y.yml`` -> ``rules/x/y.fixtures.json``."""
    return rule_file.with_name(rule_file.name.rsplit(".", 1)[0] + ".fixtures.json")


_SOURCE_RE = re.compile(r"(shared|crafted|events):(.+)")
_CASE_KEYS = {"sources", "placeholders", "min", "max", "note"}


def _source(raw: Any, where: str) -> Source:
    if isinstance(raw, str):
        m = _SOURCE_RE.fullmatch(raw.strip())
        if m is None:
            raise FixtureError(f"{where}: source {raw!r} is not shared:PATH, crafted:NAME or events:FILE")
        kind, ref = m.group(1), m.group(2).strip()
        if kind in ("shared", "events") and (ref.startswith("/") or ".." in Path(ref).parts):
            raise FixtureError(f"{where}: source {raw!r}: use a relative path without '..'")
        return Source(kind, ref)
    if isinstance(raw, dict) and set(raw) == {"events"} and isinstance(raw["events"], list):
        if not all(isinstance(e, dict) for e in raw["events"]):
            raise FixtureError(f"{where}: inline events must be JSON objects")
        return Source("inline", inline=tuple(raw["events"]))
    raise FixtureError(f"{where}: a source is a string (shared:, crafted:, events:) or {{\"events\": [...]}}")


def _case(raw: Any, name: str, path: Path) -> Case:
    where = f"{path}: {name}"
    if not isinstance(raw, dict):
        raise FixtureError(f"{where}: must be an object with sources")
    unknown = set(raw) - _CASE_KEYS
    if unknown:
        raise FixtureError(f"{where}: unknown keys {', '.join(sorted(unknown))}"
                           f" (known: {', '.join(sorted(_CASE_KEYS))})")
    sources = raw.get("sources")
    if not isinstance(sources, list) or not sources:
        raise FixtureError(f"{where}: sources must be a non-empty list")
    placeholders = raw.get("placeholders", {})
    if not isinstance(placeholders, dict) or not all(
            isinstance(v, list) and all(isinstance(x, str) for x in v) for v in placeholders.values()):
        raise FixtureError(f"{where}: placeholders must map names to lists of strings")
    case = Case(name, [_source(s, where) for s in sources], {str(k): list(v) for k, v in placeholders.items()},
                note=str(raw.get("note", "")))
    if name == "negative":
        if "min" in raw or "max" in raw:
            raise FixtureError(f"{where}: a negative case expects no match: no min/max")
        case.min, case.max = 0, 0
        return case
    low, high = raw.get("min", 1), raw.get("max")
    if not isinstance(low, int) or isinstance(low, bool) or low < 1:
        raise FixtureError(f"{where}: min must be an integer >= 1")
    if high is not None and (not isinstance(high, int) or isinstance(high, bool) or high < low):
        raise FixtureError(f"{where}: max must be an integer >= min")
    case.min, case.max = low, high
    return case


def load_fixtures(path: Path) -> Fixtures:
    """Read and check a fixtures file; :class:`FixtureError` names the file and the problem."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FixtureError(f"{path}: no fixtures file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise FixtureError(f"{path}: cannot read: {_one_line(exc)}") from None
    except json.JSONDecodeError as exc:
        raise FixtureError(f"{path}:{exc.lineno}: JSON: {exc.msg}") from None
    if not isinstance(data, dict) or not isinstance(data.get("rule"), str):
        raise FixtureError(f"{path}: must be an object with \"rule\", \"positive\" and \"negative\"")
    unknown = set(data) - {"rule", "positive", "negative", "note"}
    if unknown:
        raise FixtureError(f"{path}: unknown keys {', '.join(sorted(unknown))}")
    for name in ("positive", "negative"):
        if name not in data:
            raise FixtureError(f"{path}: the {name} case is missing")
    return Fixtures(path, data["rule"], _case(data["positive"], "positive", path),
                    _case(data["negative"], "negative", path))


CraftedWriter = Callable[[str, Path], None]


def _crafted_registry() -> Mapping[str, Callable[[Path], None]] | None:
    try:
        module = importlib.import_module(CRAFTED_MODULE)
    except ImportError:
        return None
    return getattr(module, "CRAFTED", None)


def write_crafted(name: str, path: Path) -> None:
    """Write the crafted capture ``name`` (``tests/rules/crafted.py``, a source checkout) to ``path``."""
    registry = _crafted_registry()
    if registry is None:
        raise RulesCliError(f"crafted:{name} needs {CRAFTED_MODULE} (run from a source checkout of icsmon)")
    writer = registry.get(name)
    if writer is None:
        raise RulesCliError(f"crafted:{name}: no such crafted capture (known: {', '.join(sorted(registry))})")
    writer(path)


def read_json_lines(path: Path | str) -> list[Event]:
    """Events, one JSON object a line (``-``: standard input); blank lines are skipped."""
    try:
        text = sys.stdin.read() if str(path) == "-" else Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RulesCliError(f"{path}: cannot read: {_one_line(exc)}") from None
    events: list[Event] = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            event = json.loads(line)
        except json.JSONDecodeError as exc:
            raise RulesCliError(f"{path}:{n}: not JSON: {exc.msg}") from None
        if not isinstance(event, dict):
            raise RulesCliError(f"{path}:{n}: an event must be a JSON object")
        events.append(event)
    return events


def pcap_events(path: Path) -> list[Event]:
    try:
        return capture_events(path).events
    except CaptureError as exc:
        raise RulesCliError(_one_line(exc)) from None


def source_events(source: Source, fixture_dir: Path, workdir: Path, crafted: CraftedWriter = write_crafted
                  ) -> list[Event]:
    """The events of one fixture source (captures through the sensor)."""
    if source.kind == "inline":
        return [dict(e) for e in source.inline]
    if source.kind == "events":
        return read_json_lines(fixture_dir / source.ref)
    if source.kind == "shared":
        path = shared_root() / source.ref
        if not path.is_file():
            raise RulesCliError(f"shared capture {source.ref} not found under {shared_root()}"
                                " (set ICSMON_SHARED_PCAPS)")
        return pcap_events(path)
    target = workdir / f"crafted-{source.ref}.pcap"
    if not target.exists():
        try:
            crafted(source.ref, target)
        except RulesCliError:
            raise
        except Exception as exc:  # noqa: BLE001 - a crafting bug is reported as this source's error
            target.unlink(missing_ok=True)
            raise RulesCliError(f"crafted:{source.ref}: {type(exc).__name__}: {_one_line(exc)}") from None
    return pcap_events(target)


# -- running a rule ------------------------------------------------------------------------------------------

def base_placeholders(path: Path | None = None) -> dict[str, list[str]]:
    """The site placeholders (``deploy/placeholders.yml`` unless another file is given)."""
    path = path or DEFAULT_PLACEHOLDERS
    if not path.is_file():
        return {}
    try:
        return load_placeholders(path)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise RulesCliError(f"{path}: {_one_line(exc)}") from None


def load_rule(rule_file: Path, placeholders: Mapping[str, Sequence[str]],
              extra: Sequence[Path] = ()) -> tuple[RuleSet, str]:
    """The rule file (and any extra rule paths its correlations reference) loaded alone; returns the
    rule set and the key of the file's primary rule. A rule that does not load is bad input."""
    parsed = read_rule_file(rule_file)
    doc = parsed.docs[parsed.primary]
    label = str(doc.get("id") or doc.get("name") or doc.get("title"))
    ruleset = RuleSet.load([rule_file, *extra], placeholders)
    mine = [e for e in ruleset.errors if Path(e.file).resolve() == rule_file.resolve()]
    if mine:
        raise RulesCliError(str(mine[0]))
    target = ruleset.get(label)
    if target is None:
        raise RulesCliError(f"{rule_file}: rule {label} did not load")
    return ruleset, target.key


@dataclass(slots=True)
class CaseResult:
    case: Case
    count: int
    events: int
    detections: list[Detection]
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.case.accepts(self.count)

    def __str__(self) -> str:
        sources = ", ".join(str(s) for s in self.case.sources)
        if self.error is not None:
            return f"{self.case.name} fixture ({sources}): ERROR {self.error}"
        verdict = "ok" if self.ok else "FAILED"
        return (f"{self.case.name} fixture ({sources}): {verdict}, {self.count} match{'es' if self.count != 1 else ''}"
                f" in {self.events:,} events, expected {self.case.expected()}")


def run_case(rule_file: Path, case: Case, placeholders: Mapping[str, Sequence[str]], workdir: Path,
             crafted: CraftedWriter = write_crafted) -> CaseResult:
    """One fixture case of a rule file: its sources' events (in order, each source on its own) through
    the engine loaded with the rule alone; counts the detections of the file's primary rule."""
    merged = {**{k: list(v) for k, v in placeholders.items()}, **case.placeholders}
    try:
        ruleset, key = load_rule(rule_file, merged)
        target = ruleset.get(key)
        assert target is not None
        events: list[Event] = []
        for source in case.sources:
            events += source_events(source, rule_file.parent, workdir, crafted)
    except RulesCliError as exc:
        return CaseResult(case, 0, 0, [], str(exc))
    detections, seen = run_engine(ruleset, events)
    mine = [d for d in detections if d.detector_id == target.rule_id]
    return CaseResult(case, len(mine), seen, mine)


def run_fixtures(rule_file: Path, placeholders: Mapping[str, Sequence[str]], workdir: Path,
                 crafted: CraftedWriter = write_crafted) -> list[CaseResult]:
    """Both declared cases of a rule file (:class:`FixtureError` for a broken fixtures file)."""
    fixtures = load_fixtures(fixtures_path(rule_file))
    return [run_case(rule_file, case, placeholders, workdir, crafted) for case in fixtures.cases]


# -- lint ----------------------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True, order=True)
class LintProblem:
    file: str
    line: int
    check: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: [{self.check}] {self.message}"


def known_fields() -> frozenset[str]:
    """Field names rules may use: the event schema, the alert fields and the generic aliases."""
    from sensor.schema import all_fields

    return frozenset(f.name for f in all_fields()) | frozenset(f.name for f in ALERT_FIELDS) | frozenset(FIELD_ALIASES)


def _sigma_reason(error: Exception) -> str:
    text = str(error.args[0]) if error.args else str(error)
    return _one_line(text)


def _detection_fields(detection: Any) -> Iterable[str]:
    if not isinstance(detection, dict):
        return
    for name, body in detection.items():
        if name == "condition":
            continue
        items = body if isinstance(body, list) else [body]
        for item in items:
            if isinstance(item, dict):
                for key in item:
                    base = str(key).split("|", 1)[0]
                    if base:
                        yield base


def _validators() -> list[type]:
    """pySigma's installed validators (as ``sigma check`` runs them) with icsmon's offline ones on top:
    ours replace the ATT&CK and D3FEND checks that download data at run time."""
    from sigma.plugins import InstalledSigmaPlugins

    from analyzer.sigma.validators import validators as icsmon_validators

    try:
        found = dict(InstalledSigmaPlugins.autodiscover().validators)
    except Exception:  # noqa: BLE001 - a broken third-party plugin must not stop linting
        from sigma.validators.core import validators as core

        found = dict(core)
    found.update(icsmon_validators)
    return list(found.values())


class _Linter:
    def __init__(self, placeholders: Mapping[str, Sequence[str]], check_fixtures: bool) -> None:
        self.placeholders = placeholders
        self.check_fixtures = check_fixtures
        self.problems: list[LintProblem] = []
        self.fields = known_fields()
        self.files: dict[str, RuleFile] = {}
        self.crafted = _crafted_registry() if check_fixtures else None
        self.broken: set[str] = set()  # files whose YAML does not parse: reported once, by us

    def add(self, path: Path | str, line: int, check: str, message: str) -> None:
        self.problems.append(LintProblem(str(path), line, check, _one_line(message)))

    def run(self, paths: Sequence[Path]) -> list[LintProblem]:
        from sigma.collection import SigmaCollection
        from sigma.exceptions import SigmaError, SigmaRuleLocation
        from sigma.validation import SigmaValidator

        files = rule_files(paths)
        collected: list[Any] = []
        for path in files:
            try:
                parsed = read_rule_file(path)
            except RulesCliError as exc:
                self.broken.add(str(path))
                where, _, reason = str(exc).partition(": ")
                file, _, line = where.rpartition(":")
                if file and line.isdigit():
                    self.add(file, int(line), "yaml", reason)
                else:
                    self.add(path, 1, "yaml", reason)
                continue
            self.files[str(path)] = parsed
            try:
                collection = SigmaCollection.from_yaml(path.read_text(encoding="utf-8"), collect_errors=True,
                                                       source=SigmaRuleLocation(path))
            except SigmaError as exc:
                self.add(path, 1, "sigma", str(exc))
                continue
            for rule in collection.rules:
                if rule.errors:
                    for error in rule.errors:
                        index = parsed.index_of(str(rule.id) if rule.id else rule.name, rule.title)
                        self.add(path, self.locate(parsed, index, str(error)), "sigma", _sigma_reason(error))
                else:
                    collected.append(rule)
            for error in collection.errors:
                self.add(path, self.locate(parsed, 0, str(error)), "sigma", _sigma_reason(error))
            self.structure(parsed)
            if self.check_fixtures:
                self.fixtures(parsed)
        self.pysigma(SigmaValidator(_validators()), collected)
        self.engine(files)
        return sorted(set(self.problems))

    @staticmethod
    def locate(parsed: RuleFile, index: int, message: str, *needles: str) -> int:
        """The line a message is about: the first of ``needles`` (or of the message's quoted words)
        found in the document, else the document's first line."""
        quoted = re.findall(r"'([^']+)'", message)
        for needle in (*needles, *quoted):
            if needle:
                line = parsed.value_line(index, needle, default=-1)
                if line > 0:
                    return line
        return parsed.line(index)

    def where(self, rule: Any) -> tuple[str, RuleFile | None, int]:
        path = str(rule.source.path) if getattr(rule, "source", None) is not None else "?"
        parsed = self.files.get(path)
        index = parsed.index_of(str(rule.id) if rule.id else rule.name, rule.title) if parsed else 0
        return path, parsed, index

    def pysigma(self, validator: Any, rules: list[Any]) -> None:
        from sigma.exceptions import SigmaError

        try:
            issues = validator.validate_rules(iter(rules))
        except SigmaError as exc:
            self.add("?", 1, "pysigma", str(exc))
            return
        for issue in issues:
            if type(issue).__name__ == "UnknownIcsmonFieldIssue" and getattr(issue, "field", None) in self.fields:
                continue  # an alert field (ALERT_FIELDS): known to icsmon, not to the event-only validator
            detail = {k: v for k, v in vars(issue).items() if k != "rules"}
            text = ", ".join(f"{k}={v}" for k, v in detail.items())
            message = f"{issue.description}" + (f" ({text})" if text else "")
            needles = [str(v) for v in detail.values() if v is not None and str(v)]
            for rule in issue.rules:
                path, parsed, index = self.where(rule)
                line = self.locate(parsed, index, "", *needles) if parsed else 1
                self.add(path, line, f"pysigma:{type(issue).__name__}", message)

    def engine(self, files: list[Path]) -> None:
        """What the real-time engine refuses (compile errors, unconfigured placeholders, references),
        unless pySigma's checks reported the same already."""
        ruleset = RuleSet.load(files, self.placeholders)
        for error in ruleset.errors:
            if error.file in self.broken or self.known(error.file, error.reason):
                continue
            parsed = self.files.get(error.file)
            index = parsed.index_of(error.rule_id) if parsed else 0
            line = self.locate(parsed, index, error.reason) if parsed else 1
            self.add(error.file, line, "engine", error.reason)

    def known(self, file: str, reason: str) -> bool:
        text = _one_line(reason)
        return any(p.file == file and (text in p.message or p.message in text) for p in self.problems)

    def structure(self, parsed: RuleFile) -> None:
        path = parsed.path
        kinds = [parsed.kind(i) for i in range(len(parsed.docs))]
        if kinds.count("correlation") > 1 or "correlation" not in kinds and len(parsed.docs) > 1:
            self.add(path, 1, "layout", "one rule per file: a file holds one rule, or one correlation and the"
                     " helper rules it counts")
        primary = parsed.primary
        stem = path.name.rsplit(".", 1)[0]
        doc = parsed.docs[primary]
        if doc.get("name") != stem:
            self.add(path, parsed.line(primary, "name"), "metadata", f"name must be the file name: {stem}")
        self.metadata(parsed, primary)
        refs = set()
        if kinds[primary] == "correlation":
            corr = doc.get("correlation") or {}
            refs = {str(r) for r in (corr.get("rules") or [])}
            for name in corr.get("group-by") or []:
                self.field(parsed, primary, str(name))
            condition = corr.get("condition") or {}
            if isinstance(condition, dict) and "field" in condition:
                self.field(parsed, primary, str(condition["field"]))
            if corr.get("generate"):
                self.add(path, parsed.line(primary, "correlation", "generate"), "layout",
                         "generate: the helper rules of a correlation are not alerts of their own")
        for i, helper in enumerate(parsed.docs):
            if i == primary:
                continue
            name = str(helper.get("name", ""))
            if not name.startswith(f"{stem}__"):
                self.add(path, parsed.line(i, "name"), "layout", f"helper rule name must start with {stem}__")
            if name not in refs and str(helper.get("id")) not in refs:
                self.add(path, parsed.line(i), "layout", f"helper rule {name} is not counted by the correlation")
            if helper.get("level") != "informational":
                self.add(path, parsed.line(i, "level"), "metadata", "helper rules are level: informational")
            for key in ("id", "title", "description"):
                if not helper.get(key):
                    self.add(path, parsed.line(i), "metadata", f"helper rule {name or '(unnamed)'}: {key} missing")
        for name in refs:
            if not any(d.get("name") == name or str(d.get("id")) == name for d in parsed.docs):
                self.add(path, parsed.value_line(primary, name), "layout",
                         f"the correlation counts {name}, which is not in this file (files are self-contained)")

    def field(self, parsed: RuleFile, index: int, name: str) -> None:
        if name not in self.fields:
            self.add(parsed.path, parsed.value_line(index, name), "field",
                     f"{name} is not an icsmon event or alert field (icsmon schema)")

    def metadata(self, parsed: RuleFile, index: int) -> None:
        path, doc = parsed.path, parsed.docs[index]
        for key in ("id", "title", "description", "author", "date", "level", "status"):
            if not doc.get(key):
                self.add(path, parsed.line(index), "metadata", f"{key} missing")
        try:
            uuid.UUID(str(doc.get("id")))
        except ValueError:
            self.add(path, parsed.line(index, "id"), "metadata", "id must be a UUID")
        if doc.get("level") not in LEVELS or doc.get("level") == "informational":
            self.add(path, parsed.line(index, "level"), "metadata", f"level must be one of {', '.join(LEVELS[1:])}")
        if doc.get("status") not in STATUSES:
            self.add(path, parsed.line(index, "status"), "metadata", f"status must be one of {', '.join(STATUSES)}")
        for key in ("references", "falsepositives", "tags", "fields"):
            value = doc.get(key)
            if not isinstance(value, list) or not value:
                self.add(path, parsed.line(index, key), "metadata", f"{key}: a non-empty list is required")
        for name in doc.get("fields") or []:
            self.field(parsed, index, str(name))
        check = check_tags(str(t) for t in doc.get("tags") or [])  # bad tags: pySigma's attacktag (ours) reports them
        if not check.techniques:
            self.add(path, parsed.line(index, "tags"), "attack", "no ATT&CK for ICS technique tag (attack.t08nn)")
        if not check.tactics:
            self.add(path, parsed.line(index, "tags"), "attack", "no ATT&CK for ICS tactic tag (attack.<tactic>)")
        names = {TACTICS[t][1]: t for t in TACTICS}
        for tid in check.techniques:
            if not {names[n] for n in check.tactics if n in names} & set(TECHNIQUES[tid].tactics):
                wanted = " or ".join(f"attack.{t}" for t in TECHNIQUES[tid].tactics)
                self.add(path, parsed.value_line(index, f"attack.{tid.lower()}"), "attack",
                         f"{tid} ({TECHNIQUES[tid].name}) belongs to {wanted}, which is not tagged")

    def fixtures(self, parsed: RuleFile) -> None:
        path = fixtures_path(parsed.path)
        try:
            fixtures = load_fixtures(path)
        except FixtureError as exc:
            self.add(parsed.path, 1, "fixtures", str(exc))
            return
        name = parsed.docs[parsed.primary].get("name")
        if fixtures.rule != name:
            self.add(path, 1, "fixtures", f"\"rule\" is {fixtures.rule!r}, the rule file's rule is {name!r}")
        for case in fixtures.cases:
            for source in case.sources:
                if source.kind == "shared" and not (shared_root() / source.ref).is_file():
                    self.add(path, 1, "fixtures", f"{case.name}: shared capture {source.ref} not found under"
                             f" {shared_root()}")
                elif source.kind == "events" and not (path.parent / source.ref).is_file():
                    self.add(path, 1, "fixtures", f"{case.name}: events file {source.ref} not found")
                elif source.kind == "crafted" and self.crafted is not None and source.ref not in self.crafted:
                    self.add(path, 1, "fixtures", f"{case.name}: no crafted capture {source.ref} in {CRAFTED_MODULE}")


def lint(paths: Sequence[Path], placeholders: Mapping[str, Sequence[str]] | None = None,
         check_fixtures: bool = True) -> list[LintProblem]:
    """Every problem of the rule files under ``paths``, sorted by file and line."""
    return _Linter(base_placeholders() if placeholders is None else placeholders, check_fixtures).run(paths)


# -- convert ----------------------------------------------------------------------------------------------

TARGETS = ("esql", "lucene", "eql")
REFUSED: dict[tuple[str, str], str] = {
    # (target, correlation type): why icsmon does not hand out pySigma's conversion (reviewed)
    ("eql", "value_count"): "pySigma's EQL backend turns value_count into a sequence of events repeating one value"
                            " (runs), which counts repeats, not distinct values",
    ("eql", "temporal_ordered"): "pySigma's EQL backend writes the sequence with an empty join key ('by  with"
                                 " runs=2'), which the EQL grammar does not accept",
}
"""Conversions the backend produces but that do not mean what the rule means."""


@dataclass(slots=True)
class Conversion:
    queries: list[str]
    approximate: list[str]  # why the query may not select exactly what the engine matches (empty: exact)


def _backend(target: str, placeholders: Mapping[str, Sequence[str]]) -> Any:
    from sigma.backends.elasticsearch import EqlBackend, LuceneBackend

    from analyzer.sigma.esql import IcsmonESQLBackend
    from analyzer.sigma.pipeline import icsmon_pipeline

    cls = {"esql": IcsmonESQLBackend, "lucene": LuceneBackend, "eql": EqlBackend}[target]
    return cls(processing_pipeline=icsmon_pipeline(placeholders))


def convert_rule(rule_file: Path, target: str = "esql", placeholders: Mapping[str, Sequence[str]] | None = None
                 ) -> Conversion:
    """The file's rule (a correlation together with its helper rules) as ``target`` queries, through
    pySigma's Elasticsearch backend and the icsmon pipeline. :class:`RulesCliError` when the backend
    cannot express it."""
    from sigma.collection import SigmaCollection
    from sigma.exceptions import SigmaError, SigmaRuleLocation

    from analyzer.sigma.pipeline import conversion_notes

    if target not in TARGETS:
        raise RulesCliError(f"unknown target {target!r} (known: {', '.join(TARGETS)})")
    parsed = read_rule_file(rule_file)
    placeholders = base_placeholders() if placeholders is None else placeholders
    correlation = parsed.kind(parsed.primary) == "correlation"
    kind = (parsed.docs[parsed.primary].get("correlation") or {}).get("type") if correlation else None
    if kind is not None and (target, str(kind)) in REFUSED:
        raise RulesCliError(f"{rule_file}: no {target} conversion of {kind} correlations: {REFUSED[target, str(kind)]}"
                            f" (use --target esql where it applies; the engine evaluates the rule in real time)")
    try:
        collection = SigmaCollection.from_yaml(rule_file.read_text(encoding="utf-8"),
                                               source=SigmaRuleLocation(rule_file))
        queries = _backend(target, placeholders).convert(collection)
    except NotImplementedError as exc:
        hint = " (esql converts event_count and value_count, eql temporal_ordered)" if kind else ""
        raise RulesCliError(f"{rule_file}: the {target} backend cannot convert this rule"
                            f"{f' ({kind} correlation)' if kind else ''}: {_one_line(exc) or 'not implemented'}{hint}"
                            ) from None
    except SigmaError as exc:
        raise RulesCliError(f"{rule_file}: {_one_line(exc)}") from None
    texts = [q if isinstance(q, str) else json.dumps(q) for q in queries]
    notes: list[str] = []
    for rule in collection.rules:
        notes += [n for n in conversion_notes(rule, target) if n not in notes]
    return Conversion(texts, notes)


# -- new ---------------------------------------------------------------------------------------------------

_NAME_RE = re.compile(r"[a-z][a-z0-9_]{2,80}")

_TEMPLATE = """\
title: {title}
id: {id}
name: {name}
status: experimental
description: |
  TODO: what the rule detects, why it matters on an industrial network, and which events it
  looks at ({logsource_text}).
references:
  - https://attack.mitre.org/techniques/{technique}/
author: {author}
date: {date}
tags:
  - attack.{tactic}
  - attack.{technique_tag}
logsource:
  product: icsmon
  {logsource_key}: {logsource_value}
detection:
  selection:
    ics.operation: {operation}
    ics.role: request
  allowed:
    source.ip|expand: '%engineering_workstations%'
  condition: selection and not allowed
fields:
  - source.ip
  - destination.ip
  - ics.function
  - ics.tag
falsepositives:
  - TODO
level: {level}
"""


def scaffold(name: str, folder: Path, service: str | None, category: str | None, operation: str,
             technique: str, level: str, author: str) -> tuple[Path, Path]:
    """Write ``folder/<service or category>/<name>.yml`` and its fixtures (an inline positive and
    negative event that the template's detection tells apart); never overwrites."""
    from sensor.dissect import OPERATIONS

    if not _NAME_RE.fullmatch(name):
        raise RulesCliError(f"rule name {name!r}: lower-case letters, digits and _ (3 to 81 characters)")
    if (service is None) == (category is None):
        raise RulesCliError("give exactly one of --service and --category")
    if service is not None and service not in SERVICES:
        raise RulesCliError(f"unknown service {service!r} (known: {', '.join(SERVICES)})")
    if category is not None and category not in CATEGORIES:
        raise RulesCliError(f"unknown category {category!r} (known: {', '.join(CATEGORIES)})")
    if operation not in OPERATIONS:
        raise RulesCliError(f"unknown operation {operation!r} (known: {', '.join(OPERATIONS)})")
    tid = technique.upper()
    if tid not in TECHNIQUES or TECHNIQUES[tid].deprecated:
        raise RulesCliError(f"{technique}: not a current ATT&CK for ICS technique (e.g. T0855)")
    if level not in LEVELS[1:]:
        raise RulesCliError(f"level must be one of {', '.join(LEVELS[1:])}")
    key, value = ("service", service) if service is not None else ("category", category)
    assert value is not None
    rule_path = folder / value / f"{name}.yml"
    fixture_path = fixtures_path(rule_path)
    for p in (rule_path, fixture_path):
        if p.exists():
            raise RulesCliError(f"{p} exists already")
    field_name, field_value, _doc = (SERVICES if service is not None else CATEGORIES)[value]
    text = _TEMPLATE.format(
        title=name.replace("_", " ").capitalize(), id=uuid.uuid4(), name=name, author=author,
        date=date.today().isoformat(), technique=tid, technique_tag=tid.lower(),
        tactic=TECHNIQUES[tid].tactics[0], logsource_key=key, logsource_value=value,
        logsource_text=f"{field_name}: {field_value}", operation=operation, level=level)
    now = datetime.now(tz=UTC).replace(microsecond=0).timestamp()
    event = {"@timestamp": now, field_name: field_value, "event.dataset": "icsmon." + (service or value),
             "ics.operation": operation, "ics.role": "request", "source.ip": "192.0.2.10",
             "destination.ip": "192.0.2.20"}
    fixtures = {
        "rule": name,
        "positive": {"sources": [{"events": [event]}], "min": 1, "max": 1,
                     "note": "TODO: replace with a real capture (shared:...) or a crafted one (crafted:...)"},
        "negative": {"sources": [{"events": [{**event, "ics.role": "response"}]}],
                     "note": "TODO: traffic that looks alike but must not match"},
    }
    rule_path.parent.mkdir(parents=True, exist_ok=True)
    rule_path.write_text(text, encoding="utf-8")
    fixture_path.write_text(json.dumps(fixtures, indent=2) + "\n", encoding="utf-8")
    return rule_path, fixture_path


# -- the command line ------------------------------------------------------------------------------------

def _placeholders_option(path: str | None) -> dict[str, list[str]]:
    try:
        return base_placeholders(Path(path) if path else None)
    except RulesCliError as exc:
        _fail(str(exc))


_placeholders_opt = click.option(
    "--placeholders", "placeholders_path", metavar="FILE",
    help="Site placeholders (YAML, name: [values], or a pySigma pipeline with vars:); default:"
         " deploy/placeholders.yml.")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def rules() -> None:
    """Lint, test, convert and scaffold Sigma detection rules."""


@rules.command("lint")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@_placeholders_opt
@click.option("--no-fixtures", is_flag=True, help="Do not check that fixtures are present and well-formed.")
def lint_command(paths: tuple[Path, ...], placeholders_path: str | None, no_fixtures: bool) -> None:
    """Check rule files (default: the pack in rules/): pySigma's validators as `sigma check` runs them,
    then icsmon's: known logsource, known field names, ATT&CK for ICS tags, metadata, one rule per
    file, fixtures present. One line per problem, file:line; exit status 1 when there is any."""
    placeholders = _placeholders_option(placeholders_path)
    try:
        problems = lint(list(paths) or [PACK], placeholders, check_fixtures=not no_fixtures)
    except RulesCliError as exc:
        _fail(str(exc))
    for problem in problems:
        click.echo(str(problem))
    count = len(rule_files(list(paths) or [PACK]))
    if problems:
        files = len({p.file for p in problems})
        click.echo(f"{len(problems)} problem{'s' if len(problems) != 1 else ''} in {files} file"
                   f"{'s' if files != 1 else ''} ({count} rule files checked)", err=True)
        sys.exit(EXIT_PROBLEMS)
    click.echo(f"{count} rule files checked, no problems", err=True)


def _resolve_rule(rule: str) -> Path:
    path = Path(rule)
    if path.is_file():
        return path
    for candidate in rule_files([PACK]) if PACK.is_dir() else []:
        if candidate.name.rsplit(".", 1)[0] == rule:
            return candidate
    _fail(f"{rule}: no such rule file (a path, or the name of a rule of the pack)")


def _evidence(fields: Sequence[str], event: Mapping[str, Any]) -> str:
    parts = []
    for name in fields:
        value = event.get(name)
        if value is None:
            continue
        text = ",".join(map(str, value)) if isinstance(value, list | tuple) else str(value)
        parts.append(f"{name}={text}")
    return " ".join(parts)


def _when(event: Mapping[str, Any]) -> str:
    ts = event.get("@timestamp")
    if isinstance(ts, int | float):
        return datetime.fromtimestamp(ts, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return str(ts)


@rules.command("test")
@click.argument("rule")
@click.option("--pcap", "pcaps", multiple=True, type=click.Path(path_type=Path), metavar="FILE",
              help="A capture to run through the sensor and the rule (repeatable, in order).")
@click.option("--events", "event_files", multiple=True, metavar="FILE",
              help="Events as JSON lines ('-': standard input), e.g. from `icsmon read --events` (repeatable).")
@click.option("--with", "extra", multiple=True, type=click.Path(path_type=Path), metavar="PATH",
              help="More rule files or folders to load, for correlations that count rules of other files.")
@_placeholders_opt
@click.option("--fixtures/--no-fixtures", default=True, show_default=True,
              help="Also check the rule's declared positive and negative fixtures.")
def test_command(rule: str, pcaps: tuple[Path, ...], event_files: tuple[str, ...], extra: tuple[Path, ...],
                 placeholders_path: str | None, fixtures: bool) -> None:
    """Run RULE (a rule file, or the name of a pack rule) alone on captures or events: every match with
    its evidence fields (the rule's `fields:`), and the number of events looked at. Exit status 1 when
    a declared fixture does not behave as declared."""
    path = _resolve_rule(rule)
    placeholders = _placeholders_option(placeholders_path)
    try:
        parsed = read_rule_file(path)
        ruleset, key = load_rule(path, placeholders, extra)
    except RulesCliError as exc:
        _fail(str(exc))
    target = ruleset.get(key)
    assert target is not None
    evidence = [str(f) for f in parsed.docs[parsed.primary].get("fields") or DEFAULT_EVIDENCE]
    failed = False
    if pcaps or event_files:
        events: list[Event] = []
        try:
            for pcap in pcaps:
                events += pcap_events(pcap)
            for file in event_files:
                events += read_json_lines(file)
        except RulesCliError as exc:
            _fail(str(exc))
        detections, seen = run_engine(ruleset, events)
        mine = [d for d in detections if d.detector_id == target.rule_id]
        for d in mine:
            related = f" (+{len(d.related_events)} related events)" if d.related_events else ""
            click.echo(f"match {_when(d.event)} {target.level} {target.title}: {_evidence(evidence, d.event)}{related}")
        click.echo(f"{len(mine)} match{'es' if len(mine) != 1 else ''} in {seen:,} events looked at")
    if fixtures:
        fpath = fixtures_path(path)
        if not fpath.exists():
            click.echo(f"no fixtures declared ({fpath.name} missing)", err=True)
        else:
            with tempfile.TemporaryDirectory(prefix="icsmon-rules-") as tmp:
                try:
                    results = run_fixtures(path, placeholders, Path(tmp))
                except FixtureError as exc:
                    _fail(str(exc))
            for result in results:
                click.echo(str(result))
                failed |= not result.ok
    if failed:
        sys.exit(EXIT_PROBLEMS)


@rules.command("convert")
@click.argument("rule")
@click.option("--target", type=click.Choice(TARGETS), default="esql", show_default=True,
              help="Query language (ES|QL is the one that expresses correlations).")
@_placeholders_opt
def convert_command(rule: str, target: str, placeholders_path: str | None) -> None:
    """Convert RULE to an Elasticsearch query over the stored events (icsmon-events-*) with pySigma's
    Elasticsearch backend and the icsmon pipeline. Queries go to standard output; when the query can
    select other documents than the engine matches, the reasons go to standard error, each line
    starting with `approximate:`."""
    path = _resolve_rule(rule)
    placeholders = _placeholders_option(placeholders_path)
    try:
        conversion = convert_rule(path, target, placeholders)
    except RulesCliError as exc:
        _fail(str(exc))
    for query in conversion.queries:
        click.echo(query)
    for reason in conversion.approximate:
        click.echo(f"approximate: {reason}", err=True)


@rules.command("new")
@click.argument("name")
@click.option("--service", type=click.Choice(list(SERVICES)), help="Protocol logsource of the rule.")
@click.option("--category", type=click.Choice(list(CATEGORIES)), help="Category logsource (flow, decode_error...).")
@click.option("--operation", default="write", show_default=True, help="ics.operation the template selects.")
@click.option("--technique", default="T0855", show_default=True, help="ATT&CK for ICS technique id.")
@click.option("--level", type=click.Choice(LEVELS[1:]), default="medium", show_default=True)
@click.option("--author", default="icsmon", show_default=True)
@click.option("--dir", "folder", type=click.Path(path_type=Path), default=PACK, show_default=True,
              help="Rule folder; the rule goes to DIR/<service or category>/NAME.yml.")
def new_command(name: str, service: str | None, category: str | None, operation: str, technique: str, level: str,
                author: str, folder: Path) -> None:
    """Scaffold rule NAME and its fixtures from a template (a request of --operation from a host that is
    not an engineering workstation); both pass `lint` and `test` as written, to be edited."""
    try:
        rule_path, fixture_path = scaffold(name, folder, service, category, operation, technique, level, author)
    except RulesCliError as exc:
        _fail(str(exc))
    click.echo(str(rule_path))
    click.echo(str(fixture_path))


def main(argv: Sequence[str] | None = None) -> None:
    rules.main(args=list(argv) if argv is not None else None, prog_name="icsmon rules")


if __name__ == "__main__":
    main()
