"""telephony.leg: a UAC leg and a UAS leg driven in pairs, each over a real TransactionLayer, through a fake
network (FIFO, zero latency, loss injected by message) and a fake clock stepped deadline by deadline.

The wire log records every datagram as ``"<time> <sender> <method or status> [<CSeq method>]"``, with
``(lost)`` for the dropped ones. T1 = 0.5 and T2 = 4 s, so every instant is an exact binary fraction
and is asserted with ==. The last test checks that these scenarios went through every row of the table.
"""

from __future__ import annotations

import ast
import dataclasses
import itertools
from collections import deque
from collections.abc import Callable
from pathlib import Path

import pytest

from zvonok.sip.dialog import add_top_via
from zvonok.sip.message import Request, Response, make_response, parse_datagram
from zvonok.sip.peer import Peer
from zvonok.sip.sdp import Direction, parse_sdp
from zvonok.sip.sdp_offer_answer import PCMA, Codec, LocalSession
from zvonok.sip.transaction import (
    AckReceived,
    CancelReceived,
    ClientTransaction,
    RequestReceived,
    ResponseReceived,
    TransactionLayer,
    TransactionTimeout,
    TransportError,
)
from zvonok.telephony import leg as leg_module
from zvonok.telephony import leg_events, leg_media, leg_messages, leg_session_timer, leg_states
from zvonok.telephony.leg import TABLE, TIMERS, Leg, LegState
from zvonok.telephony.leg_events import (
    Answered,
    CancelInvite,
    Challenged,
    Held,
    LegConfig,
    LegEvent,
    LegIds,
    LegUsageError,
    MediaUpdated,
    OfferReceived,
    Progress,
    ReofferFailed,
    RequestForApplication,
    Resumed,
    SendRequest,
    SendResponse,
    SetUpOver,
    Terminated,
    TerminationCause,
)

S = LegState
C = TerminationCause
UAC_PEER = Peer(transport="udp", host="192.0.2.1", port=5060)
UAS_PEER = Peer(transport="udp", host="192.0.2.2", port=5060)
RETRANSMITS = [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]  # T1 doubling to T2 (§13.3.1.4)

VISITED: set[tuple[LegState, str]] = set()  # the table rows the scenarios went through


class TracedLeg(Leg):
    def _step(self, name: str, data: object, now: float) -> bool:
        if (self.state, name) in TABLE:
            VISITED.add((self.state, name))
        return super()._step(name, data, now)


class Draws:
    """The injected ``uniform``: records the ranges asked for and returns the high end (or a set value)."""

    def __init__(self) -> None:
        self.asked: list[tuple[float, float]] = []
        self.fraction = 1.0

    def __call__(self, low: float, high: float) -> float:
        self.asked.append((low, high))
        return low + (high - low) * self.fraction


class Side:
    """One UA: a TransactionLayer and (at most) one leg, wired as the engine will wire them."""

    def __init__(self, net: Net, name: str, own: Peer, other: Peer, config: LegConfig, *,
                 trying_delay: float | None) -> None:
        self.net = net
        self.name = name
        self.own = own
        self.other = other
        counter = itertools.count(1)
        self.layer = TransactionLayer(branch_factory=lambda: f"{name}{next(counter)}", trying_delay=trying_delay)
        self.config = config
        tags = itertools.count(1)
        branches = itertools.count(1)
        self.draws = Draws()
        self.ids = LegIds(tag=lambda: f"{name}-tag{next(tags)}", branch=lambda: f"z9hG4bK{name}-ack{next(branches)}",
                          uniform=self.draws, cseq=101)
        self.session = LocalSession(sess_id=1000 if name == "uac" else 2000)
        self.leg: Leg | None = None
        self.invite_txn: ClientTransaction | None = None
        self.events: list[LegEvent] = []
        self.sent: list[Request | Response] = []  # what the leg asked to send, in order
        self.app_requests: list[RequestForApplication] = []
        self.cancel_reasons: list[str | None] = []

    @property
    def the_leg(self) -> Leg:
        assert self.leg is not None
        return self.leg

    def drive(self, now: float) -> None:
        leg = self.leg
        if leg is not None:
            for action in leg.take_actions():
                if isinstance(action, SendRequest):
                    self.sent.append(action.request)
                    txn = self.layer.send_request(action.request, self.other, now)
                    if action.request.method == "INVITE" and not action.request.to.tag:
                        self.invite_txn = txn  # the initial INVITE, or its retry with credentials
                elif isinstance(action, CancelInvite):
                    assert self.invite_txn is not None
                    cancel = self.layer.cancel_request(self.invite_txn, now)
                    self.cancel_reasons.append(action.reason)
                    assert cancel.request.method == "CANCEL"
                elif isinstance(action, SendResponse):
                    self.sent.append(action.response)
                    self.layer.respond(action.transaction, action.response, now)
                else:
                    self.sent.append(action.message)
                    self.layer.send_stateless(action.message, self.other)
            for event in leg.take_events():
                self.events.append(event)
                if isinstance(event, RequestForApplication):
                    self.app_requests.append(event)
        for out in self.layer.data_to_send():
            self.net.transmit(self, out.data)

    def deliver(self, data: bytes, now: float) -> None:
        self.dispatch(self.layer.receive(parse_datagram(data), self.other, now), now)

    def dispatch(self, events: list[object], now: float) -> None:
        for event in events:
            leg = self.leg
            if isinstance(event, RequestReceived):
                request = event.request
                if request.method == "INVITE" and not request.to.tag and (leg is None or leg.state is S.TERMINATED):
                    self.leg = TracedLeg.uas(self.config, self.ids, self.session, request, event.transaction, now)
                elif leg is not None and request.to.tag == leg.local_tag:  # the engine's dialog look-up
                    leg.receive_request(request, event.transaction, now)
                else:  # the engine knows no such dialog
                    self.layer.respond(event.transaction, _response(request, 481), now)
            elif isinstance(event, CancelReceived) and leg is not None:
                leg.receive_cancel(event.request, event.transaction, now)
            elif isinstance(event, AckReceived) and leg is not None:
                leg.receive_ack(event.request, now)
            elif isinstance(event, ResponseReceived) and leg is not None:
                leg.receive_response(event.response, now)
            elif isinstance(event, (TransactionTimeout, TransportError)) and leg is not None:
                if isinstance(event.transaction, ClientTransaction):
                    leg.transaction_failed(event.transaction.request, now)
        self.drive(now)

    def deadline(self) -> float | None:
        found = [d for d in (self.layer.get_timer(), self.leg.next_deadline() if self.leg else None) if d is not None]
        return min(found) if found else None

    def fire(self, now: float) -> None:
        self.dispatch(list(self.layer.handle_timer(now)), now)
        if self.leg is not None:
            self.leg.handle_timer(now)
        self.drive(now)

    def only(self, kind: type[LegEvent]) -> list[LegEvent]:
        return [e for e in self.events if isinstance(e, kind)]


def _response(request: Request, status: int) -> Response:
    return make_response(request, status, to_tag="gone")


def _label(message: Request | Response) -> str:
    if isinstance(message, Request):
        return message.method
    return f"{message.status} {message.cseq.method}"


