"""agent_presence: call-center agents' logins and pauses shared by the nodes of a cluster (issue 14)

Revision ID: 0044
Revises: 0043
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0044"
down_revision = "0043"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "agent_presence",
        sa.Column("employee_id", sa.Integer(), nullable=False),
        sa.Column("queues", sa.JSON(), nullable=False),
        sa.Column("reason", sa.String(length=100), nullable=True),
        sa.Column("node", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["employee_id"], ["employees.id"], name=op.f("fk_agent_presence_employee_id_employees"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_agent_presence_tenant_id_tenants"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("employee_id", name=op.f("pk_agent_presence")),
    )
    op.create_index(op.f("ix_agent_presence_tenant_id"), "agent_presence", ["tenant_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_agent_presence_tenant_id"), table_name="agent_presence")
    op.drop_table("agent_presence")
