"""Where a call can be sent: one typed union for every place that names a destination.

A DID (``phone_numbers.destination_kind`` + ``destination``), a branch of a DID's schedule, an IVR
menu's keys and its timeout/invalid destinations, a ring group's no-answer destination and a call-center
queue's overflow all store the same JSON: ``{"kind": ..., <that kind's fields>}`` (a DID keeps the kind in
its own column). :data:`Destination` is that JSON as a pydantic discriminated union on ``kind``; the
stored form does not change (``model_dump`` gives back exactly what is stored), so no migration.

Each place allows some kinds (:data:`DID_KINDS`, :data:`BRANCH_KINDS`, :data:`MENU_KINDS` ...):
:func:`parse` refuses any other with a message naming the place and the kinds it takes. Whether the
things named exist in the tenant (extensions, ring groups, rooms, menus, queues) is
:mod:`zvonok.destination.references`' job: this module is pure (no database), so the call engine can
import it.

Messages name the place in the payload (``keys.1.numbers[1]: an extension number is 2-8 digits``), as
the API's 422 answers always have.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

import pydantic
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, TypeAdapter, model_validator

from zvonok.dialing import DialingError, russian_plan
from zvonok.dialing import normalize as normalize_dialed

_DIGITS = re.compile(r"^[0-9]{2,8}$")
# The plan only matters for numbers of its own country code: "+7" numbers must have 10 national digits.
_E164_PLAN = russian_plan(None)
MAX_RING = 20
MAX_FAX_EMAILS = 10
# the same rule as org.schemas.Email (this module is pure: it imports no domain)
_EMAIL = re.compile(r"^[^@\s,<>]+@[^@\s,<>]+\.[^@\s,<>]+$")


def to_e164(value: str) -> str:
    """``"+7 (495) 123-45-67"`` -> ``"+74951234567"``; ValueError saying why otherwise."""
    text = value.strip()
    if not text.lstrip("( ").startswith("+"):
        raise ValueError(f"{value!r}: write the number in international form, '+' and the country code")
    try:
        dest = normalize_dialed(text, _E164_PLAN)
    except DialingError as exc:
        raise ValueError(str(exc)) from None
    if dest.e164 is None:
        raise ValueError(f"{value!r} is not an E.164 number")
    return dest.e164


def _digits(what: str) -> BeforeValidator:
    def check(value: Any) -> str:
        if not isinstance(value, str) or not _DIGITS.match(value):
            raise ValueError(f"{what} is 2-8 digits")
        return value

    return BeforeValidator(check)


def _ring_numbers(value: Any) -> Any:
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_RING:
        raise ValueError(f"a list of 1 to {MAX_RING} extension numbers")
    return value


def _unique(value: list[str]) -> list[str]:
    if len(set(value)) != len(value):
        raise ValueError("an extension is listed twice")
    return value


def _timeout(value: Any) -> int:
    if type(value) is not int or not 5 <= value <= 600:
        raise ValueError("whole seconds from 5 to 600")
    return value


def _menu_id(value: Any) -> int:
    if type(value) is not int or value < 1:
        raise ValueError("an IVR menu's id")
    return value


def _queue_name(value: Any) -> str:
    if not isinstance(value, str) or not 1 <= len(value.strip()) <= 100:
        raise ValueError("a queue name (1-100 characters)")
    return value.strip()


def _e164(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("an E.164 number")
    return to_e164(value)


MAX_QUEUE_PRIORITY = 100  # the call center's VIP priorities share this range (callcenter.schemas)


def _priority(value: Any) -> int:
    if type(value) is not int or not 1 <= value <= MAX_QUEUE_PRIORITY:
        raise ValueError(f"a whole number from 1 to {MAX_QUEUE_PRIORITY} (higher waits ahead; others have 0)")
    return value


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError("true or false")
    return value


ExtensionNumber = Annotated[str, _digits("an extension number")]
GroupNumber = Annotated[str, _digits("a ring group number")]
RoomNumber = Annotated[str, _digits("a conference room number")]
QueueNumber = Annotated[str, _digits("a queue number")]
SlotNumber = Annotated[str, _digits("a park slot")]


class _Destination(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def payload(self) -> dict[str, Any]:
        """The stored fields without ``kind`` (a DID keeps its kind in its own column)."""
        return self.model_dump(exclude={"kind"}, exclude_none=True)

    def stored(self) -> dict[str, Any]:
        """``{"kind": ..., <fields>}``: how a branch, a key or an overflow is stored."""
        return self.model_dump(exclude_none=True)


class Extension(_Destination):
    """Ring one extension of the tenant (its registered devices)."""

    kind: Literal["extension"] = "extension"
    number: ExtensionNumber


class Ring(_Destination):
    """Ring several extensions at once (a DID's ad-hoc group); ``timeout`` seconds, else the default."""

    kind: Literal["ring"] = "ring"
    numbers: Annotated[
        list[ExtensionNumber], BeforeValidator(_ring_numbers), pydantic.AfterValidator(_unique)
    ]
    timeout: Annotated[int | None, BeforeValidator(_timeout)] = None


class RingGroup(_Destination):
    """A ring group of the tenant by its number (zvonok.ringgroup)."""

    kind: Literal["ring_group"] = "ring_group"
    number: GroupNumber


class Conference(_Destination):
    """A conference room of the tenant by its number (zvonok.conference)."""

    kind: Literal["conference"] = "conference"
    number: RoomNumber


class Park(_Destination):
    """A park slot of the tenant (``slot`` None: the first free one). No place routes here yet: calls
    are parked by a transfer to the park number (telephony.park)."""

    kind: Literal["park"] = "park"
    slot: SlotNumber | None = None


class Voicemail(_Destination):
    """Leave a message in an extension's mailbox."""

    kind: Literal["voicemail"] = "voicemail"
    number: ExtensionNumber


class Ivr(_Destination):
    """An IVR menu of the tenant by its id. Inside a menu the same destination is spelt ``menu`` (as
    the menus have always stored it); both spellings are this one type."""

    kind: Literal["ivr", "menu"] = "ivr"
    menu: Annotated[int, BeforeValidator(_menu_id)]


class Queue(_Destination):
    """A call-center queue of the tenant: by its ``number`` (zvonok.callcenter), or by its ``queue``
    name (the older form). ``priority``: callers sent this way wait ahead of those with less (an IVR's
    "key 9 for VIP customers", a DID given to key accounts); the queue's VIP list may give more."""

    kind: Literal["queue"] = "queue"
    number: QueueNumber | None = None
    queue: Annotated[str | None, BeforeValidator(_queue_name)] = None
    priority: Annotated[int | None, BeforeValidator(_priority)] = None

    @model_validator(mode="after")
    def _one_key(self) -> Queue:
        if (self.number is None) == (self.queue is None):
            raise ValueError('either "number" (the queue\'s number) or "queue" (its name)')
        return self


class External(_Destination):
    """Forward out through a trunk to an E.164 number (stored normalized)."""

    kind: Literal["external"] = "external"
    number: Annotated[str, BeforeValidator(_e164)]


class Access(_Destination):
    """The access-number service (PIN, then the number to call)."""

    kind: Literal["access"] = "access"
    skip_pin_for_known_callers: Annotated[bool | None, BeforeValidator(_flag)] = None


def _emails(value: Any) -> list[str]:
    if not isinstance(value, list) or len(value) > MAX_FAX_EMAILS:
        raise ValueError(f"a list of at most {MAX_FAX_EMAILS} e-mail addresses")
    out: list[str] = []
    for i, item in enumerate(value):
        if not isinstance(item, str) or len(item) > 254 or not _EMAIL.match(item.strip()):
            raise ValueError(f"item {i}: {str(item)[:60]!r} is not an e-mail address")
        if item.strip() not in out:
            out.append(item.strip())
    return out


class Fax(_Destination):
    """A fax terminal answers and keeps the document (zvonok.fax); each fax received is e-mailed as a
    PDF to ``emails``, if any, and, with ``number`` (an employee's own fax line: their DID, or a menu's
    key for them), to the fax address of that extension's employee (their e-mail unless they set one)."""

    kind: Literal["fax"] = "fax"
    emails: Annotated[list[str] | None, BeforeValidator(_emails)] = None
    number: ExtensionNumber | None = None


class Hangup(_Destination):
    """End the call (an IVR key or a menu's last resort)."""

    kind: Literal["hangup"] = "hangup"


Destination = Annotated[
    Extension | Ring | RingGroup | Conference | Park | Voicemail | Ivr | Queue | External | Access | Fax | Hangup,
    Field(discriminator="kind"),
]
DESTINATION: TypeAdapter[Destination] = TypeAdapter(Destination)

_TYPES: dict[str, type[_Destination]] = {
    "extension": Extension,
    "ring": Ring,
    "ring_group": RingGroup,
    "conference": Conference,
    "park": Park,
    "voicemail": Voicemail,
    "ivr": Ivr,
    "menu": Ivr,
    "queue": Queue,
    "external": External,
    "access": Access,
    "fax": Fax,
    "hangup": Hangup,
}
KINDS = tuple(_TYPES)

# where each kind is allowed. A kind the engine cannot route from that place is refused (a key or a number
# that leads nowhere is worse than none). A DID also takes "schedule" (zvonok.pstn.destinations).
DID_KINDS = (
    "extension",
    "ring",
    "voicemail",
    "queue",
    "external",
    "access",
    "conference",
    "ivr",
    "ring_group",
    "fax",
)
SCHEDULE_BRANCH_KINDS = DID_KINDS
BRANCH_KINDS = (
    "extension",
    "voicemail",
    "external",
    "conference",
    "ring_group",
    "queue",
    "ivr",
)  # ring-group no-answer
MENU_KINDS = ("extension", "ring", "conference", "external", "queue", "menu", "fax", "hangup")  # an IVR menu's keys
OVERFLOW_KINDS = tuple(k for k in DID_KINDS if k != "fax")  # a call-center queue's overflow


def parse_payload(
    kind: Any, payload: Any, *, kinds: tuple[str, ...] = KINDS, path: str = "destination"
) -> Destination:
    """A kind and its fields (as a DID stores them) -> the typed destination; ValueError naming the place."""
    if not isinstance(kind, str) or kind not in _TYPES:
        raise ValueError(f"{path}.kind: unknown destination kind {kind!r} (one of {', '.join(kinds)})")
    if kind not in kinds:
        raise ValueError(f"{path}.kind: {kind!r} is not available here (one of {', '.join(kinds)})")
    if not isinstance(payload, Mapping):
        raise ValueError(f"{path}: must be an object")
    if "kind" in payload:
        raise ValueError(f"{path}: unknown key 'kind'")
    try:
        value = _TYPES[kind].model_validate({**payload, "kind": kind})
    except pydantic.ValidationError as exc:
        raise ValueError(_message(exc, path)) from None
    assert isinstance(
        value, (Extension, Ring, RingGroup, Conference, Park, Voicemail, Ivr, Queue, External, Access, Fax, Hangup)
    )
    return value


def parse(value: Any, *, kinds: tuple[str, ...] = KINDS, path: str = "destination") -> Destination:
    """``{"kind": ..., <fields>}`` -> the typed destination; ValueError naming the place."""
    if not isinstance(value, Mapping) or not isinstance(value.get("kind"), str):
        raise ValueError(f'{path}: an object with a "kind" and that kind\'s fields')
    return parse_payload(
        value["kind"], {k: v for k, v in value.items() if k != "kind"}, kinds=kinds, path=path
    )


def stored(kind: str, payload: Mapping[str, Any] | None) -> Destination | None:
    """A destination as stored (checked when it was written) -> typed; None if it no longer parses
    (a kind this version does not know): the engine then treats the call as having nowhere to go."""
    try:
        return parse_payload(kind, dict(payload or {}))
    except ValueError:
        return None


def _message(exc: pydantic.ValidationError, path: str) -> str:
    # unknown keys first, as a reader fixes the spelling before the values
    errors = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
    err = errors[0]
    where = path
    for part in err["loc"][:-1] if err["type"] == "extra_forbidden" else err["loc"]:
        where += f"[{part}]" if isinstance(part, int) else f".{part}"
    if err["type"] == "extra_forbidden":
        return f"{where}: unknown key {str(err['loc'][-1])!r}"
    if err["type"] == "missing":
        return f"{where}: required"
    message = str(err["msg"]).removeprefix("Value error, ")
    return f"{where}: {message}"


def extension_numbers(dest: Destination) -> list[tuple[str, str]]:
    """(place below the destination, extension number) for each extension it names."""
    if isinstance(dest, (Extension, Voicemail)):
        return [("number", dest.number)]
    if isinstance(dest, Fax) and dest.number is not None:
        return [("number", dest.number)]
    if isinstance(dest, Ring):
        return [(f"numbers[{i}]", n) for i, n in enumerate(dest.numbers)]
    return []
