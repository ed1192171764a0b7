"""Two farms with real VMs, netns routers, dnsmasq, iptables and nwfilter anti-spoofing.

One scenario boots three guests (two in farm A, one in farm B) and checks, as a user would see it:
static leases, isolation between farms, anti-spoofing, the elastic IP from the public segment,
source NAT, and that deleting a farm leaves nothing behind.
"""
from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator

import libvirt
import pytest

from ivfarm.cloud import Cloud
from ivfarm.services.compute import instances, provisioning
from ivfarm.services.compute.instances import LaunchRequest
from ivfarm.services.farms import elastic_ips, lifecycle
from ivfarm.services.network import port_forwards
from ivfarm.services.tenancy import security_groups
from ivfarm.services.tenancy.security_groups import GroupRef, Permission
from ivfarm.store.models import Address, Farm, Instance
from tests.integration.conftest import wait_for_console
from tests.integration.guest import guest_exec
from tests.support.public_clients import client_namespace

pytestmark = [pytest.mark.root, pytest.mark.libvirtd, pytest.mark.vm]

CLIENT_IP = "198.51.100.200"
ECHO_SERVER = (
    "import http.server\n"
    "class H(http.server.BaseHTTPRequestHandler):\n"
    "    def do_GET(self):\n"
    "        body = ('from=' + self.client_address[0]).encode()\n"
    "        self.send_response(200); self.send_header('Content-Length', str(len(body))); self.end_headers()\n"
    "        self.wfile.write(body)\n"
    "    def log_message(self, *args): pass\n"
    "http.server.ThreadingHTTPServer(('0.0.0.0', 8000), H).serve_forever()\n"
)


def boot(cloud: Cloud, farm: Farm, name: str) -> Instance:
    [instance] = instances.launch(cloud, LaunchRequest(image="guest", flavor="m1.tiny", farm_id=farm.id, name=name))
    provisioning.provision(cloud, instance.id)
    return instance


def http_from_client(namespace: str, url: str) -> str:
    result = subprocess.run(["ip", "netns", "exec", namespace, "timeout", "5", "busybox", "wget", "-q", "-O", "-", url],
                            capture_output=True, text=True, timeout=15)
    return result.stdout if result.returncode == 0 else ""


@pytest.fixture
def public_client(request: pytest.FixtureRequest) -> Iterator[tuple[str, Cloud]]:
    cloud: Cloud = request.getfixturevalue("cloud_with_farms")[0]
    with client_namespace(cloud.public_segment, "ivtclient", CLIENT_IP) as namespace:
        server = subprocess.Popen(["ip", "netns", "exec", namespace, sys.executable, "-c", ECHO_SERVER])
        time.sleep(0.5)
        try:
            yield namespace, cloud
        finally:
            server.terminate()
            server.wait(10)


@pytest.fixture
def cloud_with_farms(real_cloud_factory) -> tuple[Cloud, Farm, Farm]:  # type: ignore[no-untyped-def]
    cloud = real_cloud_factory(router="netns")
    return cloud, lifecycle.create_farm(cloud, lifecycle.FarmRequest(name="alpha")), lifecycle.create_farm(cloud, lifecycle.FarmRequest(name="beta"))


