"""IVR menus: CRUD in one tenant with validation, and the port the call engine reads menus through.

A menu's destinations (its keys, and where a caller goes after the last timeout or wrong key) are
``{"kind": ..., <payload>}``: ``extension``, ``ring``, ``conference``, ``external`` (the payloads of
:mod:`zvonok.pstn.destinations`), ``queue``, ``menu`` (``{"menu": <id>}``), ``fax`` (a fax terminal
receives, e-mailed to its ``emails``) and ``hangup``. Voicemail is refused until the engine carries it
out from a menu (a key that leads nowhere is worse than no key).

Validation (422, the field named): every extension, room and menu named exists in the tenant, and no
cycle of menus runs without a caller's key — menus whose timeouts lead from one to the next and back
would keep a silent caller (and a trunk channel) forever. Key cycles are fine: the caller chose.
Deleting a menu that another menu or a number still leads to is refused (409).

Services flush but never commit; each write queues an :class:`~zvonok.ivr.events.IvrChanged`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from zvonok.destination import MENU_KINDS, Destination, parse
from zvonok.destination.references import check_references
from zvonok.org import quotas
from zvonok.org.errors import InUse, ValidationError
from zvonok.org.models import Extension
from zvonok.org.scope import get_in_tenant, page_in_tenant
from zvonok.pstn.destinations import menu_refs
from zvonok.pstn.models import PhoneNumber
from zvonok.storage.db import Database, emit
from zvonok.telephony.cache import BoundedCache
from zvonok.telephony.ivr_dialogue import MenuSpec, Target

from . import events, schemas
from .models import IvrMenu
from .prompts import IvrPrompts, PromptError


def max_menus() -> int:
    """A company's menus at most (zvonok.org.quotas: a call loads them all)."""
    return quotas.limit("ivr_menus")


def menu_out(menu: IvrMenu) -> schemas.MenuOut:
    greeting: Literal["upload", "text", "none"] = "upload" if menu.has_upload else "text" if menu.prompt_text else "none"
    return schemas.MenuOut(id=menu.id, tenant_id=menu.tenant_id, name=menu.name, prompt_text=menu.prompt_text,
                           voice=menu.voice, greeting=greeting, keys=menu.keys, direct_dial=menu.direct_dial,
                           timeout=menu.timeout, digit_timeout=menu.digit_timeout, retries=menu.retries,
                           repeat_key=menu.repeat_key, timeout_destination=menu.timeout_destination,
                           invalid_destination=menu.invalid_destination)


async def _clean_menu(session: AsyncSession, tenant_id: int, menu_id: int | None, data: dict[str, Any]) -> None:
    """Check and normalize ``data``'s destinations in place (``menu_id`` None: a new menu)."""
    placed: list[tuple[str, Destination]] = []

    def take(value: Any, where: str) -> dict[str, Any]:
        try:
            dest = parse(value, kinds=MENU_KINDS, path=where)
        except ValueError as exc:
            raise ValidationError(str(exc), field=where.split(".")[0]) from None
        placed.append((where, dest))
        return dest.stored()

    data["keys"] = {key: take(target, f"keys.{key}") for key, target in sorted(data["keys"].items())}
    for name in ("timeout_destination", "invalid_destination"):
        if data.get(name) is not None:
            data[name] = take(data[name], name)
    if data.get("repeat_key") is not None and data["repeat_key"] in data["keys"]:
        raise ValidationError(f"repeat_key: {data['repeat_key']} is also a menu key", field="repeat_key")
    await check_references(session, tenant_id, placed, menus_too=() if menu_id is None else (menu_id,))
    others = {m.id: m for m in (await session.execute(select(IvrMenu).where(IvrMenu.tenant_id == tenant_id))).scalars()}
    # the silent caller's path: each menu's timeout destination; a cycle on it never ends
    after_timeout: dict[int, int | None] = {}
    for other in others.values():
        dest = other.timeout_destination
        after_timeout[other.id] = dest["menu"] if dest is not None and dest.get("kind") == "menu" else None
    me = menu_id if menu_id is not None else 0  # a new menu: nothing leads to it yet
    dest = data.get("timeout_destination")
    after_timeout[me] = dest["menu"] if dest is not None and dest["kind"] == "menu" else None
    seen = [me]
    nxt = after_timeout.get(me)
    while nxt is not None:
        if nxt in seen:
            path = " → ".join(str(m) for m in [*seen[seen.index(nxt):], nxt])
            raise ValidationError(f"timeout_destination: the menus {path} lead to each other on timeouts: a "
                                  "silent caller would never leave them", field="timeout_destination")
        seen.append(nxt)
        nxt = after_timeout.get(nxt)


