"""The call engine and its spending ledger port (issue 14): a paid call with a limit is decided by the
ledger and its hold is settled when the call ends; a ledger that cannot answer refuses the call cleanly
(503), keeping no trunk channel, media port or call behind."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from callengine_harness import DOMAIN, TENANT, Harness

from zvonok.billing.tariffs import Rate, Tariff
from zvonok.pstn.holds import decide
from zvonok.pstn.routing import CallerProfile, PolicyInfo, TenantInfo
from zvonok.telephony.counters import Reservation, StoreUnavailable


class FakeLedger:
    def __init__(self, *, fail: bool = False) -> None:
        self.fail = fail
        self.reserved: list[str] = []
        self.settled: list[str] = []

    async def reserve(self, call_id: str, profile: CallerProfile, zone: str, limits: Sequence[PolicyInfo],
                      rate: Rate, price: Decimal) -> Reservation:
        if self.fail:
            raise StoreUnavailable("the database is away")
        self.reserved.append(call_id)
        return decide(profile.tenant_id, limits, {}, {}, rate, price)

    def settle(self, call_id: str) -> None:
        self.settled.append(call_id)


def _paid_with_limit(h: Harness) -> None:
    tariff = Tariff(name="Retail", currency="RUB",
                    rates=[Rate(prefix="7", destination="Russia", price_per_minute=Decimal("1.00"))])
    h._snapshot(tenants={TENANT: TenantInfo(id=TENANT, domain=DOMAIN, timezone="UTC", currency="RUB", locale="ru",
                                            suspended=False, tariff=tariff)},
                policies={(TENANT, "tenant", None): PolicyInfo(tenant_id=TENANT, level="tenant", ref_id=None,
                                                               service_class="international",
                                                               monthly_limit=Decimal("5.00"))})


def test_a_paid_call_is_decided_by_the_ledger_and_settled_when_it_ends() -> None:
    with Harness() as h:
        ledger = FakeLedger()
        h.engine.ledger = ledger
        alice = h.extension("101")
        _, carrier = h.trunk(max_calls=1)
        _paid_with_limit(h)
        call = h.call(alice, "84951234567")
        attempt = h.invites_to(carrier)[0]
        h.reply(attempt, 180)
        assert len(ledger.reserved) == 1 and ledger.settled == []
        engine_call = call.engine_call
        assert engine_call is not None and engine_call.max_duration == 300  # 5.00 at 1.00 a minute
        call.cancel()
        h.reply(attempt, 487)
        assert ledger.settled == ledger.reserved
        assert h.trunks.active == {} and not h.engine.calls


def test_a_ledger_that_cannot_answer_refuses_the_paid_call_cleanly() -> None:
    with Harness() as h:
        h.engine.ledger = FakeLedger(fail=True)
        alice = h.extension("101")
        _, carrier = h.trunk(max_calls=1)
        _paid_with_limit(h)
        call = h.call(alice, "84951234567")
        assert call.final_status() == 503
        assert h.invites_to(carrier) == []
        assert h.trunks.active == {} and not h.engine.calls and h.media.in_use == 0
