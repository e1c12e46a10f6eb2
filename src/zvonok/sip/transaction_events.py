"""Events of the transaction layer (RFC 3261 §17): what it tells the TU, and what it puts on the wire.

Frozen keyword-only dataclasses, as in h11. :class:`TransportSend` is not an :data:`Event`: the wire
output is drained separately with :meth:`TransactionLayer.data_to_send`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .message import Request, Response
from .peer import Peer

if TYPE_CHECKING:
    from .transaction_machines import ClientTransaction, ServerTransaction


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestReceived:
    """A new request and its new server transaction: the TU must answer it with ``layer.respond``."""

    request: Request
    peer: Peer
    transaction: ServerTransaction


@dataclass(frozen=True, slots=True, kw_only=True)
class CancelReceived:
    """A CANCEL (its own non-INVITE server transaction, §9.2) and the INVITE it matches, if any.

    The TU answers the CANCEL on ``transaction`` (200, or 481 when ``invite`` is None) and, if the INVITE
    is still unanswered, answers the INVITE with 487.
    """

    request: Request
    peer: Peer
    transaction: ServerTransaction
    invite: ServerTransaction | None


@dataclass(frozen=True, slots=True, kw_only=True)
class AckReceived:
    """An ACK for a 2xx: not part of the INVITE's transaction (§17.1.1.1, RFC 6026); for the dialog layer."""

    request: Request
    peer: Peer


@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseReceived:
    """A response (provisional or final, including retransmitted 2xx to INVITE) for a client transaction."""

    response: Response
    peer: Peer
    transaction: ClientTransaction


@dataclass(frozen=True, slots=True, kw_only=True)
class StrayResponse:
    """A response that matches no client transaction (§17.1.3): a proxy forwards it, a UA drops it."""

    response: Response
    peer: Peer


@dataclass(frozen=True, slots=True, kw_only=True)
class TransactionTimeout:
    """Timer B or F fired: the TU acts as if a 408 arrived (§8.1.3.1). Timer H fired: the ACK never came.

    ``timer`` is the RFC letter, or ``"unanswered"`` for a non-INVITE server transaction the TU never
    answered (not an RFC timer: a guard so that a TU bug cannot grow the table without bound).
    """

    transaction: ClientTransaction | ServerTransaction
    timer: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TransportError:
    """The transport could not send for this transaction; it is terminated (§17.1.4, §17.2.4)."""

    transaction: ClientTransaction | ServerTransaction


@dataclass(frozen=True, slots=True, kw_only=True)
class TransportSend:
    """Bytes to put on the wire to ``peer`` (on ``peer.connection`` for a stream transport)."""

    data: bytes
    peer: Peer


Event = (
    RequestReceived | CancelReceived | AckReceived | ResponseReceived | StrayResponse | TransactionTimeout
    | TransportError
)