class Net:
    def __init__(self, *, uac: LegConfig | None = None, uas: LegConfig | None = None,
                 trying_delay: float | None = None) -> None:
        self.now = 0.0
        self.log: list[str] = []
        self.queue: deque[tuple[Side, bytes]] = deque()
        self.losses: list[list[object]] = []  # [sender name, label, count or None for always, after time]
        self.uac = Side(self, "uac", UAC_PEER, UAS_PEER, uac or config("192.0.2.1", 4000), trying_delay=None)
        self.uas = Side(self, "uas", UAS_PEER, UAC_PEER, uas or config("192.0.2.2", 6000), trying_delay=trying_delay)

    def lose(self, sender: str, label: str, times: int | None = 1) -> None:
        self.losses.append([sender, label, times])

    def transmit(self, sender: Side, data: bytes) -> None:
        label = _label(parse_datagram(data))
        entry = f"{self.now:g} {sender.name} {label}"
        for loss in self.losses:
            if loss[0] == sender.name and loss[1] == label and loss[2] != 0:
                if isinstance(loss[2], int):
                    loss[2] -= 1
                self.log.append(entry + " (lost)")
                return
        self.log.append(entry)
        self.queue.append((self.uas if sender is self.uac else self.uac, data))

    def pump(self) -> None:
        while self.queue:
            side, data = self.queue.popleft()
            side.deliver(data, self.now)

    def act(self, side: Side, do: Callable[[Leg, float], None], *, pump: bool = True) -> None:
        do(side.the_leg, self.now)
        side.drive(self.now)
        if pump:
            self.pump()

    def advance(self, until: float) -> None:
        """Step the clock to each deadline of either side up to ``until``, firing as an adapter would."""
        while True:
            deadlines = [d for d in (self.uac.deadline(), self.uas.deadline()) if d is not None]
            if not deadlines or min(deadlines) > until:
                break
            self.now = min(deadlines)
            for side in (self.uac, self.uas):
                if (d := side.deadline()) is not None and d <= self.now:
                    side.fire(self.now)
            self.pump()
        self.now = until

    def call(self) -> None:
        """The UAC places its INVITE."""
        self.uac.leg = TracedLeg.uac(self.uac.config, self.uac.ids, self.uac.session,
                                     request_uri="sip:bob@192.0.2.2", from_uri="sip:alice@example.com",
                                     to_uri="sip:bob@example.com", call_id="call-1@192.0.2.1")
        self.act(self.uac, Leg.invite)

    def established(self) -> None:
        self.call()
        self.act(self.uas, lambda leg, now: leg.ring(now))
        self.act(self.uas, Leg.answer)
        assert self.uac.the_leg.state is S.CONFIRMED and self.uas.the_leg.state is S.CONFIRMED
        self.log.clear()
        self.uac.events.clear()
        self.uas.events.clear()


def config(host: str, media_port: int, **changes: object) -> LegConfig:
    base = LegConfig(transport="udp", host=host, port=5060, contact=f"<sip:zvonok@{host}:5060>",
                     media_host=host, media_port=media_port)
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def terminated(side: Side) -> Terminated:
    [event] = side.only(Terminated)
    assert isinstance(event, Terminated)
    return event


def both_done(net: Net) -> None:
    assert net.uac.the_leg.state is S.TERMINATED and net.uas.the_leg.state is S.TERMINATED
    assert net.uac.the_leg.next_deadline() is None and net.uas.the_leg.next_deadline() is None


# -- set-up and tear-down --------------------------------------------------------------------------------

def test_a_call_rings_is_answered_acked_and_hung_up() -> None:
    net = Net()
    net.call()
    assert net.uac.the_leg.state is S.CALLING and net.uas.the_leg.state is S.INCOMING
    [offer] = net.uas.only(OfferReceived)
    assert isinstance(offer, OfferReceived) and offer.media.remote_port == 4000 and offer.media.codec_name == "PCMU"
    net.act(net.uas, lambda leg, now: leg.ring(now))
    assert net.uac.the_leg.state is S.EARLY and net.uas.the_leg.state is S.EARLY
    assert net.uac.events == [Progress(status=180, reason="Ringing", media=None)]
    net.act(net.uas, Leg.answer)
    assert net.log == ["0 uac INVITE", "0 uas 180 INVITE", "0 uas 200 INVITE", "0 uac ACK"]
    [answered] = net.uac.only(Answered)
    assert isinstance(answered, Answered) and answered.media is not None and answered.media.remote_port == 6000
    assert net.uas.only(Answered) == [Answered(media=offer.media)]
    uac, uas = net.uac.the_leg, net.uas.the_leg
    assert uac.state is S.CONFIRMED and uas.state is S.CONFIRMED
    assert uac.dialog is not None and uas.dialog is not None
    assert uac.dialog.key == (uas.dialog.call_id, uas.dialog.remote_tag, uas.dialog.local_tag)
    # no session timer asked, the ACK came: only the end of the set-up is ahead (64*T1, RFC 6026)
    assert uac.timers == {"accepted": 32.0} and uas.timers == {"accepted": 32.0}
    net.act(net.uac, Leg.hangup)
    assert net.log[-2:] == ["0 uac BYE", "0 uas 200 BYE"]
    assert terminated(net.uac) == Terminated(cause=C.LOCAL_BYE)
    assert terminated(net.uas) == Terminated(cause=C.REMOTE_BYE)
    both_done(net)
    net.uac.the_leg.hangup(net.now)  # hanging up an ended leg is harmless
    assert net.uac.the_leg.take_actions() == []


def test_the_invite_and_the_answer_carry_offer_answer_and_headers() -> None:
    net = Net()
    net.established()
    invite, ok = net.uac.sent[0], net.uas.sent[-1]
    assert isinstance(invite, Request) and isinstance(ok, Response)
    assert invite.headers.get("cseq") == "101 INVITE" and invite.from_.tag == "uac-tag1"
    assert invite.top_via.branch == "z9hG4bKuac1"  # added by the layer
    assert b"m=audio 4000 RTP/AVP 0 8 101" in invite.body
    assert ok.to.tag == "uas-tag1" and ok.headers.get("contact") == "<sip:zvonok@192.0.2.2:5060>"
    assert b"m=audio 6000 RTP/AVP 0 101" in ok.body
    ack = net.uac.sent[-1]
    assert isinstance(ack, Request) and ack.method == "ACK" and ack.top_via.branch == "z9hG4bKuac-ack1"
    assert ack.headers.get("cseq") == "101 ACK"


def test_the_caller_may_write_from_and_to_itself() -> None:
    """A display name and a user part escaped as it came (a trunk's caller) go out as written."""
    leg = Leg.uac(config("192.0.2.1", 4000), LegIds(tag=lambda: "t1", branch=lambda: "b", uniform=lambda a, b: a),
                  LocalSession(sess_id=1), request_uri="sip:bob@192.0.2.2", from_uri="sip:alice@example.com",
                  to_uri="sip:bob@example.com", call_id="c1", from_name_addr='"Alice" <sip:a%3Bb@example.com>',
                  to_name_addr="<sip:102@example.com>", extra_headers=[("User-Agent", "Zvonok")])
    leg.invite(0.0)
    [action] = leg.take_actions()
    assert isinstance(action, SendRequest)
    headers = action.request.headers
    assert headers.get("from") == '"Alice" <sip:a%3Bb@example.com>;tag=t1'
    assert headers.get("to") == "<sip:102@example.com>" and headers.get("user-agent") == "Zvonok"


def test_early_media_answer_in_183_then_answered_from_early() -> None:
    net = Net()
    net.call()
    net.act(net.uas, lambda leg, now: leg.ring(now, early_media=True))
    net.act(net.uas, lambda leg, now: leg.ring(now))  # a 180 after the 183: still early
    [first, second] = net.uac.only(Progress)
    assert isinstance(first, Progress) and first.status == 183 and first.media is not None
    assert first.media.remote_port == 6000 and isinstance(second, Progress) and second.media is None
    net.act(net.uas, Leg.answer)
    assert net.log == ["0 uac INVITE", "0 uas 183 INVITE", "0 uas 180 INVITE", "0 uas 200 INVITE", "0 uac ACK"]
    assert net.uac.only(Answered) == [Answered(media=first.media)]


def test_answer_without_ringing_and_a_100_trying_first() -> None:
    net = Net(trying_delay=0.25)
    net.call()
    net.advance(0.25)
    assert net.log == ["0 uac INVITE", "0.25 uas 100 INVITE"]
    assert net.uac.the_leg.state is S.EARLY and net.uac.events == []  # a 100 is no progress for the Call
    net.act(net.uas, Leg.answer)
    assert net.uac.the_leg.state is S.CONFIRMED and net.uas.the_leg.state is S.CONFIRMED


@pytest.mark.parametrize("how", ["reject", "hangup"])
def test_the_uas_refuses_the_call(how: str) -> None:
    net = Net()
    net.call()
    if how == "reject":
        net.act(net.uas, lambda leg, now: leg.ring(now))
        net.act(net.uas, lambda leg, now: leg.reject(486, now))
        status = 486
    else:
        net.act(net.uas, lambda leg, now: leg.hangup(now))  # an unanswered UAS hangs up with 480
        status = 480
    assert net.log[-2:] == [f"0 uas {status} INVITE", "0 uac ACK"]  # the ACK of the INVITE transaction
    assert terminated(net.uac) == Terminated(cause=C.REJECTED, status=status)
    assert terminated(net.uas) == Terminated(cause=C.REJECTED, status=status)
    both_done(net)


