"""Issue 13, item 6 (metadata server): the tenant-facing metadata server does not run as root.

Started as root (as the netns router starts it) with ``--user=nobody``, it binds its port, then
becomes nobody with no supplementary groups: whoever takes it over from a VM gets nobody's
rights. It still reads its records, owned by nobody, in a directory under a tree closed to
nobody (the state directory's run/ is 0700), and sees them replaced.
Before the fix there was no ``--user`` and the server stayed root.
"""
from __future__ import annotations

import http.client
import json
import os
import pwd
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fileops.atomic import atomic_open
from tests.security.test_metadata_slow_clients import _free_port
from tests.support.polling import poll_until

pytestmark = pytest.mark.root
NOBODY = pwd.getpwnam("nobody")


def publish(path: Path, instance_id: str) -> None:
    """As the netns router does: replaced atomically, 0600, owned by the server's user."""
    with atomic_open(path, 0o600) as stream:
        os.fchown(stream.fileno(), NOBODY.pw_uid, NOBODY.pw_gid)
        stream.write(json.dumps({"127.0.0.1": {"meta-data": {"instance-id": instance_id}}}).encode())


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[int, int, Path]]:
    run = tmp_path / "run"
    router = run / "routers" / "r1"
    router.mkdir(parents=True)
    os.chmod(run, 0o700)
    records, pid = router / "metadata.json", router / "metadata.pid"
    publish(records, "i-000000000000000a1")
    port = _free_port()
    process = subprocess.Popen([sys.executable, "-m", "vrouter.metadata_server", f"--records={records}",
                                f"--listen=127.0.0.1:{port}", f"--pid-file={pid}", "--user=nobody"])
    try:
        poll_until(pid.exists, 10, 0.05, lambda: "the metadata server did not start")
        yield port, process.pid, records
    finally:
        process.terminate()
        process.wait(10)


def instance_id(port: int) -> bytes:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", "/latest/meta-data/instance-id")
        return connection.getresponse().read()
    finally:
        connection.close()


def test_the_metadata_server_serves_as_nobody(server: tuple[int, int, Path]) -> None:
    port, pid, records = server
    assert instance_id(port) == b"i-000000000000000a1"
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    assert status["Uid"].split() == [str(NOBODY.pw_uid)] * 4
    assert status["Gid"].split() == [str(NOBODY.pw_gid)] * 4
    assert status["Groups"].strip() == ""
    publish(records, "i-000000000000000a2")
    time.sleep(0.05)
    assert instance_id(port) == b"i-000000000000000a2"
