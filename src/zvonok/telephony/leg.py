"""A call leg: one side of one SIP INVITE dialog (RFC 3261 §12–§15), as a sans-I/O state machine.

How it works: a :class:`Leg` is the UAC of an INVITE we place (:meth:`Leg.uac`, then :meth:`~Leg.invite`)
or the UAS of one we received (:meth:`Leg.uas`). It sits on top of the transaction layer
(:mod:`zvonok.sip.transaction`) and below the Call: the engine feeds it what the layer reports for its
dialog — :meth:`~Leg.receive_request`, :meth:`~Leg.receive_cancel`, :meth:`~Leg.receive_ack`,
:meth:`~Leg.receive_response`, :meth:`~Leg.transaction_failed` — and what the Call decides —
:meth:`~Leg.ring`, :meth:`~Leg.answer`, :meth:`~Leg.reject`, :meth:`~Leg.cancel`, :meth:`~Leg.hangup`,
:meth:`~Leg.reoffer`, :meth:`~Leg.authenticate`, :meth:`~Leg.respond` — each with ``now``. It then drains :meth:`~Leg.take_actions` (layer calls, see
:mod:`.leg_events`) and :meth:`~Leg.take_events` (for the Call), and re-arms one timer on
:meth:`~Leg.next_deadline`, calling :meth:`~Leg.handle_timer` when it passes.

Every input is first named (``"INVITE 2xx"``, ``"reINVITE 491"``, ``"timer ack"``, ``"hangup"`` …) and
then looked up in :data:`TABLE`, the one table of ``(state, input) -> (next state, handler)``. The handler
runs first — it may refuse a request by raising :class:`LegProtocolError`, which answers it with the
status named and leaves the state alone — then the leg enters the next state, which cancels the timers
that do not run there (:data:`TIMERS`). An input without a row is the engine's mistake when it comes
from the engine (:class:`LegUsageError`), a request the leg answers 481 or 500 when it comes from the
peer, and is ignored when it is a response (a retransmission or a late answer) or a timer.

What the table encodes, with the RFC rules behind it:

* offer/answer (RFC 3264) through :mod:`zvonok.sip.sdp_offer_answer`: the UAC offers in its INVITE; the
  UAS answers an offer in its 1xx/2xx, or offers in its 2xx when the INVITE had none and takes the
  answer from the ACK; re-INVITEs both ways, hold being an offer that does not receive (§8.4);
* glare (RFC 3261 §14.1, §14.2): a re-INVITE arriving while ours is pending (or while our 2xx to theirs
  waits for its ACK) gets 491; our re-INVITE refused with 491 is retried after a random 2.1–4 s when we
  created the dialog's Call-ID (the UAC of the initial INVITE), 0–2 s otherwise;
* the 2xx to an INVITE is re-sent until its ACK, T1 doubling up to T2, and after 64*T1 without one the
  session ends with a BYE (§13.3.1.4); a BYE we want in the meantime waits for the ACK (§15);
  a 2xx that comes again is ACKed again with the same ACK (§13.2.2.4);
* CANCEL (§9.1) waits for a provisional response; a 2xx that crosses it is ACKed and then BYEd (§15),
  and without any final response 64*T1 after it we give the INVITE up;
* session timers (RFC 4028): we ask for one as UAC and honour the peer's as UAS (422 under our Min-SE);
  the refresher re-INVITEs at half the interval, the other side sends a BYE when no refresh came by the
  interval less min(32 s, a third) (§10); a refresh that times out or gets 408/481 ends the session;
* a 401/407 to our INVITE waits in CHALLENGED for the engine's credentials (§22.2), and a 2xx from a
  second fork of our INVITE is ACKed and BYEd (§13.2.2.4).

The states and their timers are in :mod:`.leg_states`, the offer/answer state in :mod:`.leg_media`, the
session timer in :mod:`.leg_session_timer`, the initial INVITE in :mod:`.leg_messages`; the inputs and
outputs in :mod:`.leg_events`.

Timers, by name: ``2xx`` (retransmission) and ``ack`` (64*T1) while a 2xx awaits its ACK; ``cancel``
(64*T1 after CANCEL); ``glare`` (the 491 back-off); ``refresh`` and ``expiry`` (RFC 4028); ``accepted``
(64*T1 after the initial INVITE's 2xx, RFC 6026's Timers L and M: the set-up is over, the leg keeps only a
record of its INVITE and forgets its ACK, :class:`SetUpOver` tells the engine to do the same). The leg keeps no
clock, draws no randomness and makes no ids itself: :class:`LegIds` brings tags, branches, the first
CSeq and ``uniform``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from zvonok.sip.dialog import Dialog, DialogState, add_top_via, credentials_of, dialog_response
from zvonok.sip.message import Request, Response
from zvonok.sip.sdp import Direction
from zvonok.sip.sdp_offer_answer import LocalSession, NegotiatedMedia
from zvonok.sip.transaction import ServerTransaction

from .leg_events import (
    Action,
    Answered,
    CancelInvite,
    Challenged,
    LegConfig,
    LegEvent,
    LegIds,
    LegProtocolError,
    LegUsageError,
    MediaUpdated,
    Progress,
    ReofferFailed,
    RequestForApplication,
    SendRequest,
    SendResponse,
    SendStateless,
    SetUpOver,
    T38Agreed,
    Terminated,
    TerminationCause,
)
from .leg_media import OfferAnswer
from .leg_messages import ALLOW, initial_invite, invite_record, with_credentials
from .leg_session_timer import SessionTimer
from .leg_states import (
    CANCELLED,
    ENDING,
    IN_DIALOG,
    LIVE,
    TIMERS,
    UAC_OPEN,
    UAS_OPEN,
    WAIT_ACK,
    LegState,
    Role,
    status_class,
)

__all__ = ["ALLOW", "TABLE", "TIMERS", "Leg", "LegState", "Role"]

_Cause = TerminationCause
_S = LegState


class Leg:
    """One SIP dialog side; see the module docstring for how the engine drives it."""

    def __init__(self, role: Role, config: LegConfig, ids: LegIds, session: LocalSession) -> None:
        self.role = role
        self.config = config
        self.state = _S.IDLE
        self.offer_answer = OfferAnswer(host=config.media_host, port=config.media_port, codecs=config.codecs,
                                        session=session, srtp_key=config.srtp_key,
                                        srtp_required=config.srtp_required)
        self.session_timer = SessionTimer(min_se=config.min_se)
        self.dialog: Dialog | None = None
        self.timers: dict[str, float] = {}  # timer name -> deadline
        self._ids = ids
        self._local_tag = ids.tag()
        self._actions: list[Action] = []
        self._events: list[LegEvent] = []
        self._invite: Request | None = None  # the initial INVITE (ours or theirs)
        self._invite_txn: ServerTransaction | None = None
        self._reinvite: Request | None = None  # our re-INVITE in flight
        self._bye_cseq: int | None = None
        self._ack: Request | None = None  # our last ACK, re-sent when its 2xx comes again
        self._cancel_reason: str | None = None
        self._owed = False  # a re-INVITE we still have to send (asked during another, or after a 491)
        self._pending_2xx: Response | None = None
        self._interval = 0.0
        self._cause = _Cause.LOCAL_BYE
        self._status: int | None = None

    # -- creation ------------------------------------------------------------------------------------------
    @classmethod
    def uac(cls, config: LegConfig, ids: LegIds, session: LocalSession, *, request_uri: str, from_uri: str,
            to_uri: str, call_id: str, extra_headers: Iterable[tuple[str, str]] = (),
            from_name_addr: str | None = None, to_name_addr: str | None = None) -> Leg:
        """A leg that will place an INVITE (call :meth:`invite`); ``from_name_addr``/``to_name_addr`` as in
        :func:`~.leg_messages.initial_invite`."""
        leg = cls(Role.UAC, config, ids, session)
        leg._invite = initial_invite(config, tag=leg._local_tag, cseq=ids.cseq, request_uri=request_uri,
                                     from_uri=from_uri, to_uri=to_uri, call_id=call_id,
                                     extra_headers=extra_headers, from_name_addr=from_name_addr,
                                     to_name_addr=to_name_addr)
        return leg

    @classmethod
    def uas(cls, config: LegConfig, ids: LegIds, session: LocalSession, invite: Request,
            transaction: ServerTransaction, now: float) -> Leg:
        """A leg for an INVITE we received; refused at once (TERMINATED, the response sent) when its
        offer cannot be answered (488, 400) or its session interval is below our Min-SE (422)."""
        leg = cls(Role.UAS, config, ids, session)
        leg._invite = invite
        leg._invite_txn = transaction
        try:
            leg._step("INVITE", invite, now)
        except LegProtocolError as exc:
            leg._respond_initial(exc.status, extra=exc.headers)
            leg._status = exc.status
            leg._step("refused", None, now)
        return leg

    # -- properties ----------------------------------------------------------------------------------------
    @property
    def call_id(self) -> str:
        assert self._invite is not None
        return self._invite.call_id

    @property
    def local_tag(self) -> str:
        return self._local_tag

    @property
    def media(self) -> NegotiatedMedia | None:
        """The media as last agreed."""
        return self.offer_answer.media

    @property
    def remote_held(self) -> bool:
        return self.offer_answer.remote_held

    @property
    def status(self) -> int | None:
        """The final response that ended the leg's INVITE, when one did (as :class:`Terminated` will say)."""
        return self._status

    @property
    def ending_cause(self) -> TerminationCause | None:
        """Why the leg is ending, from the moment it sends its BYE (or ends without one): the engine learns
        at once that the leg gave up by itself (no ACK, session expired, a refresh failed) without waiting
        for the BYE's response and :class:`Terminated`. None while the leg is not ending."""
        return self._cause if self.state in (_S.TERMINATING, _S.TERMINATED) else None

    # -- output --------------------------------------------------------------------------------------------
    def take_actions(self) -> list[Action]:
        out, self._actions = self._actions, []
        return out

    def take_events(self) -> list[LegEvent]:
        out, self._events = self._events, []
        return out

    def next_deadline(self) -> float | None:
        return min(self.timers.values()) if self.timers else None

    # -- input from the engine -----------------------------------------------------------------------------
    def invite(self, now: float) -> None:
        self._local("invite", None, now, Role.UAC)

    def ring(self, now: float, *, early_media: bool = False) -> None:
        """180 Ringing, or 183 Session Progress with our answer when ``early_media``."""
        self._local("ring", early_media, now, Role.UAS)

    def answer(self, now: float) -> None:
        self._local("answer", None, now, Role.UAS)

    def reject(self, status: int, now: float) -> None:
        if not 300 <= status <= 699:
            raise LegUsageError(self.state, f"reject({status})")
        self._local("reject", status, now, Role.UAS)

    def cancel(self, now: float, *, reason: str | None = None) -> None:
        """CANCEL our INVITE (now, or on the first provisional response), ``reason`` as in RFC 3326."""
        self._local("cancel", reason, now, Role.UAC)

    def authenticate(self, headers: Iterable[tuple[str, str]], now: float) -> None:
        """Send the INVITE again with credentials (``Authorization``/``Proxy-Authorization`` fields)
        after :class:`Challenged` (RFC 3261 §22.2: same Call-ID, From tag and offer, the next CSeq)."""
        self._local("authenticate", tuple(headers), now, Role.UAC)

    def hangup(self, now: float, *, status: int = 480) -> None:
        """End the leg whatever its state: CANCEL (UAC), a final ``status`` (unanswered UAS) or BYE; nothing
        when it is ending already."""
        state = self.state
        if state in ENDING:
            return
        if self.role is Role.UAC and state in UAC_OPEN:
            self._local("cancel", None, now)
        elif self.role is Role.UAS and state in UAS_OPEN:
            self._local("reject", status, now)
        else:
            self._local("hangup", None, now)

    def reoffer(self, direction: Direction, now: float) -> None:
        """Offer ``direction`` anew (SENDONLY holds the peer, SENDRECV resumes); sent when no other
        re-INVITE is in flight or backing off after a 491."""
        name = "reoffer later" if self._busy() else "reoffer"
        if (self.state, name) not in TABLE:
            raise LegUsageError(self.state, name)
        self.offer_answer.direction = direction
        self._local(name, None, now)

    def respond(self, transaction: ServerTransaction, request: Request, status: int, now: float) -> None:
        """Answer a :class:`RequestForApplication`."""
        self._respond_in_dialog(transaction, request, status)

    def handle_timer(self, now: float) -> None:
        for name, deadline in sorted(self.timers.items(), key=lambda item: (item[1], item[0])):
            if deadline <= now and self.timers.get(name) == deadline:
                del self.timers[name]
                self._step(f"timer {name}", name, now)

    # -- input from the wire -------------------------------------------------------------------------------
    def receive_request(self, request: Request, transaction: ServerTransaction, now: float) -> None:
        """A request in this leg's dialog (not ACK, not CANCEL)."""
        method = request.method
        if self.dialog is None:
            self._actions.append(SendResponse(transaction=transaction, response=dialog_response(
                request, 481, self._local_tag, None)))
            return
        status = self.dialog.receive_request(request)
        if status is not None:
            self._respond_in_dialog(transaction, request, status)
            return
        name = IN_DIALOG.get(method, "other")
        try:
            handled = self._step(name, (request, transaction), now)
        except LegProtocolError as exc:
            self._respond_in_dialog(transaction, request, exc.status, extra=exc.headers)
            return
        if not handled:
            # not in this state: the dialog is ending (481), or a request we cannot take now (500)
            gone = self.state in (_S.TERMINATING, _S.TERMINATED)
            self._respond_in_dialog(transaction, request, 481 if gone else 500)

    def receive_cancel(self, cancel: Request, transaction: ServerTransaction, now: float) -> None:
        """A CANCEL of our initial INVITE as UAS (the layer's CancelReceived)."""
        # the CANCEL is answered 200 first; the INVITE then gets 487 if it was still unanswered, else the
        # CANCEL has no effect (§9.2)
        self._actions.append(SendResponse(transaction=transaction, response=dialog_response(
            cancel, 200, self._local_tag, None)))
        self._step("CANCEL", None, now)

    def receive_ack(self, ack: Request, now: float) -> None:
        """An ACK for a 2xx of ours (the layer's AckReceived routed by dialog)."""
        if self._pending_2xx is not None and ack.cseq.number == self._pending_2xx.cseq.number:
            self._step("ACK", ack, now)

    def receive_response(self, response: Response, now: float) -> None:
        method, number = response.cseq.method, response.cseq.number
        kind = status_class(response.status)
        dialog = self.dialog
        if (dialog is not None and dialog.state is not DialogState.EARLY
                and (response.to.tag or "") != dialog.remote_tag):
            # another dialog: a 2xx from another fork of our INVITE (§13.2.2.4), or a response in it
            if method == "INVITE" and kind == "2xx" and self._invite is not None \
                    and number == self._invite.cseq.number:
                self._step("2xx other fork", response, now)
            return
        if method == "INVITE":
            if self._ack is not None and number == self._ack.cseq.number and kind == "2xx":
                self._step("2xx again", response, now)
            elif self._invite is not None and self.role is Role.UAC and number == self._invite.cseq.number:
                challenge = response.status in (401, 407)
                self._step("INVITE challenge" if challenge else f"INVITE {kind}", response, now)
            elif self._reinvite is not None and number == self._reinvite.cseq.number:
                status = response.status
                kind = ("491" if status == 491 else "gone" if status in (408, 481) else kind)
                self._step(f"reINVITE {kind}", response, now)
        elif method == "BYE" and number == self._bye_cseq and response.status >= 200:
            self._step("BYE final", response, now)

    def transaction_failed(self, request: Request, now: float) -> None:
        """The layer reported a timeout or a transport error for one of our requests."""
        number = request.cseq.number
        if request.method == "INVITE" and self._invite is not None and number == self._invite.cseq.number:
            self._step("INVITE timeout", None, now)
        elif request.method == "INVITE" and self._reinvite is not None and number == self._reinvite.cseq.number:
            self._step("reINVITE gone", None, now)
        elif request.method == "BYE" and number == self._bye_cseq:
            self._step("BYE final", None, now)

    # -- the table driver ----------------------------------------------------------------------------------
    def _local(self, name: str, data: object, now: float, role: Role | None = None) -> None:
        if (role is not None and role is not self.role) or not self._step(name, data, now):
            raise LegUsageError(self.state, f"{name} on a {self.role.value.upper()} leg")

    def _step(self, name: str, data: object, now: float) -> bool:
        row = TABLE.get((self.state, name))
        if row is None:
            return False
        state, handler = row
        handler(self, data, now)
        self._enter(state)
        if state is _S.CONFIRMED and self._owed and "glare" not in self.timers:
            self._step("owed reoffer", None, now)
        return True

    def _enter(self, state: LegState) -> None:
        self.state = state
        allowed = TIMERS.get(state, frozenset())
        for name in [n for n in self.timers if n not in allowed]:
            del self.timers[name]
        if state is _S.TERMINATED and self.dialog is not None:
            self.dialog.terminate()
        if state is _S.TERMINATED:
            self._events.append(Terminated(cause=self._cause, status=self._status))

    def _start(self, name: str, delay: float, now: float) -> None:
        self.timers[name] = now + delay

    def _busy(self) -> bool:
        return self.state is not _S.CONFIRMED or "glare" in self.timers

    # -- sending -------------------------------------------------------------------------------------------
    def _via(self, request: Request, branch: str | None = None) -> Request:
        config = self.config
        return add_top_via(request, config.transport, config.host, config.port, branch=branch)

    def _send_ack(self, cseq: int, body: bytes = b"") -> None:
        assert self.dialog is not None and self._invite is not None
        ack = self.dialog.create_ack(cseq, body, extra_headers=credentials_of(self._invite))
        self._ack = self._via(ack, self._ids.branch())
        self._actions.append(SendStateless(message=self._ack))

    def _send_bye(self, cause: TerminationCause) -> None:
        assert self.dialog is not None
        self._cause = cause
        bye = self.dialog.create_request("BYE")
        # the dialog ends on entering TERMINATED: until then a crossing BYE still gets its 200
        self._bye_cseq = bye.cseq.number
        self._actions.append(SendRequest(request=self._via(bye)))

    def _respond_initial(self, status: int, body: bytes = b"", extra: Iterable[tuple[str, str]] = ()) -> None:
        assert self._invite is not None and self._invite_txn is not None
        contact = self.config.contact if 101 <= status < 300 else None
        headers = list(extra)
        if 200 <= status < 300:
            headers.append(("Allow", ALLOW))
        response = dialog_response(self._invite, status, self._local_tag, contact, body=body,
                                   extra_headers=headers)
        if 101 <= status < 300 and self.dialog is None:
            self.dialog = Dialog.from_uas(self._invite, response, self.config.contact)
        self._actions.append(SendResponse(transaction=self._invite_txn, response=response))
        if 200 <= status < 300:
            self._pending_2xx = response

    def _respond_in_dialog(self, transaction: ServerTransaction, request: Request, status: int, body: bytes = b"",
                           extra: Iterable[tuple[str, str]] = ()) -> Response:
        if self.dialog is not None:
            response = self.dialog.create_response(request, status, body=body, extra_headers=extra)
        else:
            response = dialog_response(request, status, self._local_tag, None, extra_headers=extra)
        self._actions.append(SendResponse(transaction=transaction, response=response))
        return response

    # -- handlers: the UAC of the initial INVITE ------------------------------------------------------------
    def _h_invite(self, _: object, now: float) -> None:
        request = self._invite
        assert request is not None
        request.body = self.offer_answer.new_offer()
        request.headers.add("Content-Type", "application/sdp")
        request.invalidate()
        self._actions.append(SendRequest(request=self._via(request)))

    def _h_provisional(self, response: Response, now: float) -> None:
        assert self._invite is not None
        if response.to.tag and self.dialog is None and response.status > 100:
            self.dialog = Dialog.from_uac(self._invite, response)
        media = self.offer_answer.take_answer(response.body)
        if response.status > 100:
            self._events.append(Progress(status=response.status, reason=response.reason, media=media))

    def _h_provisional_cancel(self, response: Response, now: float) -> None:
        # §9.1: the CANCEL could not go before a provisional response
        self._actions.append(CancelInvite(reason=self._cancel_reason))

    def _h_challenged(self, response: Response, now: float) -> None:
        self._cause, self._status = _Cause.REJECTED, response.status  # if the engine gives up
        self._events.append(Challenged(response=response))

    def _h_authenticate(self, credentials: tuple[tuple[str, str], ...], now: float) -> None:
        assert self._invite is not None
        self._invite = with_credentials(self._invite, credentials)
        self._actions.append(SendRequest(request=self._via(self._invite)))

    def _h_answered(self, response: Response, now: float) -> None:
        self._confirm_uac(response)
        self._send_ack(response.cseq.number)
        self._start("accepted", 64 * self.config.t1, now)
        self.session_timer.from_response(response)
        self.session_timer.arm(self.timers, now)
        media = self.offer_answer.take_answer(response.body) or self.media
        self._events.append(Answered(media=media))

    def _confirm_uac(self, response: Response) -> None:
        assert self._invite is not None
        if self.dialog is None or self.dialog.remote_tag != (response.to.tag or ""):
            self.dialog = Dialog.from_uac(self._invite, response)
        else:
            self.dialog.receive_response(response)

    def _h_rejected(self, response: Response, now: float) -> None:
        self._cause, self._status = _Cause.REJECTED, response.status

    def _h_timed_out(self, _: object, now: float) -> None:
        self._cause = _Cause.TIMEOUT

    def _h_cancel_later(self, reason: str | None, now: float) -> None:
        self._cause = _Cause.CANCELLED
        self._cancel_reason = reason
        self._start("cancel", 64 * self.config.t1, now)

    def _h_cancel_now(self, reason: str | None, now: float) -> None:
        self._h_cancel_later(reason, now)
        self._actions.append(CancelInvite(reason=reason))

    def _h_cancel_final(self, response: Response | None, now: float) -> None:
        self._cause = _Cause.CANCELLED
        self._status = response.status if isinstance(response, Response) else None

    def _h_crossed_2xx(self, response: Response, now: float) -> None:
        # §15: the callee answered before our CANCEL reached it: confirm the dialog, then end it
        self._confirm_uac(response)
        self._send_ack(response.cseq.number)
        self._status = response.status
        self._send_bye(_Cause.CANCELLED)

    def _h_other_fork(self, response: Response, now: float) -> None:
        # §13.2.2.4: the INVITE forked and a second branch answered too: confirm that dialog, then end it
        assert self._invite is not None
        other = Dialog.from_uac(self._invite, response)
        ack = other.create_ack(response.cseq.number, extra_headers=credentials_of(self._invite))
        self._actions.append(SendStateless(message=self._via(ack, self._ids.branch())))
        self._actions.append(SendRequest(request=self._via(other.create_request("BYE"))))

    def _h_resend_ack(self, _: object, now: float) -> None:
        if self._ack is not None:
            self._actions.append(SendStateless(message=self._ack))

    # -- handlers: the UAS of the initial INVITE ------------------------------------------------------------
    def _h_incoming(self, invite: Request, now: float) -> None:
        self.session_timer.from_request(invite)
        if invite.body:
            self._events.extend(self.offer_answer.offer_taken(self.offer_answer.answer(invite.body)))

    def _h_refused(self, _: object, now: float) -> None:
        self._cause = _Cause.REJECTED

    def _h_ring(self, early_media: bool, now: float) -> None:
        if early_media and self.offer_answer.local_sdp:
            self._respond_initial(183, self.offer_answer.local_sdp)
        else:
            self._respond_initial(180)

    def _h_answer(self, _: object, now: float) -> None:
        assert self._invite is not None
        oa = self.offer_answer
        body = oa.local_sdp if self._invite.body else oa.new_offer()  # an INVITE without offer: ours in the 2xx
        self._respond_initial(200, body, self.session_timer.headers(answering=True))
        assert self.dialog is not None
        self.dialog.confirm()
        self._start_2xx(now)
        self._start("accepted", 64 * self.config.t1, now)
        self.session_timer.arm(self.timers, now)

    def _h_reject(self, status: int, now: float) -> None:
        self._respond_initial(status)
        self._cause, self._status = _Cause.REJECTED, status

    def _h_remote_cancel(self, _: object, now: float) -> None:
        self._respond_initial(487)
        self._cause, self._status = _Cause.REMOTE_CANCEL, 487

    def _start_2xx(self, now: float) -> None:
        self._start("ack", 64 * self.config.t1, now)
        if not self.config.reliable:
            self._interval = self.config.t1
            self._start("2xx", self._interval, now)

    def _h_retransmit_2xx(self, _: object, now: float) -> None:
        assert self._pending_2xx is not None
        self._actions.append(SendStateless(message=self._pending_2xx))
        self._interval = min(2 * self._interval, self.config.t2)  # §13.3.1.4: T1 doubling up to T2
        self._start("2xx", self._interval, now)

    def _h_acked(self, ack: Request, now: float) -> None:
        self._pending_2xx = None
        media = self.offer_answer.take_answer(ack.body)
        if self.state is _S.ACCEPTED or self.state is _S.BYE_AFTER_ACK:
            self._events.append(Answered(media=media or self.media))
        elif media is not None:
            self._events.append(MediaUpdated(media=media))

    def _h_acked_then_bye(self, ack: Request, now: float) -> None:
        self._h_acked(ack, now)
        self._send_bye(_Cause.LOCAL_BYE)

    def _h_no_ack(self, _: object, now: float) -> None:
        self._pending_2xx = None
        self._send_bye(_Cause.NO_ACK if self.state is not _S.BYE_AFTER_ACK else _Cause.LOCAL_BYE)

    # -- handlers: the established dialog ---------------------------------------------------------------
    def _h_set_up_over(self, _: object, now: float) -> None:
        # RFC 6026: 64*T1 after the 2xx the INVITE transactions are gone on both sides and the peer has
        # stopped re-sending its 2xx (§13.3.1.4): the ACK we re-sent for it (§13.2.2.4) and the whole INVITE
        # are no longer needed, only what the dialog reads of the INVITE (issue 9: memory per idle call)
        assert self._invite is not None
        if self._ack is not None and self._ack.cseq.number == self._invite.cseq.number:
            self._ack = None  # (the ACK of a later re-INVITE's 2xx stays: that 2xx may still come again)
        # the credentials only of an INVITE we sent: the ACKs we send repeat them, the caller's are not needed
        self._invite = invite_record(self._invite, credentials=self.role is Role.UAC)
        self._invite_txn = None
        self._events.append(SetUpOver(invite=self._invite))

    def _h_reoffer(self, _: object, now: float) -> None:
        self._send_reinvite(self.offer_answer.new_offer())

    def _h_refresh(self, _: object, now: float) -> None:
        self._send_reinvite(self.offer_answer.refresh_offer())

    def _send_reinvite(self, body: bytes) -> None:
        assert self.dialog is not None
        self._owed = False
        request = self.dialog.create_request("INVITE", body=body, content_type="application/sdp",
                                             extra_headers=self.session_timer.headers(answering=False))
        self._reinvite = self._via(request)
        self._actions.append(SendRequest(request=self._reinvite))

    def _h_owe(self, _: object, now: float) -> None:
        self._owed = True

    def _h_reoffer_answered(self, response: Response, now: float) -> None:
        assert self.dialog is not None
        self.dialog.receive_response(response)
        self._send_ack(response.cseq.number)
        self._reinvite = None
        self.session_timer.from_response(response)
        self.session_timer.arm(self.timers, now)  # any re-INVITE refreshes the session (RFC 4028 §10)
        before = self.media
        media = self.offer_answer.take_answer(response.body)
        image = self.offer_answer.take_image()
        if image is not None:
            self._events.append(T38Agreed(image=image))
        elif media is not None and media != before:  # a refresh that changed nothing is no news for the Call
            self._events.append(MediaUpdated(media=media))

    def _h_glare(self, _: object, now: float) -> None:
        # §14.1: the owner of the Call-ID (the UAC of the initial INVITE) waits 2.1-4 s, the other 0-2 s
        self._reinvite = None
        self.offer_answer.offer = None
        self._owed = True
        low, high = (2.1, 4.0) if self.role is Role.UAC else (0.0, 2.0)
        self._start("glare", self._ids.uniform(low, high), now)

    def _h_reoffer_refused(self, response: Response, now: float) -> None:
        self._reinvite = None
        self.offer_answer.offer = None
        self._events.append(ReofferFailed(status=response.status))
        if self.session_timer.we_refresh:
            self.session_timer.arm(self.timers, now)  # the session goes on: refresh again in half an interval

    def _h_reoffer_gone(self, response: Response | None, now: float) -> None:
        # §12.2.1.2 (408, 481) and RFC 4028 §10 (a refresh that times out): the session is over
        status = response.status if isinstance(response, Response) else None
        self._status = status
        self._send_bye(_Cause.DIALOG_GONE if status == 481 else _Cause.TIMEOUT)

    def _h_reinvited(self, data: tuple[Request, ServerTransaction], now: float) -> None:
        request, txn = data
        self.session_timer.from_request(request)
        if request.body:
            media = self.offer_answer.answer(request.body)
            body = self.offer_answer.local_sdp
        else:
            media = None
            body = self.offer_answer.new_offer()  # §14.2: offerless re-INVITE: our offer, the answer in the ACK
        response = self._respond_in_dialog(txn, request, 200, body, [*self.session_timer.headers(answering=True),
                                                                      ("Allow", ALLOW)])
        self._pending_2xx = response
        self._start_2xx(now)
        self.session_timer.arm(self.timers, now)
        if media is not None:
            self._events.extend(self.offer_answer.offer_taken(media))

    def _h_update(self, data: tuple[Request, ServerTransaction], now: float) -> None:
        request, txn = data
        if request.body and self.state is not _S.CONFIRMED:
            raise LegProtocolError("an offer is in progress", 491)  # RFC 3311 §5.2
        self.session_timer.from_request(request)
        media = self.offer_answer.answer(request.body) if request.body else None
        self._respond_in_dialog(txn, request, 200, self.offer_answer.local_sdp if media is not None else b"",
                                self.session_timer.headers(answering=True))
        self.session_timer.arm(self.timers, now)
        if media is not None:
            self._events.extend(self.offer_answer.offer_taken(media))

    def _h_491(self, data: tuple[Request, ServerTransaction], now: float) -> None:
        raise LegProtocolError("a re-INVITE is in progress", 491)  # §14.2: the state stays as it is

    def _h_options(self, data: tuple[Request, ServerTransaction], now: float) -> None:
        self._respond_in_dialog(data[1], data[0], 200, extra=[("Allow", ALLOW)])

    def _h_for_application(self, data: tuple[Request, ServerTransaction], now: float) -> None:
        self._events.append(RequestForApplication(request=data[0], transaction=data[1]))

    def _h_remote_bye(self, data: tuple[Request, ServerTransaction], now: float) -> None:
        self._respond_in_dialog(data[1], data[0], 200)
        self._pending_2xx = None
        if self.state is not _S.TERMINATING:
            self._cause = _Cause.REMOTE_BYE

    def _h_bye(self, _: object, now: float) -> None:
        self._send_bye(_Cause.LOCAL_BYE)

    def _h_expired(self, _: object, now: float) -> None:
        self._send_bye(_Cause.SESSION_EXPIRED)

    def _h_nothing(self, _: object, now: float) -> None:
        pass


