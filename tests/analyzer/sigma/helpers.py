"""Shared helpers of the Sigma engine tests (fixtures live in conftest.py)."""

from __future__ import annotations

import textwrap
from pathlib import Path

RULES = Path(__file__).parent / "rules"
EWS = {"engineering_workstations": ["10.0.0.5", "10.0.0.6"]}


def rule_yaml(detection: str, logsource: str = "product: icsmon", extra: str = "", title: str = "test rule",
              rule_id: str = "00000000-0000-4000-8000-000000000001") -> str:
    """A complete rule around a detection block (given without the ``detection:`` key)."""
    return (f"title: {title}\nid: {rule_id}\nstatus: test\nlogsource:\n  {logsource}\n"
            f"detection:\n{textwrap.indent(textwrap.dedent(detection).strip(), '  ')}\nlevel: medium\n{extra}")
