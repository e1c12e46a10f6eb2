"""Bindings shared by several nodes on one PostgreSQL database (issue 14): one node's commits reach the
other's location through the change feed; a binding learned that way is cached, never written back."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from conftest import FreshDatabase, MigratedTemplates
from zvonok.org import schemas, service
from zvonok.storage.changes import ChangeFeed
from zvonok.storage.db import Database
from zvonok.telephony.location import Binding, BindingsChanged, Location
from zvonok.telephony.store import SqlBindingStore


@pytest.fixture
async def pg(tmp_path: Path, migrated_templates: MigratedTemplates) -> AsyncIterator[Database]:
    """A migrated PostgreSQL database of its own (several nodes share PostgreSQL only)."""
    fresh = FreshDatabase("postgres", tmp_path)
    await fresh.create(await migrated_templates.get("postgres"))
    db = Database(fresh.url)
    try:
        yield db
    finally:
        await db.dispose()
        await fresh.drop()


async def _extension(db: Database) -> tuple[int, int]:
    async with db.session() as session:
        tenant = await service.platform_create_tenant(
            session, schemas.TenantCreate(name="x", sip_domain="sh.test")
        )
        ext, _ = await service.create_extension(
            session,
            tenant.id,
            schemas.ExtensionCreate(number="100", display_name="a", sip_password="secret12345"),
        )
        await session.commit()
        return tenant.id, ext.id


def _follow(db: Database, location: Location) -> None:
    def listener(event: object) -> None:
        if isinstance(event, BindingsChanged):
            location.apply_remote(event.upserts, event.deletes)

    db.add_listener(listener)


@pytest.mark.postgres
async def test_a_registration_through_one_node_is_seen_by_the_other(pg: Database) -> None:
    db = pg
    tenant_id, extension_id = await _extension(db)
    other = Database(db.url)  # the second node: its own engine and origin, the same database
    try:
        feed = ChangeFeed(other)
        await feed.prime()
        there = Location()
        _follow(other, there)
        store = SqlBindingStore(db, announce=True)
        path = ("<sip:127.0.0.2:5060;lr;received=sip:127.0.0.1:40000>",)
        now = time.time()
        binding = Binding(
            tenant_id=tenant_id,
            extension_id=extension_id,
            aor="100@sh.test",
            contact="sip:100@192.168.1.20",
            expires_at=now + 100,
            registered_at=now,
            source="udp:127.0.0.2:5060",
            path=path,
            connection=7,
        )
        await store.apply([binding], [])
        assert await feed.poll() == 1
        (seen,) = there.lookup(tenant_id, extension_id, time.time())
        assert seen.path == path and seen.connection is None and seen.expires_at == binding.expires_at
        assert there.is_remote(tenant_id, extension_id, binding.contact)
        assert not there.has_changes  # cached, never written back
        # its own announcements do not come back to the node that wrote them
        assert await ChangeFeed(db).poll() == 0

        await store.apply([], [(tenant_id, extension_id, binding.contact)])
        assert await feed.poll() == 1
        assert there.lookup(tenant_id, extension_id, time.time()) == []
    finally:
        await other.dispose()


def test_a_remote_binding_that_expires_leaves_only_the_cache() -> None:
    location = Location()
    now = time.time()
    remote = Binding(tenant_id=1, extension_id=2, aor="a", contact="sip:a@x", expires_at=now - 1)
    own = replace(remote, contact="sip:b@x")
    location.apply_remote([remote], [])
    location.put(own)
    location.take_changes()
    assert location.expire(now) == 2
    upserts, deletes = location.take_changes()
    # the owner may have refreshed the remote one a moment ago: only our own is deleted from the database
    assert upserts == [] and deletes == [(1, 2, "sip:b@x")]
    assert location.count == 0


def test_a_register_for_a_remote_binding_makes_it_local() -> None:
    location = Location()
    remote = Binding(tenant_id=1, extension_id=2, aor="a", contact="sip:a@x", expires_at=time.time() + 60)
    location.apply_remote([remote], [])
    assert location.count == 1 and not location.has_changes
    location.put(replace(remote, expires_at=remote.expires_at + 60))
    assert not location.is_remote(1, 2, "sip:a@x") and location.count == 1
    assert location.take_changes()[0][0].contact == "sip:a@x"