def test_an_offer_without_a_common_codec_is_refused_with_488() -> None:
    g722 = Codec(name="G722", clock_rate=8000, payload_type=9)
    net = Net(uac=config("192.0.2.1", 4000, codecs=(g722,)))
    net.call()
    assert net.log == ["0 uac INVITE", "0 uas 488 INVITE", "0 uac ACK"]
    assert terminated(net.uas) == Terminated(cause=C.REJECTED, status=488)
    assert terminated(net.uac) == Terminated(cause=C.REJECTED, status=488)


def test_the_invite_times_out_when_nothing_answers() -> None:
    net = Net()
    net.lose("uac", "INVITE", times=None)
    net.call()
    net.advance(40.0)
    assert [line for line in net.log] == [f"{t:g} uac INVITE (lost)" for t in (0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5)]
    assert terminated(net.uac) == Terminated(cause=C.TIMEOUT)  # Timer B at 64*T1 = 32


# -- CANCEL (§9) and the CANCEL/200 race (§15) ---------------------------------------------------------

def test_cancel_after_ringing() -> None:
    net = Net()
    net.call()
    net.act(net.uas, lambda leg, now: leg.ring(now))
    net.act(net.uac, Leg.cancel)
    assert net.log == ["0 uac INVITE", "0 uas 180 INVITE", "0 uac CANCEL", "0 uas 200 CANCEL", "0 uas 487 INVITE",
                       "0 uac ACK"]
    assert terminated(net.uac) == Terminated(cause=C.CANCELLED, status=487)
    assert terminated(net.uas) == Terminated(cause=C.REMOTE_CANCEL, status=487)
    both_done(net)


def test_a_cancel_waits_for_the_first_provisional_response() -> None:
    net = Net(trying_delay=0.25)
    net.call()
    net.act(net.uac, lambda leg, now: leg.hangup(now))  # hanging up an unanswered UAC is a CANCEL
    assert net.uac.the_leg.state is S.CANCEL_PENDING and net.log == ["0 uac INVITE"]
    assert net.uac.the_leg.next_deadline() == 32.0  # §9.1: given up 64*T1 after
    net.advance(0.25)
    assert net.log == ["0 uac INVITE", "0.25 uas 100 INVITE", "0.25 uac CANCEL", "0.25 uas 200 CANCEL",
                       "0.25 uas 487 INVITE", "0.25 uac ACK"]
    assert terminated(net.uac) == Terminated(cause=C.CANCELLED, status=487)


def test_a_200_crossing_our_cancel_is_acked_then_byed() -> None:
    net = Net()
    net.call()
    net.act(net.uas, lambda leg, now: leg.ring(now))
    net.act(net.uac, Leg.cancel, pump=False)  # the CANCEL is on the wire ...
    net.act(net.uas, Leg.answer, pump=False)  # ... while the callee answers
    net.pump()
    assert net.log == ["0 uac INVITE", "0 uas 180 INVITE", "0 uac CANCEL", "0 uas 200 INVITE",
                       "0 uas 200 CANCEL",  # too late: the CANCEL has no effect (§9.2)
                       "0 uac ACK", "0 uac BYE", "0 uas 200 BYE"]
    assert net.uac.only(Answered) == []  # the Call never sees this leg answered
    assert terminated(net.uac) == Terminated(cause=C.CANCELLED, status=200)
    assert terminated(net.uas) == Terminated(cause=C.REMOTE_BYE)
    both_done(net)


def test_a_200_before_any_provisional_after_our_cancel_is_acked_then_byed() -> None:
    net = Net()
    net.call()
    net.act(net.uac, Leg.cancel)
    net.act(net.uas, Leg.answer)
    assert net.log == ["0 uac INVITE", "0 uas 200 INVITE", "0 uac ACK", "0 uac BYE", "0 uas 200 BYE"]
    assert terminated(net.uac) == Terminated(cause=C.CANCELLED, status=200)
    both_done(net)


def test_a_cancel_without_a_final_response_is_given_up_after_64_t1() -> None:
    net = Net()
    net.call()
    net.act(net.uas, lambda leg, now: leg.ring(now))
    net.lose("uas", "200 CANCEL", times=None)
    net.lose("uas", "487 INVITE", times=None)
    net.act(net.uac, Leg.cancel)
    assert net.uac.the_leg.next_deadline() == 32.0
    net.advance(31.9)
    assert net.uac.the_leg.state is S.CANCELLING
    net.advance(40.0)
    assert terminated(net.uac) == Terminated(cause=C.CANCELLED)
    assert net.uac.the_leg.state is S.TERMINATED


def test_an_invite_lost_after_our_cancel_times_out_as_cancelled() -> None:
    net = Net()
    net.lose("uac", "INVITE", times=None)
    net.call()
    net.act(net.uac, Leg.cancel)
    net.advance(40.0)
    assert "uac CANCEL" not in " ".join(net.log)  # no provisional ever came: no CANCEL was sent
    assert terminated(net.uac) == Terminated(cause=C.CANCELLED)


def test_a_cancel_pending_leg_gives_up_at_its_own_deadline() -> None:
    net = Net()
    net.call()
    net.act(net.uac, Leg.cancel)
    net.uac.layer = TransactionLayer(branch_factory=lambda: "x")  # the INVITE transaction is gone (no Timer B)
    net.advance(40.0)
    assert terminated(net.uac) == Terminated(cause=C.CANCELLED)


# -- the 2xx until its ACK (§13.3.1.4) -----------------------------------------------------------------

def test_a_lost_200_is_retransmitted_t1_doubling_until_the_ack() -> None:
    net = Net()
    net.call()
    net.act(net.uas, lambda leg, now: leg.ring(now))
    net.lose("uas", "200 INVITE", times=3)
    net.act(net.uas, Leg.answer)
    assert net.uas.the_leg.state is S.ACCEPTED and net.uas.the_leg.timers == {"2xx": 0.5, "ack": 32.0,
                                                                                        "accepted": 32.0}
    net.advance(10.0)
    assert net.log[2:] == ["0 uas 200 INVITE (lost)", "0.5 uas 200 INVITE (lost)", "1.5 uas 200 INVITE (lost)",
                           "3.5 uas 200 INVITE", "3.5 uac ACK"]
    assert net.uas.the_leg.state is S.CONFIRMED and net.uas.the_leg.timers == {"accepted": 32.0}
    assert len(net.uas.only(Answered)) == 1
    retransmitted = [m for m in net.uas.sent if isinstance(m, Response) and m.status == 200]
    assert len({m.to_bytes() for m in retransmitted}) == 1  # the same 2xx each time


def test_a_lost_ack_is_sent_again_for_the_retransmitted_200() -> None:
    net = Net()
    net.call()
    net.lose("uac", "ACK", times=2)
    net.act(net.uas, Leg.answer)
    net.advance(10.0)
    assert net.log[1:] == ["0 uas 200 INVITE", "0 uac ACK (lost)", "0.5 uas 200 INVITE", "0.5 uac ACK (lost)",
                           "1.5 uas 200 INVITE", "1.5 uac ACK"]
    acks = [m for m in net.uac.sent if isinstance(m, Request) and m.method == "ACK"]
    assert len(acks) == 3 and len({a.to_bytes() for a in acks}) == 1  # the same ACK, branch and all
    assert net.uac.only(Answered) != [] and len(net.uac.only(Answered)) == 1
    assert net.uas.the_leg.state is S.CONFIRMED


def test_no_ack_within_64_t1_ends_the_session_with_a_bye() -> None:
    net = Net()
    net.call()
    net.lose("uac", "ACK", times=None)
    net.act(net.uas, Leg.answer)
    net.advance(40.0)
    assert [line for line in net.log if "uas 200 INVITE" in line] == (
        ["0 uas 200 INVITE"] + [f"{t:g} uas 200 INVITE" for t in RETRANSMITS])
    assert net.log[-2:] == ["32 uas BYE", "32 uac 200 BYE"]
    assert terminated(net.uas) == Terminated(cause=C.NO_ACK)
    assert terminated(net.uac) == Terminated(cause=C.REMOTE_BYE)
    both_done(net)


