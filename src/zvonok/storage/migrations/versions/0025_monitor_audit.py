"""monitor_audit: supervisor listen / whisper / barge sessions and refusals

Revision ID: 0025
Revises: 0026
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from zvonok.storage.base import UtcDateTime

revision = "0025"
down_revision = "0026"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "monitor_audit",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("session_id", sa.String(length=32), nullable=True),
        sa.Column("call_id", sa.String(length=64), nullable=True),
        sa.Column("supervisor", sa.String(length=64), nullable=False),
        sa.Column("agent", sa.String(length=32), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("mode", sa.String(length=16), nullable=True),
        sa.Column("via", sa.String(length=16), nullable=False),
        sa.Column("detail", sa.String(length=200), nullable=False),
        sa.Column("at", UtcDateTime(timezone=True), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_monitor_audit_tenant_id_tenants"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_monitor_audit")),
    )
    with op.batch_alter_table("monitor_audit", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_monitor_audit_at"), ["at"], unique=False)
        batch_op.create_index(batch_op.f("ix_monitor_audit_session_id"), ["session_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_monitor_audit_tenant_id"), ["tenant_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("monitor_audit", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_monitor_audit_tenant_id"))
        batch_op.drop_index(batch_op.f("ix_monitor_audit_session_id"))
        batch_op.drop_index(batch_op.f("ix_monitor_audit_at"))
    op.drop_table("monitor_audit")
