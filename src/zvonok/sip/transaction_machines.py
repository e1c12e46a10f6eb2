"""The four transaction state machines of RFC 3261 §17, with the Accepted state of RFC 6026.

How it works: each machine is a table ``(state, input) -> (next state, actions)``. An input is what can
happen to a transaction: a response from the wire (``"1xx"``, ``"2xx"``, ``"300-699"``), a retransmitted
request or an ACK from the wire (``"request"``, ``"ACK"``), a response from the TU (``"TU 1xx"`` …), or a
timer firing (``"Timer A"`` …). An input without a row is ignored: that is how the RFC's "absorb" and
"discard" rules read. On a transition the timers that do not run in the new state are cancelled
(``TIMERS``), then the actions run in order. A timer of length zero (D, I, J, K on a reliable
transport, §17.1.1.2, §17.2.1) fires at once, so such a transaction terminates within the same call.

The machines keep no clock and do no I/O: they are given ``now`` and a host (the TransactionLayer)
that collects the bytes to send and the events for the TU, keeps the one timer heap, and drops a
transaction from its tables when it reaches Terminated. Retransmissions re-send bytes serialized once,
so they are byte-identical to the first transmission.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any, ClassVar, Protocol, cast

from .errors import SipUsageError
from .message import Request, Response, make_response
from .peer import Peer
from .transaction_events import AckReceived, Event, ResponseReceived, TransactionTimeout
from .transaction_messages import build_ack


class State(enum.Enum):
    """Transaction states, named as in RFC 3261 §17 and RFC 6026 §7."""

    CALLING = "Calling"
    TRYING = "Trying"
    PROCEEDING = "Proceeding"
    COMPLETED = "Completed"
    CONFIRMED = "Confirmed"
    ACCEPTED = "Accepted"
    TERMINATED = "Terminated"


class TransactionHost(Protocol):
    """What a transaction needs from the layer that holds it."""

    t1: float
    t2: float
    t4: float
    trying_delay: float | None
    unanswered_limit: float | None

    def _send(self, data: bytes, peer: Peer) -> None: ...
    def _emit(self, event: Event) -> None: ...
    def _schedule(self, txn: Transaction, timer: str, deadline: float) -> None: ...
    def _cancelled(self, count: int) -> None: ...
    def _terminated(self, txn: Transaction) -> None: ...


# an action gets the transaction, what came with the input (a message, or the timer's name) and now
Action = Callable[[Any, Any, float], None]
Table = dict[tuple[State, str], tuple[State, tuple[Action, ...]]]

_S = State


def _status_input(status: int) -> str:
    if status < 200:
        return "1xx"
    if status < 300:
        return "2xx"
    return "300-699"


class Transaction:
    """State, timers and the request of one transaction; subclasses bring the table."""

    __slots__ = ("key", "request", "peer", "state", "reliable", "timers", "_host", "_interval", "_source")

    TABLE: ClassVar[Table]
    TIMERS: ClassVar[dict[State, frozenset[str]]]

    def __init__(self, host: TransactionHost, key: tuple[object, ...], request: Request, peer: Peer,
                 state: State) -> None:
        self.key = key
        self.request = request
        self.peer = peer  # where requests (client) or responses (server) are sent
        self.state = state
        self.reliable = peer.reliable
        self.timers: dict[str, float] = {}  # timer name -> deadline
        self._host = host
        self._interval = 0.0  # the current interval of the retransmission timer (A, E or G)
        self._source = peer  # where the last message for this transaction came from

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.request.method} {self.state.value} {self.key[0]!r}>"

    # -- the table driver ----------------------------------------------------------------------------
    def _step(self, event: str, data: object, now: float) -> None:
        row = self.TABLE.get((self.state, event))
        if row is None:
            return
        state, actions = row
        if state is not self.state:
            self._enter(state)
        for action in actions:
            action(self, data, now)

    def _enter(self, state: State) -> None:
        self.state = state
        timers = self.timers
        if timers:
            allowed = self.TIMERS.get(state, frozenset())
            stale = [name for name in timers if name not in allowed]
            for name in stale:
                del timers[name]
            if stale:
                self._host._cancelled(len(stale))
        if state is _S.TERMINATED:
            self._release()
            self._host._terminated(self)

    def _release(self) -> None:
        """Drop what only retransmissions needed: an ended transaction may stay referenced for a whole call
        (a leg keeps its INVITE's), and its serialized messages would stay with it (issue 9: memory per
        idle call)."""

    def _start(self, name: str, delay: float, now: float) -> None:
        if delay <= 0.0:
            self._step(f"Timer {name}", name, now)
            return
        if name in self.timers:
            self._host._cancelled(1)
        deadline = now + delay
        self.timers[name] = deadline
        self._host._schedule(self, name, deadline)

    def _cancel(self, name: str) -> None:
        if self.timers.pop(name, None) is not None:
            self._host._cancelled(1)

    def fire(self, name: str, now: float) -> None:
        """The layer popped this transaction's timer ``name`` (already removed from ``timers``)."""
        self._step(f"Timer {name}", name, now)

    def abort(self) -> None:
        """Terminate at once (a transport error, §17.1.4, §17.2.4)."""
        if self.state is not _S.TERMINATED:
            self._enter(_S.TERMINATED)

    # -- actions shared by the machines ----------------------------------------------------------------
    def _timeout(self, timer: str, now: float) -> None:
        txn = cast("ClientTransaction | ServerTransaction", self)
        self._host._emit(TransactionTimeout(transaction=txn, timer=timer))