def test_the_leg_says_why_it_ends_as_soon_as_its_own_bye_is_out() -> None:
    """The engine learns that a leg gave up by itself (no ACK here) when the BYE goes, not when it is answered."""
    net = Net()
    net.call()
    net.lose("uac", "ACK", times=None)
    net.lose("uas", "BYE", times=None)
    net.act(net.uas, Leg.answer)
    uas = net.uas.the_leg
    assert uas.ending_cause is None and uas.status is None
    net.advance(32.0)
    assert uas.state is S.TERMINATING and uas.ending_cause is C.NO_ACK
    assert net.uas.only(Terminated) == []  # the BYE has no response yet


def test_a_refused_invite_leaves_its_status_on_the_leg() -> None:
    g722 = Codec(name="G722", clock_rate=8000, payload_type=9)
    net = Net(uac=config("192.0.2.1", 4000, codecs=(g722,)))
    net.call()
    uas = net.uas.the_leg
    assert uas.state is S.TERMINATED and uas.status == 488 and uas.ending_cause is C.REJECTED


def test_no_retransmission_over_a_reliable_transport() -> None:
    net = Net(uas=config("192.0.2.2", 6000, transport="tcp"))
    net.call()
    net.lose("uac", "ACK", times=None)
    net.act(net.uas, Leg.answer)
    assert net.uas.the_leg.timers == {"ack": 32.0, "accepted": 32.0}
    net.advance(40.0)
    assert net.log[-2:] == ["32 uas BYE", "32 uac 200 BYE"]


@pytest.mark.parametrize("acks_lost", [1, None])
def test_a_bye_we_want_before_the_ack_waits_for_it(acks_lost: int | None) -> None:
    net = Net()
    net.call()
    net.lose("uac", "ACK", times=acks_lost)
    net.act(net.uas, Leg.answer)
    net.act(net.uas, Leg.hangup)
    assert net.uas.the_leg.state is S.BYE_AFTER_ACK and "BYE" not in " ".join(net.log)  # §15
    net.act(net.uas, Leg.hangup)  # twice is harmless
    net.advance(40.0)
    at = "0.5" if acks_lost == 1 else "32"
    assert net.log[-2:] == [f"{at} uas BYE", f"{at} uac 200 BYE"]
    assert terminated(net.uas) == Terminated(cause=C.LOCAL_BYE)
    both_done(net)


def test_a_bye_from_the_caller_before_its_ack_arrived() -> None:
    net = Net()
    net.call()
    net.lose("uac", "ACK")
    net.act(net.uas, Leg.answer)
    net.act(net.uac, Leg.hangup)
    assert net.log[-3:] == ["0 uac ACK (lost)", "0 uac BYE", "0 uas 200 BYE"]
    assert terminated(net.uas) == Terminated(cause=C.REMOTE_BYE)
    both_done(net)


# -- re-INVITE both ways, hold and resume (RFC 3264 §8.4) ----------------------------------------------

@pytest.mark.parametrize("holder", ["uac", "uas"])
def test_hold_and_resume_by_re_invite(holder: str) -> None:
    net = Net()
    net.established()
    side, peer = (net.uac, net.uas) if holder == "uac" else (net.uas, net.uac)
    net.act(side, lambda leg, now: leg.reoffer(Direction.SENDONLY, now))
    assert net.log == [f"0 {side.name} INVITE", f"0 {peer.name} 200 INVITE", f"0 {side.name} ACK"]
    [updated] = side.only(MediaUpdated)
    assert isinstance(updated, MediaUpdated) and updated.media.direction is Direction.SENDONLY
    [offered] = peer.only(OfferReceived)
    assert isinstance(offered, OfferReceived) and offered.media.direction is Direction.RECVONLY
    assert peer.only(Held) == [Held()] and peer.the_leg.remote_held
    reinvite = side.sent[-2]
    assert isinstance(reinvite, Request) and b"a=sendonly" in reinvite.body
    assert reinvite.cseq.number == (102 if holder == "uac" else 1)
    net.act(side, lambda leg, now: leg.reoffer(Direction.SENDRECV, now))
    assert peer.only(Resumed) == [Resumed()] and not peer.the_leg.remote_held
    assert side.the_leg.state is S.CONFIRMED and peer.the_leg.state is S.CONFIRMED
    assert side.the_leg.timers == {"accepted": 32.0} and peer.the_leg.timers == {"accepted": 32.0}


def test_a_re_invite_2xx_is_retransmitted_and_its_ack_resent() -> None:
    net = Net()
    net.established()
    net.lose("uac", "ACK", times=1)
    net.act(net.uac, lambda leg, now: leg.reoffer(Direction.SENDONLY, now))
    assert net.uas.the_leg.state is S.REINVITED
    net.advance(1.0)
    assert net.log == ["0 uac INVITE", "0 uas 200 INVITE", "0 uac ACK (lost)", "0.5 uas 200 INVITE", "0.5 uac ACK"]
    assert net.uas.the_leg.state is S.CONFIRMED


def test_a_re_invite_2xx_never_acked_ends_the_session() -> None:
    net = Net()
    net.established()
    net.lose("uac", "ACK", times=None)
    net.act(net.uac, lambda leg, now: leg.reoffer(Direction.SENDONLY, now))
    net.advance(40.0)
    assert net.log[-2:] == ["32 uas BYE", "32 uac 200 BYE"]
    assert terminated(net.uas) == Terminated(cause=C.NO_ACK)


def test_a_re_offer_the_peer_cannot_take_is_refused_and_the_session_stays() -> None:
    net = Net()
    net.established()
    net.uas.the_leg.offer_answer.codecs = (PCMA,)
    net.act(net.uac, lambda leg, now: leg.reoffer(Direction.SENDONLY, now))
    assert net.log == ["0 uac INVITE", "0 uas 488 INVITE", "0 uac ACK"]
    assert net.uac.only(ReofferFailed) == [ReofferFailed(status=488)]
    assert net.uac.the_leg.state is S.CONFIRMED and net.uas.the_leg.state is S.CONFIRMED
    assert net.uas.events == []


def test_a_re_invite_to_a_dialog_the_peer_lost_ends_with_a_bye() -> None:
    net = Net()
    net.established()
    net.uas.leg = None  # the far end forgot the dialog (it restarted): 481 to everything
    net.act(net.uac, lambda leg, now: leg.reoffer(Direction.SENDONLY, now))
    assert net.log == ["0 uac INVITE", "0 uas 481 INVITE", "0 uac ACK", "0 uac BYE", "0 uas 481 BYE"]
    assert terminated(net.uac) == Terminated(cause=C.DIALOG_GONE, status=481)
    assert net.uac.the_leg.state is S.TERMINATED


def test_a_re_invite_that_times_out_ends_with_a_bye() -> None:
    net = Net()
    net.established()
    net.lose("uac", "INVITE", times=None)
    net.act(net.uac, lambda leg, now: leg.reoffer(Direction.SENDONLY, now))
    net.advance(40.0)
    assert net.log[-2:] == ["32 uac BYE", "32 uas 200 BYE"]
    assert terminated(net.uac) == Terminated(cause=C.TIMEOUT)
    both_done(net)


def test_an_offerless_re_invite_gets_our_offer_and_the_ack_the_answer() -> None:
    net = Net()
    net.established()
    dialog = net.uac.the_leg.dialog
    assert dialog is not None
    reinvite = add_top_via(dialog.create_request("INVITE"), "udp", "192.0.2.1", 5060)
    net.uac.layer.send_request(reinvite, UAS_PEER, net.now)
    net.uac.drive(net.now)
    net.pump()
    ok = net.uas.sent[-1]
    assert isinstance(ok, Response) and ok.status == 200 and b"m=audio 6000" in ok.body
    assert net.uas.the_leg.state is S.REINVITED
    answer = parse_sdp(net.uac.sent[0].body)  # the UAC's first offer will do as the answer here
    answer.media[0].port = 4010
    ack = add_top_via(dialog.create_ack(reinvite.cseq.number, answer.to_bytes()), "udp", "192.0.2.1", 5060,
                      branch="z9hG4bKmanual")
    net.uac.layer.send_stateless(ack, UAS_PEER)
    net.uac.drive(net.now)
    net.pump()
    [updated] = net.uas.only(MediaUpdated)
    assert isinstance(updated, MediaUpdated) and updated.media.remote_port == 4010
    assert net.uas.the_leg.state is S.CONFIRMED


