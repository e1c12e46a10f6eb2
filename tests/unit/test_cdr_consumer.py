"""The CDR writer: synthetic call-event streams through a real bus into a real database (both backends)
give exact CDR rows; replays do not duplicate; CdrWritten follows the commit; calls left open by a
crash become "interrupted" CDRs at start-up."""

from __future__ import annotations

import asyncio
import socket
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from zvonok.bus import LocalBus
from zvonok.cdr import service as cdr_service
from zvonok.cdr.consumer import CdrWriter
from zvonok.cdr.events import CdrWritten
from zvonok.cdr.journal import CdrJournal
from zvonok.cdr.models import Cdr, CdrLeg, OpenCall
from zvonok.org import schemas
from zvonok.org import service as org
from zvonok.storage.db import Database
from zvonok.telephony import events as ev
from zvonok.telephony.events import Direction, Disposition, HangupSide, LegRole, Party

T0 = 1_700_000_000.0  # 2023-11-14T22:13:20Z


def utc(at: float) -> datetime:
    return datetime.fromtimestamp(at, UTC)


@dataclass
class World:
    tenant_id: int
    office_id: int
    dept_id: int
    alice: Party  # ext 101, Sales in HQ
    bob: Party  # ext 102, HQ, no department
    other_tenant_id: int
    other_ext_id: int


async def make_world(db: Database) -> World:
    async with db.session() as s:
        t = await org.platform_create_tenant(s, schemas.TenantCreate(name="Acme", sip_domain="acme.example", currency="RUB"))
        office = await org.create_office(s, t.id, schemas.OfficeCreate(name="HQ"))
        dept = await org.create_department(s, t.id, schemas.DepartmentCreate(name="Sales", office_id=office.id))
        alice = await org.create_employee(s, t.id, schemas.EmployeeCreate(
            full_name="Alice", email="alice@acme.example", office_id=office.id, department_id=dept.id))
        bob = await org.create_employee(s, t.id, schemas.EmployeeCreate(full_name="Bob", office_id=office.id))
        x101, _ = await org.create_extension(s, t.id, schemas.ExtensionCreate(
            number="101", display_name="Alice", employee_id=alice.id, office_id=office.id))
        x102, _ = await org.create_extension(s, t.id, schemas.ExtensionCreate(
            number="102", display_name="Bob", employee_id=bob.id, office_id=office.id))
        other = await org.platform_create_tenant(s, schemas.TenantCreate(name="Other", sip_domain="other.example"))
        ox, _ = await org.create_extension(s, other.id, schemas.ExtensionCreate(number="101", display_name="O"))
        await s.commit()
        return World(
            tenant_id=t.id, office_id=office.id, dept_id=dept.id,
            alice=Party(number="101", display_name="Alice", extension_id=x101.id, employee_id=alice.id,
                        office_id=office.id, department_id=dept.id),
            bob=Party(number="102", display_name="Bob", extension_id=x102.id, employee_id=bob.id, office_id=office.id),
            other_tenant_id=other.id, other_ext_id=ox.id,
        )


class CallScript:
    """Builds one call's events with a running clock."""

    def __init__(self, tenant_id: int, caller: Party, dialed: str, direction: Direction, t0: float = T0) -> None:
        self.tenant_id = tenant_id
        self.call_id = uuid.uuid4().hex
        self.t = t0
        self.events: list[ev.CallEvent] = []
        self.add(ev.CallStarted, caller=caller, callee_number=dialed, direction=direction)
        self.add(ev.LegCreated, leg_id="L1", role=LegRole.CALLER, party=caller, contact="sip:a@10.0.0.1", user_agent="UA-A")

    def add(self, cls: type[Any], after: float = 0.0, **fields: Any) -> CallScript:
        self.t += after
        self.events.append(cls(tenant_id=self.tenant_id, call_id=self.call_id, at=self.t, **fields))
        return self

    def callee_leg(self, party: Party, leg_id: str = "L2", after: float = 0.1) -> CallScript:
        self.add(ev.LegCreated, after, leg_id=leg_id, role=LegRole.CALLEE, party=party,
                 contact=f"sip:{party.number}@10.0.0.2", user_agent="UA-B")
        return self.add(ev.LegRinging, 0.1, leg_id=leg_id)

    def answer(self, leg_id: str = "L2", after: float = 0.0) -> CallScript:
        self.add(ev.LegAnswered, after, leg_id=leg_id)
        return self.add(ev.CallAnswered, 0.0, answered_leg_id=leg_id)

    def end(self, after: float, disposition: Disposition, side: HangupSide, cause: str,
            status: int | None = None, legs: tuple[str, ...] = ("L1", "L2")) -> CallScript:
        self.t += after
        for leg in legs:
            self.add(ev.LegEnded, leg_id=leg, cause=cause)
        return self.add(ev.CallEnded, disposition=disposition, hangup_side=side, cause=cause, sip_status=status)


