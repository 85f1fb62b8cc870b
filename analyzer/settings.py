"""Analyzer configuration: where alerts and events are stored.

With nothing configured the analyzer writes to a local SQLite database
(``~/.local/share/icsmon/icsmon.db``); setting ``elasticsearch.url`` switches to
Elasticsearch. The root settings (:mod:`api.settings`, environment prefix
``ICSMON_``) embed :class:`AnalyzerSettings` as ``analyzer``, so for example
``ICSMON_ANALYZER__ELASTICSEARCH__URL=https://siem.plant1:9200`` and
``ICSMON_ANALYZER__ELASTICSEARCH__API_KEY=...``. Nothing is read at import time.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator

from analyzer.delivery import DeliverySettings

__all__ = ["AnalyzerSettings", "ElasticsearchSettings", "SQLiteSettings", "default_sqlite_path"]

# Placeholders from documentation and examples that must never reach a deployment.
SHIPPED_SECRETS = frozenset({"changeme", "change-me", "changeit", "password", "secret", "elastic", "icsmon"})
_PREFIX = re.compile(r"[a-z0-9][a-z0-9_-]{0,99}")


def default_sqlite_path() -> Path:
    return Path("~/.local/share/icsmon/icsmon.db").expanduser()


class SQLiteSettings(BaseModel):
    """The embedded store: one SQLite file (WAL journal), created on first use."""

    path: Path = Field(default_factory=default_sqlite_path,
                       description="Database file; its folder is created if missing. `:memory:` for tests.")
    busy_timeout: float = Field(10.0, gt=0, description="Seconds a writer waits for another one's lock.")

    @field_validator("path")
    @classmethod
    def _expand(cls, value: Path) -> Path:
        return value if str(value) == ":memory:" else value.expanduser()


class ElasticsearchSettings(BaseModel):
    """An Elasticsearch cluster: connection, credentials, indices and write batching."""

    url: str | None = Field(None, description="http(s)://host:port; several nodes separated by commas.")
    api_key: SecretStr | None = Field(None, description="Base64 `id:key` API key (instead of username/password).")
    username: str | None = None
    password: SecretStr | None = None
    ca_file: Path | None = Field(None, description="PEM file of the CA that signed the cluster's certificate.")
    verify: bool = Field(True, description="Verify the server certificate (never turn off in production).")
    index_prefix: str = Field("icsmon", description="Indices are `<prefix>-alerts-YYYY.MM.DD` and"
                              " `<prefix>-events-YYYY.MM.DD`; templates are named after the prefix too.")
    events: bool = Field(True, description="Store protocol events too (false: alerts only).")
    install_templates: bool = Field(
        True, description="check() installs the component and index templates (needs manage_index_templates);"
        " false when an administrator installs them (deploy/elasticsearch/README.md).")
    ilm: bool = Field(False, description="Templates attach the ILM policies `<prefix>-alerts` and `<prefix>-events`"
                      " (deploy/elasticsearch/ilm-policy.json); install those first.")
    number_of_shards: int = Field(1, ge=1, le=64, description="Primary shards per daily index.")
    number_of_replicas: int = Field(1, ge=0, le=8, description="Replicas per daily index (0 on a single node).")
    bulk_max_docs: int = Field(500, ge=1, le=10_000, description="Documents per bulk request at most.")
    bulk_max_bytes: int = Field(5 << 20, ge=1 << 16, le=100 << 20, description="Bytes per bulk request at most.")
    request_timeout: float = Field(30.0, gt=0, description="Seconds one request may take.")
    check_timeout: float = Field(10.0, gt=0, description="Seconds the start-up check waits for the cluster.")
    max_attempts: int = Field(6, ge=1, le=100,
                              description="Tries of one bulk request on 429, 5xx or connection errors.")
    backoff_initial: float = Field(0.5, ge=0, description="Seconds before the first retry (then doubling).")
    backoff_max: float = Field(30.0, ge=0, description="Longest wait between retries.")
    http_compress: bool = Field(False, description="gzip request bodies (worth it over slow links).")

    @field_validator("url")
    @classmethod
    def _urls(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        for url in value.split(","):
            url = url.strip()
            if not re.fullmatch(r"https?://[^/\s]+(/\S*)?", url):
                raise ValueError(f"{url!r} is not an http:// or https:// URL")
        return value.strip()

    @field_validator("index_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if not _PREFIX.fullmatch(value):
            raise ValueError(f"{value!r}: lower-case letters, digits, '-' and '_', starting with a letter or digit")
        return value

    @field_validator("ca_file")
    @classmethod
    def _ca_file(cls, value: Path | None) -> Path | None:
        if value is None:
            return None
        value = value.expanduser()
        if not value.is_file():
            raise ValueError(f"CA file {value} does not exist")
        return value

    @field_validator("api_key", "password")
    @classmethod
    def _no_shipped_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and value.get_secret_value().strip().lower() in SHIPPED_SECRETS:
            raise ValueError("is a well-known placeholder; set the real secret")
        return value

    @model_validator(mode="after")
    def _credentials(self) -> ElasticsearchSettings:
        if self.api_key is not None and (self.username or self.password):
            raise ValueError("give either api_key or username/password, not both")
        if bool(self.username) != (self.password is not None):
            raise ValueError("username and password go together")
        if self.backoff_max < self.backoff_initial:
            raise ValueError("backoff_max is shorter than backoff_initial")
        return self

    @property
    def urls(self) -> list[str]:
        return [u.strip() for u in (self.url or "").split(",") if u.strip()]


def shipped_rules() -> Path:
    """The rule pack that comes with icsmon: ``rules/`` at the top of the source tree."""
    return Path(__file__).resolve().parents[1] / "rules"


class RulesSettings(BaseModel):
    """Which Sigma rules run on the sensor's events (``ICSMON_ANALYZER__RULES__...``)."""

    enabled: bool = Field(True, description="Run the Sigma rules on every event.")
    shipped: bool = Field(True, description="Load the shipped rule pack (`rules/`).")
    paths: list[Path] = Field(default_factory=list, description="More rule files or folders (the site's own rules).")
    placeholders: Path | None = Field(None, description="YAML file of placeholder values (`name: [values]`) for"
                                      " `|expand` modifiers: control stations, engineering workstations..."
                                      " (template: deploy/placeholders.yml).")
    watch: bool = Field(True, description="`icsmon live` reloads changed rule files without a restart.")

    def all_paths(self) -> list[Path]:
        return ([shipped_rules()] if self.shipped else []) + list(self.paths)


class AnalyzerSettings(BaseModel):
    store: Literal["auto", "sqlite", "elasticsearch"] = Field(
        "auto", description="`auto`: Elasticsearch when `elasticsearch.url` is set, else SQLite.")
    sqlite: SQLiteSettings = Field(default_factory=SQLiteSettings)
    elasticsearch: ElasticsearchSettings = Field(default_factory=ElasticsearchSettings)
    delivery: DeliverySettings = Field(default_factory=DeliverySettings)
    rules: RulesSettings = Field(default_factory=RulesSettings)

    @model_validator(mode="after")
    def _store_configured(self) -> AnalyzerSettings:
        if self.store == "elasticsearch" and not self.elasticsearch.url:
            raise ValueError("store is elasticsearch but elasticsearch.url is not set")
        return self

    @property
    def store_kind(self) -> Literal["sqlite", "elasticsearch"]:
        if self.store == "auto":
            return "elasticsearch" if self.elasticsearch.url else "sqlite"
        return self.store
