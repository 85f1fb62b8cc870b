"""Fixtures for the capture tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.sensor.capture.wire import Wire, veth_wire


@pytest.fixture
def wire() -> Iterator[Wire]:
    """Two namespaces joined by a veth pair (see :mod:`tests.sensor.capture.wire`)."""
    with veth_wire() as w:
        yield w
