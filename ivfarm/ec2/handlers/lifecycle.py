"""StartInstances, StopInstances, RebootInstances, TerminateInstances and GetConsoleOutput.

Every id is checked (exists, belongs to the farm, is in a state the action accepts) before any
instance is touched.
"""
from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any

from ivfarm import ids
from ivfarm.ec2.context import RequestContext
from ivfarm.ec2.errors import Ec2Error, from_ivfarm, malformed
from ivfarm.ec2.handlers.common import farm_row, id_list, visible_seconds
from ivfarm.ec2.params import Params
from ivfarm.ec2.queries import require_instances
from ivfarm.ec2.registry import action
from ivfarm.ec2.views.common import ec2_state
from ivfarm.ec2.views.instances import state_change
from ivfarm.errors import QuotaExceeded
from ivfarm.services.compute import instances, provisioning
from ivfarm.services.tenancy import quotas
from ivfarm.store.models import utcnow


def _rows(ctx: RequestContext, instance_ids: Sequence[str]) -> list[Any]:
    with ctx.cloud.store.read() as session:
        return require_instances(session, ctx.farm_id, visible_seconds(ctx), instance_ids)


def _states(ctx: RequestContext, instance_ids: Sequence[str]) -> dict[str, str]:
    return {row.id: row.state for row in _rows(ctx, instance_ids)}


def _refuse(row: Any, verb: str) -> Ec2Error:
    return Ec2Error("IncorrectInstanceState",
                    f"The instance '{row.id}' is not in a state from which it can be {verb}.")


def _check_start_quota(ctx: RequestContext, to_start: Sequence[Any]) -> None:
    """The whole batch must fit the farm's quota (each start checks again atomically)."""
    if not to_start:
        return
    with ctx.cloud.store.read() as session:
        used, limit = quotas.usage(session, ctx.farm_id), quotas.limits(farm_row(session, ctx))
    wanted = {"instances": len(to_start), "vcpus": sum(r.vcpus for r in to_start),
              "memory_mb": sum(r.memory_mb for r in to_start)}
    for resource, amount in wanted.items():
        if getattr(used, resource) + amount > getattr(limit, resource):
            raise from_ivfarm(QuotaExceeded(resource, getattr(limit, resource), getattr(used, resource), amount))


@action("StartInstances")
def start_instances(ctx: RequestContext, p: Params) -> dict[str, Any]:
    """Start stopped instances (running or pending ones are left as they are)."""
    instance_ids = id_list(p, "InstanceId", required=True)
    p.string("AdditionalInfo", max_length=1024)
    p.done()
    rows = _rows(ctx, instance_ids)
    for row in rows:
        if ec2_state(row.state) not in ("stopped", "running", "pending"):
            raise _refuse(row, "started")
    _check_start_quota(ctx, [row for row in rows if row.state == "stopped"])
    ctx.proceed()
    for row in rows:
        if row.state == "stopped":
            instances.begin_start(ctx.cloud, row.id, farm_id=ctx.farm_id, queue=True)
    now = _states(ctx, [row.id for row in rows])
    return {"instancesSet": [state_change(row.id, row.state, now[row.id]) for row in rows]}


@action("StopInstances")
def stop_instances(ctx: RequestContext, p: Params) -> dict[str, Any]:
    """Mark running instances stopping and shut them down in the background."""
    instance_ids = id_list(p, "InstanceId", required=True)
    force = p.boolean("Force")
    p.boolean("SkipOsShutdown")
    if p.boolean("Hibernate"):
        raise Ec2Error("UnsupportedOperation", "Hibernation is not supported by this cloud.")
    p.done()
    rows = _rows(ctx, instance_ids)
    for row in rows:
        if ec2_state(row.state) not in ("running", "stopping", "stopped"):
            raise _refuse(row, "stopped")
    ctx.proceed()
    to_stop = [row.id for row in rows if ec2_state(row.state) == "running"]
    for instance_id in to_stop:
        instances.begin_stop(ctx.cloud, instance_id, farm_id=ctx.farm_id, force=force)
    changes = [state_change(row.id, row.state, "stopping" if row.id in to_stop else row.state) for row in rows]
    return {"instancesSet": changes}


@action("RebootInstances")
def reboot_instances(ctx: RequestContext, p: Params) -> dict[str, Any]:
    """Reboot running instances."""
    instance_ids = id_list(p, "InstanceId", required=True)
    p.done()
    rows = _rows(ctx, instance_ids)
    for row in rows:
        if ec2_state(row.state) != "running":
            raise _refuse(row, "rebooted")
    ctx.proceed()
    for row in rows:
        instances.begin_reboot(ctx.cloud, row.id, farm_id=ctx.farm_id, queue=True)
    return {"return": True}


@action("TerminateInstances")
def terminate_instances(ctx: RequestContext, p: Params) -> dict[str, Any]:
    """Mark instances shutting-down and tear them down in the background."""
    instance_ids = id_list(p, "InstanceId", required=True)
    p.boolean("Force")
    p.boolean("SkipOsShutdown")
    p.done()
    rows = _rows(ctx, instance_ids)
    for row in rows:
        if row.disable_api_termination and row.state != "terminated":
            raise Ec2Error("OperationNotPermitted", f"The instance '{row.id}' may not be terminated. Modify its "
                           "'disableApiTermination' instance attribute and try again.")
    ctx.proceed()
    changes = []
    for row in rows:
        previous = provisioning.begin_terminate(ctx.cloud, row.id, farm_id=ctx.farm_id, queue=True)
        if previous == "terminated":
            changes.append(state_change(row.id, previous, "terminated"))
            continue
        changes.append(state_change(row.id, previous, "shutting-down"))
    return {"instancesSet": changes}


@action("GetConsoleOutput")
def get_console_output(ctx: RequestContext, p: Params) -> dict[str, Any]:
    """The last 64 KiB of the instance's serial console log, base64."""
    instance_id = p.single("InstanceId", max_length=64)
    p.boolean("Latest")
    p.done()
    if not ids.is_valid(instance_id, "instance"):
        raise malformed("instance", instance_id)
    _rows(ctx, [instance_id])
    ctx.proceed()
    output = instances.console_output(ctx.cloud, instance_id, farm_id=ctx.farm_id)
    return {"instanceId": instance_id, "timestamp": utcnow(),
            "output": base64.b64encode(output).decode() if output else None}
