"""The employee portal at ``/me``: my extensions and devices, how to set up a softphone, my SIP password
and my access-number PIN.

Whose: the login's employee (``user.employee_id``); an extension of anyone else, even in the same
company, is a 404. A tenant admin whose login is linked to an employee sees their own phones here too.

Live state: the tenant's event websocket streams an employee the ``RegistrationChanged`` events of their
own extensions (never a colleague's, see :mod:`zvonok.api.ws`), and each devices cell here reloads its
own partial (the extensions page's) when one names it, after a reconnect, and once a minute as a fallback
(an extension given to the employee after the socket opened is streamed only after its next re-check).

Forwarding and DND of each extension: the form is here, the routes in :mod:`zvonok.web.pages.forwarding`;
its one-line state reloads on the extension's ``ForwardingChanged`` (a feature code dialled on the phone).

Voicemail: each extension with a mailbox lists its messages with a player and a delete button (the
routes in :mod:`zvonok.web.pages.voicemail`).

Call center: an employee who may log in to queues gets a link to their agent panel
(:mod:`zvonok.web.pages.agent`: status, queues, pauses, the caller, and the callback requests).

Secrets: a new SIP password is generated here and shown once (only HA1 values are stored); the PIN is
never shown back, not even in a refused form.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

import segno
from fastapi import Depends, Form, HTTPException, Request
from fastapi.responses import Response
from markupsafe import Markup
from sqlalchemy.ext.asyncio import AsyncSession

from zvonok.api.deps import get_session
from zvonok.callcenter import service as service_queues
from zvonok.org import forwarding, service
from zvonok.org.credentials import generate_sip_password
from zvonok.org.errors import NotFound, ValidationError
from zvonok.org.models import Extension
from zvonok.org.pins import PIN_MAX_LENGTH, PIN_MIN_LENGTH, PinProblem, pin_problem
from zvonok.org.softphone import SoftphoneAccount, softphone_accounts
from zvonok.pstn import policies
from zvonok.web.auth import TenantUser, WebUser
from zvonok.web.i18n import N_
from zvonok.web.render import gettext_for, render
from zvonok.web.routing import EMPLOYEE, NavItem, page_router

from .voicemail import my_voicemail

router = page_router()
NAV = [NavItem("/me", N_("My phone"), EMPLOYEE, order=10)]
MAX_EXTENSIONS = 50  # an employee has one or two; a bound all the same
DEVICES_REFRESH = 60  # seconds between fallback reloads of a devices cell (the websocket is the live path)

_PIN_MESSAGES = {
    PinProblem.FORMAT: N_("%(min)s to %(max)s digits."),
    PinProblem.REPEATED: N_("Too easy to guess: a repeated group of digits such as 1212."),
    PinProblem.SEQUENCE: N_("Too easy to guess: a run of digits such as 1234 or 9876."),
    PinProblem.PERSONAL: N_("Too easy to guess: the end of your extension or phone number."),
}


def _employee(user: WebUser) -> int:
    if user.employee_id is None:
        raise HTTPException(404, "this login is not an employee's")
    return user.employee_id


def qr_svg(payload: str, label: str) -> Markup:
    """The payload as an inline SVG QR code, announced to screen readers as an image named ``label``."""
    svg = segno.make(payload, error="m").svg_inline(scale=4, border=2, dark="#000", light="#fff",
                                                    svgclass="qr", omitsize=True)
    # an <svg> is markup we made ourselves; the label is escaped like any attribute value
    return Markup(svg.replace("<svg ", Markup('<svg role="img" aria-label="{}" ').format(label), 1))


async def _own_extensions(session: AsyncSession, user: WebUser) -> list[Extension]:
    rows, _ = await service.list_extensions(session, user.tenant, employee_id=_employee(user), limit=MAX_EXTENSIONS)
    return rows


async def _own_extension(session: AsyncSession, user: WebUser, extension_id: int) -> Extension:
    ext = await service.get_extension(session, user.tenant, extension_id)  # another tenant's: 404
    if ext.employee_id is None or ext.employee_id != _employee(user):
        raise NotFound(f"extension {extension_id} not found")  # a colleague's looks like no extension at all
    return ext


def _bindings(request: Request, tenant_id: int, extension_id: int) -> list[Any]:
    return [b for b in request.app.state.location.tenant_bindings(tenant_id, time.time())
            if b.extension_id == extension_id]


async def _context(request: Request, session: AsyncSession, user: WebUser, *, new_password: tuple[int, str] | None
                   = None, pin_error: str | None = None, pin_done: str | None = None) -> dict[str, Any]:
    _ = gettext_for(request)
    settings = request.app.state.settings
    tenant = await service.get_tenant(session, user.tenant)
    phones = []
    for ext in await _own_extensions(session, user):
        password = new_password[1] if new_password and new_password[0] == ext.id else None
        ways = softphone_accounts(settings, number=ext.number, domain=tenant.sip_domain, password=password,
                                  fallback_host=request.url.hostname)
        first: SoftphoneAccount = ways[0]
        phones.append({
            "ext": ext, "bindings": _bindings(request, user.tenant, ext.id), "ways": ways, "account": first,
            "password": password, "forwarding": (fwd := forwarding.settings_of(ext)),
            "forwarding_form": {**{k: getattr(fwd, k) or "" for k in forwarding.TARGETS}, "dnd": "1" if fwd.dnd else "",
                                "no_answer_seconds": str(fwd.no_answer_seconds)},
            "forwarding_saved": request.query_params.get("forwarding_saved") == str(ext.id),
            "voicemail": await my_voicemail(session, user.tenant, ext.id),
            "qr": qr_svg(first.account_line(), _("QR code of the account of extension %(number)s")
                         % {"number": ext.number}),
        })
    pin = await policies.get_pin(session, user.tenant, _employee(user))
    in_queues = bool(await service_queues.member_queues(session, user.tenant, _employee(user)))
    return {"phones": phones, "has_pin": pin is not None, "pin_updated": pin.updated_at if pin else None,
            "pin_error": pin_error, "pin_done": pin_done, "refresh": DEVICES_REFRESH,
            "pin_min": PIN_MIN_LENGTH, "pin_max": PIN_MAX_LENGTH, "forwarding_codes": ("*72", "*73", "*78", "*79"),
            "voicemail_deleted": request.query_params.get("voicemail_deleted") == "1", "in_queues": in_queues}


@router.get("/me")
async def portal(request: Request, user: TenantUser, session: Annotated[AsyncSession, Depends(get_session)]) -> Response:
    if user.employee_id is None:
        return render(request, "me/unlinked.html")
    return render(request, "me/index.html", await _context(request, session, user))


@router.get("/me/extensions/{extension_id}/devices")
async def my_devices(request: Request, extension_id: int, user: TenantUser,
                     session: Annotated[AsyncSession, Depends(get_session)]) -> Response:
    """One of my extensions' devices cell (htmx: reloaded every few seconds)."""
    ext = await _own_extension(session, user, extension_id)
    return render(request, "extensions/_devices.html",
                  {"ext": ext, "bindings": _bindings(request, user.tenant, ext.id), "now": time.time()})


