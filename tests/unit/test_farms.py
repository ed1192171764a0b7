"""Farms on the test driver (router backend none): create, credentials, bad input, rollback, delete."""
from __future__ import annotations

import ipaddress
from collections.abc import Callable

import pytest

from ivfarm.cloud import Cloud
from ivfarm.errors import AlreadyExists, InvalidInput, NotFound, PoolExhausted
from ivfarm.services.compute import hosts, instances, provisioning
from ivfarm.services.compute.instances import LaunchRequest
from ivfarm.services.farms import elastic_ips, lifecycle
from ivfarm.services.farms.lifecycle import FarmRequest
from ivfarm.services.network import port_forwards
from ivfarm.services.network.addressing import mac_for
from ivfarm.store.models import Address, Farm, Instance


def test_create_gives_network_addresses_quotas_and_credentials(cloud: Cloud) -> None:
    farm = lifecycle.create_farm(cloud, FarmRequest(name="alice-lab", owner="Alice", quotas={"instances": 3}))
    assert ipaddress.IPv4Network(farm.cidr).prefixlen == 24
    assert farm.access_key.startswith("AKIA") and len(farm.secret_key) == 40
    assert (farm.quota_instances, farm.quota_vcpus) == (3, cloud.config.get("quota_defaults.vcpus"))
    summary = lifecycle.farm_summary(cloud, farm)
    assert summary["status"] == "active" and summary["router_ip"] != summary["elastic_ips"]
    assert "secret" not in str(summary).lower() and farm.secret_key not in str(summary)
    second = lifecycle.create_farm(cloud, FarmRequest(name="bob-lab"))
    assert not ipaddress.IPv4Network(second.cidr).overlaps(ipaddress.IPv4Network(farm.cidr))
    assert second.vlan != farm.vlan


def test_imported_credentials_and_larger_network(cloud: Cloud) -> None:
    farm = lifecycle.create_farm(cloud, FarmRequest(name="moved", cidr="10.200.0.0/22",
                                                access_key="AKIAMOVEDFROMAWS0001", secret_key="s" * 40))
    assert (farm.access_key, farm.secret_key, farm.cidr) == ("AKIAMOVEDFROMAWS0001", "s" * 40, "10.200.0.0/22")
    with pytest.raises(AlreadyExists, match="access key"):
        lifecycle.create_farm(cloud, FarmRequest(name="thief", access_key="AKIAMOVEDFROMAWS0001", secret_key="x" * 40))


