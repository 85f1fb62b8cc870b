"""Sensor configuration: one typed model, nested per concern, no globals.

The root application settings (environment prefix ``ICSMON_``, config file)
live in :mod:`api.settings` and embed :class:`SensorSettings`; the sensor
itself only ever receives an instance, so tests build one directly.
"""

from __future__ import annotations

import socket
from typing import Literal

from pydantic import BaseModel, Field, field_validator

__all__ = ["FlowSettings", "FragmentSettings", "SensorSettings", "VolumeSettings"]

Verbosity = Literal["all", "no_routine", "none"]


class FlowSettings(BaseModel):
    """Flow table and TCP reassembly bounds."""

    max_flows: int = Field(200_000, ge=1, description="Hard cap on tracked flows; the oldest is evicted.")
    tcp_idle_timeout: float = Field(300.0, gt=0, description="Seconds without packets before a TCP flow ends.")
    udp_idle_timeout: float = Field(60.0, gt=0, description="Seconds without packets before a UDP flow ends.")
    icmp_idle_timeout: float = Field(60.0, gt=0)
    absolute_timeout: float = Field(
        3600.0, gt=0,
        description="A flow older than this is reported (connection-end, state `timeout-absolute`) and"
        " restarted, so week-long polling connections still produce regular connection records.",
    )
    sweep_interval: float = Field(5.0, gt=0, description="Seconds of capture time between timeout sweeps.")
    max_buffer_per_flow: int = Field(
        256 << 10, ge=1024, description="Out-of-order bytes held per direction before declaring a gap."
    )
    max_buffer_total: int = Field(
        128 << 20, ge=1 << 16, description="Out-of-order bytes held over all flows before declaring gaps."
    )
    max_segments_per_flow: int = Field(256, ge=1, description="Out-of-order segments held per direction.")


class FragmentSettings(BaseModel):
    max_datagrams: int = Field(1024, ge=1)
    max_bytes: int = Field(8 << 20, ge=65535)
    timeout: float = Field(30.0, gt=0)


class VolumeSettings(BaseModel):
    """What reaches the event store. Detection always sees every event; this only thins the output.

    ``verbosity`` per protocol (``default`` for the rest): ``all`` keeps every PDU, ``no_routine``
    drops routine polling (successful reads and periodic reports without anomaly), ``none`` keeps no
    protocol events (flows and decode errors stay). With ``summary`` on, every event a verbosity
    setting drops is folded into a periodic summary per client, server, protocol, unit, function and
    address range, with counts and value ranges, so the store still shows that the polling happened.
    """

    default: Verbosity = Field("all", description="Verbosity of protocols not listed in `protocols`.")
    protocols: dict[str, Verbosity] = Field(default_factory=dict, description="Per-protocol verbosity.")
    summary: bool = Field(False, description="Fold dropped events into periodic summary events.")
    summary_interval: float = Field(60.0, gt=0, description="Seconds of capture time one summary covers.")
    max_summaries: int = Field(
        10_000, ge=1, description="Open summaries held at once; beyond it the oldest is emitted early."
    )


class SensorSettings(BaseModel):
    sensor_id: str = Field(default_factory=socket.gethostname, min_length=1)
    dissect: bool = Field(True, description="Run protocol dissectors (false: flows only).")
    disabled_protocols: list[str] = Field(default_factory=list)
    protocol_ports: dict[str, list[int]] = Field(
        default_factory=dict,
        description="Per-protocol server ports replacing the dissector's defaults, e.g."
        " {'modbus': [502, 5020]} (content detection still finds other ports).",
    )
    flows: FlowSettings = Field(default_factory=FlowSettings)
    fragments: FragmentSettings = Field(default_factory=FragmentSettings)
    volume: VolumeSettings = Field(default_factory=VolumeSettings)
    max_probe_bytes: int = Field(
        4096, ge=64, description="Payload bytes a flow may show before protocol detection gives up."
    )

    @field_validator("protocol_ports")
    @classmethod
    def _ports_in_range(cls, value: dict[str, list[int]]) -> dict[str, list[int]]:
        for name, ports in value.items():
            for port in ports:
                if not 0 < port < 65536:
                    raise ValueError(f"protocol_ports.{name}: {port} is not a TCP/UDP port")
        return value
