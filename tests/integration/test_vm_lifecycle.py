"""A real VM from the guest image under qemu:///system: boot, console, stop/start, terminate."""
from __future__ import annotations

from pathlib import Path

import libvirt
import pytest

from ivfarm.services.compute import instances, provisioning
from ivfarm.services.compute.instances import LaunchRequest, domain_name
from ivfarm.store.models import Instance
from tests.integration.conftest import wait_for_console

pytestmark = [pytest.mark.root, pytest.mark.libvirtd, pytest.mark.vm]


def test_vm_boots_stops_starts_and_terminates_cleanly(real_cloud_factory) -> None:  # type: ignore[no-untyped-def]
    cloud = real_cloud_factory()
    user_data = b"#!/bin/sh\necho USERDATA-MARKER-$((6*7))\n"
    [launched] = instances.launch(cloud, LaunchRequest(image="guest", flavor="m1.tiny", name="lifecycle",
                                                      user_data=user_data))
    provisioning.provision(cloud, launched.id)
    log = wait_for_console(cloud, launched.id, "IVFARM-GUEST: ready")
    assert f"instance-id={launched.id}" in log
    assert "USERDATA-MARKER-42" in log
    assert "rootfs ok boots=1" in log

    conn = libvirt.open("qemu:///system")
    domain = conn.lookupByName(domain_name(launched.id))
    assert domain.isActive()
    with cloud.store.read() as session:
        assert session.get(Instance, launched.id).state == "running"

    instances.stop(cloud, launched.id)
    assert not domain.isActive()
    instances.start(cloud, launched.id)
    log = wait_for_console(cloud, launched.id, "rootfs ok boots=2")  # the overlay kept the first boot's write

    disk_dir = cloud.config.state_dir / "disks"
    console = cloud.config.state_dir / "console" / f"{launched.id}.log"
    assert any(p.name.startswith(launched.id) for p in disk_dir.iterdir()) and console.exists()
    provisioning.terminate(cloud, launched.id)
    with pytest.raises(libvirt.libvirtError):
        conn.lookupByName(domain_name(launched.id))
    assert not any(p.name.startswith(launched.id) for p in disk_dir.iterdir())
    assert not console.exists()
    assert not (cloud.config.state_dir / "seeds" / f"{launched.id}.iso").exists()
    conn.close()


def test_overlay_is_constant_time_in_the_image_size(real_cloud_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cloud = real_cloud_factory()
    storage = cloud.storage("worker")
    from drivers.storage.base import BaseImage

    big = cloud.config.state_dir / "images" / "big.raw"
    with big.open("wb") as handle:
        handle.truncate(20 * 1024**3)
    disk = storage.create_root("qemu:///system", "i-0000000000000big", BaseImage("ami-x", str(big), "raw", 20 * 1024**3, ""), 0)
    try:
        assert Path(disk.path).stat().st_size < 1024 * 1024  # a qcow2 header, not a copy
    finally:
        storage.delete("qemu:///system", disk.name)
