"""crm: clients (people, companies), their phones, e-mails, notes, custom fields; each backend's native
full-text index (crm_search); cdrs indexed by caller and callee number (the clients' timelines)

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def _tenant(table: str) -> list[sa.schema.SchemaItem]:
    return [
        sa.Column('tenant_id', sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=f'fk_{table}_tenant_id_tenants', ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=f'pk_{table}'),
    ]


def _client_ref(table: str) -> list[sa.schema.SchemaItem]:
    return [
        sa.Column('client_id', sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(['client_id'], ['crm_clients.id'], name=f'fk_{table}_client_id_crm_clients',
                                ondelete='CASCADE'),
    ]


def upgrade() -> None:
    op.create_table(
        'crm_clients',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('kind', sa.String(length=16), nullable=False),
        sa.Column('name', sa.String(length=200), nullable=False),
        sa.Column('company_id', sa.Integer(), nullable=True),
        sa.Column('owner_id', sa.Integer(), nullable=True),
        sa.Column('tags', sa.JSON(), nullable=False),
        sa.Column('fields', sa.JSON(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['company_id'], ['crm_clients.id'], name='fk_crm_clients_company_id_crm_clients',
                                ondelete='SET NULL'),
        sa.ForeignKeyConstraint(['owner_id'], ['employees.id'], name='fk_crm_clients_owner_id_employees',
                                ondelete='SET NULL'),
        *_tenant('crm_clients'),
    )
    for column in ('company_id', 'owner_id', 'tenant_id'):
        op.create_index(f'ix_crm_clients_{column}', 'crm_clients', [column], unique=False)

    op.create_table(
        'crm_phones',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('number', sa.String(length=20), nullable=False),
        sa.Column('digits', sa.String(length=20), nullable=False),
        sa.Column('label', sa.String(length=40), nullable=False),
        *_client_ref('crm_phones'),
        *_tenant('crm_phones'),
        sa.UniqueConstraint('tenant_id', 'number', name='uq_crm_phones_tenant_id_number'),
    )
    op.create_table(
        'crm_emails',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('address', sa.String(length=254), nullable=False),
        *_client_ref('crm_emails'),
        *_tenant('crm_emails'),
        sa.UniqueConstraint('tenant_id', 'address', name='uq_crm_emails_tenant_id_address'),
    )
    op.create_table(
        'crm_notes',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('author_employee_id', sa.Integer(), nullable=True),
        sa.Column('text', sa.Text(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['author_employee_id'], ['employees.id'],
                                name='fk_crm_notes_author_employee_id_employees', ondelete='SET NULL'),
        *_client_ref('crm_notes'),
        *_tenant('crm_notes'),
    )
    for table in ('crm_phones', 'crm_emails', 'crm_notes'):
        op.create_index(f'ix_{table}_client_id', table, ['client_id'], unique=False)
        op.create_index(f'ix_{table}_tenant_id', table, ['tenant_id'], unique=False)
    op.create_table(
        'crm_fields',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('key', sa.String(length=40), nullable=False),
        sa.Column('label', sa.String(length=100), nullable=False),
        sa.Column('kind', sa.String(length=16), nullable=False),
        sa.Column('choices', sa.JSON(), nullable=False),
        sa.Column('required', sa.Boolean(), nullable=False),
        sa.Column('position', sa.Integer(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        *_tenant('crm_fields'),
        sa.UniqueConstraint('tenant_id', 'key', name='uq_crm_fields_tenant_id_key'),
    )
    op.create_index('ix_crm_fields_tenant_id', 'crm_fields', ['tenant_id'], unique=False)
    op.create_index('ix_cdrs_tenant_id_caller_number', 'cdrs', ['tenant_id', 'caller_number'], unique=False)
    op.create_index('ix_cdrs_tenant_id_callee_number', 'cdrs', ['tenant_id', 'callee_number'], unique=False)

    # the native full-text index (zvonok.crm.search), outside Base.metadata
    if op.get_bind().dialect.name == 'postgresql':
        op.execute("CREATE TABLE crm_search (client_id integer PRIMARY KEY REFERENCES crm_clients (id) "
                   "ON DELETE CASCADE, tenant_id integer NOT NULL REFERENCES tenants (id) ON DELETE CASCADE, "
                   "doc tsvector NOT NULL)")
        op.execute("CREATE INDEX crm_search_doc ON crm_search USING gin (doc)")
        op.execute("CREATE INDEX crm_search_tenant ON crm_search (tenant_id)")
    else:
        op.execute("CREATE VIRTUAL TABLE crm_search USING fts5 (body, tenant_id UNINDEXED, "
                   "tokenize = 'unicode61 remove_diacritics 0')")


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS crm_search")
    op.drop_index('ix_cdrs_tenant_id_callee_number', table_name='cdrs')
    op.drop_index('ix_cdrs_tenant_id_caller_number', table_name='cdrs')
    op.drop_index('ix_crm_fields_tenant_id', table_name='crm_fields')
    op.drop_table('crm_fields')
    for table in ('crm_notes', 'crm_emails', 'crm_phones'):
        op.drop_index(f'ix_{table}_tenant_id', table_name=table)
        op.drop_index(f'ix_{table}_client_id', table_name=table)
        op.drop_table(table)
    for column in ('tenant_id', 'owner_id', 'company_id'):
        op.drop_index(f'ix_crm_clients_{column}', table_name='crm_clients')
    op.drop_table('crm_clients')
