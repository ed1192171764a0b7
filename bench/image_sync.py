"""Image distribution: time to bring a 256 MB image to N = 1, 2, 4, 8, 16 host caches, in waves
(``ivfarm image sync``, fan-out 1: every host with a verified copy seeds the next) and one by one
from the repository. The hosts are sshd endpoints on loopback, each with its own cache directory.

Run as root: ``python bench/image_sync.py [--size-mb 256] [--bwlimit-kbps 0]``. On one machine all
"hosts" share its cores and disk, so parallel copies contend for them; ``--bwlimit-kbps`` caps each
transfer (rsync --bwlimit) to emulate a network where every host has its own link.
Prints per-N figures, then one JSON line.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from drivers.storage.ssh_cache import SshTarget
from ivfarm.cloud import Cloud
from ivfarm.config import build_config
from ivfarm.services.compute import hosts
from ivfarm.services.compute.flavors import sync_catalog
from ivfarm.services.images import image_sync
from ivfarm.services.images.catalog import add_image, show_image
from tests.integration.sshd_targets import Fleet, start_fleet
from tests.support.fake_hypervisors import fake_hypervisor

COUNTS = [1, 2, 4, 8, 16]


def build_cloud(state: Path, fleet: Fleet, bwlimit_kbps: int, size_mb: int) -> tuple[Cloud, str]:
    cloud = Cloud(build_config({"state_dir": str(state), "vrouter": {"backend": "none"},
                                "image_cache": {**fleet.image_cache_config(), "bwlimit_kbps": bwlimit_kbps}}))
    cloud.prepare_state_dir()
    cloud.store.upgrade_schema()
    sync_catalog(cloud)
    for index, target in enumerate(fleet.targets):
        uri = fake_hypervisor(state / f"node-{index}.xml", cpus=8, memory_mb=16384)
        hosts.add_host(cloud, f"wn-{index:02d}", uri, "worker", ssh_target=target.ssh_target,
                       cache_dir=str(target.cache_dir))
    source = state / "image.raw"
    with source.open("wb") as handle:
        for _ in range(size_mb):
            handle.write(os.urandom(1024 * 1024))
    image = add_image(cloud, "bench-image", source, public=True)
    source.unlink()
    return cloud, image.path


def clear_caches(fleet: Fleet) -> None:
    for target in fleet.targets:
        shutil.rmtree(target.cache_dir, ignore_errors=True)


def serial(cloud: Cloud, fleet: Fleet, repository: str, sha256: str, count: int) -> float:
    """One host after the other, each copied from the repository and verified."""
    cache = image_sync.cache_client(cloud)
    started = time.monotonic()
    for target in fleet.targets[:count]:
        cache.copy_from_local(repository, SshTarget.parse(target.ssh_target), f"{target.cache_dir}/{Path(repository).name}",
                              sha256)
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=256)
    parser.add_argument("--bwlimit-kbps", type=int, default=0)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="ivfarm-bench-sync-", dir="/var/lib"))
    fleet = start_fleet(root / "sshd", max(COUNTS))
    cloud = None
    try:
        cloud, repository = build_cloud(root / "state", fleet, args.bwlimit_kbps, args.size_mb)
        sha256 = show_image(cloud, "bench-image").sha256
        print(f"image {args.size_mb} MB, rsync --bwlimit {args.bwlimit_kbps or 'none'} KB/s, fan-out 1", flush=True)
        wave_s, serial_s, rounds = [], [], []
        for count in COUNTS:
            names = [f"wn-{i:02d}" for i in range(count)]
            clear_caches(fleet)
            report = image_sync.sync_image(cloud, "bench-image", names, fanout=1)
            assert all(h.status == "copied" for h in report.hosts), report
            wave_s.append(round(report.seconds, 2))
            rounds.append(report.rounds)
            clear_caches(fleet)
            serial_s.append(round(serial(cloud, fleet, repository, sha256, count), 2))
            print(f"N={count:2d}: waves {wave_s[-1]:6.2f} s in {rounds[-1]} round(s); one by one {serial_s[-1]:6.2f} s",
                  flush=True)
        print(json.dumps({"targets": COUNTS, "wave_s": wave_s, "serial_s": serial_s, "wave_rounds": rounds}))
    finally:
        if cloud is not None:
            cloud.store.dispose()
        fleet.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
