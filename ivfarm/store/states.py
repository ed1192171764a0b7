"""The instance state machine: the states and the one table of allowed transitions.

States follow EC2; ``*`` marks work in flight, owned by a process (``Instance.owner``) that
renews ``Instance.heartbeat_at`` while it works::

    launch --> pending* --built/started--> running --stop--> stopping* --shut down--> stopped
                 ^  |                       |  ^                                          |
                 |  +--failed--> terminated |  +-- back up -- rebooting* <--+             |
                 |                          +-------------- reboot ---------+             |
                 +------------------------------------- start -----------------------------+

    any state but terminated --terminate--> shutting-down* --torn down--> terminated

    repairs: died or host failed --> stopped; found running (reconcile, migration) --> running;
             host failed: restarted or rebuilt elsewhere --> pending*

The table ``TRANSITIONS`` is the whole truth; the diagram only sketches it. Every non-terminal
state may also go to itself (a new owner claims the work, or a new reason is recorded);
``terminated`` is final.

Every change is a compare-and-set (``ivfarm.store.transitions.compare_and_set``): ``UPDATE instances SET state=:new ...
WHERE id=:id AND state IN (:allowed)`` inside the caller's transaction; when no row matches, the
transition lost a race and ``TransitionLost`` names the state found, which is left as it is.
"""
from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum


class InstanceState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"
    REBOOTING = "rebooting"
    SHUTTING_DOWN = "shutting-down"
    TERMINATED = "terminated"


S = InstanceState

# from -> the states it may go to (self-transitions are added below for every non-terminal state)
_MOVES: dict[InstanceState, frozenset[InstanceState]] = {
    # built or started; failed to start (or its host failed); terminated by the user; provisioning failed
    S.PENDING: frozenset({S.RUNNING, S.STOPPED, S.SHUTTING_DOWN, S.TERMINATED}),
    # stop, reboot; died or its host failed; terminate; restarted or rebuilt elsewhere after a host failure
    S.RUNNING: frozenset({S.STOPPING, S.REBOOTING, S.STOPPED, S.SHUTTING_DOWN, S.PENDING}),
    # shut down; found running (reconcile, a migration put back); terminate
    S.STOPPING: frozenset({S.STOPPED, S.RUNNING, S.SHUTTING_DOWN}),
    # start (or restart elsewhere); found running (reconcile, cold migration done); terminate
    S.STOPPED: frozenset({S.PENDING, S.RUNNING, S.SHUTTING_DOWN}),
    # back up; stopped or died meanwhile; terminate; restarted elsewhere after a host failure
    S.REBOOTING: frozenset({S.RUNNING, S.STOPPING, S.STOPPED, S.SHUTTING_DOWN, S.PENDING}),
    # torn down (or gone with its fenced host)
    S.SHUTTING_DOWN: frozenset({S.TERMINATED}),
    S.TERMINATED: frozenset(),
}

TRANSITIONS: Mapping[InstanceState, frozenset[InstanceState]] = {
    state: moves | ({state} if state is not S.TERMINATED else frozenset()) for state, moves in _MOVES.items()
}

# Work in flight: the owner renews its heartbeat; reconcile leaves it alone while that is fresh.
IN_FLIGHT: tuple[str, ...] = (S.PENDING, S.STOPPING, S.REBOOTING, S.SHUTTING_DOWN)
# Instance states that hold a host's CPU and memory; stopped instances keep only their disk.
ACTIVE_STATES: tuple[str, ...] = (S.PENDING, S.RUNNING, S.STOPPING, S.REBOOTING)
# States that count against a farm's quota (every instance that still exists).
LIVE_STATES: tuple[str, ...] = (S.PENDING, S.RUNNING, S.STOPPING, S.STOPPED, S.REBOOTING, S.SHUTTING_DOWN)


def allowed(current: str, new: str) -> bool:
    """True when the table lets an instance go from ``current`` to ``new``."""
    return S(new) in TRANSITIONS[S(current)]


def sources(new: str) -> tuple[InstanceState, ...]:
    """Every state from which ``new`` may be reached, in table order."""
    return tuple(state for state, moves in TRANSITIONS.items() if S(new) in moves)

