"""CRM e-mails are sent by the mail outbox: the out-going crm_messages still queued get their ``crm``
letter (the outbox job sends them and reports each try back onto the row)

Revision ID: 0034
Revises: 0031
"""

from __future__ import annotations

from alembic import op

revision = "0034"
down_revision = "0031"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "INSERT INTO mail_outbox (tenant_id, kind, ref_id, recipients, state, attempts, next_at, last_error,"
        " created_at, updated_at)"
        " SELECT m.tenant_id, 'crm', m.id, m.to_addr, 'pending', m.attempts, COALESCE(m.next_at, m.at),"
        " COALESCE(SUBSTR(m.error, 1, 200), ''), m.at, m.at"
        " FROM crm_messages m WHERE m.direction = 'out' AND m.status = 'queued'"
    )


def downgrade() -> None:
    # the crm_messages rows stay queued: the CRM's own sending job of before takes them again
    op.execute("DELETE FROM mail_outbox WHERE kind = 'crm'")