# -- client transactions (§17.1) ----------------------------------------------------------------------------

class ClientTransaction(Transaction):
    """A client transaction: the handle ``send_request`` returns and ``ResponseReceived`` carries."""

    __slots__ = ("_data",)

    def __init__(self, host: TransactionHost, key: tuple[object, ...], request: Request, peer: Peer,
                 state: State) -> None:
        super().__init__(host, key, request, peer, state)
        self._data = request.to_bytes()

    def receive_response(self, response: Response, peer: Peer, now: float) -> None:
        self._source = peer
        self._step(_status_input(response.status), response, now)

    def _retransmit(self, _: object, now: float) -> None:
        self._host._send(self._data, self.peer)

    def _release(self) -> None:
        self._data = b""

    def _to_tu(self, response: Response, now: float) -> None:
        self._host._emit(ResponseReceived(response=response, peer=self._source, transaction=self))


class InviteClientTransaction(ClientTransaction):
    """§17.1.1 (Figure 5) with RFC 6026 §8.4: a 2xx leads to Accepted, where later 2xx still reach the TU."""

    __slots__ = ("_ack",)

    def __init__(self, host: TransactionHost, key: tuple[object, ...], request: Request, peer: Peer) -> None:
        super().__init__(host, key, request, peer, _S.CALLING)
        self._ack: bytes | None = None

    def start(self, now: float) -> None:
        self._host._send(self._data, self.peer)
        if not self.reliable:
            self._interval = self._host.t1
            self._start("A", self._interval, now)
        self._start("B", 64 * self._host.t1, now)

    def _backoff_a(self, _: object, now: float) -> None:
        self._interval *= 2  # §17.1.1.2: Timer A doubles without a cap
        self._start("A", self._interval, now)

    def _release(self) -> None:
        super()._release()
        self._ack = None

    def _send_ack(self, response: Response, now: float) -> None:
        if self._ack is None:
            self._ack = build_ack(self.request, response).to_bytes()
        self._host._send(self._ack, self.peer)  # §17.1.1.3: to where the INVITE went

    def _start_d(self, _: object, now: float) -> None:
        self._start("D", 0.0 if self.reliable else max(32.0, 64 * self._host.t1), now)

    def _start_m(self, _: object, now: float) -> None:
        self._start("M", 64 * self._host.t1, now)


class NonInviteClientTransaction(ClientTransaction):
    """§17.1.2 (Figure 6)."""

    __slots__ = ()

    def __init__(self, host: TransactionHost, key: tuple[object, ...], request: Request, peer: Peer) -> None:
        super().__init__(host, key, request, peer, _S.TRYING)

    def start(self, now: float) -> None:
        self._host._send(self._data, self.peer)
        if not self.reliable:
            self._interval = self._host.t1
            self._start("E", self._interval, now)
        self._start("F", 64 * self._host.t1, now)

    def _backoff_e(self, _: object, now: float) -> None:
        # §17.1.2.2: doubling up to T2 in Trying; every T2 once a provisional response came (Proceeding)
        host = self._host
        self._interval = min(2 * self._interval, host.t2) if self.state is _S.TRYING else host.t2
        self._start("E", self._interval, now)

    def _start_k(self, _: object, now: float) -> None:
        self._start("K", 0.0 if self.reliable else self._host.t4, now)


