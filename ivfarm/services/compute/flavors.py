"""The flavor catalog: m1.* from ``flavors/catalog.yaml`` plus flavors an admin adds."""
from __future__ import annotations

import importlib.resources
import re
from typing import Any

import yaml
from sqlalchemy import select

from ivfarm.errors import AlreadyExists, InUse, InvalidInput, NotFound
from ivfarm.services.runtime.context import CloudContext
from ivfarm.store.models import LIVE_STATES, Flavor, Instance

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9.\-_]{0,63}$")


def builtin_catalog() -> dict[str, dict[str, Any]]:
    """The shipped flavor table."""
    text = importlib.resources.files("flavors").joinpath("catalog.yaml").read_text()
    return dict(yaml.safe_load(text)["flavors"])


def sync_catalog(cloud: CloudContext) -> int:
    """Insert or refresh the shipped flavors; returns how many there are."""
    catalog = builtin_catalog()
    with cloud.store.write() as session:
        for name, spec in catalog.items():
            flavor = session.get(Flavor, name) or Flavor(name=name)
            flavor.vcpus = int(spec["vcpus"])
            flavor.memory_mb = int(spec["memory_mb"])
            flavor.root_gb = int(spec.get("root_gb", 0))
            flavor.ephemeral_gb = int(spec.get("ephemeral_gb", 0))
            flavor.description = str(spec.get("description", ""))
            flavor.builtin = True
            session.add(flavor)
    return len(catalog)


def list_flavors(cloud: CloudContext) -> list[Flavor]:
    """Every flavor, smallest first."""
    with cloud.store.read() as session:
        return list(session.scalars(select(Flavor).order_by(Flavor.vcpus, Flavor.memory_mb, Flavor.name)))


def get_flavor(cloud: CloudContext, name: str) -> Flavor:
    """The flavor called ``name`` or NotFound."""
    with cloud.store.read() as session:
        flavor = session.get(Flavor, name)
    if flavor is None:
        raise NotFound("flavor", name)
    return flavor


def add_flavor(cloud: CloudContext, name: str, vcpus: int, memory_mb: int, root_gb: int = 0,
               ephemeral_gb: int = 0, description: str = "") -> Flavor:
    """Add a site flavor."""
    if not _NAME_RE.match(name):
        raise InvalidInput(f"invalid flavor name {name!r}")
    if vcpus < 1 or memory_mb < 32 or root_gb < 0 or ephemeral_gb < 0:
        raise InvalidInput("a flavor needs at least 1 vCPU, 32 MB of memory and non-negative disks")
    with cloud.store.write() as session:
        if session.get(Flavor, name):
            raise AlreadyExists(f"flavor {name!r} already exists")
        flavor = Flavor(name=name, vcpus=vcpus, memory_mb=memory_mb, root_gb=root_gb,
                        ephemeral_gb=ephemeral_gb, description=description, builtin=False)
        session.add(flavor)
    return flavor


def remove_flavor(cloud: CloudContext, name: str) -> None:
    """Remove an admin-added flavor that no instance uses."""
    with cloud.store.write() as session:
        flavor = session.get(Flavor, name)
        if flavor is None:
            raise NotFound("flavor", name)
        if flavor.builtin:
            raise InvalidInput(f"flavor {name!r} is part of the shipped catalog and cannot be removed")
        if session.scalar(select(Instance.id).where(Instance.flavor_name == name, Instance.state.in_(LIVE_STATES)).limit(1)):
            raise InUse(f"flavor {name!r} is used by running instances")
        session.delete(flavor)
