"""Real VMs: the time from RunInstances to the guest's boot marker, against bare libvirt (issue 11).

For 1 and 4 m1.tiny VMs of the busybox test guest, side by side in one run:
- ivfarm: RunInstances through `ivfarm ec2 serve` (boto3 over HTTP, the embedded provisioner doing
  the disks, the seed, the farm segment and the domain) until every guest printed its marker;
- bare libvirt: the same domains (the XML ivfarm rendered for them, with new names and MACs), each
  with a fresh qcow2 overlay of the same base image and a copy of the same seed, defined and
  started one after the other, until every guest printed its marker.
Both have no router (vrouter none), so the guest's DHCP attempt costs the same on both sides.
Run as root with libvirtd; per-run figures, then one JSON line (medians; ratio = ivfarm / bare).
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import libvirt

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ivfarm.cloud import Cloud
from ivfarm.config import build_config
from ivfarm.services.compute import hosts
from ivfarm.services.compute.flavors import sync_catalog
from ivfarm.services.compute.instances import console_output, domain_name
from ivfarm.services.farms import lifecycle
from tests.integration.conftest import GUEST_DIR, register_guest, teardown_cloud
from tests.integration.ec2_server import ec2_server, farm_client
from tests.support.polling import poll_until

MARKER = b"IVFARM-GUEST: ready"
URI = "qemu:///system"


def build_cloud(state: Path, tag: str) -> Cloud:
    cloud = Cloud(build_config({
        "state_dir": str(state), "cloud_id": f"ivb{tag}", "vrouter": {"backend": "none"},
        "hypervisor": {"shutdown_timeout_s": 3, "cpu_allocation_ratio": 8.0},
        "network": {"vlan_range": [3960, 3963], "farm_pool": "10.97.0.0/16",
                    "public": {"bridge": f"ivp{tag}", "netns": f"ivb-pub-{tag}"}},
    }))
    cloud.prepare_state_dir()
    cloud.store.upgrade_schema()
    sync_catalog(cloud)
    hosts.add_host(cloud, "local", URI, "worker")
    register_guest(cloud, GUEST_DIR)
    return cloud


def wait_all(ready: dict[str, Any], timeout_s: float = 180) -> None:
    """Until every ``ready[name]()`` holds the marker."""
    poll_until(lambda: all(MARKER in read() for read in ready.values()), timeout_s, 0.05,
               f"no {MARKER.decode()!r} on every console after {timeout_s} s")


def ivfarm_run(cloud: Cloud, client: Any, ami: str, count: int) -> tuple[float, list[str]]:
    started = time.perf_counter()
    ids = [i["InstanceId"] for i in client.run_instances(ImageId=ami, InstanceType="m1.tiny", MinCount=count,
                                                         MaxCount=count)["Instances"]]
    wait_all({i: (lambda i=i: console_output(cloud, i)) for i in ids})
    return time.perf_counter() - started, ids


def capture(conn: libvirt.virConnect, instance_id: str, workdir: Path) -> tuple[str, dict[str, tuple[str, str]]]:
    """An ivfarm domain as bare libvirt will rebuild it: its XML (seed sources pointing to saved
    copies) and, per overlay disk, its base image and format (read before ivfarm removes them)."""
    xml = ET.fromstring(conn.lookupByName(domain_name(instance_id)).XMLDesc(0))
    bases: dict[str, tuple[str, str]] = {}
    for disk in xml.findall("devices/disk"):
        source = disk.find("source")
        path = Path(source.get("file", ""))  # type: ignore[union-attr]
        if disk.get("device") == "cdrom":
            saved = workdir / f"{instance_id}-{path.name}"
            shutil.copyfile(path, saved)
            source.set("file", str(saved))  # type: ignore[union-attr]
        else:
            info = json.loads(subprocess.run(["qemu-img", "info", "-U", "--output=json", str(path)],
                                             capture_output=True, text=True, check=True).stdout)
            bases[str(path)] = (info["full-backing-filename"], info.get("backing-filename-format", "raw"))
    return ET.tostring(xml, encoding="unicode"), bases


def bare_domain(template: tuple[str, dict[str, tuple[str, str]]], workdir: Path, index: int) -> tuple[str, Path]:
    """One bare copy of a captured domain: new overlays, seed copies, name, MAC and console log."""
    text, bases = template
    xml = ET.fromstring(text)
    name = f"ivfarm-bench-bare-{uuid.uuid4().hex[:8]}"
    xml.find("name").text = name  # type: ignore[union-attr]
    for drop in ("uuid", "metadata"):
        element = xml.find(drop)
        if element is not None:
            xml.remove(element)
    for disk in xml.findall("devices/disk"):
        source = disk.find("source")
        path = source.get("file", "")  # type: ignore[union-attr]
        copy = workdir / f"{name}-{Path(path).name}"
        if path in bases:
            base, fmt = bases[path]
            subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", base, "-F", fmt, str(copy)], check=True)
        else:
            shutil.copyfile(path, copy)
        source.set("file", str(copy))  # type: ignore[union-attr]
    for nic in xml.findall("devices/interface"):
        nic.find("mac").set("address", f"02:fe:00:00:{index // 256:02x}:{index % 256:02x}")  # type: ignore[union-attr]
        filterref = nic.find("filterref")
        if filterref is not None:  # the instance's own filter went with it: libvirt's anti-spoofing alone
            filterref.set("filter", "clean-traffic")
    log = workdir / f"{name}.log"
    for serial in xml.findall("devices/serial"):
        serial.find("log").set("file", str(log))  # type: ignore[union-attr]
    return ET.tostring(xml, encoding="unicode"), log


def bare_run(conn: libvirt.virConnect, templates: list[tuple[str, dict[str, tuple[str, str]]]], workdir: Path,
             first: int) -> float:
    started = time.perf_counter()
    logs: dict[str, Any] = {}
    domains = []
    try:
        for index, template in enumerate(templates):
            xml, log = bare_domain(template, workdir, first + index)
            domain = conn.defineXML(xml)
            domains.append(domain)
            domain.create()
            logs[str(log)] = lambda log=log: log.read_bytes() if log.exists() else b""
        wait_all(logs)
        return time.perf_counter() - started
    finally:
        for domain in domains:
            if domain.isActive():
                domain.destroy()
            domain.undefine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--vms", type=int, nargs="+", default=[1, 4])
    args = parser.parse_args()
    tag = uuid.uuid4().hex[:6]
    state = Path("/var/lib") / f"ivfarm-bench-{tag}"
    workdir = state / "bare"
    cloud = build_cloud(state, tag)
    workdir.mkdir(mode=0o755)
    conn = libvirt.open(URI)
    figures: dict[int, dict[str, list[float]]] = {n: {"ivfarm": [], "bare": []} for n in args.vms}
    try:
        farm = lifecycle.create_farm(cloud, lifecycle.FarmRequest(name="bench", quotas={"instances": 8, "vcpus": 16}))
        with ec2_server(cloud) as (endpoint, _):
            client = farm_client(endpoint, farm)
            ami = next(i["ImageId"] for i in client.describe_images()["Images"] if i["Name"] == "guest")
            for run in range(args.runs):
                for count in args.vms:
                    took, ids = ivfarm_run(cloud, client, ami, count)
                    templates = [capture(conn, i, workdir) for i in ids]
                    client.terminate_instances(InstanceIds=ids)
                    client.get_waiter("instance_terminated").wait(InstanceIds=ids,
                                                                  WaiterConfig={"Delay": 1, "MaxAttempts": 120})
                    bare = bare_run(conn, templates, workdir, run * 16)
                    figures[count]["ivfarm"].append(took)
                    figures[count]["bare"].append(bare)
                    print(f"run {run}, {count} VM(s): ivfarm {took:.2f} s, bare libvirt {bare:.2f} s")
    finally:
        conn.close()
        teardown_cloud(cloud)
    medians = {n: {side: statistics.median(values) for side, values in sides.items()} for n, sides in figures.items()}
    print(json.dumps({
        "vms": args.vms, "runs": args.runs,
        "ivfarm_s": [round(medians[n]["ivfarm"], 2) for n in args.vms],
        "bare_libvirt_s": [round(medians[n]["bare"], 2) for n in args.vms],
        "ratio": [round(medians[n]["ivfarm"] / medians[n]["bare"], 3) for n in args.vms],
    }))


if __name__ == "__main__":
    main()