async def run_stream(db: Database, *scripts: CallScript, bus: LocalBus | None = None,
                     writers: list[CdrWriter] | None = None) -> list[CdrWritten]:
    """Publish the scripts' events (interleaved in time order) to a fresh writer; return CdrWritten seen.
    On a ``bus`` of the caller's, the caller stops the writer (put in ``writers``), then closes the bus."""
    own = bus is None
    bus = bus or LocalBus()
    announced: list[CdrWritten] = []
    not_on_disk: list[int] = []  # the bus swallows a subscriber's exception: collect, assert below

    async def on_written(e: CdrWritten) -> None:
        # The CDR is already committed when the announcement is handled: read it on a new session.
        async with db.session() as s:
            if await s.get(Cdr, e.cdr_id) is None:
                not_on_disk.append(e.cdr_id)
        announced.append(e)

    bus.subscribe(on_written, event_types=[CdrWritten])
    writer = CdrWriter(db, bus)
    writer.start()
    if writers is not None:
        writers.append(writer)
    for e in sorted((e for s in scripts for e in s.events), key=lambda e: e.at):
        bus.publish(e)
    if own:
        # the writer first: a commit slower than its patience (1 s, a loaded machine) ends after the bus's
        # drain, and a CdrWritten published once the bus has stopped is dropped
        await writer.stop()
        await bus.close()
        assert not_on_disk == [], f"CdrWritten announced before the CDR was committed: {not_on_disk}"
    return announced


async def cdr_row(db: Database, call_id: str) -> dict[str, Any]:
    async with db.session() as s:
        cdr = (await s.execute(
            select(Cdr).where(Cdr.call_id == call_id).options(selectinload(Cdr.legs)))).scalar_one()
        row = {c.name: getattr(cdr, c.name) for c in Cdr.__table__.columns if c.name not in ("id", "created_at")}
        row["legs"] = [
            (leg.leg_id, leg.role, leg.number, leg.contact, leg.user_agent, leg.answered_at, leg.ended_at, leg.cause)
            for leg in cdr.legs
        ]
        return row


# an internal call has no route and no rate
UNRATED = {"trunk_id": None, "did": None, "destination_class": None, "rate_prefix": None, "rate_destination": None,
           "rate_per_minute": None, "billed_seconds": 0}


def party_cols(prefix: str, p: Party) -> dict[str, Any]:
    return {
        f"{prefix}_number": p.number, f"{prefix}_name": p.display_name, f"{prefix}_extension_id": p.extension_id,
        f"{prefix}_employee_id": p.employee_id, f"{prefix}_office_id": p.office_id,
        f"{prefix}_department_id": p.department_id,
    }


async def test_answered_internal_call(db: Database) -> None:
    w = await make_world(db)
    call = CallScript(w.tenant_id, w.alice, "102", Direction.INTERNAL)
    call.callee_leg(w.bob).answer(after=4.8)  # answered at T0 + 5.0
    call.add(ev.RecordingStarted, 0.5, path="1/call.wav").add(ev.LegHeld, 3, leg_id="L1")
    call.add(ev.LegResumed, 2, leg_id="L1").add(ev.DtmfReceived, 1, leg_id="L2", digit="5")
    call.end(55.1, Disposition.ANSWERED, HangupSide.CALLER, "normal_clearing", 200)  # ended T0 + 66.6
    announced = await run_stream(db, call)

    row = await cdr_row(db, call.call_id)
    assert row == {
        "tenant_id": w.tenant_id, "call_id": call.call_id, "direction": "internal", "internal": True,
        "dialed_number": "102", **party_cols("caller", w.alice), **party_cols("callee", w.bob),
        "started_at": utc(T0), "answered_at": utc(T0 + 5.0), "ended_at": utc(T0 + 66.6),
        "duration": 67, "billsec": 62, "disposition": "answered", "hangup_side": "caller",
        "cause": "normal_clearing", "sip_status": 200, "recording_path": "1/call.wav",
        "cost": Decimal("0"), "currency": "RUB", **UNRATED, "end_estimated": False, "forwarded_from": None,
        "ring_group": None, "queue": None, "fax_pages": None, "fax_result": None, "fax_transport": None,
        "legs": [
            ("L1", "caller", "101", "sip:a@10.0.0.1", "UA-A", None, utc(T0 + 66.6), "normal_clearing"),
            ("L2", "callee", "102", "sip:102@10.0.0.2", "UA-B", utc(T0 + 5.0), utc(T0 + 66.6), "normal_clearing"),
        ],
    }
    assert [(e.tenant_id, e.call_id, e.employee_ids) for e in announced] == [
        (w.tenant_id, call.call_id, tuple(sorted((w.alice.employee_id, w.bob.employee_id))))  # type: ignore[type-var]
    ]
    async with db.session() as s:
        assert (await s.execute(select(func.count()).select_from(OpenCall))).scalar_one() == 0


