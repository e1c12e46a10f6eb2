"""Typed dialing errors, in two families: what a person dialed is not a number (their fault, answer the
call with 484 Address Incomplete / a 422 in the API), and a plan or policy is misconfigured (our fault).
"""

from __future__ import annotations

from enum import StrEnum


class DialingError(Exception):
    """Base of all errors raised by :mod:`zvonok.dialing`."""


class InvalidReason(StrEnum):
    """Why a dialed string is not a number; a stable machine code for APIs, CDRs and logs."""

    EMPTY = "empty"  # no digits at all
    INVALID_CHARACTER = "invalid_character"  # a letter, '*', '#', a non-ASCII digit …
    MISPLACED_PLUS = "misplaced_plus"  # '+' after the first digit, or twice
    TOO_LONG = "too_long"  # more than the 15 digits E.164 allows (ITU-T E.164 §6)
    TOO_SHORT = "too_short"  # an international form with too few digits for any country
    BAD_COUNTRY_CODE = "bad_country_code"  # country codes never start with 0
    WRONG_LENGTH = "wrong_length"  # a number of the plan's own country with the wrong digit count
    UNKNOWN_FORM = "unknown_form"  # digits that fit no rule of the plan (and are not an extension)


class InvalidNumber(DialingError, ValueError):
    """The dialed string cannot be normalized. ``reason`` is the code, ``str(error)`` says it to a human.

    SIP answers it with 484 (Address Incomplete, RFC 3261 §21.4.22): the caller may dial again.
    """

    sip_status = 484

    def __init__(self, reason: InvalidReason, dialed: str, detail: str) -> None:
        super().__init__(f"{dialed!r}: {detail}")
        self.reason = reason
        self.dialed = dialed
        self.detail = detail


class PlanError(DialingError, ValueError):
    """A :class:`~zvonok.dialing.plan.DialPlan` was built with values that cannot work (a bug or bad config)."""


class PolicyError(DialingError, ValueError):
    """A calling policy was built with a malformed prefix or contradicts itself (bad config)."""
