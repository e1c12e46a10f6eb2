"""The conference application against a fake call engine and media engine: a room with no PIN joins at
once; members are mixed in one bridge per room; mute is the matrix; kick hangs up; the last one out
tears the room down; a full room refuses with 486; events go out in order."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from zvonok.media.events import DtmfReceived
from zvonok.media.interface import Address, Endpoint
from zvonok.telephony import events as ev
from zvonok.telephony.call import Call, Leg
from zvonok.telephony.conference import Conferences, RoomInfo
from zvonok.telephony.events import Direction, LegRole, Party


@dataclass
class FakeMedia:
    log: list[tuple[Any, ...]] = field(default_factory=list)

    async def mix_bridge(self, bridge_id: str, endpoint: Endpoint, *, speaks: bool = True,
                         listens: bool = True) -> None:
        self.log.append(("mix", bridge_id, endpoint.id, speaks, listens))

    async def set_matrix(self, bridge_id: str, endpoint: Endpoint, **kw: Any) -> None:
        self.log.append(("matrix", bridge_id, endpoint.id, kw.get("speaks"), kw.get("listens")))

    async def on_dtmf(self, endpoint: Endpoint, callback: Any) -> None:
        self.log.append(("dtmf", endpoint.id, callback is not None))

    async def play(self, endpoint: Endpoint, source: Any, **kw: Any) -> None:
        self.log.append(("play", endpoint.id))

    async def stop_play(self, endpoint: Endpoint) -> None:
        self.log.append(("stop", endpoint.id))


@dataclass
class FakeEngine:
    media: FakeMedia = field(default_factory=FakeMedia)
    published: list[Any] = field(default_factory=list)
    refused: list[tuple[str, int, str]] = field(default_factory=list)
    hung_up: list[tuple[str, str]] = field(default_factory=list)
    answered: list[str] = field(default_factory=list)
    tasks: list[Any] = field(default_factory=list)

    def spawn(self, coro: Any) -> None:
        coro.close()  # beeps: not needed here

    def step(self, call: Call, coro: Any) -> None:
        self.tasks.append((call.id, coro))  # the call's inbox: run by the test with run_steps()

    async def run_steps(self) -> None:
        while self.tasks:
            _, coro = self.tasks.pop(0)
            await coro

    def publish(self, event_type: type[ev.CallEvent], call: Call, **fields: Any) -> None:
        self.published.append(event_type(tenant_id=call.tenant_id, call_id=call.id, at=0.0, **fields))

    async def _negotiate_caller(self, call: Call) -> bool:
        assert call.caller is not None
        call.caller.endpoint = Endpoint(id=f"e-{call.id}", tenant_id=call.tenant_id, call_id=call.id,
                                        local_address=Address(host="127.0.0.1", port=20000), codecs=())
        return True

    def _answer_caller(self, call: Call, answered_by: Leg | None = None) -> None:
        self.answered.append(call.id)

    async def _watch_media(self, call: Call) -> None:
        pass

    async def _refuse(self, call: Call, status: int, cause: str, reason: str | None = None) -> None:
        self.refused.append((call.id, status, cause))

    def _hangup(self, call: Call, from_leg: Leg | None, side: ev.HangupSide, cause: str) -> None:
        self.hung_up.append((call.id, cause))


ROOM = RoomInfo(id=5, tenant_id=1, number="800", name="Daily", pin_hash=None, moderator_pin_hash=None,
                wait_for_moderator=False, max_members=2)


class Rooms:
    async def room(self, tenant_id: int, number: str) -> RoomInfo | None:
        return ROOM if (tenant_id, number) == (1, "800") else None


def new_call(name: str, tenant_id: int = 1) -> Call:
    call = Call(id=name, tenant_id=tenant_id, direction=Direction.INTERNAL)
    call.caller = Leg(id=f"leg-{name}", role=LegRole.CALLER, call=call, party=Party(number=name), peer=None,  # type: ignore[arg-type]
                      session=None)  # type: ignore[arg-type]
    return call


async def test_join_mute_kick_leave_and_full_room() -> None:
    engine = FakeEngine()
    conferences = Conferences(engine, Rooms())
    assert await conferences.lookup(1, "800") == ROOM
    assert await conferences.lookup(2, "800") is None and await conferences.lookup(1, "+74951234567") is None
    a, b, c = new_call("101"), new_call("102"), new_call("103")
    for call in (a, b):
        await conferences.enter(call, ROOM, language="en")
    assert engine.answered == ["101", "102"]
    assert [e for e in engine.media.log if e[0] == "mix"] == [
        ("mix", "conf-1-5", "e-101", True, True), ("mix", "conf-1-5", "e-102", True, True)]
    joined = [e for e in engine.published if isinstance(e, ev.ConferenceJoined)]
    assert [(e.call_id, e.room_number, e.members) for e in joined] == [("101", "800", 1), ("102", "800", 2)]
    assert [m.number for m in conferences.members(1, 5)] == ["101", "102"]
    assert conferences.members(2, 5) == []  # another tenant's room of the same id: nobody

    await conferences.enter(c, ROOM, language="en")  # max_members 2
    assert engine.refused == [("103", 486, "conference_full")]

    assert await conferences.act(1, 5, "102", "mute")
    assert engine.media.log[-1] == ("matrix", "conf-1-5", "e-102", False, True)
    assert await conferences.act(1, 5, "102", "unmute")
    assert engine.media.log[-1] == ("matrix", "conf-1-5", "e-102", True, True)
    muted = [(e.call_id, e.muted) for e in engine.published if isinstance(e, ev.ConferenceMuted)]
    assert muted == [("102", True), ("102", False)]
    assert not await conferences.act(1, 5, "nobody", "mute")
    assert not await conferences.act(2, 5, "102", "kick")  # not across tenants
    assert await conferences.act(1, 5, "102", "kick")
    assert engine.hung_up == [("102", "conference_kicked")]

    conferences.left(b)  # what the engine's _finish does as the kicked call ends
    conferences.left(b)  # twice: nothing more
    assert [m.number for m in conferences.members(1, 5)] == ["101"]
    conferences.left(a)
    assert conferences.live == {}  # the last one out: the room is gone
    left = [(e.call_id, e.members) for e in engine.published if isinstance(e, ev.ConferenceLeft)]
    assert left == [("102", 1), ("101", 0)]


async def test_wait_for_the_moderator() -> None:
    engine = FakeEngine()
    conferences = Conferences(engine, Rooms())
    room = RoomInfo(id=6, tenant_id=1, number="801", name="", pin_hash=None, moderator_pin_hash="x",
                    wait_for_moderator=True, max_members=10)
    member = new_call("101")
    await conferences.enter(member, room, language="en")
    session = member.conference
    assert session is not None
    # the PIN prompt is up (a moderator PIN exists); a bare '#' joins as a member, waiting
    session.dialogue.dtmf("#", 0.0)
    await conferences._pump(member)
    assert ("mix", "conf-1-6", "e-101", False, False) in engine.media.log
    (m,) = conferences.members(1, 6)
    assert m.waiting and not m.moderator
    moderator = new_call("102")
    await conferences.enter(moderator, room, language="en")
    await conferences._join(moderator, moderator.conference, True)
    assert ("matrix", "conf-1-6", "e-101", True, True) in engine.media.log  # the member may talk now
    assert not m.waiting


async def test_key_presses_and_timers_are_steps_of_the_call() -> None:
    """A key or the dialogue's timer queues the prompt pump on the call's inbox (one step at a time with
    the call's other events), never a task of its own that could run beside another pump."""
    engine = FakeEngine()
    conferences = Conferences(engine, Rooms())
    room = RoomInfo(id=7, tenant_id=1, number="802", name="", pin_hash="x", moderator_pin_hash=None,
                    wait_for_moderator=False, max_members=10)
    call = new_call("101")
    await conferences.enter(call, room, language="en")
    conferences._key(call, DtmfReceived(tenant_id=1, call_id="101", endpoint_id="e-101", digit="1", duration_ms=100))
    conferences._key(call, DtmfReceived(tenant_id=1, call_id="101", endpoint_id="e-101", digit="2", duration_ms=100))
    assert [name for name, _ in engine.tasks] == ["101", "101"]  # queued, not run
    await engine.run_steps()
    session = call.conference
    assert session is not None and session.member is None  # still entering the PIN
    conferences.left(call)
    for _, coro in engine.tasks:
        coro.close()


async def test_a_tenant_cannot_take_all_the_mixing() -> None:
    """Callers in one company's rooms are capped (each costs mixing CPU every 20 ms), and so are all
    rooms' callers together: over either cap a caller is refused busy, another company's still get in,
    and the count falls as callers leave (PIN entry counts: a caller holds its place from the answer)."""
    engine = FakeEngine()
    rooms = {n: RoomInfo(id=n, tenant_id=1, number=str(800 + n), name="", pin_hash=None, moderator_pin_hash=None,
                         wait_for_moderator=False, max_members=10) for n in (1, 2)}
    other = RoomInfo(id=9, tenant_id=2, number="800", name="", pin_hash=None, moderator_pin_hash=None,
                     wait_for_moderator=False, max_members=10)
    conferences = Conferences(engine, Rooms(), tenant_limit=3, total_limit=5)
    calls = [new_call(f"1{i}") for i in range(4)]
    for i, call in enumerate(calls):
        await conferences.enter(call, rooms[1 + i % 2], language="en")  # spread over two rooms
    assert engine.refused == [("13", 486, "conference_capacity")]
    assert len(conferences.members(1, 1)) + len(conferences.members(1, 2)) == 3
    theirs = [new_call(f"2{i}", tenant_id=2) for i in range(3)]
    for call in theirs:
        await conferences.enter(call, other, language="en")
    assert engine.refused[1:] == [("22", 486, "conference_capacity")]  # the server's total of 5
    assert len(conferences.members(2, 9)) == 2
    conferences.left(calls[0])
    late = new_call("30", tenant_id=2)
    await conferences.enter(late, other, language="en")  # a place came free
    assert len(conferences.members(2, 9)) == 3
    for call in (*calls[1:3], *theirs[:2], late):
        conferences.left(call)
    assert conferences._counts == {} and conferences._total == 0 and conferences.live == {}
