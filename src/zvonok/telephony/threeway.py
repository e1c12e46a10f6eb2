"""Ad-hoc three-way calling: an employee holding one call and talking on a second joins all three.

How it works — the way Asterisk's ``atxferthreeway`` key (``*3`` in features.conf, FreePBX's default) and a
desk phone's "conference" key behave for the people on the call: A talks to B, puts B on hold with the
phone's hold key and calls C (a second call: its own :class:`Call`, its own CDR). When the second call is
connected and A's extension has another answered call, the engine listens for keys on A's leg of it
(:meth:`ThreeWayCalls.connected`; a call without such a sibling costs nothing). A presses ``*3``
(:data:`FEATURE_CODE`, both keys within :data:`KEY_GAP` seconds): the legs of both calls enter one mixing
bridge of the media engine (as conference rooms, without PIN or prompts) — B, C, and both of A's legs,
which do not hear each other (whichever call A's phone takes off hold, A hears the other two; a leg its
phone holds is heard by nobody, so a phone's own hold music never reaches the room). Music on hold to B
stops and B is offered sendrecv again. A pressing ``*3`` on a call that is already in a room with a
further held call adds that call's party (a fourth) to the same room.

Hanging up is as in Asterisk's multi-party bridge after ``*3``: whoever hangs up leaves and the others
go on while two people remain — when A hangs up, B and C stay connected. Each call stays billed as
before (call 1 A↔B, call 2 A↔C, to whoever paid for it, as Asterisk keeps the transferer's outgoing
channel): a call goes on without the leg that hung up only while its other leg is the one way its
person is in the room (A hangs up call 2: C stays, call 2 goes on); otherwise it ends and gets its CDR
(C hangs up: call 2 ends, A's phone gets BYE for it and A is left with the held call 1). When the two
left are the two legs of one call, the room dissolves back into that call's relay bridge (its hold and
music on hold work as before: A resumes B on the phone); when fewer than two people remain, the room
ends and whoever is left gets BYE.

The code's keys are not heard by C: where the engine listens for the code it also gates the leg's keys
(:meth:`MediaEngine.gate_dtmf <zvonok.media.interface.MediaEngine.gate_dtmf>`, as Asterisk withholds digits
that may begin a feature code for ``featuredigittimeout``): a ``*`` is withheld, dropped with the ``3`` that
completes the code, and sent on to C when another key follows or none within :data:`KEY_GAP` (the same gap
the code allows between its keys, so a ``*3`` that joins the calls is never heard). Other keys reach C as
before. :class:`KeySequence` is the sans-I/O part (keys and ``now`` in, "matched" out); the rest talks to
the engine through :class:`ThreeWayControl`.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from zvonok.logs import get_logger
from zvonok.media.errors import MediaUsageError
from zvonok.media.events import DtmfReceived
from zvonok.media.interface import MediaEngine
from zvonok.sip.sdp import Direction as SdpDirection

from . import events as ev
from .call import Call, Leg, LegState

log = get_logger(__name__)

FEATURE_CODE = "*3"
KEY_GAP = 3.0  # seconds allowed between the keys of the code


@dataclass(slots=True)
class KeySequence:
    """Spots ``code`` in a stream of keys, each within ``gap`` seconds of the one before."""

    code: str = FEATURE_CODE
    gap: float = KEY_GAP
    typed: str = ""
    last: float | None = None

    def feed(self, digit: str, now: float) -> bool:
        if self.last is not None and now - self.last > self.gap:
            self.typed = ""
        self.last = now
        self.typed = (self.typed + digit)[-len(self.code):]
        if self.typed == self.code:
            self.typed = ""
            return True
        return False


class ThreeWayControl(Protocol):
    """What three-way calling needs of the call engine (:class:`zvonok.telephony.b2bua.CallEngine`)."""

    media: MediaEngine
    calls: dict[str, Call]
    endpoint_legs: dict[str, Leg]  # the leg holding each media endpoint

    def step(self, call: Call, coro: Coroutine[Any, Any, None]) -> None: ...

    def other_extension_calls(self, call: Call, extension_id: int) -> Iterator[tuple[Call, Leg]]: ...

    def publish(self, event_type: type[ev.CallEvent], call: Call, **fields: Any) -> None: ...

    def _hangup(self, call: Call, from_leg: Leg | None, side: ev.HangupSide, cause: str) -> None: ...

    def _leg_over(self, call: Call, leg: Leg, cause: str) -> None: ...

    def _reinvite(self, leg: Leg, direction: SdpDirection, *, refresh: bool = False) -> None: ...

    async def _music_on_hold(self, leg: Leg, on: bool) -> None: ...


def _person(leg: Leg) -> object:
    """Who is on a leg: an extension (its devices and calls are one person), else the leg itself."""
    extension = leg.party.extension_id
    return ("ext", extension) if extension is not None else leg


@dataclass(eq=False, slots=True)
class ThreeWayRoom:
    id: str  # the mixing bridge's id
    tenant_id: int
    legs: list[Leg] = field(default_factory=list)

    def people(self) -> int:
        return len({_person(leg) for leg in self.legs})


class ThreeWayCalls:
    def __init__(self, engine: ThreeWayControl) -> None:
        self.engine = engine
        self._ids = itertools.count(1)
        self._on_key = self._key  # one bound method listens on every leg (not a closure kept per leg)

    # --- listening for the code -------------------------------------------------------------------------

    def _siblings(self, call: Call, leg: Leg) -> Iterator[tuple[Call, Leg]]:
        """The other answered calls of ``leg``'s extension, each with that extension's leg in it, in no order."""
        extension = leg.party.extension_id
        if extension is None:
            return iter(())
        return ((other, mine) for other, mine in self.engine.other_extension_calls(call, extension)
                if other.answered_at is not None and mine.state is LegState.ANSWERED and mine.endpoint is not None)

    def _sibling(self, call: Call, leg: Leg) -> tuple[Call, Leg] | None:
        """Another answered call of ``leg``'s extension and that extension's leg in it (a held one first, then
        the one that started first)."""
        found = sorted(self._siblings(call, leg), key=lambda pair: (not pair[1].held, pair[0].started_at))
        return found[0] if found else None

    async def connected(self, call: Call) -> None:
        """A call was just connected: listen for the code on each employee's leg that has a sibling call, and
        keep its keys from the other party."""
        for leg in (call.caller, call.callee):
            if leg is not None and leg.endpoint is not None and next(self._siblings(call, leg), None) is not None:
                await self.engine.media.on_dtmf(leg.endpoint, self._on_key)
                await self.engine.media.gate_dtmf(leg.endpoint, (FEATURE_CODE,), KEY_GAP)

    def _key(self, event: DtmfReceived) -> None:
        leg = self.engine.endpoint_legs.get(event.endpoint_id)
        if leg is None or leg.call.ended or leg.state is not LegState.ANSWERED:
            return
        call = leg.call
        if leg.keys is None:
            leg.keys = KeySequence()  # from the first key: most calls never press one
        if leg.keys.feed(event.digit, time.monotonic()):
            self.engine.step(call, self.merge(call, leg))

    # --- the room --------------------------------------------------------------------------------------

    async def merge(self, call: Call, leg: Leg) -> None:
        """``leg``'s party pressed the code on ``call``: join it with that party's other (held) call."""
        if call.ended or leg.state is not LegState.ANSWERED:
            return
        sibling = self._sibling(call, leg)
        if sibling is None:
            log.info("three-way: no other call to join", call=call.id, tenant=call.tenant_id)
            return
        other, _mine = sibling
        room: ThreeWayRoom | None = call.threeway or other.threeway
        if call.threeway is not None and other.threeway is not None:
            return  # both are in rooms already (the same one, or two: joining rooms is not offered)
        if room is None:
            room = ThreeWayRoom(id=f"3way-{call.tenant_id}-{next(self._ids)}", tenant_id=call.tenant_id)
        media = self.engine.media
        added: list[Leg] = []
        for each in (other, call):
            for party_leg in (each.caller, each.callee):
                if party_leg is None or party_leg in room.legs or party_leg.endpoint is None \
                        or party_leg.state is not LegState.ANSWERED:
                    continue
                await media.mix_bridge(room.id, party_leg.endpoint, speaks=not party_leg.held)
                room.legs.append(party_leg)
                added.append(party_leg)
            each.threeway = room
        for party_leg in room.legs:  # one person's legs do not hear each other
            assert party_leg.endpoint is not None
            same = {o.endpoint.id: False for o in room.legs
                    if o is not party_leg and o.endpoint is not None and _person(o) == _person(party_leg)}
            if same:
                await media.set_matrix(room.id, party_leg.endpoint, hears=same)
        for party_leg in added:
            if party_leg.hearing_music:
                await self.engine._music_on_hold(party_leg, False)
            if party_leg.held_by_us:
                self.engine._reinvite(party_leg, SdpDirection.SENDRECV)
        people = room.people()
        self.engine.publish(ev.ThreeWayJoined, call, room=room.id, other_call_id=other.id, people=people)
        self.engine.publish(ev.ThreeWayJoined, other, room=room.id, other_call_id=call.id, people=people)
        log.info("three-way: calls joined", call=call.id, other=other.id, tenant=call.tenant_id, room=room.id,
                 people=people)

    async def hold_changed(self, leg: Leg) -> None:
        """A leg in a room was held or resumed by its device: a held phone is heard by nobody."""
        room: ThreeWayRoom | None = leg.call.threeway
        if room is None or leg not in room.legs or leg.endpoint is None:
            return
        try:
            await self.engine.media.set_matrix(room.id, leg.endpoint, speaks=not leg.held)
        except MediaUsageError:
            pass  # leaving anyway

    def leg_hung_up(self, call: Call, leg: Leg) -> bool:
        """``leg``'s device hung up on a call in a room. True: the call goes on with its other leg (still in the
        room); False: the call ends as any other (then :meth:`left`)."""
        room: ThreeWayRoom | None = call.threeway
        other = call.other(leg)
        if room is None or other is None or other not in room.legs or other.state is not LegState.ANSWERED:
            return False
        if any(o is not other and _person(o) == _person(other) for o in room.legs):
            return False  # the other leg's person is in the room by another call too: this call has done its part
        if leg in room.legs:
            room.legs.remove(leg)
        log.info("three-way: a party left", call=call.id, leg=leg.id, room=room.id)
        self.engine._leg_over(call, leg, "normal_clearing")  # its endpoint's release takes it out of the mix
        self._settle(room)
        return True

    def left(self, call: Call) -> None:
        """The call ended (called by the engine as it finishes the call): its legs are out of the room."""
        room: ThreeWayRoom | None = call.threeway
        if room is None:
            return
        call.threeway = None
        room.legs = [leg for leg in room.legs if leg.call is not call]
        self._settle(room)

    def _settle(self, room: ThreeWayRoom) -> None:
        room.legs = [leg for leg in room.legs if leg.state is LegState.ANSWERED and not leg.call.ended]
        calls = list(dict.fromkeys(leg.call for leg in room.legs))
        if len(calls) == 1 and len(room.legs) == 2 and calls[0].caller in room.legs and calls[0].callee in room.legs:
            call = calls[0]
            call.threeway = None
            room.legs = []
            log.info("three-way: back to a two-party call", call=call.id, room=room.id)
            self.engine.step(call, self._dissolve(call))
        elif room.people() < 2:
            log.info("three-way: room ended", room=room.id, calls=[c.id for c in calls])
            room.legs = []
            for call in calls:
                call.threeway = None
                self.engine._hangup(call, None, ev.HangupSide.SYSTEM, "threeway_ended")

    async def _dissolve(self, call: Call) -> None:
        caller, callee = call.caller, call.callee
        if call.ended or caller is None or callee is None or caller.endpoint is None or callee.endpoint is None:
            return
        await self.engine.media.bridge(caller.endpoint, callee.endpoint)  # leaves the mix
        for leg, other in ((caller, callee), (callee, caller)):
            if leg.held:  # held on its phone as the room ended: its party hears music again
                self.engine._reinvite(other, SdpDirection.SENDONLY)
                await self.engine._music_on_hold(other, True)
