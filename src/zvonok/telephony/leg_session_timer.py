"""Session timers (RFC 4028) for one call leg: the interval agreed, who refreshes, and the one deadline.

How it works: a :class:`SessionTimer` reads Session-Expires from the peer's INVITE, re-INVITE or UPDATE
(:meth:`~SessionTimer.from_request`, which refuses an interval under our Min-SE with 422, §8.1) and from the
2xx to ours (:meth:`~SessionTimer.from_response`), writes the headers of ours (:meth:`~SessionTimer.headers`),
and puts the leg's one RFC 4028 timer into its timer dict (:meth:`~SessionTimer.arm`): ``refresh`` at half
the interval when we refresh (§10), else ``expiry`` at the interval less min(32 s, a third) — when the
other side's refresh is overdue and the leg sends a BYE. Each successful re-INVITE or UPDATE, whoever
sent it, re-arms it.
"""

from __future__ import annotations

from zvonok.sip.errors import SipParseError
from zvonok.sip.headers import get_param, parse_params, split_commas
from zvonok.sip.message import Request, Response

from .leg_events import LegProtocolError

__all__ = ["SessionTimer", "session_expires_of", "supports_timer"]


def session_expires_of(message: Request | Response) -> tuple[int, str | None] | None:
    """Session-Expires (RFC 4028 §4, compact ``x``): the interval and the refresher (``"uac"``, ``"uas"``
    or None when not named); None when absent or malformed."""
    value = message.headers.get("session-expires")
    if value is None:
        return None
    delta, _, params = value.partition(";")
    delta = delta.strip()
    if not delta.isdigit() or len(delta) >= 10:
        return None
    try:
        refresher = get_param(parse_params(";" + params, "Session-Expires"), "refresher") if params else None
    except SipParseError:
        refresher = None
    return int(delta), (refresher.lower() if refresher else None)


def supports_timer(message: Request | Response) -> bool:
    values = message.headers.get_all("supported") + message.headers.get_all("require")
    return any(item.strip().lower() == "timer" for value in values for item in split_commas(value))


class SessionTimer:
    """``interval`` is None while no session timer runs; ``we_refresh`` says which side sends refreshes."""

    __slots__ = ("min_se", "interval", "we_refresh")

    def __init__(self, *, min_se: int) -> None:
        self.min_se = min_se
        self.interval: int | None = None
        self.we_refresh = False

    def from_request(self, request: Request) -> None:
        """The peer's request asks for (or refreshes) a session timer; we are the UAS of it (§9)."""
        found = session_expires_of(request)
        if found is None:
            return  # none asked (a refresh without the header keeps the interval and refresher agreed)
        interval, refresher = found
        if interval < self.min_se:
            raise LegProtocolError("session interval too small", 422, (("Min-SE", str(self.min_se)),))
        self.interval = interval
        if refresher is None:  # §9: the UAS chooses; the peer refreshes when it can
            refresher = "uac" if supports_timer(request) else "uas"
        self.we_refresh = refresher == "uas"

    def from_response(self, response: Response) -> None:
        """The 2xx to our INVITE or UPDATE (§7.2): a 2xx naming no refresher leaves it to us, its UAC."""
        found = session_expires_of(response)
        if found is None:
            return
        self.interval = max(found[0], 1)
        self.we_refresh = found[1] != "uas"

    def headers(self, *, answering: bool) -> list[tuple[str, str]]:
        """Session-Expires for our 2xx (``answering``) or our request; the refresher is named from the
        point of view of that transaction's UAC and UAS (§4)."""
        if self.interval is None:
            return []
        if answering:
            refresher = "uas" if self.we_refresh else "uac"
            return [("Session-Expires", f"{self.interval};refresher={refresher}"), ("Require", "timer")]
        refresher = "uac" if self.we_refresh else "uas"
        return [("Session-Expires", f"{self.interval};refresher={refresher}"), ("Supported", "timer")]

    def arm(self, timers: dict[str, float], now: float) -> None:
        """(Re)start the leg's RFC 4028 timer in ``timers`` (name -> deadline)."""
        timers.pop("refresh", None)
        timers.pop("expiry", None)
        if self.interval is None:
            return
        if self.we_refresh:
            timers["refresh"] = now + self.interval / 2  # §10: half the interval is recommended
        else:
            timers["expiry"] = now + self.interval - min(32.0, self.interval / 3)