@router.post("/me/extensions/{extension_id}/password")
async def reset_sip_password(request: Request, extension_id: int, user: TenantUser,
                             session: Annotated[AsyncSession, Depends(get_session)]) -> Response:
    """A new generated SIP password for one of my extensions; the old one stops working at once (phones
    registered with it are refused at their next registration)."""
    ext = await _own_extension(session, user, extension_id)
    password = generate_sip_password()
    await service.set_extension_password(session, user.tenant, ext.id, password)
    await session.commit()
    return render(request, "me/index.html", await _context(request, session, user, new_password=(ext.id, password)))


@router.post("/me/pin")
async def set_pin(request: Request, user: TenantUser, session: Annotated[AsyncSession, Depends(get_session)],
                  pin: Annotated[str, Form(max_length=64)] = "",
                  confirm: Annotated[str, Form(max_length=64)] = "") -> Response:
    _ = gettext_for(request)
    employee_id = _employee(user)
    error = None
    if pin != confirm:
        error = _("The two PINs differ.")
    elif (problem := pin_problem(pin)) is not None:
        error = _(_PIN_MESSAGES[problem]) % {"min": PIN_MIN_LENGTH, "max": PIN_MAX_LENGTH}
    else:
        try:  # the service has the last word (it also knows my extensions and phone numbers)
            await policies.set_pin(session, user.tenant, employee_id, pin)
            await session.commit()
        except ValidationError:
            await session.rollback()
            error = _(_PIN_MESSAGES[PinProblem.PERSONAL])
    if error is not None:
        return render(request, "me/index.html", await _context(request, session, user, pin_error=error),
                      status_code=422)
    return render(request, "me/index.html", await _context(request, session, user, pin_done=_("Your PIN is set.")))


@router.post("/me/pin/clear")
async def clear_pin(request: Request, user: TenantUser, session: Annotated[AsyncSession, Depends(get_session)]) -> Response:
    _ = gettext_for(request)
    try:
        await policies.delete_pin(session, user.tenant, _employee(user))
        await session.commit()
        done = _("Your PIN is cleared: the access number no longer accepts one for you.")
    except NotFound:
        done = _("You had no PIN.")
    return render(request, "me/index.html", await _context(request, session, user, pin_done=done))
