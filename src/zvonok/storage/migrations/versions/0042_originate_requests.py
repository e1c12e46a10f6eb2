"""originate_requests: originated calls (REST, CRM click-to-call) and how they went, kept across restarts

Revision ID: 0042
Revises: 0041
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0042"
down_revision = "0041"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "originate_requests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("call_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("requested_by", sa.String(length=64), nullable=False),
        sa.Column("employee_id", sa.Integer(), nullable=True),
        sa.Column("extension", sa.String(length=32), nullable=False),
        sa.Column("to_number", sa.String(length=32), nullable=False),
        sa.Column("client_id", sa.Integer(), nullable=True),
        sa.Column("phase", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("dialing_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("connected_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.CheckConstraint("phase IN ('ringing_employee', 'dialing', 'connected', 'ended', 'failed')",
                           name=op.f("ck_originate_requests_phase")),
        sa.ForeignKeyConstraint(["employee_id"], ["employees.id"],
                                name=op.f("fk_originate_requests_employee_id_employees"), ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["client_id"], ["crm_clients.id"],
                                name=op.f("fk_originate_requests_client_id_crm_clients"), ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name=op.f("fk_originate_requests_tenant_id_tenants"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_originate_requests")),
        sa.UniqueConstraint("call_id", name=op.f("uq_originate_requests_call_id")),
    )
    with op.batch_alter_table("originate_requests") as batch:
        batch.create_index(batch.f("ix_originate_requests_tenant_id"), ["tenant_id"], unique=False)
        batch.create_index(batch.f("ix_originate_requests_created_at"), ["created_at"], unique=False)
        batch.create_index(batch.f("ix_originate_requests_phase"), ["phase"], unique=False)
        batch.create_index("ix_originate_requests_tenant_id_client_id", ["tenant_id", "client_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("originate_requests") as batch:
        batch.drop_index("ix_originate_requests_tenant_id_client_id")
        batch.drop_index(batch.f("ix_originate_requests_phase"))
        batch.drop_index(batch.f("ix_originate_requests_created_at"))
        batch.drop_index(batch.f("ix_originate_requests_tenant_id"))
    op.drop_table("originate_requests")
