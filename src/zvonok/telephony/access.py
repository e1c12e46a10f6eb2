"""The access-number service in the call engine: answer, prompts and keys, PIN, then the call out.

A mixin of :class:`zvonok.telephony.b2bua.CallEngine`, driving one sans-I/O
:class:`~zvonok.telephony.access_number.AccessNumberDialogue` per call. We answer the caller's INVITE
ourselves (our media endpoint is the far end), play the dialogue's prompts in order on that endpoint,
feed it the caller's RFC 4733 keys and one timer, look PINs up (extension + PIN, argon2 in a thread), and
on ``Dial`` route the number out as the PIN's owner: their permissions, caller ID and spending limits,
their office/department/employee on the CDR. If the number cannot be reached the caller hears why and
may try another; when the far end answers the two are bridged and the call goes on as any other.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from zvonok import metrics
from zvonok.logs import get_logger
from zvonok.media.events import DtmfReceived
from zvonok.media.interface import Prompt
from zvonok.media.prompts import prompt_path
from zvonok.org.pins import pin_entry_candidates, verify_pin_in_thread
from zvonok.pstn.routing import CallerProfile

from . import events as ev
from .access_number import (
    AccessNumberDialogue,
    Alarm,
    Blocked,
    Dial,
    DialFailure,
    Hangup,
    Play,
    StopPlayback,
    VerifyPin,
)
from .call import Call
from .pin_guard import employee_source, pin_sources

if TYPE_CHECKING:
    from .b2bua import CallEngine

log = get_logger(__name__)


class PinDirectory(Protocol):
    """What a PIN check reads of the company's people (:class:`zvonok.pstn.pin_directory.EmployeePins`)."""

    async def extension_lengths(self, tenant_id: int) -> list[int]: ...

    async def pin_hash(self, tenant_id: int, employee_id: int) -> str | None: ...

    async def profile(self, tenant_id: int, employee_id: int) -> CallerProfile: ...

    async def skipping_pin(self, tenant_id: int, caller_e164: str) -> int | None: ...


@dataclass(eq=False)
class AccessSession:
    dialogue: AccessNumberDialogue
    language: str
    queue: list[str] = field(default_factory=list)  # prompts waiting to play
    playing: bool = False
    timer: asyncio.TimerHandle | None = None
    profile: CallerProfile | None = None  # the PIN owner, once known


def _dial_failure(cause: str) -> DialFailure:
    if cause in ("not_allowed", "no_rate"):
        return DialFailure.NOT_ALLOWED
    if cause == "limit_reached":
        return DialFailure.LIMIT_REACHED
    return DialFailure.UNAVAILABLE