async def _speak(prompts: IvrPrompts, text: str | None, voice: str) -> None:
    if text:
        try:
            await asyncio.to_thread(prompts.speak, text, voice)
        except PromptError as exc:
            raise ValidationError(f"prompt_text: {exc}", field="prompt_text") from None


async def create_menu(session: AsyncSession, tenant_id: int, data: schemas.MenuCreate, prompts: IvrPrompts) -> IvrMenu:
    await quotas.check(session, tenant_id, "ivr_menus", IvrMenu)
    values = data.model_dump()
    await _clean_menu(session, tenant_id, None, values)
    await _speak(prompts, values["prompt_text"], values["voice"])
    menu = IvrMenu(tenant_id=tenant_id, has_upload=False, **values)
    session.add(menu)
    await session.flush()
    emit(session, events.IvrChanged(tenant_id=tenant_id, menu_id=menu.id))
    return menu


async def get_menu(session: AsyncSession, tenant_id: int, menu_id: int) -> IvrMenu:
    return await get_in_tenant(session, IvrMenu, tenant_id, menu_id, "IVR menu")


async def list_menus(session: AsyncSession, tenant_id: int, *, limit: int, offset: int) -> tuple[list[IvrMenu], int]:
    return await page_in_tenant(session, IvrMenu, tenant_id, order_by=[IvrMenu.id], limit=limit, offset=offset)


_FIELDS = ("name", "prompt_text", "voice", "keys", "direct_dial", "timeout", "digit_timeout", "retries", "repeat_key",
           "timeout_destination", "invalid_destination")
_NULLABLE = {"prompt_text", "repeat_key", "timeout_destination", "invalid_destination"}


async def update_menu(session: AsyncSession, tenant_id: int, menu_id: int, data: schemas.MenuUpdate,
                      prompts: IvrPrompts) -> IvrMenu:
    menu = await get_menu(session, tenant_id, menu_id)
    changes = data.model_dump(exclude_unset=True)
    for name, value in changes.items():
        if value is None and name not in _NULLABLE:
            raise ValidationError(f"{name}: may not be null", field=name)
    values = {name: changes.get(name, getattr(menu, name)) for name in _FIELDS}
    await _clean_menu(session, tenant_id, menu.id, values)
    if values["prompt_text"] != menu.prompt_text or values["voice"] != menu.voice:
        await _speak(prompts, values["prompt_text"], values["voice"])
    for name in _FIELDS:
        setattr(menu, name, values[name])
    await session.flush()
    emit(session, events.IvrChanged(tenant_id=tenant_id, menu_id=menu.id))
    return menu


def _leads_to(kind: str, payload: Mapping[str, Any], menu_id: int) -> bool:
    return any(ref == menu_id for _, ref in menu_refs(kind, dict(payload)))


async def delete_menu(session: AsyncSession, tenant_id: int, menu_id: int, prompts: IvrPrompts) -> None:
    menu = await get_menu(session, tenant_id, menu_id)
    users: list[str] = []
    for other in (await session.execute(select(IvrMenu).where(IvrMenu.tenant_id == tenant_id,
                                                              IvrMenu.id != menu_id))).scalars():
        targets = [*other.keys.values(), other.timeout_destination, other.invalid_destination]
        if any(t is not None and t.get("kind") == "menu" and t.get("menu") == menu_id for t in targets):
            users.append(f"menu {other.id}")
    for number in (await session.execute(select(PhoneNumber).where(PhoneNumber.tenant_id == tenant_id))).scalars():
        if number.destination_kind in ("ivr", "schedule") and _leads_to(number.destination_kind, number.destination,
                                                                        menu_id):
            users.append(f"DID {number.number}")
    if users:
        raise InUse(f"IVR menu {menu_id} is used by {', '.join(users)}")
    await session.delete(menu)
    await session.flush()
    await asyncio.to_thread(prompts.remove_upload, tenant_id, menu_id)
    emit(session, events.IvrChanged(tenant_id=tenant_id, menu_id=menu_id))


