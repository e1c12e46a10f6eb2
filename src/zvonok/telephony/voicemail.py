"""Voicemail in the call engine: a caller leaves a message; an extension listens to a mailbox.

Drives one sans-I/O dialogue per call (:mod:`.voicemail_dialogue`) as steps of the call
(:meth:`CallEngine.step`): we answer the caller ourselves, play the dialogue's greeting, beep and prompts
in order on the caller's endpoint, feed it the caller's RFC 4733 keys, the silence the media engine
reports and one timer, and record the caller's leg alone into the new message's WAV file. Mailboxes and
messages are read and written through :class:`MailboxPort` (implemented by
:mod:`zvonok.voicemail.service`): no SQL here.

Ways in: :meth:`Voicemail.leave` — a number's ``voicemail`` destination, forwarding on busy / no answer /
unavailable to ``voicemail:<number>``; :meth:`Voicemail.feature_code` — ``*97`` (own mailbox) and
``*98`` (any mailbox of the company). The engine calls :meth:`Voicemail.ended` as the call ends: a
recording still running (the caller hung up after speaking, the usual end) is finished and kept.
"""

from __future__ import annotations

import asyncio
import os
import time
import wave
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from zvonok.logs import get_logger
from zvonok.media.errors import MediaUsageError
from zvonok.media.events import DtmfReceived, MediaTimeout, PlaybackFinished
from zvonok.media.interface import MediaEngine, Prompt, Recording, Tone
from zvonok.media.prompts import prompt_path
from zvonok.org.pins import verify_pin_in_thread
from zvonok.sip.message import Request
from zvonok.sip.peer import Peer
from zvonok.sip.transaction import ServerTransaction

from . import events as ev
from .call import Call
from .directory import ExtensionInfo
from .pin_guard import PinGuard
from .voicemail_dialogue import (
    Alarm,
    Beep,
    Blocked,
    Delete,
    DialogueConfig,
    GreetingKind,
    Hangup,
    LeaveMessage,
    MailboxDialogue,
    MarkRead,
    Play,
    PlayGreeting,
    PlayMessage,
    Save,
    StartGreeting,
    StartRecording,
    StopGreeting,
    StopPlayback,
    StopRecording,
    VerifyPin,
)

log = get_logger(__name__)

BEEP = Tone(frequencies=(1000.0,), amplitude=0.3)
BEEP_SECONDS = 0.4
MIN_MESSAGE_SECONDS = 1.0  # shorter recordings are a caller who hung up at the beep: not kept
TARGET_PREFIX = "voicemail:"  # a forwarding target: voicemail:<extension number>
OWN_MAILBOX_CODE = "*97"
ANY_MAILBOX_CODE = "*98"


@dataclass(frozen=True, slots=True, kw_only=True)
class MailboxInfo:
    id: int
    tenant_id: int
    number: str  # the extension's
    extension_id: int
    enabled: bool
    pin_hash: str | None
    max_message_seconds: int
    silence_seconds: int
    greetings: dict[str, Path]  # kind -> the mailbox's own greeting file (only those set)
    directory: Path  # where its messages' files go


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageInfo:
    id: int
    path: Path
    folder: str
    read: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class NewMessage:
    call_id: str
    caller_number: str
    caller_name: str
    duration: float
    file: Path  # the WAV file, in the mailbox's directory


class MailboxPort(Protocol):
    async def mailbox(self, tenant_id: int, number: str) -> MailboxInfo | None: ...

    async def store(self, box: MailboxInfo, message: NewMessage) -> int: ...

    async def messages(self, box: MailboxInfo) -> list[MessageInfo]: ...

    async def update(self, box: MailboxInfo, message_id: int, *, read: bool | None = None,
                     folder: str | None = None) -> None: ...

    async def delete(self, box: MailboxInfo, message_id: int) -> None: ...

    async def save_greeting(self, box: MailboxInfo, kind: str, file: Path) -> None:
        """Make the recorded ``file`` the mailbox's greeting of ``kind`` (it is moved away)."""
        ...


