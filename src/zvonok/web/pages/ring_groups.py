"""Ring groups of a company (tenant admins): the list, a form to create one, edit and delete.

A group is a number dialed like an extension that rings its members all at once, one after another
(hunt) or in turn (round robin), then sends the call on when nobody answers. The forms build the API's
own schemas (:mod:`zvonok.ringgroup.schemas`) and call its service, so what the API refuses (an unknown
extension, a number already taken, a bad outside number) is refused here, shown on the field.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import Depends, Form, Query, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError as PydanticValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from zvonok.api.deps import get_session
from zvonok.org.errors import OrgError
from zvonok.org.models import Extension
from zvonok.ringgroup import schemas as s
from zvonok.ringgroup import service
from zvonok.ringgroup.models import RingGroup
from zvonok.web.auth import TenantAdminUser
from zvonok.web.i18n import N_
from zvonok.web.pages._pstn import FORM, field_errors, lines
from zvonok.web.pages.destination_form import choices, from_form, to_form
from zvonok.web.render import gettext_for, render
from zvonok.web.routing import ADMIN, NavItem, page_router

router = page_router()
NAV = [NavItem("/ring-groups", N_("Ring groups"), ADMIN, order=33)]
Session = Annotated[AsyncSession, Depends(get_session)]
MAX_ROWS = 500
STRATEGIES = {"simultaneous": N_("All at once"), "hunt": N_("One after another"),
              "round_robin": N_("In turn (round robin)")}
NO_ANSWER_KINDS = choices(("extension", "voicemail", "external", "conference", "ring_group", "queue"),
                          empty=N_("Hang up"))
DONE = {"saved": N_("Saved."), "deleted": N_("Deleted.")}
_EXTENSION_MISSING = re.compile(r"extension ([0-9]{2,8}) does not exist")
_GROUP_MISSING = re.compile(r"ring group ([0-9]{2,8}) does not exist")


def _messages(request: Request) -> dict[str, str]:
    _ = gettext_for(request)
    return {
        "number": _("2 to 8 digits, not used by an extension, a conference room or another group."),
        "name": _("A name of 1 to 100 characters, without line breaks."),
        "strategy": _("Choose from the list."),
        "members": _("One member per line: an extension number, or an outside number with + and the country code."),
        "ring_seconds": _("Whole seconds from 5 to 300."),
        "max_seconds": _("Whole seconds from 5 to 3600, or empty."),
        "no_answer": _("Check where unanswered calls go."),
    }


def _service_message(request: Request, exc: OrgError) -> str:
    _ = gettext_for(request)
    text = exc.message
    if (found := _EXTENSION_MISSING.search(text)) is not None:
        return str(_("Extension %(number)s does not exist.") % {"number": found.group(1)})
    if (found := _GROUP_MISSING.search(text)) is not None:
        return str(_("Ring group %(number)s does not exist.") % {"number": found.group(1)})
    if exc.field == "number" and "destination" in text:
        return str(_("Calls are routed to this group: change their routing before its number."))
    if exc.field == "number":
        return str(_("This number is already taken."))
    if "to itself" in text:
        return str(_("A group cannot send unanswered calls to itself."))
    if "simultaneous" in text:
        return str(_("A group that rings all at once takes extensions only."))
    if exc.status == 409:
        return str(_("Calls are routed to this group: change their routing first."))
    return _messages(request).get(exc.field or "", str(_("Invalid value.")))


class GroupForm:
    def __init__(
        self,
        number: Annotated[str, Form(max_length=20)] = "",
        name: Annotated[str, Form(max_length=200)] = "",
        strategy: Annotated[str, Form(max_length=20)] = "simultaneous",
        members: Annotated[str, Form(max_length=2000)] = "",
        ring_seconds: Annotated[str, Form(max_length=10)] = "20",
        max_seconds: Annotated[str, Form(max_length=10)] = "",
        no_answer_kind: Annotated[str, Form(max_length=20)] = "",
        no_answer_target: Annotated[str, Form(max_length=40)] = "",
    ) -> None:
        self.values: dict[str, Any] = {"number": number.strip(), "name": name, "strategy": strategy,
                                       "members": members, "ring_seconds": ring_seconds.strip(),
                                       "max_seconds": max_seconds.strip(), "no_answer_kind": no_answer_kind,
                                       "no_answer_target": no_answer_target.strip()}

    def data(self) -> dict[str, Any]:
        v = self.values
        kind = v["no_answer_kind"]
        return {"number": v["number"], "name": v["name"], "strategy": v["strategy"], "members": lines(v["members"]),
                "ring_seconds": v["ring_seconds"] or 20, "max_seconds": v["max_seconds"] or None,
                "no_answer": from_form(kind, v["no_answer_target"])}


def _form_of(group: RingGroup) -> dict[str, Any]:
    no_answer_kind, no_answer_target = to_form(group.no_answer)
    return {"number": group.number, "name": group.name, "strategy": group.strategy,
            "members": "\n".join(group.members), "ring_seconds": str(group.ring_seconds),
            "max_seconds": str(group.max_seconds or ""), "no_answer_kind": no_answer_kind,
            "no_answer_target": no_answer_target}


_NEW = {"number": "", "name": "", "strategy": "hunt", "members": "", "ring_seconds": "20", "max_seconds": "",
        "no_answer_kind": "", "no_answer_target": ""}


async def _context(session: AsyncSession, tenant_id: int) -> dict[str, Any]:
    rows, _total = await service.list_groups(session, tenant_id, limit=MAX_ROWS, offset=0)
    extensions = (await session.execute(select(Extension.number, Extension.display_name)
                                        .where(Extension.tenant_id == tenant_id).order_by(Extension.number)
                                        .limit(2000))).all()
    return {"groups": rows, "strategies": STRATEGIES, "no_answer_kinds": NO_ANSWER_KINDS,
            "extension_choices": [(n, d) for n, d in extensions]}


@router.get("/ring-groups")
async def ring_groups(request: Request, user: TenantAdminUser, session: Session,
                      done: Annotated[str | None, Query(max_length=16)] = None) -> Response:
    context = await _context(session, user.tenant)
    context.update(form=_NEW, errors={}, group=None,
                   done=gettext_for(request)(DONE[done]) if done in DONE else None)
    return render(request, "ring_groups/index.html", context)


async def _save(request: Request, user: TenantAdminUser, session: AsyncSession, form: GroupForm,
                group_id: int | None) -> Response:
    _ = gettext_for(request)
    group = await service.get_group(session, user.tenant, group_id) if group_id is not None else None
    try:
        if group_id is None:
            await service.create_group(session, user.tenant, s.RingGroupCreate.model_validate(form.data()))
        else:
            data = form.data()
            await service.update_group(session, user.tenant, group_id, s.RingGroupUpdate.model_validate(data))
        await session.commit()
    except PydanticValidationError as exc:
        errors = field_errors(exc, _messages(request), _("Invalid value."))
        status = 422
    except OrgError as exc:
        if exc.status == 404:
            raise
        await session.rollback()
        errors = {exc.field or FORM: _service_message(request, exc)}
        status = 422 if exc.status != 409 else 409
    else:
        return RedirectResponse("/ring-groups?done=saved", status_code=303)
    if "no_answer" in errors:
        errors["no_answer_target"] = errors.pop("no_answer")
    context = await _context(session, user.tenant)
    context.update(form=form.values, errors=errors, done=None, group=group)
    return render(request, "ring_groups/edit.html" if group else "ring_groups/index.html", context,
                  status_code=status)


@router.post("/ring-groups")
async def create_ring_group(request: Request, user: TenantAdminUser, session: Session,
                            form: Annotated[GroupForm, Depends()]) -> Response:
    return await _save(request, user, session, form, None)


@router.get("/ring-groups/{group_id}")
async def edit_ring_group(request: Request, group_id: int, user: TenantAdminUser, session: Session) -> Response:
    group = await service.get_group(session, user.tenant, group_id)  # another tenant's: 404 page
    context = await _context(session, user.tenant)
    context.update(group=group, form=_form_of(group), errors={}, done=None)
    return render(request, "ring_groups/edit.html", context)


@router.post("/ring-groups/{group_id}")
async def update_ring_group(request: Request, group_id: int, user: TenantAdminUser, session: Session,
                            form: Annotated[GroupForm, Depends()]) -> Response:
    return await _save(request, user, session, form, group_id)


@router.post("/ring-groups/{group_id}/delete")
async def delete_ring_group(request: Request, group_id: int, user: TenantAdminUser, session: Session) -> Response:
    group = await service.get_group(session, user.tenant, group_id)
    try:
        await service.delete_group(session, user.tenant, group_id)
        await session.commit()
    except OrgError as exc:
        if exc.status == 404:
            raise
        await session.rollback()
        context = await _context(session, user.tenant)
        context.update(group=group, form=_form_of(group), done=None,
                       errors={FORM: gettext_for(request)("Calls are routed to this group: change their routing "
                                                          "first.")})
        return render(request, "ring_groups/edit.html", context, status_code=409)
    return RedirectResponse("/ring-groups?done=deleted", status_code=303)
