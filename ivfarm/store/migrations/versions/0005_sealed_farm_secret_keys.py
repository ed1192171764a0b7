"""sealed farm secret keys: each farm's secret key is stored Fernet-sealed under the key file

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 13:00:00

A data migration: the keys in clear are sealed with the store's key (``secret_key_file``) and the
column widened for the tokens; downgrade opens them again.
"""
from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from alembic import op

from ivfarm.store.sealing import Sealer, sealer_of

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

FARMS = sa.table('farms', sa.column('id', sa.Integer()), sa.column('secret_key', sa.String()))


def _rewrite(change: Callable[[Sealer], Callable[[str], str]]) -> None:
    """Each farm's secret key through ``change(sealer)`` (no key file needed while there are no farms)."""
    bind = op.get_bind()
    rows = bind.execute(sa.select(FARMS.c.id, FARMS.c.secret_key)).all()
    if not rows:
        return
    rewrite = change(sealer_of(bind.dialect))
    for farm_id, secret in rows:
        bind.execute(FARMS.update().where(FARMS.c.id == farm_id).values(secret_key=rewrite(secret)))


def upgrade() -> None:
    with op.batch_alter_table('farms', schema=None) as batch_op:
        batch_op.alter_column('secret_key', existing_type=sa.String(length=128), type_=sa.String(length=512),
                              existing_nullable=False)
    _rewrite(lambda sealer: sealer.seal)


def downgrade() -> None:
    _rewrite(lambda sealer: sealer.unseal)
    with op.batch_alter_table('farms', schema=None) as batch_op:
        batch_op.alter_column('secret_key', existing_type=sa.String(length=512), type_=sa.String(length=128),
                              existing_nullable=False)
