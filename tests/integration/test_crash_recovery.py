"""SIGKILL the EC2 server in the middle of provisioning, then reconcile: nothing orphaned, quota right."""
from __future__ import annotations

import os
import signal
import subprocess

import libvirt
import pytest

from ivfarm.services.farms import lifecycle
from ivfarm.services.jobs import reconcile
from ivfarm.services.tenancy import quotas
from ivfarm.store.models import Instance
from tests.integration.ec2_server import ec2_server, farm_client
from tests.support.polling import poll_until

pytestmark = [pytest.mark.root, pytest.mark.libvirtd, pytest.mark.vm]


def cloud_domains(cloud_id: str) -> dict[str, bool]:
    """Instance id -> running, for every domain of the cloud on this machine."""
    conn = libvirt.open("qemu:///system")
    try:
        found = {}
        for dom in conn.listAllDomains():
            xml = dom.XMLDesc(0)
            if f"<cloud>{cloud_id}</cloud>" in xml:
                found[dom.name().removeprefix("ivfarm-")] = bool(dom.isActive())
        return found
    finally:
        conn.close()


def test_reconcile_after_the_server_is_killed_mid_provisioning(real_cloud_factory) -> None:  # type: ignore[no-untyped-def]
    cloud = real_cloud_factory(router="netns", ec2={"provision_workers": 1})
    farm = lifecycle.create_farm(cloud, lifecycle.FarmRequest(name="crash", quotas={"instances": 10, "vcpus": 10}))
    with ec2_server(cloud) as (endpoint, server):
        client = farm_client(endpoint, farm)
        ami = next(i["ImageId"] for i in client.describe_images()["Images"] if i["Name"] == "guest")
        launched = client.run_instances(ImageId=ami, InstanceType="m1.tiny", MinCount=4, MaxCount=4)["Instances"]
        assert [i["State"]["Name"] for i in launched] == ["pending"] * 4
        poll_until(lambda: cloud_domains(cloud.cloud_id), 60, 0.05, "provisioning never started")
        os.killpg(server.pid, signal.SIGKILL)  # master and worker, mid-provisioning: one thread, four instances
        server.wait(10)
    assert cloud_domains(cloud.cloud_id), "provisioning never started"

    report = reconcile.reconcile(cloud)
    assert not report.errors, report.errors
    assert any(f.action == "roll back" for f in report.findings)
    domains = cloud_domains(cloud.cloud_id)
    with cloud.store.read() as session:
        live = {i.id: i for i in session.query(Instance).filter(Instance.state != "terminated")}
        usage = quotas.usage(session, farm.id)
    assert set(live) == set(domains) and all(domains.values())  # every live instance runs, nothing else exists
    assert all(i.state == "running" for i in live.values())
    assert usage.instances == len(domains)
    disks = {p.name.split("-root")[0].split("-ephemeral")[0] for p in (cloud.config.state_dir / "disks").iterdir()}
    assert disks == set(live)
    seeds = {p.stem for p in (cloud.config.state_dir / "seeds").iterdir()}
    assert seeds == set(live)
    hosts_file = cloud.config.state_dir / "dhcp" / f"r{farm.vlan}" / "dhcp-hosts"
    leased = {line.split(",")[1] for line in hosts_file.read_text().splitlines() if line}
    assert leased == {i.ip for i in live.values()}
    rules = subprocess.run(["ip", "netns", "exec", f"ivfarm-r{farm.vlan}", "iptables-save"],
                           capture_output=True, text=True, check=True).stdout
    gone_ips = {i["PrivateIpAddress"] for i in launched if i["InstanceId"] not in live and i.get("PrivateIpAddress")}
    assert not any(ip in rules for ip in gone_ips)
    assert reconcile.reconcile(cloud).findings == []