class AccessNumbers:
    """The access-number service of the engine's calls (``engine.access_numbers``): the dialogue carried
    out, the PIN checked, the call dialed out."""

    def __init__(self, engine: CallEngine, pins: PinDirectory | None = None) -> None:
        self.engine = engine
        self.pins = pins  # the company's people (zvonok.pstn.pin_directory, set by the root); None: no PIN is right

    async def answer(self, call: Call, destination: Any, *, caller_e164: str, language: str,
                             source_address: str | None, dialed: tuple[str, str] | None = None) -> None:
        """Answer an access-number call and start its dialogue (a blocked caller is refused unanswered)."""
        if self.engine.pin_guard.is_blocked(pin_sources(caller_e164, source_address), self.engine.clock()):
            log.info("access number: blocked caller refused", call=call.id, caller=caller_e164)
            await self.engine._refuse(call, 403, "access_blocked")
            return
        if not await self.engine._negotiate_caller(call):
            return
        skip_for = None
        if destination.get("skip_pin_for_known_callers"):
            skip_for = await self._employee_skipping_pin(call.tenant_id, caller_e164)
        dialogue = AccessNumberDialogue(guard=self.engine.pin_guard, caller_id=caller_e164, skip_pin_for=skip_for,
                                        source_address=source_address, dialed=dialed)
        session = AccessSession(dialogue=dialogue, language=language)
        call.access = session
        if call.answered_at is None:  # else a queue answered it (music) and its overflow sent the caller here
            self.engine._answer_caller(call)
        call.ringback = False  # the dialogue's prompts replace the overflow's ringback
        caller = call.caller
        assert caller is not None and caller.endpoint is not None
        endpoint = caller.endpoint
        await self.engine.media.on_dtmf(endpoint, lambda event: self._key(call, event))
        dialogue.start(self.engine.clock())
        # the dialogue's actions are carried out only by steps of the call's inbox: one pump at a time (a
        # key pressed while a prompt loads waits for it, and then stops it)
        self.engine.step(call, self._pump(call))

    def _key(self, call: Call, event: DtmfReceived) -> None:
        session = call.access
        if session is None or call.ended:
            return
        try:
            session.dialogue.dtmf(event.digit, self.engine.clock())
        except ValueError:
            return
        self.engine.step(call, self._pump(call))

    async def _pump(self, call: Call) -> None:
        """Carry out the dialogue's actions in order, then re-arm its one timer."""
        session = call.access
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
                if caller.endpoint is not None:
                    await self.engine.media.stop_play(caller.endpoint)
            elif isinstance(action, VerifyPin):
                self.engine.step(call, self.verify(call, action.pin))
            elif isinstance(action, Dial):
                self.engine.step(call, self._dial(call, action.destination, action.employee_ref))
            elif isinstance(action, Blocked):
                log.warning("access number: caller blocked after wrong PINs", call=call.id, tenant=call.tenant_id,
                            source=str(action.source))
                self.engine.publish(ev.AccessNumberBlocked, call, source_kind=action.source.kind.value,
                             source=action.source.value)
            elif isinstance(action, Alarm):
                metrics.ACCESS_PIN_ALARMS.inc()
                log.warning("access number: wrong PINs from all callers above the alarm rate", call=call.id,
                            tenant=call.tenant_id)
            elif isinstance(action, Hangup):
                log.info("access number: hang-up", call=call.id, reason=action.reason.value)
                self.engine._hangup(call, None, ev.HangupSide.SYSTEM, f"access_{action.reason.value}")
                return
        if session.timer is not None:
            session.timer.cancel()
            session.timer = None
        deadline = dialogue.get_timer()
        if deadline is not None:
            session.timer = asyncio.get_running_loop().call_later(max(0.0, deadline - self.engine.clock()),
                                                                  self._timer, call)

    def _timer(self, call: Call) -> None:
        session = call.access
        if session is None or call.ended:
            return
        session.timer = None
        session.dialogue.timer(self.engine.clock())
        self.engine.step(call, self._pump(call))

    async def _play_next(self, call: Call) -> None:
        session = call.access
        caller = call.caller
        if session is None or caller is None or caller.endpoint is None:
            return
        if not session.queue:
            session.playing = False
            session.dialogue.play_finished(self.engine.clock())
            await self._pump(call)
            return
        name = session.queue.pop(0)
        session.playing = True
        await self.engine.media.play(caller.endpoint, Prompt(path=prompt_path(name, session.language)),
                              on_finished=lambda _e: self._played(call))

    def _played(self, call: Call) -> None:
        session = call.access
        if session is None or call.ended or not session.playing:
            return  # stopped (barge-in): StopPlayback already dropped the queue
        self.engine.step(call, self._play_next(call))

    async def verify(self, call: Call, entry: str) -> None:
        """Which employee's PIN is ``entry`` (extension + PIN, or the bare PIN of a known caller)?"""
        session = call.access
        if session is None:
            return
        pins = self.pins
        lengths = await pins.extension_lengths(call.tenant_id) if pins is not None else []
        found: int | None = None
        targets: list[int] = []  # employees whose PIN this entry missed: the failure counts against them
        for candidate in pin_entry_candidates(entry, extension_lengths=lengths):
            ext = await self.engine.directory.extension(call.tenant_id, candidate.extension or "")
            employee_id = ext.employee_id if ext is not None else None
            hashed = (await pins.pin_hash(call.tenant_id, employee_id)
                      if pins is not None and employee_id is not None else None)
            right = await verify_pin_in_thread(candidate.pin, hashed)
            if hashed is None or employee_id is None:
                continue
            # asked after the same read and hash as for anyone: the time does not tell who is blocked
            if self.engine.pin_guard.is_blocked((employee_source(employee_id),), self.engine.clock()):
                continue  # too many wrong PINs for this one: refused, right or not
            if right:
                found = employee_id
                break
            targets.append(employee_id)
        if call.ended or call.access is None:
            return
        if found is not None:
            session.profile = await self._employee_profile(call.tenant_id, found)
        log.info("access number: PIN checked", call=call.id, ok=found is not None, employee=found)
        session.dialogue.pin_result(found is not None, found, self.engine.clock(), targets=targets)
        await self._pump(call)

    async def _employee_profile(self, tenant_id: int, employee_id: int) -> CallerProfile:
        if self.pins is None:
            return CallerProfile(tenant_id=tenant_id, employee_id=employee_id)
        return await self.pins.profile(tenant_id, employee_id)

    async def _employee_skipping_pin(self, tenant_id: int, caller_e164: str) -> int | None:
        return await self.pins.skipping_pin(tenant_id, caller_e164) if self.pins is not None else None

    async def _dial(self, call: Call, destination: str, employee_id: int) -> None:
        session = call.access
        if session is None or call.ended:
            return
        profile = session.profile or await self._employee_profile(call.tenant_id, employee_id)
        session.profile = profile
        log.info("access number: dialing", call=call.id, employee=employee_id, number=destination)
        await self.engine.outside.route(call, destination, profile)

    def dial_failed(self, call: Call, cause: str) -> bool:
        """An access-number call's outbound attempt failed: the dialogue goes on (True), else False."""
        session = call.access
        if session is None or call.ended:
            return False
        for fork in call.forks:
            self.engine._cancel_fork(fork, None)
        if call.no_answer is not None:
            call.no_answer.cancel()
            call.no_answer = None
        session.dialogue.dial_failed(_dial_failure(cause), self.engine.clock())
        self.engine.step(call, self._pump(call))
        return True

    async def connected(self, call: Call) -> None:
        """The far end answered: stop the prompts and the dialogue; the bridge does the rest."""
        session, call.access = call.access, None
        if session is None:
            return
        if session.timer is not None:
            session.timer.cancel()
        session.queue.clear()
        session.playing = False
        caller = call.caller
        if caller is not None and caller.endpoint is not None:
            await self.engine.media.stop_play(caller.endpoint)
            await self.engine.media.on_dtmf(caller.endpoint, None)