def _rows(states: Iterable[LegState], name: str, target: LegState | None,
          handler: Callable[[Leg, Any, float], None]) -> dict[tuple[LegState, str], tuple[LegState, Any]]:
    """The same row for several states (``target`` None: each stays where it is)."""
    return {(state, name): (target or state, handler) for state in states}


_L = Leg

# (state, input) -> (next state, handler). EARLY is shared by both roles: a UAC gets the INVITE's
# responses and cancel there, a UAS ring/answer/reject and the peer's CANCEL; the engine's inputs are
# checked against the role first, and a peer cannot send the other role's messages to a leg.
TABLE: dict[tuple[LegState, str], tuple[LegState, Callable[[Leg, Any, float], None]]] = {
    # UAC: placing the INVITE (§13.2), cancelling it (§9.1), the CANCEL/2xx race (§15)
    (_S.IDLE, "invite"): (_S.CALLING, _L._h_invite),
    (_S.IDLE, "hangup"): (_S.TERMINATED, _L._h_nothing),
    **_rows(UAC_OPEN, "INVITE 1xx", _S.EARLY, _L._h_provisional),
    **_rows(UAC_OPEN, "INVITE 2xx", _S.CONFIRMED, _L._h_answered),
    **_rows(UAC_OPEN, "INVITE 3xx-6xx", _S.TERMINATED, _L._h_rejected),
    **_rows(UAC_OPEN, "INVITE timeout", _S.TERMINATED, _L._h_timed_out),
    # §22.2: the engine answers a 401/407 (the same dialog attempt, the next CSeq) or gives up
    **_rows(UAC_OPEN, "INVITE challenge", _S.CHALLENGED, _L._h_challenged),
    (_S.CHALLENGED, "authenticate"): (_S.CALLING, _L._h_authenticate),
    (_S.CHALLENGED, "hangup"): (_S.TERMINATED, _L._h_nothing),
    **_rows(CANCELLED, "INVITE challenge", _S.TERMINATED, _L._h_cancel_final),
    (_S.CALLING, "cancel"): (_S.CANCEL_PENDING, _L._h_cancel_later),
    (_S.CANCEL_PENDING, "INVITE 1xx"): (_S.CANCELLING, _L._h_provisional_cancel),
    **_rows(CANCELLED, "INVITE 2xx", _S.TERMINATING, _L._h_crossed_2xx),
    **_rows(CANCELLED, "INVITE 3xx-6xx", _S.TERMINATED, _L._h_cancel_final),
    **_rows(CANCELLED, "INVITE timeout", _S.TERMINATED, _L._h_cancel_final),
    **_rows(CANCELLED, "timer cancel", _S.TERMINATED, _L._h_cancel_final),
    (_S.EARLY, "cancel"): (_S.CANCELLING, _L._h_cancel_now),
    # UAS: the INVITE received (§13.3), ringing, answering, refusing, the peer's CANCEL (§9.2)
    (_S.IDLE, "INVITE"): (_S.INCOMING, _L._h_incoming),
    (_S.IDLE, "refused"): (_S.TERMINATED, _L._h_refused),
    **_rows(UAS_OPEN, "ring", _S.EARLY, _L._h_ring),
    **_rows(UAS_OPEN, "answer", _S.ACCEPTED, _L._h_answer),
    **_rows(UAS_OPEN, "reject", _S.TERMINATED, _L._h_reject),
    **_rows(UAS_OPEN, "CANCEL", _S.TERMINATED, _L._h_remote_cancel),
    **_rows(WAIT_ACK, "timer 2xx", None, _L._h_retransmit_2xx),
    **_rows(WAIT_ACK, "timer ack", _S.TERMINATING, _L._h_no_ack),
    (_S.ACCEPTED, "ACK"): (_S.CONFIRMED, _L._h_acked),
    (_S.ACCEPTED, "hangup"): (_S.BYE_AFTER_ACK, _L._h_nothing),  # §15: no BYE before the ACK
    (_S.BYE_AFTER_ACK, "ACK"): (_S.TERMINATING, _L._h_acked_then_bye),
    **_rows(WAIT_ACK, "reINVITE", None, _L._h_491),
    **_rows(WAIT_ACK, "BYE", _S.TERMINATED, _L._h_remote_bye),
    # the established dialog: re-INVITEs both ways (§14), glare (§14.1, §14.2), UPDATE (RFC 3311)
    (_S.CONFIRMED, "reoffer"): (_S.REINVITING, _L._h_reoffer),
    (_S.CONFIRMED, "owed reoffer"): (_S.REINVITING, _L._h_reoffer),
    (_S.CONFIRMED, "timer glare"): (_S.REINVITING, _L._h_reoffer),
    (_S.CONFIRMED, "timer refresh"): (_S.REINVITING, _L._h_refresh),
    **_rows((*LIVE, _S.ACCEPTED), "reoffer later", None, _L._h_owe),
    **_rows((_S.REINVITING, _S.REINVITED), "timer refresh", None, _L._h_nothing),  # one is in flight
    (_S.REINVITED, "timer glare"): (_S.REINVITED, _L._h_owe),
    (_S.REINVITING, "reINVITE 2xx"): (_S.CONFIRMED, _L._h_reoffer_answered),
    (_S.REINVITING, "reINVITE 491"): (_S.CONFIRMED, _L._h_glare),
    (_S.REINVITING, "reINVITE 3xx-6xx"): (_S.CONFIRMED, _L._h_reoffer_refused),
    (_S.REINVITING, "reINVITE gone"): (_S.TERMINATING, _L._h_reoffer_gone),
    (_S.CONFIRMED, "reINVITE"): (_S.REINVITED, _L._h_reinvited),
    (_S.REINVITING, "reINVITE"): (_S.REINVITING, _L._h_491),
    (_S.REINVITED, "reINVITE"): (_S.REINVITED, _L._h_491),  # its offer/answer is not done until the ACK
    (_S.REINVITED, "ACK"): (_S.CONFIRMED, _L._h_acked),
    (_S.REINVITED, "timer 2xx"): (_S.REINVITED, _L._h_retransmit_2xx),
    (_S.REINVITED, "timer ack"): (_S.TERMINATING, _L._h_no_ack),
    **_rows(LIVE, "UPDATE", None, _L._h_update),
    **_rows(LIVE, "OPTIONS", None, _L._h_options),
    **_rows(LIVE, "other", None, _L._h_for_application),
    # §13.2.2.4: our ACK was lost (in REINVITED the peer has had it: it sent a re-INVITE after it)
    **_rows((_S.CONFIRMED, _S.REINVITING, _S.TERMINATING), "2xx again", None, _L._h_resend_ack),
    **_rows((*LIVE, _S.TERMINATING), "2xx other fork", None, _L._h_other_fork),
    **_rows(LIVE, "timer accepted", None, _L._h_set_up_over),
    # ending: BYE either way (§15), session expiry (RFC 4028 §10)
    **_rows(LIVE, "hangup", _S.TERMINATING, _L._h_bye),
    **_rows(LIVE, "timer expiry", _S.TERMINATING, _L._h_expired),
    **_rows((*LIVE, _S.TERMINATING), "BYE", _S.TERMINATED, _L._h_remote_bye),
    (_S.TERMINATING, "BYE final"): (_S.TERMINATED, _L._h_nothing),
}
