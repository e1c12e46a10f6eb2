"""not_ready_reasons.code: the digits an agent dials after *47 to pause with the reason (NULL: none), unique in
the company

Revision ID: 0052
Revises: 0051
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0052"
down_revision = "0051"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("not_ready_reasons") as batch:
        batch.add_column(sa.Column("code", sa.String(4), nullable=True))
        batch.create_unique_constraint(op.f("uq_not_ready_reasons_tenant_id_code"), ["tenant_id", "code"])


def downgrade() -> None:
    with op.batch_alter_table("not_ready_reasons") as batch:
        batch.drop_constraint(op.f("uq_not_ready_reasons_tenant_id_code"), type_="unique")
        batch.drop_column("code")
