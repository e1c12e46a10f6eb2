"""Call forwarding and DND in the console: an employee's own extensions on ``/me``, any extension of the
company for its admins at ``/extensions/{id}/forwarding`` (linked from the extensions list).

Both forms call :func:`zvonok.org.forwarding.put_forwarding`, the service behind ``PUT .../forwarding``,
so a target is checked (and an outside number normalized) exactly as for the API and the feature codes;
a refused form is shown again with the message next to its field (422) and nothing is saved. Whose:
an employee's extension of a colleague is a 404 (as on the rest of ``/me``), an admin page is 403 for
employees, and another company's extension is a 404 for everyone (the services are tenant-scoped).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Form, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError as PydanticValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from zvonok.api.deps import get_session
from zvonok.org import forwarding, service
from zvonok.org.errors import ValidationError
from zvonok.org.models import Extension
from zvonok.web.auth import TenantAdminUser, TenantUser
from zvonok.web.forms import schema_errors
from zvonok.web.pages.portal import _own_extension
from zvonok.web.render import gettext_for, render
from zvonok.web.routing import page_router

router = page_router()
FEATURE_CODES = ("*72", "*73", "*78", "*79")


def form_of(out: forwarding.ForwardingOut) -> dict[str, str]:
    """A form's values from the stored settings."""
    form = {key: getattr(out, key) or "" for key in forwarding.TARGETS}
    form["dnd"] = "1" if out.dnd else ""
    form["no_answer_seconds"] = str(out.no_answer_seconds)
    return form


async def _save(request: Request, session: AsyncSession, tenant_id: int, ext: Extension, form: dict[str, str]
                ) -> dict[str, str]:
    """Validate and store a submitted form; the field errors (nothing saved) or {}."""
    _ = gettext_for(request)
    target_message = _("Enter an extension of the company or an outside number (not an emergency number, "
                       "not this extension itself), or leave it empty.")
    try:
        data = forwarding.ForwardingIn.model_validate({
            "dnd": bool(form["dnd"]), "no_answer_seconds": form["no_answer_seconds"],
            **{key: form[key] or None for key in forwarding.TARGETS}})
    except PydanticValidationError as exc:
        return schema_errors(exc, {
            **{key: target_message for key in forwarding.TARGETS},
            "no_answer_seconds": _("A number of seconds from 5 to 300."),
        }, _("Invalid value."))
    try:
        await forwarding.put_forwarding(session, tenant_id, ext.id, data)
        await session.commit()
    except ValidationError as exc:
        await session.rollback()  # a target set before the refused one is not kept either
        return {exc.field or "unconditional": target_message if exc.field in forwarding.TARGETS
                else _("Invalid value.")}
    return {}


def _submitted(dnd: str, unconditional: str, busy: str, no_answer: str, no_answer_seconds: str,
               unavailable: str) -> dict[str, str]:
    return {"dnd": "1" if dnd else "", "unconditional": unconditional.strip(), "busy": busy.strip(),
            "no_answer": no_answer.strip(), "no_answer_seconds": no_answer_seconds.strip() or "20",
            "unavailable": unavailable.strip()}


Dnd = Annotated[str, Form(max_length=8)]
TargetField = Annotated[str, Form(max_length=64)]
Seconds = Annotated[str, Form(max_length=8)]


def _page(request: Request, ext: Extension, out: forwarding.ForwardingOut, form: dict[str, str],
          errors: dict[str, str], *, action: str, back: str, saved: bool = False, status_code: int = 200) -> Response:
    context: dict[str, Any] = {"ext": ext, "fwd": out, "form": form, "errors": errors, "action": action,
                               "back": back, "saved": saved, "codes": FEATURE_CODES}
    return render(request, "forwarding/edit.html", context, status_code=status_code)


# --- an employee's own extension (the form is on /me; a refused one is shown on its own page) ----------
@router.get("/me/extensions/{extension_id}/forwarding/state")
async def my_forwarding_state(request: Request, extension_id: int, user: TenantUser,
                              session: Annotated[AsyncSession, Depends(get_session)]) -> Response:
    """The compact state of one of my extensions (htmx: reloaded on its ForwardingChanged event, e.g.
    after a feature code dialled on the phone)."""
    ext = await _own_extension(session, user, extension_id)
    return render(request, "forwarding/_summary.html",
                  {"fwd": await forwarding.get_forwarding(session, user.tenant, ext.id)})


@router.post("/me/extensions/{extension_id}/forwarding")
async def save_my_forwarding(request: Request, extension_id: int, user: TenantUser,
                             session: Annotated[AsyncSession, Depends(get_session)], dnd: Dnd = "",
                             unconditional: TargetField = "", busy: TargetField = "", no_answer: TargetField = "",
                             no_answer_seconds: Seconds = "", unavailable: TargetField = "") -> Response:
    ext = await _own_extension(session, user, extension_id)
    form = _submitted(dnd, unconditional, busy, no_answer, no_answer_seconds, unavailable)
    errors = await _save(request, session, user.tenant, ext, form)
    if errors:
        ext = await _own_extension(session, user, extension_id)
        out = await forwarding.get_forwarding(session, user.tenant, ext.id)
        return _page(request, ext, out, form, errors, action=f"/me/extensions/{ext.id}/forwarding", back="/me",
                     status_code=422)
    return RedirectResponse(f"/me?forwarding_saved={ext.id}#forwarding-{ext.id}", status_code=303)


# --- any extension of the company (tenant admins) ---------------------------------------------------
@router.get("/extensions/{extension_id}/forwarding")
async def extension_forwarding(request: Request, extension_id: int, user: TenantAdminUser,
                               session: Annotated[AsyncSession, Depends(get_session)],
                               saved: bool = False) -> Response:
    ext = await service.get_extension(session, user.tenant, extension_id)  # another company's: 404
    out = await forwarding.get_forwarding(session, user.tenant, ext.id)
    return _page(request, ext, out, form_of(out), {}, action=f"/extensions/{ext.id}/forwarding",
                 back="/extensions", saved=saved)


@router.post("/extensions/{extension_id}/forwarding")
async def save_extension_forwarding(request: Request, extension_id: int, user: TenantAdminUser,
                                    session: Annotated[AsyncSession, Depends(get_session)], dnd: Dnd = "",
                                    unconditional: TargetField = "", busy: TargetField = "",
                                    no_answer: TargetField = "", no_answer_seconds: Seconds = "",
                                    unavailable: TargetField = "") -> Response:
    ext = await service.get_extension(session, user.tenant, extension_id)
    form = _submitted(dnd, unconditional, busy, no_answer, no_answer_seconds, unavailable)
    errors = await _save(request, session, user.tenant, ext, form)
    if errors:
        ext = await service.get_extension(session, user.tenant, extension_id)
        out = await forwarding.get_forwarding(session, user.tenant, ext.id)
        return _page(request, ext, out, form, errors, action=f"/extensions/{ext.id}/forwarding",
                     back="/extensions", status_code=422)
    return RedirectResponse(f"/extensions/{ext.id}/forwarding?saved=1", status_code=303)