async def store_greeting(session: AsyncSession, tenant_id: int, menu_id: int, data: bytes, prompts: IvrPrompts) -> float:
    menu = await get_menu(session, tenant_id, menu_id)
    try:
        seconds = await asyncio.to_thread(prompts.store_upload, tenant_id, menu_id, data)
    except PromptError as exc:
        raise ValidationError(f"file: {exc}", field="file") from None
    menu.has_upload = True
    await session.flush()
    emit(session, events.IvrChanged(tenant_id=tenant_id, menu_id=menu_id))
    return seconds


async def remove_greeting(session: AsyncSession, tenant_id: int, menu_id: int, prompts: IvrPrompts) -> None:
    menu = await get_menu(session, tenant_id, menu_id)
    menu.has_upload = False
    await session.flush()
    await asyncio.to_thread(prompts.remove_upload, tenant_id, menu_id)
    emit(session, events.IvrChanged(tenant_id=tenant_id, menu_id=menu_id))


def _target(value: Mapping[str, Any] | None) -> Target | None:
    if value is None:
        return None
    return Target(kind=str(value["kind"]), payload={k: v for k, v in value.items() if k != "kind"})


Menus = tuple[dict[int, MenuSpec], frozenset[str]]


class MenuDirectory:
    """The call engine's port: a tenant's menus as :class:`MenuSpec` (greetings resolved to files), and
    its extension numbers when a menu allows direct dial. Cached per tenant (bounded) until an
    :class:`~zvonok.ivr.events.IvrChanged` of the tenant, or ``ttl`` (new extensions for direct dial)."""

    def __init__(self, db: Database, prompts: IvrPrompts, ttl: float = 30.0) -> None:
        self.db = db
        self.prompts = prompts
        self._menus: BoundedCache[int, Menus] = BoundedCache(ttl=ttl, negative_ttl=ttl, max_entries=10_000,
                                                             max_misses=10_000)

    def on_event(self, event: object) -> None:
        if isinstance(event, events.IvrChanged):
            self._menus.discard(event.tenant_id)

    async def menus(self, tenant_id: int) -> Menus:
        found, cached = self._menus.get(tenant_id)
        if found and cached is not None:
            return cached
        menus = await self._load(tenant_id)
        self._menus.put(tenant_id, menus)
        return menus

    async def _load(self, tenant_id: int) -> Menus:
        async with self.db.session() as session:
            rows = list((await session.execute(select(IvrMenu).where(IvrMenu.tenant_id == tenant_id)
                                               .limit(max_menus()))).scalars())
            extensions: frozenset[str] = frozenset()
            if any(row.direct_dial for row in rows):
                extensions = frozenset((await session.execute(select(Extension.number).where(
                    Extension.tenant_id == tenant_id))).scalars())
        # the files' existence, for all the menus in one trip to a thread
        paths = await asyncio.to_thread(lambda: [
            self.prompts.greeting(tenant_id, row.id, row.prompt_text, row.voice, row.has_upload) for row in rows])
        specs: dict[int, MenuSpec] = {}
        for row, path in zip(rows, paths, strict=True):
            specs[row.id] = MenuSpec(
                id=row.id, prompt=str(path) if path is not None else "",
                keys={key: t for key, value in row.keys.items() if (t := _target(value)) is not None},
                direct_dial=row.direct_dial, timeout=float(row.timeout), digit_timeout=float(row.digit_timeout),
                retries=row.retries, repeat_key=row.repeat_key, timeout_target=_target(row.timeout_destination),
                invalid_target=_target(row.invalid_destination))
        return specs, extensions
