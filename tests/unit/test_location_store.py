"""The location service's durable copy on SQLite and PostgreSQL: batches, upserts, deletes, FK safety."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from dataclasses import replace

from zvonok.org import schemas, service
from zvonok.storage.db import Database
from zvonok.telephony.location import Binding, GroupCommit, Location
from zvonok.telephony.store import SqlBindingStore


async def _extension(db: Database, number: str = "100") -> tuple[int, int]:
    async with db.session() as session:
        tenant = await service.platform_create_tenant(session, schemas.TenantCreate(name="x", sip_domain="st.test"))
        ext, _ = await service.create_extension(
            session, tenant.id, schemas.ExtensionCreate(number=number, display_name="a", sip_password="secret12345"))
        await session.commit()
        return tenant.id, ext.id


def _binding(tenant_id: int, extension_id: int, contact: str, *, expires_in: float = 100, cseq: int = 1) -> Binding:
    now = time.time()
    return Binding(tenant_id=tenant_id, extension_id=extension_id, aor="100@st.test", contact=contact,
                   expires_at=now + expires_in, registered_at=now, cseq=cseq, source="udp:192.0.2.1:5060")


async def test_batches_upsert_delete_and_reload(db: Database) -> None:
    tenant_id, extension_id = await _extension(db)
    store = SqlBindingStore(db)
    first = _binding(tenant_id, extension_id, "sip:100@192.0.2.1", cseq=2**32 - 1)  # CSeq needs 32 bits
    await store.apply([first], [])
    await store.apply([_binding(tenant_id, extension_id, "sip:100@192.0.2.1", expires_in=500)], [])  # a refresh
    await store.apply([_binding(tenant_id, extension_id, "sip:100@192.0.2.2")], [])
    await store.apply([], [(tenant_id, extension_id, "sip:100@192.0.2.2")])
    (loaded,) = await store.load(time.time())
    assert loaded.contact == "sip:100@192.0.2.1" and loaded.expires_at > time.time() + 400
    assert loaded.source == "udp:192.0.2.1:5060"


async def test_a_bindings_path_and_client_address_are_kept(db: Database) -> None:
    # RFC 3327: a phone registered through an edge proxy is reachable only along its Path, after a restart too
    tenant_id, extension_id = await _extension(db)
    store = SqlBindingStore(db)
    path = ("<sip:10.0.0.5:5060;lr;received=sip:198.51.100.7:40000>", "<sip:sbc.example.net;lr>")
    edged = replace(_binding(tenant_id, extension_id, "sip:100@192.168.1.20"), path=path, client="198.51.100.7")
    await store.apply([edged, _binding(tenant_id, extension_id, "sip:100@192.0.2.2")], [])
    loaded = {b.contact: b for b in await store.load(time.time())}
    assert loaded["sip:100@192.168.1.20"].path == path
    assert loaded["sip:100@192.168.1.20"].client == "198.51.100.7"
    assert loaded["sip:100@192.0.2.2"].path == () and loaded["sip:100@192.0.2.2"].client == ""
    await store.apply([replace(edged, path=())], [])  # a refresh straight to us: no Path any more
    loaded = {b.contact: b for b in await store.load(time.time())}
    assert loaded["sip:100@192.168.1.20"].path == ()
    store.close()


async def test_expired_rows_are_dropped_at_load(db: Database) -> None:
    tenant_id, extension_id = await _extension(db)
    store = SqlBindingStore(db)
    await store.apply([_binding(tenant_id, extension_id, "sip:old@192.0.2.1", expires_in=-1)], [])
    assert await store.load(time.time()) == []


async def test_a_deleted_extension_does_not_lose_the_rest_of_the_batch(db: Database) -> None:
    tenant_id, extension_id = await _extension(db)
    store = SqlBindingStore(db)
    gone = _binding(tenant_id, 999_999, "sip:ghost@192.0.2.9")  # the FK refuses it
    kept = _binding(tenant_id, extension_id, "sip:100@192.0.2.3")
    await store.apply([gone, kept], [])
    assert [b.contact for b in await store.load(time.time())] == ["sip:100@192.0.2.3"]


async def test_a_failed_write_is_requeued_unless_newer_changes_exist() -> None:
    location = Location()
    a = _binding(1, 1, "sip:a@192.0.2.1")
    b = _binding(1, 1, "sip:b@192.0.2.1")
    location.put(a)
    location.put(b)
    upserts, deletes = location.take_changes()
    location.remove(1, 1, "sip:b@192.0.2.1")  # newer than the failed write of b
    location.requeue(upserts, deletes)
    again, removed = location.take_changes()
    assert [x.contact for x in again] == ["sip:a@192.0.2.1"] and removed == [(1, 1, "sip:b@192.0.2.1")]


class _Store:
    """A store whose writes can be made to fail as a busy SQLite database does."""

    def __init__(self) -> None:
        self.written: list[Binding] = []
        self.busy = 0  # how many more writes fail with "database is locked"

    async def load(self, now: float) -> list[Binding]:
        return list(self.written)

    async def apply(self, upserts: list[Binding], deletes: list[tuple[int, int, str]]) -> None:
        if self.busy:
            self.busy -= 1
            raise sqlite3.OperationalError("database is locked")
        self.written.extend(upserts)


async def test_a_registration_is_answered_only_after_its_commit_shared_by_several() -> None:
    location, store = Location(), _Store()
    commit = GroupCommit(location, store, delay=0.001)
    answers: list[tuple[str, bool, int]] = []  # (contact, durable, bindings stored when answered)
    for name in ("a", "b", "c"):
        location.put(_binding(1, 1, f"sip:{name}@192.0.2.1"))
        location.when_durable(lambda ok, name=name: answers.append((name, ok, len(store.written))))
    assert answers == []  # nothing answered before the commit
    store.busy = 2  # the database is busy twice: the waiters keep waiting, the loop is not blocked
    stopping = asyncio.Event()
    task = asyncio.create_task(commit.run(stopping))
    for _ in range(500):
        if answers:
            break
        await asyncio.sleep(0.005)
    stopping.set()
    await task
    assert answers == [("a", True, 3), ("b", True, 3), ("c", True, 3)]  # one commit for the three
    assert store.busy == 0


async def test_without_a_group_commit_the_registrar_is_answered_at_once() -> None:
    location = Location()
    answers: list[bool] = []
    location.when_durable(answers.append)
    assert answers == [True]


async def test_a_failed_commit_answers_false_and_keeps_the_binding_for_the_next_flush() -> None:
    class Broken(_Store):
        failures = 1

        async def apply(self, upserts: list[Binding], deletes: list[tuple[int, int, str]]) -> None:
            if self.failures:
                self.failures -= 1
                raise RuntimeError("disk full")  # not a busy database: no point in making the phone wait
            self.written.extend(upserts)

    location, store = Location(), Broken()
    commit = GroupCommit(location, store)
    answers: list[bool] = []
    location.put(_binding(1, 1, "sip:a@192.0.2.1"))
    location.when_durable(answers.append)
    assert await commit.flush() is False
    assert answers == [False] and store.written == []  # the registrar answers 500, not 200
    assert await commit.flush() is True
    assert [b.contact for b in store.written] == ["sip:a@192.0.2.1"]
