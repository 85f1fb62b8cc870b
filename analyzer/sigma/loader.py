"""Load Sigma rules with pySigma and compile them: :class:`RuleSet`.

``RuleSet.load(paths, placeholders)`` reads every ``*.yml``/``*.yaml`` file under the given
files and folders, parses each with pySigma (collecting errors instead of raising), applies the
Sigma filter rules, resolves correlation references, and compiles every detection rule once
(:mod:`analyzer.sigma.compile`) and every correlation rule into a :class:`CorrelationSpec`.

A rule that pySigma or our compiler cannot handle becomes one :class:`RuleError` -- file, rule
id and reason, one line -- and the other rules still load: a broken YAML file, an unknown
modifier, a logsource outside the icsmon taxonomy, an unconfigured ``%placeholder%``, a
correlation that references a missing rule, a duplicate id. Problems that do not stop a rule
(an unknown ATT&CK tag) are kept as :attr:`RuleSet.warnings`.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from sigma.collection import SigmaCollection
from sigma.correlations import SigmaCorrelationRule, SigmaCorrelationType, SigmaExtendedCorrelationCondition
from sigma.exceptions import SigmaError, SigmaRuleLocation
from sigma.filters import SigmaFilter
from sigma.rule import SigmaRule

from analyzer.alerts import Detection, Severity
from analyzer.sigma.attack_ics import check_tags
from analyzer.sigma.compile import CompileError, compile_predicate
from analyzer.sigma.correlation import CorrelationSpec
from analyzer.sigma.taxonomy import PRODUCTS, LogsourceError, canonical_field, logsource_tests

__all__ = ["Correlation", "Rule", "RuleError", "RuleSet", "load_placeholders"]

LEVEL_SEVERITY: dict[str, Severity] = {
    "informational": "low", "low": "low", "medium": "medium", "high": "high", "critical": "critical",
}
"""Sigma ``level`` -> alert severity (no level: medium)."""

SUPPORTED_CORRELATIONS = ("event_count", "value_count", "temporal", "temporal_ordered")


@dataclass(frozen=True, slots=True)
class RuleError:
    """A rule (or file) that was not loaded, and why."""

    file: str
    rule_id: str | None
    reason: str

    def __str__(self) -> str:
        where = f"{self.file}: rule {self.rule_id}" if self.rule_id else self.file
        return f"{where}: {self.reason}"


@dataclass(slots=True)
class _Meta:
    """What a detection says about its rule (shared by plain and correlation rules)."""

    key: str  # unique key within the rule set: the id, else the name, else the title
    rule_id: str
    name: str | None
    title: str
    file: str
    level: str
    severity: Severity
    description: str
    techniques: tuple[str, ...]
    tactics: tuple[str, ...]
    fingerprint: str
    output: bool = True

    def detection(self, event: Mapping[str, Any], related: tuple[Mapping[str, Any], ...] = ()) -> Detection:
        # Positional (the field order of Detection): this runs once per matching event.
        return Detection("rule", self.rule_id, self.title, self.severity, event, None, self.techniques,
                         self.tactics, self.description, related)


@dataclass(slots=True)
class Rule(_Meta):
    """A compiled detection rule."""

    predicate: Any = None  # Callable[[Mapping[str, Any]], bool]
    route: tuple[str, str] | None = None
    necessary: list[tuple[str, str, Any]] = field(default_factory=list)  # see compile.necessary_tests
    source: str = ""
    ordinal: int = 0
    kind: str = "rule"


@dataclass(slots=True)
class Correlation(_Meta):
    """A compiled correlation rule."""

    spec: CorrelationSpec | None = None
    ordinal: int = 0
    kind: str = "correlation"


@dataclass(slots=True)
class RuleSet:
    rules: list[Rule | Correlation] = field(default_factory=list)
    errors: list[RuleError] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    placeholders: dict[str, tuple[str, ...]] = field(default_factory=dict)
    files: tuple[str, ...] = ()

    @classmethod
    def load(cls, paths: Sequence[Path | str], placeholders: Mapping[str, Sequence[str]] = {}) -> RuleSet:  # noqa: B006
        return _Loader({k: tuple(str(v) for v in vs) for k, vs in placeholders.items()}).load(paths)

    def get(self, rule_id: str) -> Rule | Correlation | None:
        for rule in self.rules:
            if rule.rule_id == rule_id or rule.key == rule_id or rule.name == rule_id:
                return rule
        return None


def load_placeholders(path: Path | str) -> dict[str, list[str]]:
    """Placeholder values from YAML: a plain mapping ``name: [values]`` or a pySigma pipeline file
    with ``vars:`` -- the same file then serves ``sigma convert -p icsmon -p FILE``."""
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    if isinstance(data, dict) and isinstance(data.get("vars"), dict):
        data = data["vars"]
    if not isinstance(data, dict):
        raise ValueError(f"{path}: placeholders must be a mapping of name -> list of values")
    out: dict[str, list[str]] = {}
    for name, values in data.items():
        items = values if isinstance(values, list) else [values]
        if not all(isinstance(v, str | int | float) and not isinstance(v, bool) for v in items):
            raise ValueError(f"{path}: placeholder {name}: values must be strings or numbers")
        out[str(name)] = [str(v) for v in items]
    return out


# -- loading --------------------------------------------------------------------------------------

def _reason(exc: BaseException) -> str:
    text = str(exc.args[0]) if isinstance(exc, SigmaError) and exc.args else str(exc)
    return " ".join(text.split()) or type(exc).__name__


def _rule_label(rule: SigmaRule | SigmaCorrelationRule | SigmaFilter) -> str | None:
    if rule.id is not None:
        return str(rule.id)
    return rule.name or rule.title or None


def _fingerprint(obj: Any) -> str:
    try:
        data = obj.to_dict()
    except Exception:  # noqa: BLE001 - to_dict() is best effort for odd rules; repr still identifies them
        data = repr(obj)
    text = json.dumps(data, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _files(paths: Sequence[Path | str], errors: list[RuleError]) -> list[Path]:
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if p.suffix in (".yml", ".yaml") and p.is_file()))
        elif path.is_file():
            found.append(path)
        else:
            errors.append(RuleError(str(path), None, "no such file or directory"))
    seen: set[Path] = set()
    unique = []
    for p in found:
        resolved = p.resolve()
        if resolved not in seen:
            seen.add(resolved)
            unique.append(p)
    return unique


class _Loader:
    def __init__(self, placeholders: dict[str, tuple[str, ...]]) -> None:
        self.placeholders = placeholders
        self.errors: list[RuleError] = []
        self.warnings: list[str] = []

    def error(self, file: str, rule_id: str | None, reason: str) -> None:
        self.errors.append(RuleError(file, rule_id, reason))

    def load(self, paths: Sequence[Path | str]) -> RuleSet:
        files = _files(paths, self.errors)
        parsed: list[tuple[str, SigmaRule | SigmaCorrelationRule, str]] = []  # (file, rule, fingerprint)
        filters: list[tuple[str, SigmaFilter]] = []
        for path in files:
            for file, item in self._parse_file(path):
                if isinstance(item, SigmaFilter):
                    filters.append((file, item))
                else:
                    parsed.append((file, item, _fingerprint(item)))

        # Unique keys: ids first, then names; a duplicate loses (the first definition wins).
        keyed: dict[str, tuple[str, SigmaRule | SigmaCorrelationRule, str]] = {}
        names: dict[str, str] = {}
        for file, rule, fp in parsed:
            label = _rule_label(rule) or "?"
            if label in keyed:
                self.error(file, label, f"duplicate rule id, first defined in {keyed[label][0]}")
                continue
            if rule.name and rule.name in names and names[rule.name] != label:
                self.error(file, label, f"duplicate rule name {rule.name!r}")
                continue
            keyed[label] = (file, rule, fp)
            if rule.name:
                names[rule.name] = label

        valid_filters = self._check_filters(filters)
        compiled: dict[str, Rule] = {}
        for label, (file, rule, fp) in keyed.items():
            if isinstance(rule, SigmaRule):
                result = self._compile_rule(label, file, rule, fp, valid_filters)
                if result is not None:
                    compiled[label] = result
        correlations = self._compile_correlations(
            {k: v for k, v in keyed.items() if isinstance(v[1], SigmaCorrelationRule)}, compiled, names)

        ordered: list[Rule | Correlation] = [*compiled.values(), *correlations]
        for ordinal, item in enumerate(ordered):
            item.ordinal = ordinal
        return RuleSet(ordered, self.errors, self.warnings, dict(self.placeholders), tuple(str(f) for f in files))

    def _parse_file(self, path: Path) -> list[tuple[str, SigmaRule | SigmaCorrelationRule | SigmaFilter]]:
        file = str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            self.error(file, None, f"cannot read: {_reason(exc)}")
            return []
        try:
            collection = SigmaCollection.from_yaml(text, collect_errors=True, source=SigmaRuleLocation(path),
                                                   collect_filters=True, resolve_references=False)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"line {mark.line + 1}: " if mark is not None else ""
            problem = getattr(exc, "problem", None) or _reason(exc)
            self.error(file, None, f"YAML: {where}{problem}")
            return []
        except SigmaError as exc:
            self.error(file, None, _reason(exc))
            return []
        except Exception as exc:  # noqa: BLE001 - e.g. a YAML list instead of a rule mapping
            self.error(file, None, f"not a Sigma rule file: {type(exc).__name__}: {_reason(exc)}")
            return []
        out: list[tuple[str, SigmaRule | SigmaCorrelationRule | SigmaFilter]] = []
        reported: set[int] = set()
        for item in [*collection.rules, *collection.filters]:
            if item.errors:
                self.error(file, _rule_label(item), _reason(item.errors[0]))
                reported.update(id(e) for e in item.errors)
                continue
            # Same product for every icsmon rule and filter (ics and no product mean icsmon), so that
            # pySigma's logsource test of a filter against a rule compares like with like.
            if isinstance(item, SigmaRule | SigmaFilter) and (item.logsource.product or "ics") in PRODUCTS[1:]:
                item.logsource = dataclasses.replace(item.logsource, product=PRODUCTS[0])
            out.append((file, item))
        for exc in collection.errors:
            if id(exc) not in reported:
                self.error(file, None, _reason(exc))
        return out

    def _check_filters(self, filters: list[tuple[str, SigmaFilter]]) -> list[tuple[str, SigmaFilter]]:
        valid = []
        for file, flt in filters:
            try:
                for condition in flt.filter.parsed_condition:
                    condition.parse()
            except SigmaError as exc:
                self.error(file, _rule_label(flt), f"filter: {_reason(exc)}")
                continue
            valid.append((file, flt))
        return valid

    def _meta(self, label: str, file: str, rule: SigmaRule | SigmaCorrelationRule, fp: str) -> dict[str, Any]:
        level = rule.level.name.lower() if rule.level is not None else "medium"
        tags = check_tags(str(t) for t in rule.tags)
        for problem in tags.problems:
            self.warnings.append(f"{file}: rule {label}: {problem}")
        return {
            "key": label, "rule_id": label, "name": rule.name, "title": rule.title or label, "file": file,
            "level": level, "severity": LEVEL_SEVERITY.get(level, "medium"),
            "description": " ".join((rule.description or "").split()), "techniques": tags.techniques,
            "tactics": tags.tactics, "fingerprint": fp,
        }

    def _compile_rule(self, label: str, file: str, rule: SigmaRule, fp: str,
                      filters: list[tuple[str, SigmaFilter]]) -> Rule | None:
        try:
            ls = rule.logsource
            tests = logsource_tests(ls.product, ls.service, ls.category)
            for ffile, flt in filters:
                try:
                    rule = flt.apply_on_rule(copy.deepcopy(rule))  # type: ignore[assignment]
                except SigmaError as exc:
                    self.error(ffile, _rule_label(flt), f"filter cannot apply to rule {label}: {_reason(exc)}")
            predicate = compile_predicate(rule, tests.tests, self.placeholders, label)
        except (LogsourceError, CompileError) as exc:
            self.error(file, label, str(exc))
            return None
        except SigmaError as exc:
            self.error(file, label, _reason(exc))
            return None
        except Exception as exc:  # noqa: BLE001 - one odd rule must never stop the others
            self.error(file, label, f"cannot compile: {type(exc).__name__}: {_reason(exc)}")
            return None
        if predicate.placeholders:
            fp = hashlib.sha256((fp + json.dumps(predicate.placeholders, sort_keys=True)).encode()).hexdigest()[:24]
        route = (tests.route[0], tests.route[1].lower()) if tests.route else None
        return Rule(**self._meta(label, file, rule, fp), predicate=predicate.func, route=route,
                    necessary=predicate.necessary, source=predicate.source)

    def _compile_correlations(self, pending: dict[str, tuple[str, SigmaCorrelationRule, str]],
                              rules: dict[str, Rule], names: dict[str, str]) -> list[Correlation]:
        done: dict[str, Correlation] = {}
        refs_of: dict[str, list[str]] = {}
        unresolved = dict(pending)
        progress = True
        while unresolved and progress:  # correlations may reference correlations: resolve to a fixpoint
            progress = False
            for label, (file, corr, fp) in list(unresolved.items()):
                refs: list[str] = []
                missing = None
                for ref in self._references(corr):
                    target = ref if ref in rules or ref in done else names.get(ref)
                    if target is None or (target not in rules and target not in done):
                        missing = ref
                        break
                    refs.append(target)
                if missing is not None and (missing in unresolved or names.get(missing) in unresolved):
                    continue  # may resolve once that correlation is compiled
                del unresolved[label]
                progress = True
                if missing is not None:
                    self.error(file, label, f"correlation references unknown or unloaded rule {missing!r}")
                    continue
                result = self._compile_correlation(label, file, corr, fp, refs, rules, done)
                if result is not None:
                    done[label] = result
                    refs_of[label] = refs
        for label, (file, _corr, _fp) in unresolved.items():
            self.error(file, label, "correlation references form a cycle")
        # Rules referenced by a correlation that does not generate them are not output themselves.
        for label in done:
            if not pending[label][1].generate:
                for target in refs_of[label]:
                    (rules.get(target) or done[target]).output = False
        return list(done.values())

    @staticmethod
    def _references(corr: SigmaCorrelationRule) -> list[str]:
        if corr.rules is not None:
            return [r.reference for r in corr.rules]
        return []

    def _compile_correlation(self, label: str, file: str, corr: SigmaCorrelationRule, fp: str, refs: list[str],
                             rules: dict[str, Rule], done: dict[str, Correlation]) -> Correlation | None:
        kind = corr.type.name.lower() if isinstance(corr.type, SigmaCorrelationType) else str(corr.type)
        if kind not in SUPPORTED_CORRELATIONS:
            self.error(file, label, f"correlation type {kind} is not supported (supported: "
                       f"{', '.join(SUPPORTED_CORRELATIONS)})")
            return None
        if isinstance(corr.condition, SigmaExtendedCorrelationCondition) or not refs:
            self.error(file, label, "extended correlation conditions (rule expressions) are not supported;"
                       " list the rules under rules:")
            return None
        ref_strings = self._references(corr)
        group_by = [str(g) for g in (corr.group_by or [])]
        aliases = {a.alias: {r.reference: f for r, f in a.mapping.items()} for a in corr.aliases}
        group_fields = tuple(
            tuple(canonical_field(aliases[g].get(ref, g)) if g in aliases else canonical_field(g) for g in group_by)
            for ref in ref_strings)
        op = corr.condition.op.name.lower()
        count = corr.condition.count
        value_fields: tuple[str | None, ...] = ()
        if kind == "value_count":
            fieldref = corr.condition.fieldref
            if not isinstance(fieldref, str):
                self.error(file, label, "value_count needs exactly one condition field")
                return None
            value_fields = tuple(canonical_field(aliases[fieldref].get(ref, fieldref)) if fieldref in aliases
                                 else canonical_field(fieldref) for ref in ref_strings)
        spec = CorrelationSpec(type=kind, refs=tuple(refs), group_fields=group_fields,
                               timespan=float(corr.timespan.seconds), op=op, count=count, value_fields=value_fields)
        # The state of a correlation depends on the rules it counts: their fingerprints are part of its own.
        parts = [fp] + [(rules.get(r) or done[r]).fingerprint for r in refs]
        fingerprint = hashlib.sha256("|".join(parts).encode()).hexdigest()[:24]
        return Correlation(**self._meta(label, file, corr, fingerprint), spec=spec)
