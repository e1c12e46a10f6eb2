"""crm sales process: pipelines and their stages, deals with their stage history and payments, tasks
(missed-call "call back" ones too), the tenant's CRM settings; custom fields of deals (crm_fields.entity)

Revision ID: 0019
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0019'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('crm_pipelines',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_crm_pipelines_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_crm_pipelines')),
    sa.UniqueConstraint('tenant_id', 'name', name=op.f('uq_crm_pipelines_tenant_id_name'))
    )
    with op.batch_alter_table('crm_pipelines', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_crm_pipelines_tenant_id'), ['tenant_id'], unique=False)

    op.create_table('crm_settings',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('callback_minutes', sa.Integer(), nullable=False),
    sa.Column('escalate_hours', sa.Integer(), nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_crm_settings_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_crm_settings')),
    sa.UniqueConstraint('tenant_id', name=op.f('uq_crm_settings_tenant_id'))
    )
    with op.batch_alter_table('crm_settings', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_crm_settings_tenant_id'), ['tenant_id'], unique=False)

    op.create_table('crm_stages',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('pipeline_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=8), nullable=False),
    sa.Column('goal', sa.Text(), nullable=False),
    sa.Column('probability', sa.Integer(), nullable=False),
    sa.Column('required_fields', sa.JSON(), nullable=False),
    sa.Column('required_steps', sa.JSON(), nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['pipeline_id'], ['crm_pipelines.id'], name=op.f('fk_crm_stages_pipeline_id_crm_pipelines'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_crm_stages_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_crm_stages'))
    )
    with op.batch_alter_table('crm_stages', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_crm_stages_pipeline_id'), ['pipeline_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_crm_stages_tenant_id'), ['tenant_id'], unique=False)

    op.create_table('crm_deals',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('pipeline_id', sa.Integer(), nullable=False),
    sa.Column('stage_id', sa.Integer(), nullable=False),
    sa.Column('title', sa.String(length=200), nullable=False),
    sa.Column('client_id', sa.Integer(), nullable=True),
    sa.Column('owner_id', sa.Integer(), nullable=True),
    sa.Column('amount', sa.Numeric(precision=14, scale=2), nullable=True),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('expected_close', sa.Date(), nullable=True),
    sa.Column('fields', sa.JSON(), nullable=False),
    sa.Column('steps_done', sa.JSON(), nullable=False),
    sa.Column('lost_reason', sa.Text(), nullable=True),
    sa.Column('closed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['client_id'], ['crm_clients.id'], name=op.f('fk_crm_deals_client_id_crm_clients'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['owner_id'], ['employees.id'], name=op.f('fk_crm_deals_owner_id_employees'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['pipeline_id'], ['crm_pipelines.id'], name=op.f('fk_crm_deals_pipeline_id_crm_pipelines'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['stage_id'], ['crm_stages.id'], name=op.f('fk_crm_deals_stage_id_crm_stages')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_crm_deals_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_crm_deals'))
    )
    with op.batch_alter_table('crm_deals', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_crm_deals_client_id'), ['client_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_crm_deals_owner_id'), ['owner_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_crm_deals_pipeline_id'), ['pipeline_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_crm_deals_stage_id'), ['stage_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_crm_deals_tenant_id'), ['tenant_id'], unique=False)

    op.create_table('crm_deal_moves',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('deal_id', sa.Integer(), nullable=False),
    sa.Column('from_stage_id', sa.Integer(), nullable=True),
    sa.Column('to_stage_id', sa.Integer(), nullable=True),
    sa.Column('employee_id', sa.Integer(), nullable=True),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['deal_id'], ['crm_deals.id'], name=op.f('fk_crm_deal_moves_deal_id_crm_deals'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['employee_id'], ['employees.id'], name=op.f('fk_crm_deal_moves_employee_id_employees'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['from_stage_id'], ['crm_stages.id'], name=op.f('fk_crm_deal_moves_from_stage_id_crm_stages'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_crm_deal_moves_tenant_id_tenants'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['to_stage_id'], ['crm_stages.id'], name=op.f('fk_crm_deal_moves_to_stage_id_crm_stages'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_crm_deal_moves'))
    )
    with op.batch_alter_table('crm_deal_moves', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_crm_deal_moves_deal_id'), ['deal_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_crm_deal_moves_tenant_id'), ['tenant_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_crm_deal_moves_to_stage_id'), ['to_stage_id'], unique=False)

    op.create_table('crm_payments',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('deal_id', sa.Integer(), nullable=False),
    sa.Column('amount', sa.Numeric(precision=14, scale=2), nullable=False),
    sa.Column('paid_on', sa.Date(), nullable=False),
    sa.Column('method', sa.String(length=16), nullable=False),
    sa.Column('note', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['deal_id'], ['crm_deals.id'], name=op.f('fk_crm_payments_deal_id_crm_deals'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_crm_payments_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_crm_payments'))
    )
    with op.batch_alter_table('crm_payments', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_crm_payments_deal_id'), ['deal_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_crm_payments_tenant_id'), ['tenant_id'], unique=False)

    op.create_table('crm_tasks',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('title', sa.String(length=200), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('client_id', sa.Integer(), nullable=True),
    sa.Column('deal_id', sa.Integer(), nullable=True),
    sa.Column('assignee_id', sa.Integer(), nullable=True),
    sa.Column('author_employee_id', sa.Integer(), nullable=True),
    sa.Column('number', sa.String(length=64), nullable=True),
    sa.Column('cdr_id', sa.Integer(), nullable=True),
    sa.Column('due_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('done', sa.Boolean(), nullable=False),
    sa.Column('done_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('reminded_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('escalated_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['assignee_id'], ['employees.id'], name=op.f('fk_crm_tasks_assignee_id_employees'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['author_employee_id'], ['employees.id'], name=op.f('fk_crm_tasks_author_employee_id_employees'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['cdr_id'], ['cdrs.id'], name=op.f('fk_crm_tasks_cdr_id_cdrs'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['client_id'], ['crm_clients.id'], name=op.f('fk_crm_tasks_client_id_crm_clients'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['deal_id'], ['crm_deals.id'], name=op.f('fk_crm_tasks_deal_id_crm_deals'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_crm_tasks_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_crm_tasks')),
    sa.UniqueConstraint('tenant_id', 'cdr_id', name=op.f('uq_crm_tasks_tenant_id_cdr_id'))
    )
    with op.batch_alter_table('crm_tasks', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_crm_tasks_assignee_id'), ['assignee_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_crm_tasks_client_id'), ['client_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_crm_tasks_deal_id'), ['deal_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_crm_tasks_due_at'), ['due_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_crm_tasks_tenant_id'), ['tenant_id'], unique=False)

    with op.batch_alter_table('crm_fields', schema=None) as batch_op:
        batch_op.add_column(sa.Column('entity', sa.String(length=8), server_default='client', nullable=False))



def downgrade() -> None:
    with op.batch_alter_table('crm_fields', schema=None) as batch_op:
        batch_op.drop_column('entity')

    with op.batch_alter_table('crm_tasks', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_crm_tasks_tenant_id'))
        batch_op.drop_index(batch_op.f('ix_crm_tasks_due_at'))
        batch_op.drop_index(batch_op.f('ix_crm_tasks_deal_id'))
        batch_op.drop_index(batch_op.f('ix_crm_tasks_client_id'))
        batch_op.drop_index(batch_op.f('ix_crm_tasks_assignee_id'))

    op.drop_table('crm_tasks')
    with op.batch_alter_table('crm_payments', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_crm_payments_tenant_id'))
        batch_op.drop_index(batch_op.f('ix_crm_payments_deal_id'))

    op.drop_table('crm_payments')
    with op.batch_alter_table('crm_deal_moves', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_crm_deal_moves_to_stage_id'))
        batch_op.drop_index(batch_op.f('ix_crm_deal_moves_tenant_id'))
        batch_op.drop_index(batch_op.f('ix_crm_deal_moves_deal_id'))

    op.drop_table('crm_deal_moves')
    with op.batch_alter_table('crm_deals', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_crm_deals_tenant_id'))
        batch_op.drop_index(batch_op.f('ix_crm_deals_stage_id'))
        batch_op.drop_index(batch_op.f('ix_crm_deals_pipeline_id'))
        batch_op.drop_index(batch_op.f('ix_crm_deals_owner_id'))
        batch_op.drop_index(batch_op.f('ix_crm_deals_client_id'))

    op.drop_table('crm_deals')
    with op.batch_alter_table('crm_stages', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_crm_stages_tenant_id'))
        batch_op.drop_index(batch_op.f('ix_crm_stages_pipeline_id'))

    op.drop_table('crm_stages')
    with op.batch_alter_table('crm_settings', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_crm_settings_tenant_id'))

    op.drop_table('crm_settings')
    with op.batch_alter_table('crm_pipelines', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_crm_pipelines_tenant_id'))

    op.drop_table('crm_pipelines')
