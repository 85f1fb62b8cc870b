"""The pySigma plugin: plain sigma-cli finds the icsmon pipeline and validators, and works offline.

sigma-cli runs in a subprocess with every proxy variable pointing at a closed port and an empty
HOME (no cached MITRE data): any download attempt fails, so a passing ``sigma check`` on rules
tagged ``attack.t08nn`` proves the downloading validators are replaced. The plugin directory is
appended to ``sys.path`` (after site-packages, where an installed plugin sits next to pySigma's
own validators), so the test does not depend on ``pip install ./analyzer/sigma/plugin``; a
second test runs the installed ``sigma`` command when the plugin is installed.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from analyzer.sigma.validators import OFFLINE_VALIDATORS, validators
from tests.analyzer.sigma.helpers import RULES, rule_yaml

PLUGIN = Path(__file__).resolve().parents[3] / "analyzer" / "sigma" / "plugin"
OFFLINE = {name: "http://127.0.0.1:9" for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy",
                                                    "https_proxy", "all_proxy")}


def sigma(*args: str, cwd: Path, installed: bool = False) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **OFFLINE, "HOME": str(cwd), "NO_PROXY": "", "no_proxy": "", "COLUMNS": "200"}
    if installed:
        exe = shutil.which("sigma")
        assert exe is not None
        command = [exe, *args]
    else:
        bootstrap = ("import sys; sys.path.append(sys.argv.pop(1)); sys.argv[0] = 'sigma';"
                     " from sigma.cli.main import main; main()")
        command = [sys.executable, "-c", bootstrap, str(PLUGIN), *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "vars.yml").write_text("name: placeholders\npriority: 10\nvars:\n"
                                       "  engineering_workstations: [10.0.0.5, 10.0.0.6]\n")
    return tmp_path


def test_sigma_lists_the_icsmon_pipeline_and_validators(workdir: Path) -> None:
    result = sigma("list", "pipelines", cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert "icsmon: icsmon events in Elasticsearch (icsmon-events-*)" in result.stdout
    result = sigma("list", "validators", cwd=workdir)
    assert "icsmon_logsource" in result.stdout and "icsmon_field" in result.stdout
    assert "ATT&CK for ICS" in result.stdout  # our attacktag validator replaced pySigma's


def test_sigma_convert_lucene_with_the_icsmon_pipeline(workdir: Path) -> None:
    rule = RULES / "modbus_write_not_from_engineering_station.yml"
    result = sigma("convert", "-t", "lucene", "-p", "icsmon", "-p", "vars.yml", str(rule),
                   str(RULES / "filter_lab_network.yml"), cwd=workdir)
    assert result.returncode == 0, result.stderr + result.stdout
    assert result.stdout.strip().splitlines()[-1] == (
        r"network.protocol:modbus AND (((ics.operation:write AND ics.role:request) AND "
        r"(NOT (source.ip:(10.0.0.5 OR 10.0.0.6)))) AND (NOT source.ip:192.168.250.0\/24))")


def test_sigma_convert_esql_correlation(workdir: Path) -> None:
    result = sigma("convert", "-t", "esql", "-p", "icsmon", str(RULES / "modbus_unit_id_sweep.yml"), cwd=workdir)
    assert result.returncode == 0, result.stderr + result.stdout
    assert ("from icsmon-events-* metadata _id, _index, _version | where network.protocol==\"modbus\" and "
            "ics.role==\"request\"") in result.stdout
    assert "| where value_count > 20" in result.stdout


def test_sigma_convert_without_placeholder_values_fails_clearly(workdir: Path) -> None:
    result = sigma("convert", "-t", "lucene", "-p", "icsmon",
                   str(RULES / "modbus_write_not_from_engineering_station.yml"), cwd=workdir)
    assert result.returncode != 0
    assert "engineering_workstations" in result.stdout + result.stderr


def test_sigma_check_is_offline_and_knows_attack_for_ics(workdir: Path) -> None:
    result = sigma("check", str(RULES), cwd=workdir)
    assert result.returncode == 0, result.stderr + result.stdout
    assert "Found 0 errors, 0 condition errors" in result.stdout
    assert "InvalidIcsAttackTagIssue" not in result.stdout  # t0855, t0843... are valid ICS techniques
    assert "UnknownIcsmon" not in result.stdout


def test_sigma_check_reports_icsmon_problems(workdir: Path) -> None:
    bad = workdir / "rules"
    bad.mkdir()
    (bad / "enterprise_tag_and_unknown_field.yml").write_text(rule_yaml(
        "sel:\n  modbus.functoin: write_single_coil\ncondition: sel", "service: modbus",
        extra="tags:\n  - attack.t1059\n  - attack.impair-process-control\n"))
    (bad / "windows_rule.yml").write_text(rule_yaml(
        "sel:\n  EventID: 4688\ncondition: sel", "product: windows", rule_id="00000000-0000-4000-8000-000000000002"))
    result = sigma("check", str(bad), cwd=workdir)
    out = result.stdout
    assert "InvalidIcsAttackTagIssue" in out and "T1059 is not an ATT&CK for ICS technique" in out
    assert "UnknownIcsmonFieldIssue" in out and "modbus.functoin" in out
    assert "UnknownIcsmonLogsourceIssue" in out and "logsource product 'windows' is not icsmon's" in out


def test_installed_plugin_works_with_the_plain_sigma_command(workdir: Path) -> None:
    assert importlib.util.find_spec("sigma.pipelines.icsmon") is not None, \
        "icsmon pySigma plugin not installed: pip install ./analyzer/sigma/plugin (deploy/test.sh does)"
    result = sigma("check", str(RULES), cwd=workdir, installed=True)
    assert result.returncode == 0 and "Found 0 errors, 0 condition errors" in result.stdout
    result = sigma("list", "pipelines", cwd=workdir, installed=True)
    assert "icsmon" in result.stdout


def test_validators_mapping_replaces_the_downloading_checks() -> None:
    assert set(validators) == {"attacktag", "d3_fendtag", "icsmon_logsource", "icsmon_field"}
    assert all(v.__module__ == "analyzer.sigma.validators" for v in OFFLINE_VALIDATORS)
