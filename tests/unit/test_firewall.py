"""What a VM port's filter allows, from the store: groups, source groups as member addresses, the XML."""
from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable

from drivers.network.nwfilter import FilterRule, render_filter
from ivfarm.cloud import Cloud
from ivfarm.services.compute import hosts, instances, provisioning
from ivfarm.services.compute.instances import LaunchRequest
from ivfarm.services.farms import lifecycle
from ivfarm.services.farms.lifecycle import FarmRequest
from ivfarm.services.network.firewall import instance_rules
from ivfarm.services.tenancy import security_groups
from ivfarm.services.tenancy.security_groups import GroupRef, Permission


def test_rules_follow_groups_and_members(cloud: Cloud, fake_host: Callable[..., str], base_image) -> None:  # type: ignore[no-untyped-def]
    hosts.add_host(cloud, "w", fake_host("w"), "worker")
    farm = lifecycle.create_farm(cloud, FarmRequest(name="lab"))
    other = lifecycle.create_farm(cloud, FarmRequest(name="other"))
    web = security_groups.create_group(cloud, farm.id, "web", "web")
    [a] = instances.launch(cloud, LaunchRequest(image="base", flavor="m1.small", farm_id=farm.id))
    [b] = instances.launch(cloud, LaunchRequest(image="base", flavor="m1.small", farm_id=farm.id))
    [w] = instances.launch(cloud, LaunchRequest(image="base", flavor="m1.small", farm_id=farm.id, group_ids=[web.id]))
    [stranger] = instances.launch(cloud, LaunchRequest(image="base", flavor="m1.small", farm_id=other.id))
    out_all = FilterRule("out", "-1", -1, -1, "0.0.0.0/0")
    # default: everything from its members (the other farm's VM is no member), all outbound
    assert set(instance_rules(cloud, a.id)) == {FilterRule("in", "-1", -1, -1, f"{ip}/32") for ip in (a.ip, b.ip)} | {
        out_all}
    assert instance_rules(cloud, w.id) == [out_all]  # a new group lets nothing in
    security_groups.authorize(cloud, farm.id, GroupRef(name="web"), False, [
        Permission("tcp", 80, 80, cidr="0.0.0.0/0"), Permission("icmp", 8, -1, source=GroupRef(name="default"))])
    assert set(instance_rules(cloud, w.id)) == {out_all, FilterRule("in", "tcp", 80, 80, "0.0.0.0/0"),
                                                 FilterRule("in", "icmp", 8, -1, f"{a.ip}/32"),
                                                 FilterRule("in", "icmp", 8, -1, f"{b.ip}/32")}
    provisioning.terminate(cloud, b.id)  # its address leaves the group
    assert FilterRule("in", "icmp", 8, -1, f"{b.ip}/32") not in instance_rules(cloud, w.id)
    security_groups.replace_groups(cloud, farm.id, a.id, [web.id])
    assert FilterRule("in", "-1", -1, -1, f"{a.ip}/32") not in instance_rules(cloud, a.id)
    assert stranger.ip not in str(instance_rules(cloud, a.id))


def test_the_filter_is_stateful_and_keeps_anti_spoofing() -> None:
    xml = render_filter("c-i-1", "clean-traffic", "10.0.0.1", [FilterRule("in", "tcp", 80, 90, "192.168.0.0/16"),
                                                             FilterRule("out", "icmp", 8, -1, "0.0.0.0/0")])
    root = ET.fromstring(xml)
    assert root.get("name") == "c-i-1" and root.find("filterref").get("filter") == "clean-traffic"  # type: ignore[union-attr]
    rules = [(r.get("action"), r.get("direction"), child.tag, child.attrib) for r in root.iter("rule") for child in r]
    assert rules[0] == ("accept", "inout", "all", {"state": "ESTABLISHED,RELATED"})
    assert ("accept", "in", "tcp", {"srcipaddr": "192.168.0.0", "srcipmask": "16", "dstportstart": "80",
                                    "dstportend": "90", "state": "NEW"}) in rules
    assert ("accept", "out", "icmp", {"dstipaddr": "0.0.0.0", "dstipmask": "0", "type": "8", "state": "NEW"}) in rules
    assert rules[-1] == ("drop", "inout", "all", {})
