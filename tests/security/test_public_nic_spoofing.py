"""Issue 13, item 4: a VM with a public NIC cannot take another address of the public network.

A real service VM whose only NIC is on a project-made public bridge gets its address from the
site's DHCP server (dnsmasq in a namespace, ``network.public.dhcp_server``). It then tries what a tenant
with root would: send from, and ARP for, another address of the public network (another farm's
router or elastic IP), and use another MAC. A neighbour on the bridge never hears it and learns no
ARP entry for the stolen address; the VM's own address and MAC still work.
Before the fix the public NIC had no filter: the spoofed ping was answered and the neighbour's
ARP table pointed the stolen address at the VM.
"""
from __future__ import annotations

import subprocess
import uuid
from collections.abc import Callable, Iterator

import pytest

from ivfarm.cloud import Cloud
from ivfarm.services.compute import hosts, instances, provisioning
from ivfarm.services.compute.instances import LaunchRequest
from tests.integration.conftest import wait_for_console
from tests.integration.guest import guest_exec
from tests.support.public_clients import client_namespace

pytestmark = [pytest.mark.root, pytest.mark.libvirtd, pytest.mark.vm]

GATEWAY, DHCP, LEASED, NEIGHBOUR, STOLEN = "192.0.2.1", "192.0.2.5", "192.0.2.50", "192.0.2.60", "192.0.2.70"


@pytest.fixture
def public_bridge() -> Iterator[str]:
    """A host bridge standing for the site's public network (made and removed here)."""
    name = f"ivts{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "link", "add", "name", name, "type", "bridge"], check=True)
    subprocess.run(["ip", "link", "set", name, "up"], check=True)
    yield name
    subprocess.run(["ip", "link", "del", name], check=False)


@pytest.fixture
def site(real_cloud_factory: Callable[..., Cloud], public_bridge: str) -> Cloud:
    cloud = real_cloud_factory(network={"farm_pool": "10.99.0.0/16", "public": {
        "cidr": "192.0.2.0/24", "gateway": GATEWAY, "range": ["192.0.2.10", "192.0.2.40"],
        "bridge": public_bridge, "netns": None, "dhcp_server": DHCP}})
    hosts.remove_host(cloud, "local")  # the same libvirtd, as a service host
    hosts.add_host(cloud, "svc", "qemu:///system", "service")
    return cloud


def in_ns(namespace: str, *command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", namespace, *command], capture_output=True, text=True, timeout=30)


def test_a_public_nic_cannot_send_from_or_arp_for_another_address(site: Cloud) -> None:
    with client_namespace(site.public_segment, f"ivtd{uuid.uuid4().hex[:5]}", DHCP) as dhcp_ns, \
            client_namespace(site.public_segment, f"ivtn{uuid.uuid4().hex[:5]}", NEIGHBOUR) as neighbour:
        dhcp = subprocess.Popen(["ip", "netns", "exec", dhcp_ns, "dnsmasq", "--no-daemon", "--conf-file=/dev/null",
                                 "--port=0", "--interface=eth0", "--bind-interfaces", "--leasefile-ro",
                                 "--user=nobody", "--group=nogroup", f"--dhcp-range={LEASED},{LEASED},255.255.255.0,10m"])
        try:
            [vm] = instances.launch(site, LaunchRequest(image="guest", flavor="m1.tiny", host_class="service",
                                                        public_nic=True))
            provisioning.provision(site, vm.id)
            assert f"ip={LEASED}" in wait_for_console(site, vm.id, "IVFARM-GUEST: ready")
            mac = "02:01:" + ":".join(vm.id[-8:][i:i + 2] for i in range(0, 8, 2))
            assert guest_exec(vm.id, f"ping -c 2 -W 2 {NEIGHBOUR}")[0] == 0  # its own address works

            # the attack: send from another public address (ARP included)
            in_ns(neighbour, "ip", "neigh", "flush", "dev", "eth0")
            status, _ = guest_exec(vm.id, f"ip addr flush dev eth0; ip addr add {STOLEN}/24 dev eth0; "
                                          f"ping -c 2 -W 2 {NEIGHBOUR}")
            assert status != 0
            assert mac not in in_ns(neighbour, "ip", "neigh", "show").stdout.lower()
            # and another MAC with its own address
            status, _ = guest_exec(vm.id, "ip addr flush dev eth0; ip link set eth0 down; "
                                          "ip link set eth0 address 02:01:de:ad:be:ef; ip link set eth0 up; "
                                          f"ip addr add {LEASED}/24 dev eth0; ping -c 2 -W 2 {NEIGHBOUR}")
            assert status != 0
            assert guest_exec(vm.id, f"ip link set eth0 down; ip link set eth0 address {mac}; ip link set eth0 up; "
                                     f"ping -c 2 -W 2 {NEIGHBOUR}")[0] == 0
        finally:
            dhcp.terminate()
            dhcp.wait(10)
