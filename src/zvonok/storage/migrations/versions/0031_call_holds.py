"""call_holds: trunk channels and spending held by calls in progress, shared by the nodes of a cluster

Revision ID: 0031
Revises: 0022
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from zvonok.storage.base import UtcDateTime

revision = "0031"
down_revision = "0030"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "call_holds",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("node", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("key", sa.String(96), nullable=False),
        sa.Column("call_id", sa.String(128), nullable=False),
        sa.Column("amount", sa.Numeric(18, 4), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
    )
    op.create_index("ix_call_holds_kind_key", "call_holds", ["kind", "key"])


def downgrade() -> None:
    op.drop_index("ix_call_holds_kind_key", table_name="call_holds")
    op.drop_table("call_holds")
