"""crm routing by owner: crm_settings.owner_ring_seconds (an outside call from a client's number rings the
client's owner this long first; 0: off)

Revision ID: 0022
Revises: 0025
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0022"
down_revision = "0025"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("crm_settings") as batch:
        batch.add_column(sa.Column("owner_ring_seconds", sa.Integer(), server_default="0", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("crm_settings") as batch:
        batch.drop_column("owner_ring_seconds")
