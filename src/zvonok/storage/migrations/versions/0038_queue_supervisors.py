"""queue_supervisors: supervisors assigned to queues (a supervisor with assignments sees and acts on those
queues and their agents only)

Revision ID: 0038
Revises: 0036
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0038"
down_revision = "0036"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "queue_supervisors",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("queue_id", sa.Integer(), nullable=False),
        sa.Column("employee_id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["employee_id"],
            ["employees.id"],
            name=op.f("fk_queue_supervisors_employee_id_employees"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["queue_id"], ["queues.id"], name=op.f("fk_queue_supervisors_queue_id_queues"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_queue_supervisors_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_queue_supervisors")),
        sa.UniqueConstraint(
            "queue_id", "employee_id", name=op.f("uq_queue_supervisors_queue_id_employee_id")
        ),
    )
    with op.batch_alter_table("queue_supervisors", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_queue_supervisors_employee_id"), ["employee_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_queue_supervisors_queue_id"), ["queue_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_queue_supervisors_tenant_id"), ["tenant_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("queue_supervisors", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_queue_supervisors_tenant_id"))
        batch_op.drop_index(batch_op.f("ix_queue_supervisors_queue_id"))
        batch_op.drop_index(batch_op.f("ix_queue_supervisors_employee_id"))
    op.drop_table("queue_supervisors")