# -- glare (§14.1, §14.2) -------------------------------------------------------------------------------

def test_glare_both_get_491_and_retry_after_their_own_back_off() -> None:
    net = Net()
    net.established()
    net.act(net.uac, lambda leg, now: leg.reoffer(Direction.SENDONLY, now), pump=False)
    net.act(net.uas, lambda leg, now: leg.reoffer(Direction.SENDONLY, now), pump=False)
    net.pump()
    assert net.log == ["0 uac INVITE", "0 uas INVITE", "0 uas 491 INVITE", "0 uac 491 INVITE",
                       "0 uac ACK", "0 uas ACK"]
    # the Call-ID's owner (the UAC of the initial INVITE) waits 2.1-4 s, the other 0-2 s
    assert net.uac.draws.asked == [(2.1, 4.0)] and net.uas.draws.asked == [(0.0, 2.0)]
    assert net.uac.the_leg.timers == {"glare": 4.0, "accepted": 32.0}
    assert net.uas.the_leg.timers == {"glare": 2.0, "accepted": 32.0}
    net.act(net.uac, lambda leg, now: leg.reoffer(Direction.SENDONLY, now))  # waits for its back-off
    assert len(net.log) == 6
    net.advance(10.0)
    assert net.log[6:] == ["2 uas INVITE", "2 uac 200 INVITE", "2 uas ACK",
                           "4 uac INVITE", "4 uas 200 INVITE", "4 uac ACK"]
    assert net.uac.only(Held) == [Held()] and net.uas.only(Held) == [Held()]
    assert net.uac.the_leg.state is S.CONFIRMED and net.uas.the_leg.state is S.CONFIRMED
    assert net.uac.the_leg.timers == {"accepted": 32.0} and net.uas.the_leg.timers == {"accepted": 32.0}


def test_a_back_off_ending_while_answering_a_re_invite_retries_after_its_ack() -> None:
    net = Net()
    net.established()
    net.uac.draws.fraction = net.uas.draws.fraction = 0.0  # the UAC retries at 2.1 s, the UAS at once
    net.act(net.uac, lambda leg, now: leg.reoffer(Direction.SENDONLY, now), pump=False)
    net.act(net.uas, lambda leg, now: leg.reoffer(Direction.SENDONLY, now), pump=False)
    net.pump()
    net.lose("uas", "ACK", times=3)  # the UAC waits for the ACK of the UAS's retry ...
    net.advance(2.2)
    assert net.uac.the_leg.state is S.REINVITED  # ... past its own back-off (2.1): its retry waits
    net.advance(10.0)
    assert net.log[6:] == ["0 uas INVITE", "0 uac 200 INVITE", "0 uas ACK (lost)", "0.5 uac 200 INVITE",
                           "0.5 uas ACK (lost)", "1.5 uac 200 INVITE", "1.5 uas ACK (lost)", "3.5 uac 200 INVITE",
                           "3.5 uas ACK", "3.5 uac INVITE", "3.5 uas 200 INVITE", "3.5 uac ACK"]


def test_a_re_invite_before_our_2xx_was_acked_gets_491() -> None:
    net = Net()
    net.call()
    net.lose("uac", "ACK")
    net.act(net.uas, Leg.answer)
    net.act(net.uac, lambda leg, now: leg.reoffer(Direction.SENDONLY, now))
    assert net.log[-3:] == ["0 uac INVITE", "0 uas 491 INVITE", "0 uac ACK"]
    assert net.uas.the_leg.state is S.ACCEPTED
    net.act(net.uas, lambda leg, now: leg.reoffer(Direction.SENDONLY, now))  # owed until the ACK
    net.advance(1.0)
    assert "0.5 uas INVITE" in net.log and net.uac.only(Held) == [Held()]


# -- RFC 4028 session timers ----------------------------------------------------------------------------

def test_the_refresher_re_invites_at_half_the_interval_and_the_other_side_watches() -> None:
    net = Net(uac=config("192.0.2.1", 4000, session_expires=90))
    net.established()
    invite, ok = net.uac.sent[0], net.uas.sent[-1]
    assert invite.headers.get("session-expires") == "90" and invite.headers.get("min-se") == "90"
    assert ok.headers.get("session-expires") == "90;refresher=uac" and ok.headers.get("require") == "timer"
    assert net.uac.the_leg.timers == {"refresh": 45.0, "accepted": 32.0}
    assert net.uas.the_leg.timers == {"expiry": 60.0, "accepted": 32.0}  # 90 - min(32, 90/3)
    net.advance(50.0)
    assert net.log == ["45 uac INVITE", "45 uas 200 INVITE", "45 uac ACK"]
    refresh = net.uac.sent[-2]
    assert isinstance(refresh, Request) and refresh.headers.get("session-expires") == "90;refresher=uac"
    first, again = parse_sdp(net.uac.sent[0].body), parse_sdp(refresh.body)
    assert first.origin is not None and again.origin is not None
    assert again.origin.sess_version == first.origin.sess_version  # nothing changed: same version
    assert net.uac.the_leg.timers == {"refresh": 90.0} and net.uas.the_leg.timers == {"expiry": 105.0}
    assert [type(e) for e in net.uac.events] == [SetUpOver]  # at 32 s
    assert net.uas.events[1:] == [OfferReceived(media=net.uas.the_leg.media)]  # type: ignore[arg-type]


def test_no_refresh_in_time_ends_the_session() -> None:
    net = Net(uac=config("192.0.2.1", 4000, session_expires=90))
    net.established()
    net.lose("uac", "INVITE", times=None)
    net.advance(70.0)
    assert [line for line in net.log if "uas" in line] == ["60 uas BYE"]
    assert "60 uac 200 BYE" in net.log  # (the lost refresh is still retransmitted by its transaction)
    assert terminated(net.uas) == Terminated(cause=C.SESSION_EXPIRED)
    assert terminated(net.uac) == Terminated(cause=C.REMOTE_BYE)


def test_a_session_interval_under_our_min_se_gets_422() -> None:
    net = Net(uac=config("192.0.2.1", 4000, session_expires=60, min_se=60))
    net.call()
    assert net.log == ["0 uac INVITE", "0 uas 422 INVITE", "0 uac ACK"]
    refusal = net.uas.sent[-1]
    assert isinstance(refusal, Response) and refusal.headers.get("min-se") == "90"
    assert terminated(net.uac) == Terminated(cause=C.REJECTED, status=422)


def test_a_refresh_refused_keeps_the_session_and_tries_again_later() -> None:
    net = Net(uac=config("192.0.2.1", 4000, session_expires=90))
    net.established()
    g722 = Codec(name="G722", clock_rate=8000, payload_type=9)
    net.uas.the_leg.offer_answer.codecs = (g722,)
    net.advance(46.0)
    assert net.log == ["45 uac INVITE", "45 uas 488 INVITE", "45 uac ACK"]
    assert net.uac.the_leg.timers == {"refresh": 90.0}


def test_an_update_refreshes_the_session_and_can_carry_an_offer() -> None:
    net = Net(uac=config("192.0.2.1", 4000, session_expires=90))
    net.established()
    net.advance(30.0)
    dialog = net.uac.the_leg.dialog
    assert dialog is not None
    update = add_top_via(dialog.create_request("UPDATE", extra_headers=[("Session-Expires", "120;refresher=uac")]),
                         "udp", "192.0.2.1", 5060)
    net.uac.layer.send_request(update, UAS_PEER, net.now)
    net.uac.drive(net.now)
    net.pump()
    assert net.log == ["30 uac UPDATE", "30 uas 200 UPDATE"]
    assert net.uas.sent[-1].headers.get("session-expires") == "120;refresher=uac"
    assert net.uas.the_leg.timers == {"expiry": 30.0 + 120 - 32, "accepted": 32.0}
    offer = add_top_via(dialog.create_request("UPDATE", body=net.uac.sent[0].body), "udp", "192.0.2.1", 5060)
    net.uac.layer.send_request(offer, UAS_PEER, net.now)
    net.uac.drive(net.now)
    net.pump()
    assert net.log[-1] == "30 uas 200 UPDATE" and b"m=audio 6000" in net.uas.sent[-1].body
    assert len(net.uas.only(OfferReceived)) == 1


