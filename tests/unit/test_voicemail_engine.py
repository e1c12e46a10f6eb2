"""Voicemail in the real call engine (the harness: fake SIP, fake media, virtual clock) with an in-memory
mailbox port: a DID to a mailbox, busy forwarding to voicemail with the busy greeting, the caller's
hang-up keeping the message, silence ending it (trimmed), too short a message dropped, no mailbox 480,
and *97 with the PIN."""

from __future__ import annotations

import dataclasses
import time
import wave
from pathlib import Path
from typing import Any

from callengine_harness import TENANT, Harness

from zvonok.media.interface import Prompt, Tone
from zvonok.org.pins import hash_pin
from zvonok.telephony import events as ev
from zvonok.telephony.forwarding import ForwardingSettings
from zvonok.telephony.voicemail import MailboxInfo, MessageInfo, NewMessage, Voicemail


class FakeMailboxes:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.boxes: dict[tuple[int, str], MailboxInfo] = {}
        self.stored: list[tuple[MailboxInfo, NewMessage]] = []
        self.updates: list[tuple[int, bool | None, str | None]] = []
        self.deleted: list[int] = []
        self.listed: list[MessageInfo] = []
        self.greetings: list[tuple[str, float]] = []

    def add(self, number: str, *, pin: str | None = "4711", silence: int = 0, greetings: dict[str, Path] | None = None,
            enabled: bool = True) -> MailboxInfo:
        box = MailboxInfo(id=len(self.boxes) + 1, tenant_id=TENANT, number=number, extension_id=100 + len(self.boxes),
                          enabled=enabled, pin_hash=hash_pin(pin) if pin else None, max_message_seconds=60,
                          silence_seconds=silence, greetings=greetings or {}, directory=self.root / number)
        self.boxes[(TENANT, number)] = box
        return box

    async def mailbox(self, tenant_id: int, number: str) -> MailboxInfo | None:
        return self.boxes.get((tenant_id, number))

    async def store(self, box: MailboxInfo, message: NewMessage) -> int:
        self.stored.append((box, message))
        return len(self.stored)

    async def messages(self, box: MailboxInfo) -> list[MessageInfo]:
        return list(self.listed)

    async def update(self, box: MailboxInfo, message_id: int, *, read: bool | None = None,
                     folder: str | None = None) -> None:
        self.updates.append((message_id, read, folder))

    async def delete(self, box: MailboxInfo, message_id: int) -> None:
        self.deleted.append(message_id)

    async def save_greeting(self, box: MailboxInfo, kind: str, file: Path) -> None:
        with wave.open(str(file), "rb") as reader:
            self.greetings.append((kind, reader.getnframes() / 8000))


def with_voicemail(h: Harness, tmp_path: Path) -> FakeMailboxes:
    port = FakeMailboxes(tmp_path)
    h.engine.voicemail = Voicemail(h.engine, port)
    return port


def prompts(h: Harness) -> list[str]:
    return [s.path.stem if isinstance(s, Prompt) else "beep" if isinstance(s, Tone) else "?" for _e, s in h.media.played]


def finish(h: Harness, endpoint: Any) -> None:
    h.deliver(h.media.finish_playing, endpoint)


def threads(h: Harness) -> None:
    """Let work handed to worker threads (a directory made, an argon2 check, a WAV trimmed) come back."""
    for _ in range(10):
        time.sleep(0.02)
        h.settle()


def advance(h: Harness, seconds: float) -> None:
    threads(h)
    h.advance(seconds)
    threads(h)


