"""CreateImage and resize with real VMs: a configured guest's disk becomes an image a new VM boots
with its configuration; a stopped instance resized with ModifyInstanceAttribute starts with its new
vCPUs and memory (domain XML and the guest's /proc)."""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from ivfarm.services.compute.instances import domain_name
from ivfarm.services.farms import lifecycle
from ivfarm.store.models import Image
from tests.integration.ec2_server import ec2_server, farm_client
from tests.integration.guest import guest_exec
from tests.integration.test_ec2_real_vms import wait_console

pytestmark = [pytest.mark.root, pytest.mark.libvirtd, pytest.mark.vm]

WAIT = {"Delay": 1, "MaxAttempts": 180}
MARKER = "IVFARM-IMAGE-MARKER-7f3a"


def launch(client: Any, ami: str, instance_type: str = "m1.tiny") -> str:
    iid = client.run_instances(ImageId=ami, InstanceType=instance_type, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    client.get_waiter("instance_running").wait(InstanceIds=[iid], WaiterConfig=WAIT)
    return str(iid)


def test_an_image_of_a_configured_vm_boots_with_its_configuration_and_a_resize(real_cloud_factory) -> None:  # type: ignore[no-untyped-def]
    cloud = real_cloud_factory()
    farm = lifecycle.create_farm(cloud, lifecycle.FarmRequest(name="imgvm"))
    with ec2_server(cloud) as (endpoint, _):
        client = farm_client(endpoint, farm)
        guest = next(i["ImageId"] for i in client.describe_images()["Images"] if i["Name"] == "guest")
        source = launch(client, guest)
        wait_console(client, source, "IVFARM-GUEST: ready")
        # the guest runs from its initramfs and mounts its root disk (vda) at /rootfs
        assert guest_exec(source, f"echo {MARKER} > /rootfs/data/marker && sync")[0] == 0

        ami = client.create_image(InstanceId=source, Name="imgvm configured", NoReboot=True)["ImageId"]
        client.get_waiter("image_available").wait(ImageIds=[ami], WaiterConfig=WAIT)
        with cloud.store.read() as session:
            made = session.get(Image, ami)
            path, kernel = Path(made.path), made.kernel_id
        assert path.is_file() and kernel is not None  # the guest's kernel boots it, as its source image
        assert "backing" not in path.read_bytes()[:4096].decode(errors="replace")  # standalone qcow2

        child = launch(client, ami)
        wait_console(client, child, "IVFARM-GUEST: ready")
        assert guest_exec(child, "cat /rootfs/data/marker") == (0, MARKER)
        client.terminate_instances(InstanceIds=[child])

        client.stop_instances(InstanceIds=[source])
        client.get_waiter("instance_stopped").wait(InstanceIds=[source], WaiterConfig=WAIT)
        client.modify_instance_attribute(InstanceId=source, InstanceType={"Value": "m1.medium"})
        client.start_instances(InstanceIds=[source])
        client.get_waiter("instance_running").wait(InstanceIds=[source], WaiterConfig=WAIT)
        domain = ET.fromstring(cloud.hypervisor.domain_xml("qemu:///system", domain_name(source)))
        assert domain.findtext("vcpu") == "2"
        assert int(domain.findtext("memory") or 0) == 2048 * 1024  # KiB
        wait_console(client, source, "IVFARM-GUEST: ready")
        assert guest_exec(source, "grep -c ^processor /proc/cpuinfo") == (0, "2")
        total_kib = int(re.search(r"MemTotal:\s+(\d+)", guest_exec(source, "grep MemTotal /proc/meminfo")[1]).group(1))
        assert 1800 * 1024 < total_kib <= 2048 * 1024
        assert guest_exec(source, "cat /rootfs/data/marker") == (0, MARKER)  # the same disk, resized machine
        client.get_waiter("instance_terminated").wait(InstanceIds=[child], WaiterConfig=WAIT)
