"""Shared fixtures: a cloud on a private state directory, fake hypervisors from libvirt's test driver."""
from __future__ import annotations

import functools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ivfarm.cloud import Cloud
from ivfarm.config import build_config
from ivfarm.services.compute.flavors import sync_catalog
from tests.support.fake_hypervisors import fake_hypervisor
from tests.support.postgres import scratch_schema

JS_DIR = Path(__file__).parent / "e2e" / "js"


def make_cloud(state_dir: Path, **overrides: Any) -> Cloud:
    """A cloud with its own state directory and SQLite store, ready to use."""
    data: dict[str, Any] = {"state_dir": str(state_dir), "vrouter": {"backend": "none"}}
    data.update(overrides)
    cloud = Cloud(build_config(data))
    cloud.prepare_state_dir()
    cloud.store.upgrade_schema()
    sync_catalog(cloud)
    return cloud


@pytest.fixture
def cloud(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cloud]:
    """A fresh cloud (vrouter backend none, no hosts yet)."""
    monkeypatch.delenv("IVFARM_DATABASE", raising=False)
    built = make_cloud(tmp_path / "state")
    yield built
    built.store.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_cloud(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cloud]:
    """A fresh cloud on SQLite and, in a second run, on a private schema of the test PostgreSQL server."""
    if request.param == "sqlite":
        built = make_cloud(tmp_path / "state")
        yield built
        built.store.dispose()
        return
    base = os.environ.get("IVFARM_TEST_POSTGRES_URL")
    if not base:
        pytest.skip("IVFARM_TEST_POSTGRES_URL is not set")  # turned into a failure under IVFARM_REQUIRE_ALL
    with scratch_schema(base, "ivfarm_cloud") as url:
        built = make_cloud(tmp_path / "state", database=url)
        yield built
        built.store.dispose()


@pytest.fixture
def cloud_factory(tmp_path: Path) -> Iterator[Callable[..., Cloud]]:
    """Builds extra clouds with configuration overrides (each on its own state directory)."""
    made: list[Cloud] = []

    def factory(**overrides: Any) -> Cloud:
        built = make_cloud(tmp_path / f"state-{len(made)}", **overrides)
        made.append(built)
        return built

    yield factory
    for built in made:
        built.store.dispose()


@pytest.fixture(scope="session")
def dhcp_dir() -> Iterator[Path]:
    """Where netns routers made directly by tests keep their DHCP hosts files: a directory the
    unprivileged dnsmasq user can reach (pytest's own temporary directories are 0700)."""
    path = Path(tempfile.mkdtemp(prefix="ivfarm-dhcp-", dir="/var/tmp"))
    os.chmod(path, 0o711)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def fake_host(tmp_path: Path) -> Callable[[str, int, int], str]:
    """Returns a factory of test-driver URIs, each a private fake hypervisor of the given size."""

    def factory(name: str, cpus: int = 8, memory_mb: int = 16384) -> str:
        return fake_hypervisor(tmp_path / f"{name}.xml", cpus, memory_mb)

    return factory


@pytest.fixture
def raw_disk(tmp_path: Path) -> Path:
    """A small raw disk image file."""
    path = tmp_path / "disk.raw"
    with path.open("wb") as handle:
        handle.truncate(8 * 1024 * 1024)
        handle.seek(0)
        handle.write(b"ivfarm test disk")
    return path


@pytest.fixture
def base_image(cloud: Cloud, raw_disk: Path):  # type: ignore[no-untyped-def]
    """A public raw machine image registered in the cloud."""
    from ivfarm.services.images.catalog import add_image

    return add_image(cloud, "base", raw_disk, public=True)


@functools.lru_cache(maxsize=None)
def _unmet(marker: str) -> str | None:
    """Why a test with ``marker`` cannot run here, or None when it can."""
    if marker in ("root", "libvirtd", "vm", "gluster", "sshd") and os.geteuid() != 0:
        return "needs root"
    if marker in ("libvirtd", "vm"):
        probe = subprocess.run(["virsh", "-c", "qemu:///system", "version"], capture_output=True, check=False)
        if probe.returncode != 0:
            return "needs a running qemu:///system libvirtd"
    if marker == "postgres" and not os.environ.get("IVFARM_TEST_POSTGRES_URL"):
        return "needs IVFARM_TEST_POSTGRES_URL (scripts/start-postgres.sh)"
    if marker == "gluster" and shutil.which("glusterd") is None:
        return "needs glusterfs-server"
    if marker == "sshd" and not os.path.exists("/usr/sbin/sshd"):
        return "needs openssh-server"
    if marker == "npm" and shutil.which("node") is None:
        return "needs node (nodejs)"
    if marker == "npm" and not (JS_DIR / "node_modules" / "@aws-sdk" / "client-ec2").is_dir():
        return f"needs the JavaScript SDK in {JS_DIR}/node_modules (run `make js`)"
    return None


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Tests that need root, libvirtd, PostgreSQL... skip on a laptop but fail in CI (IVFARM_REQUIRE_ALL=1)."""
    for marker in ("root", "libvirtd", "vm", "postgres", "gluster", "sshd", "npm"):
        if item.get_closest_marker(marker) is None:
            continue
        reason = _unmet(marker)
        if reason is None:
            continue
        if os.environ.get("IVFARM_REQUIRE_ALL") == "1":
            pytest.fail(f"{reason}, and IVFARM_REQUIRE_ALL=1 forbids skipping", pytrace=False)
        pytest.skip(reason)
