"""Errors raised by ivfarm's library code; only ``ivfarm.cli`` and ``ivfarm.ec2`` turn them into output."""
from __future__ import annotations


class IvfarmError(Exception):
    """Base of every error ivfarm reports to a user."""

    exit_code = 1


class ConfigError(IvfarmError):
    """The configuration file or a key in it is wrong."""


class NotFound(IvfarmError):
    """A named resource does not exist (or is not visible to the caller)."""

    def __init__(self, kind: str, ident: str) -> None:
        super().__init__(f"{kind} {ident!r} not found")
        self.kind = kind
        self.ident = ident


class AlreadyExists(IvfarmError):
    """A resource with that name or id already exists."""


class InvalidInput(IvfarmError):
    """A parameter is malformed or out of range."""


class InUse(IvfarmError):
    """The resource cannot be removed or changed while something uses it."""


class InvalidState(IvfarmError):
    """The operation is not allowed in the resource's current state."""


class TransitionLost(InvalidState):
    """A state change lost a race: the instance was found in ``found``, which is left as it is."""

    def __init__(self, instance_id: str, found: str, wanted: str) -> None:
        super().__init__(f"instance {instance_id} is {found}; it cannot become {wanted}")
        self.instance_id = instance_id
        self.found = str(found)
        self.wanted = str(wanted)


class Unavailable(IvfarmError):
    """The resource exists but cannot be used or changed by the caller now (an image being made, failed,
    deregistered, or another farm's)."""

    def __init__(self, kind: str, ident: str, why: str) -> None:
        super().__init__(f"{kind} {ident!r} {why}")
        self.kind = kind
        self.ident = ident


class NotPermitted(IvfarmError):
    """The operation is switched off for this resource (DisableApiTermination) or reserved to the sysadmin."""


class NoValidHost(IvfarmError):
    """No enabled host of the right class has room for the request."""


class QuotaExceeded(IvfarmError):
    """The farm's quota does not allow the request."""

    def __init__(self, resource: str, limit: int, used: int, requested: int) -> None:
        super().__init__(
            f"quota exceeded for {resource}: limit {limit}, in use {used}, requested {requested}"
        )
        self.resource = resource
        self.limit = limit
        self.used = used
        self.requested = requested


class PoolExhausted(IvfarmError):
    """An address, network or VLAN pool has nothing left to hand out."""


class HypervisorError(IvfarmError):
    """libvirt refused or failed an operation on a host."""


class HostUnreachable(HypervisorError):
    """A hypervisor URI cannot be opened."""


class NetworkError(IvfarmError):
    """A bridge, namespace, filter or router operation failed."""


class StoreNotInitialised(IvfarmError):
    """The state store has not been created yet (run ``ivfarm init``)."""


class LockHeld(IvfarmError):
    """Another run of a cron job holds its lock."""

    exit_code = 2


class SchemaMismatch(IvfarmError):
    """The state store's schema is not one this ivfarm can upgrade (foreign tables, or a newer ivfarm's)."""
