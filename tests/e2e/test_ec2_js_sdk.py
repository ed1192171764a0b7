"""A whole farm-user session through the AWS SDK for JavaScript v3 (``@aws-sdk/client-ec2``), waiters
and paginators included.

``tests/e2e/js/session.mjs`` runs under node against ``ivfarm ec2 serve`` on 127.0.0.1 and prints what
it saw as one JSON object; this test asserts on that. The SDK is pinned in ``tests/e2e/js/package.json``
and its lock file, installed by ``make js`` (a part of ``make test``). The fake hosts have no serial
console, so a thread here plays it: once an instance is running, its console log gets a boot banner,
and the script asks GetConsoleOutput until the log has something, as one does on AWS.
"""
from __future__ import annotations

import json
import os
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.ec2_support import Ec2Site

pytestmark = pytest.mark.npm

SCRIPT = Path(__file__).with_name("js") / "session.mjs"
CONSOLE = b"Linux version 6.1\r\nivfarm login: "
USER_DATA = "#!/bin/sh\necho hello from the JavaScript SDK\n"


@pytest.fixture
def serial_consoles(ec2_site: Ec2Site) -> Iterator[None]:
    """Writes a boot banner into the console log of each of alpha's instances once it is running."""
    done = threading.Event()
    client = ec2_site.client("alpha")
    directory = ec2_site.site.cloud.consoles.directory

    def play() -> None:
        while not done.wait(0.2):
            for reservation in client.describe_instances()["Reservations"]:
                for instance in reservation["Instances"]:
                    log = directory / f"{instance['InstanceId']}.log"
                    if instance["State"]["Name"] == "running" and not log.exists():
                        log.write_bytes(CONSOLE)

    thread = threading.Thread(target=play, daemon=True)
    thread.start()
    yield
    done.set()
    thread.join(timeout=10)


def test_js_sdk_session(ec2_site: Ec2Site, serial_consoles: None) -> None:
    keys = ec2_site.farms["alpha"]
    env = {**os.environ, "IVFARM_EC2_ENDPOINT": ec2_site.endpoint, "IVFARM_EC2_REGION": ec2_site.site.region,
           "IVFARM_EC2_IMAGE": ec2_site.ami, "AWS_ACCESS_KEY_ID": keys.access_key,
           "AWS_SECRET_ACCESS_KEY": keys.secret_key, "AWS_CONFIG_FILE": "/dev/null",
           "AWS_SHARED_CREDENTIALS_FILE": "/dev/null"}
    done = subprocess.run(["node", str(SCRIPT)], capture_output=True, text=True, env=env, timeout=540, check=False)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)

    assert seen["keyPair"] == {"name": "js-key", "hasPrivateKey": True, "listed": ["js-key"]}
    group_id = seen["securityGroup"]["id"]
    assert group_id.startswith("sg-") and seen["securityGroup"]["names"] == ["js-web"]
    assert seen["securityGroup"]["ingress"] == [{"protocol": "tcp", "from": 80, "to": 80, "cidrs": ["0.0.0.0/0"]}]

    launched = seen["launched"]
    web_id = launched["id"]
    assert launched["state"] in ("pending", "running") and launched["waiter"] == "SUCCESS"
    assert launched["keyName"] == "js-key" and launched["groups"] == [group_id] and launched["privateIp"]
    assert launched["userData"] == USER_DATA
    assert seen["tagFilter"] == {"web": [web_id], "other": []}
    assert seen["tags"] == {"role": "web", "session": "js"}

    every_id = [web_id, *seen["batch"]]
    assert len(set(every_id)) == 7
    pages = seen["pages"]
    assert [len(page) for page in pages] == [5, 2]  # MaxResults 5 over seven instances
    assert sorted(i for page in pages for i in page) == sorted(every_id)

    address = seen["address"]
    assert address["described"] == [{"instanceId": web_id, "associationId": address["associationId"],
                                     "publicIp": address["publicIp"]}]
    assert address["instancePublicIp"] == address["publicIp"]
    assert address["afterDisassociate"] == [None] and address["releasedGone"]

    assert seen["console"]["instanceId"] == web_id and "ivfarm login:" in seen["console"]["output"]

    assert seen["stop"] == {"waiter": "SUCCESS", "state": "stopped"}
    assert seen["start"] == {"waiter": "SUCCESS", "state": "running"}
    assert sorted(seen["terminate"]["changes"]) == sorted(every_id)
    assert seen["terminate"]["waiter"] == "SUCCESS" and seen["terminate"]["states"] == ["terminated"]
    assert seen["deleted"] == {"groupsLeft": ["default"], "keysLeft": []}
    assert seen["unknownInstance"] == {"name": "InvalidInstanceID.NotFound", "status": 400}
