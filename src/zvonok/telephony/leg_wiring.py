"""The engine's side of its legs' dialog machines (:class:`zvonok.telephony.leg.Leg`).

How it works: a call leg record (:class:`.call.Leg`) holds the sans-I/O machine of
its dialog in ``leg.sip``. The engine feeds that machine what the transaction layer reports (responses,
timeouts, transport errors) and what the call decides (invite, cancel, authenticate, hang up), then
:meth:`~LegWiringMixin._drive`s it: the machine's actions go to the SIP stack (one ``SipStack`` call
each), its events to the leg's handler (``leg.on_sip_event``: the call logic), and the leg keeps ONE
timer, on the machine's ``next_deadline()``, that calls ``handle_timer`` with the engine's clock.

Every leg of a call has one: a callee leg from its INVITE on (:meth:`~LegWiringMixin._uac_machine`:
forks, trunk legs answering 401/407, transfer and access-number attempts), the caller's leg from the
moment its media endpoint exists (:meth:`~LegWiringMixin._uas_machine`; before that the engine refuses
the INVITE with a plain response). The machine runs the whole dialog: provisional responses, the 2xx and
its ACK (re-sent, §13.2.2.4; a second fork's 2xx ACKed and BYEd), CANCEL after a provisional (§9.1) and a
2xx crossing it (§15), our 200 re-sent until its ACK (§13.3.1.4), delayed offer, re-INVITEs and UPDATEs
both ways with glare (§14), RFC 4028 session timers, and BYE either way. Events about the established
dialog (a request for the application, new media) go to ``CallEngine._on_dialog_event`` whatever the
leg's role; the others to the leg's own handler. When a machine ends a dialog by itself (no ACK, the
session expired, a refresh failed) the call ends at once (:meth:`~LegWiringMixin._check_gave_up`).
"""

from __future__ import annotations

import asyncio
import os
import random
import uuid
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Protocol

from zvonok.sip.dialog import DialogKey
from zvonok.sip.message import Request, Response
from zvonok.sip.peer import Peer
from zvonok.sip.sdp_offer_answer import Codec
from zvonok.sip.transaction import (
    ClientTransaction,
    ResponseReceived,
    ServerTransaction,
    TransactionTimeout,
    TransportError,
)
from zvonok.sip.uas import is_sips

from .call import CODECS, Leg
from .call import LegState as CallLegState
from .leg import Leg as SipLeg
from .leg_events import (
    Action,
    CancelInvite,
    Held,
    LegConfig,
    LegEvent,
    LegIds,
    MediaUpdated,
    OfferReceived,
    ReofferFailed,
    RequestForApplication,
    Resumed,
    SendRequest,
    SendResponse,
    SendStateless,
    SetUpOver,
    T38Agreed,
    TerminationCause,
)
from .leg_states import LIVE, WAIT_ACK, LegState

__all__ = ["LegWiringMixin", "SipStack"]


class SipStack(Protocol):
    """What the engine needs from the SIP service (see :class:`zvonok.telephony.service.SipService`)."""

    @property
    def local_host(self) -> str: ...

    @property
    def local_port(self) -> int: ...
    t1: float
    t2: float

    def port_for(self, transport: str) -> int: ...

    def respond(self, txn: ServerTransaction, response: Response) -> None: ...

    def send_request(self, request: Request, peer: Peer,
                     handler: Callable[[object], None]) -> ClientTransaction: ...

    def cancel(self, invite: ClientTransaction, reason: str | None = None) -> None: ...

    def send_stateless(self, message: Request | Response, peer: Peer) -> None: ...

LegHandler = Callable[[Leg, LegEvent], None]
# events about an established dialog, handled alike on every leg (CallEngine._on_dialog_event); the others
# (Progress, Answered, Challenged, Terminated) go to the leg's own handler
_DIALOG_EVENTS = (RequestForApplication, MediaUpdated, OfferReceived, ReofferFailed, Held, Resumed, T38Agreed)


def _token() -> str:
    return os.urandom(6).hex()


def _branch() -> str:
    return _token() + _token()