async def test_unanswered_outcomes(db: Database) -> None:
    w = await make_world(db)
    busy = CallScript(w.tenant_id, w.alice, "102", Direction.INTERNAL).callee_leg(w.bob)
    busy.end(0.2, Disposition.BUSY, HangupSide.CALLEE, "user_busy", 486)  # 0.4 s in all
    no_answer = CallScript(w.tenant_id, w.bob, "101", Direction.INTERNAL, T0 + 1).callee_leg(w.alice)
    no_answer.end(29.8, Disposition.NO_ANSWER, HangupSide.SYSTEM, "no_answer", 480)  # 30.0 s
    cancelled = CallScript(w.tenant_id, w.alice, "102", Direction.INTERNAL, T0 + 2).callee_leg(w.bob)
    cancelled.end(7.3, Disposition.CANCELLED, HangupSide.CALLER, "originator_cancel", 487)  # 7.5 s -> 8
    failed = CallScript(w.tenant_id, w.alice, "999", Direction.INTERNAL, T0 + 3)
    failed.end(0.01, Disposition.FAILED, HangupSide.SYSTEM, "unallocated_number", 404, legs=("L1",))
    announced = await run_stream(db, busy, no_answer, cancelled, failed)
    assert len(announced) == 4

    expect = {
        busy.call_id: ("busy", "callee", "user_busy", 486, 0, w.alice, w.bob),
        no_answer.call_id: ("no_answer", "system", "no_answer", 480, 30, w.bob, w.alice),
        cancelled.call_id: ("cancelled", "caller", "originator_cancel", 487, 8, w.alice, w.bob),
        failed.call_id: ("failed", "system", "unallocated_number", 404, 0, w.alice, Party(number="999")),
    }
    for call_id, (disp, side, cause, status, duration, caller, callee) in expect.items():
        row = await cdr_row(db, call_id)
        assert (row["disposition"], row["hangup_side"], row["cause"], row["sip_status"]) == (disp, side, cause, status)
        assert (row["duration"], row["billsec"], row["answered_at"]) == (duration, 0, None)
        assert {k: row[k] for k in party_cols("caller", caller)} == party_cols("caller", caller)
        assert {k: row[k] for k in party_cols("callee", callee)} == party_cols("callee", callee)
    assert (await cdr_row(db, failed.call_id))["legs"] == [
        ("L1", "caller", "101", "sip:a@10.0.0.1", "UA-A", None, utc(T0 + 3.01), "unallocated_number")
    ]


async def test_inbound_and_outbound_calls(db: Database) -> None:
    w = await make_world(db)
    customer = Party(number="+74951234567", display_name="=HYPERLINK(1)", external=True)
    inbound = CallScript(w.tenant_id, customer, "+74950000000", Direction.INBOUND)
    # A ring group: two callee legs, Bob answers, Alice's leg is cancelled.
    inbound.callee_leg(w.alice, "L2").callee_leg(w.bob, "L3").answer("L3", after=3)
    inbound.add(ev.LegEnded, leg_id="L2", cause="answered_elsewhere")
    inbound.end(120, Disposition.ANSWERED, HangupSide.CALLEE, "normal_clearing", legs=("L1", "L3"))
    outbound = CallScript(w.tenant_id, w.alice, "+74957654321", Direction.OUTBOUND, T0 + 10)
    outbound.add(ev.LegCreated, 0.1, leg_id="T1", role=LegRole.CALLEE, party=Party(number="+74957654321", external=True))
    outbound.answer("T1", after=10).end(30, Disposition.ANSWERED, HangupSide.CALLER, "normal_clearing", 200,
                                        legs=("L1", "T1"))
    await run_stream(db, inbound, outbound)

    row = await cdr_row(db, inbound.call_id)
    assert (row["direction"], row["internal"], row["dialed_number"]) == ("inbound", False, "+74950000000")
    assert {k: row[k] for k in party_cols("caller", customer)} == party_cols("caller", customer)
    assert {k: row[k] for k in party_cols("callee", w.bob)} == party_cols("callee", w.bob)
    assert (row["duration"], row["billsec"]) == (123, 120)
    assert [(leg[0], leg[5] is not None, leg[7]) for leg in row["legs"]] == [
        ("L1", False, "normal_clearing"), ("L2", False, "answered_elsewhere"), ("L3", True, "normal_clearing"),
    ]
    row = await cdr_row(db, outbound.call_id)
    assert (row["direction"], row["internal"], row["callee_number"], row["callee_extension_id"]) == (
        "outbound", False, "+74957654321", None)
    assert (row["duration"], row["billsec"], row["caller_department_id"]) == (40, 30, w.dept_id)


