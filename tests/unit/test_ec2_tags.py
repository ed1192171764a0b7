"""Tags on a farm's own resources, with AWS's limits."""
from __future__ import annotations

from collections.abc import Callable

import pytest

from ivfarm.cloud import Cloud
from ivfarm.errors import InvalidInput, NotFound
from ivfarm.services.compute import instances
from ivfarm.services.compute.hosts import add_host
from ivfarm.services.farms.lifecycle import FarmRequest, create_farm
from ivfarm.services.tenancy import keypairs, tags
from ivfarm.store.models import Image


@pytest.fixture
def world(cloud: Cloud, fake_host: Callable[..., str], base_image: Image) -> dict[str, str | int]:
    add_host(cloud, "w1", fake_host("w1"), "worker")
    alpha = create_farm(cloud, FarmRequest(name="alpha"))
    beta = create_farm(cloud, FarmRequest(name="beta"))
    (instance,) = instances.launch(cloud, instances.LaunchRequest(image=base_image.id, flavor="m1.tiny",
                                                                  farm_id=alpha.id))
    key = keypairs.create_key_pair(cloud, alpha.id, "k").pair
    return {"alpha": alpha.id, "beta": beta.id, "instance": instance.id, "key": key.id}


def listed(cloud: Cloud, farm_id: int) -> set[tuple[str, str, str, str]]:
    return {(t.resource_id, t.resource_type, t.key, t.value) for t in tags.list_tags(cloud, farm_id)}


def test_create_overwrite_and_list(cloud: Cloud, world: dict[str, str | int]) -> None:
    alpha, instance, key = int(world["alpha"]), str(world["instance"]), str(world["key"])
    tags.create_tags(cloud, alpha, [instance, key], {"env": "prod", "empty": ""})
    tags.create_tags(cloud, alpha, [instance], {"env": "test"})
    assert listed(cloud, alpha) == {(instance, "instance", "env", "test"), (instance, "instance", "empty", ""),
                                    (key, "key-pair", "env", "prod"), (key, "key-pair", "empty", "")}
    assert listed(cloud, int(world["beta"])) == set()


def test_all_or_nothing_and_other_farms_resources_are_absent(cloud: Cloud, world: dict[str, str | int]) -> None:
    alpha, beta, instance = int(world["alpha"]), int(world["beta"]), str(world["instance"])
    with pytest.raises(NotFound) as excinfo:
        tags.create_tags(cloud, alpha, [instance, "i-0123456789abcdef0"], {"a": "b"})
    assert excinfo.value.kind == "instance"
    with pytest.raises(NotFound):
        tags.create_tags(cloud, beta, [instance], {"a": "b"})
    with pytest.raises(tags.UnknownResource):
        tags.create_tags(cloud, alpha, [instance, "vpn-0123456789abcdef0"], {"a": "b"})
    with pytest.raises(NotFound) as excinfo:  # volumes are taggable: an absent one is not found
        tags.create_tags(cloud, alpha, [instance, "vol-0123456789abcdef0"], {"a": "b"})
    assert excinfo.value.kind == "volume"
    assert listed(cloud, alpha) == set()


def test_limits(cloud: Cloud, world: dict[str, str | int]) -> None:
    alpha, instance = int(world["alpha"]), str(world["instance"])
    tags.create_tags(cloud, alpha, [instance], {f"k{n}": "v" for n in range(50)})
    with pytest.raises(tags.TagLimitExceeded):
        tags.create_tags(cloud, alpha, [instance], {"one-more": "v"})
    tags.create_tags(cloud, alpha, [instance], {"k0": "overwritten"})  # not a new key: fine
    for bad in ({"aws:x": "v"}, {"": "v"}, {"k" * 129: "v"}, {"k": "v" * 257}):
        with pytest.raises(InvalidInput):
            tags.create_tags(cloud, alpha, [instance], bad)
    assert len(listed(cloud, alpha)) == 50


def test_delete_by_key_by_value_or_all(cloud: Cloud, world: dict[str, str | int]) -> None:
    alpha, instance, key = int(world["alpha"]), str(world["instance"]), str(world["key"])
    tags.create_tags(cloud, alpha, [instance, key], {"a": "1", "b": "2", "c": ""})
    tags.delete_tags(cloud, alpha, [instance], [("a", "other"), ("b", None), ("c", "")])
    tags.delete_tags(cloud, alpha, [key])
    assert listed(cloud, alpha) == {(instance, "instance", "a", "1")}
