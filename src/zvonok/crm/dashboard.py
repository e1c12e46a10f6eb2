"""The management dashboard of the sales process: deals by stage (count, amount), won this month,
conversion per stage, overdue tasks by employee and calls per employee this month (from the CDRs).

Conversion of a stage is the share of the deals that ever reached it (by the stage history) that also
reached a later open stage or won: "of those that got here, how many went on"."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from pydantic import BaseModel
from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from zvonok.cdr.models import Cdr
from zvonok.org.models import Employee
from zvonok.storage.base import utcnow

from .deals import default_pipeline, get_pipeline, stages_of
from .models import CrmDeal, CrmDealMove
from .tasks import overdue_by_employee


class StageRow(BaseModel):
    stage_id: int
    name: str
    kind: str
    deals: int
    amount: Decimal
    reached: int
    conversion: float | None  # percent; None: no deal reached the stage (or won/lost)


class EmployeeCount(BaseModel):
    name: str
    count: int


class EmployeeCalls(BaseModel):
    name: str
    calls: int
    answered: int


class Dashboard(BaseModel):
    pipeline_id: int
    pipeline_name: str
    currency: str
    stages: list[StageRow]
    won_this_month: int
    won_amount_this_month: Decimal
    overdue_tasks: list[EmployeeCount]
    calls: list[EmployeeCalls]


def month_start(now: datetime) -> datetime:
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


async def build(session: AsyncSession, tenant_id: int, pipeline_id: int | None = None,
                now: datetime | None = None) -> Dashboard:
    now = now or utcnow()
    pipeline = (await get_pipeline(session, tenant_id, pipeline_id) if pipeline_id is not None
                else await default_pipeline(session, tenant_id))
    stages = await stages_of(session, tenant_id, pipeline.id)
    counts = {int(s): (int(n), Decimal(str(a or 0))) for s, n, a in await session.execute(
        select(CrmDeal.stage_id, func.count(CrmDeal.id), func.sum(CrmDeal.amount))
        .where(CrmDeal.tenant_id == tenant_id, CrmDeal.pipeline_id == pipeline.id).group_by(CrmDeal.stage_id))}
    reached: dict[int, set[int]] = {s.id: set() for s in stages}
    for deal_id, stage_id in await session.execute(
            select(CrmDealMove.deal_id, CrmDealMove.to_stage_id).join(CrmDeal, CrmDeal.id == CrmDealMove.deal_id)
            .where(CrmDealMove.tenant_id == tenant_id, CrmDeal.pipeline_id == pipeline.id)):
        if stage_id in reached:
            reached[stage_id].add(int(deal_id))
    rows = []
    for i, stage in enumerate(stages):
        conversion = None
        if stage.kind == "open" and reached[stage.id]:
            later = set().union(*(reached[s.id] for s in stages[i + 1:] if s.kind != "lost"))
            conversion = round(100.0 * len(reached[stage.id] & later) / len(reached[stage.id]), 1)
        n, amount = counts.get(stage.id, (0, Decimal(0)))
        rows.append(StageRow(stage_id=stage.id, name=stage.name, kind=stage.kind, deals=n,
                             amount=amount.quantize(Decimal("0.01")), reached=len(reached[stage.id]),
                             conversion=conversion))
    won_ids = [s.id for s in stages if s.kind == "won"]
    won_n, won_amount = (await session.execute(
        select(func.count(CrmDeal.id), func.sum(CrmDeal.amount)).where(
            CrmDeal.tenant_id == tenant_id, CrmDeal.stage_id.in_(won_ids), CrmDeal.closed_at >= month_start(now)))).one()
    employee = func.coalesce(Cdr.callee_employee_id, Cdr.caller_employee_id)
    calls = [EmployeeCalls(name=str(name), calls=int(n), answered=int(ok or 0)) for name, n, ok in await session.execute(
        select(Employee.full_name, func.count(Cdr.id), func.sum(case((Cdr.disposition == "answered", 1), else_=0)))
        .join(Employee, Employee.id == employee)
        .where(Cdr.tenant_id == tenant_id, Cdr.started_at >= month_start(now))
        .group_by(Employee.id, Employee.full_name).order_by(func.count(Cdr.id).desc()))]
    return Dashboard(pipeline_id=pipeline.id, pipeline_name=pipeline.name, currency=pipeline.currency, stages=rows,
                     won_this_month=int(won_n), won_amount_this_month=Decimal(str(won_amount or 0)).quantize(Decimal("0.01")),
                     overdue_tasks=[EmployeeCount(name=n, count=c) for n, c in await overdue_by_employee(session, tenant_id, now)],
                     calls=calls)
