"""placement_groups: a farm's EC2 placement groups; instances.placement_group_id

Revision ID: 0014_placement_groups
Revises: 0013_request_signatures
Create Date: 2026-12-02 17:45:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0014_placement_groups'
down_revision = '0013_request_signatures'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'placement_groups',
        sa.Column('id', sa.String(length=32), nullable=False),
        sa.Column('farm_id', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=255), nullable=False),
        sa.Column('strategy', sa.String(length=16), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['farm_id'], ['farms.id'], ),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('farm_id', 'name'),
    )
    with op.batch_alter_table('placement_groups', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_placement_groups_farm_id'), ['farm_id'], unique=False)
    with op.batch_alter_table('instances', schema=None) as batch_op:
        batch_op.add_column(sa.Column('placement_group_id', sa.String(length=32), nullable=True))
        batch_op.create_index(batch_op.f('ix_instances_placement_group_id'), ['placement_group_id'], unique=False)
        batch_op.create_foreign_key('fk_instances_placement_group_id', 'placement_groups',
                                    ['placement_group_id'], ['id'])


def downgrade() -> None:
    with op.batch_alter_table('instances', schema=None) as batch_op:
        batch_op.drop_constraint('fk_instances_placement_group_id', type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_instances_placement_group_id'))
        batch_op.drop_column('placement_group_id')
    with op.batch_alter_table('placement_groups', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_placement_groups_farm_id'))
    op.drop_table('placement_groups')
