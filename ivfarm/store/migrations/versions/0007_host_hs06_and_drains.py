"""hosts.hs06_per_core and drains: Machine/Job Features ratings and graceful draining

Revision ID: 0007_host_hs06_and_drains
Revises: 0006
Create Date: 2026-12-02 16:20:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0007_host_hs06_and_drains'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('hosts') as batch:
        batch.add_column(sa.Column('hs06_per_core', sa.Float(), nullable=True))
    op.create_table(
        'drains',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('host_id', sa.Integer(), nullable=True),
        sa.Column('instance_id', sa.String(length=32), nullable=True),
        sa.Column('state', sa.String(length=16), nullable=False),
        sa.Column('grace_s', sa.Integer(), nullable=False),
        sa.Column('deadline', sa.DateTime(timezone=True), nullable=False),
        sa.Column('host_was_enabled', sa.Boolean(), nullable=False),
        sa.Column('result', sa.JSON(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['host_id'], ['hosts.id']),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_drains_host_id', 'drains', ['host_id'])
    op.create_index('ix_drains_instance_id', 'drains', ['instance_id'])
    op.create_index('ix_drains_state', 'drains', ['state'])


def downgrade() -> None:
    op.drop_index('ix_drains_state', table_name='drains')
    op.drop_index('ix_drains_instance_id', table_name='drains')
    op.drop_index('ix_drains_host_id', table_name='drains')
    op.drop_table('drains')
    with op.batch_alter_table('hosts') as batch:
        batch.drop_column('hs06_per_core')
