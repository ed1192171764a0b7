"""volumes and snapshots: EBS-like volumes, their snapshots, and per-farm volume quotas

Revision ID: 0009_volumes_and_snapshots
Revises: 0012_host_underlay_address
Create Date: 2026-12-02 16:05:11.774232
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0009_volumes_and_snapshots'
down_revision = '0012_host_underlay_address'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('snapshots',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('farm_id', sa.Integer(), nullable=False),
    sa.Column('volume_id', sa.String(length=32), nullable=False),
    sa.Column('host_class', sa.String(length=16), nullable=False),
    sa.Column('host_id', sa.Integer(), nullable=True),
    sa.Column('size_gb', sa.Integer(), nullable=False),
    sa.Column('description', sa.String(length=255), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('made', sa.Boolean(), nullable=False),
    sa.Column('progress', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['farm_id'], ['farms.id'], ),
    sa.ForeignKeyConstraint(['host_id'], ['hosts.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('snapshots', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_snapshots_farm_id'), ['farm_id'], unique=False)
        batch_op.create_index('ix_snapshots_farm_state', ['farm_id', 'state'], unique=False)
        batch_op.create_index(batch_op.f('ix_snapshots_state'), ['state'], unique=False)

    op.create_table('volumes',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('farm_id', sa.Integer(), nullable=False),
    sa.Column('host_class', sa.String(length=16), nullable=False),
    sa.Column('host_id', sa.Integer(), nullable=True),
    sa.Column('size_gb', sa.Integer(), nullable=False),
    sa.Column('volume_type', sa.String(length=16), nullable=False),
    sa.Column('snapshot_id', sa.String(length=32), nullable=True),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('made', sa.Boolean(), nullable=False),
    sa.Column('instance_id', sa.String(length=32), nullable=True),
    sa.Column('device', sa.String(length=32), nullable=True),
    sa.Column('attach_state', sa.String(length=16), nullable=True),
    sa.Column('attach_time', sa.DateTime(timezone=True), nullable=True),
    sa.Column('delete_on_termination', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('deleted_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['farm_id'], ['farms.id'], ),
    sa.ForeignKeyConstraint(['host_id'], ['hosts.id'], ),
    sa.ForeignKeyConstraint(['instance_id'], ['instances.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('instance_id', 'device')
    )
    with op.batch_alter_table('volumes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_volumes_farm_id'), ['farm_id'], unique=False)
        batch_op.create_index('ix_volumes_farm_state', ['farm_id', 'state'], unique=False)
        batch_op.create_index(batch_op.f('ix_volumes_instance_id'), ['instance_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_volumes_state'), ['state'], unique=False)

    with op.batch_alter_table('farms', schema=None) as batch_op:
        batch_op.add_column(sa.Column('quota_volumes', sa.Integer(), server_default='20', nullable=False))
        batch_op.add_column(sa.Column('quota_volume_gb', sa.Integer(), server_default='500', nullable=False))



def downgrade() -> None:
    with op.batch_alter_table('farms', schema=None) as batch_op:
        batch_op.drop_column('quota_volume_gb')
        batch_op.drop_column('quota_volumes')

    with op.batch_alter_table('volumes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_volumes_state'))
        batch_op.drop_index(batch_op.f('ix_volumes_instance_id'))
        batch_op.drop_index('ix_volumes_farm_state')
        batch_op.drop_index(batch_op.f('ix_volumes_farm_id'))

    op.drop_table('volumes')
    with op.batch_alter_table('snapshots', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_snapshots_state'))
        batch_op.drop_index('ix_snapshots_farm_state')
        batch_op.drop_index(batch_op.f('ix_snapshots_farm_id'))

    op.drop_table('snapshots')
