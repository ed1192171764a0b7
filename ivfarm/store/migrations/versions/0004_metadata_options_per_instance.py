"""metadata options per instance (EC2 MetadataOptions: HttpTokens, HttpPutResponseHopLimit, HttpEndpoint)

Revision ID: 0004_metadata_options_per_instance
Revises: 0002
Create Date: 2026-12-02 12:50:00

Revision ids from here on are descriptive and longer than alembic's VARCHAR(32) version column:
it is widened first (SQLite does not enforce the length).
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0004_metadata_options_per_instance'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        op.alter_column('alembic_version', 'version_num', type_=sa.String(length=128),
                        existing_type=sa.String(length=32), existing_nullable=False)
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
