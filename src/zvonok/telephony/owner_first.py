"""Routing by owner in the call engine: an outside call from a known client's number rings the client's
owner (the responsible employee) first, then goes to the number's usual destination.

The CRM answers who the owner is through the ``client_owners`` port (:class:`ClientOwners`, implemented by
:class:`zvonok.crm.owner_routing.ClientOwnerDirectory`): the owner's extension and the tenant's ring time.
The engine then runs a one-step ring group made for the call — the owner's extension for that many
seconds, its no-answer destination being the number's own — so the group machinery does the rest: the
owner's phones ring without their forwarding (the usual destination is the fallback), an owner whose phone
is unregistered, on DND or in a call is skipped at once, every device refusing or the time running out
cancels the forks and queues the usual destination on the call.

A port failing (the database down) must not lose the call: the usual destination takes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from zvonok.logs import get_logger

from .ring_group import RingGroupInfo

if TYPE_CHECKING:
    from .call import Call

log = get_logger(__name__)
OWNER_GROUP_NAME = "client owner"


@dataclass(frozen=True, kw_only=True, slots=True)
class OwnerRoute:
    extension: str  # the owner's extension number
    seconds: int  # rung this long before the usual destination
    client_id: int
    employee_id: int


class ClientOwners(Protocol):
    async def owner_route(self, tenant_id: int, number: str) -> OwnerRoute | None: ...


class _GroupCalls(Protocol):
    async def ring(self, call: Call, group: RingGroupInfo, *, from_number: str | None) -> None: ...


class _Engine(Protocol):
    """What this needs of the call engine (its ring-group application)."""

    client_owners: ClientOwners | None

    @property
    def group_calls(self) -> _GroupCalls: ...


def owner_group(tenant_id: int, route: OwnerRoute, kind: str, destination: Any) -> RingGroupInfo:
    """The one-step group that rings ``route``'s extension, then the number's destination."""
    payload = dict(destination) if isinstance(destination, dict) else {}
    return RingGroupInfo(
        id=0,
        tenant_id=tenant_id,
        number=route.extension,
        name=OWNER_GROUP_NAME,
        members=(route.extension,),
        ring_seconds=route.seconds,
        max_seconds=route.seconds,
        no_answer={**payload, "kind": kind},
    )


def applies(route: OwnerRoute | None, kind: str, destination: Any) -> bool:
    """Whether the owner rings first: not when nobody takes calls now, nor when the number rings the owner
    anyway."""
    if route is None or route.seconds <= 0 or kind == "none":
        return False
    return not (
        kind == "extension"
        and isinstance(destination, dict)
        and str(destination.get("number")) == route.extension
    )


async def ring_owner_first(engine: _Engine, call: Call, kind: str, destination: Any, *, caller: str) -> bool:
    """True when the call went to its client's owner first (the usual destination follows on no answer)."""
    owners = engine.client_owners
    if owners is None:
        return False
    try:
        route = await owners.owner_route(call.tenant_id, caller)
    except Exception:  # noqa: BLE001 - the port failing must not lose the call: the usual destination takes it
        log.exception("owner routing: look-up failed", call=call.id, tenant=call.tenant_id)
        return False
    if not applies(route, kind, destination) or call.ended:
        return False
    assert route is not None
    log.info(
        "routing by owner",
        call=call.id,
        tenant=call.tenant_id,
        client=route.client_id,
        extension=route.extension,
        seconds=route.seconds,
    )
    await engine.group_calls.ring(call, owner_group(call.tenant_id, route, kind, destination), from_number=caller)
    return True
