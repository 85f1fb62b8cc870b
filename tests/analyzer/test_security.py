"""A cluster with security on: the sensor writes with a user that has only deploy's icsmon_writer role,
over HTTPS with a CA file; wrong credentials end the run at start-up with one clear line.

The node is the test's own (:class:`EsNode` from test_outage): x-pack security, file-realm users made
with bin/elasticsearch-users, roles from deploy/elasticsearch/roles.yml, an HTTP certificate signed by
a CA generated here with the ``cryptography`` package.

A *valid* API key cannot be tested on this node: the integ-test distribution has no analysis-common
module, so the ``.security`` index that stores API keys cannot be created ("Unknown filter type
[pattern_capture]"). A wrong key is still refused at authentication, which is what is tested.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import os
import subprocess
import sys
import time
import urllib.error
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.analyzer.test_outage import EsNode

REPO = Path(__file__).resolve().parents[2]
MODBUS = REPO.parent / "shared" / "pcaps" / "iti/pcaps/ModbusTCP/Modbus/modbus_test.pcap"
ROLES = REPO / "deploy" / "elasticsearch" / "roles.yml"
pytestmark = pytest.mark.elasticsearch


def make_ca_and_node_cert() -> tuple[bytes, bytes, bytes]:
    """(CA certificate, node key, node certificate) in PEM; the node is 127.0.0.1 / localhost."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "icsmon test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    key_pem = key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return ca.public_bytes(pem), key_pem, cert.public_bytes(pem)


class Secure:
    def __init__(self, node: EsNode, ca_file: Path) -> None:
        self.node = node
        self.ca_file = ca_file
        self.writer = ("icsmon_sensor", uuid.uuid4().hex)
        self.installer = ("icsmon_installer", uuid.uuid4().hex)


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secure]:
    ca_pem, key_pem, cert_pem = make_ca_and_node_cert()
    ca_file = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca_file.write_bytes(ca_pem)
    node = EsNode("secure", security=True, tls=(key_pem, cert_pem), roles=ROLES)
    node.ca_file = ca_file
    env = Secure(node, ca_file)
    node.add_user(*env.writer, "icsmon_writer")
    node.add_user(*env.installer, "icsmon_admin")
    try:
        node.start()
        # The administrator's part: templates installed once by a user with icsmon_admin only.
        from analyzer.settings import ElasticsearchSettings
        from analyzer.stores.elasticsearch import ElasticsearchStore

        store = ElasticsearchStore(ElasticsearchSettings(
            url=node.url, username=env.installer[0], password=env.installer[1], ca_file=ca_file,
            number_of_replicas=0, install_templates=True))
        store.check()
        store.close()
        yield env
    finally:
        node.remove()


