"""farm images (CreateImage states, launch permissions) and instance attributes

Revision ID: 0010_farm_images_and_instance_attributes
Revises: 0008_accounting_samples_and_vo
Create Date: 2026-12-02 16:20:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0010_farm_images_and_instance_attributes'
down_revision = '0008_accounting_samples_and_vo'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # this revision's id is longer than alembic's 32 characters: widen the version column first
    # (PostgreSQL enforces the length, SQLite does not; written by the same transaction)
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column('alembic_version', 'version_num', type_=sa.String(length=64),
                        existing_type=sa.String(length=32), existing_nullable=False)
    with op.batch_alter_table('images') as batch_op:
        batch_op.add_column(sa.Column('state', sa.String(length=16), server_default='available', nullable=False))
        batch_op.add_column(sa.Column('state_reason', sa.String(length=256), server_default='', nullable=False))
        batch_op.add_column(sa.Column('source_instance_id', sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column('block_devices', sa.JSON(), server_default='[]', nullable=False))
    with op.batch_alter_table('instances') as batch_op:
        batch_op.add_column(sa.Column('disable_api_termination', sa.Boolean(), server_default=sa.false(),
                                      nullable=False))
        batch_op.add_column(sa.Column('redefine_on_start', sa.Boolean(), server_default=sa.false(), nullable=False))
    op.create_table(
        'image_launch_permissions',
        sa.Column('image_id', sa.String(length=32), nullable=False),
        sa.Column('farm_id', sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(['farm_id'], ['farms.id'], ),
        sa.ForeignKeyConstraint(['image_id'], ['images.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('image_id', 'farm_id'),
    )
    op.create_index('ix_image_launch_permissions_farm_id', 'image_launch_permissions', ['farm_id'])


def downgrade() -> None:
    op.drop_index('ix_image_launch_permissions_farm_id', table_name='image_launch_permissions')
    op.drop_table('image_launch_permissions')
    with op.batch_alter_table('instances') as batch_op:
        batch_op.drop_column('redefine_on_start')
        batch_op.drop_column('disable_api_termination')
    with op.batch_alter_table('images') as batch_op:
        batch_op.drop_column('block_devices')
        batch_op.drop_column('source_instance_id')
        batch_op.drop_column('state_reason')
        batch_op.drop_column('state')
