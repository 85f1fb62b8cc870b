"""The flow table through the sensor: directions, close and linger, port reuse, idle and absolute
timeouts, the flow cap and its eviction, and end of input -- with timestamps carried by crafted
packets, as in a capture."""

from __future__ import annotations

import logging
from typing import Any

from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether

from sensor.capture import LINKTYPE_ETHERNET, Packet
from sensor.decode import reverse_key
from sensor.dissect import Dissector, Event
from sensor.flows import CLOSED_LINGER, FlowTable
from sensor.pipeline import Sensor
from sensor.settings import FlowSettings, SensorSettings

logging.getLogger("scapy.runtime").setLevel(logging.ERROR)

# Explicit addresses: a bare Ether() makes scapy look the destination MAC up on the network.
L2 = {"src": "02:00:00:00:00:01", "dst": "02:00:00:00:00:02"}

A, B = "10.2.0.1", "10.2.0.2"
T0 = 1_700_000_000.0


def tcp(ts: float, src: tuple[str, int], dst: tuple[str, int], flags: str, seq: int = 0, ack: int = 0,
        data: bytes = b"") -> Packet:
    frame = Ether(**L2) / IP(src=src[0], dst=dst[0]) / TCP(sport=src[1], dport=dst[1], flags=flags, seq=seq,
                                                          ack=ack) / data
    return (ts, LINKTYPE_ETHERNET, bytes(frame), "eth0")


def udp(ts: float, src: tuple[str, int], dst: tuple[str, int], data: bytes = b"x") -> Packet:
    frame = Ether(**L2) / IP(src=src[0], dst=dst[0]) / UDP(sport=src[1], dport=dst[1]) / data
    return (ts, LINKTYPE_ETHERNET, bytes(frame), "eth0")


def session(ts: float, client: tuple[str, int], server: tuple[str, int], data: bytes = b"hi",
            c_isn: int = 100, s_isn: int = 9000) -> list[Packet]:
    """A whole connection: handshake, one request, one answer, FIN both ways, last ACK."""
    c, s = client, server
    n = len(data)
    return [
        tcp(ts, c, s, "S", c_isn),
        tcp(ts + 0.001, s, c, "SA", s_isn, c_isn + 1),
        tcp(ts + 0.002, c, s, "A", c_isn + 1, s_isn + 1),
        tcp(ts + 0.003, c, s, "PA", c_isn + 1, s_isn + 1, data),
        tcp(ts + 0.004, s, c, "PA", s_isn + 1, c_isn + 1 + n, data.upper()),
        tcp(ts + 0.005, c, s, "FA", c_isn + 1 + n, s_isn + 1 + n),
        tcp(ts + 0.006, s, c, "FA", s_isn + 1 + n, c_isn + 2 + n),
        tcp(ts + 0.007, c, s, "A", c_isn + 2 + n, s_isn + 2 + n),
    ]


def sensor_with(flows: FlowSettings | None = None, dissectors: list[Dissector] | None = None
                ) -> tuple[Sensor, list[Event]]:
    events: list[Event] = []
    sensor = Sensor(SensorSettings(sensor_id="t", flows=flows or FlowSettings()), sink=events.append,
                    dissectors=dissectors or [])
    return sensor, events


def ends(events: list[Event]) -> list[Event]:
    return [e for e in events if e.get("event.action") == "connection-end"]


def starts(events: list[Event]) -> list[Event]:
    return [e for e in events if e.get("event.action") == "connection-start"]


def endpoints(event: Event) -> tuple[Any, ...]:
    return event["source.ip"], event["source.port"], event["destination.ip"], event["destination.port"]


# -- directions and the two keys of a flow ------------------------------------------------------------


def test_both_directions_find_their_half_of_one_flow() -> None:
    sensor, _ = sensor_with()
    sensor.run(session(T0, (A, 40000), (B, 502))[:5])
    table = sensor.table
    assert len(table.flows) == 1 and len(table.by_key) == 2
    (flow,) = table.flows.values()
    assert table.by_key[flow.key] is flow.client and table.by_key[reverse_key(flow.key)] is flow.server
    assert flow.client.peer is flow.server and flow.server.peer is flow.client
    assert flow.client.to_server and not flow.server.to_server
    assert (flow.client.packets, flow.server.packets, flow.client.bytes, flow.server.bytes) == (3, 2, 2, 2)


def test_history_letters_once_each_client_upper_server_lower() -> None:
    sensor, events = sensor_with()
    sensor.run(session(T0, (A, 40000), (B, 502)))
    (end,) = ends(events)
    assert end["icsmon.flow.history"] == "ShDdFf"


# -- close, linger, trailing packets, port reuse --------------------------------------------------------


