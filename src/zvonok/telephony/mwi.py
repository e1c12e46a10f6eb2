"""Message-waiting indication: SUBSCRIBE/NOTIFY for the ``message-summary`` event (RFC 3842, RFC 6665),
and unsolicited NOTIFY to registered phones that do not subscribe.

How it works: a phone SUBSCRIBEs to its own mailbox (Request-URI ``sip:101@domain``), authenticated
with its digest credentials like a REGISTER (401); the SUBSCRIBE/refresh/expiry machinery is the shared
:class:`~.subscriptions.SubscriptionServer` (and its table :class:`~.subscription_state.Subscriptions`).
This package adds what is its own: only one's own mailbox may be watched (403 otherwise), the body is
the summary (RFC 3842 §5), and it is sent again whenever the mailbox changes (a
:class:`~zvonok.voicemail.events.MailboxChanged` after the commit). Registered devices of the extension
with no subscription from their address get the same summary as an out-of-dialog NOTIFY (what Asterisk
calls unsolicited MWI; most desk phones accept it).
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

from zvonok.logs import get_logger
from zvonok.org.service import SipCredentials
from zvonok.sip.dialog import add_top_via
from zvonok.sip.message import Headers, Request
from zvonok.sip.message_summary import CONTENT_TYPE, EVENT, MessageSummary, build_summary

from .auth import Authenticator
from .directory import Directory
from .location import Location
from .subscription_state import Subscription, Subscriptions
from .subscriptions import SubscriptionServer, new_tag

log = get_logger(__name__)

# (tenant, extension) -> (new, old) messages of its mailbox, None when it has none
Counts = Callable[[int, int], Awaitable[tuple[int, int] | None]]


class Mwi(SubscriptionServer):
    events = (EVENT,)
    content_types = {EVENT: CONTENT_TYPE}

    def __init__(self, *, sip: Any, auth: Authenticator, directory: Directory, location: Location, counts: Counts,
                 unsolicited: bool = True, subscriptions: Subscriptions | None = None) -> None:
        super().__init__(sip=sip, auth=auth, directory=directory, subscriptions=subscriptions)
        self.location = location
        self.counts = counts
        self.unsolicited = unsolicited

    async def target(self, creds: SipCredentials, user: str, event: str) -> tuple[int, str] | int:
        if user != creds.number:  # a phone watches its own mailbox only
            return 403
        ext = await self.directory.extension(creds.tenant_id, creds.number)
        if ext is None:
            return 404
        return ext.extension_id, f"sip:{creds.number}@{creds.realm}"

    # --- NOTIFY ---------------------------------------------------------------------------------------
    async def _summary(self, tenant_id: int, extension_id: int, account: str) -> MessageSummary:
        counts = await self.counts(tenant_id, extension_id)
        new, old = counts if counts is not None else (0, 0)
        return MessageSummary.voice(new, old, account=account)

    async def body(self, sub: Subscription, *, terminated: bool) -> bytes:
        return build_summary(await self._summary(sub.tenant_id, sub.extension_id, sub.account))

    async def mailbox_changed(self, tenant_id: int, extension_id: int) -> None:
        """The extension's mailbox changed: every subscriber, and the devices that do not subscribe."""
        subs = self.subscriptions.of_extension(tenant_id, extension_id)
        ext_bindings = self.location.lookup(tenant_id, extension_id, time.time()) if self.unsolicited else []
        if not subs and not ext_bindings:
            return
        counts = await self.counts(tenant_id, extension_id)
        new, old = counts if counts is not None else (0, 0)
        for sub in subs:
            await self.notify(sub, body=build_summary(MessageSummary.voice(new, old, account=sub.account)))
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
        for name, value in (("Max-Forwards", "70"), ("From", f"<{aor}>;tag={new_tag()}"), ("To", f"<{aor}>"),
                            ("Call-ID", os.urandom(10).hex()), ("CSeq", "1 NOTIFY"), ("Contact", self.contact(peer)),
                            ("Event", EVENT), ("Subscription-State", "active"), ("Content-Type", CONTENT_TYPE)):
            headers.add(name, value)
        request = Request("NOTIFY", binding.contact, headers, build_summary(summary))
        add_top_via(request, peer.transport, self.sip.local_host, self.sip.port_for(peer.transport))
        self.sip.send_request(request, peer, lambda _event: None)

    def changed(self, tenant_id: int, extension_id: int) -> None:
        """A mailbox's messages changed (the composition root calls this after the commit)."""
        self._spawn(self.mailbox_changed(tenant_id, extension_id))
