"""fax_documents: faxes received on DIDs and sent through trunks (direction, status, numbers, T.30
result, pages, TIFF/PDF paths, send attempts)

Revision ID: 0026
Revises: 0027
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0026"
down_revision = "0027"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "fax_documents",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("direction", sa.String(length=3), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("remote_number", sa.String(length=64), nullable=False),
        sa.Column("local_number", sa.String(length=64), nullable=False),
        sa.Column("remote_ident", sa.String(length=32), nullable=False),
        sa.Column("pages", sa.Integer(), nullable=False),
        sa.Column("result", sa.String(length=200), nullable=False),
        sa.Column("call_id", sa.String(length=64), nullable=True),
        sa.Column("tiff_path", sa.String(length=255), nullable=False),
        sa.Column("pdf_path", sa.String(length=255), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.CheckConstraint("direction IN ('in', 'out')", name=op.f("ck_fax_documents_direction")),
        sa.CheckConstraint(
            "status IN ('receiving', 'received', 'queued', 'sending', 'sent', 'failed')",
            name=op.f("ck_fax_documents_status"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_fax_documents_tenant_id_tenants"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fax_documents")),
    )
    op.create_index(op.f("ix_fax_documents_tenant_id"), "fax_documents", ["tenant_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_fax_documents_tenant_id"), table_name="fax_documents")
    op.drop_table("fax_documents")
