"""Compile a parsed Sigma rule into one Python predicate over flat events, once.

pySigma parses the YAML, applies the modifiers and resolves the condition (``1 of selection_*``,
``all of them``, ``not``, parentheses) into a tree of AND/OR/NOT nodes whose leaves are
field/value tests. This module turns that tree into a small intermediate form, folds value lists
into set lookups, orders each AND so that cheap equality tests run first, and generates the
source of one Python function per rule::

    def predicate(event):
        g = event.get
        return ((_v.lower() == 'modbus' if (_v := g('network.protocol')).__class__ is str else m0(_v))
                and m1(g('modbus.function')) and not m2(g('source.ip')))

Field access is a direct ``event.get("a.b")``: events are flat. Nothing of the YAML tree is
interpreted per event. The same intermediate form yields the equality tests every match needs
(:func:`necessary_tests`), which the rule index uses to skip rules that cannot match.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sigma.conditions import (
    ConditionAND,
    ConditionFieldEqualsValueExpression,
    ConditionNOT,
    ConditionOR,
    ConditionValueExpression,
)
from sigma.exceptions import SigmaError
from sigma.modifiers import SigmaBase64Modifier, SigmaBase64OffsetModifier
from sigma.rule import SigmaDetection, SigmaDetectionItem, SigmaRule
from sigma.types import (
    Placeholder,
    SigmaCasedString,
    SigmaExpansion,
    SigmaFieldReference,
    SigmaQueryExpression,
    SigmaRegularExpression,
    SigmaString,
    SigmaType,
    SpecialChars,
)

from analyzer.sigma.modifiers import (
    MatcherSpec,
    UnsupportedValue,
    either,
    field_reference,
    keyword_matcher,
    matcher_for,
)
from analyzer.sigma.taxonomy import canonical_field

__all__ = ["CompileError", "CompiledPredicate", "compile_predicate"]


class CompileError(ValueError):
    """A rule the evaluator cannot compile; the message is the one-line reason."""


# -- intermediate form ----------------------------------------------------------------------------

@dataclass(slots=True)
class Leaf:
    field: str
    spec: MatcherSpec


@dataclass(slots=True)
class Keyword:
    spec: MatcherSpec


@dataclass(slots=True)
class FieldRef:
    field: str
    ref: str
    test: Callable[[Any, Any], bool]
    text: str


@dataclass(slots=True)
class And:
    items: list[Node]


@dataclass(slots=True)
class Or:
    items: list[Node]


@dataclass(slots=True)
class Not:
    item: Node


@dataclass(slots=True)
class Const:
    value: bool


Node = Leaf | Keyword | FieldRef | And | Or | Not | Const
Test = tuple[str, str, Any]  # (kind, field, payload): see necessary_tests()


@dataclass(slots=True)
class CompiledPredicate:
    """The compiled predicate of one rule and what the index and reload need to know about it."""

    func: Callable[[Mapping[str, Any]], bool]
    necessary: list[Test]  # tests every match passes (see necessary_tests), for the rule index
    source: str  # generated Python, for explain() and debugging
    placeholders: dict[str, tuple[str, ...]] = field(default_factory=dict)  # used placeholders


# -- from pySigma's condition tree ----------------------------------------------------------------

class _Builder:
    def __init__(self, placeholders: Mapping[str, Sequence[str]]) -> None:
        self.placeholders = placeholders
        self.used: dict[str, tuple[str, ...]] = {}

    def expand(self, value: SigmaType) -> list[SigmaType]:
        """Resolve ``%name%`` placeholders of the ``expand`` modifier from the configuration."""
        if isinstance(value, SigmaExpansion):
            return [SigmaExpansion([v for inner in value.values for v in self.expand(inner)])]
        if isinstance(value, SigmaRegularExpression):
            if not value.regexp.contains_placeholder():
                return [value]
            return list(value.replace_placeholders(self._replacement))
        if isinstance(value, SigmaString) and value.contains_placeholder():
            expanded = value.replace_placeholders(self._replacement)
            if isinstance(value, SigmaCasedString):
                expanded = [SigmaCasedString.from_sigma_string(v) for v in expanded]
            return list(expanded)
        return [value]

    def _replacement(self, placeholder: Placeholder) -> list[SigmaString]:
        name = placeholder.name
        if name not in self.placeholders:
            known = ", ".join(sorted(self.placeholders)) or "none configured"
            raise CompileError(f"placeholder %{name}% is not configured (known: {known})")
        values = self.placeholders[name]
        self.used[name] = tuple(str(v) for v in values)
        return [SigmaString(str(v)) for v in values]

    def node(self, cond: Any) -> Node:
        if cond is None:
            return Const(False)
        if isinstance(cond, ConditionAND):
            return And([self.node(a) for a in cond.args])
        if isinstance(cond, ConditionOR):
            return Or([self.node(a) for a in cond.args])
        if isinstance(cond, ConditionNOT):
            return Not(self.node(cond.args[0]))
        if isinstance(cond, ConditionFieldEqualsValueExpression):
            return self.leaf(cond.field, cond.value)
        if isinstance(cond, ConditionValueExpression):
            return self.keyword(cond.value)
        raise CompileError(f"condition element {type(cond).__name__} is not supported")

    def leaf(self, field_name: str, value: SigmaType) -> Node:
        name = canonical_field(field_name)
        if isinstance(value, SigmaFieldReference):
            ref = canonical_field(value.field)
            shape = ("contains" if value.starts_with and value.ends_with else "startswith" if value.starts_with
                     else "endswith" if value.ends_with else "equals")
            return FieldRef(name, ref, field_reference(value.starts_with, value.ends_with),
                            f"{name} {shape} field {ref}")
        if isinstance(value, SigmaQueryExpression):
            raise CompileError(f"field {field_name}: query expressions are a conversion-only feature")
        try:
            specs = [matcher_for(v) for v in self.expand(value)]
        except UnsupportedValue as exc:
            raise CompileError(f"field {field_name}: {exc}") from None
        return Leaf(name, either(specs))

    def keyword(self, value: SigmaType) -> Node:
        # A keyword is searched in every field; a plain keyword matches as a substring (full-text
        # search in the Sigma sense), case-insensitively.
        values = self.expand(value)
        specs = []
        for v in values:
            if isinstance(v, SigmaString) and not v.contains_special():
                wrapped = SigmaString()
                wrapped.s = [SpecialChars.WILDCARD_MULTI, *v.s, SpecialChars.WILDCARD_MULTI]
                v = SigmaCasedString.from_sigma_string(wrapped) if isinstance(v, SigmaCasedString) else wrapped
            try:
                specs.append(matcher_for(v))
            except UnsupportedValue as exc:
                raise CompileError(f"keyword: {exc}") from None
        return Keyword(either(specs))


def _prepare(rule: SigmaRule) -> None:
    """Values encoded by base64/base64offset compare case-sensitively (an encoding's case is data)."""

    def cased(value: SigmaType) -> SigmaType:
        if isinstance(value, SigmaExpansion):
            return SigmaExpansion([cased(v) for v in value.values])
        if isinstance(value, SigmaString) and not isinstance(value, SigmaCasedString):
            return SigmaCasedString.from_sigma_string(value)
        return value

    def walk(detection: SigmaDetection | SigmaDetectionItem) -> None:
        if isinstance(detection, SigmaDetection):
            for item in detection.detection_items:
                walk(item)
        elif any(m in (SigmaBase64Modifier, SigmaBase64OffsetModifier) for m in detection.modifiers):
            detection.value = [cased(v) for v in detection.value]

    for detection in rule.detection.detections.values():
        walk(detection)


# -- simplification, ordering, necessary tests ----------------------------------------------------

def _simplify(node: Node) -> Node:
    if isinstance(node, Not):
        inner = _simplify(node.item)
        if isinstance(inner, Const):
            return Const(not inner.value)
        if isinstance(inner, Not):
            return inner.item
        return Not(inner)
    if isinstance(node, And | Or):
        is_and = isinstance(node, And)
        items: list[Node] = []
        for child in (_simplify(c) for c in node.items):
            if isinstance(child, Const):
                if child.value is not is_and:  # False in AND, True in OR decides
                    return Const(child.value)
                continue
            if type(child) is type(node):
                items.extend(child.items)  # type: ignore[union-attr]
            else:
                items.append(child)
        if not is_and:
            items = _fold_or(items)
        if not items:
            return Const(is_and)
        if len(items) == 1:
            return items[0]
        if is_and:
            items.sort(key=_cost)
        return And(items) if is_and else Or(items)
    return node


def _fold_or(items: list[Node]) -> list[Node]:
    """``a == x or a == y`` -> ``a in {x, y}``: one set lookup instead of a chain."""
    by_field: dict[str, list[Leaf]] = {}
    rest: list[Node] = []
    for item in items:
        if isinstance(item, Leaf) and item.spec.exact:
            by_field.setdefault(item.field, []).append(item)
        else:
            rest.append(item)
    folded: list[Node] = [Leaf(f, either([leaf.spec for leaf in leaves])) if len(leaves) > 1 else leaves[0]
                          for f, leaves in by_field.items()]
    return folded + rest


def _cost(node: Node) -> int:
    if isinstance(node, Leaf):
        return 0 if node.spec.exact else 1
    if isinstance(node, FieldRef):
        return 2
    if isinstance(node, Not):
        return _cost(node.item) + 1
    if isinstance(node, And | Or):
        return 3 + max((_cost(i) for i in node.items), default=0)
    if isinstance(node, Keyword):
        return 10
    return 0


def necessary_tests(node: Node) -> list[Test]:
    """Tests every matching event passes, for the rule index: ``("eq", field, keys)`` (the value's
    key is one of keys), ``("prefix", field, prefixes)`` (its text starts with one of them) and
    ``("range", field, (low, high))`` (a number inside; either bound may be None)."""
    return [(kind, f, payload) for (kind, f), payload in _tests(node).items()]


def _tests(node: Node) -> dict[tuple[str, str], Any]:
    if isinstance(node, Leaf):
        spec, found = node.spec, {}
        if spec.keys is not None:
            found[("eq", node.field)] = spec.keys
        elif spec.prefixes is not None:
            found[("prefix", node.field)] = spec.prefixes
        if spec.bounds is not None:
            found[("range", node.field)] = spec.bounds
        return found
    if isinstance(node, And):
        merged: dict[tuple[str, str], Any] = {}
        for item in node.items:
            for k, payload in _tests(item).items():
                merged[k] = _meet(k[0], merged[k], payload) if k in merged else payload
        return merged
    if isinstance(node, Or):
        branches = [_tests(item) for item in node.items]
        if not branches:
            return {}
        common = set(branches[0]).intersection(*branches[1:])
        out: dict[tuple[str, str], Any] = {}
        for k in common:
            payload = branches[0][k]
            for b in branches[1:]:
                payload = _join(k[0], payload, b[k])
            out[k] = payload
        return out
    return {}


def _meet(kind: str, a: Any, b: Any) -> Any:
    """Both tests hold (AND)."""
    if kind == "eq":
        return a & b
    if kind == "prefix":
        return a if len(a) <= len(b) else b
    low = b[0] if a[0] is None else a[0] if b[0] is None else max(a[0], b[0])
    high = b[1] if a[1] is None else a[1] if b[1] is None else min(a[1], b[1])
    return (low, high)


def _join(kind: str, a: Any, b: Any) -> Any:
    """Either test holds (OR)."""
    if kind in ("eq", "prefix"):
        return a | b
    low = None if a[0] is None or b[0] is None else min(a[0], b[0])
    high = None if a[1] is None or b[1] is None else max(a[1], b[1])
    return (low, high)


# -- code generation ------------------------------------------------------------------------------

class _Emitter:
    def __init__(self) -> None:
        self.namespace: dict[str, Any] = {"__builtins__": {}, "str": str}

    def bind(self, value: Any) -> str:
        name = f"m{len(self.namespace)}"
        self.namespace[name] = value
        return name

    def emit(self, node: Node) -> str:
        if isinstance(node, Leaf):
            get = f"g({node.field!r})"
            spec = node.spec
            fallback = self.bind(spec.match)
            if spec.exact and spec.keys is not None:
                # Inline the common case (a string value) and call the matcher for the rest.
                if len(spec.keys) == 1:
                    (only,) = spec.keys
                    test = f"_v.lower() == {only!r}"
                else:
                    test = f"_v.lower() in {self.bind(spec.keys)}"
                return f"({test} if (_v := {get}).__class__ is str else {fallback}(_v))"
            return f"{fallback}({get})"
        if isinstance(node, Keyword):
            return f"{self.bind(keyword_matcher(node.spec))}(event)"
        if isinstance(node, FieldRef):
            return f"{self.bind(node.test)}(g({node.field!r}), g({node.ref!r}))"
        if isinstance(node, And):
            return "(" + " and ".join(self.emit(i) for i in node.items) + ")"
        if isinstance(node, Or):
            return "(" + " or ".join(self.emit(i) for i in node.items) + ")"
        if isinstance(node, Not):
            return f"(not {self.emit(node.item)})"
        return "True" if node.value else "False"


def compile_predicate(rule: SigmaRule, logsource: Sequence[tuple[str, str]],
                      placeholders: Mapping[str, Sequence[str]], name: str = "rule") -> CompiledPredicate:
    """Compile ``rule`` (already filtered by pySigma) ANDed with its logsource tests."""
    _prepare(rule)
    builder = _Builder(placeholders)
    try:
        conditions = [builder.node(c.parse()) for c in rule.detection.parsed_condition]
    except SigmaError as exc:
        raise CompileError(_one_line(str(exc))) from None
    condition: Node = conditions[0] if len(conditions) == 1 else Or(list(conditions))
    tests: list[Node] = [Leaf(f, matcher_for(SigmaString(v))) for f, v in logsource]
    tree = _simplify(And([*tests, condition]))
    emitter = _Emitter()
    body = emitter.emit(tree)
    source = f"def predicate(event):\n    g = event.get\n    return {body}\n"
    try:
        code = compile(source, f"<sigma {name}>", "exec")
    except (SyntaxError, RecursionError, MemoryError) as exc:  # absurdly deep conditions
        raise CompileError(f"condition too complex to compile: {type(exc).__name__}") from None
    exec(code, emitter.namespace)  # noqa: S102 - our own generated source; values are bound, never inlined
    return CompiledPredicate(emitter.namespace["predicate"], necessary_tests(tree), source, builder.used)


def _one_line(text: str) -> str:
    return " ".join(text.split())
