"""metadata options per instance (EC2 MetadataOptions: HttpTokens, HttpPutResponseHopLimit, HttpEndpoint)

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 12:50:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('instances', schema=None) as batch_op:
        batch_op.add_column(sa.Column('metadata_http_tokens', sa.String(length=16), nullable=False,
                                      server_default='optional'))
        batch_op.add_column(sa.Column('metadata_hop_limit', sa.Integer(), nullable=False, server_default='1'))
        batch_op.add_column(sa.Column('metadata_http_endpoint', sa.String(length=16), nullable=False,
                                      server_default='enabled'))


def downgrade() -> None:
    with op.batch_alter_table('instances', schema=None) as batch_op:
        batch_op.drop_column('metadata_http_endpoint')
        batch_op.drop_column('metadata_hop_limit')
        batch_op.drop_column('metadata_http_tokens')
