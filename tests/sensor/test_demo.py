"""The demo plant capture: deterministic, and what it claims to contain is what tshark and the sensor see.

Every protocol's messages are checked against the real Wireshark dissectors (tshark): no malformed
frame or expert error anywhere, the same message kinds in the same numbers as the generator says it
wrote, and the values (registers, analog inputs, tags, properties) the simulated devices hold.
"""

from __future__ import annotations

import struct
import subprocess
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import pytest

from sensor.capture.pcapfile import open_capture
from sensor.demo import HOSTS, START, DemoCapture, dnp3_crc, write_demo_capture
from sensor.pipeline import Sensor
from sensor.protocols import registry
from sensor.settings import SensorSettings

FIELDS = (
    "frame.time_epoch", "vlan.id", "arp.opcode", "ip.src", "ip.dst", "tcp.stream", "tcp.srcport",
    "tcp.dstport", "tcp.completeness", "tcp.analysis.flags", "tcp.flags.reset", "mbtcp.trans_id",
    "modbus.func_code", "modbus.exception_code", "modbus.object_str_value", "modbus.regval_uint16",
    "udp.stream", "udp.srcport", "udp.dstport",
)
# tshark's tcp.completeness bits: SYN 1, SYN-ACK 2, ACK 4, data 8, FIN 16, RST 32
COMPLETENESS = {"open": 1 | 2 | 4 | 8, "fin": 1 | 2 | 4 | 8 | 16, "rst": 1 | 2 | 4 | 8 | 32}


# The other five protocols' fields, read from the frames that carry them.
ICS_FILTER = "dnp3 || tpkt || enip || iec60870_104 || bvlc"
ICS_FIELDS = (
    "frame.number", "frame.time_epoch", "ip.src", "ip.dst", "tcp.srcport", "tcp.dstport", "udp.srcport",
    "udp.dstport", "udp.payload",
    "dnp3.src", "dnp3.dst", "dnp3.ctl", "dnp.hdr.CRC.status", "dnp.data_chunk.CRC.status", "dnp3.al.ctl",
    "dnp3.al.func", "dnp3.al.iin", "dnp3.al.obj", "dnp3.al.ana.int", "dnp3.al.ana.float", "dnp3.al.biq.b7",
    "dnp3.al.timestamp", "dnp3.al.ctrlstatus", "dnp3.al.on_time",
    "cotp.type", "cotp.dst-tsap", "s7comm.header.rosctr", "s7comm.header.pduref", "s7comm.param.func",
    "s7comm.param.pdu_length", "s7comm.param.userdata.type", "s7comm.param.userdata.subfunc",
    "s7comm.param.item.db", "s7comm.param.item.area", "s7comm.param.item.address", "s7comm.resp.data",
    "s7comm.data.returncode", "s7comm.data.userdata.szl_id", "s7comm.szl.xy11.0001.anz",
    "enip.command", "enip.session", "enip.lir.vendor", "enip.lir.devtype", "enip.lir.name", "cip.service",
    "cip.genstat", "cip.symbol", "cip.id.product_name", "cip.data",
    "iec60870_104.type", "iec60870_104.utype", "iec60870_104.tx", "iec60870_104.rx", "iec60870_asdu.typeid",
    "iec60870_asdu.causetx", "iec60870_asdu.addr", "iec60870_asdu.ioa", "iec60870_asdu.float",
    "iec60870_asdu.siq.spi", "iec60870_asdu.sco.se", "iec60870_asdu.cp56time",
    "bvlc.function", "bacapp.type", "bacapp.confirmed_service", "bacapp.unconfirmed_service", "bacapp.invoke_id",
    "bacapp.objectType", "bacapp.instance_number", "bacapp.property_identifier", "bacapp.present_value.real",
    "bacapp.vendor_identifier", "bacapp.object_name",
)
# What selects each protocol's frames with application bytes (S7: the TPKT, COTP connect included).
DISPLAY_FILTERS = {"modbus": "mbtcp", "dnp3": "dnp3", "s7comm": "tpkt", "enip": "enip", "iec104": "iec60870_104",
                   "bacnet": "bvlc"}
