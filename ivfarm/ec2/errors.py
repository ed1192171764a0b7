"""EC2 error responses: an AWS error code, a message and the HTTP status that goes with it."""
from __future__ import annotations

from collections.abc import Sequence

from ivfarm.errors import (
    InUse,
    InvalidInput,
    InvalidState,
    IvfarmError,
    NotFound,
    NotPermitted,
    NoValidHost,
    PoolExhausted,
    QuotaExceeded,
    Unavailable,
)

MAX_ECHO = 80  # longest piece of client input repeated in a message


class Ec2Error(Exception):
    """An error the client sees as ``<Error><Code/><Message/></Error>`` with ``status``."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status


def echo(value: object) -> str:
    """Client input shortened for a message."""
    text = str(value)
    return text if len(text) <= MAX_ECHO else text[:MAX_ECHO] + "..."


def auth_failure() -> Ec2Error:
    """The one answer to every authentication problem (no hint which part was wrong)."""
    return Ec2Error("AuthFailure", "AWS was not able to validate the provided access credentials", 401)


def request_expired() -> Ec2Error:
    """A request time (or SigV2 ``Expires``) outside the 15 minutes allowed around ours."""
    return Ec2Error("RequestExpired", "Request has expired.", 400)


def invalid_value(name: str, value: object, why: str = "") -> Ec2Error:
    """InvalidParameterValue for parameter ``name``."""
    suffix = f": {why}" if why else ""
    return Ec2Error("InvalidParameterValue", f"Value ({echo(value)}) for parameter {name} is invalid{suffix}")


def missing(name: str) -> Ec2Error:
    """MissingParameter for a required parameter."""
    return Ec2Error("MissingParameter", f"The request must contain the parameter {name}")


def combination(message: str) -> Ec2Error:
    """InvalidParameterCombination."""
    return Ec2Error("InvalidParameterCombination", message)


def dry_run_ok() -> Ec2Error:
    """What a request with DryRun=true answers when it would have succeeded."""
    return Ec2Error("DryRunOperation", "Request would have succeeded, but DryRun flag is set.", 412)


def unavailable() -> Ec2Error:
    """The state store cannot be reached (e.g. PostgreSQL restarting): AWS's answer that clients retry."""
    return Ec2Error("Unavailable", "The service is unavailable. Please try again shortly.", 503)


def internal() -> Ec2Error:
    """A failure on our side (details go to the log, not to the client)."""
    return Ec2Error("InternalError", "An internal error has occurred", 500)


# Resource kinds: (NotFound code, Malformed code, how the message names one id).
_KINDS = {
    "instance": ("InvalidInstanceID.NotFound", "InvalidInstanceID.Malformed", "The instance ID"),
    "image": ("InvalidAMIID.NotFound", "InvalidAMIID.Malformed", "The image id"),
    "keypair": ("InvalidKeyPair.NotFound", "InvalidKeyPair.Malformed", "The key pair"),
    "allocation": ("InvalidAllocationID.NotFound", "InvalidAllocationID.Malformed", "The allocation ID"),
    "association": ("InvalidAssociationID.NotFound", "InvalidAssociationID.Malformed", "The association ID"),
    "address": ("InvalidAddress.NotFound", "InvalidAddress.Malformed", "The address"),
    "security_group": ("InvalidGroup.NotFound", "InvalidGroupId.Malformed", "The security group"),
    "security_group_rule": ("InvalidSecurityGroupRuleId.NotFound", "InvalidSecurityGroupRuleId.Malformed",
                            "The security group rule"),
    "volume": ("InvalidVolume.NotFound", "InvalidVolume.Malformed", "The volume"),
    "snapshot": ("InvalidSnapshot.NotFound", "InvalidSnapshot.Malformed", "The snapshot"),
    "placement_group": ("InvalidPlacementGroup.Unknown", "InvalidPlacementGroupId.Malformed", "The Placement Group"),
}


def not_found(kind: str, idents: Sequence[str]) -> Ec2Error:
    """``<Kind>.NotFound`` naming the ids; the same whether an id is absent or another farm's."""
    code, _, label = _KINDS[kind]
    shown = ", ".join(echo(i) for i in idents)
    if len(idents) == 1:
        return Ec2Error(code, f"{label} '{shown}' does not exist")
    return Ec2Error(code, f"{label}s '{shown}' do not exist")


def malformed(kind: str, ident: str) -> Ec2Error:
    """``<Kind>.Malformed`` for an id that cannot be one."""
    code = _KINDS[kind][1]
    return Ec2Error(code, f'Invalid id: "{echo(ident)}"')


def from_ivfarm(exc: IvfarmError) -> Ec2Error:
    """The EC2 error for a service error no handler translated itself."""
    if isinstance(exc, NotFound) and exc.kind in _KINDS:
        return not_found(exc.kind, [exc.ident])
    if isinstance(exc, Unavailable) and exc.kind == "image":
        return Ec2Error("InvalidAMIID.Unavailable", f"The image id '[{echo(exc.ident)}]' is not available: {exc}")
    if isinstance(exc, NotPermitted):
        return Ec2Error("OperationNotPermitted", str(exc))
    if isinstance(exc, QuotaExceeded):
        if exc.resource == "addresses":
            return Ec2Error("AddressLimitExceeded", "The maximum number of addresses has been reached.")
        if exc.resource in ("volumes", "volume_gb"):
            return Ec2Error("VolumeLimitExceeded", f"You have exceeded your maximum {exc.resource.replace('_', ' ')} "
                            f"limit ({exc.limit}); {exc.used} in use, {exc.requested} requested.")
        return Ec2Error(
            "InstanceLimitExceeded",
            f"Your quota allows for {max(0, exc.limit - exc.used)} more {exc.resource.replace('_', ' ')} "
            f"and you requested {exc.requested}.",
        )
    if isinstance(exc, NoValidHost):
        return Ec2Error("InsufficientInstanceCapacity",
                        "There is not enough capacity to fulfill your request.", 500)
    if isinstance(exc, PoolExhausted):
        return Ec2Error("InsufficientAddressCapacity", "There are not enough free addresses to fulfill your request.", 500)
    if isinstance(exc, InvalidState):
        return Ec2Error("IncorrectInstanceState", str(exc))
    if isinstance(exc, InUse):
        return Ec2Error("InvalidIPAddress.InUse", str(exc))
    if isinstance(exc, InvalidInput):
        return Ec2Error("InvalidParameterValue", str(exc))
    return internal()
