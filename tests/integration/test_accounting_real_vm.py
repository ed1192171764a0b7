"""A real VM burns CPU and sends frames; two ``accounting collect`` runs read libvirt's counters and the
APEL export carries them."""
from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from ivfarm.services.compute import instances, provisioning
from ivfarm.services.compute.instances import LaunchRequest
from ivfarm.services.farms import lifecycle
from ivfarm.services.jobs import accounting, apel
from ivfarm.store.models import UsageRecord
from tests.integration.conftest import wait_for_console
from tests.support.apel_messages import read_queue

pytestmark = [pytest.mark.root, pytest.mark.libvirtd, pytest.mark.vm]

BURN = b"""#!/bin/sh
end=$(( $(cut -d. -f1 /proc/uptime) + 6 ))
while [ "$(cut -d. -f1 /proc/uptime)" -lt "$end" ]; do :; done
net=$(ip -4 -o addr show dev eth0 | awk '{ split($4, a, "."); print a[1] "." a[2] "." a[3]; exit }')
ping -c 3 -W 1 "$net.1" >/dev/null 2>&1
echo BURNED
"""


def test_collected_cpu_and_traffic_reach_the_apel_record(real_cloud_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cloud = real_cloud_factory(accounting={"apel": {"site_name": "IVFARM-IT"}})
    farm = lifecycle.create_farm(cloud, lifecycle.FarmRequest(name="burn"))
    [vm] = instances.launch(cloud, LaunchRequest(image="guest", flavor="m1.tiny", farm_id=farm.id, user_data=BURN))
    provisioning.provision(cloud, vm.id)
    accounting.collect(cloud)
    wait_for_console(cloud, vm.id, "BURNED")
    accounting.collect(cloud)
    with cloud.store.read() as session:
        first, second = session.scalars(select(UsageRecord).where(UsageRecord.resource_id == vm.id)
                                        .order_by(UsageRecord.start))
    assert second.boot_id == first.boot_id and second.cpu_time_ns > first.cpu_time_ns
    assert second.cpu_s > 3  # six seconds of busy loop, counted in the second interval
    assert second.net_out_bytes > 0  # ARP and ICMP out of the guest's NIC
    outdir = tmp_path / "outgoing"
    assert apel.export(cloud, "apel", str(outdir)).records == 1
    [record] = read_queue(outdir)
    assert record["VMUUID"] == vm.id and record["Status"] == "started" and record["SiteName"] == "IVFARM-IT"
    assert int(record["CpuDuration"]) >= 3 and int(record["CpuDuration"]) == int(first.cpu_s + second.cpu_s)
    assert "NetworkInbound" in record and "NetworkOutbound" in record
