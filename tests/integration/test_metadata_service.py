"""The EC2 metadata service as real guests see it: two farms with netns routers, three VMs.

Farm alpha's a1 (shell-script user-data, a key pair) and a2, farm beta's b1. Each asks
http://169.254.169.254/ from inside the guest (busybox wget) and must get exactly its own
documents: its instance-id, its user-data byte for byte, its elastic IP as public-ipv4 only while
bound. b1 sits behind another router and never sees anything of alpha; a2 taking a1's address is
cut off by the anti-spoofing filter, so the source address really identifies the VM.
"""
from __future__ import annotations

import secrets

import pytest

from ivfarm.cloud import Cloud
from ivfarm.services.compute import instances, provisioning
from ivfarm.services.compute.instances import LaunchRequest
from ivfarm.services.farms import elastic_ips, lifecycle
from ivfarm.services.tenancy import keypairs
from ivfarm.store.models import Farm, Instance
from tests.integration.conftest import wait_for_console
from tests.integration.guest import guest_exec

pytestmark = [pytest.mark.root, pytest.mark.libvirtd, pytest.mark.vm]

MDS = "http://169.254.169.254"
LEAVES = ("instance-id", "local-ipv4", "hostname", "local-hostname", "instance-type", "ami-id",
          "reservation-id", "mac", "placement/availability-zone", "public-keys/", "public-keys/0/openssh-key")


def boot(cloud: Cloud, farm: Farm, name: str, **options: object) -> Instance:
    [instance] = instances.launch(cloud, LaunchRequest(image="guest", flavor="m1.tiny", farm_id=farm.id, name=name,
                                                       **options))  # type: ignore[arg-type]
    provisioning.provision(cloud, instance.id)
    return instance


def fetch(instance_id: str, path: str) -> tuple[int, str]:
    """(wget's exit status, body) of GET path from inside the guest."""
    return guest_exec(instance_id, f"timeout 4 wget -q -O - {MDS}{path}")


def leaves(instance_id: str) -> dict[str, str]:
    """Several meta-data leaves in one console round trip (a short line: the serial console
    drops input past about 1 KB)."""
    script = (f"for p in {' '.join(LEAVES)}; do "
              f'echo "$p=$(timeout 4 wget -q -O - {MDS}/latest/meta-data/$p | head -n 1)"; done')
    status, out = guest_exec(instance_id, script)
    assert status == 0, out
    return dict(line.split("=", 1) for line in out.splitlines() if line.split("=", 1)[0] in LEAVES)


