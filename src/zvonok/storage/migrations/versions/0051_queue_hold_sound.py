"""queues.hold_sound: a waiting caller hears the music on hold or the ringback tone

Revision ID: 0051
Revises: 0050
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0051"
down_revision = "0050"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("queues") as batch:
        batch.add_column(sa.Column("hold_sound", sa.String(10), nullable=False, server_default="music"))


def downgrade() -> None:
    with op.batch_alter_table("queues") as batch:
        batch.drop_column("hold_sound")
