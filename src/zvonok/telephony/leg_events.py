"""What a :class:`~zvonok.telephony.leg.Leg` takes and gives: its settings, injected ids, the actions for
the transaction layer, the events for the Call, and its two error families.

Frozen keyword-only dataclasses, as in h11 and :mod:`zvonok.sip.transaction_events`. Actions map one to
one onto :class:`~zvonok.sip.transaction.TransactionLayer` calls (see each docstring); events say what
happened to the leg in call terms, with no SIP left in them but the status codes.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

from zvonok.sip.message import Request, Response
from zvonok.sip.sdp_offer_answer import DEFAULT_CODECS, Codec, NegotiatedMedia
from zvonok.sip.sdp_t38 import NegotiatedT38
from zvonok.sip.transaction import ServerTransaction

__all__ = [
    "Action", "Answered", "CancelInvite", "Challenged", "Held", "LegConfig", "LegError", "LegEvent", "LegIds",
    "LegProtocolError", "LegUsageError", "MediaUpdated", "OfferReceived", "Progress", "ReofferFailed",
    "RequestForApplication", "Resumed", "SendRequest", "SendResponse", "SendStateless", "SetUpOver", "Terminated",
    "TerminationCause",
]


# -- settings and injected ids ---------------------------------------------------------------------------

@dataclass(frozen=True, slots=True, kw_only=True)
class LegConfig:
    """Where we are and what we may do on one leg.

    ``transport``/``host``/``port``: our sent-by for the Via (the transport the leg's peer is reached
    over); ``contact``: our Contact; ``media_host``/``media_port``: the RTP endpoint our SDP names.
    ``t1``/``t2`` as in RFC 3261 Table 4. ``session_expires``: the RFC 4028 interval we ask for as UAC
    (None: we ask for none; as UAS we still honour the peer's); ``min_se``: the smallest we accept.
    ``srtp_key``/``srtp_required``: SRTP with SDES keys as :mod:`zvonok.sip.sdp_offer_answer` runs it.
    """

    transport: str
    host: str
    port: int
    contact: str
    media_host: str
    media_port: int
    codecs: tuple[Codec, ...] = DEFAULT_CODECS
    t1: float = 0.5
    t2: float = 4.0
    session_expires: int | None = None
    min_se: int = 90
    srtp_key: bytes | None = None  # our SDES master key || salt (RFC 4568): offered and accepted with it
    srtp_required: bool = False  # plain RTP offers are refused (488)

    @property
    def reliable(self) -> bool:
        # RFC 3261 §13.3.1.4 retransmits the 2xx for the unreliable hop; our engine does not on TCP/TLS
        return self.transport.lower() in ("tcp", "tls", "ws", "wss")


@dataclass(frozen=True, slots=True, kw_only=True)
class LegIds:
    """Everything random a leg needs, injected so that tests are exact.

    ``tag`` and ``branch`` give fresh tokens (a branch gets the magic cookie in front if missing);
    ``uniform(a, b)`` draws a float in [a, b] (the 491 back-off, RFC 3261 §14.1); ``cseq`` is the first
    CSeq of a UAC leg's INVITE (§8.1.1.5: any value below 2**31).
    """

    tag: Callable[[], str]
    branch: Callable[[], str]
    uniform: Callable[[float, float], float]
    cseq: int = 1


# -- errors ------------------------------------------------------------------------------------------------

class LegError(Exception):
    """Base of the leg's errors."""


class LegUsageError(LegError):
    """The engine drove the leg wrongly: an input with no row in the transition table for the state."""

    def __init__(self, state: object, what: str) -> None:
        super().__init__(f"{what} is not allowed in state {state}")
        self.state = state
        self.what = what


class LegProtocolError(LegError):
    """The peer sent what the leg cannot take; ``status`` is the response it implies (the leg answers
    with it itself, so the engine only sees this error if it feeds a request outside a leg's dialog)."""

    def __init__(self, reason: str, status: int, headers: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(reason)
        self.status = status
        self.headers = headers  # to put in the response (Min-SE on a 422)


# -- actions: for the transaction layer ----------------------------------------------------------------

@dataclass(frozen=True, slots=True, kw_only=True)
class SendRequest:
    """``txn = layer.send_request(request, leg_peer, now)``: the request has its top Via without a branch.

    An INVITE without a To tag is the leg's initial INVITE (or its retry with credentials): the engine
    keeps its transaction for :class:`CancelInvite`. The engine feeds the transaction's responses back
    with ``leg.receive_response`` and a timeout or a transport error with
    ``leg.transaction_failed(txn.request, now)``.
    """

    request: Request


@dataclass(frozen=True, slots=True, kw_only=True)
class CancelInvite:
    """``layer.cancel_request(invite_txn, now)`` on the leg's initial INVITE (it is in Proceeding), with
    ``reason`` as its Reason header (RFC 3326), e.g. ``SIP;cause=200;text="Call completed elsewhere"``."""

    reason: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SendResponse:
    """``layer.respond(transaction, response, now)``."""

    transaction: ServerTransaction
    response: Response


@dataclass(frozen=True, slots=True, kw_only=True)
class SendStateless:
    """``layer.send_stateless(message, leg_peer)``: an ACK for a 2xx (its own branch already in the Via)
    or a retransmission of our 2xx to an INVITE (RFC 3261 §13.3.1.4)."""

    message: Request | Response


Action = SendRequest | CancelInvite | SendResponse | SendStateless


# -- events: for the Call ------------------------------------------------------------------------------

class TerminationCause(enum.StrEnum):
    REMOTE_BYE = "remote_bye"  # the peer hung up
    LOCAL_BYE = "local_bye"  # we hung up an established leg
    REJECTED = "rejected"  # a final non-2xx to the initial INVITE, theirs (UAC) or ours (UAS)
    CANCELLED = "cancelled"  # we cancelled our INVITE (ACK and BYE if a 2xx crossed the CANCEL)
    REMOTE_CANCEL = "remote_cancel"  # the peer cancelled its INVITE
    TIMEOUT = "timeout"  # a transaction timed out: the peer is gone (RFC 3261 §8.1.3.1)
    NO_ACK = "no_ack"  # our 2xx never got its ACK (§13.3.1.4)
    SESSION_EXPIRED = "session_expired"  # RFC 4028 §10: no refresh in time, or the refresh failed
    DIALOG_GONE = "dialog_gone"  # 481 to a request in the dialog (§12.2.1.2)


@dataclass(frozen=True, slots=True, kw_only=True)
class Progress:
    """A provisional response to our INVITE; ``media`` when it brought the answer (early media)."""

    status: int
    reason: str
    media: NegotiatedMedia | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Challenged:
    """401 or 407 to our INVITE: the engine answers the challenge with ``leg.authenticate(headers, now)``
    (see :mod:`zvonok.sip.digest_client`) or gives up with ``leg.hangup(now)``."""

    response: Response


@dataclass(frozen=True, slots=True, kw_only=True)
class Answered:
    """The leg is established: the 2xx came (UAC) or the ACK for ours (UAS). ``media`` as agreed then."""

    media: NegotiatedMedia | None


@dataclass(frozen=True, slots=True, kw_only=True)
class OfferReceived:
    """The peer offered and we answered it (initial INVITE as UAS, or a re-INVITE/UPDATE)."""

    media: NegotiatedMedia


@dataclass(frozen=True, slots=True, kw_only=True)
class MediaUpdated:
    """The answer to our re-offer was applied."""

    media: NegotiatedMedia


@dataclass(frozen=True, slots=True, kw_only=True)
class T38Agreed:
    """The answer to our T.38 re-offer accepted it: the fax goes over UDPTL from now on."""

    image: NegotiatedT38


@dataclass(frozen=True, slots=True)
class Held:
    """The peer put us on hold (its offer stopped receiving, RFC 3264 §8.4)."""


@dataclass(frozen=True, slots=True)
class Resumed:
    """The peer took us off hold."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ReofferFailed:
    """Our re-INVITE was refused (not 491, which the leg retries itself); the session is unchanged."""

    status: int


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestForApplication:
    """A request in the dialog the leg does not handle itself (INFO, REFER, NOTIFY, MESSAGE …): the
    engine answers it with ``leg.respond(transaction, request, status, now)``."""

    request: Request
    transaction: ServerTransaction


@dataclass(frozen=True, slots=True, kw_only=True)
class SetUpOver:
    """64*T1 after the INVITE's 2xx: the INVITE transactions are over on both sides (RFC 6026 Timers L and
    M) and no retransmitted 2xx can come any more. The leg keeps only ``invite``, a small record of its
    initial INVITE (:func:`~.leg_messages.invite_record`); the engine drops its own references to the
    INVITE and its transactions for it (issue 9: memory per idle call)."""

    invite: Request


@dataclass(frozen=True, slots=True, kw_only=True)
class Terminated:
    """The leg is over and needs nothing more; ``status`` is the final response when there was one."""

    cause: TerminationCause
    status: int | None = None


LegEvent = (
    Progress | Challenged | Answered | OfferReceived | MediaUpdated | Held | Resumed | ReofferFailed | RequestForApplication
    | SetUpOver | Terminated | T38Agreed
)
