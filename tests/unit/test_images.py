"""Image repository: copy with checksum, formats, ids, kernels, visibility, removal rules."""
from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest

from ivfarm.cloud import Cloud
from ivfarm.errors import AlreadyExists, InUse, InvalidInput, NotFound
from ivfarm.services.compute import instances, provisioning
from ivfarm.services.images import catalog


def test_add_copies_into_the_repository_with_checksum(cloud: Cloud, raw_disk: Path) -> None:
    image = catalog.add_image(cloud, "sl6-worker", raw_disk, public=True)
    stored = Path(image.path)
    assert stored.parent == cloud.config.image_dir and stored.read_bytes() == raw_disk.read_bytes()
    assert image.sha256 == hashlib.sha256(raw_disk.read_bytes()).hexdigest()
    assert image.id.startswith("ami-") and len(image.id) == 21
    assert (image.disk_format, image.virtual_size_bytes) == ("raw", 8 * 1024 * 1024)
    assert oct(stored.stat().st_mode & 0o777) == "0o644"


def test_qcow2_is_detected_and_a_wrong_format_refused(cloud: Cloud, tmp_path: Path) -> None:
    qcow = tmp_path / "disk.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(qcow), "1G"], check=True)
    image = catalog.add_image(cloud, "q", qcow)
    assert (image.disk_format, image.virtual_size_bytes) == ("qcow2", 1024**3)
    with pytest.raises(InvalidInput, match="--format raw given but the file is qcow2"):
        catalog.add_image(cloud, "q2", qcow, disk_format="raw")


def test_an_image_with_a_backing_file_is_refused(cloud: Cloud, tmp_path: Path, raw_disk: Path) -> None:
    overlay = tmp_path / "evil.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(raw_disk), "-F", "raw", str(overlay)], check=True)
    with pytest.raises(InvalidInput, match="backing file"):
        catalog.add_image(cloud, "evil", overlay)
    assert list(cloud.config.image_dir.iterdir()) == []


def test_ami_id_is_kept_and_validated(cloud: Cloud, raw_disk: Path) -> None:
    assert catalog.add_image(cloud, "from-ec2", raw_disk, ami_id="ami-000070ab").id == "ami-000070ab"
    with pytest.raises(AlreadyExists):
        catalog.add_image(cloud, "again", raw_disk, ami_id="ami-000070ab")
    for bad in ("ami-xyz", "aki-00000000", "ami-0000007"):
        with pytest.raises(InvalidInput):
            catalog.add_image(cloud, f"bad-{bad}", raw_disk, ami_id=bad)


def test_kernel_and_ramdisk_for_direct_boot(cloud: Cloud, tmp_path: Path, raw_disk: Path) -> None:
    kernel_file, initrd_file = tmp_path / "vmlinuz", tmp_path / "initrd"
    kernel_file.write_bytes(b"kernel")
    initrd_file.write_bytes(b"initrd")
    kernel = catalog.add_image(cloud, "k", kernel_file, kind="kernel", cmdline="console=ttyS0")
    ramdisk = catalog.add_image(cloud, "r", initrd_file, kind="ramdisk")
    assert kernel.id.startswith("aki-") and ramdisk.id.startswith("ari-")
    machine = catalog.add_image(cloud, "m", raw_disk, kernel="k", ramdisk=ramdisk.id)
    assert (machine.kernel_id, machine.ramdisk_id) == (kernel.id, ramdisk.id)
    with pytest.raises(InvalidInput, match="not a kernel"):
        catalog.add_image(cloud, "m2", raw_disk, kernel="r")
    with pytest.raises(InUse, match="kernel or ramdisk of image 'm'"):
        catalog.remove_image(cloud, "k")


def test_errors_leave_nothing_behind(cloud: Cloud, tmp_path: Path, raw_disk: Path) -> None:
    with pytest.raises(InvalidInput, match="no such file"):
        catalog.add_image(cloud, "x", tmp_path / "missing.img")
    catalog.add_image(cloud, "x", raw_disk)
    with pytest.raises(AlreadyExists):
        catalog.add_image(cloud, "x", raw_disk)
    assert len(list(cloud.config.image_dir.iterdir())) == 1
    with pytest.raises(NotFound):
        catalog.show_image(cloud, "nope")


def test_publish_controls_what_farms_see(cloud: Cloud, raw_disk: Path) -> None:
    image = catalog.add_image(cloud, "private-one", raw_disk)
    assert catalog.list_images(cloud, farm_id=1) == []
    catalog.set_public(cloud, image.id, True)
    assert [i.id for i in catalog.list_images(cloud, farm_id=1)] == [image.id]


def test_remove_refuses_while_an_instance_uses_it(cloud: Cloud, fake_host, base_image) -> None:
    from ivfarm.services.compute.hosts import add_host

    add_host(cloud, "w", fake_host("w"), "worker")
    [instance] = instances.launch(cloud, instances.LaunchRequest(image="base", flavor="m1.small"))
    provisioning.provision(cloud, instance.id)
    with pytest.raises(InUse, match=instance.id):
        catalog.remove_image(cloud, "base")
    provisioning.terminate(cloud, instance.id)
    catalog.remove_image(cloud, "base")
    assert not Path(base_image.path).exists()
