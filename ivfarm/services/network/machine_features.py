"""WLCG Machine/Job Features (HSF-TN-2016-02) of an instance, as its farm router serves them.

Each VM is one machine with one job slot: machine features come from its host's HS06 rating per
core and its vCPUs, job features from its flavor (vCPUs, memory, disk) and the site's limits
(``mjf.*``); ``shutdowntime`` from a graceful drain of its host or of the VM itself. A key with
no value is left out (the router answers 404 for it).
"""
from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from ivfarm.services.runtime.context import CloudContext
from ivfarm.store.models import Drain, Host, Instance
from vrouter.imds import METADATA_IP

MIB = 1024**2
GIB = 1024**3


def feature_urls() -> dict[str, str]:
    """The two base URLs (``$MACHINEFEATURES``, ``$JOBFEATURES``) every VM of a metadata-serving router reads."""
    return {"machinefeatures": f"http://{METADATA_IP}/machinefeatures",
            "jobfeatures": f"http://{METADATA_IP}/jobfeatures"}


def active_drains(session: Session) -> tuple[dict[int, Drain], dict[str, Drain]]:
    """The drains in force, by host id and by instance id (the earliest deadline when several apply)."""
    by_host: dict[int, Drain] = {}
    by_instance: dict[str, Drain] = {}
    for drain in session.scalars(select(Drain).where(Drain.state == "active").order_by(Drain.deadline.desc())):
        if drain.host_id is not None:
            by_host[drain.host_id] = drain
        if drain.instance_id is not None:
            by_instance[drain.instance_id] = drain
    return by_host, by_instance


def drain_for(instance: Instance, drains: tuple[dict[int, Drain], dict[str, Drain]]) -> Drain | None:
    """The drain that ends this instance first, if any."""
    candidates = [d for d in (drains[0].get(instance.host_id or 0), drains[1].get(instance.id)) if d is not None]
    return min(candidates, key=lambda d: d.deadline) if candidates else None


def _epoch(when: dt.datetime) -> int:
    return int(when.timestamp())


def _number(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".")


def features(cloud: CloudContext, instance: Instance, host: Host | None, drain: Drain | None) -> dict[str, dict[str, str]]:
    """``{"machinefeatures": {key: value}, "jobfeatures": {key: value}}`` for one instance."""
    wall = cloud.config.get("mjf.wall_limit_s")
    grace = drain.grace_s if drain is not None else cloud.config.get("mjf.grace_s")
    machine: dict[str, str] = {"jobslots": "1", "phys_cores": str(instance.vcpus), "log_cores": str(instance.vcpus),
                               "total_cpu": str(instance.vcpus)}
    if host is not None and host.hs06_per_core is not None:
        machine["hs06"] = _number(host.hs06_per_core * instance.vcpus)
    if drain is not None:
        machine["shutdowntime"] = str(_epoch(drain.deadline))
    if grace is not None:
        machine["grace_secs"] = str(int(grace))
    job: dict[str, str] = {"allocated_cpu": str(instance.vcpus), "max_rss_bytes": str(instance.memory_mb * MIB),
                           "max_swap_bytes": "0", "scratch_limit_bytes": str(instance.disk_gb * GIB)}
    ends = [_epoch(drain.deadline)] if drain is not None else []
    if wall is not None:
        job["wall_limit_secs"] = str(int(wall))
        job["cpu_limit_secs"] = str(int(wall) * instance.vcpus)
    if instance.launched_at is not None:
        job["jobstart_secs"] = str(_epoch(instance.launched_at))
        if wall is not None:
            ends.append(_epoch(instance.launched_at) + int(wall))
    if ends:
        job["shutdowntime_job"] = str(min(ends))
    return {"machinefeatures": machine, "jobfeatures": job}
