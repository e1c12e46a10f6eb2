"""SIP trunks and outbound routes of a company (tenant admins).

Trunks: the list shows each trunk's live state as the REST API reports it
(``GET .../trunks/{id}/status``: the running call engine's view through ``app.state.trunk_status``),
the table body polled by htmx every 5 s. Forms build the API's own schemas (``TrunkCreate``,
``TrunkUpdate``, ``RouteCreate``, ``RouteUpdate``) and call its services, so what the API refuses
(control characters, bad hosts, another company's address) is refused here, shown on the field.

Routes are listed in the order the call engine tries them: the longest matching prefix first, then by
priority (smaller first); "up"/"down" renumber the priorities of one prefix's routes.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Form, HTTPException, Query, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError as PydanticValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from zvonok.api.deps import get_session
from zvonok.org.errors import OrgError
from zvonok.pstn import http as pstn_http
from zvonok.pstn import schemas as s
from zvonok.pstn import service
from zvonok.pstn.models import OutboundRoute, Trunk
from zvonok.web.auth import TenantAdminUser
from zvonok.web.i18n import N_
from zvonok.web.pages._pstn import FORM, field_errors, lines, service_error
from zvonok.web.render import gettext_for, render
from zvonok.web.routing import ADMIN, NavItem, page_router

router = page_router()
NAV = [NavItem("/trunks", N_("Trunks"), ADMIN, order=50), NavItem("/routes", N_("Routes"), ADMIN, order=51)]
Session = Annotated[AsyncSession, Depends(get_session)]
MAX_ROWS = 500
DONE = {"created": N_("Saved."), "saved": N_("Saved."), "deleted": N_("Deleted.")}


def _done(request: Request, done: str | None) -> str | None:
    return gettext_for(request)(DONE[done]) if done in DONE else None


# --- trunks ----------------------------------------------------------------------------------------
async def trunk_state(request: Request, trunk_id: int) -> dict[str, Any]:
    """The API's status of one trunk, as a state for the page: registered, failing, not registering,
    not loaded (disabled, or not yet reloaded) or unavailable (no call engine in this process)."""
    try:
        found = await pstn_http._trunk_status(request, trunk_id)  # the REST route's own reading
    except HTTPException:
        return {"state": "unavailable", "error": None, "calls": 0}
    if found.registered is True:
        state = "registered"
    elif found.registered is False:
        state = "failing"
    elif not found.loaded:
        state = "not_loaded"
    else:
        state = "not_registering"
    return {"state": state, "error": found.last_error, "calls": found.active_calls}


async def _trunk_table(request: Request, session: AsyncSession, tenant_id: int) -> dict[str, Any]:
    rows, total = await service.list_trunks(session, tenant_id, limit=MAX_ROWS)
    return {"trunks": rows, "total": total, "states": {t.id: await trunk_state(request, t.id) for t in rows}}


def _trunk_messages(request: Request) -> dict[str, str]:
    _ = gettext_for(request)
    return {
        "name": _("Required; no line breaks or control characters."),
        "host": _("A host name or an IP address (no spaces, no line breaks)."),
        "port": _("A port from 1 to 65535."),
        "username": _("No line breaks or control characters."),
        "auth_username": _("No line breaks or control characters."),
        "password": _("No line breaks or control characters."),
        "inbound_addresses": _("IP addresses or networks (CIDR), one per line; not another company's."),
        "max_calls": _("A number from 1 to 100000, or empty for no limit."),
        "register": _("A trunk that registers needs a user name and a password."),
        "register_expires": _("From 60 to 86400 seconds."),
        "kind": _("Invalid value."), "transport": _("Invalid value."), "number_format": _("Invalid value."),
        "t38": _("Invalid value."),
    }


class TrunkForm:
    """The trunk form's fields as posted (strings; checkboxes present or not)."""

    def __init__(
        self,
        name: Annotated[str, Form(max_length=300)] = "",
        kind: Annotated[str, Form(max_length=16)] = "carrier",
        host: Annotated[str, Form(max_length=300)] = "",
        port: Annotated[str, Form(max_length=8)] = "5060",
        transport: Annotated[str, Form(max_length=8)] = "udp",
        username: Annotated[str, Form(max_length=300)] = "",
        password: Annotated[str, Form(max_length=300)] = "",
        register_: Annotated[str, Form(alias="register", max_length=8)] = "",  # "register": a BaseModel name
        register_expires: Annotated[str, Form(max_length=8)] = "3600",
        inbound_addresses: Annotated[str, Form(max_length=10_000)] = "",
        max_calls: Annotated[str, Form(max_length=8)] = "",
        number_format: Annotated[str, Form(max_length=16)] = "e164",
        enabled: Annotated[str, Form(max_length=8)] = "",
        tls_verify: Annotated[str, Form(max_length=8)] = "",
        t38: Annotated[str, Form(max_length=8)] = "accept",
    ) -> None:
        self.values: dict[str, Any] = {"name": name, "t38": t38, "kind": kind, "host": host, "port": port, "transport": transport,
                       "username": username, "register": bool(register_), "register_expires": register_expires,
                       "inbound_addresses": inbound_addresses, "max_calls": max_calls,
                       "number_format": number_format, "enabled": bool(enabled), "tls_verify": bool(tls_verify)}
        self.password = password

    def data(self) -> dict[str, Any]:
        """The schema's input: empty optional fields are None, the password only when typed."""
        v = self.values
        data: dict[str, Any] = {
            "name": v["name"], "kind": v["kind"], "host": v["host"], "port": v["port"] or None,
            "transport": v["transport"], "username": v["username"].strip() or None, "register": v["register"],
            "register_expires": v["register_expires"] or 3600, "inbound_addresses": lines(v["inbound_addresses"]),
            "max_calls": v["max_calls"].strip() or None, "number_format": v["number_format"], "enabled": v["enabled"],
            "tls_verify": v["tls_verify"], "t38": v["t38"],
        }
        if self.password:
            data["password"] = self.password
        return data


