"""Conferences in the call engine: answer a call to a room, ask its PIN, put it into the room's mix.

How it works: a call whose dialed number (or DID destination ``{"kind": "conference", "number": ...}``)
names a room is handed to :meth:`Conferences.enter`. We answer it ourselves (our endpoint is the far
end, as for the access number) and run one sans-I/O :class:`~.conference_dialogue.ConferenceDialogue`
per call: prompts play on the caller's endpoint, RFC 4733 keys and one timer feed it, PINs are checked
against the room's argon2 hashes in a thread. On ``Join`` the endpoint enters the room's mixing bridge
(:meth:`MediaEngine.mix_bridge`; the bridge id is the tenant and room), everyone hears a short beep,
and ``ConferenceJoined`` goes on the bus. Mute is the matrix: heard by nobody; a member waiting for a
moderator neither hears nor is heard. The call ends as any other (BYE, media timeout, kick): the
engine's ``_finish`` calls :meth:`Conferences.left`, the endpoint's release takes it out of the mix, and
the last one out removes the room (the media engine drops an empty bridge by itself).

This module talks to the engine only through :class:`CallControl` (the few engine operations it
needs) and reads rooms through :class:`RoomPort` (implemented by :mod:`zvonok.conference.service`): no SQL.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol

from zvonok.logs import get_logger
from zvonok.media.errors import MediaUsageError
from zvonok.media.events import DtmfReceived
from zvonok.media.interface import Endpoint, MediaEngine, Prompt, Tone
from zvonok.media.prompts import prompt_path
from zvonok.org.pins import verify_pin_in_thread

from . import events as ev
from .call import Call, Leg
from .conference_dialogue import ConferenceDialogue, Hangup, Join, PinRole, Play, StopPlayback, VerifyPin

log = get_logger(__name__)

BEEP = Tone(frequencies=(1400.0,), amplitude=0.2)
BEEP_SECONDS = 0.15


@dataclass(frozen=True, slots=True, kw_only=True)
class RoomInfo:
    id: int
    tenant_id: int
    number: str
    name: str
    pin_hash: str | None
    moderator_pin_hash: str | None
    wait_for_moderator: bool
    max_members: int


class RoomPort(Protocol):
    async def room(self, tenant_id: int, number: str) -> RoomInfo | None: ...


class CallControl(Protocol):
    """What a conference needs of the call engine (:class:`zvonok.telephony.b2bua.CallEngine`)."""

    media: MediaEngine

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None: ...

    def step(self, call: Call, coro: Coroutine[Any, Any, None]) -> None: ...

    def publish(self, event_type: type[ev.CallEvent], call: Call, **fields: Any) -> None: ...

    async def _negotiate_caller(self, call: Call) -> bool: ...

    def _answer_caller(self, call: Call, answered_by: Leg | None = None) -> None: ...

    async def _watch_media(self, call: Call) -> None: ...

    async def _refuse(self, call: Call, status: int, cause: str, reason: str | None = None) -> None: ...

    def _hangup(self, call: Call, from_leg: Leg | None, side: ev.HangupSide, cause: str) -> None: ...


@dataclass(eq=False)
class Member:
    call: Call
    leg_id: str
    endpoint: Endpoint
    number: str
    display_name: str
    moderator: bool
    joined_at: float
    muted: bool = False
    waiting: bool = False


@dataclass(eq=False)
class LiveRoom:
    info: RoomInfo
    members: dict[str, Member] = field(default_factory=dict)  # by call id

    @property
    def bridge_id(self) -> str:
        return f"conf-{self.info.tenant_id}-{self.info.id}"


@dataclass(eq=False)
class ConferenceSession:
    """One call's way into a room (``call.conference``)."""

    room: RoomInfo
    dialogue: ConferenceDialogue
    language: str
    queue: list[str] = field(default_factory=list)
    playing: bool = False
    timer: asyncio.TimerHandle | None = None
    member: Member | None = None


