"""Elasticsearch index templates and ILM policies, generated from the schema.

Composable templates (Elasticsearch 7.8+):

* component ``<prefix>-settings``: shards, replicas, field limit, and the ILM
  policy when configured;
* component ``<prefix>-events-mappings``: :func:`sensor.schema.all_fields`;
* component ``<prefix>-alerts-mappings``: the same plus
  :data:`analyzer.alerts.ALERT_FIELDS` (alerts copy the triggering event's key
  fields, and rules may copy more);
* index templates ``<prefix>-events`` and ``<prefix>-alerts`` for the patterns
  ``<prefix>-events-*`` and ``<prefix>-alerts-*``, composed of the above.

Mappings are explicit (``dynamic: false``): a field outside the schema stays in
``_source`` but is never indexed, so nothing is type-guessed; evidence and
triage notes are objects with ``enabled: false`` (kept, not indexed).

Indices are daily by the document's time, ``<prefix>-events-2026.01.31``; an
alert lives in the index of its ``icsmon.alert.first_seen`` day so every update
of it lands on the same document. Rollover (ILM's usual partitioning) does not
fit documents that are updated by id later, so the ILM policies only age and
delete whole daily indices (see deploy/elasticsearch/README.md).

``icsmon templates`` (proposed) or :func:`export` prints all of this as the
request bodies an administrator can install by hand.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from analyzer.alerts import ALERT_FIELDS
from analyzer.stores.semantics import STORE_FIELDS
from sensor.schema import Field, all_fields, elasticsearch_mapping

__all__ = ["TEMPLATE_PRIORITY", "alert_fields", "event_fields", "export", "ilm_policies", "index_name",
           "index_pattern", "templates"]

TEMPLATE_PRIORITY = 210
"""Above Elasticsearch's built-in templates (100-200); patterns that overlap at equal priority are refused."""
FIELD_LIMIT = 2000
RETENTION_DAYS = {"events": 90, "alerts": 365}


def event_fields() -> tuple[Field, ...]:
    return (*all_fields(), *STORE_FIELDS)


def alert_fields() -> tuple[Field, ...]:
    """Event fields with the alert fields added (an alert field of the same name wins)."""
    alert_names = {f.name for f in ALERT_FIELDS}
    return (*(f for f in event_fields() if f.name not in alert_names), *ALERT_FIELDS)


def index_pattern(prefix: str, kind: str) -> str:
    return f"{prefix}-{kind}s-*"


@lru_cache(maxsize=1024)
def index_name(prefix: str, kind: str, day_ms: int) -> str:
    """``<prefix>-alerts-YYYY.MM.DD`` for the UTC day that starts at ``day_ms``."""
    day = datetime.fromtimestamp(day_ms / 1000, UTC)
    return f"{prefix}-{kind}s-{day:%Y.%m.%d}"


def templates(prefix: str = "icsmon", *, shards: int = 1, replicas: int = 1,
              ilm: bool = False) -> dict[str, dict[str, dict[str, Any]]]:
    """``{"component": {name: body}, "index": {name: body}}``: the bodies of ``PUT _component_template/<name>``
    and ``PUT _index_template/<name>``."""
    index_settings: dict[str, Any] = {
        "number_of_shards": shards,
        "number_of_replicas": replicas,
        "mapping": {"total_fields": {"limit": FIELD_LIMIT}},
    }
    component = {
        f"{prefix}-settings": {"template": {"settings": {"index": index_settings}},
                               "_meta": {"managed_by": "icsmon", "description": "icsmon index settings"}},
        f"{prefix}-events-mappings": {"template": {"mappings": elasticsearch_mapping(event_fields())},
                                      "_meta": {"managed_by": "icsmon", "description": "icsmon event fields"}},
        f"{prefix}-alerts-mappings": {"template": {"mappings": elasticsearch_mapping(alert_fields())},
                                      "_meta": {"managed_by": "icsmon", "description": "icsmon alert fields"}},
    }
    index: dict[str, dict[str, Any]] = {}
    for kind in ("events", "alerts"):
        body: dict[str, Any] = {
            "index_patterns": [index_pattern(prefix, kind[:-1])],
            "priority": TEMPLATE_PRIORITY,
            "composed_of": [f"{prefix}-settings", f"{prefix}-{kind}-mappings"],
            "_meta": {"managed_by": "icsmon", "description": f"icsmon {kind}, one index per day"},
        }
        if ilm:
            body["template"] = {"settings": {"index": {"lifecycle": {"name": f"{prefix}-{kind}"}}}}
        index[f"{prefix}-{kind}"] = body
    return {"component": component, "index": index}


def ilm_policies(prefix: str = "icsmon") -> dict[str, dict[str, Any]]:
    """``{name: body}`` for ``PUT _ilm/policy/<name>``: the policies deploy/elasticsearch/ilm-policy.json ships.

    Daily indices are the time partition, so there is no rollover: hot (recovered first after a
    restart) for 2 days, then warm, deleted 90 days (events) or 365 days (alerts) after the index was
    created. Nothing makes an index read-only (no forcemerge, shrink or readonly action): analysts
    update an alert's triage at any age, and the delivery spool may bring late events after an outage.
    """
    policies = {}
    for kind, days in RETENTION_DAYS.items():
        warm: dict[str, Any] = {"set_priority": {"priority": 50}}
        policies[f"{prefix}-{kind}"] = {
            "policy": {
                "_meta": {"managed_by": "icsmon", "description": f"icsmon {kind}: daily indices kept {days} days"},
                "phases": {
                    "hot": {"min_age": "0ms", "actions": {"set_priority": {"priority": 100}}},
                    "warm": {"min_age": "2d", "actions": warm},
                    "delete": {"min_age": f"{days}d", "actions": {"delete": {}}},
                },
            }
        }
    return policies


def export(prefix: str = "icsmon", *, shards: int = 1, replicas: int = 1, ilm: bool = False) -> dict[str, Any]:
    """Everything an administrator installs, keyed by request path (``_component_template/icsmon-settings``...)."""
    out: dict[str, Any] = {}
    if ilm:
        out.update({f"_ilm/policy/{name}": body for name, body in ilm_policies(prefix).items()})
    bodies = templates(prefix, shards=shards, replicas=replicas, ilm=ilm)
    out.update({f"_component_template/{name}": body for name, body in bodies["component"].items()})
    out.update({f"_index_template/{name}": body for name, body in bodies["index"].items()})
    return out
