"""The engine's ports to the limits that calls in progress count against: a trunk's channels and the
spending ledger (issue 14).

One node keeps them in memory (:class:`zvonok.pstn.holds.LocalHolds`); several nodes on one PostgreSQL
database share them (:class:`zvonok.pstn.holds.SharedHolds`). The engine sees only these protocols:
``acquire`` may wait on the store (bounded), ``release`` never does (the store catches up behind it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

from zvonok.billing.limits import Authorization, Budget
from zvonok.billing.tariffs import Rate
from zvonok.pstn.routing import CallerProfile, PolicyInfo


class StoreUnavailable(Exception):
    """The shared store did not answer in time (or at all): the caller applies its failure policy."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Reservation:
    """A spending decision: ``verdict`` counts what the level's calls in progress (on every node) may still
    cost; ``budgets`` carry the month's booked spend only, for the thresholds the call's own cost crosses."""

    verdict: Authorization
    budgets: list[Budget]
    held: Decimal  # this call's worst-case cost, held against each level until it ends


class TrunkSlots(Protocol):
    async def acquire(self, trunk_id: int, limit: int | None, call_id: str) -> bool:
        """One more call on the trunk; False (nothing held) when it is at ``limit``."""
        ...

    def release(self, trunk_id: int) -> None:
        """One of this node's calls on the trunk is over."""
        ...

    def active(self, trunk_id: int) -> int:
        """This node's calls on the trunk."""
        ...

    def counts(self) -> dict[int, int]:
        """This node's calls per trunk (those with any)."""
        ...

    async def by_node(self, trunk_id: int) -> dict[str, int] | None:
        """The calls on the trunk of every node that has any, by node; None when only this node's count
        is known (one node alone, a trunk whose calls are not shared, the shared store away)."""
        ...


class SpendLedger(Protocol):
    async def reserve(self, call_id: str, profile: CallerProfile, zone: str, limits: Sequence[PolicyInfo],
                      rate: Rate, price: Decimal) -> Reservation:
        """May the call start, for how long, and hold its worst-case cost; :class:`StoreUnavailable` when
        the month's spend cannot be known."""
        ...

    def settle(self, call_id: str) -> None:
        """The call is over: what it held is free (its CDR now carries its real cost)."""
        ...
