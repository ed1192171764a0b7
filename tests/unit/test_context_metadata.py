"""meta-data, network config v2 and the EC2 metadata tree as a guest reads them (the tree as the
router's metadata service, vrouter.imds, serves it)."""
from __future__ import annotations

import json

import pytest

from contextualization.errors import ContextError
from contextualization.metadata import ec2_metadata_tree, meta_data, network_config_v2
from vrouter.imds import render

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHh0ZXN0a2V5 alice@login"
INSTANCE = dict(instance_id="i-0a1b2c3d4e5f60718", hostname="wn-003", local_ipv4="10.0.5.3",
                public_ipv4="192.0.2.10", public_keys={"alice": KEY}, instance_type="m1.large",
                ami_id="ami-00000000000000070", reservation_id="r-0f0e0d0c0b0a09080",
                availability_zone="torino-1a", mac="02:00:0A:00:05:03")


def test_meta_data_uses_nocloud_keys() -> None:
    doc = meta_data("i-1", "wn-001", {"alice": KEY}, availability_zone="torino-1a")
    assert doc["instance-id"] == "i-1"
    assert doc["local-hostname"] == "wn-001"
    assert doc["public-keys"] == {"alice": KEY}
    assert doc["availability-zone"] == "torino-1a"


def test_meta_data_without_keys_has_no_public_keys_entry() -> None:
    assert "public-keys" not in meta_data("i-1", "wn-001", None)


@pytest.mark.parametrize("hostname", ["", "-bad", "under_score", "a" * 64, "x..y"])
def test_meta_data_refuses_bad_hostnames(hostname: str) -> None:
    with pytest.raises(ContextError, match="hostname"):
        meta_data("i-1", hostname)


def test_meta_data_refuses_multi_line_keys() -> None:
    with pytest.raises(ContextError, match="alice"):
        meta_data("i-1", "wn-001", {"alice": KEY + "\nssh-rsa AAAA other"})


def test_network_config_matches_by_mac_with_a_default_route() -> None:
    doc = network_config_v2("02:00:0A:00:05:03", "10.0.5.3", 24, "10.0.5.1", ["10.0.5.1"])
    (name, ethernet), = doc["ethernets"].items()
    assert doc["version"] == 2
    assert ethernet["match"] == {"macaddress": "02:00:0a:00:05:03"}
    assert ethernet["set-name"] == name
    assert ethernet["addresses"] == ["10.0.5.3/24"]
    assert ethernet["routes"] == [{"to": "default", "via": "10.0.5.1"}]
    assert "gateway4" not in ethernet
    assert ethernet["nameservers"] == {"addresses": ["10.0.5.1"]}


@pytest.mark.parametrize("args, complaint", [
    (("02:00:0a:00:05:03", "10.0.5.3", 24, "10.0.6.1", []), "outside"),
    (("02:00:0a:00:05:03", "10.0.5.300", 24, "10.0.5.1", []), "invalid network"),
    (("02:00:0a:00:05:03", "10.0.5.3", 33, "10.0.5.1", []), "invalid network"),
    (("02:00:0a:00:05:03", "10.0.5.3", 24, "10.0.5.1", ["dns.example"]), "invalid network"),
    (("02-00-0a-00-05-03", "10.0.5.3", 24, "10.0.5.1", []), "MAC"),
])
def test_network_config_refuses_inconsistent_settings(args, complaint: str) -> None:
    with pytest.raises(ContextError, match=complaint):
        network_config_v2(*args)


def get(tree: dict, path: str) -> str | None:
    """What the router's metadata service (vrouter.imds) answers for a path below meta-data/."""
    found = render(tree, [part for part in path.split("/") if part])
    return None if found is None else found.body.decode()


def test_imds_tree_is_plain_json() -> None:
    tree = ec2_metadata_tree(**INSTANCE)
    assert json.loads(json.dumps(tree)) == tree


def test_imds_top_level_lists_leaves_and_directories() -> None:
    listing = get(ec2_metadata_tree(**INSTANCE), "").splitlines()
    for leaf in ("instance-id", "local-ipv4", "public-ipv4", "hostname", "local-hostname",
                 "instance-type", "ami-id", "reservation-id", "mac"):
        assert leaf in listing
    assert "placement/" in listing and "public-keys/" in listing


def test_imds_leaves_answer_their_values() -> None:
    tree = ec2_metadata_tree(**INSTANCE)
    assert get(tree, "instance-id") == INSTANCE["instance_id"]
    assert get(tree, "/local-ipv4") == INSTANCE["local_ipv4"]
    assert get(tree, "placement/availability-zone") == "torino-1a"
    assert get(tree, "placement/") == "availability-zone"
    assert get(tree, "mac") == INSTANCE["mac"].lower()


def test_imds_public_keys_list_index_and_name() -> None:
    tree = ec2_metadata_tree(**{**INSTANCE, "public_keys": {"alice": KEY, "bob": KEY + "2"}})
    assert get(tree, "public-keys/") == "0=alice\n1=bob"
    assert get(tree, "public-keys/1/") == "openssh-key"
    assert get(tree, "public-keys/1/openssh-key") == KEY + "2"
    assert tree["public-keys"]["0=alice"] == {"openssh-key": KEY}


def test_imds_unknown_paths_answer_none() -> None:
    tree = ec2_metadata_tree(**INSTANCE)
    assert get(tree, "no-such-thing") is None
    assert get(tree, "instance-id/deeper") is None
    assert get(tree, "public-keys/7/openssh-key") is None


def test_imds_leaves_out_absent_public_ip_and_keys() -> None:
    tree = ec2_metadata_tree(**{**INSTANCE, "public_ipv4": None, "public_keys": None})
    assert get(tree, "public-ipv4") is None
    assert get(tree, "public-keys/") is None
    assert "public-keys/" not in get(tree, "").splitlines()