async def test_replay_does_not_duplicate(db: Database) -> None:
    w = await make_world(db)
    call = CallScript(w.tenant_id, w.alice, "102", Direction.INTERNAL).callee_leg(w.bob).answer(after=1)
    call.end(10, Disposition.ANSWERED, HangupSide.CALLEE, "normal_clearing", 200)
    bus = LocalBus()
    writers: list[CdrWriter] = []
    first = await run_stream(db, call, bus=bus, writers=writers)
    for e in call.events:  # the same writer sees the stream again
        bus.publish(e)
    await writers[0].stop()
    await bus.close()
    again = await run_stream(db, call)  # a fresh writer (after a restart) replays it
    assert len(first) == 1 and again == []
    async with db.session() as s:
        assert (await s.execute(select(func.count()).select_from(Cdr))).scalar_one() == 1
        assert (await s.execute(select(func.count()).select_from(OpenCall))).scalar_one() == 0
    # Writing the same finished call directly is refused too.
    async with db.session() as s:
        record = cdr_service.CallRecord.started(call.events[0])  # type: ignore[arg-type]
        finished = record.finish(at=T0 + 5, disposition=Disposition.ANSWERED, hangup_side=HangupSide.CALLER, cause="x")
        assert await cdr_service.write_cdr(s, w.tenant_id, finished) is None


async def test_a_stopping_server_settles_the_writer_so_the_last_cdrs_are_announced(db: Database) -> None:
    """The server settles the writer before it closes the bus: a commit slower than the writer's patience
    (here none at all) still announces its CdrWritten (the CRM makes a missed call's call-back task of it).
    Closing the bus first dropped it: the bus's drain does not wait for that commit."""
    w = await make_world(db)
    missed = CallScript(w.tenant_id, w.alice, "102", Direction.INTERNAL).callee_leg(w.bob)
    missed.end(20, Disposition.NO_ANSWER, HangupSide.SYSTEM, "no_answer", 480)
    bus = LocalBus()
    announced: list[CdrWritten] = []

    async def on_written(e: CdrWritten) -> None:
        announced.append(e)

    bus.subscribe(on_written, event_types=[CdrWritten], maxsize=100)  # lossy, as the CRM's
    writer = CdrWriter(db, bus, patience=0.0)
    writer.start()
    for e in missed.events:
        bus.publish(e)
    await writer.settle()
    await bus.close()
    await writer.stop()
    assert [e.call_id for e in announced] == [missed.call_id]


async def test_unknown_directory_ids_are_not_linked(db: Database) -> None:
    """A party naming another tenant's extension (an engine bug) or a deleted employee stores NULL ids."""
    w = await make_world(db)
    foreign = Party(number="555", extension_id=w.other_ext_id, employee_id=987654, office_id=w.office_id)
    call = CallScript(w.tenant_id, foreign, "102", Direction.INTERNAL).callee_leg(w.bob)
    call.end(1, Disposition.NO_ANSWER, HangupSide.SYSTEM, "no_answer")
    await run_stream(db, call)
    row = await cdr_row(db, call.call_id)
    assert (row["caller_extension_id"], row["caller_employee_id"], row["caller_office_id"]) == (None, None, w.office_id)


async def test_deleting_directory_entries_keeps_history(db: Database) -> None:
    w = await make_world(db)
    call = CallScript(w.tenant_id, w.alice, "102", Direction.INTERNAL).callee_leg(w.bob).answer(after=1)
    call.end(3, Disposition.ANSWERED, HangupSide.CALLER, "normal_clearing")
    await run_stream(db, call)
    async with db.session() as s:
        await org.delete_extension(s, w.tenant_id, w.bob.extension_id)  # type: ignore[arg-type]
        await s.commit()
    row = await cdr_row(db, call.call_id)
    assert (row["callee_number"], row["callee_extension_id"], row["callee_employee_id"]) == (
        "102", None, w.bob.employee_id)


