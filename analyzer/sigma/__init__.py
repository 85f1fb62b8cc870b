"""icsmon's real-time Sigma engine.

* :class:`RuleSet` -- ``RuleSet.load(paths, placeholders)`` parses rules with pySigma and
  compiles each once; ``.rules``, ``.errors`` (:class:`RuleError`: file, rule id, reason),
  ``.warnings``.
* :class:`Engine` -- ``Engine(ruleset).match(event) -> list[Detection]``, correlations with
  bounded state, ``reload(ruleset)`` keeping the state of unchanged correlation rules, ``stats``.
* :mod:`analyzer.sigma.taxonomy` -- the icsmon logsource taxonomy; :mod:`analyzer.sigma.attack_ics`
  -- ATT&CK for ICS techniques and the tag check; :mod:`analyzer.sigma.pipeline` -- the pySigma
  processing pipeline for Elasticsearch (``sigma convert -p icsmon``); :mod:`analyzer.sigma.reload`
  -- hot reload on file change or SIGHUP.

Matching semantics, and where Elasticsearch queries differ: ``analyzer/sigma/SEMANTICS.md``.
"""

from analyzer.sigma.engine import Engine, event_time
from analyzer.sigma.loader import Correlation, Rule, RuleError, RuleSet, load_placeholders
from analyzer.sigma.reload import RuleWatcher

__all__ = ["Correlation", "Engine", "Rule", "RuleError", "RuleSet", "RuleWatcher", "event_time", "load_placeholders"]
