"""telephony: persisted SIP registrations (the location service's durable copy)

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sip_registrations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("extension_id", sa.Integer(), nullable=False),
        sa.Column("aor", sa.String(length=255), nullable=False),
        sa.Column("contact", sa.String(length=1024), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.Column("registered_at", sa.Float(), nullable=False),
        sa.Column("q", sa.Float(), nullable=True),
        sa.Column("source", sa.String(length=128), nullable=False),
        sa.Column("user_agent", sa.String(length=255), nullable=False),
        sa.Column("call_id", sa.String(length=255), nullable=False),
        sa.Column("cseq", sa.BigInteger(), nullable=False),
        sa.Column("instance", sa.String(length=255), nullable=True),
        sa.Column("reg_id", sa.Integer(), nullable=True),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["extension_id"], ["extensions.id"],
                                name=op.f("fk_sip_registrations_extension_id_extensions"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"],
                                name=op.f("fk_sip_registrations_tenant_id_tenants"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sip_registrations")),
        sa.UniqueConstraint("extension_id", "contact", name=op.f("uq_sip_registrations_extension_id_contact")),
    )
    op.create_index(op.f("ix_sip_registrations_expires_at"), "sip_registrations", ["expires_at"])
    op.create_index(op.f("ix_sip_registrations_extension_id"), "sip_registrations", ["extension_id"])
    op.create_index(op.f("ix_sip_registrations_tenant_id"), "sip_registrations", ["tenant_id"])


def downgrade() -> None:
    op.drop_table("sip_registrations")
