"""The records ivfarm publishes to a farm router's metadata service, built from the store."""
from __future__ import annotations

import base64
import json
from collections.abc import Callable

from ivfarm.cloud import Cloud
from ivfarm.services.compute import hosts, instances, provisioning
from ivfarm.services.compute.instances import LaunchRequest
from ivfarm.services.farms import elastic_ips, lifecycle
from ivfarm.services.farms.lifecycle import FarmRequest
from ivfarm.services.network.metadata_records import metadata_records
from ivfarm.services.network.routers import router_spec
from ivfarm.services.tenancy import keypairs
from ivfarm.store.models import Farm
from vrouter.imds import parse_records


def records_of(cloud: Cloud, farm_id: int) -> dict[str, dict]:
    with cloud.store.read() as session:
        farm = session.get(Farm, farm_id)
        return metadata_records(cloud, session, farm, router_spec(cloud, session, farm))


def test_one_record_per_vm_of_the_farm(cloud: Cloud, fake_host: Callable[..., str], base_image) -> None:  # type: ignore[no-untyped-def]
    hosts.add_host(cloud, "w", fake_host("w"), "worker")
    farm = lifecycle.create_farm(cloud, FarmRequest(name="lab"))
    other = lifecycle.create_farm(cloud, FarmRequest(name="other"))
    pair = keypairs.create_key_pair(cloud, farm.id, "alice", "ed25519").pair
    script = b"#!/bin/sh\necho hello\n\x00\xff"
    [wn1] = instances.launch(cloud, LaunchRequest(image="base", flavor="m1.small", farm_id=farm.id, name="wn1",
                                                  key_name="alice", user_data=script))
    [wn2] = instances.launch(cloud, LaunchRequest(image="base", flavor="m1.small", farm_id=farm.id, name="not_a_hostname"))
    [stranger] = instances.launch(cloud, LaunchRequest(image="base", flavor="m1.small", farm_id=other.id))
    elastic = elastic_ips.associate(cloud, farm.id, wn1.id)

    records = records_of(cloud, farm.id)
    assert set(records) == {wn1.ip, wn2.ip}  # never another farm's VM
    assert records[wn1.ip]["meta-data"] == {
        "ami-id": wn1.image_id, "hostname": "wn1", "instance-id": wn1.id, "instance-type": "m1.small",
        "local-hostname": "wn1", "local-ipv4": wn1.ip, "mac": wn1.mac,
        "placement": {"availability-zone": cloud.config.zone_for("worker")},
        "public-ipv4": elastic.public_ip, "public-keys": {"0=alice": {"openssh-key": pair.public_key}},
        "reservation-id": wn1.reservation_id, "security-groups": "default",
        "machinefeatures": "http://169.254.169.254/machinefeatures", "jobfeatures": "http://169.254.169.254/jobfeatures",
    }
    assert base64.b64decode(records[wn1.ip]["user-data"]) == script
    second = records[wn2.ip]["meta-data"]
    assert second["hostname"] == wn2.id  # as its DHCP lease: the name is no hostname
    assert "public-ipv4" not in second and "public-keys" not in second
    assert records[wn2.ip]["user-data"] is None
    assert set(parse_records(json.dumps(records))) == {wn1.ip, wn2.ip}  # what the router will read
    assert set(records_of(cloud, other.id)) == {stranger.ip}

    elastic_ips.disassociate(cloud, farm.id)
    assert "public-ipv4" not in records_of(cloud, farm.id)[wn1.ip]["meta-data"]
    provisioning.terminate(cloud, wn2.id)
    assert set(records_of(cloud, farm.id)) == {wn1.ip}
