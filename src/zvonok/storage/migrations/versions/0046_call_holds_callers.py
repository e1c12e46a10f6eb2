"""call_holds: the callers waiting in a queue on each node, in line order across the nodes; agent_presence:
the ring strategies' memory across the nodes (issue 14)

Revision ID: 0046
Revises: 0045
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0046"
down_revision = "0045"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("call_holds") as batch:
        batch.add_column(sa.Column("priority", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("since", sa.Float(), nullable=True))
    with op.batch_alter_table("agent_presence") as batch:
        batch.add_column(sa.Column("calls", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("talk_time", sa.Float(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("offered_queue", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("offered_at", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("agent_presence") as batch:
        for column in ("offered_at", "offered_queue", "talk_time", "calls"):
            batch.drop_column(column)
    with op.batch_alter_table("call_holds") as batch:
        batch.drop_column("since")
        batch.drop_column("priority")
