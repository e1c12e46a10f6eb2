"""Call forwarding and do-not-disturb: what happens to a call for an extension, decided without I/O.

How it works: an extension's :class:`ForwardingSettings` name where its calls go unconditionally (CFU),
when it is busy (CFB), when nobody answers within ``no_answer_seconds`` (CFNA) and when no device of it
is registered (unavailable); ``dnd`` makes it busy for every call. A call keeps one
:class:`ForwardingChain`: the numbers it has been to. The engine asks the chain

* :meth:`ForwardingChain.on_dialed` before it rings an extension: :class:`Forward` (CFU; DND with CFB),
  :class:`Refuse` (DND: 486) or :class:`Ring` (with the CFNA timer, if one is set);
* :meth:`ForwardingChain.after` when ringing ended in busy, no answer or unavailable: :class:`Forward`
  or None (then the caller gets the status as without forwarding).

Loop protection (as Asterisk's ``Local`` channel forwarding counts hops): a chain forwards at most
``max_hops`` times and never to a number already in it (B forwards to C and C back to B: C rings
itself; the caller's own extension is in the chain from the start). A target is an extension number
or an outside number; the engine tells them apart (the directory knows its extensions).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from zvonok.destination import Destination, Extension, External, Voicemail

MAX_HOPS = 5
DEFAULT_NO_ANSWER_SECONDS = 20


class Reason(enum.StrEnum):
    """Why a call was forwarded (the names Asterisk/FreePBX users know)."""

    UNCONDITIONAL = "unconditional"  # CFU
    BUSY = "busy"  # CFB (also DND with CFB)
    NO_ANSWER = "no_answer"  # CFNA
    UNAVAILABLE = "unavailable"  # no device registered


@dataclass(frozen=True, slots=True, kw_only=True)
class ForwardingSettings:
    dnd: bool = False
    unconditional: str | None = None
    busy: str | None = None
    no_answer: str | None = None
    no_answer_seconds: int = DEFAULT_NO_ANSWER_SECONDS
    unavailable: str | None = None

    def target(self, reason: Reason) -> str | None:
        return {Reason.UNCONDITIONAL: self.unconditional, Reason.BUSY: self.busy,
                Reason.NO_ANSWER: self.no_answer, Reason.UNAVAILABLE: self.unavailable}[reason] or None


NO_FORWARDING = ForwardingSettings()


VOICEMAIL_TARGET = "voicemail:"  # a mailbox as stored: voicemail:<extension number>


def forward_destination(target: str) -> Destination | None:
    """A stored forwarding target as the typed destination the engine dispatches: ``voicemail:<ext>`` a
    mailbox, ``+<E.164>`` an outside number, digits an extension; None for anything else (the API stores
    nothing else: org/forwarding.py refuses it with 422)."""
    try:
        if target.startswith(VOICEMAIL_TARGET):
            return Voicemail(number=target.removeprefix(VOICEMAIL_TARGET))
        if target.startswith("+"):
            return External(number=target)
        return Extension(number=target)
    except ValueError:  # pydantic's ValidationError is one
        return None


@dataclass(frozen=True, slots=True)
class Forward:
    target: str
    reason: Reason
    from_number: str  # the extension that forwards


@dataclass(frozen=True, slots=True)
class Refuse:
    status: int
    cause: str


@dataclass(frozen=True, slots=True)
class Ring:
    no_answer_after: float | None  # the CFNA timer, seconds; None: the engine's usual no-answer timeout


@dataclass
class ForwardingChain:
    """The numbers one call has been to, and how many times it was forwarded."""

    visited: list[str] = field(default_factory=list)
    hops: int = 0
    max_hops: int = MAX_HOPS

    @classmethod
    def starting(cls, *numbers: str | None, max_hops: int = MAX_HOPS) -> ForwardingChain:
        """A chain for a new call: ``numbers`` (the caller's extension, if any) may not be forwarded to."""
        return cls(visited=[n for n in numbers if n], max_hops=max_hops)

    def allows(self, target: str) -> bool:
        return self.hops < self.max_hops and target not in self.visited

    def _forward(self, number: str, settings: ForwardingSettings, reason: Reason) -> Forward | None:
        target = settings.target(reason)
        if target is None or target == number or not self.allows(target):
            return None
        self.hops += 1
        return Forward(target=target, reason=reason, from_number=number)

    def on_dialed(self, number: str, settings: ForwardingSettings) -> Forward | Refuse | Ring:
        """The call reaches extension ``number``: forward it, refuse it, or ring its devices."""
        if number not in self.visited:
            self.visited.append(number)
        forward = self._forward(number, settings, Reason.UNCONDITIONAL)
        if forward is not None:
            return forward
        if settings.dnd:
            return self._forward(number, settings, Reason.BUSY) or Refuse(486, "busy")
        return Ring(float(settings.no_answer_seconds) if self._may(settings, Reason.NO_ANSWER) else None)

    def after(self, number: str, settings: ForwardingSettings, reason: Reason) -> Forward | None:
        """Ringing ``number`` ended (busy, no answer, unavailable): where the call goes next, if anywhere."""
        if reason is Reason.UNCONDITIONAL:
            raise ValueError("unconditional forwarding is decided by on_dialed")
        return self._forward(number, settings, reason)

    def _may(self, settings: ForwardingSettings, reason: Reason) -> bool:
        target = settings.target(reason)
        return target is not None and self.allows(target)


# -- feature codes dialed from a phone (the FreePBX defaults) --------------------------------------------
class FeatureCode(enum.StrEnum):
    CFU_ON = "*72"
    CFU_OFF = "*73"
    DND_ON = "*78"
    DND_OFF = "*79"


@dataclass(frozen=True, slots=True)
class FeatureRequest:
    code: FeatureCode
    argument: str = ""  # *72's target number


def feature_code(dialed: str) -> FeatureRequest | None:
    """``*72<number>``, ``*73``, ``*78``, ``*79`` (None for anything else, e.g. ``*72`` with no number)."""
    for code in FeatureCode:
        if dialed.startswith(code.value):
            rest = dialed[len(code.value):]
            if code is FeatureCode.CFU_ON:
                return FeatureRequest(code, rest) if rest else None
            return FeatureRequest(code) if not rest else None
    return None


def feature_changes(request: FeatureRequest) -> dict[str, object]:
    """The settings a feature code changes."""
    if request.code is FeatureCode.CFU_ON:
        return {"unconditional": request.argument}
    if request.code is FeatureCode.CFU_OFF:
        return {"unconditional": None}
    return {"dnd": request.code is FeatureCode.DND_ON}
