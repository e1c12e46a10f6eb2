"""crm_invoices: a deal's invoices; crm_payments.invoice_id: the invoice a payment settles

Revision ID: 0040
Revises: 0039
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0040"
down_revision = "0039"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "crm_invoices",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("deal_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.String(length=40), nullable=False),
        sa.Column("amount", sa.Numeric(precision=14, scale=2), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("issued_on", sa.Date(), nullable=False),
        sa.Column("due_on", sa.Date(), nullable=False),
        sa.Column("state", sa.String(length=10), nullable=False),
        sa.Column("overdue_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("overdue_task_id", sa.Integer(), nullable=True),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("state IN ('draft', 'issued', 'cancelled')", name=op.f("ck_crm_invoices_state")),
        sa.ForeignKeyConstraint(["deal_id"], ["crm_deals.id"], name=op.f("fk_crm_invoices_deal_id_crm_deals"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["overdue_task_id"], ["crm_tasks.id"],
                                name=op.f("fk_crm_invoices_overdue_task_id_crm_tasks"), ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name=op.f("fk_crm_invoices_tenant_id_tenants"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_crm_invoices")),
        sa.UniqueConstraint("tenant_id", "number", name=op.f("uq_crm_invoices_tenant_id_number")),
    )
    with op.batch_alter_table("crm_invoices") as batch:
        batch.create_index(batch.f("ix_crm_invoices_deal_id"), ["deal_id"], unique=False)
        batch.create_index(batch.f("ix_crm_invoices_due_on"), ["due_on"], unique=False)
        batch.create_index(batch.f("ix_crm_invoices_tenant_id"), ["tenant_id"], unique=False)
    with op.batch_alter_table("crm_payments") as batch:
        batch.add_column(sa.Column("invoice_id", sa.Integer(), nullable=True))
        batch.create_foreign_key(op.f("fk_crm_payments_invoice_id_crm_invoices"), "crm_invoices", ["invoice_id"],
                                 ["id"], ondelete="SET NULL")
        batch.create_index(batch.f("ix_crm_payments_invoice_id"), ["invoice_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("crm_payments") as batch:
        batch.drop_index(batch.f("ix_crm_payments_invoice_id"))
        batch.drop_constraint(op.f("fk_crm_payments_invoice_id_crm_invoices"), type_="foreignkey")
        batch.drop_column("invoice_id")
    with op.batch_alter_table("crm_invoices") as batch:
        batch.drop_index(batch.f("ix_crm_invoices_tenant_id"))
        batch.drop_index(batch.f("ix_crm_invoices_due_on"))
        batch.drop_index(batch.f("ix_crm_invoices_deal_id"))
    op.drop_table("crm_invoices")
