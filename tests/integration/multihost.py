"""Clouds with two real hypervisors: this machine's libvirtd (``hv-a``) and a second one (``hv-b``).

``hv-b`` has private disks, seeds and console directories (its own local storage) and is reached
over TCP, so ivfarm treats it as a remote host. Fixture: ``two_hosts(host_class, **config)``.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import select

from ivfarm.cloud import Cloud
from ivfarm.errors import IvfarmError
from ivfarm.services.compute import hosts, provisioning
from ivfarm.store.models import Instance
from tests.integration import second_libvirtd
from tests.integration.conftest import TEST_ROOT
from tests.integration.second_libvirtd import SecondLibvirtd


def _release(cloud: Cloud) -> None:
    """Terminate the cloud's instances; those stranded on a dead hv-b are only marked terminated."""
    with cloud.store.read() as session:
        live = [i.id for i in session.scalars(select(Instance).where(Instance.state != "terminated"))]
    for instance_id in live:
        try:
            provisioning.terminate(cloud, instance_id)
        except IvfarmError:
            with cloud.store.write() as session:
                instance = session.get(Instance, instance_id)
                assert instance is not None
                instance.state, instance.host_id = "terminated", None


@pytest.fixture
def two_hosts(real_cloud_factory: Callable[..., Cloud]) -> Iterator[Callable[..., tuple[Cloud, SecondLibvirtd]]]:
    made: list[tuple[Cloud, SecondLibvirtd]] = []

    def build(host_class: str, **overrides: Any) -> tuple[Cloud, SecondLibvirtd]:
        cloud = real_cloud_factory(**overrides)
        state = cloud.config.state_dir
        second = second_libvirtd.start(TEST_ROOT / f"{cloud.cloud_id}-hv-b",
                                       [state / "disks", state / "seeds", state / "console"])
        made.append((cloud, second))
        hosts.remove_host(cloud, "local")
        hosts.add_host(cloud, "hv-a", "qemu:///system", host_class, migration_uri=second.first_uri)
        hosts.add_host(cloud, "hv-b", second.uri, host_class)
        return cloud, second

    yield build
    for cloud, second in made:
        try:
            _release(cloud)
        finally:
            second.stop()
