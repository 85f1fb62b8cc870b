"""The icsmon pySigma processing pipeline: Sigma rules -> queries over the stored events.

Stored icsmon events live in the Elasticsearch indices ``icsmon-events-*`` with the same dotted
field names the rules use (the schema in :mod:`sensor.schema` generates their mappings). The
pipeline therefore does little, and exactly what the evaluator does:

* ``product: ics`` is the same as ``product: icsmon``;
* each logsource ``service``/``category`` of the taxonomy adds its equality test
  (``network.protocol: modbus``, ``event.dataset: icsmon.conn``), as the evaluator ANDs it;
* generic field names are mapped onto the schema (:data:`~analyzer.sigma.taxonomy.FIELD_ALIASES`);
* ``%placeholders%`` of the ``expand`` modifier are replaced by the configured value lists
  (``vars``; pass them here or add a second pipeline file with ``vars:``);
* the ES|QL index is ``icsmon-events-*`` (pipeline state ``index``);
* a rule whose logsource is outside the taxonomy fails conversion with a clear message.

It is registered as the pySigma plugin pipeline ``icsmon`` (see ``analyzer/sigma/plugin``), so
``sigma convert -t lucene -p icsmon rules/`` and ``-t esql`` work with plain sigma-cli, offline.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from sigma.correlations import SigmaCorrelationRule
from sigma.processing.conditions import LogsourceCondition
from sigma.processing.pipeline import ProcessingItem, ProcessingPipeline
from sigma.processing.transformations import (
    AddConditionTransformation,
    FieldMappingTransformation,
    RuleFailureTransformation,
    SetStateTransformation,
    ValueListPlaceholderTransformation,
)
from sigma.rule import SigmaDetection, SigmaDetectionItem, SigmaRule
from sigma.types import (
    SigmaCasedString,
    SigmaCIDRExpression,
    SigmaCompareExpression,
    SigmaExpansion,
    SigmaFieldReference,
    SigmaRegularExpression,
    SigmaString,
)

from analyzer.sigma.taxonomy import CATEGORIES, FIELD_ALIASES, PRODUCTS, SERVICES, canonical_field

if TYPE_CHECKING:
    from sensor.schema import Field

__all__ = ["BACKENDS", "EVENT_INDEX", "LOWERCASE_FIELDS", "conversion_notes", "icsmon_pipeline"]

EVENT_INDEX = "icsmon-events-*"
"""Indices holding stored events (what an ES|QL query reads FROM)."""
BACKENDS = ("elasticsearch", "lucene", "esql", "eql", "elastalert", "opensearch")
"""pySigma backend identifiers the pipeline is meant for (all query the same indices)."""


def icsmon_pipeline(placeholders: Mapping[str, Sequence[str]] | None = None) -> ProcessingPipeline:
    """The ``icsmon`` pipeline; ``placeholders`` become its ``vars`` (name -> list of values)."""
    items: list[ProcessingItem] = []
    # Refuse what the taxonomy does not know (the evaluator refuses the same rules).
    known = ([LogsourceCondition(product=p) for p in PRODUCTS] + [LogsourceCondition(service=s) for s in SERVICES]
             + [LogsourceCondition(category=c) for c in CATEGORIES])
    items.append(ProcessingItem(
        identifier="icsmon_unknown_logsource",
        transformation=RuleFailureTransformation("rule logsource is not part of the icsmon taxonomy"
                                                 " (product: icsmon, services and categories in SEMANTICS.md)"),
        rule_conditions=known, rule_condition_linking=any, rule_condition_negation=True))
    for service, (field, value, _doc) in SERVICES.items():
        items.append(ProcessingItem(identifier=f"icsmon_service_{service}",
                                    transformation=AddConditionTransformation({field: value}),
                                    rule_conditions=[LogsourceCondition(service=service)]))
    for category, (field, value, _doc) in CATEGORIES.items():
        items.append(ProcessingItem(identifier=f"icsmon_category_{category}",
                                    transformation=AddConditionTransformation({field: value}),
                                    rule_conditions=[LogsourceCondition(category=category)]))
    items += [
        ProcessingItem(identifier="icsmon_field_aliases", transformation=FieldMappingTransformation(
            dict(FIELD_ALIASES))),
        ProcessingItem(identifier="icsmon_placeholders", transformation=ValueListPlaceholderTransformation()),
        ProcessingItem(identifier="icsmon_index", transformation=SetStateTransformation("index", EVENT_INDEX)),
    ]
    return ProcessingPipeline(
        name="icsmon: icsmon events in Elasticsearch (icsmon-events-*)",
        priority=20,
        allowed_backends=frozenset(BACKENDS),
        items=items,
        vars={k: [str(v) for v in vs] for k, vs in (placeholders or {}).items()},
    )


# -- where a converted query may differ from the engine --------------------------------------------

LOWERCASE_FIELDS = frozenset({
    "ics.operation", "ics.role", "network.protocol", "network.transport", "network.type", "network.direction",
    "event.dataset", "event.action", "event.kind", "event.outcome", "event.type", "event.category", "observer.type",
    "observer.product",
})
"""Fields whose values icsmon always emits in lower case (plus ``*.function``/``*.service``/``*.exception``
names, snake_case by the schema, and ``*.anomaly`` codes): lower-case rule values on them compare the same in
Elasticsearch."""
_LOWERCASE_SUFFIXES = (".function", ".service", ".exception", ".subfunction", ".anomaly")


def _schema_fields() -> tuple[Field, ...]:
    try:
        from sensor.schema import all_fields

        return all_fields()
    except Exception:  # noqa: BLE001 - a dissector being edited must not stop a conversion
        from sensor.schema import COMMON_FIELDS

        return tuple(COMMON_FIELDS)


def conversion_notes(rule: SigmaRule | SigmaCorrelationRule, target: str) -> list[str]:
    """Why the query converted for ``target`` may select other events than the engine matches.

    An empty list means the conversion is exact for icsmon's data; otherwise ``icsmon rules
    convert`` labels the query *approximate* and prints these lines (see SEMANTICS.md).
    """
    notes: list[str] = []

    def add(note: str) -> None:
        if note not in notes:
            notes.append(note)

    if isinstance(rule, SigmaCorrelationRule):
        kind = rule.type.name.lower()
        if target == "esql":
            add("correlation: ES|QL counts in fixed time buckets (date_trunc), the engine in a sliding window")
            if kind == "temporal_ordered":
                add("correlation: ES|QL has no ordered sequences (temporal_ordered cannot be converted)")
        elif target == "eql" and kind == "temporal":
            add("correlation: the EQL sample query pairs the events however far apart they are, the engine only"
                " within the timespan")
        elif target != "eql":
            add(f"correlation: the {target} backend has no correlation support")
        return notes
    fields = _schema_fields()
    types = {f.name: f.type for f in fields}
    arrays = {f.name for f in fields if f.array}
    for item in _detection_items(rule):
        field = canonical_field(item.field) if item.field else None
        for value in item.value:
            values = value.values if isinstance(value, SigmaExpansion) else [value]
            for v in values:
                if target == "esql" and field in arrays and (
                        isinstance(v, (SigmaRegularExpression, SigmaCIDRExpression))
                        or isinstance(v, SigmaString) and v.contains_special()):
                    add(f"{field}: several values in one field: ES|QL takes a pattern, regular expression or"
                        " CIDR test on them as null, the engine tests each value")
                if field is None:
                    add("keywords: searched in every field here, as free text in Elasticsearch")
                elif isinstance(v, SigmaCasedString):
                    add(f"{field}: case-sensitive matching (cased) is not supported by the Elasticsearch backends")
                elif isinstance(v, SigmaString) and types.get(field) != "ip":
                    text = "".join(p for p in v.s if isinstance(p, str))  # placeholders: values come later
                    lower_vocab = field in LOWERCASE_FIELDS or field.endswith(_LOWERCASE_SUFFIXES)
                    if any(c.isalpha() for c in text) and not (lower_vocab and text == text.lower()):
                        add(f"{field}: strings match case-insensitively here, case-sensitively in Elasticsearch")
                elif isinstance(v, SigmaRegularExpression):
                    add(f"{field}: regular expressions search here, match the whole value in Elasticsearch"
                        " (Lucene syntax, no inline flags)")
                elif isinstance(v, SigmaFieldReference) and target == "lucene":
                    add(f"{field}: field references cannot be expressed in Lucene")
                elif isinstance(v, SigmaCompareExpression) and types.get(field) in ("keyword", "text"):
                    add(f"{field}: numeric comparison of a text field compares text in Elasticsearch")
    return notes


def _detection_items(rule: SigmaRule) -> list[SigmaDetectionItem]:
    out: list[SigmaDetectionItem] = []

    def walk(node: SigmaDetection | SigmaDetectionItem) -> None:
        if isinstance(node, SigmaDetection):
            for child in node.detection_items:
                walk(child)
        else:
            out.append(node)

    for detection in rule.detection.detections.values():
        walk(detection)
    return out
