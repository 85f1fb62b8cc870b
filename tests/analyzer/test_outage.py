"""Zero loss, zero duplicates: Elasticsearch goes away in the middle of a replay and the sensor restarts.

The test runs its OWN Elasticsearch node (:class:`EsNode`: same installation as
deploy/elasticsearch.sh, another port, cluster name and data folder) because it
stops it; the shared node other tests use is never touched.

The capture: the shared ITI Modbus capture copied 20 times with shifted addresses
(sensor.bench's builder), 45,140 packets, split into two files. A test detector
raises one alert per client, server and Modbus transaction id modulo 150 on every
request: about 10,500 distinct alerts, many updated several times (versions up to 9).

    sensor A (a child process) replays part 1 ──┬── barrier: the node is stopped here
                                                └── goes on during the outage -> spool; exits (SIGTERM-like stop)
    sensor B (a new process, same spool) replays part 2 while the node is still down
                                                -> start-up check: unreachable, warns once, spools
    node started again                          -> B delivers A's and its own spooled documents

Then the node must hold exactly the expected alerts: as many documents as distinct
ids, every id present once, each with its final version and count -- the state an
uninterrupted run of the same two processes produces.

Run as a script (``python tests/analyzer/test_outage.py child ...``) this file is
the child sensor process.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # as a child process
    sys.path.insert(0, str(REPO))

from analyzer.alerts import Detection  # noqa: E402

MODBUS = REPO.parent / "shared" / "pcaps" / "iti/pcaps/ModbusTCP/Modbus/modbus_test.pcap"
NODES_ROOT = Path("/var/cache/icsmon/test-nodes")  # outside deploy/elasticsearch.sh's elasticsearch-* homes
ES_USER = "icsmon-es"
COPIES = 20
SPLIT = 25_000  # packets in part 1


# -- a private Elasticsearch node ------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EsNode:
    """One Elasticsearch node of our own, from the distribution deploy/elasticsearch.sh installed.

    ``security`` turns on x-pack security (file realm: users added with bin/elasticsearch-users, roles
    from ``roles``); ``tls`` adds HTTPS with the given PEM key and certificate. Runs as the unprivileged
    user deploy/elasticsearch.sh uses; everything lives in its own folder, deleted by :meth:`remove`.
    """

    def __init__(self, name: str, *, security: bool = False, tls: tuple[bytes, bytes] | None = None,
                 roles: Path | None = None, heap: str = "512m") -> None:
        out = subprocess.run(["bash", str(REPO / "deploy/elasticsearch.sh"), "install"], capture_output=True,
                             text=True, timeout=600)
        found = re.search(r"Elasticsearch (\S+) in (\S+), JDK (\S+) \(", out.stderr)
        if out.returncode != 0 or not found:
            pytest.fail(f"deploy/elasticsearch.sh install failed: {out.stderr.strip()[-500:]}", pytrace=False)
        version, home, self.jdk = found.groups()
        self.dist = Path(home) / "dist" / f"elasticsearch-{version}"
        self.name = f"{name}-{uuid.uuid4().hex[:8]}"
        self.root = NODES_ROOT / self.name
        self.http_port, self.transport_port = _free_port(), _free_port()
        self.security, self.tls = security, tls
        self.scheme = "https" if tls else "http"
        self.url = f"{self.scheme}://127.0.0.1:{self.http_port}"
        self.admin = ("icsmon_test_admin", uuid.uuid4().hex) if security else None
        self.ca_file: Path | None = None
        self._prepare(roles, heap)

    # The node user must be able to enter every parent folder.
    def _prepare(self, roles: Path | None, heap: str) -> None:
        NODES_ROOT.mkdir(parents=True, exist_ok=True)
        NODES_ROOT.chmod(0o755)
        self.root.mkdir()
        self.root.chmod(0o755)
        config = self.root / "config"
        shutil.copytree(self.dist / "config", config)
        for sub in ("data", "logs", "tmp", "run"):
            (self.root / sub).mkdir()
        lines = [
            f"cluster.name: {self.name}", f"node.name: {self.name}", f"path.data: {self.root / 'data'}",
            f"path.logs: {self.root / 'logs'}", "network.host: 127.0.0.1", f"http.port: {self.http_port}",
            f"transport.port: {self.transport_port}", "discovery.type: single-node",
            "cluster.routing.allocation.disk.threshold_enabled: false",
            f"xpack.security.enabled: {'true' if self.security else 'false'}",
        ]
        if self.tls:
            key, cert = self.tls
            (config / "http.key").write_bytes(key)
            (config / "http.crt").write_bytes(cert)
            lines += ["xpack.security.http.ssl.enabled: true", "xpack.security.http.ssl.key: http.key",
                      "xpack.security.http.ssl.certificate: http.crt"]
        (config / "elasticsearch.yml").write_text("\n".join(lines) + "\n")
        (config / "jvm.options.d").mkdir(exist_ok=True)
        (config / "jvm.options.d" / "heap.options").write_text(f"-Xms{heap}\n-Xmx{heap}\n")
        if roles is not None:
            shutil.copy(roles, config / "roles.yml")
        self._chown()
        if self.admin:
            self.add_user(self.admin[0], self.admin[1], "superuser")

    def _chown(self) -> None:
        entry = pwd.getpwnam(ES_USER)
        for path in [self.root, *self.root.rglob("*")]:
            os.chown(path, entry.pw_uid, entry.pw_gid, follow_symlinks=False)

    def _as_es(self, *argv: str) -> list[str]:
        env = [f"ES_JAVA_HOME={self.jdk}", f"ES_PATH_CONF={self.root / 'config'}", f"ES_TMPDIR={self.root / 'tmp'}"]
        return ["runuser", "-u", ES_USER, "--", "env", "-u", "JAVA_HOME", *env, *argv]

    def add_user(self, name: str, password: str, *roles: str) -> None:
        """A file-realm user (bin/elasticsearch-users); a running node picks it up within seconds."""
        out = subprocess.run(self._as_es(str(self.dist / "bin/elasticsearch-users"), "useradd", name, "-p",
                                         password, "-r", ",".join(roles)),
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stdout + out.stderr

    @property
    def pid_file(self) -> Path:
        return self.root / "run" / "es.pid"

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
            os.kill(pid, 0)
        except (OSError, ValueError):
            return None
        return pid

    def start(self, timeout: float = 120) -> None:
        started = time.monotonic()
        launcher = subprocess.run(self._as_es(str(self.dist / "bin/elasticsearch"), "-d", "-p", str(self.pid_file)),
                                  capture_output=True, text=True, timeout=timeout)
        if launcher.returncode != 0:
            pytest.fail(f"Elasticsearch {self.name} did not start: {launcher.stdout[-800:]}"
                        f"{launcher.stderr[-800:]}{self.log_tail()}", pytrace=False)
        while time.monotonic() - started < timeout:
            if self.healthy():
                return
            time.sleep(0.5)
        pytest.fail(f"Elasticsearch {self.name} not healthy within {timeout}s{self.log_tail()}", pytrace=False)

    def healthy(self) -> bool:
        try:
            self.request("GET", "/_cluster/health?wait_for_status=yellow&timeout=1s", timeout=5)
        except (OSError, urllib.error.URLError):
            return False
        return True

    def request(self, method: str, path: str, body: Any = None, timeout: float = 30,
                auth: tuple[str, str] | None = None) -> Any:
        """One HTTP request as the admin user (or ``auth``); JSON in and out."""
        import base64
        import ssl

        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        who = auth or self.admin
        if who:
            req.add_header("Authorization", "Basic " + base64.b64encode(f"{who[0]}:{who[1]}".encode()).decode())
        context = ssl.create_default_context(cafile=str(self.ca_file)) if self.ca_file else None
        with urllib.request.urlopen(req, timeout=timeout, context=context) as response:
            return json.loads(response.read() or b"null")

    def stop(self, timeout: float = 60) -> None:
        pid = self.pid()
        if pid is None:
            return
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while self.pid() is not None:
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
            time.sleep(0.2)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def log_tail(self) -> str:
        log = self.root / "logs" / f"{self.name}.log"
        return "\n" + "\n".join(log.read_text(errors="replace").splitlines()[-30:]) if log.exists() else ""


# -- the test detector and the child sensor process ------------------------------------------------------

def transaction_detector(event: dict[str, Any]) -> list[Detection]:
    """One detection per Modbus request, keyed by transaction id modulo 150 (so alerts repeat and update)."""
    if event.get("network.protocol") != "modbus" or event.get("ics.role") != "request":
        return []
    tid = event.get("modbus.transaction_id", 0) % 150
    return [Detection(detector_type="test", detector_id=f"test-modbus-tid-{tid}", title=f"transaction {tid}",
                      severity="medium", event=event, techniques=("T0855",))]


def es_settings(url: str, prefix: str) -> Any:
    from analyzer.settings import ElasticsearchSettings

    # Short retries: the delivery loop, not the store, is what rides out the outage here.
    return ElasticsearchSettings(url=url, index_prefix=prefix, number_of_replicas=0, events=False, max_attempts=2,
                                 backoff_initial=0.05, backoff_max=0.2, request_timeout=5, check_timeout=3)


def run_analyzer(capture: Path, analyzer: Any) -> int:
    from sensor.capture.pcapfile import open_capture
    from sensor.pipeline import Sensor
    from sensor.protocols.modbus import DISSECTOR
    from sensor.settings import SensorSettings

    sensor = Sensor(SensorSettings(sensor_id="outage-test"), sink=analyzer, dissectors=[DISSECTOR])
    with open_capture(str(capture)) as source:
        sensor.run(source)
    sensor.finish()
    analyzer.flush()
    return sensor.packets


def child(capture: str, url: str, prefix: str, spool: str, status: str, barrier_at: int) -> None:
    """A sensor process: replay ``capture`` with the test detector, deliver to Elasticsearch through ``spool``.

    Writes its progress to ``status`` (JSON). At packet ``barrier_at`` (if > 0) it waits for the file
    ``status + '.go'``; after the replay it waits for ``status + '.stop'``, then closes delivery.
    """
    from analyzer.delivery import Delivery
    from analyzer.detect import Analyzer
    from analyzer.spool import Spool
    from analyzer.stores import StoreUnavailable
    from analyzer.stores.elasticsearch import ElasticsearchStore
    from sensor.capture.pcapfile import open_capture
    from sensor.pipeline import Sensor
    from sensor.protocols.modbus import DISSECTOR
    from sensor.settings import SensorSettings

    state: dict[str, Any] = {"phase": "starting", "packets": 0, "warning": None}
    store = ElasticsearchStore(es_settings(url, prefix))
    check_first = False
    try:
        store.check()
    except StoreUnavailable as exc:
        state["warning"] = str(exc)  # what the CLI prints once before spooling
        check_first = True
    delivery = Delivery(store, Spool(spool), batch_size=500, backoff_initial=0.1, backoff_max=0.5,
                        check_first=check_first).start()
    analyzer = Analyzer([transaction_detector], deliver=delivery.put, update_interval=0.5)

    def report(phase: str) -> None:
        state.update(phase=phase, delivery=delivery.stats(), analyzer=analyzer.stats())
        Path(status + ".tmp").write_text(json.dumps(state))
        os.replace(status + ".tmp", status)

    def paced(source: Any) -> Iterator[Any]:
        for n, packet in enumerate(source, 1):
            yield packet
            if n % 500 == 0:
                state["packets"] = n
                report("replaying")
            if n == barrier_at:
                while not os.path.exists(status + ".go"):
                    report("barrier")
                    time.sleep(0.05)

    sensor = Sensor(SensorSettings(sensor_id="outage-test"), sink=analyzer, dissectors=[DISSECTOR])
    with open_capture(capture) as source:
        sensor.run(paced(source))
    sensor.finish()
    analyzer.flush()
    state["packets"] = sensor.packets
    while not os.path.exists(status + ".stop"):
        report("replayed")
        time.sleep(0.1)
    delivery.close(timeout=2.0)
    store.close()
    report("closed")


# -- the test ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def node() -> Iterator[EsNode]:
    es = EsNode("outage")
    try:
        es.start()
        yield es
    finally:
        es.remove()


def wait_for(status: Path, predicate: Any, timeout: float, proc: subprocess.Popen[str]) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    state: dict[str, Any] = {}
    while time.monotonic() < deadline:
        if status.exists():
            try:
                state = json.loads(status.read_text())
            except ValueError:
                state = {}
            if state and predicate(state):
                return state
        if proc.poll() is not None and not (state and predicate(state)):
            raise AssertionError(f"sensor exited with {proc.returncode}: {proc.stderr.read() if proc.stderr else ''}")
        time.sleep(0.05)
    raise AssertionError(f"timed out; last status {state}")


def start_child(capture: Path, node: EsNode, prefix: str, spool: Path, status: Path,
                barrier_at: int = 0) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, __file__, "child", str(capture), node.url, prefix, str(spool),
                             str(status), str(barrier_at)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=REPO)


def stored_alerts(node: EsNode, prefix: str) -> tuple[int, dict[str, dict[str, Any]]]:
    node.request("POST", f"/{prefix}-alerts-*/_refresh")
    total = node.request("GET", f"/{prefix}-alerts-*/_count")["count"]
    found: dict[str, dict[str, Any]] = {}
    page = node.request("POST", f"/{prefix}-alerts-*/_search?scroll=1m", {
        "size": 5000, "_source": ["icsmon.alert.version", "icsmon.alert.count"], "sort": ["_doc"]})
    while page["hits"]["hits"]:
        for hit in page["hits"]["hits"]:
            assert hit["_id"] not in found, f"alert {hit['_id']} stored twice ({hit['_index']})"
            found[hit["_id"]] = hit["_source"]
        page = node.request("POST", "/_search/scroll", {"scroll": "1m", "scroll_id": page["_scroll_id"]})
    return total, found


@pytest.mark.elasticsearch
def test_outage_and_restart_lose_nothing_and_duplicate_nothing(node: EsNode, tmp_path: Path) -> None:
    from analyzer.detect import Analyzer
    from sensor.bench import build_bench_capture, write_prefix

    whole, part1, part2 = tmp_path / "whole.pcap", tmp_path / "part1.pcap", tmp_path / "part2.pcap"
    packets = build_bench_capture(whole, 2257 * COPIES, sources=[MODBUS])
    assert write_prefix(whole, part1, SPLIT) == SPLIT
    _split_rest(whole, part2, SPLIT)

    # What an uninterrupted run of the same two sensor processes leaves in a store: id -> (version, count).
    expected: dict[str, tuple[int, int]] = {}
    for part in (part1, part2):
        docs: list[Any] = []
        run_analyzer(part, Analyzer([transaction_detector], deliver=docs.append, update_interval=0))
        for doc in docs:
            held = expected.get(doc.id)
            if held is None or doc.version > held[0]:
                expected[doc.id] = (doc.version, doc.body["icsmon.alert.count"])
    assert len(expected) > 5000 and max(v for v, _ in expected.values()) > 3

    prefix = f"icsmon-outage-{uuid.uuid4().hex[:8]}"
    spool = tmp_path / "spool"
    status_a, status_b = tmp_path / "a.json", tmp_path / "b.json"

    t0 = time.monotonic()

    def phase(what: str) -> None:
        print(f"outage test: {time.monotonic() - t0:6.1f} s {what}")

    # Sensor A delivers live, then the node goes away in the middle of its replay.
    a = start_child(part1, node, prefix, spool, status_a, barrier_at=SPLIT // 3)
    wait_for(status_a, lambda s: s["phase"] == "barrier" and s["delivery"]["written"] > 0, 60, a)
    phase("A delivered its first alerts; stopping the node")
    node.stop()
    phase("node stopped")
    Path(str(status_a) + ".go").touch()
    state_a = wait_for(status_a, lambda s: s["phase"] == "replayed", 60, a)
    assert state_a["packets"] == SPLIT
    # A restart during the outage: A stops, a new process B takes over the same spool.
    Path(str(status_a) + ".stop").touch()
    assert a.wait(60) == 0, a.stderr.read() if a.stderr else ""
    final_a = json.loads(status_a.read_text())["delivery"]
    assert final_a["spooled"] > 1000, final_a  # A's documents from the outage wait on disk
    assert final_a["written"] > 0 and final_a["retries"] > 0 and final_a["last_error"]
    assert final_a["dropped_alerts"] == final_a["dropped_events"] == 0

    phase("A exited; starting B")
    b = start_child(part2, node, prefix, spool, status_b)
    state_b = wait_for(status_b, lambda s: s["phase"] == "replayed", 120, b)
    assert state_b["warning"] and "unreachable" in state_b["warning"]  # start-up: warned, then spooled
    assert state_b["delivery"]["spooled"] > final_a["spooled"]
    assert state_b["packets"] == packets - SPLIT

    phase("B replayed; starting the node")
    node.start()  # the same node, its data intact
    phase("node up")
    wait_for(status_b, lambda s: s["delivery"]["spooled"] == 0 and s["delivery"]["queued"] == 0, 120, b)
    Path(str(status_b) + ".stop").touch()
    assert b.wait(60) == 0, b.stderr.read() if b.stderr else ""
    final_b = json.loads(status_b.read_text())["delivery"]
    assert final_b["dead_letters"] == 0 and final_b["dropped_alerts"] == 0

    phase("B delivered everything")
    total, stored = stored_alerts(node, prefix)
    assert total == len(stored) == len(expected)  # no duplicates, no loss
    assert set(stored) == set(expected)
    wrong = {i: (stored[i]["icsmon.alert.version"], stored[i]["icsmon.alert.count"], expected[i])
             for i in expected if (stored[i]["icsmon.alert.version"], stored[i]["icsmon.alert.count"]) != expected[i]}
    assert not wrong, f"{len(wrong)} alerts not in their final state, e.g. {list(wrong.items())[:3]}"


def _split_rest(whole: Path, target: Path, skip: int) -> None:
    """Write the records of ``whole`` after the first ``skip`` ones as a pcap of their own."""
    import struct

    data = whole.read_bytes()
    pos, n = 24, 0
    while n < skip:
        pos += 16 + struct.unpack_from("<I", data, pos + 8)[0]
        n += 1
    target.write_bytes(data[:24] + data[pos:])


if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "child":
    child(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6], int(sys.argv[7]))
