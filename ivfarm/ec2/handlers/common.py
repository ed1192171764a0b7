"""Parameter shapes several handlers share: tags, tag specifications, id lists, visibility."""
from __future__ import annotations

import datetime as dt

from sqlalchemy.orm import Session

from ivfarm.ec2.context import RequestContext
from ivfarm.ec2.errors import Ec2Error, auth_failure, echo, missing
from ivfarm.ec2.params import Params
from ivfarm.errors import InvalidInput
from ivfarm.services.tenancy import tags as tag_service
from ivfarm.store.models import Farm, utcnow


def read_tags(params: Params, name: str = "Tag", values: bool = True) -> dict[str, str]:
    """``Tag.N.Key`` / ``Tag.N.Value`` as a dict (values default to empty strings)."""
    found: dict[str, str] = {}
    for struct in params.structs(name):
        key = struct.string("Key")
        if key is None:
            raise missing(f"{name}.N.Key")
        found[key] = (struct.string("Value") or "") if values else ""
    return found


def checked_tags(tags: dict[str, str]) -> dict[str, str]:
    """Tags within AWS's limits (TagLimitExceeded / InvalidParameterValue otherwise)."""
    try:
        tag_service.validate_tags(tags)
    except tag_service.TagLimitExceeded as exc:
        raise Ec2Error("TagLimitExceeded", "The maximum number of Tags for a resource has been reached.") from exc
    except InvalidInput as exc:
        raise Ec2Error("InvalidParameterValue", str(exc)) from exc
    return tags


def tag_specifications(params: Params, resource_type: str) -> dict[str, str]:
    """The tags of ``TagSpecification.N`` for ``resource_type`` (the only type this action creates)."""
    tags: dict[str, str] = {}
    for spec in params.structs("TagSpecification"):
        kind = spec.required("ResourceType")
        if kind != resource_type:
            raise Ec2Error("InvalidParameterValue",
                           f"'{echo(kind)}' is not a valid taggable resource type for this operation.")
        tags.update(read_tags(spec))
    return checked_tags(tags)


def id_list(params: Params, name: str, required: bool = False) -> list[str]:
    """``name.N`` values (MissingParameter when required and empty)."""
    values = params.strings(name, max_length=64)
    if required and not values:
        raise missing(f"{name}.1")
    return values


def farm_row(session: Session, ctx: RequestContext) -> Farm:
    """The caller's farm (deleted since the request was authenticated: AuthFailure)."""
    farm = session.get(Farm, ctx.farm_id)
    if farm is None:
        raise auth_failure()
    return farm


def terminated_after(ctx: RequestContext) -> dt.datetime:
    """Terminated instances ended before this are no longer visible."""
    return utcnow() - dt.timedelta(seconds=visible_seconds(ctx))


def visible_seconds(ctx: RequestContext) -> float:
    """How long terminated instances stay visible."""
    return float(ctx.cloud.config.get("ec2.terminated_visible_s"))
