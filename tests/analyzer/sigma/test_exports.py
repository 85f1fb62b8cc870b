"""The package's public names: what the rest of icsmon imports from analyzer.sigma."""

from __future__ import annotations

import analyzer.sigma


def test_curated_exports() -> None:
    assert sorted(analyzer.sigma.__all__) == [
        "Correlation", "Engine", "Rule", "RuleError", "RuleSet", "RuleWatcher", "event_time", "load_placeholders"]
    for name in analyzer.sigma.__all__:
        assert getattr(analyzer.sigma, name).__module__.startswith("analyzer.sigma.")
