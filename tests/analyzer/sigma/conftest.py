"""Helpers for the Sigma engine tests: inline rules in, exact detections out."""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from analyzer.sigma import Engine, RuleSet
from tests.analyzer.sigma.helpers import rule_yaml


@pytest.fixture
def load(tmp_path: Path) -> Callable[..., RuleSet]:
    """Write YAML texts to files (one per argument) and load them."""
    counter = iter(range(1_000_000))

    def _load(*texts: str, placeholders: Mapping[str, Sequence[str]] | None = None) -> RuleSet:
        paths = []
        for text in texts:
            path = tmp_path / f"rule_{next(counter)}.yml"
            path.write_text(textwrap.dedent(text))
            paths.append(path)
        return RuleSet.load(paths, placeholders or {})

    return _load


@pytest.fixture
def matches(load: Callable[..., RuleSet]) -> Callable[..., bool]:
    """Does the rule built from this detection block match this event?"""

    def _matches(detection: str, event: dict[str, Any], placeholders: Mapping[str, Sequence[str]] | None = None,
                 logsource: str = "product: icsmon") -> bool:
        ruleset = load(rule_yaml(detection, logsource), placeholders=placeholders)
        assert not ruleset.errors, [str(e) for e in ruleset.errors]
        detections = Engine(ruleset).match(event)
        assert len(detections) <= 1
        return bool(detections)

    return _matches
