"""Live migration of a farm VM between two VXLAN hosts with the network following it.

Setup (not timed): a three-host site of this machine (``tests/integration/multihost_site``), a
cloud with VXLAN segments, the ``shared`` service storage and the farm's router on host 3, one
service VM on host 1 booted to its marker. Timed: ``migration.migrate`` to host 2 (libvirt's live
move plus the FDB sync on every host of the farm) and one ``sync_segment`` with nothing to change;
counted: replies lost by a 5/s ping from the router through the move. Needs root, the guest image
(``IVFARM_GUEST_DIR``) and about a minute. Prints JSON last.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ivfarm.cloud import Cloud
from ivfarm.config import build_config
from ivfarm.services.compute import hosts, instances, migration, provisioning
from ivfarm.services.compute.flavors import sync_catalog
from ivfarm.services.compute.instances import LaunchRequest
from ivfarm.services.farms import lifecycle
from ivfarm.services.network.segment_peers import sync_segment
from ivfarm.services.tenancy.security_groups import GroupRef, Permission, authorize
from tests.integration import multihost_site
from tests.integration.conftest import TEST_ROOT, register_guest
from tests.support.polling import poll_until

PING_INTERVAL_S = 0.2


def build(state: Path, site: multihost_site.Site, tag: str) -> Cloud:
    cloud = Cloud(build_config({
        "state_dir": str(state), "cloud_id": f"ivb{tag}",
        "network": {"segments": "vxlan", "vlan_range": [4080, 4083], "farm_pool": "10.97.0.0/16",
                    "public": {"bridge": f"ivp{tag}", "netns": f"ivtb-pub-{tag}"}},
        "vrouter": {"backend": "netns", "host_uri": site.hosts[2].uri},
        "storage": {"service": {"backend": "shared", "shared": {"dir": str(state / "shared")}}},
    }))
    cloud.prepare_state_dir()
    cloud.store.upgrade_schema()
    sync_catalog(cloud)
    for host, host_class in zip(site.hosts, ("service", "service", "worker"), strict=True):
        hosts.add_host(cloud, host.name, host.uri, host_class, underlay_address=host.underlay, netns=host.name)
    register_guest(cloud, Path(os.environ.get("IVFARM_GUEST_DIR", "/var/lib/ivfarm-guest")))
    return cloud


def measure(cloud: Cloud, site: multihost_site.Site) -> dict[str, object]:
    h1, h2, _ = site.hosts
    farm = lifecycle.create_farm(cloud, lifecycle.FarmRequest(name="bench"))
    authorize(cloud, farm.id, GroupRef(name="default"), False, [Permission("icmp", -1, -1, "0.0.0.0/0")])
    hosts.set_enabled(cloud, h2.name, False)
    [vm] = instances.launch(cloud, LaunchRequest(image="guest", flavor="m1.tiny", farm_id=farm.id, name="s1",
                                                 host_class="service"))
    provisioning.provision(cloud, vm.id)
    hosts.set_enabled(cloud, h2.name, True)
    poll_until(lambda: b"IVFARM-GUEST: ready" in instances.console_output(cloud, vm.id), 120, 0.5,
               lambda: "the VM did not boot")
    pinger = subprocess.Popen(["ip", "netns", "exec", f"ivfarm-r{farm.vlan}", "busybox", "ping", "-i",
                               str(PING_INTERVAL_S), "-w", "20", str(vm.ip)], stdout=subprocess.PIPE, text=True)
    time.sleep(3)
    started = time.perf_counter()
    result = migration.migrate(cloud, vm.id, h2.name)
    migrate_s = time.perf_counter() - started
    started = time.perf_counter()
    sync_segment(cloud, farm.id)
    resync_ms = (time.perf_counter() - started) * 1000
    out, _ = pinger.communicate(timeout=60)
    sent, received = (int(n) for n in re.findall(r"(\d+) packets transmitted, (\d+) packets received", out)[0])
    lifecycle.delete_farm(cloud, "bench")
    return {"bench": "vxlan_migration", "mode": result.mode, "migrate_with_fdb_s": round(migrate_s, 2),
            "fdb_resync_ms": round(resync_ms, 1), "ping_interval_s": PING_INTERVAL_S, "pings_sent": sent,
            "pings_lost": sent - received}


def main() -> None:
    tag = uuid.uuid4().hex[:6]
    state = TEST_ROOT / f"vb{tag}"
    TEST_ROOT.mkdir(mode=0o755, exist_ok=True)
    (state / "disks").mkdir(mode=0o755, parents=True)
    site = multihost_site.create(TEST_ROOT / f"vb{tag}-site", f"ivtb{tag}", 3, [state / "disks"])
    cloud = None
    try:
        cloud = build(state, site, tag)
        figures = measure(cloud, site)
    finally:
        if cloud is not None:
            cloud.public_segment.destroy()
            cloud.store.dispose()
        site.destroy()
        shutil.rmtree(state, ignore_errors=True)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