PORTS = {"modbus": 502, "dnp3": 20000, "s7comm": 102, "enip": 44818, "iec104": 2404, "bacnet": 47808}


@dataclass
class Demo:
    described: DemoCapture
    frames: list[dict[str, str]]
    ics: list[dict[str, str]]
    per_protocol: dict[str, int]
    bad: str


def tshark(path: Path, fields: tuple[str, ...], display_filter: str = "",
           two_pass: bool = False) -> list[dict[str, str]]:
    """One dict per frame (every occurrence of a field, joined with |)."""
    argv = ["tshark", "-n", "-r", str(path), "-T", "fields", "-E", "aggregator=|", "-E", "occurrence=a"]
    argv += ["-2"] if two_pass else []
    argv += ["-Y", display_filter] if display_filter else []
    for name in fields:
        argv += ["-e", name]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    return [dict(zip(fields, line.split("\t"))) for line in out.splitlines()]


def tshark_frames(path: Path) -> list[dict[str, str]]:
    """Two passes so tcp.completeness is final on every frame."""
    return tshark(path, FIELDS, two_pass=True)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    path = tmp_path_factory.mktemp("demo") / "plant.pcap"
    described = write_demo_capture(path)
    # frames per protocol: one pass, one field, the protocol's name as tshark's -Y sees it
    tagged = tshark(path, ("frame.protocols",))
    per_protocol = {name: sum(1 for f in tagged if flt in f["frame.protocols"].split(":"))
                    for name, flt in DISPLAY_FILTERS.items()}
    bad = subprocess.run(["tshark", "-n", "-r", str(path), "-Y", "_ws.malformed || _ws.expert.severity >= error",
                          "-T", "fields", "-e", "frame.number", "-e", "_ws.expert.message"],
                         capture_output=True, text=True, check=True).stdout
    return Demo(described, tshark_frames(path), tshark(path, ICS_FIELDS, ICS_FILTER), per_protocol, bad)


def ints(value: str) -> list[int]:
    """Every occurrence of an integer field, whatever base tshark prints it in."""
    return [int(v, 0) for v in value.split("|")] if value else []


def floats(value: str) -> list[float]:
    return [float(v) for v in value.split("|")] if value else []


def wall_clock(value: str) -> Decimal:
    """A tshark absolute time ("Jan  5, 2026 08:00:00.120000000 UTC") as seconds since the epoch."""
    stamp, _, fraction = value.removesuffix(" UTC").partition(".")
    whole = datetime.strptime(" ".join(stamp.split()) + " +0000", "%b %d, %Y %H:%M:%S %z")
    return Decimal(int(whole.timestamp())) + Decimal("0." + (fraction or "0"))


def of(demo: Demo, protocol: str) -> list[dict[str, str]]:
    """The ICS frames of one protocol (by its port, either direction, TCP or UDP)."""
    port = str(PORTS[protocol])
    return [f for f in demo.ics if port in (f["tcp.srcport"], f["tcp.dstport"], f["udp.srcport"], f["udp.dstport"])]


def to_server(f: dict[str, str], protocol: str) -> bool:
    return str(PORTS[protocol]) in (f["tcp.dstport"], f["udp.dstport"])


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path, demo: Demo) -> None:
    again = tmp_path / "again.pcap"
    other = tmp_path / "other.pcap"
    started = time.perf_counter()
    same = write_demo_capture(again, seed=1)
    assert time.perf_counter() - started < 2.0  # about 0.6 s here: a demo, not a benchmark
    described = write_demo_capture(other, seed=2)
    assert again.read_bytes() == demo.described.path.read_bytes()
    assert (same.messages, same.protocol_frames) == (demo.described.messages, demo.described.protocol_frames)
    assert other.read_bytes() != again.read_bytes()
    # a different seed moves ports, sequence numbers and values, not the plan
    assert described.modbus_pdus == demo.described.modbus_pdus
    assert [f.client_port for f in described.flows] != [f.client_port for f in demo.described.flows]
    assert {p: set(k) for p, k in described.messages.items()} == {p: set(k) for p, k in same.messages.items()}


