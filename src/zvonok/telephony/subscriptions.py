"""The asyncio side of event subscriptions (RFC 6665): what the message-waiting (:mod:`.mwi`) and the
busy-lamp/presence (:mod:`.presence`) servers share.

How it works: a phone SUBSCRIBEs (Request-URI ``sip:<extension>@domain``), authenticated with its digest
credentials like a REGISTER (401); the package decides what the subscriber may watch
(:meth:`SubscriptionServer.target`: always an extension of the subscriber's own tenant, looked up in
that tenant only, so another company's numbers do not exist for it). We answer 200 with the Expires we
grant and send the current state in a NOTIFY at once (RFC 6665 §4.2.1.2), then again whenever it
changes. A refresh in the dialog moves the deadline; Expires 0 or the deadline ends the subscription
with a last NOTIFY ``Subscription-State: terminated``. A 481 to a NOTIFY forgets it (§4.1.3). The table
and its limits are :class:`~.subscription_state.Subscriptions` (sans-I/O); this is the thin adapter:
one expiry timer, NOTIFYs paced per subscriber (:meth:`notify_paced`).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Coroutine
from typing import Any

from zvonok.logs import get_logger
from zvonok.org.service import SipCredentials
from zvonok.sip.dialog import Dialog, add_top_via, dialog_response
from zvonok.sip.grammar import uri_host
from zvonok.sip.message import Request, make_response
from zvonok.sip.peer import Peer
from zvonok.sip.transaction import ResponseReceived, ServerTransaction
from zvonok.sip.transaction_events import TransactionTimeout, TransportError
from zvonok.sip.uri import SipUri

from .auth import Authenticator
from .directory import Directory
from .subscription_state import Subscription, Subscriptions, TableFull, granted_expires

log = get_logger(__name__)

# Final responses to a NOTIFY that end the subscription (RFC 6665 §4.2.2: a failure other than one
# asking to retry — 401/407 challenges, 491, 503 with Retry-After — removes it); 481: no such dialog.
FORGOTTEN = frozenset({404, 405, 408, 410, 415, 480, 481, 489, 500, 501, 603})


def new_tag() -> str:
    return os.urandom(6).hex()


def requested_expires(request: Request) -> int | None:
    value = request.headers.get("expires")
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def event_package(request: Request) -> str:
    """The Event header's package name, lower-cased, without parameters ("" when absent)."""
    return (request.headers.get("event") or "").split(";")[0].strip().lower()


