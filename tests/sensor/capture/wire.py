"""A real wire for live-capture tests: a veth pair between two fresh network namespaces.

One end (``cap0``) plays the mirror port the sensor listens on; captures are replayed into the
other end (``tx0``) with tcpreplay. Both ends are up with no addresses and IPv6 off, so nothing
but the replayed frames crosses the link. Needs root (CI runs as root).
"""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[3]
# Replay rate: fast enough for a quick test, slow enough that nothing queues up anywhere.
REPLAY_PPS = 10000
CLONE_NEWNET = 0x40000000


# -- the wire --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Wire:
    capture_ns: str
    replay_ns: str
    capture_if: str = "cap0"
    replay_if: str = "tx0"


def sh(*cmd: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode:
        raise AssertionError(f"{' '.join(cmd)} failed ({result.returncode}): {result.stderr.strip()}")
    return result


@contextmanager
def veth_wire() -> Iterator[Wire]:
    """Two namespaces joined by a veth pair, both ends up, no addresses, IPv6 off (a silent link)."""
    tag = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    w = Wire(capture_ns=f"icsmon-cap-{tag}", replay_ns=f"icsmon-tx-{tag}")
    try:
        sh("ip", "netns", "add", w.capture_ns)
        sh("ip", "netns", "add", w.replay_ns)
        sh("ip", "-n", w.replay_ns, "link", "add", w.replay_if, "type", "veth",
           "peer", "name", w.capture_if, "netns", w.capture_ns)
        for ns, ifname in ((w.capture_ns, w.capture_if), (w.replay_ns, w.replay_if)):
            sh("ip", "netns", "exec", ns, "sysctl", "-qw", f"net.ipv6.conf.{ifname}.disable_ipv6=1")
            sh("ip", "-n", ns, "link", "set", ifname, "mtu", "9000", "up")
        yield w
    finally:
        for ns in (w.capture_ns, w.replay_ns):  # deleting a namespace deletes its end of the veth
            sh("ip", "netns", "del", ns, check=False)


def replay(w: Wire, *pcaps: Path, pps: int = REPLAY_PPS) -> None:
    sh("ip", "netns", "exec", w.replay_ns, "tcpreplay", "-q", f"--pps={pps}", "-i", w.replay_if,
       *map(str, pcaps))


@contextmanager

def inside(namespace: str) -> Iterator[None]:
    """Run the block with this thread in ``namespace``; sockets opened there stay there."""
    libc = ctypes.CDLL(None, use_errno=True)

    def setns(fd: int) -> None:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))

    with open("/proc/thread-self/ns/net") as home, open(f"/run/netns/{namespace}") as target:
        setns(target.fileno())
        try:
            yield
        finally:
            setns(home.fileno())



def icsmon(*args: str, namespace: str | None = None) -> list[str]:
    prefix = ["ip", "netns", "exec", namespace] if namespace else []
    return [*prefix, sys.executable, "-m", "api.cli", *args]



def capturing(pid: int) -> bool:
    """Whether the process's namespace has a packet socket bound to all protocols and running."""
    try:
        rows = Path(f"/proc/{pid}/net/packet").read_text().splitlines()[1:]
    except OSError:
        return False
    # sk RefCnt Type Proto Iface R Rmem User Inode
    return any(row.split()[3] == "0003" and row.split()[5] == "1" for row in rows)



def drive_live(command: list[str], ready: Callable[[int], bool], during: Callable[[], None] | None = None,
               stop_signal: int | None = None) -> tuple[int, str]:
    """Start ``command``, wait until ``ready(pid)``, run ``during``, then stop it with ``stop_signal``
    (or let it end by itself); its exit status and stderr."""
    proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not ready(proc.pid):
            assert proc.poll() is None, f"icsmon live exited early: {proc.communicate()[1]}"
            assert time.monotonic() < deadline, "icsmon live did not start capturing"
            time.sleep(0.01)
        if during is not None:
            during()
            if stop_signal is not None:
                time.sleep(0.3)  # let the last frames clear the kernel's receive path; stop() drains the ring
        if stop_signal is not None:
            proc.send_signal(stop_signal)
        _stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, stderr


def run_live(w: Wire, out: Path, pcaps: list[Path], *options: str,
             stop_signal: int | None = None) -> dict[str, Any]:
    """``icsmon live`` on the capture end while ``pcaps`` are replayed; its stats (events in out/live.jsonl).

    With ``stop_signal`` the run is stopped by that signal once the replay is done; without, the
    options must end it (--count, --duration).
    """
    command = icsmon("live", "--interface", w.capture_if, "--events", str(out / "live.jsonl"),
                     "--stats", str(out / "live.json"), "--sensor-id", "t", "-q", *options,
                     namespace=w.capture_ns)
    events = out / "live.jsonl"  # opened once the rules are loaded, just before the capture loop
    returncode, stderr = drive_live(command, lambda pid: capturing(pid) and events.exists(),
                                    (lambda: replay(w, *pcaps)) if pcaps else (lambda: None), stop_signal)
    assert returncode == 0, stderr
    stats: dict[str, Any] = json.loads((out / "live.json").read_text())
    return stats