def test_small_and_every_protocol_present(demo: Demo) -> None:
    d = demo.described
    assert 1000 < d.packets < 3000
    assert list(d.protocol_frames) == list(PORTS)
    assert all(n >= 10 for n in d.protocol_frames.values()), d.protocol_frames
    assert list(d.messages) == ["dnp3", "s7comm", "enip", "iec104", "bacnet"]
    assert "dnp3" in str(d) and "bacnet" in str(d)


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
    assert len(by_stream) == sum(1 for f in demo.described.flows if f.protocol == "modbus")
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
    tcp_flows = [x for x in demo.described.flows if x.transport == "tcp"]
    expected = sorted((x.client, x.client_port, x.server, x.server_port, COMPLETENESS[x.end]) for x in tcp_flows)
    assert seen == expected
    assert Counter(x.end for x in tcp_flows if x.protocol == "modbus") == {"open": 3, "fin": 1, "rst": 1}
    assert Counter((x.protocol, x.end) for x in tcp_flows if x.protocol != "modbus") == {
        ("s7comm", "open"): 1, ("s7comm", "fin"): 1, ("dnp3", "open"): 1, ("iec104", "open"): 1, ("enip", "fin"): 1}


def test_udp_flows(demo: Demo) -> None:
    """Broadcasts and unicast exchanges: one UDP conversation per address and port pair."""
    first: dict[str, dict[str, str]] = {}
    for f in demo.frames:
        if f["udp.stream"]:
            first.setdefault(f["udp.stream"], f)
    seen = sorted((f["ip.src"], int(f["udp.srcport"]), f["ip.dst"], int(f["udp.dstport"])) for f in first.values())
    udp_flows = [x for x in demo.described.flows if x.transport == "udp"]
    assert seen == sorted((x.client, x.client_port, x.server, x.server_port) for x in udp_flows)
    assert Counter(x.protocol for x in udp_flows) == {"enip": 2, "bacnet": 5}
    assert sum(1 for x in udp_flows if x.server == "10.10.255.255") == 4  # Who-Is, two I-Am, ListIdentity


def test_vlan_and_arp(demo: Demo) -> None:
    tagged = [f for f in demo.frames if f["vlan.id"]]
    assert len(tagged) == demo.described.vlan_frames > 0
    assert {f["vlan.id"] for f in tagged} == {"20", "30", "40"}  # PLC3, the substation, the building
    plc3 = "10.10.2.13"
    assert all(plc3 in (f["ip.src"], f["ip.dst"]) for f in tagged if f["ip.src"] and f["vlan.id"] == "20")
    assert all(f["vlan.id"] == "20" for f in demo.frames if plc3 in (f["ip.src"], f["ip.dst"]))
    # every IP frame carries the VLAN of the host in a VLAN it comes from or goes to, and no other
    vlans = {h.ip: str(h.vlan) for h in HOSTS.values() if h.vlan}
    for f in demo.frames:
        if f["ip.src"]:
            assert f["vlan.id"] == vlans.get(f["ip.src"], vlans.get(f["ip.dst"], "")), f
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
    assert stats["decode_errors"] == {}  # no protocol violation from any dissector, on any flow
    flows = demo.described.flows
    assert stats["flows"]["created"] == len(flows)
    assert stats["events_by_dataset"]["icsmon.conn"] == 2 * len(flows)  # a start and an end each
    ended = Counter({"open": "end-of-capture", "fin": "closed", "rst": "reset"}[f.end] for f in flows)
    assert stats["flows"]["ended_by_state"] == ended == {"end-of-capture": 13, "closed": 3, "reset": 1}
    assert stats["protocols"]["modbus"]["flows"] == sum(1 for f in flows if f.protocol == "modbus")
    assert stats["protocols"]["modbus"]["violations"] == 0
    assert stats["events_by_dataset"]["icsmon.modbus"] == demo.described.modbus_pdus
    # The other protocols' dissectors, as many as are registered: each claims its protocol's flows
    # (found by port, the way the sensor offers them) and reports events without a violation.
    for name, dissector in registry().items():
        for protocol, port in PORTS.items():
            if protocol == "modbus" or port not in dissector.tcp_ports | dissector.udp_ports:
                continue
            mine = [f for f in flows if f.protocol == protocol
                    and port in (dissector.tcp_ports if f.transport == "tcp" else dissector.udp_ports)]
            assert stats["protocols"][name]["flows"] == len(mine), (name, stats["protocols"][name])
            assert stats["protocols"][name]["violations"] == 0, name
            assert stats["events_by_dataset"].get(f"icsmon.{name}", 0) > 0, name


