"""Trunks at run time without the network: calls counted against max_calls, status, snapshot swaps."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from test_pstn_support import fake_dns

from zvonok.org.models import Tenant
from zvonok.pstn import loader
from zvonok.pstn.loader import load_snapshot
from zvonok.pstn.models import Trunk
from zvonok.pstn.routing import PstnSnapshot, TrunkInfo
from zvonok.sip.headers import parse_name_addr
from zvonok.sip.message import Request
from zvonok.sip.peer import Peer
from zvonok.sip.uri import parse_uri
from zvonok.storage.db import Database
from zvonok.telephony.trunks import Trunks, trunk_peer


class FakeSip:
    """Just enough of the SIP service for Trunks; any REGISTER sent would be recorded (and fail the test)."""

    local_host = "127.0.0.1"
    local_port = 5062

    def port_for(self, transport: str) -> int:
        return 5063 if transport == "tls" else self.local_port

    def __init__(self) -> None:
        self.sent: list[tuple[Request, Peer]] = []

    def send_request(self, request: Request, peer: Peer, handler: Callable[[object], None]) -> object:
        self.sent.append((request, peer))
        raise AssertionError("no request may be sent in these tests")


def trunk(trunk_id: int, max_calls: int | None = None, **kwargs: Any) -> TrunkInfo:
    return TrunkInfo(id=trunk_id, tenant_id=None, name=f"t{trunk_id}", kind="carrier", host="sip.example.net",
                     address="192.0.2.5", port=5080, transport="tcp", max_calls=max_calls, **kwargs)


def trunks_with(*infos: TrunkInfo) -> tuple[Trunks, FakeSip]:
    sip = FakeSip()
    runtime = Trunks(sip=sip)  # type: ignore[arg-type]
    runtime.snapshot = PstnSnapshot(trunks={t.id: t for t in infos})
    return runtime, sip


async def test_acquire_counts_up_to_max_calls() -> None:
    limited = trunk(1, max_calls=2)
    runtime, sip = trunks_with(limited)
    assert [(await runtime.acquire(limited)) for _ in range(4)] == [True, True, False, False]
    assert runtime.active == {1: 2}  # refused calls are not counted
    runtime.release(1)
    assert runtime.active == {1: 1}
    assert (await runtime.acquire(limited)) is True
    assert (await runtime.acquire(limited)) is False
    assert sip.sent == []


async def test_release_down_to_zero_forgets_the_trunk_and_never_goes_negative() -> None:
    limited = trunk(1, max_calls=1)
    runtime, _ = trunks_with(limited)
    assert (await runtime.acquire(limited)) is True
    runtime.release(1)
    assert runtime.active == {}
    runtime.release(1)  # a stray release of an idle trunk
    runtime.release(42)  # and of a trunk never seen
    assert runtime.active == {}
    assert [(await runtime.acquire(limited)), (await runtime.acquire(limited))] == [True, False]


async def test_without_max_calls_there_is_no_limit() -> None:
    free = trunk(1)
    runtime, _ = trunks_with(free)
    assert all([await runtime.acquire(free) for _ in range(500)])
    assert runtime.active == {1: 500}


async def test_counts_are_per_trunk() -> None:
    a, b = trunk(1, max_calls=1), trunk(2, max_calls=3)
    runtime, _ = trunks_with(a, b)
    results = [(await runtime.acquire(a)), (await runtime.acquire(a)), (await runtime.acquire(b)), (await runtime.acquire(b))]
    assert results == [True, False, True, True]
    assert runtime.active == {1: 1, 2: 2}
    runtime.release(2)
    assert runtime.active == {1: 1, 2: 1}


async def test_status_of_a_trunk_without_registration() -> None:
    limited = trunk(7, max_calls=3)
    runtime, _ = trunks_with(limited)
    (await runtime.acquire(limited))
    assert runtime.status(7) == {"trunk_id": 7, "loaded": True, "active_calls": 1, "max_calls": 3,
                                 "registration": None}


def test_status_of_a_trunk_without_limit_and_of_an_unknown_trunk() -> None:
    runtime, _ = trunks_with(trunk(7))
    assert runtime.status(7) == {"trunk_id": 7, "loaded": True, "active_calls": 0, "max_calls": None,
                                 "registration": None}
    assert runtime.status(8) == {"trunk_id": 8, "loaded": False, "active_calls": 0, "max_calls": None,
                                 "registration": None}


async def test_calls_in_progress_outlive_a_snapshot_without_their_trunk() -> None:
    limited = trunk(7, max_calls=3)
    runtime, _ = trunks_with(limited)
    (await runtime.acquire(limited))
    runtime.snapshot = PstnSnapshot()
    assert runtime.status(7) == {"trunk_id": 7, "loaded": False, "active_calls": 1, "max_calls": None,
                                 "registration": None}
    runtime.release(7)
    assert runtime.status(7)["active_calls"] == 0


async def test_reload_without_loader_keeps_the_snapshot() -> None:
    runtime, sip = trunks_with(trunk(7))
    before = runtime.snapshot
    await runtime.reload()
    assert runtime.snapshot is before
    assert sip.sent == []


async def test_reload_swaps_the_snapshot_and_registers_nothing_that_cannot_register() -> None:
    fresh = PstnSnapshot(trunks={
        1: trunk(1, max_calls=5),
        2: trunk(2, register=True, username="user"),  # no password: cannot register
        3: trunk(3, register=True, password="secret"),  # no username either
        4: trunk(4, register=False, username="user", password="secret"),
    })

    async def loader() -> PstnSnapshot:
        return fresh

    sip = FakeSip()
    runtime = Trunks(sip=sip, loader=loader)  # type: ignore[arg-type]
    await runtime.reload()
    assert runtime.snapshot is fresh
    assert [runtime.status(i)["registration"] for i in (1, 2, 3, 4)] == [None] * 4
    assert runtime.status(1)["max_calls"] == 5
    assert sip.sent == []
    runtime.stop()  # nothing to stop
    assert sip.sent == []


def test_trunk_peer_is_the_resolved_address() -> None:
    assert trunk_peer(trunk(1)) == Peer(transport="tcp", host="192.0.2.5", port=5080)


class RecordingSip(FakeSip):
    """The SIP service as far as registrations go: records what is sent, answers nothing."""

    def send_request(self, request: Request, peer: Peer, handler: Callable[[object], None]) -> object:
        self.sent.append((request, peer))
        return object()


async def test_a_bad_trunk_row_is_skipped_and_reported_while_the_others_register(db: Database) -> None:
    """Rows written behind the API's back (or before it checked): a bad host leaves its trunk out, a
    username with CR/LF only its registration; each status says why, the good trunks register, and a
    username that is no URI user (an e-mail-like digest name) registers escaped in the AOR and Contact."""
    async with db.session() as session:
        broken = Trunk(name="Broken", host="sip.bad.example\r\nVia: evil", username="acme", password="secret",
                       register=True)
        bad = Trunk(name="Bad user", host="192.0.2.9", username="acme\r\nVia: SIP/2.0/UDP evil",
                    password="secret", register=True)
        good = Trunk(name="Good", host="192.0.2.10", username="good", password="secret", register=True)
        mail = Trunk(name="Mail", host="192.0.2.11", username="12345@carrier.example", password="secret",
                     register=True)
        session.add_all([broken, bad, good, mail])
        await session.commit()
        broken_id, bad_id, good_id, mail_id = broken.id, bad.id, good.id, mail.id
    sip = RecordingSip()
    runtime = Trunks(sip=sip, loader=lambda: load_snapshot(db))  # type: ignore[arg-type]
    try:
        await runtime.reload()
        assert sorted(runtime.snapshot.trunks) == [bad_id, good_id, mail_id]
        assert runtime.snapshot.trunks[bad_id].username is None  # nor answers challenges with it
        assert [(r.method, str(r.uri), p.host, r.headers.get("to"), r.headers.get("contact")) for r, p in sip.sent] == [
            ("REGISTER", "sip:192.0.2.10:5060", "192.0.2.10", "<sip:good@192.0.2.10>", "<sip:good@127.0.0.1:5062>"),
            ("REGISTER", "sip:192.0.2.11:5060", "192.0.2.11", "<sip:12345%40carrier.example@192.0.2.11>",
             "<sip:12345%40carrier.example@127.0.0.1:5062>")]
        assert parse_name_addr(sip.sent[1][0].headers.get("to") or "").uri.user_unescaped == "12345@carrier.example"  # type: ignore[union-attr]
        status = runtime.status(broken_id)
        assert (status["loaded"], status["registered"]) == (False, False)
        assert status["last_error"].startswith("configuration: host: ")
        status = runtime.status(bad_id)
        assert (status["loaded"], status["registered"]) == (True, False)
        assert status["last_error"].startswith("configuration: username: must not contain control characters")
        assert status["last_error"].endswith("(the trunk does not register)")
        for trunk_id in (good_id, mail_id):
            assert runtime.status(trunk_id)["registration"]["state"] in ("registering", "registered")
        await runtime.reload()  # a later reload goes on the same way
        assert runtime.status(bad_id)["last_error"] == status["last_error"]
    finally:
        runtime.stop()


async def test_a_registration_that_cannot_start_leaves_the_others_registering() -> None:
    """Should a trunk the loader let through still fail to build its REGISTER, the others go on."""
    fresh = PstnSnapshot(trunks={
        1: trunk(1, register=True, username="user", password="secret", from_domain="bad domain"),  # no AOR
        2: trunk(2, register=True, username="good", password="secret"),
    })

    async def loader() -> PstnSnapshot:
        return fresh

    sip = RecordingSip()
    runtime = Trunks(sip=sip, loader=loader)  # type: ignore[arg-type]
    try:
        await runtime.reload()
        assert [str(r.headers.get("to")) for r, _ in sip.sent] == ["<sip:good@sip.example.net>"]
        assert runtime.status(1)["last_error"].startswith("configuration: bad AOR URI")
        assert runtime.status(2)["registration"] is not None
    finally:
        runtime.stop()


async def test_a_tenants_host_name_is_judged_again_by_what_it_resolves_to_on_each_reload(
        db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    """The API checked the name once; the tenant controls its DNS and may later point it at 127.0.0.1 or
    at another company's address: that trunk is then left out (its status says why), not trusted."""
    dns = fake_dns(monkeypatch, {"pbx.a.example": "198.18.0.5", "pbx.b.example": "198.18.0.9",
                                 "carrier.example": "127.0.0.1"})
    async with db.session() as session:
        a, b = (Tenant(name=n, sip_domain=f"{n}.example", timezone="UTC", currency="RUB", locale="ru-RU")
                for n in ("a", "b"))
        session.add_all([a, b])
        await session.flush()
        mine = Trunk(tenant_id=a.id, name="A's PBX", kind="pbx", host="pbx.a.example")
        neighbour = Trunk(tenant_id=b.id, name="B's PBX", kind="pbx", host="198.18.0.7")
        named = Trunk(tenant_id=b.id, name="B's other PBX", kind="pbx", host="pbx.b.example")
        operator = Trunk(name="Carrier", host="carrier.example")  # the operator's: its own business
        session.add_all([mine, neighbour, named, operator])
        await session.commit()
        ids = mine.id, neighbour.id, named.id, operator.id
    runtime = Trunks(sip=RecordingSip(), loader=lambda: load_snapshot(db))  # type: ignore[arg-type]
    try:
        await runtime.reload()
        assert sorted(runtime.snapshot.trunks) == sorted(ids) and runtime.snapshot.rejected == {}
        assert runtime.snapshot.trunk_from("198.18.0.5").id == ids[0]  # type: ignore[union-attr]
        for address, words, holder in [
                ("127.0.0.1", "127.0.0.1/32 is a loopback, link-local, multicast or unspecified address", ids[3]),
                ("198.18.0.7", "198.18.0.7/32 overlaps an address in use by another trunk on this platform", ids[1]),
                ("198.18.0.9", "198.18.0.9/32 overlaps an address in use by another trunk on this platform", None)]:
            dns["pbx.a.example"] = address
            await runtime.reload()
            assert ids[0] not in runtime.snapshot.trunks, address
            assert runtime.status(ids[0])["last_error"].startswith(
                f"configuration: host: pbx.a.example resolves to {address}: {words}: only the platform admin")
            found = runtime.snapshot.trunk_from(address)
            assert (found.id if found is not None else None) == holder, address
        # two names on one address: neither can be trusted with it
        assert ids[2] not in runtime.snapshot.trunks and ids[1] in runtime.snapshot.trunks
        dns["pbx.a.example"] = "198.18.0.5"
        await runtime.reload()
        assert sorted(runtime.snapshot.trunks) == sorted(ids) and runtime.snapshot.rejected == {}
    finally:
        runtime.stop()


