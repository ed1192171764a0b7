"""hosts.underlay_address and hosts.netns: where a host's VXLAN farm segments end and run

Revision ID: 0012_host_underlay_address
Revises: 0010_farm_images_and_instance_attributes
Create Date: 2026-12-02 16:20:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0012_host_underlay_address'
down_revision = '0010_farm_images_and_instance_attributes'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('hosts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('underlay_address', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('netns', sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('hosts', schema=None) as batch_op:
        batch_op.drop_column('netns')
        batch_op.drop_column('underlay_address')