class CallControl(Protocol):
    """What voicemail needs of the call engine (:class:`zvonok.telephony.b2bua.CallEngine`)."""

    media: MediaEngine
    pin_guard: PinGuard
    prompt_language: str
    trunks: Any

    def step(self, call: Call, coro: Coroutine[Any, Any, None]) -> None: ...

    def publish(self, event_type: type[ev.CallEvent], call: Call, **fields: Any) -> None: ...

    def _open_call(self, txn: ServerTransaction, request: Request, peer: Peer, *, tenant_id: int, party: ev.Party,
                   domain: str, dialed: str, direction: ev.Direction, session_expires: int | None,
                   srtp_policy: str | None = None) -> Call: ...

    async def _negotiate_caller(self, call: Call) -> bool: ...

    def _answer_caller(self, call: Call, answered_by: Any = None) -> None: ...

    async def _refuse(self, call: Call, status: int, cause: str, reason: str | None = None,
                      disposition: ev.Disposition = ev.Disposition.FAILED) -> None: ...

    def _hangup(self, call: Call, from_leg: Any, side: ev.HangupSide, cause: str,
                disposition: ev.Disposition | None = None) -> None: ...


@dataclass(eq=False)
class VoicemailSession:
    """One call's voicemail (``call.voicemail``): leaving a message or listening to a mailbox."""

    dialogue: LeaveMessage | MailboxDialogue
    language: str
    box: MailboxInfo | None
    queue: list[Prompt | Tone] = field(default_factory=list)
    playing: bool = False
    timer: asyncio.TimerHandle | None = None
    beep_timer: asyncio.TimerHandle | None = None
    recording: Recording | None = None
    file: Path | None = None
    recording_started: float = 0.0
    messages: dict[int, MessageInfo] = field(default_factory=dict)
    left: bool = False  # a message was stored
    greeting: Recording | None = None  # a greeting being recorded by phone (*97/*98, key 0)


def trim_wav(path: Path, keep_seconds: float) -> float:
    """Cut a recording to its first ``keep_seconds`` (the silence that ended it is no part of the message);
    the new length in seconds. Blocking: run it in a thread."""
    with wave.open(str(path), "rb") as reader:
        params = reader.getparams()
        frames = reader.readframes(min(params.nframes, max(0, int(keep_seconds * params.framerate))))
    tmp = path.with_suffix(".tmp")
    with wave.open(str(tmp), "wb") as writer:
        writer.setparams(params)
        writer.writeframes(frames)
    os.replace(tmp, path)
    return len(frames) / (params.sampwidth * params.nchannels) / params.framerate


