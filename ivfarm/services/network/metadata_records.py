"""What the farm router's metadata service answers each VM: one record per private IP, from the store."""
from __future__ import annotations

import base64

from sqlalchemy import select
from sqlalchemy.orm import Session

from contextualization.metadata import ec2_metadata_tree
from ivfarm.services.network.machine_features import active_drains, drain_for, feature_urls, features
from ivfarm.services.runtime.context import CloudContext
from ivfarm.store.models import LIVE_STATES, Farm, Host, Instance, InstanceGroup, KeyPair, SecurityGroup
from vrouter.spec import RouterSpec


def metadata_records(cloud: CloudContext, session: Session, farm: Farm, spec: RouterSpec) -> dict[str, dict]:
    """Private IP -> ``{"meta-data": EC2 tree, "user-data": base64 or None, "options": its metadata
    options, "features": its Machine/Job Features}`` for every VM that
    holds a lease in the router spec (so both always agree on who is in the farm).

    The hostname is the lease's (the name the VM also gets over DHCP); ``public-ipv4`` is the
    farm's elastic IP while it is bound to that VM and absent otherwise, as on EC2, where only
    instances with a public address have one (a VM leaving through the router's SNAT has none).
    """
    hostnames = {lease.ip: lease.hostname for lease in spec.leases}
    keys = {pair.name: pair.public_key for pair in session.scalars(select(KeyPair).where(KeyPair.farm_id == farm.id))}
    groups: dict[str, list[str]] = {}
    for instance_id, name in session.execute(
            select(InstanceGroup.instance_id, SecurityGroup.name).join(SecurityGroup, SecurityGroup.id == InstanceGroup.group_id)
            .where(SecurityGroup.farm_id == farm.id).order_by(InstanceGroup.position)):
        groups.setdefault(instance_id, []).append(name)
    hosts = {host.id: host for host in session.scalars(select(Host))}
    drains = active_drains(session)
    records: dict[str, dict] = {}
    for instance in session.scalars(select(Instance).where(
        Instance.farm_id == farm.id, Instance.state.in_(LIVE_STATES), Instance.ip.in_(list(hostnames))
    )):
        ip = str(instance.ip)
        bound = spec.eip_bound and spec.elastic_target == ip
        tree = ec2_metadata_tree(
            instance_id=instance.id,
            hostname=hostnames[ip] or instance.id,
            local_ipv4=ip,
            public_ipv4=spec.elastic_ip if bound else None,
            public_keys={name: key for name, key in keys.items() if name == instance.key_name},
            instance_type=instance.flavor_name,
            ami_id=instance.image_id,
            reservation_id=instance.reservation_id,
            availability_zone=cloud.config.zone_for(instance.host_class),
            mac=str(instance.mac),
            security_groups=tuple(groups.get(instance.id, ())),
        )
        tree.update(feature_urls())
        user_data = base64.b64encode(instance.user_data).decode("ascii") if instance.user_data else None
        options = {"http-tokens": instance.metadata_http_tokens, "http-endpoint": instance.metadata_http_endpoint,
                   "hop-limit": instance.metadata_hop_limit}
        mjf = features(cloud, instance, hosts.get(instance.host_id or 0), drain_for(instance, drains))
        records[ip] = {"meta-data": tree, "user-data": user_data, "options": options, "features": mjf}
    return records
