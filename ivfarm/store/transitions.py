"""Compare-and-set of an instance's state, by the table of ``ivfarm.store.states``."""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.util import identity_key

from ivfarm.errors import NotFound, TransitionLost
from ivfarm.store.models import Address, Instance, utcnow
from ivfarm.store.states import IN_FLIGHT, InstanceState, sources

S = InstanceState


def compare_and_set(session: Session, instance_id: str, new: str, *, expect: Iterable[str] | None = None,
                    reason: str | None = None, owner: str | None = None,
                    values: Mapping[str, Any] | None = None, guard: Iterable[Any] = ()) -> InstanceState:
    """Move the instance to ``new`` if its state is one of ``expect`` (default: any state the table
    allows ``new`` from); returns the state it left. Raises ``TransitionLost`` (naming the state
    found) when it is in none of them, ``NotFound`` when it does not exist.

    Side effects of the new state are written by the same statement: ``owner`` and a fresh
    ``heartbeat_at`` for work in flight (``owner`` is then required), ``launched_at`` the first
    time it runs, ``terminated_at`` and the private address given back (elastic IPs disassociated
    too) when terminated. ``values`` are further columns to set; ``guard`` further conditions the
    row must still meet (e.g. the owner and heartbeat a caller judged stale).
    """
    target = S(new)  # the compare: the state read must be allowed, and still be there when written
    possible = set(sources(target))
    wanted = sorted(possible if expect is None else {S(e) for e in expect} & possible)
    row = session.scalar(select(Instance.state).where(Instance.id == instance_id))
    if row is None:
        raise NotFound("instance", instance_id)
    found = S(row)
    if found not in wanted:
        raise TransitionLost(instance_id, found, target)
    now = utcnow()
    columns: dict[str, Any] = {"state": target.value, **(values or {})}
    if reason is not None:
        columns["state_reason"] = reason
    if target in IN_FLIGHT:
        if owner is None:
            raise ValueError(f"a transition to {target} needs the owning process")
        columns.update(owner=owner, heartbeat_at=now)
    if target is S.RUNNING:
        columns["launched_at"] = func.coalesce(Instance.launched_at, now)
    if target is S.TERMINATED:
        columns.update(terminated_at=now, ip=None, mac=None)
    done = session.execute(
        update(Instance).where(Instance.id == instance_id, Instance.state == found.value, *guard)
        .values(**columns).execution_options(synchronize_session=False))
    if done.rowcount != 1:  # type: ignore[attr-defined]
        current = session.scalar(select(Instance.state).where(Instance.id == instance_id))
        raise TransitionLost(instance_id, S(current) if current else found, target)
    if target is S.TERMINATED:  # as on EC2, a terminated instance gives its addresses back
        session.execute(update(Address).where(Address.instance_id == instance_id)
                        .values(instance_id=None, association_id=None).execution_options(synchronize_session=False))
    cached = session.identity_map.get(identity_key(Instance, instance_id))
    if cached is not None:
        session.refresh(cached)
    return found