# -- every row ------------------------------------------------------------------------------------------

def test_the_scenarios_go_through_every_row_of_the_table() -> None:
    VISITED.clear()
    for name, function in list(globals().items()):
        if not name.startswith("test_") or name == "test_the_scenarios_go_through_every_row_of_the_table":
            continue
        marks = [m for m in getattr(function, "pytestmark", []) if m.name == "parametrize"]
        if not marks:
            function()
            continue
        argname, values = marks[0].args
        for value in values:
            function(**{argname: value})
    missing = sorted((s.value, name) for s, name in set(TABLE) - VISITED)
    assert missing == [], "\n".join(map(str, missing))


# -- requests and inputs in each state of the established dialog ---------------------------------------

def in_state(state: LegState, *, session_expires: int | None = None) -> Net:
    """A pair whose UAS leg is in ``state`` (the UAC leg CONFIRMED), by losing the right messages."""
    net = Net(uac=config("192.0.2.1", 4000, session_expires=session_expires, min_se=30),
              uas=config("192.0.2.2", 6000, min_se=30))
    if state is S.BYE_AFTER_ACK:
        net.call()
        net.lose("uac", "ACK", times=None)
        net.act(net.uas, Leg.answer)
        net.act(net.uas, Leg.hangup)
    else:
        net.established()
        if state is S.REINVITING:
            net.lose("uas", "INVITE", times=None)
            net.act(net.uas, lambda leg, now: leg.reoffer(Direction.SENDONLY, now))
        elif state is S.REINVITED:
            net.lose("uac", "ACK", times=None)
            net.act(net.uac, lambda leg, now: leg.reoffer(Direction.SENDONLY, now))
        elif state is S.TERMINATING:
            net.lose("uas", "BYE", times=None)
            net.act(net.uas, Leg.hangup)
    assert net.uas.the_leg.state is state
    net.log.clear()
    net.uas.events.clear()
    return net


def send_in_dialog(net: Net, method: str, body: bytes = b"") -> None:
    """The UAC's device sends a request in the dialog on its own (its leg ignores the response)."""
    dialog = net.uac.the_leg.dialog
    assert dialog is not None
    request = add_top_via(dialog.create_request(method, body=body), "udp", "192.0.2.1", 5060)
    net.uac.layer.send_request(request, UAS_PEER, net.now)
    net.uac.drive(net.now)
    net.pump()


LIVE = [S.CONFIRMED, S.REINVITING, S.REINVITED]


@pytest.mark.parametrize("state", LIVE)
def test_options_is_answered_in_the_dialog(state: LegState) -> None:
    net = in_state(state)
    send_in_dialog(net, "OPTIONS")
    assert net.log == ["0 uac OPTIONS", "0 uas 200 OPTIONS"] and net.uas.the_leg.state is state
    assert "INVITE" in (net.uas.sent[-1].headers.get("allow") or "")


@pytest.mark.parametrize("state", LIVE)
def test_other_requests_go_to_the_application(state: LegState) -> None:
    net = in_state(state)
    send_in_dialog(net, "INFO")
    [event] = net.uas.app_requests
    assert event.request.method == "INFO" and net.log == ["0 uac INFO"]
    net.uas.the_leg.respond(event.transaction, event.request, 200, net.now)
    net.uas.drive(net.now)
    net.pump()
    assert net.log == ["0 uac INFO", "0 uas 200 INFO"] and net.uas.the_leg.state is state


@pytest.mark.parametrize("state", LIVE)
def test_an_update_without_offer_is_answered_and_one_with_an_offer_only_when_none_is_pending(state: LegState) -> None:
    net = in_state(state)
    send_in_dialog(net, "UPDATE")
    send_in_dialog(net, "UPDATE", net.uac.sent[0].body)
    offer_status = 200 if state is S.CONFIRMED else 491  # RFC 3311 §5.2
    assert net.log == ["0 uac UPDATE", "0 uas 200 UPDATE", "0 uac UPDATE", f"0 uas {offer_status} UPDATE"]
    assert net.uas.the_leg.state is state


@pytest.mark.parametrize("state", [*LIVE, S.BYE_AFTER_ACK, S.TERMINATING])
def test_a_bye_in_any_established_state_ends_the_leg(state: LegState) -> None:
    net = in_state(state)
    send_in_dialog(net, "BYE")
    assert net.log == ["0 uac BYE", "0 uas 200 BYE"]
    cause = C.LOCAL_BYE if state is S.TERMINATING else C.REMOTE_BYE  # crossing BYEs: ours came first
    assert terminated(net.uas) == Terminated(cause=cause)
    assert net.uas.the_leg.state is S.TERMINATED and net.uas.the_leg.next_deadline() is None


@pytest.mark.parametrize("state", [S.REINVITING, S.REINVITED, S.BYE_AFTER_ACK])
def test_a_re_invite_while_an_invite_is_in_progress_gets_491(state: LegState) -> None:
    net = in_state(state)
    send_in_dialog(net, "INVITE", net.uac.sent[0].body)
    assert net.log[:2] == ["0 uac INVITE", "0 uas 491 INVITE"] and net.uas.the_leg.state is state


@pytest.mark.parametrize("state", [S.TERMINATING])
def test_requests_to_an_ending_dialog_get_481(state: LegState) -> None:
    net = in_state(state)
    send_in_dialog(net, "INFO")
    assert net.log == ["0 uac INFO", "0 uas 481 INFO"]


@pytest.mark.parametrize("state", [S.REINVITING, S.REINVITED])
def test_hanging_up_during_a_re_invite_sends_the_bye_at_once(state: LegState) -> None:
    net = in_state(state)
    net.act(net.uas, Leg.hangup)
    assert net.log == ["0 uas BYE", "0 uac 200 BYE"]
    assert terminated(net.uas) == Terminated(cause=C.LOCAL_BYE)


@pytest.mark.parametrize("state", [S.REINVITING, S.REINVITED])
def test_a_re_offer_asked_during_a_re_invite_goes_once_it_is_done(state: LegState) -> None:
    net = in_state(state)
    net.act(net.uas, lambda leg, now: leg.reoffer(Direction.INACTIVE, now))
    assert net.log == []
    net.losses.clear()
    net.advance(40.0)
    sent = [m for m in net.uas.sent if isinstance(m, Request) and m.method == "INVITE"]
    assert b"a=inactive" in sent[-1].body and net.uas.the_leg.state is S.CONFIRMED


@pytest.mark.parametrize("state", [S.REINVITING, S.REINVITED])
def test_the_session_expiring_during_a_re_invite_ends_it(state: LegState) -> None:
    net = in_state(state, session_expires=30)  # the UAS watches: expiry at 30 - min(32, 30/3) = 20
    assert net.uas.the_leg.timers["expiry"] == 20.0
    net.advance(21.0)
    assert "20 uas BYE" in net.log and terminated(net.uas) == Terminated(cause=C.SESSION_EXPIRED)


@pytest.mark.parametrize("state", [S.REINVITING, S.REINVITED])
def test_a_refresh_due_during_a_re_invite_is_not_sent_twice(state: LegState) -> None:
    net = in_state(state, session_expires=90)
    uas = net.uas.the_leg
    uas.session_timer.we_refresh = True  # make the UAS the refresher, as a peer naming refresher=uas would
    uas.timers = {"refresh": 1.0}
    net.advance(1.0)
    assert uas.state is state and "refresh" not in uas.timers
    assert [line for line in net.log if line.startswith("1 uas INVITE")] == []


