"""Hosts' SSH endpoints and image caches: parsing, registration, which hosts a sync reaches."""
from __future__ import annotations

from collections.abc import Callable

import pytest

from drivers.errors import InvalidArgument
from drivers.storage.ssh_cache import SshTarget
from ivfarm.cloud import Cloud
from ivfarm.errors import InvalidInput, NotFound
from ivfarm.services.compute import hosts
from ivfarm.services.images import image_sync


@pytest.mark.parametrize("text,parsed", [
    ("root@hv1:2222", ("root", "hv1", 2222)), ("hv1", ("root", "hv1", 22)), ("ivfarm@10.0.0.7", ("ivfarm", "10.0.0.7", 22)),
])
def test_ssh_targets_parse(text: str, parsed: tuple[str, str, int]) -> None:
    target = SshTarget.parse(text)
    assert (target.user, target.host, target.port) == parsed


@pytest.mark.parametrize("text", ["", "root@", "root@hv1:ssh", "root@hv 1:22"])
def test_bad_ssh_targets_are_refused(text: str) -> None:
    with pytest.raises(InvalidArgument, match="invalid SSH target"):
        SshTarget.parse(text)


def test_a_bad_ssh_target_is_a_clear_error_when_adding_a_host(cloud: Cloud, fake_host: Callable[..., str]) -> None:
    with pytest.raises(InvalidInput, match="invalid SSH target"):
        hosts.add_host(cloud, "wn1", fake_host("a"), "worker", ssh_target="root@hv 1:22")


def test_hosts_keep_their_endpoints(cloud: Cloud, fake_host: Callable[..., str]) -> None:
    hosts.add_host(cloud, "wn1", fake_host("a"), "worker", ssh_target="hv1", cache_dir="/srv/cache",
                   migration_uri="qemu+tls://hv1.internal/system")
    view = hosts.show_host(cloud, "wn1")
    assert (view.ssh_target, view.cache_dir, view.migration_uri) == (
        "root@hv1:22", "/srv/cache", "qemu+tls://hv1.internal/system")
    with pytest.raises(InvalidInput, match="absolute"):
        hosts.add_host(cloud, "wn2", fake_host("b"), "worker", cache_dir="cache")


def test_a_sync_reaches_only_hosts_with_an_endpoint(cloud: Cloud, fake_host: Callable[..., str], base_image) -> None:  # type: ignore[no-untyped-def]
    hosts.add_host(cloud, "local", fake_host("c"), "worker")
    report = image_sync.sync_image(cloud, "base")
    assert (report.hosts, report.rounds) == ([], 0)
    with pytest.raises(InvalidInput, match="has no SSH endpoint"):
        image_sync.sync_image(cloud, "base", ["local"])
    with pytest.raises(NotFound):
        image_sync.sync_image(cloud, "base", ["ghost"])
