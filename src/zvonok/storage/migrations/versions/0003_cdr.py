"""cdr: call detail records, their legs, and calls in progress

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_PARTY_REFS = (("extension_id", "extensions"), ("employee_id", "employees"), ("office_id", "offices"),
               ("department_id", "departments"))


def _party(side: str) -> list[sa.Column]:  # type: ignore[type-arg]
    return [
        sa.Column(f"{side}_number", sa.String(length=64), nullable=False),
        sa.Column(f"{side}_name", sa.String(length=200), nullable=False),
        *(sa.Column(f"{side}_{col}", sa.Integer(), nullable=True) for col, _ in _PARTY_REFS),
    ]


def _party_fks(side: str) -> list[sa.ForeignKeyConstraint]:
    return [
        sa.ForeignKeyConstraint([f"{side}_{col}"], [f"{table}.id"], name=op.f(f"fk_cdrs_{side}_{col}_{table}"),
                                ondelete="SET NULL")
        for col, table in _PARTY_REFS
    ]


def upgrade() -> None:
    op.create_table(
        "cdrs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("call_id", sa.String(length=64), nullable=False),
        sa.Column("direction", sa.String(length=16), nullable=False),
        sa.Column("internal", sa.Boolean(), nullable=False),
        sa.Column("dialed_number", sa.String(length=64), nullable=False),
        *_party("caller"),
        *_party("callee"),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("duration", sa.Integer(), nullable=False),
        sa.Column("billsec", sa.Integer(), nullable=False),
        sa.Column("disposition", sa.String(length=16), nullable=False),
        sa.Column("hangup_side", sa.String(length=16), nullable=False),
        sa.Column("cause", sa.String(length=64), nullable=False),
        sa.Column("sip_status", sa.Integer(), nullable=True),
        sa.Column("recording_path", sa.String(length=1024), nullable=True),
        sa.Column("cost", sa.Numeric(precision=12, scale=4), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        *_party_fks("caller"),
        *_party_fks("callee"),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name=op.f("fk_cdrs_tenant_id_tenants"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cdrs")),
        sa.UniqueConstraint("call_id", name=op.f("uq_cdrs_call_id")),
    )
    for side in ("caller", "callee"):
        for col, _ in _PARTY_REFS:
            op.create_index(op.f(f"ix_cdrs_{side}_{col}"), "cdrs", [f"{side}_{col}"])
    op.create_index(op.f("ix_cdrs_disposition"), "cdrs", ["disposition"])
    op.create_index(op.f("ix_cdrs_started_at"), "cdrs", ["started_at"])
    op.create_index(op.f("ix_cdrs_tenant_id"), "cdrs", ["tenant_id"])

    op.create_table(
        "cdr_legs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("cdr_id", sa.Integer(), nullable=False),
        sa.Column("leg_id", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("number", sa.String(length=64), nullable=False),
        sa.Column("display_name", sa.String(length=200), nullable=False),
        sa.Column("contact", sa.String(length=1024), nullable=False),
        sa.Column("user_agent", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cause", sa.String(length=64), nullable=True),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["cdr_id"], ["cdrs.id"], name=op.f("fk_cdr_legs_cdr_id_cdrs"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name=op.f("fk_cdr_legs_tenant_id_tenants"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cdr_legs")),
        sa.UniqueConstraint("cdr_id", "leg_id", name=op.f("uq_cdr_legs_cdr_id_leg_id")),
    )
    op.create_index(op.f("ix_cdr_legs_cdr_id"), "cdr_legs", ["cdr_id"])
    op.create_index(op.f("ix_cdr_legs_tenant_id"), "cdr_legs", ["tenant_id"])

    op.create_table(
        "calls_open",
        sa.Column("call_id", sa.String(length=64), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("state", sa.JSON(), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name=op.f("fk_calls_open_tenant_id_tenants"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("call_id", name=op.f("pk_calls_open")),
    )
    op.create_index(op.f("ix_calls_open_tenant_id"), "calls_open", ["tenant_id"])


def downgrade() -> None:
    op.drop_table("calls_open")
    op.drop_table("cdr_legs")
    op.drop_table("cdrs")
