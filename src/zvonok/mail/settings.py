"""A company's own SMTP server (``voicemail_smtp``: voicemail, fax and CRM e-mails go through it), read and
written for the REST route (``/voicemail/smtp``) and the console's mail settings page alike. The password
is write-only: a PUT without one keeps the stored one."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from zvonok.voicemail.schemas import SmtpIn, SmtpOut

from .models import TenantSmtp


def smtp_out(row: TenantSmtp) -> SmtpOut:
    return SmtpOut(host=row.host, port=row.port, username=row.username, has_password=row.password is not None,
                   security=row.security, sender=row.sender)


async def smtp_row(session: AsyncSession, tenant_id: int) -> TenantSmtp | None:
    return (await session.execute(select(TenantSmtp).where(TenantSmtp.tenant_id == tenant_id))).scalar_one_or_none()


async def put_smtp(session: AsyncSession, tenant_id: int, body: SmtpIn, *, keep_password: bool) -> TenantSmtp:
    """Set the server; ``keep_password``: the stored password stays (the form or the request left it out)."""
    row = await smtp_row(session, tenant_id)
    if row is None:
        row = TenantSmtp(tenant_id=tenant_id)
        session.add(row)
    row.host, row.port, row.username = body.host, body.port, body.username
    row.security, row.sender = body.security, body.sender
    if not keep_password:
        row.password = body.password
    await session.flush()
    return row


async def delete_smtp(session: AsyncSession, tenant_id: int) -> None:
    row = await smtp_row(session, tenant_id)
    if row is not None:
        await session.delete(row)
        await session.flush()
