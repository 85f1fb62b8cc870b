"""The icsmon event schema: every field an event may carry, declared once.

Events are flat dictionaries keyed by dotted ECS-style names (``source.ip``,
``modbus.function``); Elasticsearch expands the dots into objects on ingest and
Sigma rules address the same dotted names. This module is the single source
for:

* the Elasticsearch mappings (:func:`elasticsearch_mapping`),
* the field reference in ``sensor/EVENTS.md`` (:func:`markdown_reference`),
* the list of field names a rule linter accepts (:func:`field_names`).

Common fields are declared here; each protocol module declares its own
namespace in its ``DISSECTOR.fields`` and :func:`all_fields` merges them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

FieldType = Literal[
    "keyword", "text", "ip", "date", "long", "integer", "short", "byte", "float", "double",
    "boolean", "object",
]


@dataclass(frozen=True, slots=True)
class Field:
    """One event field: its dotted name, Elasticsearch type and meaning."""

    name: str
    type: FieldType
    doc: str
    array: bool = False  # the value is a list of ``type``

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "doc": self.doc, "array": self.array}


# Values of ``event.dataset`` for the records the sensor itself produces.
DATASET_CONN = "icsmon.conn"
DATASET_DECODE_ERROR = "icsmon.decode_error"
DATASET_SUMMARY = "icsmon.summary"

COMMON_FIELDS: tuple[Field, ...] = (
    Field("@timestamp", "date", "Time the packet that produced the event was captured (UTC)."),
    Field("event.kind", "keyword", "ECS kind: `event` for observations, `alert` for detections."),
    Field("event.category", "keyword", "ECS categories, always including `network`.", array=True),
    Field("event.type", "keyword", "ECS types: `connection`, `start`, `end`, `protocol`, `error`, `info`.",
          array=True),
    Field("event.dataset", "keyword", "Record type: `icsmon.conn`, `icsmon.decode_error`, `icsmon.summary`"
          " (folded polling), or `icsmon.<protocol>` for protocol events."),
    Field("event.action", "keyword", "What happened, e.g. `connection-start`, `read_holding_registers`."),
    Field("event.outcome", "keyword", "`success`, `failure` or `unknown` where the protocol says."),
    Field("event.sequence", "long", "Monotonic sequence number of the event within one sensor run."),
    Field("event.duration", "long", "Duration in nanoseconds (connection end events)."),
    Field("event.start", "date", "First packet of the flow."),
    Field("event.end", "date", "Last packet of the flow."),
    Field("event.reason", "keyword", "Why a connection ended, or why a decode error was raised."),
    Field("source.ip", "ip", "Address of the flow's initiator (the client, e.g. an HMI)."),
    Field("source.port", "integer", "Transport port of the initiator."),
    Field("source.mac", "keyword", "MAC address of the initiator, as seen on the monitored segment."),
    Field("source.bytes", "long", "Payload bytes sent by the initiator (connection end)."),
    Field("source.packets", "long", "Packets sent by the initiator (connection end)."),
    Field("destination.ip", "ip", "Address of the responder (the server, e.g. a PLC)."),
    Field("destination.port", "integer", "Transport port of the responder."),
    Field("destination.mac", "keyword", "MAC address of the responder."),
    Field("destination.bytes", "long", "Payload bytes sent by the responder (connection end)."),
    Field("destination.packets", "long", "Packets sent by the responder (connection end)."),
    Field("network.transport", "keyword", "`tcp`, `udp` or `icmp`/`ipv6-icmp`."),
    Field("network.type", "keyword", "`ipv4` or `ipv6`."),
    Field("network.protocol", "keyword", "Application protocol identified on the flow, e.g. `modbus`."),
    Field("network.community_id", "keyword", "Community ID v1 flow hash, comparable with Zeek and Suricata."),
    Field("network.vlan.id", "keyword", "Outer 802.1Q VLAN id, if tagged."),
    Field("network.inner.vlan.id", "keyword", "Inner VLAN id of a QinQ frame."),
    Field("network.bytes", "long", "Payload bytes in both directions (connection end)."),
    Field("network.packets", "long", "Packets in both directions (connection end)."),
    Field("network.direction", "keyword", "For protocol events: `to_server` or `to_client`."),
    Field("observer.id", "keyword", "Identifier of the sensor that saw the traffic."),
    Field("observer.hostname", "keyword", "Host name of the sensor."),
    Field("observer.ingress.interface.name", "keyword", "Interface or capture file the packet came from."),
    Field("observer.type", "keyword", "Always `sensor`."),
    Field("observer.product", "keyword", "Always `icsmon`."),
    Field("icsmon.flow.history", "keyword", "Connection state history: S syn, A syn-ack, D data,"
          " F fin, R rst; upper case from the client, lower case from the server."),
    Field("icsmon.flow.missed_bytes", "long", "Bytes the reassembler never saw (capture loss)."),
    Field("icsmon.flow.midstream", "boolean", "The flow was picked up without its handshake."),
    Field("icsmon.flow.state", "keyword", "Final TCP state: `closed` (FIN both ways), `reset`, `timeout`,"
          " `evicted`, `end_of_capture`."),
    Field("icsmon.packet", "long", "Number of the packet whose arrival produced this protocol event or decode"
          " error, 1-based in capture order over all inputs of the run (for one file: Wireshark's"
          " frame.number, Suricata's pcap_cnt)."),
    Field("icsmon.summary.count", "long", "Protocol events folded into this summary (volume settings)."),
    Field("icsmon.summary.requests", "long", "How many of the folded events were requests."),
    Field("icsmon.summary.responses", "long", "How many of the folded events were responses."),
    Field("icsmon.summary.errors", "long", "How many of the folded events were errors or anomalies."),
    Field("icsmon.summary.interval", "double", "Seconds of capture time one summary covers at most."),
    Field("icsmon.summary.values_min", "double", "Smallest value (`ics.values`) among the folded events."),
    Field("icsmon.summary.values_max", "double", "Largest value (`ics.values`) among the folded events."),
    Field("icsmon.error.layer", "keyword", "Layer of a decode error: `link`, `network`, `transport`,"
          " or a protocol name."),
    Field("icsmon.error.offset", "long", "Byte offset of the decode error within the layer's data."),
    Field("icsmon.error.count", "long", "How many times this reason was seen (rate-limited decode errors)."),
    # Cross-protocol vocabulary, filled by every protocol dissector.
    Field("ics.operation", "keyword", "Normalised operation: read, write, program_download, ... (see docs)."),
    Field("ics.function", "keyword", "The protocol's own name for the function."),
    Field("ics.role", "keyword", "`request`, `response` or `unsolicited`."),
    Field("ics.status", "keyword", "`ok` or the protocol's error/exception name."),
    Field("ics.unit", "keyword", "Unit id / slave address / rack-slot / common address."),
    Field("ics.address_start", "long", "First address the operation touches."),
    Field("ics.address_count", "long", "Number of addresses (coils, registers, points) touched."),
    Field("ics.values", "double", "Numeric values carried by the message.", array=True),
    Field("ics.tag", "keyword", "Stable per-device point identifier, e.g. `hr:40001`.", array=True),
)

_ES_TYPES: dict[FieldType, dict[str, Any]] = {
    "keyword": {"type": "keyword", "ignore_above": 1024},
    "text": {"type": "text"},
    "ip": {"type": "ip"},
    "date": {"type": "date", "format": "strict_date_optional_time||epoch_millis"},
    "long": {"type": "long"},
    "integer": {"type": "integer"},
    "short": {"type": "short"},
    "byte": {"type": "byte"},
    "float": {"type": "float"},
    "double": {"type": "double"},
    "boolean": {"type": "boolean"},
    "object": {"type": "object", "enabled": False},
}


def all_fields() -> tuple[Field, ...]:
    """Common fields followed by every registered protocol's fields."""
    from sensor.protocols import registry

    fields = list(COMMON_FIELDS)
    for dissector in registry().values():
        fields.extend(dissector.fields)
    return tuple(fields)


