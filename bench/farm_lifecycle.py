"""Farm create and delete on the real host (qemu:///system, netns router, no VMs): medians in seconds.

Run as root with libvirtd running. Prints per-run figures, then one JSON line.
"""
from __future__ import annotations

import json
import shutil
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from ivfarm.cloud import Cloud
from ivfarm.config import build_config
from ivfarm.services.compute import hosts
from ivfarm.services.compute.flavors import sync_catalog
from ivfarm.services.farms import lifecycle

RUNS = 7


def main() -> None:
    tag = uuid.uuid4().hex[:6]
    state = Path(tempfile.mkdtemp(prefix="ivfarm-bench-", dir="/var/lib"))
    cloud = Cloud(build_config({
        "state_dir": str(state), "cloud_id": f"ivb{tag}",
        "network": {"vlan_range": [3900, 3999], "public": {"bridge": f"ivp{tag}", "netns": f"ivb-pub-{tag}"}},
    }))
    cloud.prepare_state_dir()
    cloud.store.upgrade_schema()
    sync_catalog(cloud)
    hosts.add_host(cloud, "local", "qemu:///system", "worker")
    create, delete = [], []
    try:
        for run in range(RUNS):
            started = time.perf_counter()
            lifecycle.create_farm(cloud, lifecycle.FarmRequest(name=f"bench-{run}"))
            create.append(time.perf_counter() - started)
            started = time.perf_counter()
            lifecycle.delete_farm(cloud, f"bench-{run}")
            delete.append(time.perf_counter() - started)
            print(f"run {run}: create {create[-1]:.3f} s, delete {delete[-1]:.3f} s")
    finally:
        cloud.public_segment.destroy()
        for pool in cloud.hypervisor.connection("qemu:///system").listAllStoragePools():
            if pool.name().startswith(f"ivb{tag}-"):
                pool.destroy()
                pool.undefine()
        shutil.rmtree(state, ignore_errors=True)
    print(json.dumps({"runs": RUNS, "create_s": round(statistics.median(create), 3),
                      "delete_s": round(statistics.median(delete), 3)}))


if __name__ == "__main__":
    main()