async def test_host_names_resolve_on_their_own_threads_within_a_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    """A DNS server that never answers holds a reload up for RESOLVE_TIMEOUT, and never the default executor."""
    release = threading.Event()
    threads: list[str] = []

    def getaddrinfo(host: str, port: int, *args: Any, **kwargs: Any) -> Any:
        threads.append(threading.current_thread().name)
        if host == "slow.example":
            release.wait(30)
        return [(socket.AF_INET, socket.SOCK_DGRAM, 17, "", ("198.18.0.1", port))]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(loader, "RESOLVE_TIMEOUT", 0.2)
    try:
        assert await loader.resolve_host("slow.example", 5060) == "slow.example"  # unresolved: trusted nowhere
        assert await loader.resolve_host("fast.example", 5060) == "198.18.0.1"
        assert await loader.resolve_host("[2001:db8::1]", 5060) == "2001:db8::1"  # a literal needs no lookup
    finally:
        release.set()
    assert len(threads) == 2 and all(name.startswith("zvonok-dns") for name in threads), threads


async def test_a_trunk_at_an_ipv6_address_registers_with_uris_our_parser_reads() -> None:
    """check_host stores an IPv6 host without brackets; the REGISTER's URIs must carry them."""
    six = TrunkInfo(id=1, tenant_id=None, name="v6", kind="carrier", host="2001:db8::5", address="2001:db8::5",
                    port=5060, transport="udp", register=True, username="acme", password="secret")

    async def loader() -> PstnSnapshot:
        return PstnSnapshot(trunks={1: six})

    sip = RecordingSip()
    sip.local_host = "2001:db8::1"
    runtime = Trunks(sip=sip, loader=loader)  # type: ignore[arg-type]
    try:
        await runtime.reload()
        [(register, peer)] = sip.sent
        assert register.uri_text == "sip:[2001:db8::5]:5060" and peer.host == "2001:db8::5"
        assert register.to.uri == parse_uri("sip:acme@[2001:db8::5]")
        assert parse_name_addr(register.headers.get("contact") or "").uri == parse_uri("sip:acme@[2001:db8::1]:5062")
    finally:
        runtime.stop()


