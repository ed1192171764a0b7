"""``ivfarm ec2 serve --workers N``: several processes, graceful stop and reload, the body limit
before the body is read, Prometheus metrics and JSON log lines."""
from __future__ import annotations

import json
import re
import signal
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest

from tests.e2e.ec2_support import Ec2Site, start_site
from tests.support.localsite import QueryClient
from tests.support.polling import poll_until


def access_lines(site: Ec2Site) -> list[dict[str, Any]]:
    """The JSON access log lines the server wrote so far."""
    lines = [json.loads(line) for line in site.site.server_log().splitlines() if line.strip()]
    return [line for line in lines if line["logger"] == "ivfarm.ec2.access"]


@pytest.fixture(scope="module")
def multi(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ec2Site]:
    """Two workers of one thread each, JSON logs, metrics on a free port."""
    root = tmp_path_factory.mktemp("workers")
    (root / "metrics").mkdir()
    built = start_site(root / "site", serve_args=("--workers", "2", "--log-format", "json",
                                                  "--metrics-listen", "127.0.0.1:0"),
                       serve_env={"PROMETHEUS_MULTIPROC_DIR": str(root / "metrics")})
    yield built
    built.site.close()


def test_two_workers_answer_concurrent_requests(multi: Ec2Site) -> None:
    errors: list[BaseException] = []

    def describe() -> None:
        try:
            for _ in range(10):
                multi.client("alpha").describe_instances()  # a new connection each time
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    threads = [threading.Thread(target=describe) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors
    pids = {line["pid"] for line in access_lines(multi) if line["action"] == "DescribeInstances"}
    assert len(pids) == 2


def test_json_log_lines_carry_request_fields_and_no_secrets(multi: Ec2Site) -> None:
    alpha = multi.client("alpha")
    alpha.run_instances(ImageId=multi.ami, MinCount=1, MaxCount=1, UserData="#!/bin/sh\necho TOP-SECRET\n")
    status, _ = multi.raw("alpha").call({"Action": "NoSuchAction"})
    assert status == 400
    log = multi.site.server_log()
    for line in log.splitlines():  # every line is one JSON object, gunicorn's own included
        assert {"time", "level", "logger", "message"} <= set(json.loads(line))
    run = next(line for line in access_lines(multi) if line["action"] == "RunInstances")
    assert run["farm"] == "alpha" and run["status"] == 200 and run["level"] == "info"
    assert re.fullmatch(r"[0-9a-f-]{36}", run["request_id"]) and run["duration_ms"] > 0
    assert any(line["status"] == 400 and line["farm"] == "alpha" for line in access_lines(multi))
    for secret in (multi.farms["alpha"].secret_key, "TOP-SECRET", "Signature=", "Credential="):
        assert secret not in log


def test_metrics_count_requests_by_action_and_status(multi: Ec2Site) -> None:
    found = re.search(r"metrics on (http://\S+/metrics)", multi.site.server_log())
    assert found
    for _ in range(3):
        multi.raw("beta").call({"Action": "DescribeRegions"})
    multi.raw("beta").call({"Action": "DescribeInstances", "InstanceId.1": "i-0123456789abcdef0"})

    def samples() -> dict[str, float]:
        with urllib.request.urlopen(found.group(1), timeout=10) as answer:
            text = answer.read().decode()
        return {name: float(value) for name, value in re.findall(r"^(\S+) (\S+)$", text, re.M)}

    shown = samples()
    assert shown['ivfarm_ec2_requests_total{action="DescribeRegions",status="200"}'] >= 3
    assert shown['ivfarm_ec2_requests_total{action="DescribeInstances",status="400"}'] >= 1
    assert shown['ivfarm_ec2_request_duration_seconds_count{action="DescribeRegions",status="200"}'] >= 3
    assert 'ivfarm_ec2_request_duration_seconds_bucket{action="DescribeRegions",le="0.1",status="200"}' in shown


def _headers(endpoint: str, extra: str) -> tuple[socket.socket, bytes]:
    parts = urlsplit(endpoint)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=10)
    return sock, (f"POST / HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                  f"Content-Type: application/x-www-form-urlencoded\r\n{extra}\r\n").encode()


def _read_until(sock: socket.socket, marker: bytes) -> bytes:
    """What the server sends until ``marker`` (or until it closes)."""
    answer = b""
    while marker not in answer:
        data = sock.recv(65536)
        if not data:
            break
        answer += data
    return answer


def test_huge_content_length_is_refused_before_the_body_is_sent(multi: Ec2Site) -> None:
    sock, head = _headers(multi.endpoint, "Content-Length: 100000000000\r\n")
    with sock:
        started = time.monotonic()
        sock.sendall(head)  # and not one byte of the body
        answer = _read_until(sock, b"</Response>")
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert b"RequestEntityTooLarge" in answer and time.monotonic() - started < 5


def test_chunked_body_over_the_limit_is_refused(multi: Ec2Site) -> None:
    sock, head = _headers(multi.endpoint, "Transfer-Encoding: chunked\r\n")
    chunk = b"%x\r\n%s\r\n" % (65536, b"A" * 65536)
    with sock:
        sock.sendall(head)
        try:
            for _ in range(40):  # 2.5 MiB, over the 2 MiB limit
                sock.sendall(chunk)
            sock.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # the server may close once it has answered
        answer = _read_until(sock, b"</Response>")
    assert answer.startswith(b"HTTP/1.1 413 ")


def test_sigterm_lets_a_request_in_flight_finish(tmp_path: Path) -> None:
    site = start_site(tmp_path / "site", serve_args=("--workers", "2"))
    try:
        request = site.raw("alpha")
        body = b"Action=DescribeRegions&Version=2016-11-15"
        # A signed request whose body is still on its way when the server is told to stop.
        sock, head = _headers(site.endpoint, "".join(f"{k}: {v}\r\n" for k, v in _signed(request, body).items()))
        with sock:
            sock.sendall(head + body[:10])
            time.sleep(0.5)
            process = site.site.process
            assert process is not None
            process.send_signal(signal.SIGTERM)
            time.sleep(0.5)
            sock.sendall(body[10:])
            answer = _read_until(sock, b"</DescribeRegionsResponse>")
        assert answer.startswith(b"HTTP/1.1 200 ")
        assert process.wait(60) == 0
    finally:
        site.site.close()


def _signed(client: QueryClient, body: bytes) -> dict[str, str]:
    """SigV4 headers for ``body`` posted to the client's endpoint."""
    request = AWSRequest(method="POST", url=client.endpoint, data=body,
                         headers={"Content-Type": "application/x-www-form-urlencoded"})
    SigV4Auth(client.credentials, "ec2", client.region).add_auth(request)
    return {k: v for k, v in request.headers.items() if k.lower() != "content-type"} | {
        "Content-Length": str(len(body))}


def test_sighup_reloads_while_serving(tmp_path: Path) -> None:
    site = start_site(tmp_path / "site", serve_args=("--workers", "2", "--log-format", "json"))
    statuses: list[int] = []
    stop = threading.Event()

    def hammer() -> None:
        client = site.raw("alpha")
        while not stop.is_set():
            statuses.append(client.call({"Action": "DescribeInstances"})[0])

    try:
        before = {line["pid"] for line in access_lines(site)} | _worker_pids(site)
        workers = [threading.Thread(target=hammer) for _ in range(3)]
        for worker in workers:
            worker.start()
        poll_until(lambda: len(statuses) > 20, 30, 0.1)
        process = site.site.process
        assert process is not None
        process.send_signal(signal.SIGHUP)
        poll_until(lambda: len(_worker_pids(site) - before) >= 2, 30, 0.1, site.site.server_log)
        served = len(statuses)
        poll_until(lambda: len(statuses) > served + 20, 30, 0.1)
        stop.set()
        for worker in workers:
            worker.join(30)
        fresh = _worker_pids(site) - before
        assert fresh & {line["pid"] for line in access_lines(site)}  # the new workers answer
        assert process.poll() is None
    finally:
        stop.set()
        site.site.close()
    assert set(statuses) == {200}


def _worker_pids(site: Ec2Site) -> set[int]:
    return {int(pid) for pid in re.findall(r"Booting worker with pid: (\d+)", site.site.server_log())}


def test_a_request_is_accepted_once_whichever_worker_it_reaches(multi: Ec2Site) -> None:
    client = multi.raw("beta")
    captured = client.prepare({"Action": "CreateKeyPair", "KeyName": "captured"})
    assert client.send(*captured)[0] == 200
    multi.client("beta").delete_key_pair(KeyName="captured")
    time.sleep(2.5)  # past the client's own repeats within its signing second
    answers: list[tuple[int, bytes]] = []
    threads = [threading.Thread(target=lambda: answers.append(client.send(*captured))) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(answers) == 12 and all(status == 401 and b"AuthFailure" in body for status, body in answers)
    refused = {line["pid"] for line in access_lines(multi) if line["status"] == 401 and line["farm"] == "beta"}
    assert len(refused) == 2  # both workers saw the replay, and both refused it
    assert multi.client("beta").describe_key_pairs()["KeyPairs"] == []
