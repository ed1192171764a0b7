"""``ivfarm ec2 serve``: one log line per request without secrets, clean stop on SIGTERM."""
from __future__ import annotations

import base64
import re
import signal
import socket
import threading
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.e2e.ec2_support import start_site
from tests.support.polling import poll_until


def test_log_lines_carry_no_secrets_and_sigterm_exits_zero(tmp_path: Path) -> None:
    site = start_site(tmp_path / "site")
    try:
        alpha = site.client("alpha")
        user_data = "#!/bin/sh\necho TOP-SECRET-USER-DATA\n"
        alpha.run_instances(ImageId=site.ami, MinCount=1, MaxCount=1, UserData=user_data)
        material = alpha.create_key_pair(KeyName="k")["KeyMaterial"]
        alpha.describe_instances()
        status, _ = site.raw("alpha").call({"Action": "NoSuchAction"})
        assert status == 400
        assert site.site.stop() == 0
        log = site.site.server_log()
    finally:
        site.site.close()
    lines = [line for line in log.splitlines() if "ivfarm.ec2.access" in line]
    assert re.search(r"POST RunInstances farm=alpha status=200 [0-9.]+ms$", lines[0])
    assert any("POST CreateKeyPair farm=alpha status=200" in line for line in lines)
    assert any("farm=alpha status=400" in line for line in lines)
    keys = site.farms["alpha"]
    for secret in (keys.secret_key, "TOP-SECRET-USER-DATA", base64.b64encode(user_data.encode()).decode()[:20],
                   material.splitlines()[1], "Signature=", "Credential="):
        assert secret not in log
    assert "stopped" in log.splitlines()[-1]


def test_sigterm_finishes_requests_in_flight_then_refuses(tmp_path: Path) -> None:
    site = start_site(tmp_path / "site")
    answers: list[bytes] = []
    failures: list[BaseException] = []
    stop = threading.Event()

    def hammer() -> None:
        client = site.raw("alpha")
        while not stop.is_set():
            try:
                _, body = client.call({"Action": "DescribeInstances"})
            except OSError:
                return  # the server went away: no more answers
            except BaseException as exc:  # noqa: BLE001 - reported by the test
                failures.append(exc)
                return
            answers.append(body)

    try:
        for _ in range(3):
            site.client("alpha").run_instances(ImageId=site.ami, MinCount=1, MaxCount=1)
        workers = [threading.Thread(target=hammer) for _ in range(4)]
        for worker in workers:
            worker.start()
        poll_until(lambda: len(answers) > 20, 30, 0.1)
        process = site.site.process
        assert process is not None
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0
        stop.set()
        for worker in workers:
            worker.join(30)
        parts = urlsplit(site.endpoint)
        with pytest.raises(OSError):
            socket.create_connection((parts.hostname, parts.port), timeout=2).close()
    finally:
        stop.set()
        site.site.close()
    assert not failures
    for body in answers:  # every answer that came back is complete XML
        assert ET.fromstring(body).tag.endswith("DescribeInstancesResponse")
