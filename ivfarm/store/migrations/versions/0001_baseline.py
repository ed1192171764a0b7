"""Baseline: the schema ivfarm had when migrations were introduced (what ``Base.metadata.create_all`` made).

Revision ID: 0001
Revises:
Create Date: 2026-12-02
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('farms',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('owner', sa.String(length=256), nullable=False),
    sa.Column('access_key', sa.String(length=128), nullable=False),
    sa.Column('secret_key', sa.String(length=128), nullable=False),
    sa.Column('cidr', sa.String(length=32), nullable=False),
    sa.Column('vlan', sa.Integer(), nullable=False),
    sa.Column('router_backend', sa.String(length=16), nullable=False),
    sa.Column('router_ip', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('quota_instances', sa.Integer(), nullable=False),
    sa.Column('quota_vcpus', sa.Integer(), nullable=False),
    sa.Column('quota_memory_mb', sa.Integer(), nullable=False),
    sa.Column('quota_disk_gb', sa.Integer(), nullable=False),
    sa.Column('quota_addresses', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('access_key'),
    sa.UniqueConstraint('cidr'),
    sa.UniqueConstraint('name'),
    sa.UniqueConstraint('vlan')
    )
    op.create_table('flavors',
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('vcpus', sa.Integer(), nullable=False),
    sa.Column('memory_mb', sa.Integer(), nullable=False),
    sa.Column('root_gb', sa.Integer(), nullable=False),
    sa.Column('ephemeral_gb', sa.Integer(), nullable=False),
    sa.Column('description', sa.String(length=256), nullable=False),
    sa.Column('builtin', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('name')
    )
    op.create_table('hosts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('uri', sa.String(length=512), nullable=False),
    sa.Column('host_class', sa.String(length=16), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('cpus', sa.Integer(), nullable=False),
    sa.Column('memory_mb', sa.Integer(), nullable=False),
    sa.Column('disk_gb', sa.Integer(), nullable=False),
    sa.Column('cpu_ratio', sa.Float(), nullable=True),
    sa.Column('memory_ratio', sa.Float(), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('unreachable_since', sa.DateTime(timezone=True), nullable=True),
    sa.Column('ssh_target', sa.String(length=256), nullable=True),
    sa.Column('cache_dir', sa.String(length=1024), nullable=True),
    sa.Column('migration_uri', sa.String(length=512), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('name')
    )
    op.create_index('ix_hosts_host_class', 'hosts', ['host_class'])
    op.create_table('operations',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('target', sa.String(length=64), nullable=False),
    sa.Column('payload', sa.JSON(), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_operations_target', 'operations', ['target'])
    op.create_table('usage_records',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('farm_name', sa.String(length=64), nullable=False),
    sa.Column('resource_id', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('start', sa.DateTime(timezone=True), nullable=False),
    sa.Column('end', sa.DateTime(timezone=True), nullable=False),
    sa.Column('vcpus', sa.Integer(), nullable=False),
    sa.Column('memory_mb', sa.Integer(), nullable=False),
    sa.Column('disk_gb', sa.Integer(), nullable=False),
    sa.Column('running', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_usage_records_end', 'usage_records', ['end'])
    op.create_index('ix_usage_records_farm_name', 'usage_records', ['farm_name'])
    op.create_index('ix_usage_records_start', 'usage_records', ['start'])
    op.create_table('images',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('path', sa.String(length=1024), nullable=False),
    sa.Column('disk_format', sa.String(length=16), nullable=False),
    sa.Column('size_bytes', sa.Integer(), nullable=False),
    sa.Column('virtual_size_bytes', sa.Integer(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('public', sa.Boolean(), nullable=False),
    sa.Column('owner_farm_id', sa.Integer(), nullable=True),
    sa.Column('kernel_id', sa.String(length=32), nullable=True),
    sa.Column('ramdisk_id', sa.String(length=32), nullable=True),
    sa.Column('cmdline', sa.String(length=512), nullable=False),
    sa.Column('description', sa.String(length=256), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['owner_farm_id'], ['farms.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('name')
    )
    op.create_table('keypairs',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('farm_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('fingerprint', sa.String(length=128), nullable=False),
    sa.Column('public_key', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['farm_id'], ['farms.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('farm_id', 'name')
    )
    op.create_index('ix_keypairs_farm_id', 'keypairs', ['farm_id'])
    op.create_table('port_forwards',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('farm_id', sa.Integer(), nullable=False),
    sa.Column('protocol', sa.String(length=8), nullable=False),
    sa.Column('public_port', sa.Integer(), nullable=False),
    sa.Column('private_ip', sa.String(length=64), nullable=False),
    sa.Column('private_port', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['farm_id'], ['farms.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('farm_id', 'protocol', 'public_port')
    )
    op.create_index('ix_port_forwards_farm_id', 'port_forwards', ['farm_id'])
    op.create_table('tags',
    sa.Column('resource_id', sa.String(length=64), nullable=False),
    sa.Column('key', sa.String(length=128), nullable=False),
    sa.Column('farm_id', sa.Integer(), nullable=False),
    sa.Column('resource_type', sa.String(length=32), nullable=False),
    sa.Column('value', sa.String(length=256), nullable=False),
    sa.ForeignKeyConstraint(['farm_id'], ['farms.id'], ),
    sa.PrimaryKeyConstraint('resource_id', 'key')
    )
    op.create_index('ix_tags_farm_id', 'tags', ['farm_id'])
    op.create_table('instances',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('farm_id', sa.Integer(), nullable=True),
    sa.Column('image_id', sa.String(length=32), nullable=False),
    sa.Column('flavor_name', sa.String(length=64), nullable=False),
    sa.Column('host_class', sa.String(length=16), nullable=False),
    sa.Column('host_id', sa.Integer(), nullable=True),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('state_reason', sa.String(length=256), nullable=False),
    sa.Column('vcpus', sa.Integer(), nullable=False),
    sa.Column('memory_mb', sa.Integer(), nullable=False),
    sa.Column('disk_gb', sa.Integer(), nullable=False),
    sa.Column('ip', sa.String(length=64), nullable=True),
    sa.Column('mac', sa.String(length=32), nullable=True),
    sa.Column('public_nic', sa.Boolean(), nullable=False),
    sa.Column('key_name', sa.String(length=255), nullable=True),
    sa.Column('user_data', sa.LargeBinary(), nullable=True),
    sa.Column('client_token', sa.String(length=64), nullable=True),
    sa.Column('reservation_id', sa.String(length=32), nullable=False),
    sa.Column('launch_index', sa.Integer(), nullable=False),
    sa.Column('restart_policy', sa.String(length=16), nullable=False),
    sa.Column('owner', sa.String(length=128), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('launched_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('terminated_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['farm_id'], ['farms.id'], ),
    sa.ForeignKeyConstraint(['host_id'], ['hosts.id'], ),
    sa.ForeignKeyConstraint(['image_id'], ['images.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('farm_id', 'client_token', 'launch_index')
    )
    op.create_index('ix_instances_farm_id', 'instances', ['farm_id'])
    op.create_index('ix_instances_farm_state', 'instances', ['farm_id', 'state'])
    op.create_index('ix_instances_host_id', 'instances', ['host_id'])
    op.create_index('ix_instances_state', 'instances', ['state'])
    op.create_table('addresses',
    sa.Column('public_ip', sa.String(length=64), nullable=False),
    sa.Column('farm_id', sa.Integer(), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('allocation_id', sa.String(length=32), nullable=True),
    sa.Column('allocated', sa.Boolean(), nullable=False),
    sa.Column('instance_id', sa.String(length=32), nullable=True),
    sa.Column('association_id', sa.String(length=32), nullable=True),
    sa.Column('allocated_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['farm_id'], ['farms.id'], ),
    sa.ForeignKeyConstraint(['instance_id'], ['instances.id'], ),
    sa.PrimaryKeyConstraint('public_ip'),
    sa.UniqueConstraint('allocation_id')
    )
    op.create_index('ix_addresses_farm_id', 'addresses', ['farm_id'])


def downgrade() -> None:
    op.drop_table('addresses')
    op.drop_table('instances')
    op.drop_table('tags')
    op.drop_table('port_forwards')
    op.drop_table('keypairs')
    op.drop_table('images')
    op.drop_table('usage_records')
    op.drop_table('operations')
    op.drop_table('hosts')
    op.drop_table('flavors')
    op.drop_table('farms')
