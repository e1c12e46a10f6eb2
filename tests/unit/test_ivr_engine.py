"""The IVR in the real call engine (virtual time, fake SIP and media): a DID answered by its menu, keys
by RFC 4733 and by SIP INFO, the transfer with ringback, a failed transfer's BYE, the timeout target, a
key to a room and a key to a fax terminal (answered once, by the menu)."""

from __future__ import annotations

from pathlib import Path

from callengine_harness import Harness, PhoneCall

from zvonok.media.interface import RINGBACK_RU, Endpoint, Prompt
from zvonok.telephony import events as ev
from zvonok.telephony.call import Call
from zvonok.telephony.ivr import Ivr
from zvonok.telephony.ivr_dialogue import MenuSpec, Target

DID = "+74950000007"
MENUS = {
    1: MenuSpec(id=1, prompt="/prompts/main.wav", keys={"1": Target(kind="menu", payload={"menu": 2})},
                timeout=5.0, retries=0, timeout_target=Target(kind="extension", payload={"number": "202"})),
    2: MenuSpec(id=2, prompt="/prompts/sub.wav", keys={"2": Target(kind="extension", payload={"number": "201"})}),
}


class Menus:
    async def menus(self, tenant_id: int) -> tuple[dict[int, MenuSpec], frozenset[str]]:
        return MENUS, frozenset()


def into_menu(h: Harness) -> tuple[PhoneCall, Endpoint]:
    h.engine.ivr = Ivr(h.engine, Menus())
    _trunk, carrier = h.trunk()
    h.did(DID, "ivr", {"menu": 1})
    call = h.call_from_trunk(carrier, "+79161234567", DID)
    assert call.final_status() == 200  # the menu answers itself
    call.ack()
    engine_call = call.engine_call
    assert engine_call is not None and engine_call.caller is not None and engine_call.caller.endpoint is not None
    endpoint = engine_call.caller.endpoint
    assert h.media.playing[endpoint.id] == Prompt(path=Path("/prompts/main.wav"))
    assert h.media.inband.get(endpoint.id) is None  # the carrier offered telephone-event: no in-band detector
    return call, endpoint


def answered_by_one_menu(h: Harness, keys: dict[str, Target]) -> tuple[PhoneCall, Call, Endpoint]:
    """A DID to one menu with ``keys``: the caller in it, answered by it."""
    menus = {1: MenuSpec(id=1, prompt="/prompts/main.wav", keys=keys)}

    class OneMenu:
        async def menus(self, tenant_id: int) -> tuple[dict[int, MenuSpec], frozenset[str]]:
            return menus, frozenset()

    h.engine.ivr = Ivr(h.engine, OneMenu())
    _trunk, carrier = h.trunk()
    h.did(DID, "ivr", {"menu": 1})
    call = h.call_from_trunk(carrier, "+79161234567", DID)
    call.ack()
    engine_call = call.engine_call
    assert engine_call is not None and engine_call.caller is not None and engine_call.caller.endpoint is not None
    return call, engine_call, engine_call.caller.endpoint


def test_keys_by_info_and_rfc4733_reach_the_extension() -> None:
    with Harness() as h:
        desk = h.extension("201")
        call, endpoint = into_menu(h)
        info = call.request("INFO", body=b"Signal=1\r\nDuration=160\r\n", content_type="application/dtmf-relay")
        assert info.responses[-1].status == 200
        h.settle()
        assert h.media.playing[endpoint.id] == Prompt(path=Path("/prompts/sub.wav"))
        h.dtmf(endpoint, "2")
        left = h.events_of(ev.IvrLeft)
        assert [(e.menus, e.target_kind, e.reason) for e in left] == [((1, 2), "extension", "caller_choice")]
        forks = h.invites_to(desk)
        assert len(forks) == 1 and h.media.playing[endpoint.id] == RINGBACK_RU
        h.reply(forks[0], 180)
        h.reply(forks[0], 200)
        assert endpoint.id not in h.media.playing  # ringback stopped at the answer
        assert any(endpoint.id in pair for pair in h.media.bridges)
        call.bye()
        ended = h.events_of(ev.CallEnded)
        assert ended and ended[-1].disposition is ev.Disposition.ANSWERED


def test_a_failed_transfer_gets_the_caller_a_bye() -> None:
    with Harness() as h:
        desk = h.extension("201")
        call, endpoint = into_menu(h)
        h.dtmf(endpoint, "12")
        fork = h.invites_to(desk)[0]
        h.reply(fork, 486)
        h.advance(10.0)  # the busy tone, then the end
        assert h.sent_requests("BYE", to=call.device), "the answered caller was left without a BYE"
        assert not h.engine.calls and not h.engine.ivr.sessions  # type: ignore[union-attr]


def test_the_timeout_goes_where_configured() -> None:
    with Harness() as h:
        desk, anna = h.extension("201"), h.extension("202")
        call, endpoint = into_menu(h)
        h.deliver(h.media.finish_playing, endpoint)  # the greeting ends: 5 s for a key from now
        h.advance(4.9)
        assert not h.invites_to(anna)
        h.advance(0.2)
        assert len(h.invites_to(anna)) == 1 and not h.invites_to(desk)
        assert [(e.menus, e.reason) for e in h.events_of(ev.IvrLeft)] == [((1,), "timeout")]
        h.reply(h.invites_to(anna)[0], 200)
        call.bye()
        assert not h.engine.calls and not h.engine.ivr.sessions  # type: ignore[union-attr]


