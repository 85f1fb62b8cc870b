"""Live capture on a real wire: a veth pair between two fresh network namespaces.

One end (``cap0``) is the mirror port the sensor listens on; shared captures
are replayed into the other end (``tx0``) with tcpreplay. The in-process
tests compare what :class:`LiveCapture` hands out with the file's frames
read by scapy; the command-line tests run ``icsmon live`` as a user does and
compare its events with ``icsmon read`` of the same file.

Needs root (CI runs as root): network namespaces, veth and raw sockets.
"""

from __future__ import annotations

import json
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Dot1AD, Dot1Q, Ether
from scapy.utils import RawPcapReader, wrpcap

from sensor.capture import LINKTYPE_ETHERNET, CaptureError, CaptureStats, Packet
from sensor.capture.bpf import accept_all, compile_filter, instructions
from sensor.capture.live import STOP_DRAIN_SECONDS, LiveCapture
from tests.api.test_cli_alerts import WRITE_RULE
from tests.sensor.capture.wire import REPO, Wire, capturing, drive_live, icsmon, inside, replay, run_live, sh

pytestmark = pytest.mark.live

PCAPS = REPO.parent / "shared" / "pcaps"
MODBUS = PCAPS / "iti/pcaps/ModbusTCP/Modbus/modbus_test.pcap"  # 2257 frames, Modbus/TCP on port 502
DNP3 = PCAPS / "icsnpp-dnp3/testing/traces/dnp3_example.pcap"  # 834 frames, DNP3 on port 20000



def file_frames(*pcaps: Path) -> list[bytes]:
    return [bytes(data) for pcap in pcaps for data, _meta in RawPcapReader(str(pcap))]


def capture_replay(w: Wire, pcaps: list[Path], expected: int, **options: Any
                   ) -> tuple[list[Packet], CaptureStats, LiveCapture]:
    """Capture on the wire while ``pcaps`` are replayed; stop once ``expected`` frames arrived.

    stop() lets the capture drain what the kernel still holds, so frames beyond ``expected``
    (which would be a bug) are still seen.
    """
    with inside(w.capture_ns):
        capture = LiveCapture(w.capture_if, **options)
    packets: list[Packet] = []

    def read() -> None:
        for packet in capture:
            packets.append(packet)

    with capture:
        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        replay(w, *pcaps)
        deadline = time.monotonic() + 10
        while len(packets) < expected and time.monotonic() < deadline:
            time.sleep(0.01)
        capture.stop()
        reader.join(2)
        assert not reader.is_alive(), "the capture did not stop"
        stats = capture.stats()
    return packets, stats, capture


# -- the source in-process -------------------------------------------------------------------------

def test_ring_delivers_every_frame_unchanged(wire: Wire) -> None:
    expected = file_frames(MODBUS, DNP3)
    started = time.time()
    packets, stats, capture = capture_replay(wire, [MODBUS, DNP3], len(expected))
    assert capture.mode == "tpacket_v3"
    assert [frame for _ts, _lt, frame, _if in packets] == expected
    assert {(lt, name) for _ts, lt, _f, name in packets} == {(LINKTYPE_ETHERNET, "cap0")}
    stamps = [ts for ts, _lt, _f, _if in packets]
    assert stamps == sorted(stamps)
    assert started <= stamps[0] and stamps[-1] <= time.time()  # the kernel's receive time
    assert stats.received == len(expected)
    assert stats.kernel_dropped == 0 and stats.interface_dropped == 0
    assert stats.extra["tpacket_v3"] == 1 and stats.extra["kernel_packets"] == len(expected)
    assert stats.extra["ring_full"] == 0 and stats.extra["truncated"] == 0


def test_recvmsg_fallback_delivers_the_same(wire: Wire) -> None:
    expected = file_frames(DNP3)
    started = time.time()
    packets, stats, capture = capture_replay(wire, [DNP3], len(expected), use_ring=False)
    assert capture.mode == "recvmsg" and capture.ring_error == "disabled"
    assert [frame for _ts, _lt, frame, _if in packets] == expected
    assert started <= packets[0][0] <= packets[-1][0] <= time.time()
    assert stats.received == len(expected) and stats.kernel_dropped == 0
    assert stats.extra["tpacket_v3"] == 0