async def test_a_name_the_api_approved_keeps_its_address_whatever_another_tenant_points_at_it(
        db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tenant B points its trunk's name at tenant A's name-based trunk address: before, both trunks were
    left out (a denial of service on A). A keeps the address the API approved; B, trusted at its own
    approved address, is not knocked out either and takes nothing of A's."""
    from zvonok.pstn import schemas as s
    from zvonok.pstn import service

    dns = fake_dns(monkeypatch, {"pbx.a.example": "198.18.0.5", "pbx.b.example": "198.18.0.9"})
    async with db.session() as session:
        a, b = (Tenant(name=n, sip_domain=f"{n}.example", timezone="UTC", currency="RUB", locale="ru-RU")
                for n in ("a", "b"))
        session.add_all([a, b])
        await session.flush()
        mine = await service.create_trunk(session, a.id, s.TrunkCreate(name="A's PBX", kind="pbx", host="pbx.a.example"))
        theirs = await service.create_trunk(session, b.id, s.TrunkCreate(name="B's PBX", kind="pbx", host="pbx.b.example"))
        legacy = Trunk(tenant_id=b.id, name="B's old PBX", kind="pbx", host="old.b.example")  # saved before approvals
        session.add(legacy)
        await session.commit()
        assert (mine.approved_address, theirs.approved_address) == ("198.18.0.5", "198.18.0.9")
        ids = mine.id, theirs.id, legacy.id
    dns["old.b.example"] = "198.18.0.20"
    runtime = Trunks(sip=RecordingSip(), loader=lambda: load_snapshot(db))  # type: ignore[arg-type]
    try:
        await runtime.reload()
        assert sorted(runtime.snapshot.trunks) == sorted(ids) and runtime.snapshot.rejected == {}
        dns["pbx.b.example"] = dns["old.b.example"] = "198.18.0.5"  # B re-points both its names at A's address
        await runtime.reload()
        assert runtime.snapshot.trunk_from("198.18.0.5").id == ids[0]  # type: ignore[union-attr]
        assert runtime.snapshot.trunk_from("198.18.0.9").id == ids[1]  # type: ignore[union-attr]
        assert ids[1] in runtime.snapshot.trunks and runtime.snapshot.trunks[ids[1]].address == "198.18.0.5"
        # the name without an approval is trusted by what it resolves to: it alone is left out
        assert set(runtime.snapshot.rejected) == {ids[2]}
        assert runtime.status(ids[2])["last_error"].startswith(
            "configuration: host: old.b.example resolves to 198.18.0.5: 198.18.0.5/32 overlaps an address in use")
        # and the API will not approve A's address for B
        async with db.session() as session:
            with pytest.raises(service.PermissionDenied):
                await service.update_trunk(session, b.id, ids[1], s.TrunkUpdate(host="pbx.b.example"))
        # B's carrier really moved: sending the same host again approves its new address
        dns["pbx.b.example"] = "198.18.0.30"
        async with db.session() as session:
            moved = await service.update_trunk(session, b.id, ids[1], s.TrunkUpdate(host="pbx.b.example"))
            await session.commit()
            assert moved.approved_address == "198.18.0.30"
    finally:
        runtime.stop()


async def test_a_reload_rebuilds_only_the_rate_decks_that_changed(db: Database) -> None:
    """A routing-snapshot reload after one tenant's change (a number, or its own rates) must not rebuild
    every tenant's rate deck: built tariffs are kept with the ``updated_at`` of their row."""
    from zvonok.pstn.loader import TariffCache
    from zvonok.pstn.models import BillingAccount, PhoneNumber, Tariff, TariffRate
    from zvonok.pstn.service import replace_rates

    async with db.session() as session:
        a, b = (Tenant(name=n, sip_domain=f"{n}.example", timezone="UTC", currency="RUB", locale="ru-RU")
                for n in ("a", "b"))
        session.add_all([a, b])
        await session.flush()
        plans = [Tariff(tenant_id=None, name=f"Plan {n}") for n in ("a", "b")]
        session.add_all(plans)
        await session.flush()
        for plan, price in zip(plans, ("1.50", "2.00"), strict=True):
            session.add(TariffRate(tariff_id=plan.id, prefix="7495", destination="Moscow", price=price))
        session.add_all([BillingAccount(tenant_id=a.id, tariff_id=plans[0].id),
                         BillingAccount(tenant_id=b.id, tariff_id=plans[1].id)])
        await session.commit()
        a_id, b_id, plan_a = a.id, b.id, plans[0].id
    cache = TariffCache()
    runtime = Trunks(sip=RecordingSip(), loader=lambda: load_snapshot(db, cache))  # type: ignore[arg-type]
    try:
        await runtime.reload()
        assert cache.builds == 2
        deck_b = runtime.snapshot.tenants[b_id].tariff
        assert deck_b is not None and deck_b.lookup("74951234567").price_per_minute == Decimal("2")  # type: ignore[union-attr]

        async with db.session() as session:  # tenant A rents a number: no deck changed
            session.add(PhoneNumber(tenant_id=a_id, number="+74950000001"))
            await session.commit()
        await runtime.reload()
        assert "+74950000001" in runtime.snapshot.numbers
        assert cache.builds == 2 and runtime.snapshot.tenants[b_id].tariff is deck_b

        async with db.session() as session:  # tenant A's plan gets new rates: that deck alone is rebuilt
            result = await replace_rates(session, plan_a, "prefix,destination,rate\n7495,Moscow,1.75\n")
            assert result.ok
            await session.commit()
        await runtime.reload()
        assert cache.builds == 3 and runtime.snapshot.tenants[b_id].tariff is deck_b
        deck_a = runtime.snapshot.tenants[a_id].tariff
        assert deck_a is not None and deck_a.lookup("74951234567").price_per_minute == Decimal("1.75")  # type: ignore[union-attr]
        assert len(cache) == 2
    finally:
        runtime.stop()
