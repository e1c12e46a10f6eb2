"""Choosing a destination in a web form: one kind ``<select>`` and one plain "where exactly" text field.

The DID page (and its schedule branches), an IVR menu's keys and a ring group's no-answer destination
all show the same two fields (the ``destination_fields`` macro of ``_destination.html``) and read them back
with :func:`from_form`; each page passes the kinds its place allows (:mod:`zvonok.destination`). The
service checks what comes back (the typed union and the tenant's references), so this module only
translates text. A queue's text may end in ``:<priority>`` (``500:5``): the callers sent there wait ahead of
those with a lower one (a VIP key of a voice menu, a VIP number).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from zvonok.web.i18n import N_

# one label per kind, wherever it is chosen
LABELS: dict[str, str] = {
    "extension": N_("Extension"),
    "ring": N_("Several extensions at once"),
    "voicemail": N_("Voicemail"),
    "queue": N_("Queue"),
    "external": N_("Outside number"),
    "access": N_("Access number (PIN)"),
    "conference": N_("Conference room"),
    "ring_group": N_("Ring group"),
    "fax": N_("Fax machine (documents are kept)"),
    "menu": N_("Another menu"),
    "hangup": N_("Hang up"),
    "schedule": N_("By working hours"),
}


def choices(kinds: Iterable[str], *, empty: str | None = None) -> dict[str, str]:
    """``{kind: label}`` in the order given; ``empty`` labels a leading "" choice (no destination)."""
    out = {"": empty} if empty is not None else {}
    return out | {kind: LABELS[kind] for kind in kinds}


def payload_of(kind: str, text: str, *, timeout: str = "", skip_pin: bool = False) -> dict[str, Any]:
    """The fields of one kind (without ``kind``) from the form's text."""
    text = text.strip()
    if kind == "ring":
        payload: dict[str, Any] = {"numbers": [n for n in re.split(r"[\s,;]+", text) if n]}
        if timeout.strip():
            payload["timeout"] = int(timeout) if timeout.strip().isdigit() else timeout
        return payload
    if kind == "queue":  # "500", or "500:5": its callers wait ahead of those with a lower priority
        where, colon, priority = text.rpartition(":")
        if not (colon and priority.strip().isdigit()):
            where, priority = text, ""
        where = where.strip()
        queue: dict[str, Any] = {"number": where} if where.isdigit() else {"queue": where}
        return queue | ({"priority": int(priority)} if priority else {})
    if kind == "access":
        return {"skip_pin_for_known_callers": True} if skip_pin else {}
    if kind in ("menu", "ivr"):
        return {"menu": int(text) if text.isdigit() else 0}
    if kind == "fax":  # the addresses each fax received is e-mailed to, and/or the employee's extension
        words = [e for e in re.split(r"[\s,;]+", text) if e]
        numbers = [w for w in words if w.isdigit()]
        emails = [w for w in words if not w.isdigit()]
        fax: dict[str, Any] = {"emails": emails} if emails else {}
        if numbers:  # one extension: more than one is refused by the schema's type (a list is not a number)
            fax["number"] = numbers[0] if len(numbers) == 1 else numbers
        return fax
    if kind == "hangup":
        return {}
    return {"number": text}


def from_form(kind: str, text: str, **extra: Any) -> dict[str, Any] | None:
    """``{"kind": ..., <fields>}`` from the form's (kind, text); None when no kind was chosen."""
    if not kind:
        return None
    return {"kind": kind, **payload_of(kind, text, **extra)}


def text_of(payload: Mapping[str, Any] | None) -> str:
    """What the "where exactly" field shows for stored fields."""
    if not payload:
        return ""
    if "numbers" in payload:
        return ", ".join(str(n) for n in payload["numbers"])
    if "emails" in payload:
        number = [str(payload["number"])] if "number" in payload else []
        return ", ".join(number + [str(e) for e in payload["emails"]])
    if "menu" in payload:
        return str(payload["menu"])
    where = str(payload.get("number") or payload.get("queue") or "")
    return f"{where}:{payload['priority']}" if payload.get("priority") else where


def to_form(dest: Mapping[str, Any] | None) -> tuple[str, str]:
    """A stored ``{"kind": ..., <fields>}`` as the form's (kind, text)."""
    if not dest:
        return "", ""
    return str(dest.get("kind", "")), text_of(dest)
