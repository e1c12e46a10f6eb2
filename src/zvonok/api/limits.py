"""What one HTTP client may hold: connections, time to send a request, body size.

uvicorn alone admits any number of connections, waits for a request's headers forever (its keep-alive
timer only runs between requests and stops at the first byte: a slowloris), and hands an application
whatever body it is sent. Three 100 MB login bodies took the server from 140 to 912 MB and stalled SIP
(issue 8). So:

- :func:`http_protocol` is uvicorn's h11 protocol with a :class:`~zvonok.transport.limits.ConnectionTable`
  (overall and per address: beyond either the client gets a 503 and the connection is closed before a
  byte is read) and two deadlines per request, as nginx's ``client_header_timeout`` and
  ``client_body_timeout``: the headers must be complete ``header_timeout`` after the connection is ready
  for a request (opened, or the previous response sent), the body ``body_timeout`` after the headers;
  bytes trickling in extend neither. uvicorn's own ``limit_concurrency`` is not used: it answers 503 per
  request but still accepts every connection, which is what uses up descriptors.
- :class:`BodyLimit` answers 413 to a Content-Length over the limit before the body is read, and stops a
  body without one (chunked) when the bytes received pass it; file imports get a larger limit.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Sequence
from typing import Any, ClassVar

import h11
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.utils import get_remote_addr

from zvonok import metrics
from zvonok.logs import get_logger
from zvonok.transport.limits import ConnectionTable

log = get_logger(__name__)

_BUSY = b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\nRetry-After: 5\r\n\r\n"


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a connection cap and request deadlines; made by :func:`http_protocol`."""

    table: ClassVar[ConnectionTable]
    header_timeout: ClassVar[float]
    body_timeout: ClassVar[float]

    _host: str | None = None  # set while this connection holds a slot of the table
    _upgraded = False
    _timer: asyncio.TimerHandle | None = None
    _phase: object = None  # "headers", the request cycle whose body is awaited, or None (the app works)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        host = (get_remote_addr(transport) or ("", 0))[0]
        if not self.table.admit(host):
            metrics.child(metrics.CONNECTIONS_CLOSED, "http", "refused").inc()
            transport.write(_BUSY)
            transport.close()
            return
        self._host = host
        super().connection_made(transport)
        self._arm("headers", self.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel()
        if self._host is None:
            return  # refused: uvicorn never saw it
        self.table.release(self._host)
        self._host = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._follow()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._follow()

    def handle_websocket_upgrade(self, event: h11.Request) -> None:
        self._cancel()
        self._upgraded = True
        super().handle_websocket_upgrade(event)
        # the websocket protocol owns the transport now and gets its connection_lost: free the slot there
        websocket: Any = self.transport.get_protocol()
        host, table, lost = self._host, self.table, websocket.connection_lost
        self._host = None

        def connection_lost(exc: Exception | None) -> None:
            if host is not None:
                table.release(host)
            lost(exc)

        websocket.connection_lost = connection_lost

    def _follow(self) -> None:
        """Re-arm the deadline for what the connection waits for now."""
        if self._upgraded or self._host is None or self.transport.is_closing():
            self._cancel()
            return
        cycle = self.cycle
        if cycle is None or cycle.response_complete:
            if self._phase != "headers":
                self._arm("headers", self.header_timeout)
        elif cycle.more_body:
            if self._phase is not cycle:
                self._arm(cycle, self.body_timeout)
        else:
            self._cancel()

    def _arm(self, phase: object, timeout: float) -> None:
        self._cancel()
        self._phase = phase
        self._timer = self.loop.call_later(timeout, self._expire, "headers" if phase == "headers" else "body")

    def _cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._phase = None

    def _expire(self, what: str) -> None:
        self._timer = None
        metrics.child(metrics.CONNECTIONS_CLOSED, "http", f"{what} deadline").inc()
        log.debug("closing http connection: request too slow", client=str(self.client), waiting_for=what)
        self.transport.close()


def http_protocol(table: ConnectionTable, *, header_timeout: float, body_timeout: float) -> type[H11Protocol]:
    """The protocol class for ``uvicorn.Config(http=...)``, bound to one table and its deadlines."""
    return type("ZvonokH11Protocol", (GuardedH11Protocol,),
                {"table": table, "header_timeout": header_timeout, "body_timeout": body_timeout})


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is larger than {limit} bytes")


class BodyLimit:
    """ASGI middleware: a request body is at most ``default`` bytes, or more on the routes of ``larger``
    (method, path pattern, limit) — answered 413 before reading when the Content-Length says so."""

    def __init__(self, app: ASGIApp, *, default: int, larger: Sequence[tuple[str, str, int]] = ()) -> None:
        self.app = app
        self.default = default
        self.larger = [(method, re.compile(pattern), limit) for method, pattern, limit in larger]

    def limit_for(self, method: str, path: str) -> int:
        for m, pattern, limit in self.larger:
            if m == method and pattern.fullmatch(path):
                return limit
        return self.default

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["method"], scope["path"])
        declared = _content_length(scope["headers"])
        if declared is not None and declared > limit:
            await _refuse(send, limit)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)  # FastAPI answers it, with the close added below
            return message

        async def closing_send(message: Message) -> None:
            if message["type"] == "http.response.start" and received > limit:
                # the rest of the body is still on its way: the connection cannot carry another request
                message["headers"] = [*message.get("headers", []), (b"connection", b"close")]
            await send(message)

        await self.app(scope, limited_receive, closing_send)


def _content_length(headers: Sequence[tuple[bytes, bytes]]) -> int | None:
    for name, value in headers:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # h11 already refused a malformed one
    return None


async def _refuse(send: Send, limit: int) -> None:
    body = json.dumps({"detail": f"the request body is larger than {limit} bytes"}).encode()
    await send({"type": "http.response.start", "status": 413, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
