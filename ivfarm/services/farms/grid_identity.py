"""A farm's grid identity: the VO, FQAN and user DN that grid accounting (APEL) charges its VMs to."""
from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import select

from ivfarm.errors import InvalidInput, NotFound
from ivfarm.services.runtime.context import CloudContext
from ivfarm.store.models import Farm

_VO_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


@dataclass(frozen=True)
class GridIdentity:
    """What a farm's VMs are accounted as; empty strings: not mapped."""

    vo: str = ""
    fqan: str = ""
    global_user_name: str = ""


def resolve(vo: str | None, fqan: str | None, global_user_name: str | None,
            current: GridIdentity = GridIdentity()) -> GridIdentity:
    """The identity after applying the given values (None keeps the current one, "" clears it).

    A VO without an FQAN gets ``/<vo>/Role=NULL/Capability=NULL``; an FQAN's first group is its VO."""
    new_vo = current.vo if vo is None else vo.strip()
    new_fqan = current.fqan if fqan is None else fqan.strip()
    if vo is not None and fqan is None:
        new_fqan = f"/{new_vo}/Role=NULL/Capability=NULL" if new_vo else ""
    dn = current.global_user_name if global_user_name is None else global_user_name.strip()
    if new_vo and not _VO_RE.match(new_vo):
        raise InvalidInput(f"invalid VO name {new_vo!r}: lower-case letters, digits, '.', '-' and '_'")
    if new_fqan:
        if not new_vo:
            raise InvalidInput("an FQAN needs the farm's VO (--vo)")
        if not (new_fqan == f"/{new_vo}" or new_fqan.startswith(f"/{new_vo}/")):
            raise InvalidInput(f"FQAN {new_fqan!r} does not belong to VO {new_vo!r} (it starts with /{new_vo})")
    if dn and not dn.startswith("/"):
        raise InvalidInput(f"global user name {dn!r} is not a DN (/DC=.../CN=...)")
    return GridIdentity(new_vo, new_fqan, dn)


def set_identity(cloud: CloudContext, name: str, vo: str | None = None, fqan: str | None = None,
                 global_user_name: str | None = None) -> GridIdentity:
    """Change farm NAME's grid identity and return it."""
    with cloud.store.write() as session:
        farm = session.scalar(select(Farm).where(Farm.name == name))
        if farm is None:
            raise NotFound("farm", name)
        identity = resolve(vo, fqan, global_user_name, GridIdentity(farm.vo, farm.fqan, farm.global_user_name))
        farm.vo, farm.fqan, farm.global_user_name = identity.vo, identity.fqan, identity.global_user_name
        return identity
