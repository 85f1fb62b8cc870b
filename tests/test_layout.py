"""The product layout and its guard rails: folders, import direction, banned APIs."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("sensor", "analyzer", "api")
# Which packages each package may import from.
ALLOWED = {"sensor": {"sensor"}, "analyzer": {"sensor", "analyzer"}, "api": {"sensor", "analyzer", "api"}}
# Modules that may use scapy: demo traffic generation only (never the per-packet path).
SCAPY_ALLOWED = {"sensor/demo.py"}


def python_files(package: str) -> list[Path]:
    return sorted((REPO / package).rglob("*.py"))


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_top_level_layout() -> None:
    for folder in ("sensor", "rules", "analyzer", "api", "tests", "deploy"):
        assert (REPO / folder).is_dir(), folder
    for package in PACKAGES:
        assert (REPO / package / "__init__.py").is_file(), package


def test_imports_point_one_way() -> None:
    for package in PACKAGES:
        for path in python_files(package):
            for module in imported_modules(path):
                top = module.split(".")[0]
                if top in PACKAGES:
                    assert top in ALLOWED[package], f"{path.relative_to(REPO)} imports {module}"


def test_no_scapy_or_pyshark_in_the_packet_path() -> None:
    for package in PACKAGES:
        for path in python_files(package):
            rel = path.relative_to(REPO).as_posix()
            tops = {m.split(".")[0] for m in imported_modules(path)}
            assert "pyshark" not in tops, rel
            if rel not in SCAPY_ALLOWED:
                assert "scapy" not in tops, rel


def test_no_print_outside_the_cli() -> None:
    for package in PACKAGES:
        for path in python_files(package):
            rel = path.relative_to(REPO).as_posix()
            if rel in ("api/cli.py", "sensor/bench.py"):
                continue
            tree = ast.parse(path.read_text())
            calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)
                     and isinstance(n.func, ast.Name) and n.func.id == "print"]
            assert not calls, f"{rel} prints; report through return values or the CLI"