def field_names() -> frozenset[str]:
    return frozenset(f.name for f in all_fields())


def elasticsearch_mapping(fields: Iterable[Field] | None = None) -> dict[str, Any]:
    """Explicit Elasticsearch ``mappings`` for the given fields (all by default).

    Dotted names become nested ``properties``; unknown fields are not indexed
    (``dynamic: false``) so a new protocol field can never cause a type guess.
    """
    root: dict[str, Any] = {}
    for field in fields if fields is not None else all_fields():
        node = root
        parts = field.name.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {"properties": {}})
            if "properties" not in node:
                raise ValueError(f"schema: {field.name} nests under a leaf field")
            node = node["properties"]
        if parts[-1] in node:
            raise ValueError(f"schema: field {field.name} declared twice or shadows an object")
        node[parts[-1]] = dict(_ES_TYPES[field.type])
    return {"dynamic": False, "properties": root}


_REFERENCE_HEADER = """\
# icsmon event schema

Every event icsmon emits uses the fields below: Elastic Common Schema fields where ECS has one, and
one namespace per protocol. The schema is defined once in code (`sensor/schema.py` and each
dissector's `DISSECTOR.fields`); the Elasticsearch mappings and the field names that detection rules
use come from that same definition. Each protocol's narrative documentation (pairing, anomalies,
resynchronisation) sits next to its module in `sensor/protocols/`.

This file is generated, and a test keeps it current. Regenerate it after changing a field or a
dissector with:

    icsmon schema > sensor/EVENTS.md
"""


def markdown_reference() -> str:
    """The whole of sensor/EVENTS.md: field reference and one operation table per protocol."""
    from sensor.protocols import registry

    lines = [_REFERENCE_HEADER, "## Fields", "", "| field | type | meaning |", "|---|---|---|"]
    for f in all_fields():
        typ = f"{f.type}[]" if f.array else f.type
        lines.append(f"| `{f.name}` | {typ} | {f.doc} |")
    for dissector in registry().values():
        lines += ["", f"## {dissector.name}: function to `ics.operation`", "", dissector.description, "",
                  "| function | ics.operation |", "|---|---|"]
        lines += [f"| `{name}` | {op} |" for name, op in dissector.operations.items()]
    return "\n".join(lines) + "\n"
