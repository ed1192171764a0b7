"""Alembic environment: runs on the connection ``ivfarm.store.migrations`` hands over (no alembic.ini)."""
from __future__ import annotations

from typing import Any, Literal

from alembic import context

from ivfarm.store.models import Base
from ivfarm.store.types import UTCDateTime


def render_item(kind: str, item: Any, autogen_context: Any) -> str | Literal[False]:
    """Scripts name plain SQLAlchemy types, never ivfarm's: ``UTCDateTime`` is ``DateTime(timezone=True)``."""
    if kind == "type" and isinstance(item, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=True,  # SQLite alters tables by copying them; batch blocks do that, and plain ALTERs elsewhere
    compare_type=True,
    render_item=render_item,
)
with context.begin_transaction():
    context.run_migrations()