async def test_tenant_deleted_during_the_call(db: Database) -> None:
    w = await make_world(db)
    call = CallScript(w.tenant_id, w.alice, "102", Direction.INTERNAL).callee_leg(w.bob)
    bus = LocalBus()
    writers: list[CdrWriter] = []
    await run_stream(db, bus=bus, writers=writers)
    for e in call.events:
        bus.publish(e)
    for sub in bus.subscriptions:
        await sub.drain()
    async with db.session() as s:
        await org.platform_delete_tenant(s, w.tenant_id)
        await s.commit()
    call.end(5, Disposition.CANCELLED, HangupSide.CALLER, "originator_cancel")
    bus.publish(call.events[-1])
    await writers[0].stop()
    await bus.close()
    async with db.session() as s:
        assert (await s.execute(select(func.count()).select_from(Cdr))).scalar_one() == 0


async def test_close_interrupted_after_a_crash(db: Database) -> None:
    w = await make_world(db)
    up = CallScript(w.tenant_id, w.alice, "102", Direction.INTERNAL).callee_leg(w.bob).answer(after=2)
    up.add(ev.RecordingStarted, 1, path="rec/up.wav").add(ev.LegHeld, 5, leg_id="L1")
    ringing = CallScript(w.tenant_id, w.bob, "101", Direction.INTERNAL, T0 + 30).callee_leg(w.alice)
    done = CallScript(w.tenant_id, w.bob, "101", Direction.INTERNAL, T0 + 40).callee_leg(w.alice)
    done.end(1, Disposition.CANCELLED, HangupSide.CALLER, "originator_cancel")
    await run_stream(db, up, ringing, done)  # the process "dies": the writer and its memory are gone
    async with db.session() as s:
        open_ids = set((await s.execute(select(OpenCall.call_id))).scalars())
    assert open_ids == {up.call_id, ringing.call_id}

    restart = utc(T0 + 100)
    bus = LocalBus()
    got: list[object] = []

    async def listener(e: object) -> None:
        got.append(e)

    bus.subscribe(listener)
    written = await cdr_service.close_interrupted(db, restart, bus=bus)
    await bus.close()
    assert {e.call_id for e in written} == {up.call_id, ringing.call_id} and got == written

    row = await cdr_row(db, up.call_id)
    assert (row["disposition"], row["hangup_side"], row["cause"]) == ("interrupted", "system", "server_restart")
    # no heartbeat came (the writer lived for less than one): the end is the last event it wrote down
    assert (row["started_at"], row["answered_at"], row["ended_at"]) == (utc(T0), utc(T0 + 2.2), utc(T0 + 8.2))
    assert (row["duration"], row["billsec"], row["recording_path"]) == (8, 6, "rec/up.wav")
    assert row["end_estimated"] is True
    assert row["callee_employee_id"] == w.bob.employee_id  # the snapshot at the answer knew the callee
    assert [leg[0] for leg in row["legs"]] == ["L1", "L2"]
    row = await cdr_row(db, ringing.call_id)
    # Never answered: the snapshot from CallStarted knows the caller and the number dialed only.
    assert (row["disposition"], row["billsec"], row["caller_employee_id"], row["callee_number"]) == (
        "interrupted", 0, w.bob.employee_id, "101")

    assert await cdr_service.close_interrupted(db, restart) == []
    # A late CallEnded of an interrupted call (replayed to the new process) changes nothing.
    up.end(1, Disposition.ANSWERED, HangupSide.CALLER, "normal_clearing")
    assert await run_stream(db, up) == []
    async with db.session() as s:
        assert (await s.execute(select(func.count()).select_from(Cdr))).scalar_one() == 3
        assert (await s.execute(select(Cdr.disposition).where(Cdr.call_id == up.call_id))).scalar_one() == "interrupted"


async def test_an_interrupted_call_ends_at_its_last_heartbeat(db: Database) -> None:
    """1 s of talk cut by a crash was billed as the whole time until the restart: the writer's heartbeat
    keeps the open call's last sign of life, and the interrupted CDR ends there, marked estimated."""
    w = await make_world(db)
    now = [T0]
    writer = CdrWriter(db, LocalBus(), heartbeat=None, clock=lambda: now[0])
    call = CallScript(w.tenant_id, w.alice, "102", Direction.INTERNAL).callee_leg(w.bob).answer(after=0.8)
    for e in call.events:
        await writer.handle(e)
    await writer.flush()  # the call is open in the database, answered at T0 + 1
    now[0] = T0 + 6
    await writer.heartbeat()
    now[0] = T0 + 11
    await writer.heartbeat()  # the last one: the process dies at about T0 + 12
    written = await cdr_service.close_interrupted(db, utc(T0 + 300))  # restarted five minutes later
    assert [e.call_id for e in written] == [call.call_id]
    row = await cdr_row(db, call.call_id)
    assert (row["disposition"], row["cause"], row["end_estimated"]) == ("interrupted", "server_restart", True)
    assert (row["answered_at"], row["ended_at"], row["billsec"]) == (utc(T0 + 1), utc(T0 + 11), 10)


