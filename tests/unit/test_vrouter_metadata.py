"""The router's EC2 metadata service: the real server on loopback, queried over HTTP.

Records are keyed by the asking address, so the tests publish records for 127.0.0.1 and
127.0.0.2 and choose their source address with http.client.
"""
from __future__ import annotations

import base64
import contextlib
import gzip
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fileops.atomic import atomic_write
from vrouter import _sh
from vrouter.errors import RouterError
from vrouter.imds import VERSIONS, InstanceDocs, answer, parse_records, render
from vrouter.metadata_server import MAX_TTL, MetadataServer, Records, Tokens

REPO = Path(__file__).resolve().parents[2]
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHh0ZXN0a2V5 alice@login"
TREE = {
    "ami-id": "ami-00000000000000070",
    "hostname": "wn-003",
    "instance-id": "i-0a1b2c3d4e5f60718",
    "instance-type": "m1.small",
    "local-hostname": "wn-003",
    "local-ipv4": "10.0.5.3",
    "mac": "02:00:0a:00:05:03",
    "placement": {"availability-zone": "ivfarm-1-worker"},
    "public-ipv4": "198.51.100.20",
    "public-keys": {"0=alice": {"openssh-key": KEY}},
    "reservation-id": "r-0f0e0d0c0b0a09080",
}
OTHER = {**TREE, "instance-id": "i-0ffffffffffffffff", "local-ipv4": "10.0.5.4", "hostname": "wn-004"}
USER_DATA = gzip.compress(b"#!/bin/sh\necho IVFARM-MARKER\n") + b"\x00\xff"  # any bytes, exactly


def record(tree: dict, user_data: bytes | None) -> dict:
    return {"meta-data": tree, "user-data": base64.b64encode(user_data).decode() if user_data is not None else None}


def publish(path: Path, records: dict[str, dict]) -> None:
    """As the netns router does: an atomic replace."""
    atomic_write(path, json.dumps(records), 0o600)


class Client:
    def __init__(self, port: int) -> None:
        self.port = port

    def request(self, method: str, path: str, headers: dict[str, str] | None = None,
                source: str = "127.0.0.1") -> tuple[int, bytes, http.client.HTTPResponse]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5, source_address=(source, 0))
        try:
            conn.request(method, path, headers=headers or {})
            response = conn.getresponse()
            return response.status, response.read(), response
        finally:
            conn.close()

    def get(self, path: str, **kw: object) -> tuple[int, str]:
        status, body, _ = self.request("GET", path, **kw)  # type: ignore[arg-type]
        return status, body.decode("utf-8", "replace")


@pytest.fixture
def records_file(tmp_path: Path) -> Path:
    path = tmp_path / "metadata.json"
    publish(path, {"127.0.0.1": record(TREE, USER_DATA), "127.0.0.2": record(OTHER, None)})
    return path


