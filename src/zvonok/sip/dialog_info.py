"""Bodies of the busy-lamp and presence event packages: ``application/dialog-info+xml`` (RFC 4235 §4)
and ``application/pidf+xml`` (RFC 3863, the ``presence`` package of RFC 3856) with the RPID
``on-the-phone`` activity (RFC 4480). Sans-I/O: dataclasses in, bytes out, and back.

What desk phones read: Yealink, Polycom, Grandstream and Snom light a BLF key from the ``<state>`` of the
dialogs in a dialog-info document (none or all ``terminated``: idle; ``early``: ringing, blinking;
``confirmed``: busy) and pick a ringing call up from the key by calling the ``<remote><target>`` URI of an
early dialog (we put the directed-pickup code there, ``**<ext>``), their own configured pickup code, or
an INVITE with ``Replaces`` (RFC 3891) naming the dialog's ``call-id``, ``local-tag`` and ``remote-tag``;
the ``direction`` (``recipient``: the watched extension is being called) decides whether they blink at
all. softphones (baresip's ``presence`` module, Zoiper, MicroSIP) read PIDF's ``<basic>`` and the RPID
activities.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from xml.etree import ElementTree as ET
from xml.sax.saxutils import escape, quoteattr

from .errors import SipParseError

__all__ = [
    "DIALOG_CONTENT_TYPE",
    "DIALOG_EVENT",
    "PIDF_CONTENT_TYPE",
    "PRESENCE_EVENT",
    "Dialog",
    "DialogInfo",
    "DialogState",
    "Presence",
    "build_dialog_info",
    "build_pidf",
    "parse_dialog_info",
    "parse_pidf",
]

DIALOG_EVENT = "dialog"
DIALOG_CONTENT_TYPE = "application/dialog-info+xml"
PRESENCE_EVENT = "presence"
PIDF_CONTENT_TYPE = "application/pidf+xml"

NS_DIALOG = "urn:ietf:params:xml:ns:dialog-info"
NS_PIDF = "urn:ietf:params:xml:ns:pidf"
NS_DM = "urn:ietf:params:xml:ns:pidf:data-model"
NS_RPID = "urn:ietf:params:xml:ns:pidf:rpid"


class DialogState(enum.StrEnum):
    """RFC 4235 §3.7.1's dialog states."""

    TRYING = "trying"
    PROCEEDING = "proceeding"
    EARLY = "early"
    CONFIRMED = "confirmed"
    TERMINATED = "terminated"


@dataclass(frozen=True, slots=True)
class Dialog:
    id: str
    state: DialogState
    direction: str | None = None  # "initiator" (the entity called) or "recipient" (the entity is called)
    call_id: str | None = None
    local_tag: str | None = None
    remote_tag: str | None = None
    event: str | None = None  # the <state event="..."> of a terminated dialog (cancelled, rejected...)
    local_identity: str | None = None
    local_display: str | None = None
    local_target: str | None = None
    remote_identity: str | None = None
    remote_display: str | None = None
    remote_target: str | None = None


@dataclass(frozen=True, slots=True)
class DialogInfo:
    entity: str
    version: int
    full: bool = True
    dialogs: tuple[Dialog, ...] = ()


@dataclass(frozen=True, slots=True)
class Presence:
    entity: str
    open: bool
    on_the_phone: bool = False
    note: str | None = None
    contact: str | None = None
    tuple_id: str = "t0"


def _party(tag: str, identity: str | None, display: str | None, target: str | None) -> str:
    if identity is None and target is None:
        return ""
    inner = ""
    if identity is not None:
        shown = f" display={quoteattr(display)}" if display else ""
        inner += f"<identity{shown}>{escape(identity)}</identity>"
    if target is not None:
        inner += f"<target uri={quoteattr(target)}/>"
    return f"<{tag}>{inner}</{tag}>"


def build_dialog_info(info: DialogInfo) -> bytes:
    """The document, RFC 4235 §4.1 (attributes and children in the schema's order)."""
    out = [
        f'<?xml version="1.0" encoding="UTF-8"?>\n<dialog-info xmlns="{NS_DIALOG}" version="{info.version}" '
        f'state="{"full" if info.full else "partial"}" entity={quoteattr(info.entity)}>'
    ]
    for d in info.dialogs:
        attrs = f"id={quoteattr(d.id)}"
        for name, value in (
            ("call-id", d.call_id),
            ("local-tag", d.local_tag),
            ("remote-tag", d.remote_tag),
            ("direction", d.direction),
        ):
            if value is not None:
                attrs += f" {name}={quoteattr(value)}"
        state_attrs = f" event={quoteattr(d.event)}" if d.event else ""
        out.append(
            f"<dialog {attrs}><state{state_attrs}>{d.state.value}</state>"
            + _party("local", d.local_identity, d.local_display, d.local_target)
            + _party("remote", d.remote_identity, d.remote_display, d.remote_target)
            + "</dialog>"
        )
    out.append("</dialog-info>\n")
    return "\n".join(out).encode()


