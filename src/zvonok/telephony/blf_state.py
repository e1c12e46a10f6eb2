"""What each extension is doing on the phone, folded from the call engine's events (telephony/events.py):
the dialogs a busy-lamp field shows (RFC 4235). Sans-I/O: :meth:`ExtensionActivity.apply` takes one event
and returns the extensions whose state changed; :meth:`dialogs` is an extension's current list.

How it works: every leg whose party is an extension of the tenant is a dialog of that extension, keyed
by the leg id (a leg that moves to another call — pickup, transfer, park — ends in one and is created in
the other, in this order on the bus). A callee leg is ``recipient`` (the extension is being called), a
caller leg ``initiator``. States, after RFC 4235 §3.7.1:

======================  ==========================================================
event                   dialog state
======================  ==========================================================
LegCreated              trying
LegRinging              early (the callee leg; the caller's leg of the call too)
LegAnswered             confirmed (that leg; and the caller's leg of the call)
CallAnswered            the caller's leg confirmed
LegEnded / CallEnded    terminated, then forgotten
======================  ==========================================================

An extension with no dialog left keeps its last one as ``terminated`` for the next document (phones and
tests see the end), until a new dialog of that extension starts. The table holds only live legs and one
ended dialog per extension that had a call, so it is bounded by the calls in progress and the directory.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from zvonok.sip.dialog_info import Dialog, DialogState

from . import events as ev

__all__ = ["ExtensionActivity", "LegDialog"]

ExtKey = tuple[int, int]  # tenant, extension id


@dataclass(frozen=True, slots=True)
class LegDialog:
    tenant_id: int
    extension_id: int
    number: str  # the extension's own number
    call_id: str
    leg_id: str
    caller: bool  # initiator
    state: DialogState
    remote_number: str = ""
    remote_display: str = ""
    event: str | None = None  # why it terminated, for the document's <state event>
    # the early dialog of our INVITE to the ringing device, as the device knows it (LegRinging): a BLF key
    # names it in an INVITE with Replaces (RFC 3891) to pick the call up
    sip_call_id: str = ""
    device_tag: str = ""
    our_tag: str = ""

    def to_dialog(self, domain: str, pickup_prefix: str | None = None) -> Dialog:
        """The RFC 4235 element; an early incoming dialog names ``pickup_prefix`` + the extension as its
        remote target: what a BLF key dials to pick the call up."""
        remote = f"sip:{self.remote_number}@{domain}" if self.remote_number else None
        pickup = None
        if pickup_prefix is not None and not self.caller and self.state is DialogState.EARLY:
            pickup = f"sip:{pickup_prefix}{self.number}@{domain}"
        # early or confirmed, the dialog of our leg to the device: call-id, local-tag (the device's own tag)
        # and remote-tag (ours), as Asterisk sends them for BLF pickup by Replaces
        ids = bool(self.sip_call_id) and self.state in (DialogState.EARLY, DialogState.CONFIRMED)
        return Dialog(
            id=self.leg_id,
            state=self.state,
            direction="initiator" if self.caller else "recipient",
            call_id=self.sip_call_id if ids else None,
            local_tag=self.device_tag if ids else None,
            remote_tag=self.our_tag if ids else None,
            event=self.event,
            local_identity=f"sip:{self.number}@{domain}",
            local_target=f"sip:{self.number}@{domain}",
            remote_identity=remote,
            remote_display=self.remote_display or None,
            remote_target=pickup,
        )


@dataclass(slots=True)
class _Call:
    caller_party: ev.Party | None = None
    callee_number: str = ""
    legs: set[str] = field(default_factory=set)


class ExtensionActivity:
    def __init__(self) -> None:
        self._legs: dict[str, LegDialog] = {}
        self._by_ext: dict[ExtKey, dict[str, LegDialog]] = {}
        self._ended: dict[ExtKey, LegDialog] = {}
        self._calls: dict[str, _Call] = {}

    def __len__(self) -> int:
        return len(self._legs)

    def dialogs(self, tenant_id: int, extension_id: int) -> list[LegDialog]:
        """The extension's live dialogs, oldest first; none live: its last one, terminated (if any)."""
        live = list(self._by_ext.get((tenant_id, extension_id), {}).values())
        if live:
            return live
        last = self._ended.get((tenant_id, extension_id))
        return [last] if last is not None else []

    def busy(self, tenant_id: int, extension_id: int) -> bool:
        return any(
            d.state is DialogState.CONFIRMED for d in self._by_ext.get((tenant_id, extension_id), {}).values()
        )

    def apply(self, event: object) -> set[ExtKey]:
        """Fold one call event in; the extensions whose dialogs changed."""
        if isinstance(event, ev.CallStarted):
            self._calls[event.call_id] = _Call(caller_party=event.caller, callee_number=event.callee_number)
            return set()
        if isinstance(event, ev.LegCreated):
            return self._created(event)
        if isinstance(event, ev.LegRinging):
            if event.sip_call_id:
                self._ids(event)
            return self._set(event.leg_id, DialogState.EARLY) | self._caller_of(
                event.call_id, DialogState.EARLY
            )
        if isinstance(event, ev.LegAnswered):
            return self._set(event.leg_id, DialogState.CONFIRMED) | self._caller_of(
                event.call_id, DialogState.CONFIRMED
            )
        if isinstance(event, ev.CallAnswered):
            return self._caller_of(event.call_id, DialogState.CONFIRMED)
        if isinstance(event, ev.LegEnded):
            return self._end(event.leg_id, event.cause)
        if isinstance(event, ev.CallEnded):
            call = self._calls.pop(event.call_id, None)
            changed: set[ExtKey] = set()
            for leg_id in list(call.legs) if call is not None else ():
                leg = self._legs.get(leg_id)
                if leg is not None and leg.call_id == event.call_id:
                    changed |= self._end(leg_id, event.disposition.value)
            return changed
        return set()

    def _created(self, event: ev.LegCreated) -> set[ExtKey]:
        call = self._calls.setdefault(event.call_id, _Call())
        call.legs.add(event.leg_id)
        party = event.party
        if event.role is ev.LegRole.CALLER and call.caller_party is None:
            call.caller_party = party
        if party.extension_id is None or party.external:
            return set()
        caller = event.role is ev.LegRole.CALLER
        if caller:
            remote_number, remote_display = call.callee_number, ""
        else:
            other = call.caller_party
            remote_number = other.number if other is not None else ""
            remote_display = other.display_name if other is not None else ""
        leg = LegDialog(
            tenant_id=event.tenant_id,
            extension_id=party.extension_id,
            number=party.number,
            call_id=event.call_id,
            leg_id=event.leg_id,
            caller=caller,
            state=DialogState.TRYING,
            remote_number=remote_number,
            remote_display=remote_display,
        )
        self._legs[leg.leg_id] = leg
        key = (leg.tenant_id, leg.extension_id)
        self._by_ext.setdefault(key, {})[leg.leg_id] = leg
        self._ended.pop(key, None)
        return {key}

    def _ids(self, event: ev.LegRinging) -> None:
        """Keep the device-side dialog of a ringing leg (its state is set by the caller of this)."""
        leg = self._legs.get(event.leg_id)
        if leg is None:
            return
        leg = replace(leg, sip_call_id=event.sip_call_id, device_tag=event.device_tag, our_tag=event.our_tag)
        self._legs[leg.leg_id] = leg
        self._by_ext[(leg.tenant_id, leg.extension_id)][leg.leg_id] = leg

    def _set(self, leg_id: str, state: DialogState) -> set[ExtKey]:
        leg = self._legs.get(leg_id)
        if leg is None or leg.state is state or leg.state is DialogState.CONFIRMED:
            return set()  # a confirmed dialog does not go back to early (a re-sent 180)
        leg = replace(leg, state=state)
        self._legs[leg_id] = leg
        key = (leg.tenant_id, leg.extension_id)
        self._by_ext[key][leg_id] = leg
        return {key}

    def _caller_of(self, call_id: str, state: DialogState) -> set[ExtKey]:
        call = self._calls.get(call_id)
        changed: set[ExtKey] = set()
        for leg_id in list(call.legs) if call is not None else ():
            leg = self._legs.get(leg_id)
            if leg is not None and leg.caller and leg.call_id == call_id:
                changed |= self._set(leg_id, state)
        return changed

    def _end(self, leg_id: str, cause: str) -> set[ExtKey]:
        leg = self._legs.pop(leg_id, None)
        if leg is None:
            return set()
        key = (leg.tenant_id, leg.extension_id)
        mine = self._by_ext.get(key, {})
        mine.pop(leg_id, None)
        if not mine:
            self._by_ext.pop(key, None)
        self._ended[key] = replace(leg, state=DialogState.TERMINATED, event=_reason(cause))
        return {key}


def _reason(cause: str) -> str | None:
    """RFC 4235 §4.1.1's <state event> values for how a dialog ended."""
    if cause in ("cancelled", "no_answer", "picked_up"):
        return "cancelled"
    if cause in ("busy", "failed") or cause.startswith("sip_"):
        return "rejected"
    if cause in ("normal_clearing", "answered", "transferred", "park_retrieved"):
        return "replaced" if cause in ("transferred", "park_retrieved") else None
    return None