@contextlib.contextmanager
def serving(records: Path) -> Iterator[Client]:
    """A metadata server on loopback reading ``records``, and a client of it."""
    server = MetadataServer(("127.0.0.1", 0), Records(records))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield Client(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def client(records_file: Path) -> Iterator[Client]:
    with serving(records_file) as connected:
        yield connected


# --- paths -------------------------------------------------------------------------------------
def test_root_lists_versions_and_latest_lists_the_documents(client: Client) -> None:
    status, body = client.get("/")
    assert status == 200 and body.splitlines() == list(VERSIONS)
    assert {"latest", "2009-04-04", "2016-09-02", "2018-09-24", "2021-03-23"} <= set(body.splitlines())
    assert client.get("/latest/") == (200, "meta-data\nuser-data")
    assert client.get("/latest", source="127.0.0.2") == (200, "meta-data")  # no user-data, not listed


def test_meta_data_directory_and_leaves(client: Client) -> None:
    status, listing = client.get("/latest/meta-data/")
    assert status == 200
    assert listing.splitlines() == [
        "ami-id", "hostname", "instance-id", "instance-type", "local-hostname", "local-ipv4", "mac",
        "placement/", "public-ipv4", "public-keys/", "reservation-id",
    ]
    for leaf in ("instance-id", "local-ipv4", "public-ipv4", "hostname", "local-hostname", "instance-type",
                 "ami-id", "reservation-id", "mac"):
        assert client.get(f"/latest/meta-data/{leaf}") == (200, TREE[leaf])
    assert client.get("/latest/meta-data/placement/") == (200, "availability-zone")
    assert client.get("/latest/meta-data/placement/availability-zone") == (200, "ivfarm-1-worker")


def test_public_keys_as_imds_lists_them(client: Client) -> None:
    assert client.get("/latest/meta-data/public-keys/") == (200, "0=alice")
    assert client.get("/latest/meta-data/public-keys/0/") == (200, "openssh-key")
    assert client.get("/latest/meta-data/public-keys/0/openssh-key") == (200, KEY)
    assert client.get("/latest/meta-data/public-keys/0=alice/openssh-key")[0] == 404
    assert client.get("/latest/meta-data/public-keys/1/openssh-key")[0] == 404


def test_user_data_is_exactly_the_bytes_sent(client: Client) -> None:
    status, body, response = client.request("GET", "/latest/user-data")
    assert status == 200 and body == USER_DATA
    assert response.getheader("Content-Type") == "application/octet-stream"
    assert client.get("/latest/user-data", source="127.0.0.2")[0] == 404


def test_dated_versions_serve_the_same_documents(client: Client) -> None:
    for version in ("2009-04-04", "2016-09-02", "2021-03-23", "1.0"):
        assert client.get(f"/{version}/meta-data/instance-id") == (200, TREE["instance-id"])
    assert client.request("GET", "/2009-04-04/user-data")[1] == USER_DATA
    assert client.get("/2099-01-01/meta-data/instance-id")[0] == 404


@pytest.mark.parametrize("path", [
    "/latest/meta-data/nope", "/latest/nope", "/latest/meta-data/instance-id/deeper", "/nope/",
    "/latest/user-data/x", "/latest/meta-data/placement/nope", "/latest/dynamic/instance-identity/document",
])
def test_unknown_paths_are_404(client: Client, path: str) -> None:
    assert client.get(path)[0] == 404


def test_each_address_gets_only_its_own_record(client: Client) -> None:
    assert client.get("/latest/meta-data/instance-id", source="127.0.0.2") == (200, OTHER["instance-id"])
    assert client.get("/latest/meta-data/instance-id") == (200, TREE["instance-id"])
    # an address without a record gets nothing but the version list
    assert client.get("/latest/meta-data/instance-id", source="127.0.0.3")[0] == 404
    assert client.get("/latest/", source="127.0.0.3")[0] == 404
    assert client.get("/", source="127.0.0.3")[0] == 200


def test_query_strings_head_and_keep_alive(client: Client) -> None:
    assert client.get("/latest/meta-data/instance-id?x=1") == (200, TREE["instance-id"])
    status, body, response = client.request("HEAD", "/latest/meta-data/instance-id")
    assert status == 200 and body == b"" and response.getheader("Content-Length") == str(len(TREE["instance-id"]))
    conn = http.client.HTTPConnection("127.0.0.1", client.port, timeout=5)
    try:  # cloud-init walks the tree over one connection
        for path in ("/latest/meta-data/mac", "/latest/meta-data/nope", "/latest/meta-data/hostname"):
            conn.request("GET", path)
            conn.getresponse().read()
        conn.request("GET", "/latest/meta-data/local-ipv4")
        assert conn.getresponse().read().decode() == TREE["local-ipv4"]
    finally:
        conn.close()


# --- IMDSv2 tokens -----------------------------------------------------------------------------
def token(client: Client, ttl: str = "60") -> tuple[int, str]:
    status, body, response = client.request(
        "PUT", "/latest/api/token", headers={"X-aws-ec2-metadata-token-ttl-seconds": ttl})
    if status == 200:
        assert response.getheader("X-aws-ec2-metadata-token-ttl-seconds") == ttl
    return status, body.decode()


def test_imdsv2_token_then_get(client: Client) -> None:
    status, value = token(client, "21600")
    assert status == 200 and len(value) > 20
    headers = {"X-aws-ec2-metadata-token": value}
    assert client.get("/latest/meta-data/instance-id", headers=headers) == (200, TREE["instance-id"])
    assert client.request("GET", "/latest/user-data", headers=headers)[1] == USER_DATA
    assert client.get("/latest/meta-data/instance-id", headers={"X-aws-ec2-metadata-token": value + "0"})[0] == 401
    assert client.get("/latest/meta-data/instance-id", headers={"X-aws-ec2-metadata-token": "junk"})[0] == 401
    # a token is bound to the address that asked for it
    assert client.get("/latest/meta-data/instance-id", headers=headers, source="127.0.0.2")[0] == 401
    # IMDSv1 (no token at all) stays available, as in EC2's default "optional" mode
    assert client.get("/latest/meta-data/instance-id")[0] == 200


@pytest.mark.parametrize("ttl", ["", "0", str(MAX_TTL + 1), "abc", "-5", "1.5"])
def test_token_needs_a_valid_ttl(client: Client, ttl: str) -> None:
    headers = {"X-aws-ec2-metadata-token-ttl-seconds": ttl} if ttl else {}
    assert client.request("PUT", "/latest/api/token", headers=headers)[0] == 400


def test_token_method_and_proxy_rules(client: Client) -> None:
    assert client.get("/latest/api/token")[0] == 405
    assert client.request("PUT", "/latest/meta-data/instance-id")[0] == 405
    proxied = {"X-aws-ec2-metadata-token-ttl-seconds": "60", "X-Forwarded-For": "10.0.0.1"}
    assert client.request("PUT", "/latest/api/token", headers=proxied)[0] == 403  # as EC2


def test_tokens_expire_and_are_bound_to_the_address() -> None:
    now = [1_000_000.0]
    tokens = Tokens(b"k" * 32, clock=lambda: now[0])
    value = tokens.issue("10.0.5.3", 10)
    assert tokens.valid("10.0.5.3", value) and not tokens.valid("10.0.5.4", value)
    now[0] += 11
    assert not tokens.valid("10.0.5.3", value)
    assert not Tokens(b"x" * 32, clock=lambda: 0).valid("10.0.5.3", value)  # another server's secret


# --- the records file --------------------------------------------------------------------------
def test_records_are_reread_when_replaced(client: Client, records_file: Path) -> None:
    assert client.get("/latest/meta-data/public-ipv4") == (200, "198.51.100.20")
    unbound = {key: value for key, value in TREE.items() if key != "public-ipv4"}
    publish(records_file, {"127.0.0.1": record(unbound, USER_DATA)})
    assert client.get("/latest/meta-data/public-ipv4")[0] == 404
    assert client.get("/latest/meta-data/instance-id", source="127.0.0.2")[0] == 404  # gone from the farm
    records_file.write_text("{broken")  # never serve stale data: nobody is served
    assert client.get("/latest/meta-data/instance-id")[0] == 404
    publish(records_file, {"127.0.0.1": record(TREE, None)})
    assert client.get("/latest/meta-data/instance-id") == (200, TREE["instance-id"])
    records_file.unlink()
    assert client.get("/latest/meta-data/instance-id")[0] == 404


@pytest.mark.parametrize("text, complaint", [
    ("[]", "JSON object"),
    ('{"10.0.0.300": {"meta-data": {}}}', "10.0.0.300"),
    ('{"10.0.0.3": {"user-data": null}}', "meta-data"),
    ('{"10.0.0.3": {"meta-data": {}, "user-data": "***"}}', "base64"),
    ('{"10.0.0.3": {"meta-data": {}, "user-data": 5}}', "base64 text or null"),
])
def test_malformed_records_are_refused(text: str, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        parse_records(text)


def test_pure_rendering() -> None:
    docs = InstanceDocs(TREE, None)
    assert answer(docs, "latest/meta-data/local-ipv4") is not None
    assert answer(None, "/latest/meta-data/") is None
    assert render({"list": ["a", "b"]}, ["list"]).body == b"a\nb"  # type: ignore[union-attr]
    assert render({"empty": {}}, ["empty"]).body == b""  # type: ignore[union-attr]


# --- the daemon ----------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_daemon_starts_serves_and_stops(records_file: Path, tmp_path: Path) -> None:
    pid_file, port = tmp_path / "metadata.pid", free_port()
    cmd = [sys.executable, "-m", "vrouter.metadata_server", f"--records={records_file}",
           f"--listen=127.0.0.1:{port}", f"--pid-file={pid_file}", "--daemon"]
    started = time.perf_counter()
    _sh.start_daemon(cmd, pid_file, "the metadata server", cwd=REPO)
    start_s = time.perf_counter() - started
    pid = _sh.daemon_pid(pid_file)
    try:
        assert pid is not None and pid != os.getpid()
        client = Client(port)
        latencies = []
        for _ in range(50):
            began = time.perf_counter()
            assert client.get("/latest/meta-data/instance-id") == (200, TREE["instance-id"])
            latencies.append(time.perf_counter() - began)
        print(f"\nmetadata daemon: start {start_s * 1000:.0f} ms, GET instance-id median "
              f"{statistics.median(latencies) * 1000:.2f} ms over loopback")
        # a second one cannot bind the same address: reported by the exit status, no daemon left
        with pytest.raises(RouterError, match="cannot listen"):
            _sh.start_daemon(cmd[:-2] + [f"--pid-file={tmp_path / 'second.pid'}", "--daemon"],
                             tmp_path / "second.pid", "the metadata server", cwd=REPO)
    finally:
        _sh.stop_daemon(pid_file)
    assert pid is not None and _sh.process_dead(pid) and not pid_file.exists()


def test_cli_refuses_a_bad_listen_address(records_file: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "vrouter.metadata_server", f"--records={records_file}",
                           "--listen=nowhere"], cwd=REPO, capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode == 2 and "HOST:PORT" in proc.stderr
