"""Request-scoped dependencies shared by every router: settings, database, session, paging, and the
checks of ids and times that no route may forget."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from fastapi import Query, Request
from fastapi.exceptions import RequestValidationError, WebSocketException
from fastapi.requests import HTTPConnection
from pydantic import AfterValidator
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


# Every id column is INTEGER (32 bits on PostgreSQL); a larger number reached the driver as an overflow
# (a 500). Should ids ever become BIGINT, this becomes 2**63 - 1.
MAX_ID = 2**31 - 1


async def ids_in_range(conn: HTTPConnection) -> None:
    """App-wide dependency: every path or query parameter named ``id`` or ``*_id`` that is an integer
    must lie in 1..MAX_ID (422, in FastAPI's own error shape), so a route added later is covered too."""
    errors = []
    for where, params in (("path", conn.path_params), ("query", conn.query_params)):
        for name, raw in params.items():
            if not (name == "id" or name.endswith("_id")):
                continue
            try:
                value = int(str(raw))
            except ValueError:
                continue  # not a number: the route's own validation answers
            if not 1 <= value <= MAX_ID:
                errors.append({"type": "id_range", "loc": [where, name], "msg": f"{name}: an id from 1 to {MAX_ID}"})
    if errors:
        if conn.scope["type"] == "websocket":
            raise WebSocketException(code=1008, reason="bad id")
        raise RequestValidationError(errors)


def _sane_moment(value: datetime) -> datetime:
    # Year 1 or 9999 overflow when moved into another zone (a 500 before); no call is outside this.
    if not 1900 <= value.year <= 9000:
        raise ValueError("a time between the years 1900 and 9000")
    return value


Moment = Annotated[datetime, AfterValidator(_sane_moment)]
"""A ``datetime`` query parameter within a range that every zone conversion and database handles."""
