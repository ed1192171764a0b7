"""CreateImage time against disk size: a stopped instance on this machine's libvirtd whose disk holds
64, 256 and 1024 MB of written data (random, so nothing compresses or is skipped) is imaged through
the provisioner job (flatten, checksum, record), and the same disk is flattened with a bare
``qemu-img convert`` as the peer; the ratio is what ivfarm adds (mostly the SHA-256 pass).

Run as root with libvirtd up: ``python bench/create_image.py [--sizes 64,256,1024]``. Everything is made
under /var/lib/ivfarm-bench-<tag> with a cloud id of its own and removed at the end. Prints one line per
size, then one JSON line.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from drivers.storage.base import disk_names
from ivfarm.cloud import Cloud
from ivfarm.config import build_config
from ivfarm.services.compute import hosts, image_capture, instances, provisioning
from ivfarm.services.compute.flavors import sync_catalog
from ivfarm.services.farms import lifecycle
from ivfarm.services.images.catalog import add_image
from ivfarm.services.jobs.provisioner import Provisioner
from ivfarm.store.models import Image
from tests.integration.conftest import remove_pools

MIB = 1024 * 1024


def build_cloud(root: Path, tag: str) -> Cloud:
    cloud = Cloud(build_config({"state_dir": str(root), "cloud_id": f"ivb{tag}", "vrouter": {"backend": "none"},
                                "hypervisor": {"shutdown_timeout_s": 1},
                                "network": {"vlan_range": [3900, 3903], "farm_pool": "10.98.0.0/16"}}))
    cloud.prepare_state_dir()
    cloud.store.upgrade_schema()
    sync_catalog(cloud)
    hosts.add_host(cloud, "local", "qemu:///system", "worker")
    return cloud


def stopped_instance(cloud: Cloud, farm_id: int, size_mb: int, root: Path) -> str:
    """A stopped instance whose root overlay sits on an image of ``size_mb`` MB of random data."""
    source = root / f"data-{size_mb}.raw"
    with source.open("wb") as handle:
        for _ in range(size_mb):
            handle.write(os.urandom(MIB))
    image = add_image(cloud, f"bench-{size_mb}", source, public=True)
    source.unlink()
    [instance] = instances.launch(cloud, instances.LaunchRequest(image=image.id, flavor="m1.tiny", farm_id=farm_id))
    provisioning.provision(cloud, instance.id)
    instances.stop(cloud, instance.id, force=True)
    return instance.id


def time_create_image(cloud: Cloud, farm_id: int, instance_id: str, size_mb: int) -> tuple[float, Image]:
    worker = Provisioner(cloud, 1)
    started = time.perf_counter()
    image_id = image_capture.begin_create_image(cloud, farm_id, instance_id, f"bench image {size_mb}")
    while worker.run_one():
        pass
    seconds = time.perf_counter() - started
    with cloud.store.read() as session:
        image = session.get(Image, image_id)
    if image.state != "available":
        raise SystemExit(f"image {image_id} is {image.state}")
    return seconds, image


def time_convert(cloud: Cloud, instance_id: str, root: Path) -> float:
    overlay = cloud.storage("worker").disk("qemu:///system", disk_names(instance_id)[0]).path
    target = root / "peer.qcow2"
    started = time.perf_counter()
    subprocess.run(["qemu-img", "convert", "-f", "qcow2", "-O", "qcow2", overlay, str(target)], check=True)
    seconds = time.perf_counter() - started
    target.unlink()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="64,256,1024", help="MB of written data per disk, comma-separated")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    tag = uuid.uuid4().hex[:6]
    root = Path(f"/var/lib/ivfarm-bench-{tag}")
    root.mkdir(mode=0o755)
    cloud = build_cloud(root / "state", tag)
    results = []
    try:
        farm = lifecycle.create_farm(cloud, lifecycle.FarmRequest(name=f"bench{tag}"))
        for size_mb in sizes:
            instance_id = stopped_instance(cloud, farm.id, size_mb, root)
            seconds, image = time_create_image(cloud, farm.id, instance_id, size_mb)
            peer = time_convert(cloud, instance_id, root)
            results.append({"written_mb": size_mb, "create_image_s": round(seconds, 3), "qemu_img_convert_s": round(peer, 3),
                            "ratio": round(seconds / peer, 2), "image_mb": round(image.size_bytes / MIB, 1),
                            "create_image_mb_per_s": round(size_mb / seconds, 1)})
            print(f"{size_mb:5d} MB written: CreateImage {seconds:6.2f} s, qemu-img convert {peer:6.2f} s "
                  f"(x{seconds / peer:.2f}), image {image.size_bytes / MIB:.0f} MB")
            provisioning.terminate(cloud, instance_id)
        lifecycle.delete_farm(cloud, farm.name)
    finally:
        cloud.store.dispose()
        remove_pools(f"ivb{tag}")
        shutil.rmtree(root, ignore_errors=True)
    print(json.dumps({"bench": "create_image", "sizes": results}))


if __name__ == "__main__":
    main()
