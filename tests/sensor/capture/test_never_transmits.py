"""The sensor never transmits: no send path in the source, and no frame on a real wire.

Two independent proofs. The static one reads every module of ``sensor/`` and
``analyzer/`` and fails on any call that sends (``send``, ``sendto``,
``sendall``, ``sendmsg``, ``sendfile``, scapy's ``sendp``/``sr*``), any write
to something named like a socket, and any socket creation except the
AF_PACKET receive socket of ``sensor/capture/live.py``. The dynamic one runs
``icsmon live`` on one end of a veth pair while traffic is replayed into it
and checks the interface's transmit counter, read inside its namespace, did
not move.
"""

from __future__ import annotations

import ast
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from sensor.capture.live import LiveCapture
from tests.sensor.capture.wire import Wire, run_live, sh

REPO = Path(__file__).resolve().parents[3]
PCAPS = REPO.parent / "shared" / "pcaps"
MODBUS = PCAPS / "iti/pcaps/ModbusTCP/Modbus/modbus_test.pcap"
SCANNED = ("sensor", "analyzer")
LIVE = "sensor/capture/live.py"

SEND_CALLS = {"send", "sendto", "sendall", "sendmsg", "sendfile", "sendp", "sendpfast", "sr", "sr1", "srp",
              "srp1", "srloop", "srploop"}
WRITE_CALLS = {"write", "writelines", "writev", "pwrite"}
SOCKET_FACTORIES = {"socket", "socketpair", "create_connection", "create_server", "fromfd", "fromshare",
                    "open_connection", "open_unix_connection", "start_server", "create_datagram_endpoint"}


# -- the source ------------------------------------------------------------------------------------

def violations(source: str, relpath: str) -> list[str]:
    """Every send, socket write and socket creation in ``source``, as "path:line: what"."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source, relpath)):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
        text = ast.unparse(node)
        where = f"{relpath}:{node.lineno}: {text}"
        if name in SEND_CALLS:
            found.append(f"{where} (sends)")
        elif name in WRITE_CALLS and _mentions_socket(node):
            found.append(f"{where} (writes to a socket)")
        elif name in SOCKET_FACTORIES and not _is_packet_receive_socket(node, relpath):
            found.append(f"{where} (creates a socket)")
    return found


def _mentions_socket(call: ast.Call) -> bool:
    """``sock.write(...)``, ``os.write(sock.fileno(), ...)``, ``conn.makefile().write``: by the names used."""
    parts = [call.func.value] if isinstance(call.func, ast.Attribute) else []
    parts += call.args[:1]
    return any(word in ast.unparse(part).lower() for part in parts for word in ("sock", "conn"))


def _is_packet_receive_socket(call: ast.Call, relpath: str) -> bool:
    """Only live.py may open a socket, and only ``socket.socket(socket.AF_PACKET, socket.SOCK_RAW, ...)``."""
    if relpath != LIVE or ast.unparse(call.func) != "socket.socket" or len(call.args) < 2:
        return False
    return [ast.unparse(a) for a in call.args[:2]] == ["socket.AF_PACKET", "socket.SOCK_RAW"]


def scanned_files() -> Iterator[Path]:
    for package in SCANNED:
        if (REPO / package).is_dir():
            yield from sorted((REPO / package).rglob("*.py"))


def test_no_send_path_in_sensor_or_analyzer() -> None:
    files = list(scanned_files())
    assert any(path.relative_to(REPO).as_posix() == LIVE for path in files)
    found = [v for path in files for v in violations(path.read_text(), path.relative_to(REPO).as_posix())]
    assert found == []


def test_live_opens_exactly_one_packet_socket() -> None:
    tree = ast.parse((REPO / LIVE).read_text())
    sockets = [ast.unparse(node) for node in ast.walk(tree)
               if isinstance(node, ast.Call) and ast.unparse(node.func) == "socket.socket"]
    assert sockets == ["socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)"]
    assert "PACKET_TX_RING" not in (REPO / LIVE).read_text()


def test_the_scan_catches_what_it_must() -> None:
    """The scanner itself, on code that would transmit."""
    bad = (
        "import socket, os\n"
        "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        "s.sendto(b'x', ('10.0.0.1', 502))\n"
        "self._sock.send(b'x')\n"
        "os.write(sock.fileno(), b'x')\n"
        "conn = socket.create_connection(('plc', 502))\n"
        "from scapy.all import sendp\n"
        "sendp(frame, iface='eth0')\n"
        "raw = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)\n"
    )
    assert [v.split(":")[1] for v in violations(bad, "sensor/x.py")] == ["2", "3", "4", "5", "6", "8", "9"]
    # In live.py the AF_PACKET receive socket is the one allowed; the rest still fails.
    assert [v.split(":")[1] for v in violations(bad, LIVE)] == ["2", "3", "4", "5", "6", "8"]
    harmless = "out.write(line)\nPath(p).write_text(t)\nwriter.write(event)\nsocket.gethostname()\n"
    assert violations(harmless, "sensor/x.py") == []


def test_live_capture_offers_no_way_to_send() -> None:
    public = {name for name in dir(LiveCapture) if not name.startswith("_")}
    assert not {name for name in public if any(w in name for w in ("send", "write", "transmit", "inject"))}
    assert not {name for name in public if "sock" in name}


# -- the wire --------------------------------------------------------------------------------------

def tx_counters(w: Wire) -> tuple[int, int]:
    """Packets and bytes the capture end has sent, as the kernel counts them."""
    stats = f"/sys/class/net/{w.capture_if}/statistics"
    out = sh("ip", "netns", "exec", w.capture_ns, "cat", f"{stats}/tx_packets", f"{stats}/tx_bytes").stdout
    packets, nbytes = out.split()
    return int(packets), int(nbytes)


@pytest.mark.live
def test_sensor_transmits_nothing_on_a_live_wire(wire: Wire, tmp_path: Path) -> None:
    before = tx_counters(wire)
    stats = run_live(wire, tmp_path, [MODBUS], stop_signal=signal.SIGTERM)
    assert stats["packets"] == 2257  # it really was capturing traffic
    assert tx_counters(wire) == before