def test_did_to_a_mailbox_records_until_the_caller_hangs_up(tmp_path: Path) -> None:
    with Harness() as h:
        port = with_voicemail(h, tmp_path)
        h.extension("101")
        port.add("101")
        _trunk, carrier = h.trunk()
        h.did("+74950000002", "voicemail", {"number": "101"})
        call = h.call_from_trunk(carrier, "+79161234567", "+74950000002")
        assert call.final_status() == 200  # the mailbox answers
        call.ack()
        engine_call = call.engine_call
        assert engine_call is not None and engine_call.caller is not None
        endpoint = engine_call.caller.endpoint
        assert prompts(h) == ["vm_unavailable"]
        finish(h, endpoint)  # the greeting ran out: the beep
        assert prompts(h)[-1] == "beep"
        advance(h, 0.5)  # the beep is over: recording
        assert len(h.media.recordings) == 1
        advance(h, 4.0)
        call.bye()
        threads(h)
        assert not h.media.recordings
        ((box, message),) = port.stored
        assert (box.number, message.caller_number, message.call_id) == ("101", "+79161234567", engine_call.id)
        assert 3.9 <= message.duration <= 4.1
        with wave.open(str(message.file), "rb") as reader:
            assert abs(reader.getnframes() / 8000 - message.duration) < 0.05
        (left,) = h.events_of(ev.VoicemailLeft)
        assert (left.mailbox_number, left.message_id, left.caller_number) == ("101", 1, "+79161234567")
        (ended,) = h.events_of(ev.CallEnded)
        assert ended.disposition is ev.Disposition.VOICEMAIL


def test_busy_forward_to_voicemail_plays_the_busy_greeting_and_hash_ends(tmp_path: Path) -> None:
    with Harness() as h:
        port = with_voicemail(h, tmp_path)
        alice, bob = h.extension("101"), h.extension("102")
        key = (TENANT, "102")
        h.directory.extensions[key] = dataclasses.replace(
            h.directory.extensions[key], forwarding=ForwardingSettings(busy="voicemail:102"))
        own = tmp_path / "busy.wav"
        own.write_bytes(b"RIFF")
        port.add("102", greetings={"busy": own})
        call = h.call(alice, "102")
        h.reply(h.invites_to(bob)[0], 486)
        assert call.final_status() == 200
        call.ack()
        engine_call = call.engine_call
        assert engine_call is not None and engine_call.caller is not None
        endpoint = engine_call.caller.endpoint
        assert isinstance(h.media.played[-1][1], Prompt) and h.media.played[-1][1].path == own  # its own greeting
        h.dtmf(endpoint, "#")  # skip it
        assert prompts(h)[-1] == "beep"
        advance(h, 0.5)
        advance(h, 2.0)
        h.dtmf(endpoint, "#")  # done
        threads(h)
        assert prompts(h)[-1] == "goodbye" and len(port.stored) == 1
        finish(h, endpoint)
        assert h.sent_requests("BYE")  # we hang up after the goodbye
        assert h.events_of(ev.CallEnded)[0].disposition is ev.Disposition.VOICEMAIL
        assert [f.to_number for f in h.events_of(ev.CallForwarded)] == ["voicemail:102"]


def test_silence_ends_and_is_trimmed_and_a_short_message_is_dropped(tmp_path: Path) -> None:
    with Harness() as h:
        port = with_voicemail(h, tmp_path)
        h.extension("101")
        port.add("101", silence=3)
        _trunk, carrier = h.trunk()
        h.did("+74950000003", "voicemail", {"number": "101"})

        def reach_recording() -> Any:
            call = h.call_from_trunk(carrier, "+79160000000", "+74950000003")
            call.ack()
            engine_call = call.engine_call
            assert engine_call is not None and engine_call.caller is not None
            endpoint = engine_call.caller.endpoint
            finish(h, endpoint)
            advance(h, 0.5)
            return call, endpoint

        _call, _endpoint = reach_recording()
        advance(h, 6.0)  # 3 s of speech, then 3 s of silence
        (recording,) = h.media.recordings.values()
        h.deliver(h.media.silence, recording[0], 3.0)
        threads(h)
        ((_box, message),) = port.stored
        assert 2.9 <= message.duration <= 3.1  # the silence is cut off
        short, _ = reach_recording()
        advance(h, 0.5)
        short.bye()  # hung up right after the beep: nothing kept
        threads(h)
        assert len(port.stored) == 1 and not list((tmp_path / "101").glob(f"{short.engine_call or 'x'}*"))