class Voicemail:
    def __init__(self, engine: CallControl, port: MailboxPort, *, config: DialogueConfig | None = None) -> None:
        self.engine = engine
        self.port = port
        self.config = config or DialogueConfig()

    def language(self, tenant_id: int) -> str:
        tenant = self.engine.trunks.snapshot.tenants.get(tenant_id) if self.engine.trunks is not None else None
        return tenant.locale if tenant is not None else self.engine.prompt_language

    # --- ways in ---------------------------------------------------------------------------------------
    async def leave(self, call: Call, number: str, kind: GreetingKind) -> None:
        """The caller reaches mailbox ``number`` (480 when it has none, or it is disabled)."""
        box = await self.port.mailbox(call.tenant_id, number) if number.isdigit() else None
        if box is None or not box.enabled:
            log.info("voicemail: no mailbox", call=call.id, tenant=call.tenant_id, mailbox=number)
            await self.engine._refuse(call, 480, "unavailable")
            return
        config = DialogueConfig(max_message_seconds=float(box.max_message_seconds),
                                first_digit_timeout=self.config.first_digit_timeout,
                                closing_timeout=self.config.closing_timeout)
        session = VoicemailSession(dialogue=LeaveMessage(kind=kind, config=config),
                                   language=self.language(call.tenant_id), box=box)
        log.info("voicemail: caller to a mailbox", call=call.id, tenant=call.tenant_id, mailbox=number,
                 greeting=kind.value)
        await self._answer(call, session)

    async def feature_code(self, engine: CallControl, txn: ServerTransaction, request: Request, peer: Peer,
                           tenant_id: int, domain: str, caller_ext: ExtensionInfo, dialed: str,
                           session_expires: int | None) -> bool:
        """``*97`` / ``*98`` from an extension: True when it was one of them (the call is ours then)."""
        if dialed not in (OWN_MAILBOX_CODE, ANY_MAILBOX_CODE):
            return False
        call = engine._open_call(txn, request, peer, tenant_id=tenant_id, party=caller_ext.party(), domain=domain,
                                 dialed=dialed, session_expires=session_expires, srtp_policy=caller_ext.srtp,
                                 direction=ev.Direction.INTERNAL)
        dialogue = MailboxDialogue(tenant_id=tenant_id,
                                   mailbox=caller_ext.number if dialed == OWN_MAILBOX_CODE else None,
                                   config=self.config, guard=engine.pin_guard, caller_id=caller_ext.number)
        await self._answer(call, VoicemailSession(dialogue=dialogue, language=self.language(tenant_id), box=None))
        return True

    async def _answer(self, call: Call, session: VoicemailSession) -> None:
        call.voicemail = session
        if not await self.engine._negotiate_caller(call):
            return
        if call.answered_at is None:  # else a queue answered it (music) and its overflow sent the caller here
            self.engine._answer_caller(call)
        call.ringback = False  # the greeting replaces the overflow's ringback
        caller = call.caller
        assert caller is not None and caller.endpoint is not None
        await self.engine.media.on_dtmf(caller.endpoint, lambda event: self._key(call, event))
        session.dialogue.start(time.monotonic())
        await self._pump(call)

    # --- the dialogue's inputs -----------------------------------------------------------------------------
    def _key(self, call: Call, event: DtmfReceived) -> None:
        session: VoicemailSession | None = call.voicemail
        if session is None or call.ended:
            return
        try:
            session.dialogue.dtmf(event.digit, time.monotonic())
        except ValueError:
            return
        self.engine.step(call, self._pump(call))

    def _silence(self, call: Call, _event: MediaTimeout) -> None:
        session: VoicemailSession | None = call.voicemail
        if session is None or call.ended or not isinstance(session.dialogue, LeaveMessage):
            return
        session.dialogue.silence(time.monotonic())
        self.engine.step(call, self._pump(call))

    def _timer(self, call: Call) -> None:
        session: VoicemailSession | None = call.voicemail
        if session is None or call.ended:
            return
        session.timer = None
        session.dialogue.timer(time.monotonic())
        self.engine.step(call, self._pump(call))

    def _played(self, call: Call, event: PlaybackFinished) -> None:
        session: VoicemailSession | None = call.voicemail
        if session is None or call.ended or not session.playing or event.stopped:
            return  # (a stopped one was cut short by us: what plays now is another's, not yet done)
        self.engine.step(call, self._play_next(call))

    # --- the dialogue's actions ----------------------------------------------------------------------------
    async def _pump(self, call: Call) -> None:
        session: VoicemailSession | None = call.voicemail
        caller = call.caller
        if session is None or caller is None or caller.endpoint is None:
            return
        dialogue = session.dialogue
        while (action := dialogue.next_action()) is not None:
            if call.ended:
                return
            if isinstance(action, (Play, PlayGreeting, Beep, PlayMessage)):
                source = self._source(session, action)
                if source is None:
                    continue
                session.queue.append(source)
                if not session.playing:
                    await self._play_next(call)
            elif isinstance(action, StopPlayback):
                session.queue.clear()
                session.playing = False
                self._cancel_beep(session)
                await self.engine.media.stop_play(caller.endpoint)
            elif isinstance(action, StartRecording):
                await self._start_recording(call, session)
            elif isinstance(action, StopRecording):
                await self._stop_recording(call, session, action.reason)
            elif isinstance(action, StartGreeting):
                await self._start_greeting(call, session, action.kind)
            elif isinstance(action, StopGreeting):
                await self._stop_greeting(call, session, action.kind.value, keep=True)
            elif isinstance(action, VerifyPin):
                self.engine.step(call, self._verify(call, action.mailbox, action.pin))
            elif isinstance(action, MarkRead):
                await self._update(session, action.message_id, read=True)
            elif isinstance(action, Save):
                await self._update(session, action.message_id, folder="saved")
            elif isinstance(action, Delete):
                if session.box is not None:
                    await self.port.delete(session.box, action.message_id)
                session.messages.pop(action.message_id, None)
            elif isinstance(action, Blocked):
                log.warning("voicemail: PIN guesses blocked", call=call.id, tenant=call.tenant_id,
                            source=str(action.source))
            elif isinstance(action, Alarm):
                log.warning("voicemail: wrong PINs over the alarm rate", call=call.id)
            elif isinstance(action, Hangup):
                log.info("voicemail: hang-up", call=call.id, reason=action.reason)
                self.engine._hangup(call, None, ev.HangupSide.SYSTEM, f"voicemail_{action.reason}")
                return
        if session.timer is not None:
            session.timer.cancel()
            session.timer = None
        deadline = dialogue.get_timer()
        if deadline is not None:
            session.timer = asyncio.get_running_loop().call_later(max(0.0, deadline - time.monotonic()),
                                                                  self._timer, call)

    def _source(self, session: VoicemailSession, action: Play | PlayGreeting | Beep | PlayMessage) -> Prompt | Tone | None:
        if isinstance(action, Beep):
            return BEEP
        if isinstance(action, Play):
            return Prompt(path=prompt_path(action.prompt, session.language))
        if isinstance(action, PlayGreeting):
            own = session.box.greetings.get(action.kind.value) if session.box is not None else None
            if own is not None and own.exists():
                return Prompt(path=own)
            default = "vm_busy" if action.kind is GreetingKind.BUSY else "vm_unavailable"
            return Prompt(path=prompt_path(default, session.language))
        message = session.messages.get(action.message_id)
        return Prompt(path=message.path) if message is not None and message.path.exists() else None

    async def _play_next(self, call: Call) -> None:
        session: VoicemailSession | None = call.voicemail
        caller = call.caller
        if session is None or caller is None or caller.endpoint is None:
            return
        if not session.queue:
            session.playing = False
            session.dialogue.play_finished(time.monotonic())
            await self._pump(call)
            return
        source = session.queue.pop(0)
        session.playing = True
        if isinstance(source, Tone):
            # a tone plays until stopped: our timer ends the beep
            await self.engine.media.play(caller.endpoint, source)
            session.beep_timer = asyncio.get_running_loop().call_later(
                BEEP_SECONDS, lambda: self.engine.step(call, self._beep_over(call)))
            return
        await self.engine.media.play(caller.endpoint, source, on_finished=lambda event: self._played(call, event))

    async def _beep_over(self, call: Call) -> None:
        session: VoicemailSession | None = call.voicemail
        caller = call.caller
        if session is None or caller is None or caller.endpoint is None or session.beep_timer is None:
            return
        session.beep_timer = None
        await self.engine.media.stop_play(caller.endpoint)
        if session.playing:
            await self._play_next(call)

    @staticmethod
    def _cancel_beep(session: VoicemailSession) -> None:
        if session.beep_timer is not None:
            session.beep_timer.cancel()
            session.beep_timer = None

    # --- recording ---------------------------------------------------------------------------------------
    async def _start_recording(self, call: Call, session: VoicemailSession) -> None:
        caller = call.caller
        box = session.box
        assert caller is not None and caller.endpoint is not None and box is not None
        await asyncio.to_thread(box.directory.mkdir, parents=True, exist_ok=True)
        session.file = box.directory / f"{call.id}.wav"
        session.recording_started = time.monotonic()
        session.recording = await self.engine.media.record(
            [caller.endpoint], session.file, stereo=False,
            on_silence=(lambda event: self._silence(call, event)) if box.silence_seconds > 0 else None,
            silence_seconds=float(box.silence_seconds))

    async def _stop_recording(self, call: Call, session: VoicemailSession, reason: str) -> None:
        recording, session.recording = session.recording, None
        box = session.box
        if recording is None or box is None or session.file is None:
            return
        try:
            info = await self.engine.media.stop_record(recording)
        except MediaUsageError:
            return
        seconds = info.seconds
        if reason == "silence" and box.silence_seconds > 0:
            seconds = await asyncio.to_thread(trim_wav, info.path, max(0.0, seconds - box.silence_seconds))
        if seconds < MIN_MESSAGE_SECONDS:
            log.info("voicemail: too short, not kept", call=call.id, seconds=round(seconds, 2))
            await asyncio.to_thread(info.path.unlink, True)
            return
        caller = call.caller
        party = caller.party if caller is not None else None
        number = party.number if party is not None else ""
        name = party.display_name if party is not None else ""
        message_id = await self.port.store(box, NewMessage(call_id=call.id, caller_number=number, caller_name=name,
                                                          duration=round(seconds, 2), file=session.file))
        session.left = True
        log.info("voicemail: message left", call=call.id, tenant=call.tenant_id, mailbox=box.number,
                 message=message_id, seconds=round(seconds, 2), ended_by=reason)
        self.engine.publish(ev.VoicemailLeft, call, mailbox_id=box.id, mailbox_number=box.number,
                            message_id=message_id, caller_number=number, caller_name=name,
                            duration=round(seconds, 2))

    async def _start_greeting(self, call: Call, session: VoicemailSession, kind: GreetingKind) -> None:
        caller = call.caller
        box = session.box
        assert caller is not None and caller.endpoint is not None and box is not None
        await asyncio.to_thread(box.directory.mkdir, parents=True, exist_ok=True)
        session.greeting = await self.engine.media.record([caller.endpoint], box.directory / f"{call.id}-greeting.wav",
                                                          stereo=False)

    async def _stop_greeting(self, call: Call, session: VoicemailSession, kind: str, *, keep: bool) -> None:
        recording, session.greeting = session.greeting, None
        if recording is None or session.box is None:
            return
        info = await self.engine.media.stop_record(recording)
        if keep and info.seconds >= MIN_MESSAGE_SECONDS:
            await self.port.save_greeting(session.box, kind, info.path)
            log.info("voicemail: greeting recorded by phone", call=call.id, tenant=call.tenant_id,
                     mailbox=session.box.number, kind=kind, seconds=round(info.seconds, 2))
        else:
            await asyncio.to_thread(info.path.unlink, True)

    # --- the mailbox by phone ----------------------------------------------------------------------------
    async def _verify(self, call: Call, number: str, pin: str) -> None:
        session: VoicemailSession | None = call.voicemail
        if session is None or not isinstance(session.dialogue, MailboxDialogue):
            return
        box = await self.port.mailbox(call.tenant_id, number) if number.isdigit() else None
        # a missing mailbox is checked against a dummy hash: the time does not tell which numbers exist
        ok = await verify_pin_in_thread(pin, box.pin_hash if box is not None else None)
        ok = ok and box is not None and box.enabled and box.pin_hash is not None
        messages: list[MessageInfo] = []
        if ok and box is not None:
            messages = await self.port.messages(box)
            session.box = box
            session.messages = {m.id: m for m in messages}
        if call.ended or call.voicemail is not session:
            return
        log.info("voicemail: mailbox PIN checked", call=call.id, tenant=call.tenant_id, mailbox=number, ok=ok)
        session.dialogue.pin_result(ok, [m.id for m in messages], time.monotonic())
        await self._pump(call)

    async def _update(self, session: VoicemailSession, message_id: int, *, read: bool | None = None,
                      folder: str | None = None) -> None:
        if session.box is not None and message_id in session.messages:
            await self.port.update(session.box, message_id, read=read, folder=folder)

    # --- the end -----------------------------------------------------------------------------------------
    async def ended(self, call: Call, disposition: ev.Disposition) -> ev.Disposition:
        """The call ends (called by the engine as it finishes the call): a running recording is kept; the
        disposition of a call that reached a mailbox to leave a message is ``voicemail``."""
        session: VoicemailSession | None = call.voicemail
        if session is None:
            return disposition
        call.voicemail = None
        if session.timer is not None:
            session.timer.cancel()
            session.timer = None
        self._cancel_beep(session)
        if session.recording is not None:
            try:
                await self._stop_recording(call, session, "hangup")
            except Exception:  # noqa: BLE001 - a lost message must not lose the CDR
                log.exception("voicemail: failed to keep a message", call=call.id)
        if session.greeting is not None:  # hung up before # : a greeting half said is not kept
            try:
                await self._stop_greeting(call, session, "", keep=False)
            except Exception:  # noqa: BLE001
                log.exception("voicemail: failed to drop a greeting recording", call=call.id)
        if isinstance(session.dialogue, LeaveMessage) and call.answered_at is not None:
            return ev.Disposition.VOICEMAIL
        return disposition
