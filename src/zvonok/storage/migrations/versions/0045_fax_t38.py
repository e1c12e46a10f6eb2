"""fax_t38: a trunk's T.38 mode (off | accept | offer) and how each fax went (audio | t38), on the fax
document and on the CDR

Revision ID: 0045
Revises: 0047
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0045"
down_revision = "0047"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("trunks") as batch:
        batch.add_column(sa.Column("t38", sa.String(length=8), nullable=False, server_default="accept"))
    with op.batch_alter_table("fax_documents") as batch:
        batch.add_column(sa.Column("transport", sa.String(length=8), nullable=False, server_default="audio"))
    with op.batch_alter_table("cdrs") as batch:
        batch.add_column(sa.Column("fax_transport", sa.String(length=8), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("cdrs") as batch:
        batch.drop_column("fax_transport")
    with op.batch_alter_table("fax_documents") as batch:
        batch.drop_column("transport")
    with op.batch_alter_table("trunks") as batch:
        batch.drop_column("t38")