def test_our_lost_ack_is_resent_while_our_re_invite_or_bye_is_out() -> None:
    for then in ("reoffer", "hangup"):
        net = Net()
        net.call()
        net.lose("uac", "ACK")
        net.act(net.uas, Leg.answer)
        net.lose("uac", "INVITE" if then == "reoffer" else "BYE", times=None)
        if then == "reoffer":
            net.act(net.uac, lambda leg, now: leg.reoffer(Direction.SENDONLY, now))
        else:
            net.act(net.uac, Leg.hangup)
        net.advance(0.5)
        assert net.log[-2:] == ["0.5 uas 200 INVITE", "0.5 uac ACK"]
        assert net.uas.the_leg.state is S.CONFIRMED


# -- transport errors, odd orders, misuse ----------------------------------------------------------------

@pytest.mark.parametrize("cancelled", [False, True])
def test_a_transport_error_on_the_invite_ends_the_leg(cancelled: bool) -> None:
    net = Net()
    net.call()
    net.act(net.uas, lambda leg, now: leg.ring(now))
    if cancelled:
        net.lose("uac", "CANCEL")
        net.act(net.uac, Leg.cancel)
    assert net.uac.invite_txn is not None
    net.uac.dispatch(list(net.uac.layer.transport_error(net.uac.invite_txn, net.now)), net.now)
    assert terminated(net.uac) == Terminated(cause=C.CANCELLED if cancelled else C.TIMEOUT)


def test_a_refusal_crossing_our_pending_cancel() -> None:
    net = Net()
    net.call()
    net.act(net.uac, Leg.cancel)
    net.act(net.uas, lambda leg, now: leg.reject(486, now))
    assert net.log == ["0 uac INVITE", "0 uas 486 INVITE", "0 uac ACK"]
    assert terminated(net.uac) == Terminated(cause=C.CANCELLED, status=486)


def test_a_leg_hung_up_before_its_invite_just_ends() -> None:
    net = Net()
    net.uac.leg = TracedLeg.uac(net.uac.config, net.uac.ids, net.uac.session, request_uri="sip:bob@192.0.2.2",
                                from_uri="sip:alice@example.com", to_uri="sip:bob@example.com", call_id="c")
    net.act(net.uac, Leg.hangup)
    assert terminated(net.uac) == Terminated(cause=C.LOCAL_BYE) and net.log == []


def test_inputs_without_a_row_are_usage_errors() -> None:
    net = Net()
    net.call()
    uac, uas = net.uac.the_leg, net.uas.the_leg
    with pytest.raises(LegUsageError, match="answer on a UAC leg"):
        uac.answer(net.now)
    with pytest.raises(LegUsageError, match="invite on a UAC leg is not allowed in state LegState.CALLING"):
        uac.invite(net.now)
    with pytest.raises(LegUsageError):
        uas.cancel(net.now)
    with pytest.raises(LegUsageError):
        uas.reoffer(Direction.SENDONLY, net.now)  # nothing established yet
    with pytest.raises(LegUsageError):
        uas.reject(200, net.now)
    assert uac.state is S.CALLING and uas.state is S.INCOMING
    assert uac.take_actions() == [] and uas.take_actions() == []


@pytest.mark.parametrize("state", [*LIVE, S.TERMINATING])
def test_a_2xx_from_another_fork_is_acked_and_byed(state: LegState) -> None:
    net = Net()
    net.established()
    if state is S.REINVITING:
        net.lose("uac", "INVITE", times=None)
        net.act(net.uac, lambda leg, now: leg.reoffer(Direction.SENDONLY, now))
    elif state is S.REINVITED:
        net.lose("uas", "ACK", times=None)
        net.act(net.uas, lambda leg, now: leg.reoffer(Direction.SENDONLY, now))
    elif state is S.TERMINATING:
        net.lose("uac", "BYE", times=None)
        net.act(net.uac, Leg.hangup)
    assert net.uac.the_leg.state is state
    net.log.clear()
    net.uac.events.clear()
    first = next(m for m in net.uas.sent if isinstance(m, Response) and m.cseq.number == 101 and m.status == 200)
    other = first.to_bytes().replace(b"tag=uas-tag1", b"tag=fork2").replace(b"m=audio 6000", b"m=audio 6100")
    net.uac.deliver(other, net.now)  # the INVITE transaction (Accepted) passes it on (RFC 6026)
    net.pump()
    ack, bye = net.uac.sent[-2:]
    assert isinstance(ack, Request) and ack.method == "ACK" and ack.to.tag == "fork2"
    assert isinstance(bye, Request) and bye.method == "BYE" and bye.to.tag == "fork2"
    assert net.log[0] == "0 uac ACK" and net.log[1].startswith("0 uac BYE")  # (lost in TERMINATING)
    assert net.uac.the_leg.state is state and net.uac.events == []
    assert net.uac.the_leg.dialog is not None and net.uac.the_leg.dialog.remote_tag == "uas-tag1"


# -- the end of the set-up (RFC 6026): what an established leg keeps ------------------------------------

def record_of(side: Side) -> Request:
    [over] = side.only(SetUpOver)
    assert isinstance(over, SetUpOver)
    return over.invite


@pytest.mark.parametrize("state", LIVE)
def test_64_t1_after_the_2xx_each_leg_keeps_only_a_record_of_its_invite(state: LegState) -> None:
    """Issue 9: an idle leg held its whole INVITE (and the UAC its ACK) for the call's life. 64*T1 after the
    2xx the INVITE transactions are over (Timers L and M) and no 2xx comes again: the legs keep a record
    without Via, body or received bytes, and say so (SetUpOver), whatever re-INVITE is in flight then."""
    net = Net()
    net.established()
    net.advance(20.0)
    if state is S.REINVITING:
        net.lose("uas", "INVITE", times=None)
        net.act(net.uas, lambda leg, now: leg.reoffer(Direction.SENDONLY, now))
    elif state is S.REINVITED:
        net.lose("uac", "ACK", times=None)
        net.act(net.uac, lambda leg, now: leg.reoffer(Direction.SENDONLY, now))
    net.advance(31.9)
    assert net.uac.only(SetUpOver) == [] and net.uas.only(SetUpOver) == []
    net.advance(32.0)
    assert net.uas.the_leg.state is state and "accepted" not in net.uas.the_leg.timers
    for side in (net.uac, net.uas):
        record, invite = record_of(side), side.sent[0] if side is net.uac else net.uac.sent[0]
        assert record.method == "INVITE" and record.uri_text == "sip:bob@192.0.2.2" and record.raw is None
        assert record.body == b"" and record.vias == []
        assert sorted(name.lower() for name, _ in record.headers) == ["call-id", "contact", "cseq", "from", "to"]
        assert record.call_id == invite.call_id and record.cseq == invite.cseq
        assert side.the_leg.call_id == "call-1@192.0.2.1"
    assert record_of(net.uac).from_.tag == net.uac.the_leg.local_tag
    assert record_of(net.uac).headers.get("contact") == "<sip:zvonok@192.0.2.1:5060>"
    # the initial 2xx once more, from a peer that went on past 64*T1 (the layer, its transaction gone, would
    # drop it): the ACK for it is gone with the set-up
    first = next(m for m in net.uas.sent if isinstance(m, Response) and m.cseq.number == 101 and m.status == 200)
    sent = len(net.uac.sent)
    net.uac.the_leg.receive_response(parse_datagram(first.to_bytes()), net.now)  # type: ignore[arg-type]
    net.uac.drive(net.now)
    assert net.uac.sent[sent:] == []


def test_the_ack_of_a_re_invite_outlives_the_set_up() -> None:
    """A re-INVITE answered shortly before the set-up ends: its 2xx may come again after (the peer re-sends
    it for 64*T1 from its own sending), and is ACKed again with the same ACK (§13.2.2.4)."""
    net = Net()
    net.established()
    net.advance(20.0)
    net.act(net.uac, lambda leg, now: leg.reoffer(Direction.SENDONLY, now))
    ok, ack = net.uas.sent[-1], net.uac.sent[-1]
    assert isinstance(ok, Response) and ok.status == 200 and isinstance(ack, Request) and ack.method == "ACK"
    net.advance(33.0)
    assert len(net.uac.only(SetUpOver)) == 1
    sent = len(net.uac.sent)
    net.uac.the_leg.receive_response(parse_datagram(ok.to_bytes()), net.now)  # type: ignore[arg-type]
    net.uac.drive(net.now)
    assert net.uac.sent[sent:] == [ack]