@pytest.mark.parametrize("use_ring", [True, False], ids=["ring", "recvmsg"])
def test_vlan_tags_are_put_back(wire: Wire, tmp_path: Path, use_ring: bool) -> None:
    """The kernel strips the outer 802.1Q/802.1ad tag on receive; the frame must come out as sent."""
    payload = IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=40000, dport=502, flags="PA") / (b"\x00" * 12)
    frames = [
        Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / Dot1Q(vlan=10, prio=5) / payload,
        Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / Dot1Q(vlan=0, prio=3) / payload,
        Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / Dot1AD(vlan=100) / Dot1Q(vlan=20) / payload,
        Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / payload,
    ]
    pcap = tmp_path / "vlan.pcap"
    wrpcap(str(pcap), frames)
    packets, stats, _ = capture_replay(wire, [pcap], len(frames), use_ring=use_ring)
    assert [frame for _ts, _lt, frame, _if in packets] == [bytes(f) for f in frames]
    assert stats.extra["vlan_tags_restored"] == 3


def test_filter_lets_only_modbus_through(wire: Wire) -> None:
    expected = file_frames(MODBUS)
    packets, stats, _ = capture_replay(wire, [DNP3, MODBUS], len(expected), bpf_filter="tcp port 502")
    assert [frame for _ts, _lt, frame, _if in packets] == expected
    assert stats.received == len(expected) and stats.kernel_dropped == 0


def test_snaplen_truncates_in_the_kernel(wire: Wire) -> None:
    expected = file_frames(DNP3)
    packets, stats, _ = capture_replay(wire, [DNP3], len(expected), snaplen=64)
    assert [frame for _ts, _lt, frame, _if in packets] == [frame[:64] for frame in expected]
    assert stats.extra["truncated"] == len(expected)


def promiscuity(w: Wire) -> int:
    details = json.loads(sh("ip", "-n", w.capture_ns, "-d", "-j", "link", "show", w.capture_if).stdout)
    return int(details[0]["promiscuity"])


def test_stop_ends_an_idle_capture_quickly(wire: Wire) -> None:
    with inside(wire.capture_ns):
        capture = LiveCapture(wire.capture_if)
    with capture:
        assert promiscuity(wire) == 1
        threading.Timer(0.2, capture.stop).start()
        started = time.monotonic()
        assert list(capture) == []
        elapsed = time.monotonic() - started
    assert 0.2 <= elapsed < 0.2 + STOP_DRAIN_SECONDS + 0.1, elapsed
    assert promiscuity(wire) == 0  # the kernel undid it when the socket closed


