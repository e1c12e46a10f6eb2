"""The states of a call leg and the timers each allows; the table itself is in :mod:`.leg`."""

from __future__ import annotations

import enum

__all__ = [
    "CANCELLED", "ENDING", "IN_DIALOG", "LIVE", "TIMERS", "UAC_OPEN", "UAS_OPEN", "WAIT_ACK", "LegState", "Role",
    "status_class",
]


class Role(enum.StrEnum):
    UAC = "uac"  # we sent the initial INVITE
    UAS = "uas"  # we received it


class LegState(enum.Enum):
    """Where the leg's INVITE dialog stands (the dialog states of §12 split by the INVITE in flight)."""

    IDLE = "idle"  # created, nothing sent or received yet
    CALLING = "calling"  # UAC: INVITE sent, no provisional response yet
    INCOMING = "incoming"  # UAS: INVITE received and accepted for processing, nothing sent but 100
    EARLY = "early"  # a provisional came (UAC) or went (UAS): the INVITE can be cancelled
    CHALLENGED = "challenged"  # UAC: 401/407 to our INVITE; the engine answers it or gives up
    CANCEL_PENDING = "cancel-pending"  # UAC: cancelled before any provisional; the CANCEL waits for one
    CANCELLING = "cancelling"  # UAC: CANCEL sent, waiting for the INVITE's final response
    ACCEPTED = "accepted"  # UAS: our 2xx went, its ACK has not come (RFC 6026's word)
    BYE_AFTER_ACK = "bye-after-ack"  # UAS: as ACCEPTED, and we hang up as soon as the ACK comes (§15)
    CONFIRMED = "confirmed"  # established, no re-INVITE in flight
    REINVITING = "reinviting"  # our re-INVITE is pending
    REINVITED = "reinvited"  # we answered the peer's re-INVITE with a 2xx; its ACK has not come
    TERMINATING = "terminating"  # our BYE is out
    TERMINATED = "terminated"


_S = LegState
IN_DIALOG = {"INVITE": "reINVITE", "BYE": "BYE", "UPDATE": "UPDATE", "OPTIONS": "OPTIONS"}  # input names
_SESSION = frozenset({"refresh", "expiry"})
_AWAIT_ACK = frozenset({"2xx", "ack"})
_SET_UP = frozenset({"accepted"})  # 64*T1 after the INVITE's 2xx: its transactions are over (RFC 6026)

# which timers may run in each state: entering a state cancels the others
TIMERS: dict[LegState, frozenset[str]] = {
    _S.CANCEL_PENDING: frozenset({"cancel"}), _S.CANCELLING: frozenset({"cancel"}),
    _S.ACCEPTED: _AWAIT_ACK | _SESSION | _SET_UP, _S.BYE_AFTER_ACK: _AWAIT_ACK,
    _S.CONFIRMED: _SESSION | _SET_UP | {"glare"}, _S.REINVITING: _SESSION | _SET_UP,
    _S.REINVITED: _AWAIT_ACK | _SESSION | _SET_UP | {"glare"},
}


def status_class(status: int) -> str:
    return "1xx" if status < 200 else "2xx" if status < 300 else "3xx-6xx"


# states that share rows of the table
LIVE = (_S.CONFIRMED, _S.REINVITING, _S.REINVITED)  # established, whatever re-INVITE is in flight
UAC_OPEN = (_S.CALLING, _S.EARLY)  # our INVITE is unanswered
UAS_OPEN = (_S.INCOMING, _S.EARLY)  # the peer's INVITE is unanswered
CANCELLED = (_S.CANCEL_PENDING, _S.CANCELLING)
WAIT_ACK = (_S.ACCEPTED, _S.BYE_AFTER_ACK)
ENDING = frozenset({_S.CANCEL_PENDING, _S.CANCELLING, _S.BYE_AFTER_ACK, _S.TERMINATING, _S.TERMINATED})