def test_after_the_set_up_acks_keep_the_credentials_and_another_fork_is_still_byed() -> None:
    """What the record keeps is what a later ACK (§22.2: the INVITE's credentials) and a 2xx from another
    fork (§13.2.2.4: a dialog from the INVITE) need of the INVITE."""
    net = Net()
    net.call()
    net.act(net.uas, lambda leg, now: leg.reject(407, now))
    net.act(net.uac, lambda leg, now: leg.authenticate([("Proxy-Authorization", 'Digest username="a"')], now))
    net.act(net.uas, Leg.answer)
    first = next(m for m in net.uas.sent if isinstance(m, Response) and m.status == 200)
    net.advance(40.0)
    assert record_of(net.uac).headers.get("proxy-authorization") == 'Digest username="a"'
    # the UAS needs none of the caller's credentials (it sends no ACK for that INVITE)
    assert record_of(net.uas).headers.get("proxy-authorization") is None
    assert sorted(name.lower() for name, _ in record_of(net.uas).headers) == ["call-id", "contact", "cseq", "from",
                                                                               "to"]
    net.act(net.uac, lambda leg, now: leg.reoffer(Direction.SENDONLY, now))
    ack = net.uac.sent[-1]
    assert isinstance(ack, Request) and ack.method == "ACK" and ack.cseq.number == 103
    assert ack.headers.get("proxy-authorization") == 'Digest username="a"'
    # a 2xx from another fork handed up by a core after the INVITE transaction (the layer drops them then)
    other = first.to_bytes().replace(first.to.tag.encode(), b"fork2")  # type: ignore[union-attr]
    net.uac.the_leg.receive_response(parse_datagram(other), net.now)  # type: ignore[arg-type]
    net.uac.drive(net.now)
    ack, bye = net.uac.sent[-2:]
    assert isinstance(ack, Request) and ack.method == "ACK" and ack.to.tag == "fork2" and ack.cseq.number == 102
    assert ack.headers.get("proxy-authorization") == 'Digest username="a"'
    assert isinstance(bye, Request) and bye.method == "BYE" and bye.to.tag == "fork2"
    assert net.uac.the_leg.state is S.CONFIRMED


@pytest.mark.parametrize("module", [leg_module, leg_events, leg_media, leg_messages, leg_session_timer, leg_states])
def test_the_leg_modules_are_sans_io(module: object) -> None:
    path = getattr(module, "__file__", None)
    assert path is not None
    tree = ast.parse(Path(path).read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module and node.level == 0}
    assert not {name.split(".")[0] for name in imported} & {"asyncio", "socket", "time", "random", "os", "secrets"}
    assert not any(name.startswith("zvonok.telephony") for name in imported)  # only zvonok.sip below it


def test_the_table_is_consistent() -> None:
    handlers = {name for name in dir(Leg) if name.startswith("_h_")}
    used = {handler.__name__ for _, handler in TABLE.values()}
    assert used == handlers  # no handler outside the table, none missing
    for (state, _), (target, _) in TABLE.items():
        assert state is not S.TERMINATED  # a terminated leg takes nothing
        assert isinstance(target, LegState)
    assert all(name in {"2xx", "ack", "cancel", "glare", "refresh", "expiry", "accepted"} for names in TIMERS.values()
               for name in names)


# -- digest challenges (§22.2) ---------------------------------------------------------------------------

@pytest.mark.parametrize("rung", [False, True])
def test_a_challenged_invite_is_sent_again_with_credentials(rung: bool) -> None:
    net = Net()
    net.call()
    if rung:  # (a proxy would challenge at once; a 180 first is odd but allowed)
        net.act(net.uas, lambda leg, now: leg.ring(now))
        net.log.remove("0 uas 180 INVITE")
    net.act(net.uas, lambda leg, now: leg.reject(407, now))
    [challenge] = net.uac.only(Challenged)
    assert isinstance(challenge, Challenged) and challenge.response.status == 407
    assert net.uac.the_leg.state is S.CHALLENGED and net.uac.only(Terminated) == []
    net.act(net.uac, lambda leg, now: leg.authenticate([("Proxy-Authorization", 'Digest username="a"')], now))
    first, again = net.uac.sent[0], net.uac.sent[-1]
    assert isinstance(first, Request) and isinstance(again, Request)
    assert again.headers.get("cseq") == "102 INVITE" and again.call_id == first.call_id
    assert again.from_.tag == first.from_.tag and again.body == first.body
    assert again.headers.get("proxy-authorization") == 'Digest username="a"'
    assert again.top_via.branch != first.top_via.branch and len(again.vias) == 1
    net.act(net.uas, Leg.answer)  # a new UAS leg took the new INVITE
    assert net.log == ["0 uac INVITE", "0 uas 407 INVITE", "0 uac ACK", "0 uac INVITE", "0 uas 200 INVITE",
                       "0 uac ACK"]
    assert net.uac.the_leg.state is S.CONFIRMED and net.uas.the_leg.state is S.CONFIRMED


def test_giving_up_on_a_challenge_ends_the_leg_as_rejected() -> None:
    net = Net()
    net.call()
    net.act(net.uas, lambda leg, now: leg.reject(401, now))
    net.act(net.uac, Leg.hangup)
    assert terminated(net.uac) == Terminated(cause=C.REJECTED, status=401)


def test_a_challenge_after_our_cancel_ends_the_leg() -> None:
    net = Net()
    net.call()
    net.act(net.uac, Leg.cancel)
    net.act(net.uas, lambda leg, now: leg.reject(407, now))  # before any provisional: no CANCEL went
    assert net.log == ["0 uac INVITE", "0 uas 407 INVITE", "0 uac ACK"]
    assert terminated(net.uac) == Terminated(cause=C.CANCELLED, status=407)
    net = Net()
    net.call()
    net.lose("uac", "CANCEL", times=None)
    net.act(net.uac, lambda leg, now: leg.cancel(now, reason='SIP;cause=200;text="Call completed elsewhere"'))
    net.act(net.uas, lambda leg, now: leg.ring(now))
    assert net.uac.cancel_reasons == ['SIP;cause=200;text="Call completed elsewhere"']
    assert net.uac.the_leg.state is S.CANCELLING
    net.uas.leg = None  # a new side that challenges instead of answering 487
    net.uac.deliver(make_response(net.uac.sent[0], 407, to_tag="x").to_bytes(), net.now)  # type: ignore[arg-type]
    assert terminated(net.uac) == Terminated(cause=C.CANCELLED, status=407)


# -- SRTP (RFC 4568 SDES keys, as sdp_offer_answer runs them) ---------------------------------------------

KEY_A, KEY_B = bytes(range(30)), bytes(range(30, 60))


def test_srtp_keys_are_exchanged_and_kept_in_re_offers() -> None:
    net = Net(uac=config("192.0.2.1", 4000, srtp_key=KEY_A), uas=config("192.0.2.2", 6000, srtp_key=KEY_B))
    net.established()
    uac, uas = net.uac.the_leg, net.uas.the_leg
    assert uac.media is not None and uac.media.srtp_key == KEY_B
    assert uas.media is not None and uas.media.srtp_key == KEY_A
    net.act(net.uac, lambda leg, now: leg.reoffer(Direction.SENDONLY, now))
    reinvite = net.uac.sent[-2]
    assert isinstance(reinvite, Request) and b"RTP/SAVP" in reinvite.body and b"a=crypto:1" in reinvite.body
    assert uac.media is not None and uac.media.srtp_key == KEY_B


def test_a_plain_leg_is_re_offered_plain_and_a_required_one_refuses_plain() -> None:
    net = Net(uas=config("192.0.2.2", 6000, srtp_key=KEY_B))  # the UAC offers plain RTP
    net.established()
    net.act(net.uas, lambda leg, now: leg.reoffer(Direction.SENDONLY, now))
    reinvite = net.uas.sent[-2]
    assert isinstance(reinvite, Request) and b"RTP/AVP" in reinvite.body and b"crypto" not in reinvite.body
    net = Net(uas=config("192.0.2.2", 6000, srtp_key=KEY_B, srtp_required=True))
    net.call()
    assert net.log == ["0 uac INVITE", "0 uas 488 INVITE", "0 uac ACK"]