def test_no_mailbox_is_unavailable(tmp_path: Path) -> None:
    with Harness() as h:
        port = with_voicemail(h, tmp_path)
        h.extension("101")
        port.add("102", enabled=False)
        _trunk, carrier = h.trunk()
        h.did("+74950000004", "voicemail", {"number": "101"})
        assert h.call_from_trunk(carrier, "+79160000000", "+74950000004").final_status() == 480
        h.did("+74950000005", "voicemail", {"number": "102"})
        assert h.call_from_trunk(carrier, "+79160000000", "+74950000005").final_status() == 480


def test_star97_asks_the_pin_and_plays_the_messages(tmp_path: Path) -> None:
    with Harness() as h:
        port = with_voicemail(h, tmp_path)
        alice = h.extension("101")
        port.add("101", pin="4711")
        recorded = tmp_path / "m1.wav"
        recorded.write_bytes(b"RIFF")
        port.listed = [MessageInfo(id=7, path=recorded, folder="inbox", read=False)]
        call = h.call(alice, "*97")
        assert call.final_status() == 200
        call.ack()
        engine_call = call.engine_call
        assert engine_call is not None and engine_call.caller is not None
        endpoint = engine_call.caller.endpoint
        assert prompts(h) == ["enter_pin"]
        h.dtmf(endpoint, "1111#")
        threads(h)  # the argon2 check runs in a thread
        advance(h, 0.5)
        assert prompts(h)[-1] == "wrong_pin"
        finish(h, endpoint)
        assert prompts(h)[-1] == "enter_pin"
        h.dtmf(endpoint, "4711#")
        threads(h)
        advance(h, 0.5)
        assert prompts(h)[-1] == "vm_message" and port.updates == [(7, True, None)]
        finish(h, endpoint)
        assert isinstance(h.media.played[-1][1], Prompt) and h.media.played[-1][1].path == recorded
        h.dtmf(endpoint, "7")
        threads(h)
        assert port.deleted == [7] and prompts(h)[-1] == "vm_deleted"
        finish(h, endpoint)
        assert prompts(h)[-1] == "vm_no_more"
        assert h.events_of(ev.CallEnded) == []


def test_a_greeting_recorded_by_phone(tmp_path: Path) -> None:
    with Harness() as h:
        port = with_voicemail(h, tmp_path)
        alice = h.extension("101")
        port.add("101", pin="4711")
        call = h.call(alice, "*97")
        call.ack()
        engine_call = call.engine_call
        assert engine_call is not None and engine_call.caller is not None
        endpoint = engine_call.caller.endpoint
        h.dtmf(endpoint, "4711#")
        threads(h)
        advance(h, 0.5)
        assert prompts(h)[-1] == "vm_no_messages"
        h.dtmf(endpoint, "0")
        h.dtmf(endpoint, "1")
        assert prompts(h)[-1] == "vm_record_greeting"
        finish(h, endpoint)  # then the beep
        advance(h, 0.5)  # the beep is over: recording
        assert len(h.media.recordings) == 1
        advance(h, 3.0)
        h.dtmf(endpoint, "#")
        threads(h)
        assert port.greetings and port.greetings[0][0] == "unavailable" and 2.9 <= port.greetings[0][1] <= 3.1
        # a second one, cut short by hanging up: not kept
        h.dtmf(endpoint, "0")
        h.dtmf(endpoint, "2")
        finish(h, endpoint)
        advance(h, 2.0)
        assert len(h.media.recordings) == 1
        call.bye()
        threads(h)
        assert len(port.greetings) == 1 and not h.media.recordings
        assert not list((tmp_path / "101").glob("*greeting*"))  # the half-said one was deleted