_ICT = InviteClientTransaction
InviteClientTransaction.TIMERS = {
    _S.CALLING: frozenset({"A", "B"}), _S.COMPLETED: frozenset({"D"}), _S.ACCEPTED: frozenset({"M"}),
}
InviteClientTransaction.TABLE = {
    (_S.CALLING, "Timer A"): (_S.CALLING, (_ICT._retransmit, _ICT._backoff_a)),
    (_S.CALLING, "Timer B"): (_S.TERMINATED, (_ICT._timeout,)),
    (_S.CALLING, "1xx"): (_S.PROCEEDING, (_ICT._to_tu,)),
    (_S.CALLING, "2xx"): (_S.ACCEPTED, (_ICT._to_tu, _ICT._start_m)),
    (_S.CALLING, "300-699"): (_S.COMPLETED, (_ICT._to_tu, _ICT._send_ack, _ICT._start_d)),
    (_S.PROCEEDING, "1xx"): (_S.PROCEEDING, (_ICT._to_tu,)),
    (_S.PROCEEDING, "2xx"): (_S.ACCEPTED, (_ICT._to_tu, _ICT._start_m)),
    (_S.PROCEEDING, "300-699"): (_S.COMPLETED, (_ICT._to_tu, _ICT._send_ack, _ICT._start_d)),
    (_S.COMPLETED, "300-699"): (_S.COMPLETED, (_ICT._send_ack,)),  # a retransmission: not to the TU
    (_S.COMPLETED, "Timer D"): (_S.TERMINATED, ()),
    (_S.ACCEPTED, "2xx"): (_S.ACCEPTED, (_ICT._to_tu,)),  # RFC 6026 §8.4: 2xx from other forks too
    (_S.ACCEPTED, "Timer M"): (_S.TERMINATED, ()),
}

_NICT = NonInviteClientTransaction
NonInviteClientTransaction.TIMERS = {
    _S.TRYING: frozenset({"E", "F"}), _S.PROCEEDING: frozenset({"E", "F"}), _S.COMPLETED: frozenset({"K"}),
}
NonInviteClientTransaction.TABLE = {
    (_S.TRYING, "Timer E"): (_S.TRYING, (_NICT._retransmit, _NICT._backoff_e)),
    (_S.TRYING, "Timer F"): (_S.TERMINATED, (_NICT._timeout,)),
    (_S.TRYING, "1xx"): (_S.PROCEEDING, (_NICT._to_tu,)),
    (_S.TRYING, "2xx"): (_S.COMPLETED, (_NICT._to_tu, _NICT._start_k)),
    (_S.TRYING, "300-699"): (_S.COMPLETED, (_NICT._to_tu, _NICT._start_k)),
    (_S.PROCEEDING, "Timer E"): (_S.PROCEEDING, (_NICT._retransmit, _NICT._backoff_e)),
    (_S.PROCEEDING, "Timer F"): (_S.TERMINATED, (_NICT._timeout,)),
    (_S.PROCEEDING, "1xx"): (_S.PROCEEDING, (_NICT._to_tu,)),
    (_S.PROCEEDING, "2xx"): (_S.COMPLETED, (_NICT._to_tu, _NICT._start_k)),
    (_S.PROCEEDING, "300-699"): (_S.COMPLETED, (_NICT._to_tu, _NICT._start_k)),
    (_S.COMPLETED, "Timer K"): (_S.TERMINATED, ()),
}


# -- server transactions (§17.2) ----------------------------------------------------------------------------

