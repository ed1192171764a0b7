"""Real clouds for integration tests: qemu:///system, the busybox guest, namespaces and bridges.

Every cloud lives under /var/lib/ivfarm-test/<id> (libvirt-qemu must traverse it), uses its own
storage pool prefix, VLAN range and public segment, and is removed completely afterwards.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import libvirt
import pytest

from ivfarm.cloud import Cloud
from ivfarm.config import build_config
from ivfarm.services.compute import hosts, provisioning
from ivfarm.services.compute.flavors import sync_catalog
from ivfarm.services.farms import lifecycle
from ivfarm.services.images import catalog
from ivfarm.store.models import Farm, Instance
from tests.support.polling import poll_until, text_with

REPO = Path(__file__).resolve().parents[2]
GUEST_DIR = Path(os.environ.get("IVFARM_GUEST_DIR", "/var/lib/ivfarm-guest"))
TEST_ROOT = Path("/var/lib/ivfarm-test")
_vlan_blocks = iter(range(3000 + (os.getpid() % 40) * 24, 4000, 4))


@pytest.fixture(scope="session")
def guest_dir() -> Path:
    """The busybox guest (kernel, initramfs, root disk); images/build.sh rebuilds only what changed."""
    subprocess.run([str(REPO / "images" / "build.sh"), str(GUEST_DIR)], check=True, capture_output=True)
    return GUEST_DIR


def register_guest(cloud: Cloud, guest: Path) -> str:
    """Register the guest's kernel, initrd and root disk; returns the machine image's id."""
    manifest = json.loads((guest / "manifest.json").read_text())
    kernel = catalog.add_image(cloud, "guest-kernel", guest / "vmlinuz", kind="kernel", public=True)
    initrd = catalog.add_image(cloud, "guest-initrd", guest / "initrd.img", kind="ramdisk", public=True)
    machine = catalog.add_image(cloud, "guest", guest / "rootfs.raw", public=True, kernel=kernel.id,
                               ramdisk=initrd.id, cmdline=manifest["cmdline"])
    return machine.id


def remove_pools(prefix: str) -> None:
    """Remove the storage pools named ``<prefix>-...`` from this machine's libvirtd."""
    conn = libvirt.open("qemu:///system")
    try:
        for pool in conn.listAllStoragePools():
            if pool.name().startswith(prefix + "-"):
                if pool.isActive():
                    pool.destroy()
                pool.undefine()
    finally:
        conn.close()


def teardown_cloud(cloud: Cloud) -> None:
    """Delete every farm and instance of the cloud, then its pools and state directory."""
    with cloud.store.read() as session:
        farm_names = [f.name for f in session.query(Farm)]
        loose = [i.id for i in session.query(Instance).filter(Instance.farm_id.is_(None), Instance.state != "terminated")]
    for name in farm_names:
        lifecycle.delete_farm(cloud, name)
    for instance_id in loose:
        provisioning.terminate(cloud, instance_id)
    if cloud.config.get("vrouter.backend") == "netns":
        cloud.public_segment.destroy()
    cloud.store.dispose()
    remove_pools(cloud.cloud_id)
    shutil.rmtree(cloud.config.state_dir, ignore_errors=True)


@pytest.fixture
def real_cloud_factory(guest_dir: Path) -> Iterator[Callable[..., Cloud]]:
    """Builds clouds on this machine's libvirtd; everything they made is removed at the end."""
    made: list[Cloud] = []

    def factory(router: str = "none", **overrides: Any) -> Cloud:
        tag = uuid.uuid4().hex[:6]
        state = TEST_ROOT / tag
        TEST_ROOT.mkdir(mode=0o755, exist_ok=True)
        os.chmod(TEST_ROOT, 0o755)
        first_vlan = next(_vlan_blocks)
        data: dict[str, Any] = {
            "state_dir": str(state),
            "cloud_id": f"ivt{tag}",
            "hypervisor": {"shutdown_timeout_s": 3, "cpu_allocation_ratio": 8.0},
            "vrouter": {"backend": router},
            "network": {
                "vlan_range": [first_vlan, first_vlan + 3],
                "farm_pool": "10.99.0.0/16",
                "public": {"bridge": f"ivp{tag}", "netns": f"ivt-pub-{tag}"},
            },
        }
        for key, value in overrides.items():  # a section's keys merge into the defaults above
            data[key] = {**data[key], **value} if isinstance(value, dict) and isinstance(data.get(key), dict) else value
        cloud = Cloud(build_config(data))
        cloud.prepare_state_dir()
        cloud.store.upgrade_schema()
        sync_catalog(cloud)
        made.append(cloud)
        hosts.add_host(cloud, "local", "qemu:///system", "worker")
        register_guest(cloud, guest_dir)
        return cloud

    yield factory
    for cloud in made:
        teardown_cloud(cloud)


def wait_for_console(cloud: Cloud, instance_id: str, marker: str, timeout_s: float = 90.0) -> str:
    """Wait until the instance's serial log contains ``marker``; returns the log."""
    from ivfarm.services.compute.instances import console_output

    def output() -> str:
        return console_output(cloud, instance_id).decode("utf-8", "replace")

    return poll_until(text_with(output, marker), timeout_s, 0.5,
                      lambda: f"{marker!r} not on the console of {instance_id} after {timeout_s} s:\n{output()[-3000:]}")


def _leftovers() -> list[str]:
    """QEMU processes, namespaces, bridges and nwfilters of the integration tests still on this machine."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "qemu-system" in cmdline and str(TEST_ROOT) in cmdline:
            found.append(f"qemu process {proc.name}")
    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
    found += [f"namespace {ns}" for ns in namespaces if ns.startswith("ivt")]
    links = subprocess.run(["ip", "-o", "link", "show", "type", "bridge"], capture_output=True, text=True).stdout
    found += [f"bridge {line.split(': ')[1]}" for line in links.splitlines() if ": ivp" in line]
    conn = libvirt.open("qemu:///system")
    try:  # the per-instance security-group filters of the test clouds
        found += [f"nwfilter {f.name()}" for f in conn.listAllNWFilters() if f.name().startswith("ivt")]
    finally:
        conn.close()
    return found


@pytest.fixture(scope="session", autouse=True)
def nothing_left_behind() -> Iterator[None]:
    """After the integration tests no VM, namespace or bridge of theirs may remain."""
    yield
    if os.geteuid() == 0:
        left = _leftovers()
        assert not left, f"integration tests left behind: {left}"
