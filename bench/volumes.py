"""Volume attach latency on a running VM (qemu:///system, the busybox guest of IVFARM_GUEST_DIR).

ivfarm: the AttachVolume decision plus its provisioner job until the volume is ``attached``; the
ratio peer: bare libvirt ``attachDeviceFlags(LIVE|CONFIG)`` of the same disk. Each run detaches again
(ivfarm's detach job waits for the guest to release the device; so does the bare detach). Run as
root with libvirtd running. Prints per-run figures, then one JSON line (medians in seconds).
"""
from __future__ import annotations

import json
import os
import shutil
import statistics
import tempfile
import time
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

import libvirt

from drivers.hypervisor.devices import disk_element, disk_targets
from ivfarm.cloud import Cloud
from ivfarm.config import build_config
from ivfarm.services.compute import hosts, instances, provisioning, volume_records, volumes
from ivfarm.services.compute.flavors import sync_catalog
from ivfarm.services.compute.instances import LaunchRequest, console_output, domain_name
from ivfarm.services.farms import lifecycle
from ivfarm.services.images import catalog
from ivfarm.services.jobs.provisioner import Provisioner

RUNS = 7
GUEST = Path(os.environ.get("IVFARM_GUEST_DIR", "/var/lib/ivfarm-guest"))


def _cloud(tag: str, state: Path) -> Cloud:
    cloud = Cloud(build_config({"state_dir": str(state), "cloud_id": f"ivb{tag}", "vrouter": {"backend": "none"},
                                "network": {"vlan_range": [3800, 3899], "farm_pool": "10.98.0.0/16"}}))
    cloud.prepare_state_dir()
    cloud.store.upgrade_schema()
    sync_catalog(cloud)
    hosts.add_host(cloud, "local", "qemu:///system", "worker")
    manifest = json.loads((GUEST / "manifest.json").read_text())
    kernel = catalog.add_image(cloud, "guest-kernel", GUEST / "vmlinuz", kind="kernel", public=True)
    initrd = catalog.add_image(cloud, "guest-initrd", GUEST / "initrd.img", kind="ramdisk", public=True)
    catalog.add_image(cloud, "guest", GUEST / "rootfs.raw", public=True, kernel=kernel.id, ramdisk=initrd.id,
                      cmdline=manifest["cmdline"])
    return cloud


def _wait(condition, timeout_s: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("timed out")
        time.sleep(0.02)


def main() -> None:
    tag = uuid.uuid4().hex[:6]
    state = Path(tempfile.mkdtemp(prefix="ivfarm-bench-", dir="/var/lib"))
    os.chmod(state, 0o755)
    cloud = _cloud(tag, state)
    provisioner = Provisioner(cloud, 1)
    ours, bare = [], []
    try:
        farm = lifecycle.create_farm(cloud, lifecycle.FarmRequest(name="bench-volumes"))
        [vm] = instances.launch(cloud, LaunchRequest(image="guest", flavor="m1.tiny", farm_id=farm.id))
        provisioning.provision(cloud, vm.id)
        _wait(lambda: b"IVFARM-GUEST: ready" in console_output(cloud, vm.id), 120)
        made = volumes.create_volume(cloud, volumes.VolumeRequest(farm.id, "worker", 1))
        assert made is not None
        dom = cloud.hypervisor.connection("qemu:///system").lookupByName(domain_name(vm.id))
        for run in range(RUNS):
            started = time.perf_counter()
            volumes.attach_volume(cloud, farm.id, made.id, vm.id, "/dev/sdf")
            while provisioner.run_one():
                pass
            ours.append(time.perf_counter() - started)
            volumes.detach_volume(cloud, farm.id, made.id)
            while provisioner.run_one():
                pass
            disk = cloud.storage("worker").disk("qemu:///system", volume_records.disk_name(made.id))
            xml = ET.tostring(disk_element(disk, "vdf"), encoding="unicode")
            started = time.perf_counter()
            dom.attachDeviceFlags(xml, libvirt.VIR_DOMAIN_AFFECT_LIVE | libvirt.VIR_DOMAIN_AFFECT_CONFIG)
            bare.append(time.perf_counter() - started)
            dom.detachDeviceFlags(xml, libvirt.VIR_DOMAIN_AFFECT_LIVE)
            _wait(lambda: "vdf" not in disk_targets(dom.XMLDesc(0)))
            dom.detachDeviceFlags(xml, libvirt.VIR_DOMAIN_AFFECT_CONFIG)
            print(f"run {run}: ivfarm attach {ours[-1]:.3f} s, bare libvirt attach {bare[-1]:.3f} s")
        volumes.delete_volume(cloud, farm.id, made.id)
        while provisioner.run_one():
            pass
        lifecycle.delete_farm(cloud, "bench-volumes")
    finally:
        for pool in cloud.hypervisor.connection("qemu:///system").listAllStoragePools():
            if pool.name().startswith(f"ivb{tag}-"):
                if pool.isActive():
                    pool.destroy()
                pool.undefine()
        cloud.store.dispose()
        shutil.rmtree(state, ignore_errors=True)
    ours_s, bare_s = statistics.median(ours), statistics.median(bare)
    print(json.dumps({"runs": RUNS, "attach_s": round(ours_s, 4), "bare_libvirt_attach_s": round(bare_s, 4),
                      "ratio": round(ours_s / bare_s, 2)}))


if __name__ == "__main__":
    main()