class ServerTransaction(Transaction):
    """A server transaction: the handle ``RequestReceived`` carries and ``layer.respond`` takes."""

    __slots__ = ("rfc2543", "_response", "_to_tag")

    def __init__(self, host: TransactionHost, key: tuple[object, ...], request: Request, peer: Peer,
                 state: State, *, rfc2543: bool) -> None:
        super().__init__(host, key, request, peer, state)
        self.rfc2543 = rfc2543  # matched without an RFC 3261 branch (§17.2.3)
        self._response: bytes | None = None  # the last response sent, for retransmission
        self._to_tag: str | None = None  # To tag of the final response (RFC 2543 ACK matching)

    @property
    def responded(self) -> bool:
        return self._response is not None

    def receive_request(self, request: Request, peer: Peer, now: float) -> None:
        """A retransmission of the request that created this transaction."""
        self._source = peer
        self._step("request", request, now)

    def receive_ack(self, ack: Request, peer: Peer, now: float) -> bool:
        """An ACK matching this transaction's key; False if it is not ours after all (RFC 2543 To tag)."""
        if self.rfc2543 and ack.to.tag != self._to_tag:
            return False
        self._source = peer
        self._step("ACK", ack, now)
        return True

    def same_request(self, request: Request) -> bool:
        """RFC 2543 matching: the To tag is part of what a retransmission repeats (§17.2.3)."""
        return request.to.tag == self.request.to.tag

    def respond(self, response: Response, now: float) -> None:
        status = response.status
        if not 100 <= status <= 699:
            raise SipUsageError(f"status {status} out of range")
        self._step("TU " + _status_input(status), response, now)

    def _send_response(self, response: Response, now: float) -> None:
        data = response.to_bytes()
        self._response = data
        if self.rfc2543 and response.status >= 200:
            self._to_tag = response.to.tag
        self._host._send(data, self.peer)

    def _resend_response(self, _: object, now: float) -> None:
        if self._response is not None:
            self._host._send(self._response, self.peer)

    def _release(self) -> None:
        if self._response is not None:
            self._response = b""  # not None: ``responded`` stays true


class InviteServerTransaction(ServerTransaction):
    """§17.2.1 (Figure 7) with RFC 6026 §7.1: a 2xx leads to Accepted (Timer L), where retransmitted
    INVITEs are absorbed, ACKs go to the TU, and the TU's 2xx retransmissions are sent.
    """

    __slots__ = ()

    def __init__(self, host: TransactionHost, key: tuple[object, ...], request: Request, peer: Peer, *,
                 rfc2543: bool) -> None:
        super().__init__(host, key, request, peer, _S.PROCEEDING, rfc2543=rfc2543)

    def start(self, now: float) -> None:
        delay = self._host.trying_delay
        if delay is not None:
            self._start("trying", delay, now)

    def _send_tu_response(self, response: Response, now: float) -> None:
        self._cancel("trying")
        self._send_response(response, now)

    def _send_trying(self, _: object, now: float) -> None:
        # §17.2.1: a 100 if the TU has not answered within 200 ms (§8.2.6.1: Timestamp is copied)
        if self._response is None:
            stamp = self.request.headers.get("timestamp")
            extra = [("Timestamp", stamp)] if stamp is not None else []
            self._send_response(make_response(self.request, 100, headers=extra), now)

    def _start_g(self, _: object, now: float) -> None:
        if not self.reliable:
            self._interval = self._host.t1
            self._start("G", self._interval, now)

    def _backoff_g(self, _: object, now: float) -> None:
        self._interval = min(2 * self._interval, self._host.t2)
        self._start("G", self._interval, now)

    def _start_h(self, _: object, now: float) -> None:
        self._start("H", 64 * self._host.t1, now)

    def _start_i(self, _: object, now: float) -> None:
        self._start("I", 0.0 if self.reliable else self._host.t4, now)

    def _start_l(self, _: object, now: float) -> None:
        self._start("L", 64 * self._host.t1, now)

    def _ack_to_tu(self, ack: Request, now: float) -> None:
        self._host._emit(AckReceived(request=ack, peer=self._source))


class NonInviteServerTransaction(ServerTransaction):
    """§17.2.2 (Figure 8)."""

    __slots__ = ()

    def __init__(self, host: TransactionHost, key: tuple[object, ...], request: Request, peer: Peer, *,
                 rfc2543: bool) -> None:
        super().__init__(host, key, request, peer, _S.TRYING, rfc2543=rfc2543)

    def start(self, now: float) -> None:
        limit = self._host.unanswered_limit
        if limit is not None:
            self._start("unanswered", limit, now)

    def _start_j(self, _: object, now: float) -> None:
        self._start("J", 0.0 if self.reliable else 64 * self._host.t1, now)
        if not self.rfc2543:
            # Completed keeps only the response bytes for the 32 s of Timer J: letting the parsed
            # request go keeps a registrar at thousands of REGISTERs a second from holding (and the
            # garbage collector from scanning) hundreds of thousands of message objects
            self.request = _RELEASED


