"""pstn: trunks, numbers, routes, tariffs, outbound policies, pins; rated CDRs

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from zvonok.storage.base import UtcDateTime

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('outbound_policies',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('level', sa.String(length=16), nullable=False),
    sa.Column('ref_id', sa.Integer(), nullable=True),
    sa.Column('service_class', sa.String(length=16), nullable=True),
    sa.Column('deny_prefixes', sa.JSON(), nullable=False),
    sa.Column('allow_prefixes', sa.JSON(), nullable=False),
    sa.Column('caller_id', sa.String(length=32), nullable=True),
    sa.Column('monthly_limit', sa.Numeric(precision=12, scale=2), nullable=True),
    sa.Column('warn_percent', sa.Integer(), nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.Column('created_at', UtcDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', UtcDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_outbound_policies_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_outbound_policies')),
    sa.UniqueConstraint('tenant_id', 'level', 'ref_id', name=op.f('uq_outbound_policies_tenant_id_level_ref_id'))
    )
    with op.batch_alter_table('outbound_policies', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_outbound_policies_tenant_id'), ['tenant_id'], unique=False)
        batch_op.create_index('uq_outbound_policies_tenant_level', ['tenant_id', 'level'], unique=True,
                              sqlite_where=sa.text('ref_id IS NULL'), postgresql_where=sa.text('ref_id IS NULL'))

    op.create_table('tariffs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=True),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('time_zone', sa.String(length=64), nullable=False),
    sa.Column('periods', sa.JSON(), nullable=False),
    sa.Column('default_period', sa.String(length=32), nullable=False),
    sa.Column('created_at', UtcDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', UtcDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_tariffs_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tariffs'))
    )
    with op.batch_alter_table('tariffs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_tariffs_tenant_id'), ['tenant_id'], unique=False)

    op.create_table('billing_accounts',
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.Column('tariff_id', sa.Integer(), nullable=True),
    sa.Column('created_at', UtcDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', UtcDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['tariff_id'], ['tariffs.id'], name=op.f('fk_billing_accounts_tariff_id_tariffs'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_billing_accounts_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('tenant_id', name=op.f('pk_billing_accounts'))
    )
    with op.batch_alter_table('billing_accounts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_billing_accounts_tariff_id'), ['tariff_id'], unique=False)

    op.create_table('phone_numbers',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=True),
    sa.Column('number', sa.String(length=32), nullable=False),
    sa.Column('office_id', sa.Integer(), nullable=True),
    sa.Column('destination_kind', sa.String(length=16), nullable=False),
    sa.Column('destination', sa.JSON(), nullable=False),
    sa.Column('monthly_fee', sa.Numeric(precision=12, scale=2), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('created_at', UtcDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', UtcDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['office_id'], ['offices.id'], name=op.f('fk_phone_numbers_office_id_offices'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_phone_numbers_tenant_id_tenants'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_phone_numbers')),
    sa.UniqueConstraint('number', name=op.f('uq_phone_numbers_number'))
    )
    with op.batch_alter_table('phone_numbers', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_phone_numbers_office_id'), ['office_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_phone_numbers_tenant_id'), ['tenant_id'], unique=False)

    op.create_table('tariff_rates',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('tariff_id', sa.Integer(), nullable=False),
    sa.Column('prefix', sa.String(length=16), nullable=False),
    sa.Column('destination', sa.String(length=200), nullable=False),
    sa.Column('price', sa.Numeric(precision=12, scale=4), nullable=False),
    sa.Column('connection_fee', sa.Numeric(precision=12, scale=4), nullable=False),
    sa.Column('increment', sa.String(length=16), nullable=False),
    sa.Column('minimum', sa.Integer(), nullable=False),
    sa.Column('period_prices', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['tariff_id'], ['tariffs.id'], name=op.f('fk_tariff_rates_tariff_id_tariffs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tariff_rates')),
    sa.UniqueConstraint('tariff_id', 'prefix', name=op.f('uq_tariff_rates_tariff_id_prefix'))
    )
    with op.batch_alter_table('tariff_rates', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_tariff_rates_tariff_id'), ['tariff_id'], unique=False)

    op.create_table('trunks',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=True),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('host', sa.String(length=253), nullable=False),
    sa.Column('port', sa.Integer(), nullable=False),
    sa.Column('transport', sa.String(length=8), nullable=False),
    sa.Column('username', sa.String(length=200), nullable=True),
    sa.Column('password', sa.String(length=200), nullable=True),
    sa.Column('auth_username', sa.String(length=200), nullable=True),
    sa.Column('from_domain', sa.String(length=253), nullable=True),
    sa.Column('register', sa.Boolean(), nullable=False),
    sa.Column('register_expires', sa.Integer(), nullable=False),
    sa.Column('inbound_addresses', sa.JSON(), nullable=False),
    sa.Column('max_calls', sa.Integer(), nullable=True),
    sa.Column('number_format', sa.String(length=16), nullable=False),
    sa.Column('buy_tariff_id', sa.Integer(), nullable=True),
    sa.Column('office_id', sa.Integer(), nullable=True),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('created_at', UtcDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', UtcDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['buy_tariff_id'], ['tariffs.id'], name=op.f('fk_trunks_buy_tariff_id_tariffs'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['office_id'], ['offices.id'], name=op.f('fk_trunks_office_id_offices'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_trunks_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_trunks'))
    )
    with op.batch_alter_table('trunks', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_trunks_buy_tariff_id'), ['buy_tariff_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_trunks_office_id'), ['office_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_trunks_tenant_id'), ['tenant_id'], unique=False)

    op.create_table('outbound_routes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=True),
    sa.Column('prefix', sa.String(length=16), nullable=False),
    sa.Column('trunk_id', sa.Integer(), nullable=False),
    sa.Column('priority', sa.Integer(), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('created_at', UtcDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', UtcDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_outbound_routes_tenant_id_tenants'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['trunk_id'], ['trunks.id'], name=op.f('fk_outbound_routes_trunk_id_trunks'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_outbound_routes'))
    )
    with op.batch_alter_table('outbound_routes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_outbound_routes_tenant_id'), ['tenant_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_outbound_routes_trunk_id'), ['trunk_id'], unique=False)

    op.create_table('employee_pins',
    sa.Column('employee_id', sa.Integer(), nullable=False),
    sa.Column('pin_hash', sa.String(length=255), nullable=False),
    sa.Column('skip_for_caller_id', sa.Boolean(), nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.Column('created_at', UtcDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', UtcDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['employee_id'], ['employees.id'], name=op.f('fk_employee_pins_employee_id_employees'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_employee_pins_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('employee_id', name=op.f('pk_employee_pins'))
    )
    with op.batch_alter_table('employee_pins', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_employee_pins_tenant_id'), ['tenant_id'], unique=False)

    with op.batch_alter_table('cdrs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('trunk_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('did', sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column('destination_class', sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column('rate_prefix', sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column('rate_destination', sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column('rate_per_minute', sa.Numeric(precision=12, scale=4), nullable=True))
        batch_op.add_column(sa.Column('billed_seconds', sa.Integer(), nullable=False, server_default='0'))
        batch_op.create_index(batch_op.f('ix_cdrs_destination_class'), ['destination_class'], unique=False)
        batch_op.create_index(batch_op.f('ix_cdrs_trunk_id'), ['trunk_id'], unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_cdrs_trunk_id_trunks'), 'trunks', ['trunk_id'], ['id'], ondelete='SET NULL')



def downgrade() -> None:
    with op.batch_alter_table('cdrs', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_cdrs_trunk_id_trunks'), type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_cdrs_trunk_id'))
        batch_op.drop_index(batch_op.f('ix_cdrs_destination_class'))
        batch_op.drop_column('billed_seconds')
        batch_op.drop_column('rate_per_minute')
        batch_op.drop_column('rate_destination')
        batch_op.drop_column('rate_prefix')
        batch_op.drop_column('destination_class')
        batch_op.drop_column('did')
        batch_op.drop_column('trunk_id')

    with op.batch_alter_table('employee_pins', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_employee_pins_tenant_id'))

    op.drop_table('employee_pins')
    with op.batch_alter_table('outbound_routes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_outbound_routes_trunk_id'))
        batch_op.drop_index(batch_op.f('ix_outbound_routes_tenant_id'))

    op.drop_table('outbound_routes')
    with op.batch_alter_table('trunks', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_trunks_tenant_id'))
        batch_op.drop_index(batch_op.f('ix_trunks_office_id'))
        batch_op.drop_index(batch_op.f('ix_trunks_buy_tariff_id'))

    op.drop_table('trunks')
    with op.batch_alter_table('tariff_rates', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_tariff_rates_tariff_id'))

    op.drop_table('tariff_rates')
    with op.batch_alter_table('phone_numbers', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_phone_numbers_tenant_id'))
        batch_op.drop_index(batch_op.f('ix_phone_numbers_office_id'))

    op.drop_table('phone_numbers')
    with op.batch_alter_table('billing_accounts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_billing_accounts_tariff_id'))

    op.drop_table('billing_accounts')
    with op.batch_alter_table('tariffs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_tariffs_tenant_id'))

    op.drop_table('tariffs')
    with op.batch_alter_table('outbound_policies', schema=None) as batch_op:
        batch_op.drop_index('uq_outbound_policies_tenant_level')
        batch_op.drop_index(batch_op.f('ix_outbound_policies_tenant_id'))

    op.drop_table('outbound_policies')
