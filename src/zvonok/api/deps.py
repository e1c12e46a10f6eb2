"""Request-scoped dependencies shared by every router: settings, database, session, paging, and the
checks of ids and times that no route may forget."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated
from urllib.parse import parse_qsl

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


def _beyond(value: object) -> bool:
    # a float is an integer to pydantic when it has no fraction (1e10 is 10000000000)
    return type(value) in (int, float) and not -MAX_ID - 1 <= value <= MAX_ID  # type: ignore[operator]


def _body_ids(value: object, loc: tuple[str | int, ...]) -> Iterator[tuple[str | int, ...]]:
    """Where a JSON body holds an id no INTEGER column can take: ``id``/``*_id`` integers and the
    integers of ``*_ids`` lists, at any depth."""
    if isinstance(value, dict):
        for key, item in value.items():
            named = key == "id" or key.endswith("_id")
            if named and _beyond(item):
                yield (*loc, key)
            elif key.endswith("_ids") and isinstance(item, list):
                yield from ((*loc, key, i) for i, one in enumerate(item)
                            if _beyond(one))
            else:
                yield from _body_ids(item, (*loc, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _body_ids(item, (*loc, i))


async def ids_in_range(conn: HTTPConnection) -> None:
    """App-wide dependency: every path or query parameter named ``id`` or ``*_id`` that is an integer
    must lie in 1..MAX_ID (422, in FastAPI's own error shape), so a route added later is covered too.

    A JSON body's ids may be anything a column takes (a route answers 404 or 422 for ids it does not
    know), but not more: an office_id of 2**64 reached the driver as an overflow (a 500). FastAPI has
    already read the body of a route that takes one, so reading it here costs no second read."""
    errors: list[dict[str, object]] = []
    if (isinstance(conn, Request) and conn.method in ("POST", "PUT", "PATCH")
            and conn.headers.get("content-type", "").split(";")[0].strip().lower() == "application/json"):
        try:
            body = json.loads(await conn.body())
        except ValueError:
            body = None  # not JSON: the route's own validation answers
        errors += [{"type": "id_range", "loc": list(loc), "msg": f"{loc[-1]}: an id from 1 to {MAX_ID}"}
                   for loc in _body_ids(body, ("body",))]
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


def _nul_at(value: object, loc: tuple[str | int, ...]) -> Iterator[tuple[str | int, ...]]:
    if isinstance(value, str):
        if "\x00" in value:
            yield loc
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from ((*loc, key) for _ in _nul_at(key, ()))
            yield from _nul_at(item, (*loc, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _nul_at(item, (*loc, i))


async def no_nul_characters(conn: HTTPConnection) -> None:
    """App-wide dependency: no NUL character in a path or query parameter, a JSON body or a form's fields
    (422). PostgreSQL cannot store one in text at all: an IVR prompt, an office's address or a webhook's URL
    with one was a 500 there (on SQLite it was stored, and C code reading it stops at it)."""
    found: list[tuple[str | int, ...]] = [
        (where, name) for where, params in (("path", conn.path_params), ("query", conn.query_params.multi_items()))
        for name, raw in (params.items() if isinstance(params, dict) else params)
        if "\x00" in str(name) or "\x00" in str(raw)]
    if isinstance(conn, Request) and conn.method in ("POST", "PUT", "PATCH"):
        kind = conn.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind == "application/json":
            try:
                found += _nul_at(json.loads(await conn.body()), ("body",))
            except ValueError:
                pass  # not JSON: the route's own validation answers
        elif kind == "application/x-www-form-urlencoded" and not conn.url.path.startswith("/api/"):
            # the web console's forms (an API route taking a raw upload may be sent with curl's default
            # form type: its bytes are not a form). body() first, so that the page's own body() still works
            try:
                fields = parse_qsl((await conn.body()).decode("utf-8", "replace"), keep_blank_values=True)
            except RuntimeError:  # the page's own dependency (its CSRF check) parsed the form already
                fields = [(name, raw) for name, raw in (await conn.form()).multi_items() if isinstance(raw, str)]
            found += [("body", name) for name, raw in fields if "\x00" in name or "\x00" in raw]
    if found:
        if conn.scope["type"] == "websocket":
            raise WebSocketException(code=1008, reason="NUL character")
        raise RequestValidationError([{"type": "nul_character", "loc": list(loc),
                                       "msg": "must not contain a NUL character"} for loc in found])


def _sane_moment(value: datetime) -> datetime:
    # Year 1 or 9999 overflow when moved into another zone (a 500 before); no call is outside this.
    if not 1900 <= value.year <= 9000:
        raise ValueError("a time between the years 1900 and 9000")
    return value


Moment = Annotated[datetime, AfterValidator(_sane_moment)]
"""A ``datetime`` query parameter within a range that every zone conversion and database handles."""