def _form_of(trunk: Trunk) -> dict[str, Any]:
    return {"name": trunk.name, "kind": trunk.kind, "host": trunk.host, "port": trunk.port,
            "transport": "tls" if trunk.transport == s.TLS_UNVERIFIED else trunk.transport,
            "tls_verify": trunk.transport != s.TLS_UNVERIFIED, "username": trunk.username or "", "register": trunk.register,
            "register_expires": trunk.register_expires, "inbound_addresses": "\n".join(trunk.inbound_addresses or []),
            "max_calls": trunk.max_calls or "", "number_format": trunk.number_format, "enabled": trunk.enabled,
            "has_password": bool(trunk.password), "t38": trunk.t38 or "accept"}


_NEW_TRUNK = {"kind": "carrier", "port": 5060, "transport": "udp", "register_expires": 3600, "number_format": "e164",
              "enabled": True, "tls_verify": True, "t38": "accept"}


@router.get("/trunks")
async def trunks(request: Request, user: TenantAdminUser, session: Session,
                 done: Annotated[str | None, Query(max_length=16)] = None) -> Response:
    context = await _trunk_table(request, session, user.tenant)
    context.update(form=_NEW_TRUNK, errors={}, done=_done(request, done), trunk=None)
    return render(request, "pstn/trunks.html", context)


@router.get("/trunks/rows")
async def trunk_rows(request: Request, user: TenantAdminUser, session: Session) -> Response:
    """The table body alone (htmx polls it every 5 s for the live state)."""
    return render(request, "pstn/_trunk_rows.html", await _trunk_table(request, session, user.tenant))


@router.post("/trunks")
async def create_trunk(request: Request, user: TenantAdminUser, session: Session,
                       form: Annotated[TrunkForm, Depends()]) -> Response:
    _ = gettext_for(request)
    try:
        data = s.TrunkCreate.model_validate(form.data())
        await service.create_trunk(session, user.tenant, data)
        await session.commit()
    except PydanticValidationError as exc:
        errors = field_errors(exc, _trunk_messages(request), _("Invalid value."))
        status = 422
    except OrgError as exc:
        await session.rollback()
        errors = service_error(exc, _trunk_messages(request), _("Invalid value."), _("This conflicts with another trunk."))
        status = exc.status
    else:
        return RedirectResponse("/trunks?done=created", status_code=303)
    context = await _trunk_table(request, session, user.tenant)
    context.update(form=form.values, errors=errors, done=None, trunk=None)
    return render(request, "pstn/trunks.html", context, status_code=status)


