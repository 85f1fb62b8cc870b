"""Application settings: one model, nested per component, from the environment.

Environment variables use the ``ICSMON_`` prefix and ``__`` between levels,
e.g. ``ICSMON_SENSOR__SENSOR_ID=plant1-span0`` or
``ICSMON_SENSOR__FLOWS__MAX_FLOWS=50000``, ``ICSMON_ANALYZER__ELASTICSEARCH__URL=https://...``.
Build it where it is needed (``Settings()``); nothing is read at import time.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from analyzer.settings import AnalyzerSettings
from sensor.settings import SensorSettings

__all__ = ["Settings"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ICSMON_", env_nested_delimiter="__", extra="forbid")

    sensor: SensorSettings = Field(default_factory=SensorSettings)
    analyzer: AnalyzerSettings = Field(default_factory=AnalyzerSettings)