async def test_call_ended_completed_from_the_open_snapshot(db: Database) -> None:
    """A writer that never saw the call start (e.g. restarted mid-call without a crash sweep) still writes
    the CDR from the calls_open snapshot."""
    w = await make_world(db)
    call = CallScript(w.tenant_id, w.alice, "102", Direction.INTERNAL).callee_leg(w.bob).answer(after=1)
    await run_stream(db, call)
    call.end(9, Disposition.ANSWERED, HangupSide.CALLEE, "normal_clearing", 200)
    later = CallScript(w.tenant_id, w.alice, "102", Direction.INTERNAL)
    later.events = [call.events[-1]]
    assert len(await run_stream(db, later)) == 1
    row = await cdr_row(db, call.call_id)
    assert (row["disposition"], row["billsec"], row["callee_employee_id"]) == ("answered", 9, w.bob.employee_id)
    # And a CallEnded for a call nobody knows is dropped with a warning, not an error.
    stray = CallScript(w.tenant_id, w.alice, "102", Direction.INTERNAL).end(1, Disposition.FAILED, HangupSide.SYSTEM, "x")
    stray.events = stray.events[-1:]
    assert await run_stream(db, stray) == []


async def test_a_fax_call_keeps_its_pages_and_result(db: Database) -> None:
    """FaxFinished (received or sent) puts the pages and T.30's result in the CDR, also through the
    open-call snapshot a writer restarted mid-call starts from; other calls have none."""
    w = await make_world(db)
    fax_in = CallScript(w.tenant_id, Party(number="+74991234567", external=True), "+74957650001", Direction.INBOUND)
    fax_in.answer(leg_id="L1", after=0.2)
    fax_in.add(ev.FaxFinished, 40, fax_id=7, direction="in", ok=True, pages=2, result="OK",
               remote_number="+74991234567")
    fax_in.end(0.1, Disposition.ANSWERED, HangupSide.SYSTEM, "fax_done", legs=("L1",))
    sent = CallScript(w.tenant_id, w.alice, "+74957650002", Direction.OUTBOUND, T0 + 100)
    sent.callee_leg(Party(number="+74957650002", external=True)).answer(after=1)
    sent.add(ev.FaxFinished, 30, fax_id=8, direction="out", ok=False, pages=1,
             result="Unexpected DCN while waiting for DCS or DIS")
    await run_stream(db, fax_in, sent)  # the sent call is still up: in the open-call snapshot only
    sent.end(0.1, Disposition.ANSWERED, HangupSide.CALLEE, "normal_clearing")
    restarted = CallScript(w.tenant_id, w.alice, "x", Direction.INTERNAL)
    restarted.events = sent.events[-3:]  # a new writer sees only the end of it
    await run_stream(db, restarted)
    row = await cdr_row(db, fax_in.call_id)
    assert (row["fax_pages"], row["fax_result"], row["cause"]) == (2, "OK", "fax_done")
    row = await cdr_row(db, sent.call_id)
    assert (row["fax_pages"], row["fax_result"]) == (1, "Unexpected DCN while waiting for DCS or DIS")


async def test_wire_strings_are_made_storable(db: Database) -> None:
    """Caller ID is whatever a stranger's phone sent: NUL bytes (PostgreSQL refuses them) and overlong
    names must not cost the CDR."""
    w = await make_world(db)
    spoofed = Party(number="+7495\x001234567", display_name="Evil\x00Name" + "x" * 300, external=True)
    call = CallScript(w.tenant_id, spoofed, "102", Direction.INBOUND).callee_leg(w.bob)
    call.end(1, Disposition.NO_ANSWER, HangupSide.SYSTEM, "no_answer")
    assert len(await run_stream(db, call)) == 1
    row = await cdr_row(db, call.call_id)
    assert row["caller_number"] == "+74951234567"
    assert row["caller_name"].startswith("EvilName") and len(row["caller_name"]) == 200


