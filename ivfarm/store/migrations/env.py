"""Alembic environment: runs on the connection ``ivfarm.store.migrations`` hands over (no alembic.ini)."""
from __future__ import annotations

from alembic import context

from ivfarm.store.models import Base

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=True,  # SQLite alters tables by copying them; batch blocks do that, and plain ALTERs elsewhere
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