@pytest.mark.parametrize("request_kwargs,error,message", [
    ({"name": "Bad Name"}, InvalidInput, "invalid farm name"),
    ({"name": "ok", "cidr": "10.0.0.0/25"}, InvalidInput, "/16 to /24"),
    ({"name": "ok", "cidr": "8.8.8.0/24"}, InvalidInput, "private"),
    ({"name": "ok", "cidr": "not-a-cidr"}, InvalidInput, "invalid CIDR"),
    ({"name": "ok", "access_key": "AKIAONLYTHEKEY000000"}, InvalidInput, "go together"),
    ({"name": "ok", "quotas": {"instances": -1}}, InvalidInput, "non-negative"),
])
def test_bad_input_creates_nothing(cloud: Cloud, request_kwargs: dict, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        lifecycle.create_farm(cloud, FarmRequest(**request_kwargs))
    assert lifecycle.list_farms(cloud) == []
    with cloud.store.read() as session:
        assert session.query(Address).count() == 0


def test_duplicate_name_and_overlapping_cidr_are_refused(cloud: Cloud) -> None:
    lifecycle.create_farm(cloud, FarmRequest(name="a", cidr="10.50.0.0/22"))
    with pytest.raises(AlreadyExists, match="already exists"):
        lifecycle.create_farm(cloud, FarmRequest(name="a"))
    with pytest.raises(AlreadyExists, match="overlaps 10.50.0.0/22"):
        lifecycle.create_farm(cloud, FarmRequest(name="b", cidr="10.50.2.0/24"))
    assert [f.name for f in lifecycle.list_farms(cloud)] == ["a"]
    with pytest.raises(NotFound):
        lifecycle.find_farm(cloud, "nobody")


def test_pools_run_out_cleanly(cloud_factory: Callable[..., Cloud]) -> None:
    small = cloud_factory(network={"farm_pool": "10.64.0.0/23", "vlan_range": [10, 20]})
    lifecycle.create_farm(small, FarmRequest(name="one"))
    lifecycle.create_farm(small, FarmRequest(name="two"))
    with pytest.raises(PoolExhausted, match="no free /24"):
        lifecycle.create_farm(small, FarmRequest(name="three"))
    tiny_public = cloud_factory(network={"public": {"range": ["198.51.100.10", "198.51.100.12"]}})
    lifecycle.create_farm(tiny_public, FarmRequest(name="one"))
    with pytest.raises(PoolExhausted, match="public address range"):
        lifecycle.create_farm(tiny_public, FarmRequest(name="two"))
    assert [f.name for f in lifecycle.list_farms(tiny_public)] == ["one"]


@pytest.fixture
def farm_with_vms(cloud: Cloud, fake_host: Callable[..., str], base_image) -> tuple[Cloud, Farm, list[Instance]]:  # type: ignore[no-untyped-def]
    hosts.add_host(cloud, "w", fake_host("w"), "worker")
    farm = lifecycle.create_farm(cloud, FarmRequest(name="lab"))
    launched = instances.launch(cloud, LaunchRequest(image="base", flavor="m1.small", farm_id=farm.id, count=2))
    for instance in launched:
        provisioning.provision(cloud, instance.id)
    return cloud, farm, launched


def test_vms_get_addresses_and_macs_from_the_farm(farm_with_vms) -> None:  # type: ignore[no-untyped-def]
    cloud, farm, launched = farm_with_vms
    ips = [i.ip for i in launched]
    assert len(set(ips)) == 2 and all(ipaddress.IPv4Address(ip) in ipaddress.IPv4Network(farm.cidr) for ip in ips)
    assert [i.mac for i in launched] == [mac_for(ip) for ip in ips]
    assert launched[0].mac.startswith("02:00:") and launched[0].mac.endswith(":".join(f"{int(b):02x}" for b in ips[0].split(".")))


def test_elastic_ip_and_forwards_are_farm_scoped(farm_with_vms) -> None:  # type: ignore[no-untyped-def]
    cloud, farm, launched = farm_with_vms
    other = lifecycle.create_farm(cloud, FarmRequest(name="other"))
    with pytest.raises(NotFound):
        elastic_ips.associate(cloud, other.id, launched[0].id)
    bound = elastic_ips.associate(cloud, farm.id, launched[0].id)
    moved = elastic_ips.associate(cloud, farm.id, launched[1].id)
    assert moved.public_ip == bound.public_ip and moved.instance_id == launched[1].id
    with pytest.raises(InvalidInput, match="not a host address"):
        port_forwards.add_forward(cloud, farm.id, "tcp", 8080, "10.1.2.3", 80)
    port_forwards.add_forward(cloud, farm.id, "tcp", 8080, launched[0].ip, 80)
    with pytest.raises(AlreadyExists):
        port_forwards.add_forward(cloud, farm.id, "tcp", 8080, launched[1].ip, 80)
    provisioning.terminate(cloud, launched[1].id)
    with cloud.store.read() as session:
        assert session.query(Address).filter_by(instance_id=launched[1].id).count() == 0


def test_delete_removes_every_row_and_domain(farm_with_vms) -> None:  # type: ignore[no-untyped-def]
    cloud, farm, launched = farm_with_vms
    uri = hosts.list_hosts(cloud)[0].uri
    assert lifecycle.delete_farm(cloud, "lab") == 2
    assert [d for d in cloud.hypervisor.list_domains(uri) if d.ivfarm_id] == []
    assert cloud.storage("worker").list_names(uri) == []
    with cloud.store.read() as session:
        assert session.query(Farm).count() == 0
        assert session.query(Instance).count() == 0
        assert session.query(Address).count() == 0
    assert f"ivfarm-net-{farm.vlan}" not in [n.name() for n in cloud.hypervisor.connection(uri).listAllNetworks()]


def test_a_farm_being_deleted_takes_no_new_instances(farm_with_vms) -> None:  # type: ignore[no-untyped-def]
    from ivfarm.errors import InvalidState

    cloud, farm, _ = farm_with_vms
    with cloud.store.write() as session:
        session.get(Farm, farm.id).status = "deleting"
    with pytest.raises(InvalidState, match="deleting"):
        instances.launch(cloud, LaunchRequest(image="base", flavor="m1.small", farm_id=farm.id))