# -- what Wireshark makes of the five other protocols -------------------------------------------------

def test_wireshark_finds_nothing_malformed(demo: Demo) -> None:
    assert demo.bad == ""


def test_frames_per_protocol(demo: Demo) -> None:
    """tshark finds as many frames of each protocol as the generator wrote, and these numbers."""
    assert demo.per_protocol == demo.described.protocol_frames
    assert demo.described.protocol_frames == {"modbus": 616, "dnp3": 28, "s7comm": 134, "enip": 13,
                                              "iec104": 29, "bacnet": 81}
    assert len(demo.ics) == sum(n for p, n in demo.per_protocol.items() if p != "modbus")


DNP3_FUNCTIONS = {0: "confirm", 1: "read", 2: "write", 3: "select", 4: "operate", 20: "enable_unsolicited",
                  24: "record_current_time", 129: "response", 130: "unsolicited_response"}


def test_dnp3_crc() -> None:
    assert dnp3_crc(b"123456789") == 0xEA82  # the catalogued check value of CRC-16/DNP


def test_dnp3(demo: Demo) -> None:
    frames = of(demo, "dnp3")
    assert all(f["dnp.hdr.CRC.status"] == "1" and set(f["dnp.data_chunk.CRC.status"].split("|")) == {"1"}
               for f in frames)  # 1: good
    assert all((f["dnp3.src"], f["dnp3.dst"]) == (("1", "10") if to_server(f, "dnp3") else ("10", "1"))
               for f in frames)
    functions = [ints(f["dnp3.al.func"])[0] for f in frames]
    assert dict(Counter(DNP3_FUNCTIONS[fc] for fc in functions)) == demo.described.messages["dnp3"]
    # start-up: integrity poll, clear restart, record current time, write g50v3, enable unsolicited
    assert functions[:10] == [1, 129, 2, 129, 24, 129, 2, 129, 20, 129]
    assert ints(frames[0]["dnp3.al.obj"]) == [0x3C02, 0x3C03, 0x3C04, 0x3C01]
    assert [ints(f["dnp3.al.iin"])[0] for f in frames[1:10:2]] == [0x9000, 0x1000, 0x1000, 0x0000, 0x0000]
    assert ints(frames[6]["dnp3.al.obj"]) == [0x3203]
    recorded = Decimal(frames[4]["frame.time_epoch"])
    assert wall_clock(frames[6]["dnp3.al.timestamp"]) == recorded.quantize(Decimal("0.001"), "ROUND_DOWN")
    integrity = [f for f in frames if ints(f["dnp3.al.obj"]) == [0x0102, 0x1E01, 0x1E05]]
    assert len(integrity) == 3
    for f in integrity:
        values = ints(f["dnp3.al.ana.int"])
        amps, volts, power = values[:3], values[3:6], values[6:]
        assert all(150 <= a <= 260 for a in amps) and all(7100 <= v <= 7300 for v in volts)
        assert 3500 <= power[0] <= 5200 and 600 <= power[1] <= 1300
        hz, pf, oil, battery = floats(f["dnp3.al.ana.float"])
        assert 59.95 <= hz <= 60.05 and 0.95 <= pf <= 0.99 and 45 <= oil <= 65 and 128.5 <= battery <= 130.5
    # select and operate of a CROB (pulse on 500 ms) on index 0, both answered "success"
    select = functions.index(3)
    assert functions[select:select + 4] == [3, 129, 4, 129]
    for f in frames[select:select + 4]:
        assert ints(f["dnp3.al.obj"]) == [0x0C01] and f["dnp3.al.on_time"] == "500"
        assert f["dnp3.al.ctrlstatus"] == "0"
    # unsolicited responses ask for confirmation and get it, same sequence number
    for n, fc in enumerate(functions):
        if fc == 130:
            unsolicited, confirm = ints(frames[n]["dnp3.al.ctl"])[0], ints(frames[n + 1]["dnp3.al.ctl"])[0]
            assert unsolicited & 0xF0 == 0xF0 and (functions[n + 1], confirm & 0xF0) == (0, 0xD0)
            assert unsolicited & 0x0F == confirm & 0x0F
    breaker = next(f for f in frames if 0x0202 in ints(f["dnp3.al.obj"]))
    assert ints(breaker["dnp3.al.obj"]) == [0x0202, 0x2003]
    assert breaker["dnp3.al.biq.b7"].split("|")[0] == "1"  # the breaker closed
    # the integrity polls before the operate see it open, the one after sees it closed
    assert [f["dnp3.al.biq.b7"].split("|")[0] == "1" for f in integrity] == [False, False, True]