class SubscriptionServer:
    """SUBSCRIBE handling for some event packages; a subclass says what may be watched and what to send."""

    events: tuple[str, ...] = ()
    content_types: dict[str, str] = {}
    default_expires: int = 3600

    def __init__(
        self,
        *,
        sip: Any,
        auth: Authenticator,
        directory: Directory,
        subscriptions: Subscriptions | None = None,
    ) -> None:
        self.sip = sip
        self.auth = auth
        self.directory = directory
        self.subscriptions = (
            subscriptions if subscriptions is not None else Subscriptions()
        )  # an empty one is falsy
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._paced: set[asyncio.TimerHandle] = set()

    # --- what a package decides ---------------------------------------------------------------------
    async def target(self, creds: SipCredentials, user: str, event: str) -> tuple[int, str] | int:
        """(extension_id, its URI) that ``creds`` may watch as ``user``, or the status to refuse with."""
        raise NotImplementedError

    async def body(self, sub: Subscription, *, terminated: bool) -> bytes:
        """The NOTIFY body with the current state for ``sub``."""
        raise NotImplementedError

    def body_now(self, sub: Subscription) -> bytes | None:
        """The body at once, when the package can make it without waiting (None: :meth:`body` in the
        task). A paced NOTIFY takes it when it is decided, so that two changes in a row each send their
        own state rather than two copies of the later one."""
        return None

    # --- tasks --------------------------------------------------------------------------------------
    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("subscription task failed", exc_info=task.exception())

    def contact(self, peer: Peer) -> str:
        transport = "" if peer.transport == "udp" else f";transport={peer.transport}"
        return f"<sip:zvonok@{uri_host(self.sip.local_host)}:{self.sip.port_for(peer.transport)}{transport}>"

    # --- SUBSCRIBE --------------------------------------------------------------------------------------
    def on_subscribe(self, txn: ServerTransaction, request: Request, peer: Peer) -> None:
        self._spawn(self._subscribe(txn, request, peer))

    async def _subscribe(self, txn: ServerTransaction, request: Request, peer: Peer) -> None:
        try:
            await self._handle(txn, request, peer)
        except Exception:  # noqa: BLE001 - answer rather than leave the phone retransmitting
            log.exception("SUBSCRIBE failed", sip_call_id=request.call_id)
            if not txn.responded:
                self.sip.respond(txn, make_response(request, 500, to_tag=new_tag()))

    async def _handle(self, txn: ServerTransaction, request: Request, peer: Peer) -> None:
        event = event_package(request)
        if event not in self.events:
            self.sip.respond(
                txn,
                make_response(
                    request, 489, to_tag=new_tag(), headers=[("Allow-Events", ", ".join(self.events))]
                ),
            )
            return
        now = time.time()
        expires = granted_expires(requested_expires(request), self.default_expires)
        if request.to.tag:  # a refresh (or an unsubscribe) in an existing subscription
            sub = self.subscriptions.get((request.call_id, request.from_.tag or "", request.to.tag))
            if sub is None or sub.event != event:
                self.sip.respond(txn, make_response(request, 481))
                return
            if expires:
                self.subscriptions.refresh(sub.key, now + expires)
            else:
                self.subscriptions.remove(sub)
            self.sip.respond(txn, make_response(request, 200, headers=[("Expires", str(expires))]))
            await self.notify(sub, terminated=not expires)
            self._arm()
            return
        uri = request.uri
        if not isinstance(uri, SipUri):
            self.sip.respond(txn, make_response(request, 416, to_tag=new_tag()))
            return
        outcome = await self.auth.authenticate(request, peer, now, domain=self.auth.domain_of(uri))
        if outcome.credentials is None:
            if outcome.response is not None:
                self.sip.respond(txn, outcome.response)
            return
        creds = outcome.credentials
        found = await self.target(creds, uri.user_unescaped or creds.number, event)
        if isinstance(found, int):
            self.sip.respond(txn, make_response(request, found, to_tag=new_tag()))
            return
        extension_id, account = found
        local_tag = new_tag()
        ok = dialog_response(
            request, 200, local_tag, self.contact(peer), extra_headers=[("Expires", str(expires))]
        )
        sub = Subscription(
            key=(request.call_id, request.from_.tag or "", local_tag),
            tenant_id=creds.tenant_id,
            extension_id=extension_id,
            account=account,
            source=str(peer),
            expires_at=now + expires,
            peer=peer,
            event=event,
            dialog=Dialog.from_uas(request, ok, self.contact(peer), secure=peer.transport == "tls"),
        )
        if expires:
            try:
                self.subscriptions.add(sub)
            except TableFull:
                self.sip.respond(
                    txn, make_response(request, 503, to_tag=new_tag(), headers=[("Retry-After", "60")])
                )
                return
        self.sip.respond(txn, ok)
        log.info(
            "subscribed",
            package=event,
            tenant=creds.tenant_id,
            subscriber=creds.number,
            watched=account,
            expires=expires,
            peer=str(peer),
        )
        sub.take(now, self.subscriptions.limits)  # the first NOTIFY counts towards the pace too
        await self.notify(sub, terminated=not expires)
        self._arm()

    # --- NOTIFY ---------------------------------------------------------------------------------------
    async def notify(self, sub: Subscription, *, terminated: bool = False, body: bytes | None = None) -> None:
        if body is None:
            body = await self.body(sub, terminated=terminated)
        remaining = max(0, int(sub.expires_at - time.time()))
        state = "terminated;reason=timeout" if terminated else f"active;expires={remaining}"
        dialog: Dialog = sub.dialog
        request = dialog.create_request(
            "NOTIFY",
            body=body,
            content_type=self.content_types[sub.event],
            extra_headers=[("Event", sub.event), ("Subscription-State", state)],
        )
        peer: Peer = sub.peer
        add_top_via(request, peer.transport, self.sip.local_host, self.sip.port_for(peer.transport))

        def answered(event: object) -> None:
            if isinstance(event, ResponseReceived):
                # the phone forgot it or will not take it (RFC 6665 §4.2.2)
                if event.response.status in FORGOTTEN:
                    self.subscriptions.remove(sub)
            elif isinstance(event, (TransactionTimeout, TransportError)):
                # a watcher that is gone (Timer F) keeps no place and gets no more NOTIFYs
                self.subscriptions.remove(sub)

        self.sip.send_request(request, peer, answered)

    def notify_paced(self, sub: Subscription) -> None:
        """Tell ``sub`` the current state now, or, when it has had its share of NOTIFYs lately, once it
        may have another (coalescing whatever changed meanwhile into that one)."""
        if sub.pending:
            return
        delay = sub.take(time.time(), self.subscriptions.limits)
        if delay <= 0:
            self._spawn(self.notify(sub, body=self.body_now(sub)))
            return
        sub.pending = True
        handle: asyncio.TimerHandle

        def later() -> None:
            self._paced.discard(handle)
            sub.pending = False
            if self.subscriptions.get(sub.key) is sub:
                self.notify_paced(sub)

        handle = asyncio.get_running_loop().call_later(delay, later)
        self._paced.add(handle)

    # --- expiry ---------------------------------------------------------------------------------------
    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        deadline = self.subscriptions.next_deadline()
        if deadline is not None:
            self._timer = asyncio.get_running_loop().call_later(
                max(0.0, deadline - time.time()), self._expire
            )

    def _expire(self) -> None:
        self._timer = None
        for sub in self.subscriptions.expire(time.time()):
            self._spawn(self.notify(sub, terminated=True))
        self._arm()

    async def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        for handle in list(self._paced):
            handle.cancel()
        for task in list(self._tasks):
            task.cancel()
