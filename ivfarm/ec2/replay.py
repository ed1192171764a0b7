"""Refusing replayed requests: a mutating request's signature is accepted once while it is valid.

A signature stays valid until its request time plus the allowed skew (or its SigV2 ``Expires``),
so it is remembered that long. Signing times have one-second resolution, so a client that sends
the same request twice within a second (a loop of AllocateAddress, a ClientToken retry) sends the
same signature: repeats arriving within ``grace_s`` of the first sighting are that client's own
and pass; later ones are replays and are refused.

``ReplayGuard`` is the interface; ``MemoryReplayGuard`` keeps the signatures in this process only,
which is enough while ``ivfarm ec2 serve`` is one process. Several API processes behind one address
need a guard backed by a store they share in its place (a table keyed by farm and signature with
the first sighting and the expiry, for instance).
"""
from __future__ import annotations

import datetime as dt
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol

from ivfarm.ec2.limits import request_limit

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