S7_FUNCTIONS = {0xF0: "setup_communication", 0x04: "read_var", 0x05: "write_var"}


def s7_kind(f: dict[str, str]) -> str:
    if not f["s7comm.header.rosctr"]:
        return {0x0E: "cotp_connect_request", 0x0D: "cotp_connect_confirm"}[ints(f["cotp.type"])[0]]
    rosctr = int(f["s7comm.header.rosctr"])
    if rosctr == 7:
        assert int(f["s7comm.param.userdata.subfunc"]) == 1  # read SZL
        return "userdata:read_szl_" + {4: "request", 8: "response"}[int(f["s7comm.param.userdata.type"])]
    return {1: "job", 3: "ack_data"}[rosctr] + ":" + S7_FUNCTIONS[ints(f["s7comm.param.func"])[0]]


def test_s7comm(demo: Demo) -> None:
    frames = of(demo, "s7comm")
    assert dict(Counter(s7_kind(f) for f in frames)) == demo.described.messages["s7comm"]
    # the HMI asks for an OP connection, the engineering workstation for a PG one, both to rack 0 slot 2
    requests = [f for f in frames if f["cotp.type"] and ints(f["cotp.type"])[0] == 0x0E]
    assert [(f["ip.src"], f["cotp.dst-tsap"]) for f in requests] == [("10.10.1.10", "0x0202"),
                                                                   ("10.10.1.20", "0x0102")]
    assert {f["s7comm.param.pdu_length"] for f in frames if s7_kind(f) == "ack_data:setup_communication"} == {"240"}
    # every job's ack-data carries its PDU reference
    jobs = {(f["tcp.srcport"], f["s7comm.header.pduref"]) for f in frames if s7_kind(f).startswith("job:")}
    acks = {(f["tcp.dstport"], f["s7comm.header.pduref"]) for f in frames if s7_kind(f).startswith("ack_data:")}
    assert jobs == acks
    polls = [f for f in frames if f["ip.src"] == "10.10.1.10" and s7_kind(f) == "job:read_var"]
    assert len(polls) > 50
    assert all(ints(f["s7comm.param.item.area"]) == [0x84, 0x84, 0x83, 0x84] and ints(f["s7comm.param.item.db"])
               == [1, 1, 0, 1] and ints(f["s7comm.param.item.address"]) == [0, 32, 80, 64] for f in polls)
    answers = [f["s7comm.resp.data"].split("|") for f in frames
               if f["ip.dst"] == "10.10.1.10" and s7_kind(f) == "ack_data:read_var"]
    assert len(answers) == len(polls) and all(f["s7comm.data.returncode"] == "0xff|0xff|0xff|0xff" for f in frames
                                               if f["ip.dst"] == "10.10.1.10" and s7_kind(f) == "ack_data:read_var")
    levels = [int(a[0], 16) for a in answers]
    assert max(abs(a - b) for a, b in zip(levels, levels[1:])) <= 4 and all(0 <= v <= 1000 for v in levels)
    assert all(30.0 < struct.unpack(">f", bytes.fromhex(a[1]))[0] < 55.0 for a in answers)  # flow, REAL
    assert {a[2] for a in answers} <= {"00", "01"}  # M10.0
    setpoints = [int(a[3], 16) for a in answers]
    changes = [(a, b) for a, b in zip(setpoints, setpoints[1:]) if a != b]
    # the engineering workstation identifies the CPU, writes DB1.DBW8, reads it back
    ews = [f for f in frames if "10.10.1.20" in (f["ip.src"], f["ip.dst"]) and f["s7comm.header.rosctr"]]
    assert [s7_kind(f) for f in ews][2:] == ["userdata:read_szl_request", "userdata:read_szl_response",
                                             "job:write_var", "ack_data:write_var", "job:read_var",
                                             "ack_data:read_var"]
    szl = ews[3]
    assert ints(szl["s7comm.data.userdata.szl_id"]) == [0x0011]
    assert szl["s7comm.szl.xy11.0001.anz"].split("|")[0] == "6ES7 315-2EH14-0AB0 "
    written = int(ews[4]["s7comm.resp.data"], 16)
    assert ews[5]["s7comm.data.returncode"] == "0xff"
    assert int(ews[7]["s7comm.resp.data"], 16) == written
    assert changes == [(650, written)]  # the HMI sees the setpoint change once, to the written value


