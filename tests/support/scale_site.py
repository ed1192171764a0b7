"""A large site on libvirt's test driver, for the scale benchmarks: fake hosts, farms, running instances."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ivfarm.cloud import Cloud
from ivfarm.config import build_config
from ivfarm.services.compute import hosts, instances, provisioning
from ivfarm.services.compute.flavors import sync_catalog
from ivfarm.services.compute.instances import LaunchRequest
from ivfarm.services.farms import lifecycle
from ivfarm.services.images.catalog import add_image
from tests.support.fake_hypervisors import fake_hypervisor


def scale_site(workdir: Path, host_count: int, farms: int, per_farm: int, settings: dict[str, Any] | None = None,
               **farm_options: Any) -> Cloud:
    """``host_count`` worker hosts of 128 CPUs, ``farms`` farms of ``per_farm`` running m1.small instances
    (``settings``: more configuration; ``farm_options``: more FarmRequest fields)."""
    cloud = Cloud(build_config({"state_dir": str(workdir / "state"), "vrouter": {"backend": "none"},
                                **(settings or {})}))
    cloud.prepare_state_dir()
    cloud.store.upgrade_schema()
    sync_catalog(cloud)
    for index in range(host_count):
        hosts.add_host(cloud, f"hv{index:03d}", fake_hypervisor(workdir / f"hv{index}.xml", 128, 512 * 1024), "worker")
    disk = workdir / "base.raw"
    disk.write_bytes(b"\0" * 1024 * 1024)
    add_image(cloud, "base", disk, public=True)
    for number in range(farms):
        farm = lifecycle.create_farm(cloud, lifecycle.FarmRequest(
            name=f"farm-{number:03d}", quotas={"instances": per_farm, "vcpus": per_farm, "memory_mb": per_farm * 512},
            **farm_options))
        for instance in instances.launch(cloud, LaunchRequest(image="base", flavor="m1.small", farm_id=farm.id,
                                                              count=per_farm)):
            provisioning.provision(cloud, instance.id)
    return cloud
