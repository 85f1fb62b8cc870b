"""Every module under sensor/protocols registers exactly one dissector, with its test and docs."""

from __future__ import annotations

import pkgutil
from pathlib import Path

import sensor.protocols
from sensor.dissect import OPERATIONS, Dissector
from sensor.protocols import registry
from sensor.schema import COMMON_FIELDS

REPO = Path(__file__).resolve().parents[3]


def module_names() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(sensor.protocols.__path__))


def test_every_module_exports_one_dissector() -> None:
    names = module_names()
    assert names, "no protocol modules found"
    found = registry()
    assert len(found) == len(names)
    for name in names:
        module = __import__(f"sensor.protocols.{name}", fromlist=["DISSECTOR"])
        exported = [v for v in vars(module).values() if isinstance(v, Dissector)]
        assert exported == [module.DISSECTOR], f"{name}.py must export exactly one Dissector, as DISSECTOR"


def test_every_protocol_has_its_test_module() -> None:
    for name in module_names():
        assert (REPO / "tests" / "sensor" / "protocols" / f"test_{name}.py").is_file(), name


def test_operations_use_the_closed_vocabulary() -> None:
    for dissector in registry().values():
        assert dissector.operations, f"{dissector.name}: operation table is empty"
        unknown = set(dissector.operations.values()) - set(OPERATIONS)
        assert not unknown, f"{dissector.name}: operations outside the vocabulary: {unknown}"


EXTRA_NAMESPACES = {"enip": ("cip.",)}
"""Dissectors that carry a second protocol's namespace: EtherNet/IP transports CIP."""


def test_protocol_fields_live_in_their_namespace() -> None:
    common = {f.name for f in COMMON_FIELDS}
    for dissector in registry().values():
        prefixes = (dissector.name + ".", *EXTRA_NAMESPACES.get(dissector.name, ()))
        for field in dissector.fields:
            assert field.name.startswith(prefixes), field.name
            assert field.name not in common
            assert field.doc, f"{field.name} has no documentation"


def test_ports_are_valid() -> None:
    for dissector in registry().values():
        for port in dissector.tcp_ports | dissector.udp_ports:
            assert 0 < port < 65536
        assert dissector.tcp_ports or dissector.udp_ports, dissector.name