ENIP_COMMANDS = {0x63: "list_identity", 0x65: "register_session", 0x66: "unregister_session", 0x6F: "send_rr_data"}
CIP_SERVICES = {0x0E: "get_attribute_single", 0x4C: "read_tag"}


def enip_kinds(f: dict[str, str]) -> list[str]:
    side = "request" if to_server(f, "enip") else "reply"
    kinds = [f"{side}:{ENIP_COMMANDS[ints(f['enip.command'])[0]]}"]
    for service in ints(f["cip.service"]):
        kinds.append(f"cip:{CIP_SERVICES[service & 0x7F]}" + ("_reply" if service & 0x80 else ""))
    return kinds


def test_enip(demo: Demo) -> None:
    frames = of(demo, "enip")
    assert dict(Counter(k for f in frames for k in enip_kinds(f))) == demo.described.messages["enip"]
    request, reply = frames[:2]
    assert (request["ip.dst"], request["udp.dstport"]) == ("10.10.255.255", "44818")
    assert (reply["ip.src"], reply["ip.dst"], reply["udp.srcport"]) == ("10.10.2.31", "10.10.1.20", "44818")
    assert reply["udp.dstport"] == request["udp.srcport"]
    assert (ints(reply["enip.lir.vendor"]), reply["enip.lir.devtype"], reply["enip.lir.name"]) == (
        [1], "14", "1769-L33ER/A LOGIX5333ER")
    session = frames[3]["enip.session"]
    assert ints(frames[2]["enip.session"]) == [0] and ints(session)[0] != 0
    assert all(f["enip.session"] == session for f in frames[3:])
    assert [enip_kinds(f)[0] for f in frames[2:]][-1] == "request:unregister_session"
    assert next(f for f in frames if f["cip.id.product_name"])["cip.id.product_name"] == "1769-L33ER/A LOGIX5333ER"
    tags = [f for f in frames if ints(f["cip.service"]) == [0xCC]]
    assert len(tags) == 3 and all(f["cip.symbol"] == "Tank_Level" and f["cip.genstat"] == "0x00" for f in tags)
    for f in tags:
        data_type, level = struct.unpack("<Hf", bytes.fromhex(f["cip.data"]))
        assert data_type == 0x00CA and 0.0 <= level <= 100.0  # a REAL: the tank level in %