async def test_a_transient_database_failure_is_retried(db: Database, monkeypatch: Any) -> None:
    from sqlalchemy.exc import OperationalError

    w = await make_world(db)
    failures = [OperationalError("INSERT", {}, Exception("database is locked"))]  # the first batch fails
    real = cdr_service.apply_batch

    async def flaky(*args: Any, **kwargs: Any) -> Any:
        if failures:
            raise failures.pop()
        return await real(*args, **kwargs)

    monkeypatch.setattr(cdr_service, "apply_batch", flaky)
    call = CallScript(w.tenant_id, w.alice, "102", Direction.INTERNAL).callee_leg(w.bob)
    call.end(1, Disposition.CANCELLED, HangupSide.CALLER, "originator_cancel")
    bus = LocalBus()
    writer = CdrWriter(db, bus, retry_delays=(0.01,), heartbeat=None)
    writer.start()
    for e in call.events:
        bus.publish(e)
    await bus.close()
    assert await _poll(lambda: writer.written == 1) and failures == []  # written by the retry, not lost
    assert (await cdr_row(db, call.call_id))["disposition"] == "cancelled"
    await writer.stop()


async def _poll(predicate: Any, timeout: float = 20.0) -> bool:
    """Wait for ``predicate()`` (the writer retries on its own timer)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


def _unreachable() -> Database:
    """A database nobody listens for: every connection is refused, as when PostgreSQL is down."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return Database(f"postgresql+asyncpg://postgres@127.0.0.1:{port}/zvonok")


async def _cdr_count(db: Database) -> int:
    async with db.session() as s:
        return int((await s.execute(select(func.count()).select_from(Cdr))).scalar_one())


async def test_cdrs_wait_in_the_journal_while_the_database_is_unreachable(db: Database, tmp_path: Path) -> None:
    """The writer gave up after ~2.6 s and the CDR of a call that started and ended in one batch was lost:
    now it waits in the fsync'd journal, retried until the database is back, then written once."""
    w = await make_world(db)
    down = _unreachable()
    journal = CdrJournal(tmp_path / "cdr-journal.jsonl")
    bus = LocalBus()
    announced: list[CdrWritten] = []

    async def on_written(e: CdrWritten) -> None:
        announced.append(e)

    bus.subscribe(on_written, event_types=[CdrWritten])
    writer = CdrWriter(down, bus, retry_delays=(0.02,), heartbeat=None, journal=journal)
    writer.start()
    call = CallScript(w.tenant_id, w.alice, "102", Direction.INTERNAL).callee_leg(w.bob).answer(after=1)
    call.end(2, Disposition.ANSWERED, HangupSide.CALLER, "normal_clearing", 200)
    for e in call.events:
        bus.publish(e)
    # many failed attempts (more than the old writer's three retries), the call kept all along
    assert await _poll(lambda: writer._failures >= 10)
    assert writer.queued == 1 and [r["kind"] for r in journal.read()] == ["write"] and writer.written == 0
    writer.db = db  # the database is back
    assert await _poll(lambda: writer.written == 1)
    assert journal.empty and writer.queued == 0 and await _cdr_count(db) == 1
    row = await cdr_row(db, call.call_id)
    assert (row["disposition"], row["billsec"], row["callee_employee_id"]) == ("answered", 2, w.bob.employee_id)
    await bus.close()
    assert [e.call_id for e in announced] == [call.call_id]
    await writer.stop()
    await down.dispose()


async def test_a_journal_left_by_a_crash_is_replayed_at_start_once(db: Database, tmp_path: Path) -> None:
    w = await make_world(db)
    down = _unreachable()
    path = tmp_path / "cdr-journal.jsonl"
    bus = LocalBus()
    writer = CdrWriter(down, bus, retry_delays=(60.0,), heartbeat=None, journal=CdrJournal(path))
    writer.start()
    ended = CallScript(w.tenant_id, w.alice, "102", Direction.INTERNAL).callee_leg(w.bob).answer(after=1)
    ended.end(4, Disposition.ANSWERED, HangupSide.CALLEE, "normal_clearing", 200)
    talking = CallScript(w.tenant_id, w.bob, "101", Direction.INTERNAL).callee_leg(w.alice).answer(after=1)
    for e in sorted(ended.events + talking.events, key=lambda e: e.at):
        bus.publish(e)
    await bus.close()
    await writer.stop()  # the database is still down: the journal is all there is (as after kill -9)
    await down.dispose()
    left = path.read_bytes()
    assert left and await _cdr_count(db) == 0

    restarted = CdrWriter(db, LocalBus(), heartbeat=None, journal=CdrJournal(path))
    assert await restarted.recover() == 2
    assert path.read_bytes() == b""  # committed: the journal starts afresh
    assert (await cdr_row(db, ended.call_id))["billsec"] == 4
    # the call still talking at the crash is open again, so the crash sweep closes it as interrupted
    assert [e.call_id for e in await cdr_service.close_interrupted(db, utc(T0 + 60))] == [talking.call_id]
    await restarted.stop()

    path.write_bytes(left)  # replayed twice (a crash during the replay): still one CDR per call
    again = CdrWriter(db, LocalBus(), heartbeat=None, journal=CdrJournal(path))
    assert await again.recover() == 2
    await again.stop()
    assert await _cdr_count(db) == 2


