"""The declarative base every model of the store derives from, and the store's one clock."""
from __future__ import annotations

import datetime as dt

from sqlalchemy.orm import DeclarativeBase


def utcnow() -> dt.datetime:
    """Timezone-aware now, the only clock the store uses."""
    return dt.datetime.now(dt.timezone.utc)


class Base(DeclarativeBase):
    pass