IEC104_TYPES = {1: "M_SP_NA_1", 13: "M_ME_NC_1", 36: "M_ME_TF_1", 45: "C_SC_NA_1", 100: "C_IC_NA_1", 103: "C_CS_NA_1"}
IEC104_CAUSES = {3: "spont", 6: "act", 7: "actcon", 10: "actterm", 11: "retrem", 20: "inrogen"}
IEC104_U = {0x01: "STARTDT act", 0x02: "STARTDT con", 0x10: "TESTFR act", 0x20: "TESTFR con"}  # as tshark numbers


def iec104_kind(f: dict[str, str]) -> str:
    apci = ints(f["iec60870_104.type"])[0]
    if apci == 3:
        return IEC104_U[ints(f["iec60870_104.utype"])[0]]
    if apci == 1:
        return "S"
    return f"{IEC104_TYPES[int(f['iec60870_asdu.typeid'])]} {IEC104_CAUSES[int(f['iec60870_asdu.causetx'])]}"


def test_iec104(demo: Demo) -> None:
    frames = of(demo, "iec104")
    kinds = [iec104_kind(f) for f in frames]
    assert dict(Counter(kinds)) == demo.described.messages["iec104"]
    assert kinds[:9] == ["STARTDT act", "STARTDT con", "C_IC_NA_1 act", "C_IC_NA_1 actcon", "M_SP_NA_1 inrogen",
                         "M_ME_NC_1 inrogen", "C_IC_NA_1 actterm", "C_CS_NA_1 act", "C_CS_NA_1 actcon"]
    assert {f["iec60870_asdu.addr"] for f in frames if f["iec60870_asdu.addr"]} == {"47"}
    # N(S) counts each direction's I-frames; N(R) never acknowledges more than was received
    sent = {True: 0, False: 0}
    for f in frames:
        client = to_server(f, "iec104")
        if ints(f["iec60870_104.type"])[0] == 0:
            assert int(f["iec60870_104.tx"]) == sent[client] and int(f["iec60870_104.rx"]) <= sent[not client]
            sent[client] += 1
        elif ints(f["iec60870_104.type"])[0] == 1:
            assert client and int(f["iec60870_104.rx"]) == sent[False]
    gi = frames[5]
    assert ints(gi["iec60870_asdu.ioa"]) == list(range(2001, 2007))
    kv, amps1, amps2, mw, mvar, hz = floats(gi["iec60870_asdu.float"])
    assert 109 <= kv <= 112 and 200 <= amps1 <= 420 and 45 <= mw <= 70 and 49.95 <= hz <= 50.05
    assert frames[4]["iec60870_asdu.siq.spi"].split("|")[0] == "0"  # breaker 1001 open at start
    # spontaneous measurands carry the time they were measured, just before they are sent
    for f in (f for f, k in zip(frames, kinds) if k == "M_ME_TF_1 spont"):
        sent_at = Decimal(f["frame.time_epoch"])
        assert all(Decimal("0") <= sent_at - wall_clock(t) < Decimal("0.1")
                   for t in f["iec60870_asdu.cp56time"].split("|"))
    # idle for t3: the front-end tests the link 20 s after it last heard from the RTU
    test = kinds.index("TESTFR act")
    heard = max(Decimal(f["frame.time_epoch"]) for f in frames[:test] if not to_server(f, "iec104"))
    assert Decimal(frames[test]["frame.time_epoch"]) - heard == 20
    assert kinds[test + 1] == "TESTFR con"
    # select before operate, the breaker's new position (cause 11), termination
    command = kinds.index("C_SC_NA_1 act")
    assert kinds[command:command + 6] == ["C_SC_NA_1 act", "C_SC_NA_1 actcon", "C_SC_NA_1 act", "C_SC_NA_1 actcon",
                                          "M_SP_NA_1 retrem", "C_SC_NA_1 actterm"]
    assert [frames[command + n]["iec60870_asdu.sco.se"] for n in (0, 1, 2, 3)] == ["1", "1", "0", "0"]
    closed = frames[command + 4]
    assert (closed["iec60870_asdu.ioa"], closed["iec60870_asdu.siq.spi"]) == ("1001", "1")