def test_each_vm_gets_only_its_own_metadata(real_cloud_factory) -> None:  # type: ignore[no-untyped-def]
    cloud = real_cloud_factory(router="netns")
    alpha = lifecycle.create_farm(cloud, lifecycle.FarmRequest(name="alpha"))
    beta = lifecycle.create_farm(cloud, lifecycle.FarmRequest(name="beta"))
    pair = keypairs.create_key_pair(cloud, alpha.id, "alice", "ed25519").pair
    token = secrets.token_hex(4)
    # the guest computes 42, so only the script's output (not its text) carries the marker
    user_data = f"#!/bin/sh\necho IVFARM-UD-{token}-$((6*7))\n".encode()
    a1 = boot(cloud, alpha, "a1", user_data=user_data, key_name="alice")
    a2 = boot(cloud, alpha, "a2")
    b1 = boot(cloud, beta, "b1")
    console = wait_for_console(cloud, a1.id, "IVFARM-GUEST: ready")
    assert f"IVFARM-UD-{token}-42" in console and "user-data exit=0" in console  # ran from the seed
    for vm in (a2, b1):
        wait_for_console(cloud, vm.id, "IVFARM-GUEST: ready")

    # a1: its own documents, IMDS-style listings, user-data byte for byte
    assert fetch(a1.id, "/latest/meta-data/instance-id") == (0, a1.id)
    assert leaves(a1.id) == {
        "instance-id": a1.id, "local-ipv4": a1.ip, "hostname": "a1", "local-hostname": "a1",
        "instance-type": "m1.tiny", "ami-id": a1.image_id, "reservation-id": a1.reservation_id, "mac": a1.mac,
        "placement/availability-zone": cloud.config.zone_for("worker"), "public-keys/": "0=alice",
        "public-keys/0/openssh-key": pair.public_key,
    }
    status, listing = fetch(a1.id, "/latest/meta-data/")
    assert status == 0 and {"instance-id", "placement/", "public-keys/"} <= set(listing.split())
    assert "public-ipv4" not in listing.split()  # no public address yet, as on EC2
    assert fetch(a1.id, "/latest/") == (0, "meta-data\nuser-data")
    assert fetch(a1.id, "/")[1].split()[-1] == "latest"
    assert fetch(a1.id, "/latest/user-data") == (0, user_data.decode().strip())
    assert fetch(a1.id, "/2009-04-04/meta-data/instance-id") == (0, a1.id)
    assert fetch(a1.id, "/latest/meta-data/no-such-thing")[0] != 0  # 404

    # IMDSv2: a token by PUT (busybox nc), then a GET carrying it; a forged token is refused
    put = ("printf 'PUT /latest/api/token HTTP/1.0\\r\\nX-aws-ec2-metadata-token-ttl-seconds: 60\\r\\n\\r\\n' "
           "| timeout 4 nc 169.254.169.254 80 | tail -n 1")
    get = f"timeout 4 wget -q -O - --header \"X-aws-ec2-metadata-token: $T\" {MDS}/latest/meta-data/instance-id"
    assert guest_exec(a1.id, f"T=$({put}); {get}") == (0, a1.id)
    assert guest_exec(a1.id, f"T=1.forged; {get}")[0] != 0  # 401

    # public-ipv4 follows the elastic IP
    elastic = elastic_ips.associate(cloud, alpha.id, a1.id)
    assert fetch(a1.id, "/latest/meta-data/public-ipv4") == (0, elastic.public_ip)
    assert fetch(a2.id, "/latest/meta-data/public-ipv4")[0] != 0
    elastic_ips.disassociate(cloud, alpha.id)
    assert fetch(a1.id, "/latest/meta-data/public-ipv4")[0] != 0

    # a2, same farm: its own record, not a1's
    assert fetch(a2.id, "/latest/meta-data/instance-id") == (0, a2.id)
    status, out = fetch(a2.id, "/latest/user-data")
    assert status != 0 and token not in out

    # b1, another farm: its own record from its own router, nothing of alpha
    assert fetch(b1.id, "/latest/meta-data/instance-id") == (0, b1.id)
    assert fetch(b1.id, "/latest/meta-data/local-ipv4") == (0, b1.ip)
    status, out = fetch(b1.id, "/latest/user-data")
    assert status != 0 and token not in out
    assert a1.id not in leaves(b1.id).values()
    router_a = alpha.cidr.replace(".0/24", ".1")
    status, out = guest_exec(b1.id, f"timeout 4 wget -q -O - http://{router_a}/latest/meta-data/instance-id")
    assert status != 0 and a1.id not in out  # alpha's router is unreachable from beta

    # latency as a guest sees it: 20 wgets (each a new busybox process under emulation)
    status, out = guest_exec(a1.id, "a=$(cut -d' ' -f1 /proc/uptime); for i in $(seq 20); do "
                                    f"timeout 4 wget -q -O /dev/null {MDS}/latest/meta-data/instance-id; done; "
                                    "b=$(cut -d' ' -f1 /proc/uptime); for i in $(seq 20); do timeout 4 true; done; "
                                    "c=$(cut -d' ' -f1 /proc/uptime); echo \"TIMES $a $b $c\"")
    start, fetched, spawned = (float(x) for x in out.split("TIMES ")[-1].split()[:3])
    print(f"\nmetadata GET from a guest (busybox wget, software emulation): {(fetched - start) / 20 * 1000:.0f} ms "
          f"per request, of which {(spawned - fetched) / 20 * 1000:.0f} ms is starting `timeout` alone")

    # a2 taking a1's address: the anti-spoofing filter drops it, so it cannot read a1's data
    status, out = guest_exec(a2.id, f"ip addr flush dev eth0; ip addr add {a1.ip}/24 dev eth0; "
                                    f"ip route add default via {router_a}; "
                                    f"timeout 4 wget -q -O - {MDS}/latest/user-data")
    assert status != 0 and token not in out