class Conferences:
    """The live rooms. ``tenant_limit`` bounds the callers one company has in its rooms at once (mixing
    costs CPU per member every 20 ms: one tenant's rooms must not starve the others' calls) and
    ``total_limit`` those of the whole server; a caller over either is refused busy (486)."""

    def __init__(self, engine: CallControl, rooms: RoomPort, *, tenant_limit: int = 100,
                 total_limit: int = 500) -> None:
        self.engine = engine
        self.rooms = rooms
        self.tenant_limit = tenant_limit
        self.total_limit = total_limit
        self.live: dict[tuple[int, int], LiveRoom] = {}
        self._counts: dict[int, int] = {}  # callers in rooms or on their way in, by tenant
        self._total = 0

    def _count(self, tenant_id: int, delta: int) -> None:
        count = self._counts.get(tenant_id, 0) + delta
        if count:
            self._counts[tenant_id] = count
        else:
            self._counts.pop(tenant_id, None)
        self._total += delta

    # --- the API's view ------------------------------------------------------------------------------

    def members(self, tenant_id: int, room_id: int) -> list[Member]:
        room = self.live.get((tenant_id, room_id))
        return list(room.members.values()) if room is not None else []

    async def act(self, tenant_id: int, room_id: int, call_id: str, action: str) -> bool:
        """``mute`` / ``unmute`` / ``kick`` a member; False when it is not in the room."""
        room = self.live.get((tenant_id, room_id))
        member = room.members.get(call_id) if room is not None else None
        if room is None or member is None:
            return False
        if action == "kick":
            log.info("conference: member kicked", call=call_id, tenant=tenant_id, room=room_id)
            self.engine._hangup(member.call, None, ev.HangupSide.SYSTEM, "conference_kicked")
            return True
        muted = action == "mute"
        if member.muted != muted:
            member.muted = muted
            await self._apply_matrix(room, member)
            self.engine.publish(ev.ConferenceMuted, member.call, leg_id=member.leg_id, room_id=room_id, muted=muted)
        return True

    # --- a call to a room ----------------------------------------------------------------------------

    async def lookup(self, tenant_id: int, number: str) -> RoomInfo | None:
        if not number.isdigit() or not 2 <= len(number) <= 8:
            return None  # room numbers are extension-like: an outside number costs no look-up
        return await self.rooms.room(tenant_id, number)

    async def enter(self, call: Call, room: RoomInfo, *, language: str) -> None:
        engine = self.engine
        live = self.live.get((room.tenant_id, room.id))
        if live is not None and len(live.members) >= room.max_members:
            await engine._refuse(call, 486, "conference_full")
            return
        if self._counts.get(room.tenant_id, 0) >= self.tenant_limit or self._total >= self.total_limit:
            log.warning("conference: capacity reached", call=call.id, tenant=room.tenant_id,
                        tenant_members=self._counts.get(room.tenant_id, 0), total=self._total)
            await engine._refuse(call, 486, "conference_capacity")
            return
        dialogue = ConferenceDialogue(member_pin=room.pin_hash is not None,
                                      moderator_pin=room.moderator_pin_hash is not None)
        session = ConferenceSession(room=room, dialogue=dialogue, language=language)
        call.conference = session  # counted from here (PIN entry included) until left()
        self._count(room.tenant_id, +1)
        if not await engine._negotiate_caller(call):
            return
        if call.answered_at is None:  # else a voice menu answered it and sent the caller here
            engine._answer_caller(call)
        caller = call.caller
        assert caller is not None and caller.endpoint is not None
        await engine._watch_media(call)
        await engine.media.on_dtmf(caller.endpoint, lambda event: self._key(call, event))
        dialogue.start(time.monotonic())
        await self._pump(call)

    def _key(self, call: Call, event: DtmfReceived) -> None:
        session = call.conference
        if session is None or call.ended:
            return
        try:
            session.dialogue.dtmf(event.digit, time.monotonic())
        except ValueError:
            return
        self.engine.step(call, self._pump(call))

    async def _pump(self, call: Call) -> None:
        session: ConferenceSession | None = call.conference
        caller = call.caller
        if session is None or caller is None or caller.endpoint is None:
            return
        dialogue = session.dialogue
        while (action := dialogue.next_action()) is not None:
            if call.ended:
                return
            if isinstance(action, Play):
                session.queue.append(action.prompt)
                if not session.playing:
                    await self._play_next(call)
            elif isinstance(action, StopPlayback):
                session.queue.clear()
                session.playing = False
                await self.engine.media.stop_play(caller.endpoint)
            elif isinstance(action, VerifyPin):
                self.engine.step(call, self._verify(call, action.pin))
            elif isinstance(action, Join):
                await self._join(call, session, action.moderator)
            elif isinstance(action, Hangup):
                log.info("conference: hang-up", call=call.id, reason=action.reason)
                self.engine._hangup(call, None, ev.HangupSide.SYSTEM, f"conference_{action.reason}")
                return
        if session.timer is not None:
            session.timer.cancel()
            session.timer = None
        deadline = dialogue.get_timer()
        if deadline is not None:
            session.timer = asyncio.get_running_loop().call_later(max(0.0, deadline - time.monotonic()),
                                                                  self._timer, call)

    def _timer(self, call: Call) -> None:
        session: ConferenceSession | None = call.conference
        if session is None or call.ended:
            return
        session.timer = None
        session.dialogue.timer(time.monotonic())
        self.engine.step(call, self._pump(call))

    async def _play_next(self, call: Call) -> None:
        session: ConferenceSession | None = call.conference
        caller = call.caller
        if session is None or caller is None or caller.endpoint is None:
            return
        if not session.queue:
            session.playing = False
            session.dialogue.play_finished(time.monotonic())
            await self._pump(call)
            return
        name = session.queue.pop(0)
        session.playing = True
        await self.engine.media.play(caller.endpoint, Prompt(path=prompt_path(name, session.language)),
                                     on_finished=lambda _e: self._played(call))

    def _played(self, call: Call) -> None:
        session: ConferenceSession | None = call.conference
        if session is None or call.ended or not session.playing:
            return
        self.engine.step(call, self._play_next(call))

    async def _verify(self, call: Call, entry: str) -> None:
        session: ConferenceSession | None = call.conference
        if session is None:
            return
        room = session.room
        # both hashes are always checked (an absent one against a dummy): the time tells nothing
        moderator = await verify_pin_in_thread(entry, room.moderator_pin_hash)
        member = await verify_pin_in_thread(entry, room.pin_hash)
        if call.ended or call.conference is not session:
            return
        role = PinRole.MODERATOR if moderator else PinRole.MEMBER if member else None
        log.info("conference: PIN checked", call=call.id, room=room.id, role=role)
        session.dialogue.pin_result(role, time.monotonic())
        await self._pump(call)

    # --- the mix -------------------------------------------------------------------------------------

    async def _join(self, call: Call, session: ConferenceSession, moderator: bool) -> None:
        caller = call.caller
        assert caller is not None and caller.endpoint is not None
        info = session.room
        live = self.live.setdefault((info.tenant_id, info.id), LiveRoom(info=info))
        if len(live.members) >= info.max_members:
            session.dialogue.refused(time.monotonic())
            return  # the pump goes on with the dialogue's goodbye
        if session.playing:
            session.queue.clear()
            session.playing = False
            await self.engine.media.stop_play(caller.endpoint)
        await self.engine.media.on_dtmf(caller.endpoint, None)
        waiting = info.wait_for_moderator and not moderator and not any(m.moderator for m in live.members.values())
        member = Member(call=call, leg_id=caller.id, endpoint=caller.endpoint, number=caller.party.number,
                        display_name=caller.party.display_name, moderator=moderator, joined_at=time.time(),
                        waiting=waiting)
        live.members[call.id] = member
        session.member = member
        await self.engine.media.mix_bridge(live.bridge_id, caller.endpoint, speaks=not waiting, listens=not waiting)
        if moderator:
            for other in live.members.values():
                if other.waiting:
                    other.waiting = False
                    await self._apply_matrix(live, other)
        log.info("conference: joined", call=call.id, tenant=call.tenant_id, room=info.id, moderator=moderator,
                 members=len(live.members))
        self.engine.publish(ev.ConferenceJoined, call, leg_id=member.leg_id, room_id=info.id, room_number=info.number,
                            room_name=info.name, moderator=moderator, waiting=waiting, members=len(live.members))
        self._beep(live)

    async def _apply_matrix(self, room: LiveRoom, member: Member) -> None:
        try:
            await self.engine.media.set_matrix(room.bridge_id, member.endpoint, speaks=not (member.muted or member.waiting),
                                               listens=not member.waiting)
        except MediaUsageError:
            pass  # the member's endpoint is being released: it is leaving anyway

    def _beep(self, room: LiveRoom) -> None:
        """A short tone to everyone in the room (someone came or went)."""
        for member in room.members.values():
            self.engine.spawn(self._beep_one(member.endpoint))

    async def _beep_one(self, endpoint: Endpoint) -> None:
        media = self.engine.media
        try:
            await media.play(endpoint, BEEP)
            await asyncio.sleep(BEEP_SECONDS)
            await media.stop_play(endpoint)
        except MediaUsageError:
            pass  # released meanwhile (it left)

    def left(self, call: Call) -> None:
        """The call ended (called by the engine as it finishes the call): out of its room, if in one."""
        session: ConferenceSession | None = call.conference
        if session is None:
            return
        call.conference = None
        self._count(session.room.tenant_id, -1)
        if session.timer is not None:
            session.timer.cancel()
            session.timer = None
        member = session.member
        if member is None:
            return
        key = (session.room.tenant_id, session.room.id)
        live = self.live.get(key)
        if live is None or live.members.pop(call.id, None) is None:
            return
        self.engine.publish(ev.ConferenceLeft, call, leg_id=member.leg_id, room_id=live.info.id,
                            room_number=live.info.number, members=len(live.members))
        log.info("conference: left", call=call.id, tenant=call.tenant_id, room=live.info.id, members=len(live.members))
        if live.members:
            self._beep(live)
        else:
            del self.live[key]  # the last one out: the room is torn down (its bridge went with the endpoint)
