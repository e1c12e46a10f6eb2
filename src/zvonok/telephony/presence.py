"""Busy-lamp field and presence: SUBSCRIBE/NOTIFY for the ``dialog`` (RFC 4235) and ``presence`` (RFC
3856, PIDF) event packages, for the extensions of the subscriber's own tenant.

How it works: the subscription machinery is the shared :class:`~.subscriptions.SubscriptionServer`
(digest-authenticated like a REGISTER; another tenant's number is looked up in the subscriber's tenant
and so is simply not found: 404, and an unauthenticated subscriber gets only the challenge). The state
comes from the call engine's events on the bus, folded by :class:`~.blf_state.ExtensionActivity` (ringing
= ``early``, answered = ``confirmed``, hung up = ``terminated``), and from registrations (presence
``open`` while the extension has a registered device, the RPID ``on-the-phone`` activity while it is in
a call). Every change NOTIFYs the extension's watchers with the full state (RFC 4235 §4.1 ``state="full"``,
the version one more each time), paced per watcher (:meth:`SubscriptionServer.notify_paced`: a flapping
state is coalesced, the latest state always arrives). An early incoming dialog names ``**<ext>`` (our
directed pickup, telephony/pickup.py) as its remote target: the BLF key dials it to take the call; it
also carries the call-id and tags of our INVITE to the ringing phone, for keys that take the call with an
INVITE with Replaces instead (RFC 3891, :meth:`~.pickup.Pickup.on_replaces`).
"""

from __future__ import annotations

import time
from typing import Any

from zvonok.logs import get_logger
from zvonok.org.service import SipCredentials
from zvonok.sip.dialog_info import (
    DIALOG_CONTENT_TYPE,
    DIALOG_EVENT,
    PIDF_CONTENT_TYPE,
    PRESENCE_EVENT,
    DialogInfo,
    DialogState,
    Presence,
    build_dialog_info,
    build_pidf,
)

from . import events as ev
from .auth import Authenticator
from .blf_state import ExtensionActivity
from .directory import Directory
from .location import Location
from .pickup import DIRECTED_PICKUP
from .subscription_state import Limits, Subscription, Subscriptions
from .subscriptions import SubscriptionServer

log = get_logger(__name__)

# One extension may be watched by every phone of a large office (the benchmark: 200); one device
# rarely has more than a few dozen BLF keys (an expansion module: 3 × 20).
DEFAULT_LIMITS = Limits(
    per_extension=500,
    per_source=100,
    per_tenant=5_000,
    total=50_000,
    burst=5,
    interval=0.5,
    replace_same_source=True,
)

# the call events the lamps are folded from (the bus subscription of the composition root)
BLF_EVENTS = (
    ev.CallStarted,
    ev.LegCreated,
    ev.LegRinging,
    ev.LegAnswered,
    ev.CallAnswered,
    ev.LegEnded,
    ev.CallEnded,
)


class BusyLamps(SubscriptionServer):
    events = (DIALOG_EVENT, PRESENCE_EVENT)
    content_types = {DIALOG_EVENT: DIALOG_CONTENT_TYPE, PRESENCE_EVENT: PIDF_CONTENT_TYPE}

    def __init__(
        self,
        *,
        sip: Any,
        auth: Authenticator,
        directory: Directory,
        location: Location,
        activity: ExtensionActivity | None = None,
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        super().__init__(sip=sip, auth=auth, directory=directory, subscriptions=Subscriptions(limits=limits))
        self.location = location
        self.activity = activity or ExtensionActivity()

    async def target(self, creds: SipCredentials, user: str, event: str) -> tuple[int, str] | int:
        ext = await self.directory.extension(creds.tenant_id, user)  # the subscriber's tenant only
        if ext is None or not ext.enabled:
            return 404
        return ext.extension_id, f"sip:{ext.number}@{creds.realm}"

    async def body(self, sub: Subscription, *, terminated: bool) -> bytes:
        return self.body_now(sub)

    def body_now(self, sub: Subscription) -> bytes:
        domain = sub.account.partition("@")[2]
        if sub.event == DIALOG_EVENT:
            dialogs = self.activity.dialogs(sub.tenant_id, sub.extension_id)
            info = DialogInfo(
                entity=sub.account,
                version=sub.version,
                dialogs=tuple(d.to_dialog(domain, DIRECTED_PICKUP) for d in dialogs),
            )
            sub.version += 1
            return build_dialog_info(info)
        registered = bool(self.location.lookup(sub.tenant_id, sub.extension_id, time.time()))
        live = [
            d
            for d in self.activity.dialogs(sub.tenant_id, sub.extension_id)
            if d.state is not DialogState.TERMINATED
        ]
        busy = any(d.state is DialogState.CONFIRMED for d in live)
        note = "On the phone" if busy else "Ringing" if live else "Available" if registered else "Offline"
        return build_pidf(Presence(entity=sub.account, open=registered, on_the_phone=busy, note=note))

    def _changed(self, tenant_id: int, extension_id: int, events: tuple[str, ...]) -> None:
        for event in events:
            for sub in self.subscriptions.of_extension(tenant_id, extension_id, event):
                self.notify_paced(sub)

    async def on_call_event(self, event: object) -> None:
        """A bus handler for the call events."""
        for tenant_id, extension_id in self.activity.apply(event):
            self._changed(tenant_id, extension_id, self.events)

    def registration_changed(self, tenant_id: int, extension_id: int) -> None:
        self._changed(tenant_id, extension_id, (PRESENCE_EVENT,))