_RELEASED = Request("RELEASED", "sip:released.invalid")  # what a Completed transaction keeps of its request

_IST = InviteServerTransaction
InviteServerTransaction.TIMERS = {
    _S.PROCEEDING: frozenset({"trying"}), _S.COMPLETED: frozenset({"G", "H"}),
    _S.CONFIRMED: frozenset({"I"}), _S.ACCEPTED: frozenset({"L"}),
}
InviteServerTransaction.TABLE = {
    (_S.PROCEEDING, "request"): (_S.PROCEEDING, (_IST._resend_response,)),  # the last provisional, if any
    (_S.PROCEEDING, "Timer trying"): (_S.PROCEEDING, (_IST._send_trying,)),
    (_S.PROCEEDING, "TU 1xx"): (_S.PROCEEDING, (_IST._send_tu_response,)),
    (_S.PROCEEDING, "TU 2xx"): (_S.ACCEPTED, (_IST._send_tu_response, _IST._start_l)),
    (_S.PROCEEDING, "TU 300-699"): (_S.COMPLETED, (_IST._send_tu_response, _IST._start_g, _IST._start_h)),
    (_S.COMPLETED, "request"): (_S.COMPLETED, (_IST._resend_response,)),
    (_S.COMPLETED, "Timer G"): (_S.COMPLETED, (_IST._resend_response, _IST._backoff_g)),
    (_S.COMPLETED, "Timer H"): (_S.TERMINATED, (_IST._timeout,)),
    (_S.COMPLETED, "ACK"): (_S.CONFIRMED, (_IST._start_i,)),
    (_S.CONFIRMED, "Timer I"): (_S.TERMINATED, ()),  # ACKs and INVITEs until then are absorbed
    (_S.ACCEPTED, "ACK"): (_S.ACCEPTED, (_IST._ack_to_tu,)),  # retransmitted INVITEs are absorbed
    (_S.ACCEPTED, "TU 2xx"): (_S.ACCEPTED, (_IST._send_tu_response,)),
    (_S.ACCEPTED, "Timer L"): (_S.TERMINATED, ()),
}

_NIST = NonInviteServerTransaction
NonInviteServerTransaction.TIMERS = {
    _S.TRYING: frozenset({"unanswered"}), _S.PROCEEDING: frozenset({"unanswered"}),
    _S.COMPLETED: frozenset({"J"}),
}
NonInviteServerTransaction.TABLE = {
    # in Trying a retransmission is absorbed: there is nothing to re-send yet
    (_S.TRYING, "TU 1xx"): (_S.PROCEEDING, (_NIST._send_response,)),
    (_S.TRYING, "TU 2xx"): (_S.COMPLETED, (_NIST._send_response, _NIST._start_j)),
    (_S.TRYING, "TU 300-699"): (_S.COMPLETED, (_NIST._send_response, _NIST._start_j)),
    (_S.TRYING, "Timer unanswered"): (_S.TERMINATED, (_NIST._timeout,)),
    (_S.PROCEEDING, "request"): (_S.PROCEEDING, (_NIST._resend_response,)),
    (_S.PROCEEDING, "TU 1xx"): (_S.PROCEEDING, (_NIST._send_response,)),
    (_S.PROCEEDING, "TU 2xx"): (_S.COMPLETED, (_NIST._send_response, _NIST._start_j)),
    (_S.PROCEEDING, "TU 300-699"): (_S.COMPLETED, (_NIST._send_response, _NIST._start_j)),
    (_S.PROCEEDING, "Timer unanswered"): (_S.TERMINATED, (_NIST._timeout,)),
    (_S.COMPLETED, "request"): (_S.COMPLETED, (_NIST._resend_response,)),  # later TU responses: discarded
    (_S.COMPLETED, "Timer J"): (_S.TERMINATED, ()),
}
