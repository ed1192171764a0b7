"""A throwaway site on libvirt's test driver with ``ivfarm ec2 serve`` on loopback.

For tests, benchmarks and demos: everything lives under one directory (configuration, state,
fake hypervisors' node files, server log) and ``close()`` removes it after stopping the server.
"""
from __future__ import annotations

import http.client
import os
import re
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import yaml
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from ivfarm.cloud import Cloud
from ivfarm.config import load_config
from ivfarm.services.compute import hosts
from ivfarm.services.compute.flavors import sync_catalog
from ivfarm.services.farms import lifecycle
from ivfarm.services.images import catalog
from tests.support.fake_hypervisors import fake_hypervisor
from tests.support.polling import poll_until

_READY = re.compile(r"EC2 endpoint on (https?://\S+/)")


@dataclass(frozen=True)
class FarmKeys:
    """A farm and the EC2 credentials of its users."""

    name: str
    farm_id: int
    access_key: str
    secret_key: str


class LocalSite:
    """A cloud under ``root`` with a SQLite (or given) database and vrouter backend none."""

    def __init__(self, root: Path, database_url: str | None = None, settings: dict[str, Any] | None = None) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        data: dict[str, Any] = {"state_dir": str(root / "state"), "vrouter": {"backend": "none"}}
        if database_url:
            data["database"] = database_url
        data.update(settings or {})
        self.config_path = root / "ivfarm.yaml"
        self.config_path.write_text(yaml.safe_dump(data))
        self.cloud = Cloud(load_config(self.config_path))
        self.cloud.prepare_state_dir()
        self.cloud.store.upgrade_schema()
        sync_catalog(self.cloud)
        self.process: subprocess.Popen[bytes] | None = None
        self.endpoint = ""
        self.log_path = root / "server.log"

    @property
    def region(self) -> str:
        return str(self.cloud.config.get("ec2.region"))

    def add_host(self, name: str, cpus: int = 64, memory_mb: int = 262144, host_class: str = "worker",
                 disk_gb: int = 100000) -> None:
        """Register a fake hypervisor of that size (a private test-driver instance)."""
        (self.root / "hosts").mkdir(exist_ok=True)
        uri = fake_hypervisor(self.root / "hosts" / f"{name}.xml", cpus, memory_mb)
        hosts.add_host(self.cloud, name, uri, host_class, disk_gb=disk_gb)

    def add_image(self, name: str, public: bool = True, size_mb: int = 8) -> str:
        """Register a small raw machine image; returns its ami id."""
        disk = self.root / f"{name}.raw"
        with disk.open("wb") as handle:
            handle.truncate(size_mb * 1024 * 1024)
        image = catalog.add_image(self.cloud, name, disk, public=public)
        disk.unlink()
        return image.id

    def add_farm(self, name: str, cidr: str | None = None, **limits: int) -> FarmKeys:
        """Create a farm (quotas not given keep the configured defaults)."""
        farm = lifecycle.create_farm(self.cloud, lifecycle.FarmRequest(name=name, cidr=cidr, quotas=dict(limits)))
        return FarmKeys(farm.name, farm.id, farm.access_key, farm.secret_key)

    def start(self, threads: int = 8, timeout: float = 30.0, args: tuple[str, ...] = (),
              env: dict[str, str] | None = None) -> str:
        """Start the server on a free loopback port (``args``: more ``serve`` options, ``env``: more
        environment); returns its endpoint URL."""
        environ = {k: v for k, v in os.environ.items() if k not in ("IVFARM_DATABASE", "IVFARM_CONFIG")}
        environ.update(env or {})
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0  # a restart's line, not the last one's
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [str(Path(sys.executable).with_name("ivfarm")), "--config", str(self.config_path), "ec2", "serve",
                 "--listen", "127.0.0.1:0", "--threads", str(threads), *args],
                stdout=log, stderr=subprocess.STDOUT, env=environ)
        process = self.process

        def ready() -> re.Match[str] | None:
            with self.log_path.open("rb") as log:
                log.seek(offset)
                found = _READY.search(log.read().decode(errors="replace"))
            if found is None and process.poll() is not None:
                raise ChildProcessError(f"exited with status {process.returncode}")
            return found

        try:
            self.endpoint = poll_until(ready, timeout, 0.05, error=TimeoutError).group(1)
        except (ChildProcessError, TimeoutError):
            self.stop()
            raise RuntimeError(f"the EC2 server did not start:\n{self.log_path.read_text(errors='replace')}") from None
        return self.endpoint

    def stop(self, timeout: float = 60.0) -> int | None:
        """SIGTERM the server and wait; returns its exit status (None if it was not running)."""
        process, self.process = self.process, None
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            return process.wait()

    def server_log(self) -> str:
        """What the server printed so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def close(self) -> None:
        """Stop the server, release the database and remove the site's directory."""
        self.stop()
        self.cloud.store.dispose()
        shutil.rmtree(self.root, ignore_errors=True)


class QueryClient:
    """Signed EC2 Query requests over one keep-alive connection (raw XML back, no parsing)."""

    def __init__(self, endpoint: str, access_key: str, secret_key: str, region: str) -> None:
        from urllib.parse import urlsplit

        self.endpoint = endpoint
        self.region = region
        self.credentials = Credentials(access_key, secret_key)
        parts = urlsplit(endpoint)
        self.host = parts.netloc
        self._connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=120)

    def call(self, params: dict[str, str], sign: bool = True, version: str = "2016-11-15") -> tuple[int, bytes]:
        """POST ``params`` (Action included) signed with SigV4; returns status and body."""
        body, headers = self.prepare(params, sign, version)
        try:
            self._connection.request("POST", "/", body=body, headers=headers)
            response = self._connection.getresponse()
        except (http.client.HTTPException, OSError):
            self._connection.close()
            self._connection.request("POST", "/", body=body, headers=headers)
            response = self._connection.getresponse()
        return response.status, response.read()

    def prepare(self, params: dict[str, str], sign: bool = True, version: str = "2016-11-15") -> tuple[bytes, dict[str, str]]:
        """The body and headers of a POST of ``params``, signed now (send them again to replay them)."""
        body = urlencode({**params, "Version": version}).encode()
        request = AWSRequest(method="POST", url=self.endpoint, data=body,
                             headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"})
        if sign:
            SigV4Auth(self.credentials, "ec2", self.region).add_auth(request)
        return body, dict(request.headers.items())

    def send(self, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        """POST prepared bytes on a connection of their own; returns status and body."""
        parts = urlsplit(self.endpoint)
        connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=60)
        try:
            connection.request("POST", "/", body=body, headers=headers)
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def close(self) -> None:
        self._connection.close()
