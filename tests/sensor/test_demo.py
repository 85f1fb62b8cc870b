"""The demo plant capture: deterministic, and what it claims to contain is what tshark and the sensor see."""

from __future__ import annotations

import subprocess
from collections import Counter
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest

from sensor.capture.pcapfile import open_capture
from sensor.demo import START, DemoCapture, write_demo_capture
from sensor.pipeline import Sensor
from sensor.settings import SensorSettings

FIELDS = (
    "frame.time_epoch", "vlan.id", "arp.opcode", "ip.src", "ip.dst", "tcp.stream", "tcp.srcport",
    "tcp.dstport", "tcp.completeness", "tcp.analysis.flags", "tcp.flags.reset", "mbtcp.trans_id",
    "modbus.func_code", "modbus.exception_code", "modbus.object_str_value", "modbus.regval_uint16",
)
# tshark's tcp.completeness bits: SYN 1, SYN-ACK 2, ACK 4, data 8, FIN 16, RST 32
COMPLETENESS = {"open": 1 | 2 | 4 | 8, "fin": 1 | 2 | 4 | 8 | 16, "rst": 1 | 2 | 4 | 8 | 32}


@dataclass
class Demo:
    described: DemoCapture
    frames: list[dict[str, str]]


def tshark_frames(path: Path) -> list[dict[str, str]]:
    """One dict per frame; two passes so tcp.completeness is final on every frame."""
    argv = ["tshark", "-2", "-n", "-r", str(path), "-T", "fields", "-E", "aggregator=|", "-E", "occurrence=a"]
    for name in FIELDS:
        argv += ["-e", name]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    return [dict(zip(FIELDS, line.split("\t"))) for line in out.splitlines()]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    path = tmp_path_factory.mktemp("demo") / "plant.pcap"
    described = write_demo_capture(path)
    return Demo(described, tshark_frames(path))


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path, demo: Demo) -> None:
    again = tmp_path / "again.pcap"
    other = tmp_path / "other.pcap"
    write_demo_capture(again, seed=1)
    described = write_demo_capture(other, seed=2)
    assert again.read_bytes() == demo.described.path.read_bytes()
    assert other.read_bytes() != again.read_bytes()
    # a different seed moves ports, sequence numbers and values, not the plan
    assert described.modbus_pdus == demo.described.modbus_pdus
    assert [f.client_port for f in described.flows] != [f.client_port for f in demo.described.flows]


def test_tshark_counts_every_frame_and_modbus_pdu(demo: Demo) -> None:
    d = demo.described
    assert len(demo.frames) == d.packets
    modbus = [f for f in demo.frames if f["mbtcp.trans_id"]]
    assert len(modbus) == d.modbus_frames
    assert sum(len(f["mbtcp.trans_id"].split("|")) for f in modbus) == d.modbus_pdus
    requests: Counter[int] = Counter()
    for f in modbus:
        if f["tcp.dstport"] == "502":
            requests.update(int(fc) for fc in f["modbus.func_code"].split("|"))
    assert dict(requests) == d.modbus_requests
    assert set(requests) == {1, 3, 4, 6, 43}
    assert requests[6] == 1 and requests[43] == 1


def test_two_pdus_share_a_segment(demo: Demo) -> None:
    pipelined = [f for f in demo.frames if f["mbtcp.trans_id"].count("|") == 1]
    assert pipelined, "no TCP segment carries two Modbus requests"
    for f in pipelined:
        first, second = (int(t) for t in f["mbtcp.trans_id"].split("|"))
        assert second == first + 1  # consecutive transaction ids, as a pipelining HMI numbers them
        assert f["modbus.func_code"] == "3|1"


def test_transaction_ids_increment_per_connection(demo: Demo) -> None:
    by_stream: dict[str, list[int]] = {}
    for f in demo.frames:
        if f["mbtcp.trans_id"] and f["tcp.dstport"] == "502":
            by_stream.setdefault(f["tcp.stream"], []).extend(int(t) for t in f["mbtcp.trans_id"].split("|"))
    assert len(by_stream) == len(demo.described.flows)
    for tids in by_stream.values():
        assert tids == list(range(tids[0], tids[0] + len(tids)))


