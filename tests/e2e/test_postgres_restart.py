"""PostgreSQL restarted under a running API server and provisioner (a private cluster of the test,
initdb'd under /var/tmp on its own port, run as user postgres): while it is down requests are
answered at once with ``Unavailable`` (503, which SDKs retry), nothing hangs and no process dies;
once it is back the same processes answer and carry out new launches."""
from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.support.localsite import LocalSite, QueryClient
from tests.support.polling import poll_until

pytestmark = pytest.mark.postgres
BIN = Path("/usr/lib/postgresql/15/bin")
IVFARM = str(Path(sys.executable).with_name("ivfarm"))


class PrivateCluster:
    """A PostgreSQL cluster of this test only: started, stopped and removed here."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = root / "data"
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        self.url = f"postgresql+psycopg://ivfarm@127.0.0.1:{self.port}/ivfarm"

    def _as_postgres(self, *args: str) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", *args], check=True, capture_output=True, timeout=120)

    def init(self) -> None:
        shutil.chown(self.root, "postgres", "postgres")
        self._as_postgres(str(BIN / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "ivfarm")
        self.start()
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=ivfarm dbname=postgres", autocommit=True) as conn:
            conn.execute("CREATE DATABASE ivfarm")

    def start(self) -> None:
        self._as_postgres(str(BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "server.log"), "-w",
                          "-o", f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1", "start")

    def stop(self, mode: str = "fast") -> None:
        self._as_postgres(str(BIN / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")


@pytest.fixture
def cluster() -> Iterator[PrivateCluster]:
    root = Path(tempfile.mkdtemp(prefix="ivfarm-pg-", dir="/var/tmp"))
    built = PrivateCluster(root)
    try:
        built.init()
        yield built
    finally:
        if (built.data / "postmaster.pid").exists():
            built.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)


def running(client: QueryClient) -> set[str]:
    status, body = client.call({"Action": "DescribeInstances", "Filter.1.Name": "instance-state-name",
                                "Filter.1.Value.1": "running"})
    return set(re.findall(r"<instanceId>(i-[0-9a-f]+)</instanceId>", body.decode())) if status == 200 else set()


def launch(client: QueryClient, ami: str, count: int) -> set[str]:
    status, body = client.call({"Action": "RunInstances", "ImageId": ami, "InstanceType": "m1.tiny",
                                "MinCount": str(count), "MaxCount": str(count)})
    assert status == 200, body
    return set(re.findall(r"<instanceId>(i-[0-9a-f]+)</instanceId>", body.decode()))


def test_api_and_provisioner_ride_out_a_postgres_restart(cluster: PrivateCluster, tmp_path: Path) -> None:
    site = LocalSite(tmp_path / "site", database_url=cluster.url, settings={"provisioner": {"poll_s": 0.2}})
    worker: subprocess.Popen[bytes] | None = None
    try:
        site.add_host("w1", cpus=16, memory_mb=16384)
        ami = site.add_image("base")
        farm = site.add_farm("alpha", instances=10)
        site.cloud.store.dispose()  # the test's own connections must not outlive the restart either
        site.start(args=("--no-provisioner",))
        env = {k: v for k, v in os.environ.items() if k not in ("IVFARM_DATABASE", "IVFARM_CONFIG")}
        with (tmp_path / "provisioner.log").open("ab") as log:
            worker = subprocess.Popen([IVFARM, "--config", str(site.config_path), "provisioner", "--workers", "2"],
                                      stdout=log, stderr=subprocess.STDOUT, env=env)
        client = QueryClient(site.endpoint, farm.access_key, farm.secret_key, site.region)
        first = launch(client, ami, 2)
        poll_until(lambda: first <= running(client), 60, 0.2, "the first launch did not run")

        cluster.stop()
        for params in ({"Action": "DescribeInstances"}, {"Action": "RunInstances", "ImageId": ami,
                                                         "InstanceType": "m1.tiny", "MinCount": "1", "MaxCount": "1"}):
            started = time.monotonic()
            status, body = client.call(params)
            assert (status, time.monotonic() - started < 10) == (503, True), body
            assert b"<Code>Unavailable</Code>" in body
        time.sleep(2)  # the provisioner polls (and fails to) meanwhile
        assert worker.poll() is None and site.process is not None and site.process.poll() is None

        cluster.start()
        poll_until(lambda: first <= running(client), 30, 0.5, "the API did not come back")
        second = launch(client, ami, 2)
        poll_until(lambda: second <= running(client), 60, 0.2,
                   lambda: "the provisioner did not come back:\n" + (tmp_path / "provisioner.log").read_text())
        assert worker.poll() is None
        client.close()
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(30)
        site.close()
