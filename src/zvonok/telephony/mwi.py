"""Message-waiting indication: SUBSCRIBE/NOTIFY for the ``message-summary`` event (RFC 3842, RFC 6665),
and unsolicited NOTIFY to registered phones that do not subscribe.

How it works: a phone SUBSCRIBEs to its own mailbox (Request-URI ``sip:101@domain``), authenticated
with its digest credentials like a REGISTER (401); we answer 200 with the Expires we grant
(:func:`~.mwi_state.granted_expires`) and send the current summary in a NOTIFY at once (RFC 6665
§4.2.1.2), then again whenever the mailbox changes (a :class:`~zvonok.voicemail.events.MailboxChanged`
after the commit). A refresh in the dialog moves the deadline; Expires 0 or the deadline ends the
subscription with a last NOTIFY ``Subscription-State: terminated``. A 481 to a NOTIFY forgets it.
Registered devices of the extension with no subscription from their address get the same summary as an
out-of-dialog NOTIFY (what Asterisk calls unsolicited MWI; most desk phones accept it). The table is
:class:`~.mwi_state.Subscriptions` (sans-I/O); this module is the thin asyncio adapter.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

from zvonok.logs import get_logger
from zvonok.sip.dialog import Dialog, add_top_via, dialog_response
from zvonok.sip.grammar import uri_host
from zvonok.sip.message import Headers, Request, make_response
from zvonok.sip.message_summary import CONTENT_TYPE, EVENT, MessageSummary, build_summary
from zvonok.sip.peer import Peer
from zvonok.sip.transaction import ResponseReceived, ServerTransaction
from zvonok.sip.uri import SipUri

from .auth import Authenticator
from .directory import Directory
from .location import Location
from .mwi_state import Subscription, Subscriptions, TableFull, granted_expires

log = get_logger(__name__)

# (tenant, extension) -> (new, old) messages of its mailbox, None when it has none
Counts = Callable[[int, int], Awaitable[tuple[int, int] | None]]


def _tag() -> str:
    return os.urandom(6).hex()


def _expires(request: Request) -> int | None:
    value = request.headers.get("expires")
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


class Mwi:
    def __init__(self, *, sip: Any, auth: Authenticator, directory: Directory, location: Location, counts: Counts,
                 unsolicited: bool = True, subscriptions: Subscriptions | None = None) -> None:
        self.sip = sip
        self.auth = auth
        self.directory = directory
        self.location = location
        self.counts = counts
        self.unsolicited = unsolicited
        self.subscriptions = subscriptions or Subscriptions()
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("mwi task failed", exc_info=task.exception())

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
            log.exception("mwi: SUBSCRIBE failed", sip_call_id=request.call_id)
            if not txn.responded:
                self.sip.respond(txn, make_response(request, 500, to_tag=_tag()))

    async def _handle(self, txn: ServerTransaction, request: Request, peer: Peer) -> None:
        event = (request.headers.get("event") or "").split(";")[0].strip().lower()
        if event != EVENT:
            self.sip.respond(txn, make_response(request, 489, to_tag=_tag(), headers=[("Allow-Events", EVENT)]))
            return
        now = time.time()
        expires = granted_expires(_expires(request))
        if request.to.tag:  # a refresh (or an unsubscribe) in an existing subscription
            sub = self.subscriptions.get((request.call_id, request.from_.tag or "", request.to.tag))
            if sub is None:
                self.sip.respond(txn, make_response(request, 481))
                return
            if expires:
                self.subscriptions.refresh(sub.key, now + expires)
            else:
                self.subscriptions.remove(sub)
            self.sip.respond(txn, make_response(request, 200, headers=[("Expires", str(expires))]))
            await self._notify(sub, terminated=not expires)
            self._arm()
            return
        uri = request.uri
        if not isinstance(uri, SipUri):
            self.sip.respond(txn, make_response(request, 416, to_tag=_tag()))
            return
        outcome = await self.auth.authenticate(request, peer, now, domain=self.auth.domain_of(uri))
        if outcome.credentials is None:
            if outcome.response is not None:
                self.sip.respond(txn, outcome.response)
            return
        creds = outcome.credentials
        mailbox = uri.user_unescaped or creds.number
        if mailbox != creds.number:  # a phone watches its own mailbox only
            self.sip.respond(txn, make_response(request, 403, to_tag=_tag()))
            return
        ext = await self.directory.extension(creds.tenant_id, creds.number)
        if ext is None:
            self.sip.respond(txn, make_response(request, 404, to_tag=_tag()))
            return
        local_tag = _tag()
        ok = dialog_response(request, 200, local_tag, self.contact(peer), extra_headers=[("Expires", str(expires))])
        sub = Subscription(key=(request.call_id, request.from_.tag or "", local_tag), tenant_id=creds.tenant_id,
                           extension_id=ext.extension_id, account=f"sip:{creds.number}@{creds.realm}",
                           source=str(peer), expires_at=now + expires, peer=peer,
                           dialog=Dialog.from_uas(request, ok, self.contact(peer), secure=peer.transport == "tls"))
        if expires:
            try:
                self.subscriptions.add(sub)
            except TableFull:
                self.sip.respond(txn, make_response(request, 503, to_tag=_tag(), headers=[("Retry-After", "60")]))
                return
        self.sip.respond(txn, ok)
        log.info("mwi: subscribed", tenant=creds.tenant_id, extension=creds.number, expires=expires, peer=str(peer))
        await self._notify(sub, terminated=not expires)
        self._arm()

    # --- NOTIFY ---------------------------------------------------------------------------------------
    async def _summary(self, tenant_id: int, extension_id: int, account: str) -> MessageSummary:
        counts = await self.counts(tenant_id, extension_id)
        new, old = counts if counts is not None else (0, 0)
        return MessageSummary.voice(new, old, account=account)

    async def _notify(self, sub: Subscription, *, terminated: bool = False,
                      summary: MessageSummary | None = None) -> None:
        if summary is None:
            summary = await self._summary(sub.tenant_id, sub.extension_id, sub.account)
        remaining = max(0, int(sub.expires_at - time.time()))
        state = "terminated;reason=timeout" if terminated else f"active;expires={remaining}"
        dialog: Dialog = sub.dialog
        request = dialog.create_request("NOTIFY", body=build_summary(summary), content_type=CONTENT_TYPE,
                                        extra_headers=[("Event", EVENT), ("Subscription-State", state)])
        peer: Peer = sub.peer
        add_top_via(request, peer.transport, self.sip.local_host, self.sip.port_for(peer.transport))

        def answered(event: object) -> None:
            if isinstance(event, ResponseReceived) and event.response.status == 481:
                self.subscriptions.remove(sub)  # the phone forgot it (RFC 6665 §4.1.3)

        self.sip.send_request(request, peer, answered)

    async def mailbox_changed(self, tenant_id: int, extension_id: int) -> None:
        """The extension's mailbox changed: every subscriber, and the devices that do not subscribe."""
        subs = self.subscriptions.of_extension(tenant_id, extension_id)
        ext_bindings = self.location.lookup(tenant_id, extension_id, time.time()) if self.unsolicited else []
        if not subs and not ext_bindings:
            return
        counts = await self.counts(tenant_id, extension_id)
        new, old = counts if counts is not None else (0, 0)
        for sub in subs:
            await self._notify(sub, summary=MessageSummary.voice(new, old, account=sub.account))
        watched = {s.source for s in subs}
        for binding in ext_bindings if counts is not None else ():  # no mailbox: nothing to tell unasked
            if binding.source in watched:
                continue
            self._unsolicited(binding, new, old)

    def _unsolicited(self, binding: Any, new: int, old: int) -> None:
        from .b2bua import peer_of  # the engine's rule for reaching a registered device (NAT-safe)

        peer = peer_of(binding)
        aor = binding.aor if binding.aor.startswith(("sip:", "sips:")) else f"sip:{binding.aor}"
        summary = MessageSummary.voice(new, old, account=aor)
        headers = Headers()
        for name, value in (("Max-Forwards", "70"), ("From", f"<{aor}>;tag={_tag()}"), ("To", f"<{aor}>"),
                            ("Call-ID", os.urandom(10).hex()), ("CSeq", "1 NOTIFY"), ("Contact", self.contact(peer)),
                            ("Event", EVENT), ("Subscription-State", "active"), ("Content-Type", CONTENT_TYPE)):
            headers.add(name, value)
        request = Request("NOTIFY", binding.contact, headers, build_summary(summary))
        add_top_via(request, peer.transport, self.sip.local_host, self.sip.port_for(peer.transport))
        self.sip.send_request(request, peer, lambda _event: None)

    # --- expiry ---------------------------------------------------------------------------------------
    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        deadline = self.subscriptions.next_deadline()
        if deadline is not None:
            self._timer = asyncio.get_running_loop().call_later(max(0.0, deadline - time.time()), self._expire)

    def _expire(self) -> None:
        self._timer = None
        for sub in self.subscriptions.expire(time.time()):
            self._spawn(self._notify(sub, terminated=True))
        self._arm()

    def changed(self, tenant_id: int, extension_id: int) -> None:
        """A mailbox's messages changed (the composition root calls this after the commit)."""
        self._spawn(self.mailbox_changed(tenant_id, extension_id))

    async def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        for task in list(self._tasks):
            task.cancel()