class LegWiringMixin:
    """Mixed into :class:`zvonok.telephony.b2bua.CallEngine`, which provides what is declared here."""

    if TYPE_CHECKING:  # the engine's side, declared for the type checker only (no stubs at run time)
        sip: SipStack
        clock: Callable[[], float]
        rng: random.Random
        session_min_se: int
        unacked: dict[DialogKey, Leg]
        invites: dict[ServerTransaction, Leg]

        def contact(self, peer: Peer, *, sips: bool = False) -> str: ...

        def _srtp_key(self, leg: Leg) -> bytes | None: ...

        def _srtp_required(self, leg: Leg) -> bool: ...

        def _release(self, leg: Leg) -> None: ...

        def _on_dialog_event(self, leg: Leg, event: object) -> None: ...

        def _leg_gave_up(self, leg: Leg, cause: TerminationCause) -> None: ...

    def _uac_machine(self, leg: Leg, codecs: Iterable[Codec], *, request_uri: str, from_header: str,
                     to_header: str, extra_headers: Iterable[tuple[str, str]], on_event: LegHandler) -> SipLeg:
        """The dialog machine of a callee leg (our INVITE to ``leg.peer`` from ``leg.endpoint``), not sent yet."""
        peer, endpoint = leg.peer, leg.endpoint
        assert endpoint is not None
        config = LegConfig(transport=peer.transport, host=self.sip.local_host, port=self.sip.port_for(peer.transport),
                           # a sips: Request-URI: a sips: Contact (RFC 3261 §12.1.1)
                           contact=self.contact(peer, sips=request_uri.lower().startswith("sips:")),
                           media_host=self.sip.local_host,
                           media_port=endpoint.local_address.port, codecs=tuple(codecs), t1=self.sip.t1,
                           t2=self.sip.t2, min_se=self.session_min_se, srtp_key=self._srtp_key(leg))
        # the leg's own tag each time: ``str.__str__`` returns the str itself, a smaller object per leg than a
        # lambda and its closure (every idle call holds two legs: issue 9's memory per call)
        ids = LegIds(tag=leg.local_tag.__str__, branch=_branch, uniform=self.rng.uniform)
        machine = SipLeg.uac(config, ids, leg.session, request_uri=request_uri, from_uri=request_uri,
                             to_uri=request_uri, call_id=uuid.uuid4().hex,
                             extra_headers=extra_headers, from_name_addr=from_header, to_name_addr=to_header)
        leg.sip = machine
        leg.on_sip_event = on_event
        return machine

    def _uas_machine(self, leg: Leg, on_event: LegHandler) -> SipLeg:
        """The dialog machine of the caller's leg (the INVITE we took, answered from ``leg.endpoint``): it
        answers the offer at once, or refuses it (488, 400: TERMINATED, the response sent)."""
        peer, endpoint, invite, txn = leg.peer, leg.endpoint, leg.invite, leg.server_txn
        assert endpoint is not None and invite is not None and txn is not None
        config = LegConfig(transport=peer.transport, host=self.sip.local_host, port=self.sip.port_for(peer.transport),
                           contact=self.contact(peer, sips=is_sips(invite.uri)), media_host=self.sip.local_host,
                           media_port=endpoint.local_address.port, codecs=CODECS, t1=self.sip.t1, t2=self.sip.t2,
                           min_se=self.session_min_se, srtp_key=self._srtp_key(leg),
                           srtp_required=self._srtp_required(leg))
        ids = LegIds(tag=leg.local_tag.__str__, branch=_branch, uniform=self.rng.uniform)
        leg.on_sip_event = on_event
        leg.sip = SipLeg.uas(config, ids, leg.session, invite, txn, self.clock())
        return leg.sip

    def _drive(self, leg: Leg, *, hold: object | None = None) -> list[SendResponse]:
        """Carry out what the leg's machine asks for, hand its events to the call, re-arm its one timer.
        The responses on the server transaction ``hold`` are returned instead of sent (the caller sends
        them when it is ready: a re-INVITE's answer once our endpoint follows it)."""
        machine = leg.sip
        held: list[SendResponse] = []
        if machine is None:
            return held
        while True:
            actions = machine.take_actions()
            events = machine.take_events()
            if not actions and not events:
                break
            for action in actions:
                if hold is not None and isinstance(action, SendResponse) and action.transaction is hold:
                    held.append(action)
                else:
                    self._execute(leg, action)
            if leg.cancelled and machine.state is LegState.TERMINATING and leg.state in (CallLegState.TRYING,
                                                                                          CallLegState.RINGING):
                # our CANCEL crossed the callee's 2xx: the machine ACKed it and sent the BYE (§15); for the
                # call this leg is over now
                leg.state = CallLegState.ENDED
                self._release(leg)
            handler = leg.on_sip_event
            for event in events:
                if isinstance(event, SetUpOver):
                    self._forget_set_up(leg, event.invite)
                elif isinstance(event, _DIALOG_EVENTS):
                    self._on_dialog_event(leg, event)
                elif handler is not None:
                    handler(leg, event)
        if self.unacked and machine.state not in WAIT_ACK and leg.dialog is not None:
            self.unacked.pop(leg.dialog.key, None)
        self._arm_leg_timer(leg)
        return held

    def _forget_set_up(self, leg: Leg, invite: Request) -> None:
        """The set-up is over (:class:`SetUpOver`): keep the INVITE's record in place of the INVITE, and let
        its transactions go (no CANCEL can follow, none would match the ended server transaction)."""
        leg.invite = invite
        leg.client_txn = None
        if leg.server_txn is not None:
            self.invites.pop(leg.server_txn, None)
            leg.server_txn = None

    def _execute(self, leg: Leg, action: Action) -> None:
        if isinstance(action, SendRequest):
            request = action.request
            if request.method == "INVITE" and not request.to.tag:
                leg.invite = request  # the initial INVITE, or again with credentials (§22.2)
            txn = self.sip.send_request(request, leg.peer, lambda event: self._leg_transaction(leg, event))
            if request.method == "INVITE" and not request.to.tag:
                leg.client_txn = txn
        elif isinstance(action, CancelInvite):
            if leg.client_txn is not None:
                self.sip.cancel(leg.client_txn, action.reason)
        elif isinstance(action, SendStateless):
            self.sip.send_stateless(action.message, leg.peer)
        elif isinstance(action, SendResponse):
            self.sip.respond(action.transaction, action.response)

    def _leg_transaction(self, leg: Leg, event: object) -> None:
        """What the transaction layer reports for one of the machine's requests."""
        machine = leg.sip
        if machine is None:
            return
        now = self.clock()
        before = machine.state
        if isinstance(event, ResponseReceived):
            machine.receive_response(event.response, now)
        elif isinstance(event, (TransactionTimeout, TransportError)):
            request = getattr(event.transaction, "request", None)
            if isinstance(request, Request):
                machine.transaction_failed(request, now)
        self._drive(leg)
        self._check_gave_up(leg, before)

    def _arm_leg_timer(self, leg: Leg) -> None:
        """One timer per leg, on the machine's next deadline (only before the answer: see the module doc)."""
        machine = leg.sip
        if leg.sip_timer is not None:
            leg.sip_timer.cancel()
            leg.sip_timer = None
        if machine is None:
            return
        deadline = machine.next_deadline()
        if deadline is None:
            return
        delay = max(0.0, deadline - self.clock())
        leg.sip_timer = asyncio.get_running_loop().call_later(delay, self._leg_timer, leg)

    def _leg_timer(self, leg: Leg) -> None:
        leg.sip_timer = None
        machine = leg.sip
        if machine is None:
            return
        before = machine.state
        machine.handle_timer(self.clock())
        self._drive(leg)
        self._check_gave_up(leg, before)

    def _check_gave_up(self, leg: Leg, before: LegState) -> None:
        """Did the machine of an established leg (or one whose 2xx awaits its ACK) just send a BYE of its
        own accord — no ACK, the session expired, a refresh failed? The call then ends now."""
        machine = leg.sip
        if machine is None or machine.state is not LegState.TERMINATING or not (before in LIVE
                                                                                or before is LegState.ACCEPTED):
            return
        cause = machine.ending_cause
        if cause in (TerminationCause.NO_ACK, TerminationCause.SESSION_EXPIRED, TerminationCause.TIMEOUT,
                     TerminationCause.DIALOG_GONE):
            self._leg_gave_up(leg, cause)
