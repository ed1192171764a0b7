"""`ivfarm ec2 serve` for a real test cloud, and boto3 clients with a farm's credentials."""
from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import yaml
from botocore.config import Config

from ivfarm.cloud import Cloud
from ivfarm.store.models import Farm
from tests.support.polling import accepts, poll_until


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def ec2_server(cloud: Cloud) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Run the EC2 endpoint on the cloud's configuration; yields (endpoint URL, master process), the
    server in a process group of its own (``os.killpg(server.pid, ...)`` reaches every worker)."""
    config = cloud.config.state_dir / "ivfarm.yaml"
    config.write_text(yaml.safe_dump(cloud.config.data))
    port = _free_port()
    server = subprocess.Popen([str(Path(sys.executable).with_name("ivfarm")), "--config", str(config), "ec2", "serve",
                               "--listen", f"127.0.0.1:{port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)  # its own process group: the master and its workers
    try:
        def started() -> bool:
            if server.poll() is not None:
                raise RuntimeError("the EC2 server did not start")
            return accepts(port)

        poll_until(started, 30, 0.1, "the EC2 server did not start", error=RuntimeError)
        yield f"http://127.0.0.1:{port}", server
    finally:
        if server.poll() is None:
            server.terminate()
            server.wait(30)


def farm_client(endpoint: str, farm: Farm, region: str = "ivfarm-1") -> Any:
    """A boto3 EC2 client signed with the farm's credentials."""
    return boto3.client("ec2", endpoint_url=endpoint, region_name=region, aws_access_key_id=farm.access_key,
                        aws_secret_access_key=farm.secret_key,
                        config=Config(retries={"total_max_attempts": 3, "mode": "standard"}))