def test_device_identification_and_one_exception(demo: Demo) -> None:
    identified = [f["modbus.object_str_value"] for f in demo.frames if f["modbus.object_str_value"]]
    assert identified == ["Schneider Electric|BMX P34 2020|v3.20"]
    exceptions = [f for f in demo.frames if f["modbus.exception_code"]]
    # tshark shows the function code without the exception bit; 2 is "illegal data address"
    seen = [(f["ip.src"], f["ip.dst"], f["modbus.func_code"], f["modbus.exception_code"]) for f in exceptions]
    assert seen == [("10.10.2.12", "10.10.1.20", "3", "2")]
    assert demo.described.modbus_exceptions == 1


def test_values_drift_slowly_and_the_write_sticks(demo: Demo) -> None:
    """PLC2 as the HMI sees it: the level moves a little each second, the setpoint once, when written."""
    hmi_reads = [[int(v) for v in f["modbus.regval_uint16"].split("|")] for f in demo.frames
                 if (f["ip.src"], f["ip.dst"], f["modbus.func_code"]) == ("10.10.2.12", "10.10.1.10", "3")]
    assert len(hmi_reads) > 50 and all(len(r) == 10 for r in hmi_reads)
    levels = [r[0] for r in hmi_reads]
    assert max(abs(a - b) for a, b in zip(levels, levels[1:])) <= 4
    assert len(set(levels)) > 3
    setpoints = [r[4] for r in hmi_reads]
    changes = [(a, b) for a, b in zip(setpoints, setpoints[1:]) if a != b]
    assert len(changes) == 1
    readback = [f for f in demo.frames if f["ip.src"] == "10.10.2.12" and f["ip.dst"] == "10.10.1.20"
                and f["modbus.func_code"] == "3" and f["modbus.regval_uint16"].isdigit()]
    assert [int(f["modbus.regval_uint16"]) for f in readback] == [changes[0][1]]


def test_connections_are_clean_tcp(demo: Demo) -> None:
    """Real handshakes, correct numbers: tshark's TCP analysis flags nothing at all."""
    flagged = [f for f in demo.frames if f["tcp.analysis.flags"]]
    assert flagged == []
    streams: dict[str, dict[str, str]] = {}
    for f in demo.frames:
        if f["tcp.stream"]:
            streams.setdefault(f["tcp.stream"], f)
    seen = sorted((f["ip.src"], int(f["tcp.srcport"]), f["ip.dst"], int(f["tcp.dstport"]),
                   int(f["tcp.completeness"])) for f in streams.values())
    expected = sorted((x.client, x.client_port, x.server, x.server_port, COMPLETENESS[x.end])
                      for x in demo.described.flows)
    assert seen == expected
    assert Counter(x.end for x in demo.described.flows) == {"open": 3, "fin": 1, "rst": 1}


def test_vlan_and_arp(demo: Demo) -> None:
    tagged = [f for f in demo.frames if f["vlan.id"]]
    assert len(tagged) == demo.described.vlan_frames > 0
    assert {f["vlan.id"] for f in tagged} == {"20"}
    plc3 = "10.10.2.13"
    assert all(plc3 in (f["ip.src"], f["ip.dst"]) for f in tagged if f["ip.src"])
    assert all(f["vlan.id"] for f in demo.frames if plc3 in (f["ip.src"], f["ip.dst"]))
    arp = Counter(f["arp.opcode"] for f in demo.frames if f["arp.opcode"])
    assert arp["1"] == arp["2"] == demo.described.arp_frames // 2 >= 5


def test_timestamps(demo: Demo) -> None:
    times = [Decimal(f["frame.time_epoch"]) for f in demo.frames]
    start = Decimal(int(START.timestamp()))
    assert times == sorted(times)
    assert start <= times[0] < start + 1
    assert times[-1] < start + Decimal(str(demo.described.duration_s))


def test_the_sensor_sees_the_plant(demo: Demo) -> None:
    events: list[dict[str, object]] = []
    sensor = Sensor(SensorSettings(sensor_id="test"), sink=events.append)
    with open_capture(demo.described.path) as source:
        sensor.run(source)
    sensor.finish()
    stats = sensor.stats_dict()
    assert stats["packets"] == demo.described.packets
    assert stats["decode_errors"] == {}
    assert stats["flows"]["ended_by_state"] == {"end-of-capture": 3, "closed": 1, "reset": 1}
    assert stats["protocols"]["modbus"]["flows"] == len(demo.described.flows)
    assert stats["protocols"]["modbus"]["violations"] == 0
    assert stats["events_by_dataset"]["icsmon.modbus"] == demo.described.modbus_pdus