def test_two_farms_isolation_antispoofing_elastic_ip_and_delete(cloud_with_farms, public_client) -> None:  # type: ignore[no-untyped-def]
    cloud, alpha, beta = cloud_with_farms
    client_ns, _ = public_client
    # from outside, the farm's VMs answer on port 80 only (its default security group allows it)
    security_groups.authorize(cloud, alpha.id, GroupRef(name="default"), False, [Permission("tcp", 80, 80, "0.0.0.0/0")])
    a1, a2, b1 = boot(cloud, alpha, "a1"), boot(cloud, alpha, "a2"), boot(cloud, beta, "b1")
    for vm in (a1, a2, b1):  # each gets its static lease from its own router
        assert f"IVFARM-GUEST: ip={vm.ip}" in wait_for_console(cloud, vm.id, "IVFARM-GUEST: ready")
    router_a, router_b = alpha.cidr.replace(".0/24", ".1"), beta.cidr.replace(".0/24", ".1")

    assert guest_exec(a1.id, f"ping -c 1 -W 2 {a2.ip}")[0] == 0
    assert guest_exec(a1.id, f"ping -c 1 -W 2 {router_a}")[0] == 0
    assert guest_exec(a1.id, f"ping -c 1 -W 2 {b1.ip}")[0] != 0
    assert guest_exec(a1.id, f"ping -c 1 -W 2 {router_b}")[0] != 0
    assert guest_exec(b1.id, f"ping -c 1 -W 2 {a1.ip}")[0] != 0

    # outbound: without the elastic IP, every VM leaves with the router's public IP
    assert guest_exec(a2.id, f"timeout 5 wget -q -O - http://{CLIENT_IP}:8000/")[1].endswith(f"from={alpha.router_ip}")
    elastic = elastic_ips.associate(cloud, alpha.id, a1.id)
    assert http_from_client(client_ns, f"http://{elastic.public_ip}/").strip() == a1.id
    assert http_from_client(client_ns, f"http://{a1.ip}/") == ""  # private address unreachable
    assert guest_exec(a1.id, f"timeout 5 wget -q -O - http://{CLIENT_IP}:8000/")[1].endswith(f"from={elastic.public_ip}")
    assert guest_exec(a2.id, f"timeout 5 wget -q -O - http://{CLIENT_IP}:8000/")[1].endswith(f"from={alpha.router_ip}")
    port_forwards.add_forward(cloud, alpha.id, "tcp", 8080, a2.ip, 80)
    assert http_from_client(client_ns, f"http://{alpha.router_ip}:8080/").strip() == a2.id
    elastic_ips.disassociate(cloud, alpha.id)
    assert http_from_client(client_ns, f"http://{elastic.public_ip}/") == ""
    assert guest_exec(a1.id, f"timeout 5 wget -q -O - http://{CLIENT_IP}:8000/")[1].endswith(f"from={alpha.router_ip}")

    # anti-spoofing: a VM that takes another IP or MAC is cut off; its own address works again
    spoof_ip = alpha.cidr.replace(".0/24", ".77")
    status, _ = guest_exec(a1.id, f"ip addr flush dev eth0; ip addr add {spoof_ip}/24 dev eth0; "
                                         f"ping -c 2 -W 2 {router_a}")
    assert status != 0
    assert guest_exec(a1.id, f"ip addr flush dev eth0; ip addr add {a1.ip}/24 dev eth0; "
                                    f"ping -c 2 -W 2 {router_a}")[0] == 0
    status, _ = guest_exec(a1.id, "ip link set eth0 down; ip link set eth0 address 02:00:de:ad:be:ef; "
                                         f"ip link set eth0 up; ip addr add {a1.ip}/24 dev eth0; ping -c 2 -W 2 {router_a}")
    assert status != 0

    # deleting farm alpha leaves nothing of it; beta is untouched
    lifecycle.delete_farm(cloud, "alpha")
    conn = libvirt.open("qemu:///system")
    try:
        names = [d.name() for d in conn.listAllDomains()]
        assert not any(vm.id in n for vm in (a1, a2) for n in names)
        assert f"ivfarm-net-{alpha.vlan}" not in [n.name() for n in conn.listAllNetworks()]
    finally:
        conn.close()
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert f"ivbr{alpha.vlan}" not in links and f"ivl{'r' + str(alpha.vlan)}" not in links
    assert f"ivfarm-r{alpha.vlan}" not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert f"r{alpha.vlan}" not in subprocess.run(["pgrep", "-a", "dnsmasq"], capture_output=True, text=True).stdout
    files = [p.name for p in cloud.config.state_dir.rglob("*") if a1.id in p.name or a2.id in p.name]
    assert files == []
    assert not (cloud.config.state_dir / "run" / "routers" / f"r{alpha.vlan}").exists()
    with cloud.store.read() as session:
        assert session.query(Farm).filter_by(name="alpha").count() == 0
        assert session.query(Instance).filter(Instance.farm_id == alpha.id).count() == 0
        assert session.query(Address).filter(Address.farm_id == alpha.id).count() == 0
    assert f"IVFARM-GUEST: ip={b1.ip}" in wait_for_console(cloud, b1.id, "ready")
    assert guest_exec(b1.id, f"ping -c 1 -W 2 {router_b}")[0] == 0
