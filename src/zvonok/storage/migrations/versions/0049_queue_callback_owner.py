"""queue_callbacks.owner: the node that keeps a callback request in its line, so that another node takes the
requests of a dead node over (issue 14). The rows there are nobody's (NULL): the next node that starts or
sweeps takes them. The open requests are looked up by state and owner at every sweep: an index on both.

Revision ID: 0049
Revises: 0046
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0049"
down_revision = "0046"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("queue_callbacks") as batch:
        batch.add_column(sa.Column("owner", sa.String(length=64), nullable=True))
    op.create_index("ix_queue_callbacks_state_owner", "queue_callbacks", ["state", "owner"])


def downgrade() -> None:
    op.drop_index("ix_queue_callbacks_state_owner", table_name="queue_callbacks")
    with op.batch_alter_table("queue_callbacks") as batch:
        batch.drop_column("owner")
