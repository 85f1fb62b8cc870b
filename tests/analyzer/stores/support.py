"""Helpers shared by the store tests."""

from __future__ import annotations

from analyzer.settings import ElasticsearchSettings


def es_settings(url: str, prefix: str, **overrides: object) -> ElasticsearchSettings:
    """Settings for the single test node: no replicas, quick retries."""
    values: dict[str, object] = {"url": url, "index_prefix": prefix, "number_of_replicas": 0, "max_attempts": 3,
                                 "backoff_initial": 0.05, "backoff_max": 0.2, "request_timeout": 30}
    values.update(overrides)
    return ElasticsearchSettings(**values)
