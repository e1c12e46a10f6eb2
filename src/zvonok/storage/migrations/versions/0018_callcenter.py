"""callcenter: queues, agent skills, queue memberships, not-ready reasons, the queue log (reports)

Revision ID: 0018
Revises: 0019
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0018'
down_revision = '0019'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('not_ready_reasons',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=40), nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_not_ready_reasons_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_not_ready_reasons')),
    sa.UniqueConstraint('tenant_id', 'name', name=op.f('uq_not_ready_reasons_tenant_id_name'))
    )
    with op.batch_alter_table('not_ready_reasons', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_not_ready_reasons_tenant_id'), ['tenant_id'], unique=False)

    op.create_table('queue_log',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('at', sa.Float(precision=53), nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.Column('queue_id', sa.Integer(), nullable=True),
    sa.Column('call_id', sa.String(length=100), nullable=True),
    sa.Column('agent_id', sa.Integer(), nullable=True),
    sa.Column('event', sa.String(length=20), nullable=False),
    sa.Column('data', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_queue_log_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_queue_log'))
    )
    with op.batch_alter_table('queue_log', schema=None) as batch_op:
        batch_op.create_index('ix_queue_log_call_id', ['call_id'], unique=False)
        batch_op.create_index('ix_queue_log_tenant_agent_at', ['tenant_id', 'agent_id', 'at'], unique=False)
        batch_op.create_index('ix_queue_log_tenant_queue_at', ['tenant_id', 'queue_id', 'at'], unique=False)
        batch_op.create_index('ix_queue_log_tenant_at', ['tenant_id', 'at'], unique=False)

    op.create_table('queues',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('number', sa.String(length=8), nullable=False),
    sa.Column('strategy', sa.String(length=20), nullable=False),
    sa.Column('requirements', sa.JSON(), nullable=False),
    sa.Column('relaxations', sa.JSON(), nullable=False),
    sa.Column('ring_timeout', sa.Integer(), nullable=False),
    sa.Column('retry', sa.Integer(), nullable=False),
    sa.Column('wrap_up', sa.Integer(), nullable=False),
    sa.Column('max_waiting', sa.Integer(), nullable=True),
    sa.Column('max_wait', sa.Integer(), nullable=True),
    sa.Column('join_empty', sa.Boolean(), nullable=False),
    sa.Column('leave_empty', sa.Boolean(), nullable=False),
    sa.Column('service_level', sa.Integer(), nullable=False),
    sa.Column('announce_every', sa.Integer(), nullable=False),
    sa.Column('max_no_answer', sa.Integer(), nullable=False),
    sa.Column('weight', sa.Integer(), nullable=False),
    sa.Column('overflow', sa.JSON(), nullable=True),
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_queues_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_queues')),
    sa.UniqueConstraint('tenant_id', 'name', name=op.f('uq_queues_tenant_id_name')),
    sa.UniqueConstraint('tenant_id', 'number', name=op.f('uq_queues_tenant_id_number'))
    )
    with op.batch_alter_table('queues', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_queues_tenant_id'), ['tenant_id'], unique=False)

    op.create_table('agent_skills',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('employee_id', sa.Integer(), nullable=False),
    sa.Column('skill', sa.String(length=40), nullable=False),
    sa.Column('level', sa.Integer(), nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['employee_id'], ['employees.id'], name=op.f('fk_agent_skills_employee_id_employees'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_agent_skills_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_agent_skills')),
    sa.UniqueConstraint('employee_id', 'skill', name=op.f('uq_agent_skills_employee_id_skill'))
    )
    with op.batch_alter_table('agent_skills', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_agent_skills_employee_id'), ['employee_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_agent_skills_tenant_id'), ['tenant_id'], unique=False)

    op.create_table('queue_members',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('queue_id', sa.Integer(), nullable=False),
    sa.Column('employee_id', sa.Integer(), nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['employee_id'], ['employees.id'], name=op.f('fk_queue_members_employee_id_employees'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['queue_id'], ['queues.id'], name=op.f('fk_queue_members_queue_id_queues'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_queue_members_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_queue_members')),
    sa.UniqueConstraint('queue_id', 'employee_id', name=op.f('uq_queue_members_queue_id_employee_id'))
    )
    with op.batch_alter_table('queue_members', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_queue_members_employee_id'), ['employee_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_queue_members_queue_id'), ['queue_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_queue_members_tenant_id'), ['tenant_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('queue_members', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_queue_members_tenant_id'))
        batch_op.drop_index(batch_op.f('ix_queue_members_queue_id'))
        batch_op.drop_index(batch_op.f('ix_queue_members_employee_id'))

    op.drop_table('queue_members')
    with op.batch_alter_table('agent_skills', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_agent_skills_tenant_id'))
        batch_op.drop_index(batch_op.f('ix_agent_skills_employee_id'))

    op.drop_table('agent_skills')
    with op.batch_alter_table('queues', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_queues_tenant_id'))

    op.drop_table('queues')
    with op.batch_alter_table('queue_log', schema=None) as batch_op:
        batch_op.drop_index('ix_queue_log_tenant_at')
        batch_op.drop_index('ix_queue_log_tenant_queue_at')
        batch_op.drop_index('ix_queue_log_tenant_agent_at')
        batch_op.drop_index('ix_queue_log_call_id')

    op.drop_table('queue_log')
    with op.batch_alter_table('not_ready_reasons', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_not_ready_reasons_tenant_id'))

    op.drop_table('not_ready_reasons')