def icsmon(secure: Secure, home: Path, *args: str, **settings: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ICSMON_")}
    env["HOME"] = str(home)
    base = {"URL": secure.node.url, "CA_FILE": str(secure.ca_file), "NUMBER_OF_REPLICAS": "0",
            "INSTALL_TEMPLATES": "false", "MAX_ATTEMPTS": "2", "CHECK_TIMEOUT": "10"}
    base.update(settings)
    env.update({f"ICSMON_ANALYZER__ELASTICSEARCH__{k}": v for k, v in base.items() if v != ""})
    env["ICSMON_ANALYZER__DELIVERY__CLOSE_TIMEOUT"] = "60"
    env["ICSMON_ANALYZER__DELIVERY__EVENTS"] = "true"
    # The whole rule pack, with a site's placeholder values: the capture's writers are in no list.
    env["ICSMON_ANALYZER__RULES__PLACEHOLDERS"] = str(REPO / "deploy" / "placeholders.yml")
    return subprocess.run([sys.executable, "-m", "api.cli", *args], capture_output=True, text=True, cwd=REPO,
                          timeout=300, env=env)


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr  # one line, no traceback, no retry chatter
    assert lines[0].startswith("icsmon: error: ")
    return lines[0]


def count(secure: Secure, pattern: str) -> int:
    secure.node.request("POST", f"/{pattern}/_refresh?ignore_unavailable=true&allow_no_indices=true")
    return int(secure.node.request("GET", f"/{pattern}/_count?ignore_unavailable=true&allow_no_indices=true")
               ["count"])


def read_with(secure: Secure, tmp_path: Path, **settings: str) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    stats, alerts = tmp_path / "stats.json", tmp_path / "alerts.jsonl"
    result = icsmon(secure, tmp_path, "read", str(MODBUS), "--alerts", str(alerts), "--stats", str(stats),
                    **settings)
    assert result.returncode == 0, result.stderr
    assert "warning" not in result.stderr
    final: dict[str, dict[str, Any]] = {}
    for line in alerts.read_text().splitlines():
        alert = json.loads(line)
        final[alert["_id"]] = alert
    return json.loads(stats.read_text())["delivery"], final


def test_the_writer_role_is_enough_for_the_sensor(secure: Secure, tmp_path: Path) -> None:
    delivery, final = read_with(secure, tmp_path, USERNAME=secure.writer[0], PASSWORD=secure.writer[1])
    assert delivery["store"] == "elasticsearch" and delivery["written"] == delivery["put"] > 2000
    assert delivery["spooled"] == 0 and delivery["dead_letters"] == 0 and delivery["last_error"] is None
    secure.node.request("POST", "/icsmon-alerts-*/_refresh")  # searches see the last update only after this
    for alert_id, alert in final.items():
        stored = secure.node.request("GET", f"/icsmon-alerts-*/_search?q=_id:{alert_id}")["hits"]["hits"]
        assert [h["_source"]["icsmon.alert.version"] for h in stored] == [alert["icsmon.alert.version"]]
    assert count(secure, "icsmon-events-*") > 2000


def test_wrong_password_is_one_line_at_start_up(secure: Secure, tmp_path: Path) -> None:
    started = time.monotonic()
    result = icsmon(secure, tmp_path, "read", str(MODBUS), USERNAME=secure.writer[0], PASSWORD="wrong-" + "x" * 10)
    line = one_error_line(result)
    assert time.monotonic() - started < 20  # no retry loop
    assert line == (f"icsmon: error: Elasticsearch at {secure.node.url}: authentication failed for user"
                    f" '{secure.writer[0]}' (401)")
    assert not (tmp_path / ".local/share/icsmon/spool").exists()  # nothing was read, nothing spooled


def test_wrong_api_key_is_one_line_at_start_up(secure: Secure, tmp_path: Path) -> None:
    bogus = base64.b64encode(b"notakeyid:notthesecret").decode()
    line = one_error_line(icsmon(secure, tmp_path, "read", str(MODBUS), API_KEY=bogus))
    assert "authentication failed for API key id 'notakeyid' (401)" in line


def test_installing_templates_needs_more_than_the_writer_role(secure: Secure, tmp_path: Path) -> None:
    line = one_error_line(icsmon(secure, tmp_path, "read", str(MODBUS), USERNAME=secure.writer[0],
                                 PASSWORD=secure.writer[1], INSTALL_TEMPLATES="true"))
    assert f"user '{secure.writer[0]}' lacks manage_index_templates" in line


def test_without_the_ca_file_tls_fails_with_one_line(secure: Secure, tmp_path: Path) -> None:
    line = one_error_line(icsmon(secure, tmp_path, "read", str(MODBUS), USERNAME=secure.writer[0],
                                 PASSWORD=secure.writer[1], CA_FILE=""))
    assert "TLS failed" in line and "ca_file" in line


@pytest.mark.parametrize(("method", "path", "body"), [
    ("PUT", "/plant-secrets/_doc/1", {"x": 1}),  # any other index
    ("DELETE", "/icsmon-alerts-2099.01.01", None),  # delete an icsmon index (the sensor creates it first)
    ("PUT", "/_index_template/icsmon-evil", {"index_patterns": ["x-*"]}),  # templates
    ("DELETE", "/icsmon-alerts-2099.01.01/_doc/probe", None),  # delete documents
    ("POST", "/icsmon-alerts-2099.01.01/_close", None),  # close an index
    ("PUT", "/icsmon-alerts-2099.01.01/_settings", {"index": {"number_of_replicas": 0}}),  # index settings
    ("GET", "/_cluster/settings", None),  # cluster administration
])
def test_the_writer_role_may_do_nothing_else(secure: Secure, method: str, path: str, body: Any) -> None:
    writer = secure.writer
    secure.node.request("PUT", "/icsmon-alerts-2099.01.01/_doc/probe", {"@timestamp": "2099-01-01T00:00:00Z"},
                        auth=writer)  # allowed: create the index and index a document
    with pytest.raises(urllib.error.HTTPError) as refused:
        secure.node.request(method, path, body, auth=writer)
    assert refused.value.code == 403
