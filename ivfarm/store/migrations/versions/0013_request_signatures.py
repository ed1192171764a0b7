"""request_signatures: the replay guard every API worker and controller shares

Revision ID: 0013_request_signatures
Revises: 0009_volumes_and_snapshots
Create Date: 2026-12-02 16:30:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0013_request_signatures'
down_revision = '0009_volumes_and_snapshots'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'request_signatures',
        sa.Column('farm_id', sa.Integer(), nullable=False),
        sa.Column('signature', sa.String(length=128), nullable=False),
        sa.Column('first_seen', sa.DateTime(timezone=True), nullable=False),
        sa.Column('valid_until', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('farm_id', 'signature'),
    )
    op.create_index('ix_request_signatures_farm_expiry', 'request_signatures', ['farm_id', 'valid_until'])


def downgrade() -> None:
    op.drop_index('ix_request_signatures_farm_expiry', table_name='request_signatures')
    op.drop_table('request_signatures')
