"""Call park slots: which calls of which company wait in which slot, and until when. Sans-I/O.

How it works (the numbers Asterisk's and FreePBX's users know): a blind transfer to the park number
(``700``) puts the transferred party in the first free slot of its company (``701``–``720``); a transfer
to a slot number parks it there, if that slot is free. Each company has its own slots: two companies
may both have a call in 701. A parked call waits until someone dials its slot (:meth:`ParkingLot.take`),
its party hangs up (:meth:`ParkingLot.remove`) or the park timeout passes: the engine asks
:meth:`ParkingLot.next_deadline` when to look again and :meth:`ParkingLot.expired` which calls are due
(it then rings back whoever parked them). Time is an argument (``now``); nothing here awaits or sleeps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")

PARK_NUMBER = "700"
FIRST_SLOT = 701
SLOTS = 20
DEFAULT_TIMEOUT = 120.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Parked(Generic[T]):
    tenant_id: int
    slot: int
    item: T  # what the engine parks (its call and the parked leg)
    parked_at: float
    deadline: float


class ParkingLot(Generic[T]):
    """Every company's park slots; one instance serves the whole server."""

    def __init__(self, *, park_number: str = PARK_NUMBER, first_slot: int = FIRST_SLOT, slots: int = SLOTS,
                 timeout: float = DEFAULT_TIMEOUT) -> None:
        if slots < 1 or timeout <= 0:
            raise ValueError("a parking lot needs at least one slot and a positive timeout")
        self.park_number = park_number
        self.first_slot = first_slot
        self.last_slot = first_slot + slots - 1
        self.timeout = timeout
        self._tenants: dict[int, dict[int, Parked[T]]] = {}

    # -- numbers ------------------------------------------------------------------------------------------
    def slot_of(self, number: str) -> int | None:
        """The slot a dialed number names (None: not a slot number)."""
        if not number.isdigit() or len(number) > 6:
            return None
        slot = int(number)
        return slot if self.first_slot <= slot <= self.last_slot and str(slot) == number else None

    def is_park_number(self, number: str) -> bool:
        """``number`` parks a call transferred to it: the park number or one slot."""
        return number == self.park_number or self.slot_of(number) is not None

    # -- parking --------------------------------------------------------------------------------------------
    def park(self, tenant_id: int, number: str, item: T, now: float) -> Parked[T] | None:
        """Park ``item``: the park number takes the first free slot, a slot number that slot. None: the
        slot is taken, every slot is, or ``number`` parks nothing."""
        taken = self._tenants.setdefault(tenant_id, {})
        if number == self.park_number:
            slot = next((s for s in range(self.first_slot, self.last_slot + 1) if s not in taken), None)
        else:
            slot = self.slot_of(number)
            if slot in taken:
                slot = None
        if slot is None:
            if not taken:
                del self._tenants[tenant_id]
            return None
        parked = Parked(tenant_id=tenant_id, slot=slot, item=item, parked_at=now, deadline=now + self.timeout)
        taken[slot] = parked
        return parked

    def peek(self, tenant_id: int, slot: int) -> Parked[T] | None:
        return self._tenants.get(tenant_id, {}).get(slot)

    def take(self, tenant_id: int, slot: int) -> Parked[T] | None:
        """Retrieve the call parked in ``slot`` (None: nothing is): the slot is free again."""
        taken = self._tenants.get(tenant_id)
        parked = taken.pop(slot, None) if taken is not None else None
        if taken is not None and not taken:
            del self._tenants[tenant_id]
        return parked

    def remove(self, tenant_id: int, slot: int, item: T) -> bool:
        """``item`` leaves its slot (its party hung up); False if the slot holds something else now."""
        parked = self.peek(tenant_id, slot)
        if parked is None or parked.item is not item:
            return False
        self.take(tenant_id, slot)
        return True

    def parked(self, tenant_id: int) -> list[Parked[T]]:
        """The company's parked calls by slot."""
        return sorted(self._tenants.get(tenant_id, {}).values(), key=lambda p: p.slot)

    def __len__(self) -> int:
        return sum(len(taken) for taken in self._tenants.values())

    # -- the park timeout -------------------------------------------------------------------------------------
    def next_deadline(self) -> float | None:
        """When the first parked call times out (None: no call is parked)."""
        return min((p.deadline for taken in self._tenants.values() for p in taken.values()), default=None)

    def expired(self, now: float) -> list[Parked[T]]:
        """The calls whose park timeout has come, oldest deadline first; their slots are free again."""
        due = sorted((p for taken in self._tenants.values() for p in taken.values() if p.deadline <= now),
                     key=lambda p: (p.deadline, p.tenant_id, p.slot))
        for parked in due:
            self.take(parked.tenant_id, parked.slot)
        return due
