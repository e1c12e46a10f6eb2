"""Brute-force protection of ``POST /api/v1/auth/login``: failures are counted per login name and per
client address (an IPv6 client per /64, which one subscriber usually holds whole), each with the SIP
side's :class:`~zvonok.telephony.throttle.FailureThrottle`.

Either counter over its limit refuses the login with 429 and ``Retry-After`` until its ban ends, before
any password is checked, even a right one (else the ban would only slow a guesser down). The login
name is counted as typed (normalised), whether or not such an account exists, so the answers and the
work done never tell known accounts from unknown ones. A success forgets the failures of that login
name only: a valid login of the attacker's own must not wipe the address's count.
"""

from __future__ import annotations

import math

from zvonok.config import Settings
from zvonok.telephony.throttle import FailureThrottle


class LoginGuard:
    """The two counters; ``now`` is a monotonic clock reading."""

    def __init__(self, settings: Settings) -> None:
        window, ban = settings.login_fail_window, settings.login_ban_time
        self.accounts = FailureThrottle(settings.login_fail_limit, window, ban)
        self.addresses = FailureThrottle(settings.login_address_fail_limit, window, ban)

    def retry_after(self, login: str, address: str, now: float) -> int | None:
        """Seconds until a login may be tried again, or None if it may be tried now."""
        untils = [t.blocked_until(k, now) for t, k in ((self.accounts, login), (self.addresses, address))]
        latest = max((u for u in untils if u is not None), default=None)
        return None if latest is None else max(1, math.ceil(latest - now))

    def failed(self, login: str, address: str, now: float) -> None:
        self.accounts.record_failure(login, now)
        self.addresses.record_failure(address, now)

    def succeeded(self, login: str) -> None:
        self.accounts.record_success(login)