def test_fin_fin_reports_once_and_trailing_ack_makes_no_new_flow() -> None:
    sensor, events = sensor_with()
    packets = session(T0, (A, 40000), (B, 502))
    packets.append(tcp(T0 + 0.5, (B, 502), (A, 40000), "A", 9004, 104))  # a late duplicate ACK
    sensor.run(packets)
    (end,) = ends(events)
    assert end["icsmon.flow.state"] == "closed"
    assert (end["source.packets"], end["destination.packets"]) == (4, 3)
    assert (end["source.bytes"], end["destination.bytes"]) == (2, 2)
    assert end["event.end"] == packets[6][0]  # the second FIN
    assert sensor.table.created == 1 and len(sensor.table.flows) == 1  # lingering
    # After the linger time a sweep forgets the flow, without reporting it again.
    sensor.run([udp(T0 + CLOSED_LINGER + 10, (A, 1), (B, 2))])
    assert len(ends(events)) == 1
    assert all(f.proto == 17 for f in sensor.table.flows.values())
    sensor.finish()
    assert sensor.stats_dict()["flows"]["ended"] == 2


def test_rst_ends_the_flow_in_state_reset() -> None:
    sensor, events = sensor_with()
    c, s = (A, 40000), (B, 502)
    sensor.run([tcp(T0, c, s, "S", 1), tcp(T0 + 0.1, s, c, "RA", 0, 2), tcp(T0 + 0.2, c, s, "S", 1)])
    (end,) = ends(events)
    assert end["icsmon.flow.state"] == "reset" and end["icsmon.flow.history"] == "Sr"
    # The retransmitted SYN after the reset, within the linger time, is a new connection attempt.
    assert sensor.table.created == 2


def test_port_reuse_right_after_close_is_a_new_flow_with_exact_counts() -> None:
    sensor, events = sensor_with()
    c, s = (A, 40000), (B, 502)
    first = session(T0, c, s, b"one", c_isn=100)
    second = session(T0 + 0.5, c, s, b"second", c_isn=777_777)  # within the closed flow's linger
    sensor.run(first + second)
    sensor.finish()
    assert [e["icsmon.flow.state"] for e in ends(events)] == ["closed", "closed"]
    assert len(starts(events)) == 2 and sensor.table.created == 2
    for end, data in zip(ends(events), (b"one", b"second"), strict=True):
        assert (end["source.packets"], end["destination.packets"]) == (4, 3)
        assert (end["source.bytes"], end["destination.bytes"]) == (len(data), len(data))
        assert endpoints(end) == (A, 40000, B, 502)
    assert ends(events)[1]["event.start"] == second[0][0]
    assert ends(events)[1]["source.mac"] == ends(events)[0]["source.mac"]


def test_port_reuse_long_after_close_is_a_new_flow() -> None:
    sensor, events = sensor_with()
    c, s = (A, 40000), (B, 502)
    sensor.run(session(T0, c, s) + session(T0 + 60, c, s, c_isn=5))
    sensor.finish()
    assert len(starts(events)) == 2 and [e["icsmon.flow.state"] for e in ends(events)] == ["closed", "closed"]
    assert all((e["source.packets"], e["destination.packets"]) == (4, 3) for e in ends(events))


# -- timeouts --------------------------------------------------------------------------------------------


def test_idle_timeouts_per_transport() -> None:
    flows = FlowSettings(tcp_idle_timeout=30, udp_idle_timeout=10, sweep_interval=1)
    sensor, events = sensor_with(flows)
    c, s = (A, 40000), (B, 502)
    sensor.run([tcp(T0, c, s, "S", 1), tcp(T0 + 0.1, s, c, "SA", 50, 2), udp(T0, (A, 50000), (B, 2222))])
    # Keep time moving with unrelated traffic.
    sensor.run([udp(T0 + t, (A, 6000 + t), (B, 1)) for t in range(1, 12)])
    idle = [e for e in ends(events) if e["icsmon.flow.state"] == "timeout-idle"]
    assert [endpoints(e) for e in idle] == [(A, 50000, B, 2222)]  # UDP after 10 s; TCP not yet
    assert T0 + 10 < idle[0]["@timestamp"] <= T0 + 12
    assert idle[0]["event.end"] == T0
    sensor.run([udp(T0 + t, (A, 6000 + t), (B, 1)) for t in range(12, 33)])
    tcp_end = [e for e in ends(events) if e["destination.port"] == 502]
    assert len(tcp_end) == 1 and tcp_end[0]["icsmon.flow.state"] == "timeout-idle"
    assert tcp_end[0]["event.duration"] == round(((T0 + 0.1) - T0) * 1e9)  # float seconds: ~0.1 s
    stats = sensor.stats_dict()
    assert stats["flows"]["timed_out"] == stats["flows"]["ended_by_state"]["timeout-idle"] >= 2


def test_active_flow_is_not_idle() -> None:
    flows = FlowSettings(udp_idle_timeout=10, sweep_interval=1)
    sensor, events = sensor_with(flows)
    sensor.run([udp(T0 + t * 5, (A, 5000), (B, 47808)) for t in range(10)])
    assert ends(events) == []