def test_packets_a_stop_leaves_in_the_ring_are_counted(wire: Wire, tmp_path: Path) -> None:
    """A consumer too slow to drain before the stop deadline: what stays in the ring is reported."""
    frame = bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP(src="10.0.0.1", dst="10.0.0.2")
                  / TCP(sport=40000, dport=502) / (b"\x00" * 12))
    total = 20000  # about three 1 MiB ring blocks
    pcap = tmp_path / "many.pcap"
    with pcap.open("wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, LINKTYPE_ETHERNET))
        for n in range(total):
            out.write(struct.pack("<IIII", n, 0, len(frame), len(frame)) + frame)
    with inside(wire.capture_ns):
        capture = LiveCapture(wire.capture_if)
    with capture:
        replay(wire, pcap, pps=200000)
        time.sleep(0.1)  # every block full or retired
        capture.stop()
        seen = 0
        for _packet in capture:
            if not seen:
                time.sleep(STOP_DRAIN_SECONDS * 1.5)
            seen += 1
        stats = capture.stats()
    assert stats.kernel_dropped == 0
    assert 0 < seen < total and stats.received == seen
    assert stats.extra["left_in_ring"] == total - seen


def test_outgoing_frames_are_not_reported(wire: Wire) -> None:
    """A mirror port sends nothing; if this host does send on the interface, those frames stay out."""
    frame = bytes(Ether(src="02:00:00:00:00:0a", dst="ff:ff:ff:ff:ff:ff", type=0x88B5) / (b"icsmon" * 10))
    with inside(wire.capture_ns):
        quiet = LiveCapture(wire.capture_if)
        loud = LiveCapture(wire.capture_if, include_outgoing=True)
        sender = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
        sender.bind((wire.capture_if, 0))
    with quiet, loud, sender:
        for _ in range(5):
            sender.send(frame)  # the test transmits here, never the sensor
        seen_loud: list[Packet] = []
        threading.Timer(5, loud.stop).start()  # a safety net: the loop below ends after five frames
        for packet in loud:
            seen_loud.append(packet)
            if len(seen_loud) == 5:
                break
        quiet.stop()
        assert list(quiet) == []
        assert [f for _ts, _lt, f, _if in seen_loud] == [frame] * 5
        assert quiet.stats().received == 0


def test_interface_errors_are_one_line(wire: Wire) -> None:
    with pytest.raises(CaptureError, match=r"^no such interface: eth9$"):
        LiveCapture("eth9")
    with inside(wire.capture_ns):
        with pytest.raises(CaptureError) as bad:
            LiveCapture(wire.capture_if, bpf_filter="tcp port")
        sh("ip", "link", "set", wire.capture_if, "down")
        with pytest.raises(CaptureError, match=r"^interface cap0 is down"):
            LiveCapture(wire.capture_if)
    assert "\n" not in str(bad.value)
    assert str(bad.value).startswith("bad capture filter 'tcp port': ") and "syntax error" in str(bad.value)


def test_filters_compile_with_the_snapshot_length_inside() -> None:
    """libpcap's program keeps ``snaplen`` bytes of a match and 0 of the rest; no filter keeps all."""
    program = instructions(compile_filter("tcp port 502", LINKTYPE_ETHERNET, 96))
    assert program[-2:] == [(0x06, 0, 0, 96), (0x06, 0, 0, 0)]
    assert instructions(accept_all(128)) == [(0x06, 0, 0, 128)]
    huge = " or ".join(f"ether[{n}:4] = {n}" for n in range(1, 2100))  # long, yet quick to optimise
    too_long = (r"^capture filter 'ether\[1:4\] = 1 or .{50,}\.\.\.' compiles to \d+ BPF instructions,"
                r" more than the kernel's 4096$")
    with pytest.raises(CaptureError, match=too_long):
        compile_filter(huge, LINKTYPE_ETHERNET, 96)


def test_without_capabilities_the_error_says_which() -> None:
    code = ("from sensor.capture.live import LiveCapture\n"
            "from sensor.capture import CaptureError\n"
            "try:\n    LiveCapture('lo')\nexcept CaptureError as e:\n    print(e)\n")
    result = sh("setpriv", "--bounding-set=-net_raw,-net_admin", "--inh-caps=-net_raw,-net_admin",
                sys.executable, "-c", code)
    assert result.stdout.strip() == (
        "capturing on lo needs CAP_NET_RAW and CAP_NET_ADMIN (run as root, or: setcap"
        " cap_net_raw,cap_net_admin+eip $(readlink -f $(which python3)))")


# -- the command line ------------------------------------------------------------------------------

def events_of(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


IGNORED = {"@timestamp", "observer.ingress.interface.name", "event.sequence"}


def time_derived(key: str) -> bool:
    leaf = key.rsplit(".", 1)[-1]
    return (leaf in ("start", "end", "duration", "created", "ingested") or "time" in leaf
            or leaf.endswith("_ms"))


def canonical(events: list[dict[str, Any]]) -> list[str]:
    """Events without capture time, order and interface, sorted: what live and file must share."""
    return sorted(json.dumps({k: v for k, v in e.items() if k not in IGNORED and not time_derived(k)},
                             sort_keys=True) for e in events)


def without_timeouts(protocols: dict[str, Any]) -> dict[str, Any]:
    def keep(sessions: dict[str, int]) -> dict[str, int]:
        return {k: n for k, n in sessions.items() if "timed_out" not in k}

    return {name: {**counts, "sessions": keep(counts["sessions"])} for name, counts in protocols.items()}


def flow_counts(events: list[dict[str, Any]]) -> dict[str, tuple[Any, ...]]:
    keys = ("source.packets", "destination.packets", "source.bytes", "destination.bytes", "network.packets",
            "network.bytes", "icsmon.flow.state", "icsmon.flow.history")
    return {e["network.community_id"]: tuple(e.get(k) for k in keys)
            for e in events if e.get("event.action") == "connection-end"}


@pytest.mark.parametrize(("pcap", "stop_signal"), [(MODBUS, signal.SIGINT), (DNP3, signal.SIGTERM)],
                         ids=["modbus-sigint", "dnp3-sigterm"])
def test_live_sees_what_read_sees(wire: Wire, tmp_path: Path, pcap: Path, stop_signal: int) -> None:
    read = subprocess.run(icsmon("read", str(pcap), "--events", str(tmp_path / "read.jsonl"),
                                 "--stats", str(tmp_path / "read.json"), "--sensor-id", "t", "-q"),
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert read.returncode == 0, read.stderr
    stats = run_live(wire, tmp_path, [pcap], stop_signal=stop_signal)
    expected_stats = json.loads((tmp_path / "read.json").read_text())
    expected, got = events_of(tmp_path / "read.jsonl"), events_of(tmp_path / "live.jsonl")
    assert isinstance(stats["drops"]["kernel"], int) and stats["drops"]["kernel"] == 0
    assert stats["drops"]["interface"] == 0
    assert stats["packets"] == expected_stats["packets"] and stats["bytes"] == expected_stats["bytes"]
    assert all(e["observer.ingress.interface.name"] == "cap0" for e in got)
    assert all(e.get("network.community_id") for e in got)
    assert len(flow_counts(got)) == expected_stats["flows"]["created"]
    assert flow_counts(got) == flow_counts(expected)
    assert canonical(got) == canonical(expected)
    # Replay compresses the capture's idle time, so time-based counters (request timeouts) differ.
    assert without_timeouts(stats["protocols"]) == without_timeouts(expected_stats["protocols"])
    assert stats["events_by_dataset"] == expected_stats["events_by_dataset"]


def test_live_filter_and_count(wire: Wire, tmp_path: Path) -> None:
    """--filter keeps only Modbus (the DNP3 replayed first never arrives); --count ends the run."""
    modbus_frames = len(file_frames(MODBUS))
    stats = run_live(wire, tmp_path, [DNP3, MODBUS], "--filter", "tcp port 502",
                     "--count", str(modbus_frames))
    events = events_of(tmp_path / "live.jsonl")
    assert stats["packets"] == modbus_frames and stats["drops"]["kernel"] == 0
    assert {e["network.protocol"] for e in events if "network.protocol" in e} == {"modbus"}
    assert {e["destination.port"] for e in events} == {502}


def test_live_duration_ends_the_run(wire: Wire, tmp_path: Path) -> None:
    started = time.monotonic()
    stats = run_live(wire, tmp_path, [], "--duration", "0.5")
    assert time.monotonic() - started >= 0.5
    assert stats["packets"] == 0 and stats["drops"] == {"kernel": 0, "interface": 0, "buffer": 0}


def test_live_missing_interface_is_one_line() -> None:
    result = subprocess.run(icsmon("live", "--interface", "nosuch9", "--duration", "1"), cwd=REPO,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert result.stderr.strip() == "icsmon: error: no such interface: nosuch9"


def test_live_bad_filter_is_one_line() -> None:
    result = subprocess.run(icsmon("live", "--interface", "lo", "--filter", "tcp port modbus-ish"),
                            cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("icsmon: error: bad capture filter 'tcp port modbus-ish': ")


def test_live_stopped_while_rules_load_still_reports(wire: Wire, tmp_path: Path) -> None:
    """SIGTERM as soon as the interface is open (rules still loading) ends the run cleanly with its stats."""
    command = icsmon("live", "--interface", wire.capture_if, "--stats", str(tmp_path / "live.json"), "-q",
                     namespace=wire.capture_ns)
    returncode, stderr = drive_live(command, capturing, stop_signal=signal.SIGTERM)
    assert returncode == 0, stderr
    assert json.loads((tmp_path / "live.json").read_text())["packets"] == 0


def test_live_events_reach_the_file_while_running(wire: Wire, tmp_path: Path) -> None:
    """On a link that goes quiet, the events seen so far are in the file within a second or two, not
    held in a buffer until the sensor stops."""
    events = tmp_path / "live.jsonl"
    lines_while_running: list[int] = []

    def replay_then_look() -> None:
        replay(wire, PCAPS / "iti/pcaps/IEC60870-5-104/TestDissectIec104.pcap")  # a few events, a few KiB
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not events.read_bytes().count(b"\n"):
            time.sleep(0.1)
        lines_while_running.append(events.read_bytes().count(b"\n"))

    command = icsmon("live", "--interface", wire.capture_if, "--events", str(events), "-q",
                     namespace=wire.capture_ns)
    returncode, stderr = drive_live(command, lambda pid: capturing(pid) and events.exists(), replay_then_look,
                                    stop_signal=signal.SIGINT)
    assert returncode == 0, stderr
    assert lines_while_running[0] > 10
    assert events.read_bytes().count(b"\n") >= lines_while_running[0]


@pytest.mark.parametrize("use_ring", [True, False], ids=["ring", "recvmsg"])
def test_housekeeping_runs_while_the_link_is_quiet(wire: Wire, use_ring: bool) -> None:
    """The reader's housekeeping is called in the reading thread with no packet arriving at all."""
    with inside(wire.capture_ns):
        capture = LiveCapture(wire.capture_if, use_ring=use_ring)
    calls: list[str] = []
    capture.housekeeping = lambda: calls.append(threading.current_thread().name)
    reader = threading.Thread(target=lambda: list(capture), name="reader", daemon=True)
    with capture:
        reader.start()
        time.sleep(0.6)
        capture.stop()
        reader.join(2)
    assert not reader.is_alive()
    assert len(calls) >= 4 and set(calls) == {"reader"}  # about one per poll (0.1 s)


def final_counts(alerts: Path) -> dict[str, int]:
    """Alert id -> count in its latest line of an ``--alerts`` file."""
    return {a["_id"]: a["icsmon.alert.count"] for a in map(json.loads, alerts.read_text().splitlines())}


def test_live_alert_updates_go_out_while_the_link_is_quiet(wire: Wire, tmp_path: Path) -> None:
    """Repeated hits update one alert; once the traffic stops, its final count is in the alerts file
    within about the update interval (1 s), not held back until the next packet or the stop."""
    rule = tmp_path / "rule.yml"
    rule.write_text(WRITE_RULE)
    read_alerts = tmp_path / "read-alerts.jsonl"
    env = ["env", f"HOME={tmp_path}", "ICSMON_ANALYZER__RULES__SHIPPED=false",
           f"ICSMON_ANALYZER__RULES__PATHS={json.dumps([str(rule)])}"]
    read = subprocess.run([*env, *icsmon("read", str(MODBUS), "--alerts", str(read_alerts), "-q")],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert read.returncode == 0, read.stderr
    expected = sorted(final_counts(read_alerts).values())  # ids differ: they hash the first hit's time
    assert expected and max(expected) > 10  # one pair writes many times: one alert, many updates

    alerts = tmp_path / "live-alerts.jsonl"
    seen_while_running: list[int] = []

    def counts() -> list[int]:
        return sorted(final_counts(alerts).values()) if alerts.exists() else []

    def replay_then_wait_quietly() -> None:
        replay(wire, MODBUS)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and counts() != expected:
            time.sleep(0.1)
        seen_while_running.extend(counts())

    command = ["ip", "netns", "exec", wire.capture_ns, *env, sys.executable, "-m", "api.cli", "live",
               "--interface", wire.capture_if, "--alerts", str(alerts), "--events", str(tmp_path / "live.jsonl"),
               "--sensor-id", "t", "-q"]
    returncode, stderr = drive_live(command, lambda pid: capturing(pid) and (tmp_path / "live.jsonl").exists(),
                                    replay_then_wait_quietly, stop_signal=signal.SIGINT)
    assert returncode == 0, stderr
    assert seen_while_running == expected
    assert counts() == expected
