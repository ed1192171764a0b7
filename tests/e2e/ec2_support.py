"""Helpers shared by the EC2 end-to-end tests (the ``ec2_site`` fixture is in conftest.py).

``ec2_site`` is a module-scoped site on libvirt's test driver with ``ivfarm ec2 serve`` running on
a free loopback port, two farms (alpha, beta) and a public image. ``start_site`` builds one on any
configuration (the real-VM tests can pass their own settings and database URL).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from tests.support.localsite import FarmKeys, LocalSite, QueryClient

NO_RETRIES = Config(retries={"total_max_attempts": 1, "mode": "standard"})


@dataclass
class Ec2Site:
    """A running site with its farms' credentials and a public image."""

    site: LocalSite
    endpoint: str
    ami: str
    farms: dict[str, FarmKeys]

    def client(self, farm: str = "alpha", **kwargs: Any) -> Any:
        """A boto3 EC2 client with the farm's credentials (no retries, so errors show as they are)."""
        keys = self.farms[farm]
        return boto3.client("ec2", endpoint_url=self.endpoint, region_name=self.site.region,
                            aws_access_key_id=keys.access_key, aws_secret_access_key=keys.secret_key,
                            config=kwargs.pop("config", NO_RETRIES), **kwargs)

    def raw(self, farm: str = "alpha") -> QueryClient:
        """A raw signed Query client (XML back) with the farm's credentials."""
        keys = self.farms[farm]
        return QueryClient(self.endpoint, keys.access_key, keys.secret_key, self.site.region)


def start_site(root: Path, database_url: str | None = None, settings: dict[str, Any] | None = None,
               quotas: dict[str, int] | None = None, serve_args: tuple[str, ...] = (),
               serve_env: dict[str, str] | None = None) -> Ec2Site:
    """Hosts w1, w2 (worker) and s1 (service), image ``base``, farms alpha and beta, server running
    (``serve_args`` and ``serve_env``: more options and environment for ``ivfarm ec2 serve``)."""
    site = LocalSite(root, database_url, settings)
    try:
        site.add_host("w1", cpus=64, memory_mb=65536)
        site.add_host("w2", cpus=64, memory_mb=65536)
        site.add_host("s1", cpus=32, memory_mb=32768, host_class="service")
        ami = site.add_image("base")
        limits = quotas or {"instances": 40, "vcpus": 80, "memory_mb": 65536, "disk_gb": 1000, "addresses": 3}
        farms = {name: site.add_farm(name, **limits) for name in ("alpha", "beta")}
        endpoint = site.start(args=serve_args, env=serve_env)
    except BaseException:
        site.close()
        raise
    return Ec2Site(site, endpoint, ami, farms)


def error_code(excinfo: pytest.ExceptionInfo[Any]) -> str:
    """The EC2 error code of a botocore ClientError."""
    return str(excinfo.value.response["Error"]["Code"])