def _root(body: bytes, name: str) -> ET.Element:
    try:
        root = ET.fromstring(body)  # noqa: S314 - our own or a test's document; no entities are expanded
    except ET.ParseError as exc:
        raise SipParseError(f"bad XML body: {exc}") from exc
    if root.tag != name:
        raise SipParseError(f"not a {name} document: {root.tag}")
    return root


def _text(el: ET.Element | None) -> str | None:
    return None if el is None else (el.text or "").strip()


def parse_dialog_info(body: bytes) -> DialogInfo:
    root = _root(body, f"{{{NS_DIALOG}}}dialog-info")
    q = f"{{{NS_DIALOG}}}"
    dialogs = []
    for el in root.findall(f"{q}dialog"):
        state = el.find(f"{q}state")
        if state is None:
            raise SipParseError("a dialog without a state")
        local, remote = el.find(f"{q}local"), el.find(f"{q}remote")

        def party(p: ET.Element | None) -> tuple[str | None, str | None, str | None]:
            if p is None:
                return None, None, None
            ident, target = p.find(f"{q}identity"), p.find(f"{q}target")
            return (
                _text(ident),
                ident.get("display") if ident is not None else None,
                target.get("uri") if target is not None else None,
            )

        li, ld, lt = party(local)
        ri, rd, rt = party(remote)
        try:
            value = DialogState(_text(state) or "")
        except ValueError as exc:
            raise SipParseError(f"unknown dialog state {_text(state)!r}") from exc
        dialogs.append(
            Dialog(
                id=el.get("id", ""),
                state=value,
                direction=el.get("direction"),
                call_id=el.get("call-id"),
                local_tag=el.get("local-tag"),
                remote_tag=el.get("remote-tag"),
                event=state.get("event"),
                local_identity=li,
                local_display=ld,
                local_target=lt,
                remote_identity=ri,
                remote_display=rd,
                remote_target=rt,
            )
        )
    try:
        version = int(root.get("version", ""))
    except ValueError as exc:
        raise SipParseError("dialog-info without a version") from exc
    return DialogInfo(
        entity=root.get("entity", ""),
        version=version,
        full=root.get("state") == "full",
        dialogs=tuple(dialogs),
    )


def build_pidf(p: Presence) -> bytes:
    """RFC 3863 §4 with the RFC 4480 person element: basic open/closed, and on-the-phone when busy."""
    note = f"<note>{escape(p.note)}</note>" if p.note else ""
    contact = f"<contact>{escape(p.contact)}</contact>" if p.contact else ""
    activity = "<rpid:on-the-phone/>" if p.on_the_phone else "<rpid:unknown/>"
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<presence xmlns="{NS_PIDF}" xmlns:dm="{NS_DM}" '
        f'xmlns:rpid="{NS_RPID}" entity={quoteattr(p.entity)}>\n'
        f"<tuple id={quoteattr(p.tuple_id)}><status><basic>{'open' if p.open else 'closed'}</basic></status>"
        f"{contact}{note}</tuple>\n"
        f'<dm:person id="p0"><rpid:activities>{activity}</rpid:activities>{note}</dm:person>\n'
        "</presence>\n"
    ).encode()


def parse_pidf(body: bytes) -> Presence:
    root = _root(body, f"{{{NS_PIDF}}}presence")
    q = f"{{{NS_PIDF}}}"
    tup = root.find(f"{q}tuple")
    if tup is None:
        raise SipParseError("a presence document without a tuple")
    basic = _text(tup.find(f"{q}status/{q}basic"))
    if basic not in ("open", "closed"):
        raise SipParseError(f"basic status {basic!r}")
    busy = root.find(f".//{{{NS_RPID}}}activities/{{{NS_RPID}}}on-the-phone") is not None
    return Presence(
        entity=root.get("entity", ""),
        open=basic == "open",
        on_the_phone=busy,
        note=_text(tup.find(f"{q}note")),
        contact=_text(tup.find(f"{q}contact")),
        tuple_id=tup.get("id", ""),
    )
