"""Refusing replayed requests: a mutating request's signature is accepted once while it is valid.

A signature stays valid until its request time plus the allowed skew (or its SigV2 ``Expires``),
so it is remembered that long. Signing times have one-second resolution, so a client that sends
the same request twice within a second (a loop of AllocateAddress, a ClientToken retry) sends the
same signature: repeats arriving within ``grace_s`` of the first sighting are that client's own
and pass; later ones are replays and are refused.

``ReplayGuard`` is the interface. ``MemoryReplayGuard`` keeps the signatures in this process only,
which is enough while ``ivfarm ec2 serve`` is one process on one controller; ``StoreReplayGuard``
keeps them in the store's ``request_signatures`` table, so a request is accepted once whichever API
worker or controller it reaches (``ec2.limits.replay_guard``; ``auto`` picks it for several workers
or a PostgreSQL store).
"""
from __future__ import annotations

import datetime as dt
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError

from ivfarm.ec2.limits import request_limit
from ivfarm.store.models import RequestSignature
from ivfarm.store.session import Store

READ_ONLY_PREFIXES = ("Describe", "Get", "List")


def mutating(action: str) -> bool:
    """True for actions that change something (anything but Describe*, Get*, List*)."""
    return not action.startswith(READ_ONLY_PREFIXES)


class ReplayGuard(Protocol):
    """Remembers signatures of mutating requests until they expire."""

    def admit(self, farm_id: int, signature: str, valid_until: dt.datetime) -> bool:
        """Record ``signature``; False for a replay. RequestLimitExceeded when the farm's share is
        full of signatures still valid (refused rather than forgetting one)."""
        ...


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class MemoryReplayGuard:
    """At most ``per_farm`` live signatures per farm, in this process's memory."""

    def __init__(self, per_farm: int, grace_s: float = 2.0, clock: Callable[[], dt.datetime] = _utcnow) -> None:
        self.per_farm = per_farm
        self.grace = dt.timedelta(seconds=grace_s)
        self._clock = clock
        self._seen: dict[int, OrderedDict[str, tuple[dt.datetime, dt.datetime]]] = {}
        self._lock = threading.Lock()

    def admit(self, farm_id: int, signature: str, valid_until: dt.datetime) -> bool:
        now = self._clock()
        with self._lock:
            seen = self._seen.setdefault(farm_id, OrderedDict())
            while seen and next(iter(seen.values()))[1] < now:  # nearly in expiry order: oldest first
                seen.popitem(last=False)
            if signature in seen:
                return now - seen[signature][0] <= self.grace
            if len(seen) >= self.per_farm:
                raise request_limit()
            seen[signature] = (now, valid_until)
            return True


class StoreReplayGuard:
    """At most ``per_farm`` live signatures per farm, in the store every API process shares."""

    def __init__(self, store: Store, per_farm: int, grace_s: float = 2.0,
                 clock: Callable[[], dt.datetime] = _utcnow) -> None:
        self.store = store
        self.per_farm = per_farm
        self.grace = dt.timedelta(seconds=grace_s)
        self._clock = clock

    def admit(self, farm_id: int, signature: str, valid_until: dt.datetime) -> bool:
        now = self._clock()
        try:
            with self.store.write() as session:
                session.execute(delete(RequestSignature).where(RequestSignature.farm_id == farm_id,
                                                               RequestSignature.valid_until < now))
                seen = session.get(RequestSignature, (farm_id, signature))
                if seen is not None:
                    return now - seen.first_seen <= self.grace
                live = session.scalar(select(func.count()).select_from(RequestSignature)
                                      .where(RequestSignature.farm_id == farm_id)) or 0
                if live >= self.per_farm:
                    raise request_limit()
                session.add(RequestSignature(farm_id=farm_id, signature=signature, first_seen=now,
                                             valid_until=valid_until))
            return True
        except IntegrityError:  # another process recorded it between our look and our insert
            with self.store.read() as session:
                seen = session.get(RequestSignature, (farm_id, signature))
            return seen is not None and now - seen.first_seen <= self.grace
