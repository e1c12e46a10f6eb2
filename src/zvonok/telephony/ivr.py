"""IVR in the call engine: answer a call to a voice menu, play greetings, collect keys, carry it on.

How it works: a DID (or a schedule branch) with destination ``{"kind": "ivr", "menu": <id>}`` hands the
call to :meth:`Ivr.enter`. We read the tenant's menus through :class:`MenuPort` (no SQL here), answer
the caller ourselves (our endpoint is the far end, as for the access number and conferences) and run
one sans-I/O :class:`~.ivr_dialogue.IvrDialogue` per call: its greetings play on the caller's endpoint,
RFC 4733 keys (and SIP INFO keys, delivered as the same media events; and, from a peer whose SDP has no
telephone-event, keys heard in its audio by the in-band detector) and one timer feed it, and every
action is carried out by a step of the call (:meth:`CallControl.step`): one at a time, in order, and a
failure ends the call. On ``Transfer`` the dialogue is done: the caller hears ringback while the
extension (or the ring list, or the outside number) rings, and the engine joins the far end to the
answered caller as for the access number; a conference room takes the caller in at once.

When the transfer fails (busy, no answer, no route) the engine finishes the call; :meth:`Ivr.left`
runs first and sends the BYE our answer owes the caller (the engine's failure paths only answer an
INVITE that is still unanswered). Keys arriving after the transfer are the far end's business.

This module talks to the engine only through :class:`CallControl`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from zvonok.destination import MENU_KINDS, Conference, Destination, Fax, Queue, parse_payload
from zvonok.logs import get_logger
from zvonok.media.events import DtmfReceived, PlaybackFinished
from zvonok.media.interface import RINGBACK_RU, MediaEngine, Prompt

from . import events as ev
from .call import Call, Leg, LegState
from .ivr_dialogue import Hangup, IvrDialogue, IvrError, MenuSpec, Play, StopPlayback, Target, Transfer

log = get_logger(__name__)


class MenuPort(Protocol):
    async def menus(self, tenant_id: int) -> tuple[dict[int, MenuSpec], frozenset[str]]: ...


class ExtensionPort(Protocol):
    async def extension(self, tenant_id: int, number: str) -> Any: ...


class CallControl(Protocol):
    """What the IVR needs of the call engine (:class:`zvonok.telephony.b2bua.CallEngine`)."""

    media: MediaEngine

    @property
    def directory(self) -> ExtensionPort: ...

    conferences: Any
    queue_calls: Any  # telephony/queue_call.py: QueueCalls (None: no call center in this process)
    fax: Any  # telephony/fax_app.py: FaxApp (None: no fax in this process)
    clock: Callable[[], float]  # monotonic seconds (the event loop's: virtual in tests)

    def step(self, call: Call, coro: Coroutine[Any, Any, None]) -> None: ...

    def publish(self, event_type: type[ev.CallEvent], call: Call, **fields: Any) -> None: ...

    async def _negotiate_caller(self, call: Call) -> bool: ...

    def _answer_caller(self, call: Call, answered_by: Leg | None = None) -> None: ...

    async def _refuse(self, call: Call, status: int, cause: str, reason: str | None = None) -> None: ...

    async def _to_destination(self, call: Call, dest: Destination | None, now: float, *, from_number: str,
                              language: str | None = None) -> None: ...

    def _hangup(self, call: Call, from_leg: Leg | None, side: ev.HangupSide, cause: str) -> None: ...


@dataclass(eq=False)
class IvrSession:
    dialogue: IvrDialogue
    language: str
    from_number: str
    playing: bool = False
    timer: asyncio.TimerHandle | None = None
    transferred: bool = False  # the menu is done: the engine rings the target


class Ivr:
    def __init__(self, engine: CallControl, menus: MenuPort) -> None:
        self.engine = engine
        self.menus = menus
        self.clock = engine.clock
        self.sessions: dict[str, IvrSession] = {}  # by call id, from the answer to the end of the call

    async def enter(self, call: Call, menu_id: int, *, language: str, from_number: str) -> None:
        engine = self.engine
        specs, extensions = await self.menus.menus(call.tenant_id)
        try:
            dialogue = IvrDialogue(specs, menu_id, extensions=extensions)
        except IvrError:
            log.warning("ivr: the number's menu does not exist", call=call.id, tenant=call.tenant_id, menu=menu_id)
            await engine._refuse(call, 404, "no_route")
            return
        if not await engine._negotiate_caller(call):
            return
        session = IvrSession(dialogue=dialogue, language=language, from_number=from_number)
        self.sessions[call.id] = session
        if call.answered_at is None:  # else a queue answered it (music) and its overflow sent the caller here
            engine._answer_caller(call)
        call.ringback = False  # the menu's prompt replaces the overflow's ringback
        caller = call.caller
        assert caller is not None and caller.endpoint is not None
        await engine.media.on_dtmf(caller.endpoint, lambda event: self._key(call, event))
        if caller.media is not None and caller.media.telephone_event_pt is None:
            # no RFC 4733 from this peer (an old trunk gateway): listen for the tones in its audio
            await engine.media.detect_inband(caller.endpoint, True)
        log.info("ivr: caller in the menu", call=call.id, tenant=call.tenant_id, menu=menu_id)
        dialogue.start(self.clock())
        await self._pump(call)

    def _key(self, call: Call, event: DtmfReceived) -> None:
        session = self.sessions.get(call.id)
        if session is None or call.ended or session.transferred:
            return
        session.dialogue.dtmf(event.digit, self.clock())
        self.engine.step(call, self._pump(call))

    async def _pump(self, call: Call) -> None:
        session = self.sessions.get(call.id)
        caller = call.caller
        if session is None or caller is None or caller.endpoint is None or call.ended:
            return
        media = self.engine.media
        dialogue = session.dialogue
        while (action := dialogue.next_action()) is not None:
            if call.ended:
                return
            if isinstance(action, Play):
                session.playing = True
                await media.play(caller.endpoint, Prompt(path=Path(action.prompt)),
                                 on_finished=lambda finished: self._played(call, finished))
            elif isinstance(action, StopPlayback):
                session.playing = False
                await media.stop_play(caller.endpoint)
            elif isinstance(action, Transfer):
                self._cancel_timer(session)
                session.transferred = True
                await media.on_dtmf(caller.endpoint, None)
                await media.detect_inband(caller.endpoint, False)
                self.engine.publish(ev.IvrLeft, call, menus=tuple(dialogue.visited),
                                    target_kind=action.target.kind, reason=action.reason)
                await self._transfer(call, session, action.target)
                return
            elif isinstance(action, Hangup):
                self._cancel_timer(session)
                log.info("ivr: hang-up", call=call.id, reason=action.reason, menus=session.dialogue.visited)
                self.engine.publish(ev.IvrLeft, call, menus=tuple(dialogue.visited), target_kind="hangup",
                                    reason=action.reason)
                self.engine._hangup(call, None, ev.HangupSide.SYSTEM, f"ivr_{action.reason}")
                return
        self._cancel_timer(session)
        deadline = dialogue.get_timer()
        if deadline is not None:
            session.timer = asyncio.get_running_loop().call_later(max(0.0, deadline - self.clock()), self._timer, call)

    @staticmethod
    def _cancel_timer(session: IvrSession) -> None:
        if session.timer is not None:
            session.timer.cancel()
            session.timer = None

    def _timer(self, call: Call) -> None:
        session = self.sessions.get(call.id)
        if session is None or call.ended:
            return
        session.timer = None
        session.dialogue.timer(self.clock())
        self.engine.step(call, self._pump(call))

    def _played(self, call: Call, finished: PlaybackFinished) -> None:
        session = self.sessions.get(call.id)
        if session is None or call.ended or not session.playing or finished.stopped:
            return
        session.playing = False
        session.dialogue.play_finished(self.clock())
        self.engine.step(call, self._pump(call))

    async def _transfer(self, call: Call, session: IvrSession, target: Target) -> None:
        """The menu is done: the key's destination, typed, goes to the engine's one dispatch
        (the engine's ``_to_destination``); a target that names nothing ends the call with BYE."""
        engine = self.engine
        caller = call.caller
        assert caller is not None and caller.endpoint is not None
        log.info("ivr: transfer", call=call.id, tenant=call.tenant_id, kind=target.kind, menus=session.dialogue.visited)
        try:
            dest: Destination | None = parse_payload(target.kind, dict(target.payload), kinds=MENU_KINDS)
        except ValueError:
            dest = None  # stored by an older version and unreadable now (direct dial digits are checked above)
        if isinstance(dest, (Conference, Queue, Fax)):
            self.sessions.pop(call.id, None)  # the room's dialogue, the queue or the fax terminal takes it from here
        else:
            # ringback while the target rings; the engine stops it when the far end answers (call.ringback)
            await engine.media.play(caller.endpoint, RINGBACK_RU)
            call.ringback = True
        await engine._to_destination(call, dest, time.time(), from_number=session.from_number,
                                     language=session.language)

    def left(self, call: Call, side: ev.HangupSide) -> None:
        """The engine is finishing the call (before it marks it ended): forget its menu; a caller we
        answered whose transfer failed gets our BYE (the failure paths only answer unanswered INVITEs)."""
        session = self.sessions.pop(call.id, None)
        if session is None:
            return
        self._cancel_timer(session)
        caller = call.caller
        if (session.transferred and call.callee is None and side is not ev.HangupSide.CALLER and caller is not None
                and caller.state is LegState.ANSWERED):
            self.engine._hangup(call, None, ev.HangupSide.SYSTEM, "ivr_transfer_failed")
