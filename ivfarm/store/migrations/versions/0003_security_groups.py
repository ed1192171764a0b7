"""security groups: groups, their rules, instance membership; a default group for every farm;
instances.shutdown_behavior

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 12:32:03.549058
"""
from __future__ import annotations

import datetime as dt
import secrets

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('security_groups',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('farm_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('description', sa.String(length=255), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['farm_id'], ['farms.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('farm_id', 'name')
    )
    with op.batch_alter_table('security_groups', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_security_groups_farm_id'), ['farm_id'], unique=False)

    op.create_table('security_group_rules',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('group_id', sa.String(length=32), nullable=False),
    sa.Column('egress', sa.Boolean(), nullable=False),
    sa.Column('protocol', sa.String(length=8), nullable=False),
    sa.Column('from_port', sa.Integer(), nullable=False),
    sa.Column('to_port', sa.Integer(), nullable=False),
    sa.Column('cidr', sa.String(length=64), nullable=True),
    sa.Column('source_group_id', sa.String(length=32), nullable=True),
    sa.Column('description', sa.String(length=255), nullable=False),
    sa.ForeignKeyConstraint(['group_id'], ['security_groups.id'], ),
    sa.ForeignKeyConstraint(['source_group_id'], ['security_groups.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('security_group_rules', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_security_group_rules_group_id'), ['group_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_security_group_rules_source_group_id'), ['source_group_id'], unique=False)

    op.create_table('instance_security_groups',
    sa.Column('instance_id', sa.String(length=32), nullable=False),
    sa.Column('group_id', sa.String(length=32), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['group_id'], ['security_groups.id'], ),
    sa.ForeignKeyConstraint(['instance_id'], ['instances.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('instance_id', 'group_id')
    )
    with op.batch_alter_table('instance_security_groups', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_instance_security_groups_group_id'), ['group_id'], unique=False)

    with op.batch_alter_table('instances', schema=None) as batch_op:
        batch_op.add_column(sa.Column('shutdown_behavior', sa.String(length=16), server_default='stop',
                                      nullable=False))
    _default_groups()


def _hex_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(9)[:17]}"


def _default_groups() -> None:
    """Every existing farm gets its ``default`` group: inbound from its own members, all outbound;
    its live instances become members."""
    conn = op.get_bind()
    now = dt.datetime.now(dt.timezone.utc)
    groups = sa.table("security_groups", sa.column("id"), sa.column("farm_id"), sa.column("name"),
                      sa.column("description"), sa.column("created_at"))
    rules = sa.table("security_group_rules", sa.column("id"), sa.column("group_id"), sa.column("egress"),
                     sa.column("protocol"), sa.column("from_port"), sa.column("to_port"), sa.column("cidr"),
                     sa.column("source_group_id"), sa.column("description"))
    members = sa.table("instance_security_groups", sa.column("instance_id"), sa.column("group_id"),
                       sa.column("position"))
    for (farm_id,) in conn.execute(sa.text("SELECT id FROM farms")):
        group_id = _hex_id("sg")
        conn.execute(groups.insert().values(id=group_id, farm_id=farm_id, name="default",
                                            description="default group", created_at=now))
        conn.execute(rules.insert().values(id=_hex_id("sgr"), group_id=group_id, egress=False, protocol="-1",
                                           from_port=-1, to_port=-1, cidr=None, source_group_id=group_id,
                                           description=""))
        conn.execute(rules.insert().values(id=_hex_id("sgr"), group_id=group_id, egress=True, protocol="-1",
                                           from_port=-1, to_port=-1, cidr="0.0.0.0/0", source_group_id=None,
                                           description=""))
        instance_ids = conn.execute(sa.text("SELECT id FROM instances WHERE farm_id = :f"), {"f": farm_id})
        for (instance_id,) in instance_ids.all():
            conn.execute(members.insert().values(instance_id=instance_id, group_id=group_id, position=0))


def downgrade() -> None:
    with op.batch_alter_table('instances', schema=None) as batch_op:
        batch_op.drop_column('shutdown_behavior')
    with op.batch_alter_table('instance_security_groups', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_instance_security_groups_group_id'))

    op.drop_table('instance_security_groups')
    with op.batch_alter_table('security_group_rules', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_security_group_rules_source_group_id'))
        batch_op.drop_index(batch_op.f('ix_security_group_rules_group_id'))

    op.drop_table('security_group_rules')
    with op.batch_alter_table('security_groups', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_security_groups_farm_id'))

    op.drop_table('security_groups')
