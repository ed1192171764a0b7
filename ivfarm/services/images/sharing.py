"""Who may see and launch which image: site images (public or not), farm images and their launch permissions.

A farm sees public images, its own, and images another farm shared with it by account (launch
permission); only the sysadmin makes an image public (``ivfarm image publish``). Deregistered images
stay as rows while instances still use them (their file is removed once none does) and are seen by no one.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from sqlalchemy import ColumnElement, delete, exists, or_, select
from sqlalchemy.orm import Session

from ivfarm.errors import InvalidInput, NotFound, Unavailable
from ivfarm.services.runtime.context import CloudContext
from ivfarm.store.models import LIVE_STATES, Farm, Image, Instance, LaunchPermission

SEEN_STATES = ("pending", "available", "failed")  # what DescribeImages shows; deregistered is gone


def visible_to(farm_id: int) -> ColumnElement[bool]:
    """SQL condition: the image is one farm ``farm_id`` may see (and launch, once available)."""
    shared = exists().where(LaunchPermission.image_id == Image.id, LaunchPermission.farm_id == farm_id)
    return Image.state.in_(SEEN_STATES) & or_(Image.public.is_(True), Image.owner_farm_id == farm_id, shared)


def visible_image(session: Session, image_id: str, farm_id: int) -> Image:
    """An image (by id, or name) the farm may see, or NotFound (another farm's private image is not there
    for it)."""
    image = session.scalar(select(Image).where(or_(Image.id == image_id, Image.name == image_id), visible_to(farm_id))
                           .order_by(Image.id).limit(1))
    if image is None:
        raise NotFound("image", image_id)
    return image


def own_image(session: Session, image_id: str, farm_id: int) -> Image:
    """An image the farm owns: NotFound if it cannot see it, Unavailable if it is someone else's."""
    image = visible_image(session, image_id, farm_id)
    if image.owner_farm_id != farm_id:
        raise Unavailable("image", image_id, "is not an image of this farm")
    return image


def shared_with(session: Session, image_ids: Sequence[str]) -> dict[str, list[int]]:
    """``{image id: [farm ids it is shared with]}``."""
    rows = session.execute(select(LaunchPermission.image_id, LaunchPermission.farm_id)
                           .where(LaunchPermission.image_id.in_(list(image_ids))).order_by(LaunchPermission.farm_id))
    found: dict[str, list[int]] = {}
    for image_id, farm_id in rows:
        found.setdefault(image_id, []).append(farm_id)
    return found


def change_permissions(cloud: CloudContext, farm_id: int, image_id: str, add: Sequence[int],
                       remove: Sequence[int]) -> None:
    """Share the farm's image with farms ``add`` and stop sharing it with ``remove``, all or nothing
    (InvalidInput naming an account that is no farm)."""
    with cloud.store.write() as session:
        image = own_image(session, image_id, farm_id)
        for other in {*add, *remove}:
            if session.get(Farm, other) is None:
                raise InvalidInput(f"account {other:012d} is not a farm of this cloud")
        current = set(shared_with(session, [image.id]).get(image.id, []))
        for other in sorted(set(add) - current - {farm_id}):
            session.add(LaunchPermission(image_id=image.id, farm_id=other))
        gone = set(remove) & current
        if gone:
            session.execute(delete(LaunchPermission).where(LaunchPermission.image_id == image.id,
                                                           LaunchPermission.farm_id.in_(sorted(gone))))


def reset_permissions(cloud: CloudContext, farm_id: int, image_id: str) -> None:
    """Stop sharing the farm's image with anyone."""
    with cloud.store.write() as session:
        image = own_image(session, image_id, farm_id)
        session.execute(delete(LaunchPermission).where(LaunchPermission.image_id == image.id))


def set_description(cloud: CloudContext, farm_id: int, image_id: str, description: str) -> None:
    """Change the description of the farm's image."""
    with cloud.store.write() as session:
        own_image(session, image_id, farm_id).description = description


def _in_use(session: Session, image_id: str) -> bool:
    return session.scalar(select(Instance.id).where(Instance.image_id == image_id,
                                                    Instance.state.in_(LIVE_STATES)).limit(1)) is not None


def deregister(cloud: CloudContext, farm_id: int, image_id: str) -> None:
    """Deregister the farm's image: no one sees or launches it any more; its file goes now, or once the
    last instance using it is gone (``purge_deregistered``). One being made cannot be deregistered yet."""
    with cloud.store.write() as session:
        image = own_image(session, image_id, farm_id)
        if image.state == "pending":
            raise Unavailable("image", image_id, "is still being created")
        image.state = "deregistered"
        session.execute(delete(LaunchPermission).where(LaunchPermission.image_id == image.id))
        path = None if _in_use(session, image.id) else Path(image.path)
    if path is not None:
        path.unlink(missing_ok=True)


def purge_deregistered(cloud: CloudContext, dry_run: bool = False) -> list[str]:
    """Remove the files of deregistered images no live instance uses any more; returns their ids."""
    purged = []
    with cloud.store.read() as session:
        rows = [(i.id, Path(i.path)) for i in session.scalars(select(Image).where(Image.state == "deregistered"))]
        for image_id, path in rows:
            if path.exists() and not _in_use(session, image_id):
                purged.append((image_id, path))
    for _, path in purged if not dry_run else ():
        path.unlink(missing_ok=True)
    return [image_id for image_id, _ in purged]
