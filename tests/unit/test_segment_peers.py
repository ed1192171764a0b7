"""VXLAN segment bookkeeping on libvirt's test driver: host registration, host shells, carriers."""
from __future__ import annotations

from collections.abc import Callable

import pytest

from drivers.network.host_shell import LocalShell, NetnsShell, SshShell
from ivfarm.cloud import Cloud
from ivfarm.errors import AlreadyExists, InvalidInput, NetworkError
from ivfarm.services.compute import hosts, instances
from ivfarm.services.compute.instances import LaunchRequest
from ivfarm.services.compute.placement import place_on
from ivfarm.services.farms import lifecycle
from ivfarm.services.network.segment_peers import Carrier, carriers, host_link, host_shell
from ivfarm.store.models import Farm, Host


def test_underlay_address_and_netns_are_part_of_the_registration(cloud: Cloud, fake_host: Callable[..., str]) -> None:
    hosts.add_host(cloud, "wn1", fake_host("a"), "worker", underlay_address="203.0.113.11", netns="site-h1")
    view = hosts.show_host(cloud, "wn1")
    assert (view.underlay_address, view.netns) == ("203.0.113.11", "site-h1")
    with pytest.raises(AlreadyExists, match="underlay address 203.0.113.11"):
        hosts.add_host(cloud, "wn2", fake_host("b"), "worker", underlay_address="203.0.113.11")
    with pytest.raises(InvalidInput, match="--underlay-address"):
        hosts.add_host(cloud, "wn3", fake_host("c"), "worker", underlay_address="hv3.example")
    with pytest.raises(InvalidInput, match="namespace"):
        hosts.add_host(cloud, "wn4", fake_host("d"), "worker", netns="a b")
    assert [h.name for h in hosts.list_hosts(cloud)] == ["wn1"]


@pytest.mark.parametrize("row,argv", [
    (Host(name="a", uri="qemu:///system", netns="site-h1"), ["ip", "netns", "exec", "site-h1", "ip", "link"]),
    (Host(name="b", uri="qemu:///system"), ["ip", "link"]),
    (Host(name="c", uri="qemu+ssh://hv3/system", ssh_target="ops@hv3:2222"),
     ["ssh", "-p", "2222", "-o", "BatchMode=yes", "ops@hv3", "ip link"]),
])
def test_network_commands_run_where_the_host_is(row: Host, argv: list[str]) -> None:
    shell = host_shell(row)
    assert isinstance(shell, (NetnsShell, LocalShell, SshShell)) and shell.argv(["ip", "link"]) == argv


def test_a_remote_host_without_ssh_cannot_carry_segments() -> None:
    with pytest.raises(NetworkError, match="no --ssh-target"):
        host_shell(Host(name="far", uri="qemu+ssh://far/system"))


def test_a_host_without_underlay_address_is_named(cloud: Cloud, fake_host: Callable[..., str]) -> None:
    uri = fake_host("e")
    hosts.add_host(cloud, "plain", uri, "worker")
    with pytest.raises(NetworkError, match="host plain has no underlay address"):
        host_link(cloud.store, uri)
    with pytest.raises(NetworkError, match="no registered host"):
        host_link(cloud.store, "qemu+ssh://nowhere/system")


def test_carriers_are_the_hosts_of_the_farms_live_vms_with_their_macs(
        cloud: Cloud, fake_host: Callable[..., str], base_image) -> None:  # type: ignore[no-untyped-def]
    for index in (1, 2, 3):
        hosts.add_host(cloud, f"wn{index}", fake_host(f"wn{index}"), "worker", underlay_address=f"203.0.113.{index}")
    farm = lifecycle.create_farm(cloud, lifecycle.FarmRequest(name="alpha"))
    vms = instances.launch(cloud, LaunchRequest(image="base", flavor="m1.small", farm_id=farm.id, count=3))
    for vm, host in zip(vms, ("wn1", "wn2", "wn2"), strict=True):
        place_on(cloud, vm.id, host)
    with cloud.store.read() as session:
        found = carriers(cloud, session, session.get_one(Farm, farm.id))
        uris = {h.name: h.uri for h in session.query(Host)}
    assert found == sorted([Carrier(uris["wn1"], "203.0.113.1", (vms[0].mac,)),
                            Carrier(uris["wn2"], "203.0.113.2", tuple(sorted([vms[1].mac, vms[2].mac])))],
                           key=lambda c: c.uri)
    with cloud.store.write() as session:  # wn2 stops answering: it is neither set up nor a peer any more
        session.query(Host).filter_by(name="wn2").one().status = "unreachable"
    with cloud.store.read() as session:
        assert carriers(cloud, session, session.get_one(Farm, farm.id)) == [
            Carrier(uris["wn1"], "203.0.113.1", (vms[0].mac,))]
