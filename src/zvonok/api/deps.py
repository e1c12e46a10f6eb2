"""Request-scoped dependencies shared by every router: settings, database, session, paging."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from fastapi import Query, Request
from sqlalchemy.ext.asyncio import AsyncSession

from zvonok.config import Settings
from zvonok.storage.db import Database

MAX_PAGE = 500


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One session per request, shared by the auth dependencies and the route (FastAPI caches it).

    Routes commit explicitly after the service call, so a failed commit still becomes an error response.
    """
    async with get_db(request).session() as session:
        yield session


@dataclass(frozen=True)
class Paging:
    limit: int
    offset: int


def paging(
    limit: int = Query(100, ge=1, le=MAX_PAGE, description=f"Page size, at most {MAX_PAGE}"),
    offset: int = Query(0, ge=0, description="Items to skip"),
) -> Paging:
    return Paging(limit=limit, offset=offset)