BACNET_KINDS = {(1, 8): "who_is", (1, 0): "i_am", (0, 12): "read_property", (3, 12): "read_property_ack",
                (0, 14): "read_property_multiple", (3, 14): "read_property_multiple_ack",
                (0, 15): "write_property", (2, 15): "write_property_ack"}


def bacnet_kind(f: dict[str, str]) -> str:
    apdu = int(f["bacapp.type"])
    service = f["bacapp.unconfirmed_service"] if apdu == 1 else f["bacapp.confirmed_service"]
    return BACNET_KINDS[apdu, int(service)]


def test_bacnet(demo: Demo) -> None:
    frames = of(demo, "bacnet")
    kinds = [bacnet_kind(f) for f in frames]
    assert dict(Counter(kinds)) == demo.described.messages["bacnet"]
    assert kinds[:3] == ["who_is", "i_am", "i_am"]
    assert all(f["ip.dst"] == "10.10.255.255" and ints(f["bvlc.function"]) == [0x0B] for f in frames[:3])
    assert sorted((f["ip.src"], f["bacapp.instance_number"], f["bacapp.vendor_identifier"]) for f in frames[1:3]) == [
        ("10.10.4.21", "1021", "8"), ("10.10.4.22", "1022", "8")]  # vendor 8: Delta Controls
    ranges = {"1": (11.0, 16.0), "2": (20.0, 25.0), "3": (35.0, 60.0)}
    acks = [f for f, k in zip(frames, kinds) if k == "read_property_ack" and f["bacapp.objectType"] == "0"]
    assert len(acks) > 20
    for f in acks:
        low, high = ranges[f["bacapp.instance_number"]]
        assert low <= float(f["bacapp.present_value.real"]) <= high and f["bacapp.property_identifier"] == "85"
    # every confirmed request gets exactly one answer with its invoke id, from the device asked
    asked = [(f["bacapp.invoke_id"], f["ip.dst"]) for f in frames if f["bacapp.type"] == "0"]
    answered = [(f["bacapp.invoke_id"], f["ip.src"]) for f in frames if f["bacapp.type"] in ("2", "3")]
    assert asked == answered
    multiple = frames[kinds.index("read_property_multiple_ack")]
    assert ints(multiple["bacapp.property_identifier"]) == [85, 111, 117, 85, 77]
    assert multiple["bacapp.object_name"] == "AHU-1 Return Air Temp"
    # write the zone setpoint at priority 8 (context tag 4), simple-ACK, read it back
    write = kinds.index("write_property")
    value = float(frames[write]["bacapp.present_value.real"])
    assert (frames[write]["bacapp.objectType"], frames[write]["bacapp.instance_number"]) == ("2", "1")
    assert frames[write]["udp.payload"].endswith("4908") and kinds[write + 1] == "write_property_ack"
    assert kinds[write + 2:write + 4] == ["read_property", "read_property_ack"]
    assert float(frames[write + 3]["bacapp.present_value.real"]) == value != 21.0
