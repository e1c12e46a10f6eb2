"""The bus between nodes on the real NATS server (127.0.0.1:4222, JetStream on): two nodes' buses, their
own and each other's events, and a JetStream durable consumer that resumes where it stopped."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable

import nats
import nats.js.errors
import pytest

from zvonok.natsbus import NatsBus
from zvonok.telephony.events import CallEnded, CallEvent, Disposition, HangupSide, RegistrationChanged

NATS_URL = os.environ.get("ZVONOK_TEST_NATS_URL", "nats://127.0.0.1:4222")

Connect = Callable[[], Awaitable[NatsBus]]


@pytest.fixture
async def connect() -> AsyncIterator[Connect]:
    """Buses of one test's own subject prefix and stream (removed afterwards)."""
    tag = secrets.token_hex(4)
    buses: list[NatsBus] = []

    async def make() -> NatsBus:
        bus = await NatsBus.connect(
            NATS_URL, shared=(CallEvent,), prefix=f"zvonok-test.{tag}", stream=f"ZVONOK_TEST_{tag}"
        )
        buses.append(bus)
        return bus

    yield make
    for bus in buses:
        await bus.close()
    nc = await nats.connect(NATS_URL)
    try:
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await nc.jetstream().delete_stream(f"ZVONOK_TEST_{tag}")
    finally:
        await nc.close()


def _ended(call_id: str, tenant_id: int = 1) -> CallEnded:
    return CallEnded(
        tenant_id=tenant_id,
        call_id=call_id,
        at=1.0,
        disposition=Disposition.ANSWERED,
        hangup_side=HangupSide.CALLER,
        cause="normal",
    )


async def _until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


async def test_call_events_reach_the_other_nodes_cluster_subscribers_only(connect: Connect) -> None:
    one, two = await connect(), await connect()
    seen_all: list[object] = []
    seen_own: list[object] = []

    async def on_all(event: object) -> None:
        seen_all.append(event)

    async def on_own(event: object) -> None:
        seen_own.append(event)

    two.subscribe(on_all, event_types=[CallEnded], cluster=True)  # a websocket on node two
    two.subscribe(on_own, event_types=[CallEnded])  # a CDR writer on node two
    one.publish(_ended("on-one"))
    two.publish(_ended("on-two"))
    await _until(lambda: len(seen_all) == 2)
    assert sorted(e.call_id for e in seen_all) == ["on-one", "on-two"]  # type: ignore[attr-defined]
    # node one's call is not node two's to write; its own event reached it once, not back from NATS too
    assert [e.call_id for e in seen_own] == ["on-two"]  # type: ignore[attr-defined]
    await asyncio.sleep(0.3)
    assert len(seen_all) == 2 and two.received == 1
    # events that are not shared (announced from the database, or this node's business) stay here
    one.publish(RegistrationChanged(tenant_id=1, extension_id=2, devices=1, at=1.0))
    await asyncio.sleep(0.3)
    assert two.received == 1


async def test_a_durable_consumer_gets_what_was_published_while_it_was_away(connect: Connect) -> None:
    one = await connect()
    got: list[str] = []

    async def writer(event: CallEnded) -> None:
        got.append(event.call_id)

    for n in range(3):
        one.publish(_ended(f"early-{n}"))
    await asyncio.sleep(0.3)  # in the stream before any consumer exists
    two = await connect()
    two.durable_subscribe("stats", writer, event_types=[CallEnded])
    await _until(lambda: len(got) == 3)
    one.publish(_ended("late"))
    await _until(lambda: len(got) == 4)
    assert got == ["early-0", "early-1", "early-2", "late"]


async def test_a_durable_consumers_empty_fetch_is_not_taken_for_nats_being_away(
    connect: Connect, caplog: pytest.LogCaptureFixture
) -> None:
    """nats-py's batch fetch ends an empty wait with asyncio's TimeoutError on some of its paths (its own
    subclass on others): that is "nothing yet, ask again", not a failure to log and pause a second for."""
    one, two = await connect(), await connect()
    got: list[str] = []
    fetches = 0

    async def writer(event: CallEnded) -> None:
        got.append(event.call_id)

    real_js = two._js

    class Js:
        async def pull_subscribe(self, *args: object, **kwargs: object) -> object:
            sub = await real_js.pull_subscribe(*args, **kwargs)
            real_fetch = sub.fetch

            async def fetch(*fargs: object, **fkwargs: object) -> object:
                nonlocal fetches
                fetches += 1
                if fetches <= 2:
                    raise TimeoutError  # what the batch fetch raises when its deadline passes with nothing
                return await real_fetch(*fargs, **fkwargs)

            sub.fetch = fetch
            return sub

    two._js = Js()
    with caplog.at_level("WARNING", logger="zvonok.natsbus"):
        two.durable_subscribe("stats-timeout", writer, event_types=[CallEnded])
        one.publish(_ended("after-empty-fetches"))
        await _until(lambda: got == ["after-empty-fetches"])
    assert fetches >= 3
    assert not [r for r in caplog.records if "fetch failed" in r.getMessage()]