def test_a_key_to_a_conference_room_keeps_our_one_answer() -> None:
    from zvonok.org.pins import hash_pin
    from zvonok.telephony.conference import Conferences, RoomInfo

    room = RoomInfo(id=5, tenant_id=1, number="800", name="Daily", pin_hash=hash_pin("4711"),
                    moderator_pin_hash=None, wait_for_moderator=False, max_members=5)

    class Rooms:
        async def room(self, tenant_id: int, number: str) -> RoomInfo | None:
            return room if number == "800" else None

    with Harness() as h:
        h.engine.conferences = Conferences(h.engine, Rooms())
        call, engine_call, endpoint = answered_by_one_menu(
            h, {"8": Target(kind="conference", payload={"number": "800"})})
        h.dtmf(endpoint, "8")
        assert engine_call.conference is not None  # the room's PIN prompt has the caller now
        assert h.media.dtmf_callbacks[endpoint.id] is not None
        assert [s for s in call.statuses() if s >= 200] == [200]  # answered once, by the menu
        assert len(h.events_of(ev.CallAnswered)) == 1


def _one_key_menu(h: Harness, target: Target) -> tuple[PhoneCall, Endpoint]:
    call, _engine_call, endpoint = answered_by_one_menu(h, {"5": target})
    return call, endpoint


def test_a_key_to_an_extension_that_is_gone_ends_the_answered_call_with_bye() -> None:
    """Keys go through the engine's one typed dispatch (_to_destination): nowhere to go, for a caller the
    menu answered, is a BYE and an answered CDR (no 404 to an INVITE that has its 200 already)."""
    with Harness() as h:
        call, endpoint = _one_key_menu(h, Target(kind="extension", payload={"number": "299"}))
        h.dtmf(endpoint, "5")
        assert len(h.sent_requests("BYE", to=call.device)) == 1
        (ended,) = h.events_of(ev.CallEnded)
        assert (ended.disposition, ended.cause) == (ev.Disposition.ANSWERED, "no_route")
        assert not h.engine.calls and not h.engine.extension_legs and h.media.in_use == 0


def test_a_ring_key_rings_every_number_for_its_timeout() -> None:
    with Harness() as h:
        anna, boris = h.extension("201"), h.extension("202")
        call, endpoint = _one_key_menu(h, Target(kind="ring", payload={"numbers": ["201", "202"], "timeout": 12}))
        h.dtmf(endpoint, "5")
        assert len(h.invites_to(anna)) == 1 and len(h.invites_to(boris)) == 1
        assert h.media.playing[endpoint.id] == RINGBACK_RU
        h.advance(11.9)
        assert not h.sent_requests("BYE", to=call.device)
        h.advance(10.0)  # the ring timeout, then the busy tone
        assert h.sent_requests("BYE", to=call.device)
        assert not h.engine.calls


def test_a_stored_key_this_version_cannot_read_ends_the_call() -> None:
    with Harness() as h:
        call, endpoint = _one_key_menu(h, Target(kind="teleport", payload={"to": "mars"}))
        h.dtmf(endpoint, "5")
        assert len(h.sent_requests("BYE", to=call.device)) == 1
        assert not h.engine.calls and not h.engine.extension_legs and h.media.in_use == 0
def test_a_key_to_fax_receives_on_the_menus_answer(tmp_path: Path) -> None:
    from zvonok.fax.endpoint import FaxEndpoint, FaxResult
    from zvonok.telephony.fax_app import FaxApp, IncomingFax

    class Port:
        def __init__(self) -> None:
            self.begun: list[tuple[str, str, tuple[str, ...]]] = []
            self.finished: list[tuple[IncomingFax, FaxResult | None, str]] = []

        async def begin_receive(self, tenant_id: int, *, call_id: str, remote_number: str, local_number: str,
                                emails: tuple[str, ...] = (), extension: str | None = None) -> IncomingFax:
            self.begun.append((remote_number, local_number, emails))
            return IncomingFax(id=9, tiff=tmp_path / "9.tif", emails=emails)

        async def finish_receive(self, tenant_id: int, fax: IncomingFax, result: FaxResult | None,
                                 reason: str) -> int:
            self.finished.append((fax, result, reason))
            return 0

    with Harness() as h:
        port = Port()
        h.engine.fax = FaxApp(h.engine, port)
        call, engine_call, endpoint = answered_by_one_menu(
            h, {"3": Target(kind="fax", payload={"emails": ["office@fax.example"]})})
        h.dtmf(endpoint, "3")
        assert [(e.menus, e.target_kind) for e in h.events_of(ev.IvrLeft)] == [((1,), "fax")]
        assert port.begun == [("+79161234567", DID, ("office@fax.example",))]
        assert engine_call.fax is not None  # the terminal has the caller now, the menu does not
        assert not h.engine.ivr.sessions  # type: ignore[union-attr]
        assert isinstance(h.media.playing[endpoint.id], FaxEndpoint)  # its tones replace the prompt
        assert list(h.media.taps) and [s for s in call.statuses() if s >= 200] == [200]  # answered once
        assert len(h.events_of(ev.CallAnswered)) == 1
        call.bye()  # the caller gives up before any page
        ((fax, _result, _reason),) = port.finished
        assert fax.id == 9 and fax.emails == ("office@fax.example",) and not h.media.taps
        (finished,) = h.events_of(ev.FaxFinished)
        assert (finished.direction, finished.ok, finished.pages) == ("in", False, 0)
        assert not h.engine.calls
