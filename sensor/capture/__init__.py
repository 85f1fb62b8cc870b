"""Packet sources: where frames come from.

A packet source is an iterable of ``(timestamp, linktype, frame, interface)``
tuples -- plain tuples because this is the per-packet path. ``timestamp`` is
seconds since the epoch as a float, ``linktype`` a LINKTYPE_* value from the
tcpdump registry, ``frame`` the captured bytes, ``interface`` the name the
events report as ``observer.ingress.interface.name``.

Sources only receive. There is no send path anywhere in :mod:`sensor`.

Errors: a source raises :class:`CaptureError` (one line, naming the file or
interface and, for files, the byte offset) *after* yielding every packet it
could read.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

__all__ = [
    "CaptureError", "CaptureStats", "PacketSource", "Packet",
    "LINKTYPE_NULL", "LINKTYPE_ETHERNET", "LINKTYPE_RAW", "LINKTYPE_LOOP", "LINKTYPE_LINUX_SLL",
    "LINKTYPE_IPV4", "LINKTYPE_IPV6", "LINKTYPE_LINUX_SLL2",
]

LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LOOP = 108
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276

Packet = tuple[float, int, bytes, str]


class CaptureError(Exception):
    """A capture could not be (fully) read. The message is one line for the user."""


@dataclass(slots=True)
class CaptureStats:
    """What the source knows about loss: kernel drops for live capture."""

    received: int = 0
    kernel_dropped: int = 0
    interface_dropped: int = 0
    extra: dict[str, int] = field(default_factory=dict)


class PacketSource(Protocol):
    name: str

    def __iter__(self) -> Iterator[Packet]: ...

    def stats(self) -> CaptureStats: ...

    def close(self) -> None: ...
