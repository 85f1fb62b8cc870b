"""Protocol dissectors: one module per protocol, each exporting ``DISSECTOR``.

:func:`registry` imports every module of this package once and collects its
``DISSECTOR``. A module without one is an error, so a half-added protocol
fails loudly instead of silently doing nothing.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache

from sensor.dissect import Dissector

__all__ = ["registry", "RegistryError"]


class RegistryError(Exception):
    """A module under sensor/protocols does not register exactly one dissector."""


@cache
def registry() -> dict[str, Dissector]:
    """All dissectors by name, in module order."""
    found: dict[str, Dissector] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        dissector = getattr(module, "DISSECTOR", None)
        if not isinstance(dissector, Dissector):
            raise RegistryError(f"sensor/protocols/{info.name}.py: no DISSECTOR = Dissector(...) exported")
        if dissector.name in found:
            raise RegistryError(f"sensor/protocols/{info.name}.py: dissector name {dissector.name!r} is taken")
        found[dissector.name] = dissector
    return found
