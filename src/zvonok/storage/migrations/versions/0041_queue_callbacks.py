"""queue_callbacks: callers' callback requests, kept across restarts

Revision ID: 0041
Revises: 0044
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0041"
down_revision = "0044"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "queue_callbacks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("queue_id", sa.Integer(), nullable=False),
        sa.Column("call_id", sa.String(length=100), nullable=False),
        sa.Column("number", sa.String(length=64), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("joined_at", sa.Float(precision=53), nullable=False),
        sa.Column("requested_at", sa.Float(precision=53), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=10), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_result", sa.String(length=40), nullable=True),
        sa.Column("retry_at", sa.Float(precision=53), nullable=True),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("state IN ('waiting', 'dialing', 'done', 'failed', 'cancelled')",
                           name=op.f("ck_queue_callbacks_state")),
        sa.ForeignKeyConstraint(["queue_id"], ["queues.id"], name=op.f("fk_queue_callbacks_queue_id_queues"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name=op.f("fk_queue_callbacks_tenant_id_tenants"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_queue_callbacks")),
    )
    with op.batch_alter_table("queue_callbacks") as batch:
        batch.create_index(batch.f("ix_queue_callbacks_call_id"), ["call_id"], unique=False)
        batch.create_index("ix_queue_callbacks_queue_state", ["queue_id", "state"], unique=False)
        batch.create_index(batch.f("ix_queue_callbacks_tenant_id"), ["tenant_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("queue_callbacks") as batch:
        batch.drop_index(batch.f("ix_queue_callbacks_tenant_id"))
        batch.drop_index("ix_queue_callbacks_queue_state")
        batch.drop_index(batch.f("ix_queue_callbacks_call_id"))
    op.drop_table("queue_callbacks")
