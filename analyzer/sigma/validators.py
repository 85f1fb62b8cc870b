"""pySigma validators for icsmon rules: offline, ATT&CK for ICS aware.

Registered by the pySigma plugin (``analyzer/sigma/plugin``) so that plain ``sigma check``
reports them:

``attacktag``        replaces pySigma's own ATT&CK tag check (same identifier), which downloads the
                     Enterprise ATT&CK matrix at run time (it fails offline, and flags every
                     ICS tag). Ours checks ``attack.*`` tags against ATT&CK for ICS, offline.
``d3_fendtag``       replaces pySigma's D3FEND check (another download): D3FEND tags are
                     accepted by form only.
``icsmon_logsource`` the rule's logsource is in the icsmon taxonomy.
``icsmon_field``     every field a rule tests exists in the icsmon event schema (or is an alias).

:data:`OFFLINE_VALIDATORS` is the same set for code that builds a ``SigmaValidator`` itself;
``validators`` (the mapping pySigma's plugin discovery reads) maps the identifiers above.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar

from sigma.correlations import SigmaCorrelationRule
from sigma.rule import SigmaDetectionItem, SigmaRule, SigmaRuleTag
from sigma.validators.base import (
    SigmaDetectionItemValidator,
    SigmaRuleValidator,
    SigmaTagValidator,
    SigmaValidationIssue,
    SigmaValidationIssueSeverity,
)

from analyzer.sigma.attack_ics import check_tags
from analyzer.sigma.taxonomy import FIELD_ALIASES, SERVICES, LogsourceError, logsource_tests

__all__ = [
    "IcsAttackTagValidator", "IcsmonFieldValidator", "IcsmonLogsourceValidator", "InvalidIcsAttackTagIssue",
    "OFFLINE_VALIDATORS", "OfflineD3fendTagValidator", "UnknownIcsmonFieldIssue", "UnknownIcsmonLogsourceIssue",
    "validators",
]


@dataclass
class InvalidIcsAttackTagIssue(SigmaValidationIssue):
    description: ClassVar[str] = "Invalid or deprecated ATT&CK for ICS tag"
    severity: ClassVar[SigmaValidationIssueSeverity] = SigmaValidationIssueSeverity.MEDIUM
    tag: SigmaRuleTag
    reason: str = ""


class IcsAttackTagValidator(SigmaTagValidator):
    """Check ``attack.*`` tags against the ATT&CK for ICS matrix (offline)."""

    def validate_tag(self, tag: SigmaRuleTag) -> list[SigmaValidationIssue]:
        if tag.namespace != "attack":
            return []
        problems = check_tags([str(tag)]).problems
        return [InvalidIcsAttackTagIssue([self.rule], tag, problems[0])] if problems else []


@dataclass
class InvalidD3fendTagFormatIssue(SigmaValidationIssue):
    description: ClassVar[str] = "D3FEND tag is not of the form d3fend.d3-<technique>"
    severity: ClassVar[SigmaValidationIssueSeverity] = SigmaValidationIssueSeverity.LOW
    tag: SigmaRuleTag


class OfflineD3fendTagValidator(SigmaTagValidator):
    """D3FEND tags by form only (pySigma's check downloads the D3FEND ontology)."""

    _FORM = re.compile(r"(d3-[a-z0-9-]+|d3f-[a-z0-9-]+|[a-z][a-z-]*)")

    def validate_tag(self, tag: SigmaRuleTag) -> list[SigmaValidationIssue]:
        if tag.namespace == "d3fend" and not self._FORM.fullmatch(tag.name):
            return [InvalidD3fendTagFormatIssue([self.rule], tag)]
        return []


@dataclass
class UnknownIcsmonLogsourceIssue(SigmaValidationIssue):
    description: ClassVar[str] = "Logsource is not part of the icsmon taxonomy"
    severity: ClassVar[SigmaValidationIssueSeverity] = SigmaValidationIssueSeverity.HIGH
    reason: str


class IcsmonLogsourceValidator(SigmaRuleValidator):
    """The rule's logsource is one of icsmon's (product icsmon/ics, known service or category)."""

    def validate(self, rule: SigmaRule | SigmaCorrelationRule) -> list[SigmaValidationIssue]:
        if not isinstance(rule, SigmaRule):
            return []
        ls = rule.logsource
        try:
            logsource_tests(ls.product, ls.service, ls.category)
        except LogsourceError as exc:
            return [UnknownIcsmonLogsourceIssue([rule], str(exc))]
        return []


@dataclass
class UnknownIcsmonFieldIssue(SigmaValidationIssue):
    description: ClassVar[str] = "Field is not in the icsmon event schema"
    severity: ClassVar[SigmaValidationIssueSeverity] = SigmaValidationIssueSeverity.MEDIUM
    field: str


class IcsmonFieldValidator(SigmaDetectionItemValidator):
    """Every tested field exists in the event schema (``icsmon schema``) or is a known alias."""

    def __init__(self) -> None:
        self._known: frozenset[str] | None = None
        self._reported: set[tuple[int, str]] = set()

    def known(self) -> frozenset[str]:
        if self._known is None:
            from sensor.schema import COMMON_FIELDS, field_names

            try:
                names = field_names()
            except Exception:  # noqa: BLE001 - a broken dissector module must not break `sigma check`
                names = frozenset(f.name for f in COMMON_FIELDS)
                self._lenient = True
            self._known = names | frozenset(FIELD_ALIASES)
        return self._known

    _lenient = False  # protocol fields could not be listed: accept any field of a known protocol namespace

    def validate_detection_item(self, detection_item: SigmaDetectionItem) -> list[SigmaValidationIssue]:
        name = detection_item.field
        if name is None or name in self.known():
            return []
        if self._lenient and name.split(".", 1)[0] in SERVICES:
            return []
        mark = (id(self.rule), name)
        if mark in self._reported:
            return []
        self._reported.add(mark)
        return [UnknownIcsmonFieldIssue([self.rule], name)]


validators: dict[str, type[SigmaRuleValidator]] = {
    "attacktag": IcsAttackTagValidator,  # pySigma's identifier for its (downloading) ATT&CK check
    "d3_fendtag": OfflineD3fendTagValidator,  # ... and for its D3FEND check
    "icsmon_logsource": IcsmonLogsourceValidator,
    "icsmon_field": IcsmonFieldValidator,
}
"""Identifier -> validator class, as pySigma's plugin discovery expects."""

OFFLINE_VALIDATORS: tuple[type[SigmaRuleValidator], ...] = tuple(validators.values())