@router.get("/trunks/{trunk_id}")
async def edit_trunk(request: Request, trunk_id: int, user: TenantAdminUser, session: Session) -> Response:
    trunk = await service.get_trunk(session, user.tenant, trunk_id)  # another company's: 404
    return render(request, "pstn/trunk_edit.html", {"trunk": trunk, "form": _form_of(trunk), "errors": {},
                                                    "status": await trunk_state(request, trunk.id)})


@router.post("/trunks/{trunk_id}")
async def update_trunk(request: Request, trunk_id: int, user: TenantAdminUser, session: Session,
                       form: Annotated[TrunkForm, Depends()]) -> Response:
    _ = gettext_for(request)
    trunk = await service.get_trunk(session, user.tenant, trunk_id)
    has_password = bool(trunk.password)
    try:
        data = s.TrunkUpdate.model_validate(form.data())
        await service.update_trunk(session, user.tenant, trunk_id, data)
        await session.commit()
    except PydanticValidationError as exc:
        errors = field_errors(exc, _trunk_messages(request), _("Invalid value."))
        status = 422
    except OrgError as exc:
        await session.rollback()
        errors = service_error(exc, _trunk_messages(request), _("Invalid value."), _("This conflicts with another trunk."))
        status = exc.status
    else:
        return RedirectResponse("/trunks?done=saved", status_code=303)
    trunk = await service.get_trunk(session, user.tenant, trunk_id)
    return render(request, "pstn/trunk_edit.html",
                  {"trunk": trunk, "form": {**form.values, "has_password": has_password}, "errors": errors,
                   "status": await trunk_state(request, trunk_id)}, status_code=status)


@router.post("/trunks/{trunk_id}/delete")
async def delete_trunk(request: Request, trunk_id: int, user: TenantAdminUser, session: Session) -> Response:
    _ = gettext_for(request)
    try:
        await service.delete_trunk(session, user.tenant, trunk_id)
        await session.commit()
    except OrgError as exc:
        if exc.status == 404:
            raise
        await session.rollback()
        context = await _trunk_table(request, session, user.tenant)
        context.update(form=_NEW_TRUNK, errors={FORM: _("The trunk is used by outbound routes: delete or change them first.")},
                       done=None, trunk=None)
        return render(request, "pstn/trunks.html", context, status_code=exc.status)
    return RedirectResponse("/trunks?done=deleted", status_code=303)


# --- outbound routes -------------------------------------------------------------------------------
def _engine_order(routes: list[OutboundRoute]) -> list[OutboundRoute]:
    return sorted(routes, key=lambda r: (-len(r.prefix), r.prefix, r.priority, r.id))


async def _route_context(session: AsyncSession, tenant_id: int) -> dict[str, Any]:
    rows, _total = await service.list_routes(session, tenant_id, limit=MAX_ROWS)
    own, _n = await service.list_trunks(session, tenant_id, limit=MAX_ROWS)
    shared, _m = await service.list_trunks(session, None, limit=MAX_ROWS)  # a tenant may route over the operator's
    names = {t.id: t.name for t in own} | {t.id: t.name for t in shared}
    return {"routes": _engine_order(rows), "trunk_names": names,
            "trunk_choices": [(t.id, t.name, False) for t in own] + [(t.id, t.name, True) for t in shared]}


def _route_messages(request: Request) -> dict[str, str]:
    _ = gettext_for(request)
    return {"prefix": _("Digits of the international number without '+' (up to 15); empty matches every number."),
            "trunk_id": _("Choose one of the trunks."), "priority": _("A number from 0 to 10000; smaller is tried first.")}


