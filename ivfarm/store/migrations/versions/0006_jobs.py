"""jobs: the durable queue of host and router changes

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 13:10:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'jobs',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('kind', sa.String(length=16), nullable=False),
        sa.Column('state', sa.String(length=16), nullable=False),
        sa.Column('instance_id', sa.String(length=32), nullable=True),
        sa.Column('farm_id', sa.Integer(), nullable=True),
        sa.Column('host_id', sa.Integer(), nullable=True),
        sa.Column('payload', sa.JSON(), nullable=False),
        sa.Column('worker', sa.String(length=128), nullable=True),
        sa.Column('heartbeat_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('error', sa.Text(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_jobs_state_farm', 'jobs', ['state', 'farm_id'])
    op.create_index('ix_jobs_instance_id', 'jobs', ['instance_id'])


def downgrade() -> None:
    op.drop_index('ix_jobs_instance_id', table_name='jobs')
    op.drop_index('ix_jobs_state_farm', table_name='jobs')
    op.drop_table('jobs')
