"""Fax to e-mail: the mail outbox's ``fax`` letters (:mod:`zvonok.mail.outbox` sends them).

A fax received on a ``fax`` destination with ``emails`` queues a letter when its pages are kept
(:meth:`zvonok.fax.service.FaxStore.finish_receive`); :func:`compose_fax` writes it when the job sends
it: subject and body in the company's language with the sender's number and fax ident, the number it
arrived on, the time in the company's time zone, the pages and T.30's result, the document attached as
PDF.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from zvonok.mail.outbox import Attachment, Company, Composer, Draft
from zvonok.media.prompts import prompt_language
from zvonok.org.errors import NotFound

from .service import FaxFiles, get_fax

TEMPLATES: dict[str, dict[str, str]] = {
    "en": {
        "subject": "Fax from {caller} ({pages} p.)",
        "body": "A fax arrived on {number}.\n\n"
                "From: {caller}{ident}\nReceived: {time}\nPages: {pages}\nResult: {result}\n\n"
                "The document is attached as PDF.\n",
    },
    "ru": {
        "subject": "Факс от {caller} ({pages} стр.)",
        "body": "На номер {number} пришёл факс.\n\n"
                "От: {caller}{ident}\nПолучен: {time}\nСтраниц: {pages}\nРезультат: {result}\n\n"
                "Документ во вложении (PDF).\n",
    },
}


def compose_fax(files: FaxFiles) -> Composer:
    async def compose(session: AsyncSession, company: Company, ref_id: int) -> Draft | None:
        try:
            fax = await get_fax(session, company.id, ref_id)
        except NotFound:
            return None  # deleted before it went
        if not fax.pdf_path:
            return None
        template = TEMPLATES.get(prompt_language(company.language), TEMPLATES["en"])
        received = fax.finished_at or fax.created_at
        ident = f" ({fax.remote_ident})" if fax.remote_ident and fax.remote_ident != fax.remote_number else ""
        fields = {"caller": fax.remote_number or "?", "ident": ident, "number": fax.local_number or "?",
                  "time": company.local(received), "pages": str(fax.pages), "result": fax.result}
        stamp = received.astimezone(company.zone).strftime("%Y%m%d-%H%M%S")
        pdf = Attachment(filename=f"fax-{stamp}.pdf", maintype="application", subtype="pdf",
                         path=files.stored(fax.pdf_path))
        return Draft(subject=template["subject"].format(**fields), body=template["body"].format(**fields),
                     attachments=(pdf,))

    return compose