class RouteForm:
    def __init__(
        self,
        prefix: Annotated[str, Form(max_length=64)] = "",
        trunk_id: Annotated[str, Form(max_length=12)] = "",
        priority: Annotated[str, Form(max_length=12)] = "100",
        enabled: Annotated[str, Form(max_length=8)] = "",
        tls_verify: Annotated[str, Form(max_length=8)] = "",
    ) -> None:
        self.values: dict[str, Any] = {"prefix": prefix.strip().removeprefix("+"), "trunk_id": trunk_id, "priority": priority,
                       "enabled": bool(enabled)}

    def data(self) -> dict[str, Any]:
        return {**self.values, "trunk_id": self.values["trunk_id"] or None, "priority": self.values["priority"] or 100}


_NEW_ROUTE = {"prefix": "", "priority": 100, "enabled": True}


@router.get("/routes")
async def routes(request: Request, user: TenantAdminUser, session: Session,
                 done: Annotated[str | None, Query(max_length=16)] = None) -> Response:
    context = await _route_context(session, user.tenant)
    context.update(form=_NEW_ROUTE, errors={}, done=_done(request, done), route=None)
    return render(request, "pstn/routes.html", context)


async def _save_route(request: Request, user: TenantAdminUser, session: AsyncSession, form: RouteForm,
                      route_id: int | None) -> Response:
    _ = gettext_for(request)
    route = await service.get_route(session, user.tenant, route_id) if route_id is not None else None
    try:
        if route_id is None:
            await service.create_route(session, user.tenant, s.RouteCreate.model_validate(form.data()))
        else:
            await service.update_route(session, user.tenant, route_id, s.RouteUpdate.model_validate(form.data()))
        await session.commit()
    except PydanticValidationError as exc:
        errors = field_errors(exc, _route_messages(request), _("Invalid value."))
        status = 422
    except OrgError as exc:
        await session.rollback()
        errors = service_error(exc, _route_messages(request), _("Invalid value."), _("Invalid value."))
        status = exc.status
    else:
        return RedirectResponse("/routes?done=saved", status_code=303)
    context = await _route_context(session, user.tenant)
    context.update(form=form.values, errors=errors, done=None, route=route)
    return render(request, "pstn/route_edit.html" if route else "pstn/routes.html", context, status_code=status)


@router.post("/routes")
async def create_route(request: Request, user: TenantAdminUser, session: Session,
                       form: Annotated[RouteForm, Depends()]) -> Response:
    return await _save_route(request, user, session, form, None)


@router.get("/routes/{route_id}")
async def edit_route(request: Request, route_id: int, user: TenantAdminUser, session: Session) -> Response:
    route = await service.get_route(session, user.tenant, route_id)
    context = await _route_context(session, user.tenant)
    context.update(route=route, errors={}, form={"prefix": route.prefix, "trunk_id": str(route.trunk_id),
                                                "priority": route.priority, "enabled": route.enabled})
    return render(request, "pstn/route_edit.html", context)


@router.post("/routes/{route_id}")
async def update_route(request: Request, route_id: int, user: TenantAdminUser, session: Session,
                       form: Annotated[RouteForm, Depends()]) -> Response:
    return await _save_route(request, user, session, form, route_id)


@router.post("/routes/{route_id}/delete")
async def delete_route(route_id: int, user: TenantAdminUser, session: Session) -> Response:
    await service.delete_route(session, user.tenant, route_id)
    await session.commit()
    return RedirectResponse("/routes?done=deleted", status_code=303)


@router.post("/routes/{route_id}/move")
async def move_route(route_id: int, user: TenantAdminUser, session: Session,
                     direction: Annotated[str, Form(pattern="^(up|down)$")]) -> Response:
    """One place earlier or later among the routes of the same prefix: the group's priorities are
    renumbered 10, 20, 30... in the new order (through the service: validated, announced)."""
    route = await service.get_route(session, user.tenant, route_id)
    rows, _total = await service.list_routes(session, user.tenant, limit=MAX_ROWS)
    group = [r for r in _engine_order(rows) if r.prefix == route.prefix]
    at = group.index(route)
    other = at - 1 if direction == "up" else at + 1
    if 0 <= other < len(group):
        group[at], group[other] = group[other], group[at]
        for place, member in enumerate(group, start=1):
            if member.priority != place * 10:
                await service.update_route(session, user.tenant, member.id, s.RouteUpdate(priority=place * 10))
        await session.commit()
    return RedirectResponse("/routes", status_code=303)