async def test_many_calls_in_overlapping_batches(db: Database) -> None:
    """300 calls whose events interleave across many batches (opens, snapshots, CDRs of other calls in
    one transaction): every call gets exactly one CDR with its legs, and no open row is left behind."""
    w = await make_world(db)
    scripts = [
        CallScript(w.tenant_id, w.alice, "102", Direction.INTERNAL, t0=T0 + i * 0.01)
        .callee_leg(w.bob).answer(after=1.0).end(2.0, Disposition.ANSWERED, HangupSide.CALLER, "normal_clearing", 200)
        for i in range(300)
    ]
    bus = LocalBus()
    writer = CdrWriter(db, bus, batch_size=40)
    writer.start()
    for e in sorted((e for s in scripts for e in s.events), key=lambda e: e.at):
        bus.publish(e)
    await bus.close()
    assert writer.written == 300
    async with db.session() as s:
        assert await s.scalar(select(func.count()).select_from(Cdr)) == 300
        assert await s.scalar(select(func.count()).select_from(OpenCall)) == 0
        legs = await s.scalar(select(func.count(CdrLeg.id)))
    assert legs == 600
    row = await cdr_row(db, scripts[150].call_id)
    assert (row["billsec"], row["disposition"], row["caller_employee_id"]) == (2, "answered", w.alice.employee_id)


async def test_only_calls_of_a_node_that_stopped_beating_are_closed_by_another(db: Database) -> None:
    """Several nodes on one database (issue 14): a node's sweep closes the open calls whose heartbeat
    stopped (their node died), never the calls another live node keeps beating."""
    w = await make_world(db)
    now = [T0]
    dead = CdrWriter(db, LocalBus(), heartbeat=None, clock=lambda: now[0])
    live = CdrWriter(db, LocalBus(), heartbeat=None, clock=lambda: now[0])
    lost = CallScript(w.tenant_id, w.alice, "102", Direction.INTERNAL).callee_leg(w.bob).answer(after=0.8)
    kept = CallScript(w.tenant_id, w.bob, "101", Direction.INTERNAL).callee_leg(w.alice).answer(after=0.8)
    for writer, call in ((dead, lost), (live, kept)):
        for e in call.events:
            await writer.handle(e)
        await writer.flush()
    now[0] = T0 + 11
    await dead.heartbeat()  # its last: the node is killed at about T0 + 12
    now[0] = T0 + 100
    await live.heartbeat()
    written = await cdr_service.close_interrupted(db, utc(T0 + 105), stale_before=utc(T0 + 105 - 30))
    assert [e.call_id for e in written] == [lost.call_id]
    row = await cdr_row(db, lost.call_id)
    assert (row["disposition"], row["ended_at"], row["end_estimated"]) == ("interrupted", utc(T0 + 11), True)
    async with db.session() as s:
        assert set((await s.execute(select(OpenCall.call_id))).scalars()) == {kept.call_id}


async def test_each_cdr_of_a_batch_is_announced_with_its_own_id(db: Database) -> None:
    # the CDRs of a batch are inserted in a few multi-row INSERTs whose ids come back in any order (one INSERT
    # per CDR, to have them in order, was most of a CDR's cost on SQLite): each announcement must still name
    # the row of its own call
    w = await make_world(db)
    scripts = []
    for n in range(40):
        caller, callee = (w.alice, w.bob) if n % 2 else (w.bob, w.alice)
        call = CallScript(w.tenant_id, caller, callee.number, Direction.INTERNAL).callee_leg(callee).answer(after=1)
        scripts.append(call.end(n + 1, Disposition.ANSWERED, HangupSide.CALLER, "normal_clearing", 200))
    announced = await run_stream(db, *scripts)
    assert sorted(e.call_id for e in announced) == sorted(s.call_id for s in scripts)
    async with db.session() as s:
        for e in announced:
            cdr = await s.get(Cdr, e.cdr_id)
            assert cdr is not None and cdr.call_id == e.call_id
            script = next(x for x in scripts if x.call_id == e.call_id)
            assert cdr.billsec == scripts.index(script) + 1  # the row of that call, not of another