def test_absolute_timeout_reports_long_flows_and_restarts_them() -> None:
    flows = FlowSettings(absolute_timeout=30, sweep_interval=1, tcp_idle_timeout=300)
    sensor, events = sensor_with(flows)
    c, s = (A, 40000), (B, 502)
    packets = [tcp(T0, c, s, "S", 1), tcp(T0 + 0.1, s, c, "SA", 50, 2)]
    for i in range(1, 11):  # a polling connection: one request every 5 s for 50 s
        packets.append(tcp(T0 + 5 * i, c, s, "PA", 1 + i, 51, b"x"))
    sensor.run(packets)
    (end,) = ends(events)
    assert end["icsmon.flow.state"] == "timeout-absolute"
    assert T0 + 30 < end["@timestamp"] <= T0 + 36
    assert endpoints(end) == (A, 40000, B, 502)
    # The connection goes on as a new, mid-stream flow.
    assert len(starts(events)) == 2
    assert starts(events)[1]["icsmon.flow.midstream"] is True
    assert endpoints(starts(events)[1]) == (A, 40000, B, 502)


def test_timestamps_going_backwards_never_make_negative_durations() -> None:
    """Merged or reordered captures: a flow's end is its latest packet, not its last one read."""
    sensor, events = sensor_with()
    packets = [udp(T0 + 10, (A, 50000), (B, 2222)), udp(T0 + 12, (B, 2222), (A, 50000)),
               udp(T0 + 11, (A, 50000), (B, 2222)), udp(T0 + 9, (A, 50000), (B, 2222))]
    sensor.run(packets)
    sensor.finish()
    (end,) = ends(events)
    assert end["event.end"] == T0 + 12
    assert end["event.duration"] >= round(2 * 1e9) - 1000


# -- the flow cap ----------------------------------------------------------------------------------------


def test_max_flows_evicts_the_oldest_and_counts_it() -> None:
    sensor, events = sensor_with(FlowSettings(max_flows=3))
    sensor.run([udp(T0 + i, (A, 1000 + i), (B, 53)) for i in range(5)])
    assert len(sensor.table.flows) == 3
    evicted = [e for e in ends(events) if e["icsmon.flow.state"] == "evicted"]
    assert [e["source.port"] for e in evicted] == [1000, 1001]
    assert [e["@timestamp"] for e in evicted] == [T0 + 3, T0 + 4]
    stats = sensor.stats_dict()
    assert stats["flows"]["evicted"] == 2 and stats["flows"]["active"] == 3 and stats["flows"]["created"] == 5
    # The survivors are the newest ones and still work in both directions.
    sensor.run([udp(T0 + 6, (B, 53), (A, 1004))])
    assert len(sensor.table.flows) == 3 and sensor.table.created == 5


def test_flow_count_never_exceeds_the_cap() -> None:
    sensor, _ = sensor_with(FlowSettings(max_flows=10))

    def source() -> Any:
        for i in range(300):
            yield tcp(T0 + i * 0.01, (A, 2000 + i), (B, 502), "S", i)
            assert len(sensor.table.flows) <= 10
            assert len(sensor.table.by_key) <= 20

    sensor.run(source())
    assert sensor.stats_dict()["flows"]["evicted"] == 290


# -- end of input ----------------------------------------------------------------------------------------


def test_finish_reports_open_flows_as_end_of_capture() -> None:
    sensor, events = sensor_with()
    sensor.run([udp(T0, (A, 1), (B, 2)), tcp(T0 + 1, (A, 40000), (B, 502), "S", 1)])
    assert ends(events) == []
    sensor.finish()
    assert sorted(e["icsmon.flow.state"] for e in ends(events)) == ["end-of-capture", "end-of-capture"]
    assert sensor.stats_dict()["flows"] == {"created": 2, "active": 0, "ended": 2,
                                            "ended_by_state": {"end-of-capture": 2}, "timed_out": 0,
                                            "evicted": 0}


# -- FlowTable directly -----------------------------------------------------------------------------------


def test_flow_table_end_forgets_both_keys_and_reports_once() -> None:
    reported: list[tuple[str, float]] = []
    table = FlowTable(FlowSettings(), lambda flow, ts, state: reported.append((state, ts)))
    key = bytes(8) + b"\x9c\x40\x01\xf6\x06"
    half = table.create(key, 6, 5.0, "eth0", sender_is_client=False)
    flow = half.flow
    assert half is flow.server and flow.key == reverse_key(key)
    table.close(flow, 6.0, "closed")
    table.close(flow, 6.5, "reset")  # a second close changes nothing
    table.end(flow, 9.0, "closed")
    table.end(flow, 9.5, "evicted")
    assert reported == [("closed", 6.0)]
    assert table.flows == {} and table.by_key == {}
    assert table.ended == {"closed": 1}
