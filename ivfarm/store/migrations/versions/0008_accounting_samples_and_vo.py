"""accounting samples (hypervisor counters per interval) and each farm's grid identity (VO, FQAN, user DN)

Revision ID: 0008_accounting_samples_and_vo
Revises: 0007_host_hs06_and_drains
Create Date: 2026-12-02 16:10:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0008_accounting_samples_and_vo'
down_revision = '0007_host_hs06_and_drains'
branch_labels = None
depends_on = None

def _usage_columns() -> list[sa.Column]:
    return [
        sa.Column('host_name', sa.String(length=64), nullable=True),
        sa.Column('boot_id', sa.Integer(), nullable=True),
        sa.Column('cpu_time_ns', sa.BigInteger(), nullable=True),
        sa.Column('rx_total', sa.BigInteger(), nullable=True),
        sa.Column('tx_total', sa.BigInteger(), nullable=True),
        sa.Column('cpu_s', sa.Float(), nullable=False, server_default='0'),
        sa.Column('net_in_bytes', sa.BigInteger(), nullable=False, server_default='0'),
        sa.Column('net_out_bytes', sa.BigInteger(), nullable=False, server_default='0'),
        sa.Column('public_ips', sa.Integer(), nullable=False, server_default='0'),
        sa.Column('machine_name', sa.String(length=128), nullable=True),
        sa.Column('image_id', sa.String(length=32), nullable=True),
    ]


def _farm_columns() -> list[sa.Column]:
    return [
        sa.Column('vo', sa.String(length=64), nullable=False, server_default=''),
        sa.Column('fqan', sa.String(length=255), nullable=False, server_default=''),
        sa.Column('global_user_name', sa.String(length=255), nullable=False, server_default=''),
    ]


def upgrade() -> None:
    with op.batch_alter_table('usage_records', schema=None) as batch_op:
        for column in _usage_columns():
            batch_op.add_column(column)
    with op.batch_alter_table('farms', schema=None) as batch_op:
        for column in _farm_columns():
            batch_op.add_column(column)


def downgrade() -> None:
    with op.batch_alter_table('farms', schema=None) as batch_op:
        for column in reversed(_farm_columns()):
            batch_op.drop_column(column.name)
    with op.batch_alter_table('usage_records', schema=None) as batch_op:
        for column in reversed(_usage_columns()):
            batch_op.drop_column(column.name)
