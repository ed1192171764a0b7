"""Security groups enforced on the VMs' ports: one libvirt nwfilter per instance, kept current.

An instance's filter holds the anti-spoofing filter and the rules of every group it belongs to; a
rule naming a source group becomes one rule per address of that group's members. Whenever rules
or membership change, ``refresh_farm`` redefines the filters of the farm's instances on their
hosts, and libvirt applies them to the running ports at once.
"""
from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.orm import Session

from drivers.network.nwfilter import FilterRule, render_filter
from ivfarm.errors import IvfarmError
from ivfarm.services.network.addressing import router_ip
from ivfarm.services.runtime.context import CloudContext
from ivfarm.store.models import Farm, Host, Instance, InstanceGroup, SecurityGroupRule
from ivfarm.store.states import InstanceState as S

log = logging.getLogger(__name__)
ANTI_SPOOFING_FILTER = "clean-traffic"
DEFINED = (S.PENDING, S.RUNNING, S.STOPPING, S.STOPPED, S.REBOOTING)  # states whose domain may exist


def filter_name(cloud: CloudContext, instance_id: str) -> str:
    """The nwfilter of an instance's private port."""
    return f"{cloud.cloud_id}-{instance_id}"


def _rules(session: Session, instance: Instance, members: dict[str, list[str]]) -> list[FilterRule]:
    groups = select(InstanceGroup.group_id).where(InstanceGroup.instance_id == instance.id)
    found: dict[FilterRule, None] = {}
    for rule in session.scalars(select(SecurityGroupRule).where(SecurityGroupRule.group_id.in_(groups))
                                .order_by(SecurityGroupRule.id)):
        peers = [rule.cidr] if rule.cidr else [f"{ip}/32" for ip in members.get(str(rule.source_group_id), [])]
        for peer in peers:
            found[FilterRule("out" if rule.egress else "in", rule.protocol, rule.from_port, rule.to_port, peer)] = None
    return list(found)


def _members(session: Session, farm_id: int) -> dict[str, list[str]]:
    """``{group id: private IPs of its live members}``."""
    query = (select(InstanceGroup.group_id, Instance.ip).join(Instance, Instance.id == InstanceGroup.instance_id)
             .where(Instance.farm_id == farm_id, Instance.state.in_(DEFINED), Instance.ip.is_not(None)))
    members: dict[str, list[str]] = {}
    for group_id, ip in session.execute(query):
        members.setdefault(group_id, []).append(str(ip))
    return members


def _filters(cloud: CloudContext, session: Session, farm: Farm, only: str | None = None) -> list[tuple[str, str]]:
    """(host URI, filter XML) for the farm's instances placed on hosts with nwfilter (or just ``only``)."""
    members = _members(session, farm.id)
    query = (select(Instance, Host.uri).join(Host, Host.id == Instance.host_id)
             .where(Instance.farm_id == farm.id, Instance.state.in_(DEFINED), Instance.ip.is_not(None)))
    if only is not None:
        query = query.where(Instance.id == only)
    gateway = router_ip(farm.cidr)
    return [(uri, render_filter(filter_name(cloud, instance.id), ANTI_SPOOFING_FILTER, gateway,
                                _rules(session, instance, members)))
            for instance, uri in session.execute(query) if cloud.hypervisor.features(uri).nwfilter]


def instance_rules(cloud: CloudContext, instance_id: str) -> list[FilterRule]:
    """The new traffic an instance's groups allow (what its filter holds beside the fixed rules)."""
    with cloud.store.read() as session:
        instance = session.get(Instance, instance_id)
        if instance is None or instance.farm_id is None:
            return []
        return _rules(session, instance, _members(session, instance.farm_id))


def define(cloud: CloudContext, farm_id: int, instance_id: str) -> None:
    """Define one instance's filter on its host (before its domain is defined there)."""
    with cloud.store.read() as session:
        farm = session.get(Farm, farm_id)
        filters = _filters(cloud, session, farm, instance_id) if farm is not None else []
    for uri, xml in filters:
        cloud.hypervisor.define_filter(uri, xml)


def refresh_farm(cloud: CloudContext, farm_id: int) -> None:
    """Redefine the filters of every instance of the farm; a host that fails is logged and skipped."""
    with cloud.store.read() as session:
        farm = session.get(Farm, farm_id)
        filters = _filters(cloud, session, farm) if farm is not None else []
    for uri, xml in filters:
        try:
            cloud.hypervisor.define_filter(uri, xml)
        except IvfarmError as exc:  # reconcile or the next change brings it up to date
            log.warning("security groups of farm %s not updated on %s: %s", farm_id, uri, exc)


def remove(cloud: CloudContext, uri: str, instance_id: str) -> None:
    """Drop an instance's filter from a host once its domain is gone."""
    if cloud.hypervisor.features(uri).nwfilter:
        cloud.hypervisor.undefine_filter(uri, filter_name(cloud, instance_id))
