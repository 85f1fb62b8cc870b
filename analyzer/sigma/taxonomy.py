"""The icsmon logsource taxonomy: which Sigma ``logsource`` selects which icsmon events.

A Sigma rule names the events it looks at with ``logsource: {product, service, category}``.
icsmon's events all come from one product; the service is the industrial protocol and the
category the kind of record. Each logsource term is one equality test on an event field,
declared here once as data and used twice:

* the evaluator ANDs the tests into the rule's predicate and routes events to rules by them
  (:mod:`analyzer.sigma.index`), so a Modbus rule never looks at a DNP3 event;
* the pySigma processing pipeline (:mod:`analyzer.sigma.pipeline`) adds the same tests to the
  Elasticsearch queries it converts, so a converted rule selects the same stored documents.

``product: icsmon`` and ``product: ics`` are the same product (``ics`` is the generic name
rule authors outside the project use). A rule without ``product`` is accepted when its service
or category is one of ours; a rule for another product (``windows``, ``zeek``...) is refused
with a clear reason instead of silently matching nothing.

:data:`FIELD_ALIASES` maps generic Sigma network field names (``src_ip``, ``dst_port``...) onto
the event schema's ECS names, again for both the evaluator and the pipeline.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

__all__ = [
    "CATEGORIES", "FIELD_ALIASES", "PRODUCTS", "SERVICES", "LogsourceError", "LogsourceTests",
    "canonical_field", "logsource_tests", "markdown_reference",
]

PRODUCTS: tuple[str, ...] = ("icsmon", "ics")
"""Accepted ``logsource.product`` values; the first is the canonical one."""

SERVICES: dict[str, tuple[str, str, str]] = {
    # service: (field, value, meaning)
    "modbus": ("network.protocol", "modbus", "Modbus/TCP requests, responses and exceptions."),
    "dnp3": ("network.protocol", "dnp3", "DNP3 over TCP/UDP: link and application layer."),
    "s7comm": ("network.protocol", "s7comm", "Siemens S7comm (ISO-on-TCP): jobs, userdata, SZL reads."),
    "enip": ("network.protocol", "enip", "EtherNet/IP encapsulation: sessions, ListIdentity, CIP transport."),
    "cip": ("network.protocol", "enip", "CIP services (read/write tag, reset...): the `enip` dissector's events,"
            " CIP fields under `cip.*`."),
    "iec104": ("network.protocol", "iec104", "IEC 60870-5-104: APCI frames and ASDUs."),
    "bacnet": ("network.protocol", "bacnet", "BACnet/IP: BVLC, NPDU network messages and APDU services."),
}
"""``logsource.service`` -> the event test that selects it."""

CATEGORIES: dict[str, tuple[str, str, str]] = {
    "flow": ("event.dataset", "icsmon.conn", "Connection records: start and end of every flow."),
    "network_connection": ("event.dataset", "icsmon.conn", "Alias of `flow` (the Sigma generic name)."),
    "decode_error": ("event.dataset", "icsmon.decode_error", "Malformed traffic the decoder refused."),
    "summary": ("event.dataset", "icsmon.summary", "Folded routine polling (volume control)."),
    "asset_change": ("event.dataset", "icsmon.asset", "Asset inventory changes: new device, new role,"
                     " firmware or identity change."),
}
"""``logsource.category`` -> the event test that selects it."""

FIELD_ALIASES: dict[str, str] = {
    # Generic Sigma network taxonomy names -> icsmon (ECS) names.
    "src_ip": "source.ip",
    "dst_ip": "destination.ip",
    "src_port": "source.port",
    "dst_port": "destination.port",
    "SourceIp": "source.ip",
    "DestinationIp": "destination.ip",
    "SourcePort": "source.port",
    "DestinationPort": "destination.port",
    "protocol": "network.protocol",
}
"""Field names rules may use besides the event schema's own, and what they mean."""


class LogsourceError(ValueError):
    """A rule's logsource is not part of the icsmon taxonomy."""


@dataclass(frozen=True, slots=True)
class LogsourceTests:
    """The equality tests a logsource stands for, e.g. ``(("network.protocol", "modbus"),)``."""

    tests: tuple[tuple[str, str], ...]

    @property
    def route(self) -> tuple[str, str] | None:
        """The test the evaluator routes events by: the service if given, else the category."""
        return self.tests[0] if self.tests else None


def logsource_tests(product: str | None, service: str | None, category: str | None) -> LogsourceTests:
    """The tests for a rule's logsource; raises :class:`LogsourceError` outside the taxonomy."""
    product = product.lower() if product else None
    service = service.lower() if service else None
    category = category.lower() if category else None
    if product is not None and product not in PRODUCTS:
        raise LogsourceError(f"logsource product {product!r} is not icsmon's (use product: icsmon)")
    tests: list[tuple[str, str]] = []
    if service is not None:
        if service not in SERVICES:
            raise LogsourceError(f"unknown logsource service {service!r} (known: {', '.join(SERVICES)})")
        field, value, _ = SERVICES[service]
        tests.append((field, value))
    if category is not None:
        if category not in CATEGORIES:
            raise LogsourceError(f"unknown logsource category {category!r} (known: {', '.join(CATEGORIES)})")
        field, value, _ = CATEGORIES[category]
        tests.append((field, value))
    if product is None and not tests:
        raise LogsourceError("logsource names no product, service or category (use product: icsmon)")
    return LogsourceTests(tuple(tests))


def canonical_field(name: str, aliases: Mapping[str, str] = FIELD_ALIASES) -> str:
    """The event field a rule's field name stands for (aliases resolved, otherwise unchanged)."""
    return aliases.get(name, name)


def markdown_reference() -> str:
    """The taxonomy as Markdown tables (for SEMANTICS.md and ``icsmon rules`` help)."""
    lines = ["| logsource | selects events with | meaning |", "|---|---|---|",
             f"| `product: {PRODUCTS[0]}` (or `{PRODUCTS[1]}`) | (all events) | Every icsmon event. |"]
    lines += [f"| `service: {s}` | `{f}: {v}` | {doc} |" for s, (f, v, doc) in SERVICES.items()]
    lines += [f"| `category: {c}` | `{f}: {v}` | {doc} |" for c, (f, v, doc) in CATEGORIES.items()]
    lines += ["", "| rule field | event field |", "|---|---|"]
    lines += [f"| `{a}` | `{f}` |" for a, f in FIELD_ALIASES.items()]
    return "\n".join(lines) + "\n"
