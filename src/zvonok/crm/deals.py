"""The sales process of a tenant: pipelines of ordered stages, deals moving through them, their checklist,
stage history and payments.

How the CRM keeps a manager from skipping a step: each stage names the deal fields (``amount``,
``expected_close``, ``owner_id``, ``client_id``, ``fields.<key>`` of the deal, ``client.<key>`` of its client)
and the checklist steps it requires. A deal moving forward to a stage passes every open stage before it, and
each of those must have its fields filled and its steps done, or the move is refused with
:class:`StepsMissing` (422) naming each missing thing by stage. Won passes every open stage. Lost is allowed
from anywhere but needs a reason; moving back is always allowed (and reopens a closed deal).

Who may change what: a tenant admin every deal; an employee the deals they own (:class:`Actor`). Anyone of
the tenant reads them. Services flush, never commit; events are emitted for after the commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from zvonok.org.errors import Conflict, InUse, PermissionDenied, ValidationError
from zvonok.org.models import Employee, Tenant
from zvonok.org.scope import get_in_tenant
from zvonok.storage.base import utcnow
from zvonok.storage.db import emit

from . import events, schemas
from .models import CrmClient, CrmDeal, CrmDealMove, CrmField, CrmPayment, CrmPipeline, CrmStage
from .service import clean_fields

DEAL_FIELDS = ("amount", "expected_close", "owner_id", "client_id")
DEFAULT_STAGES = (
    schemas.StageIn(name="New", probability=10, goal="Understand what the client needs"),
    schemas.StageIn(name="Qualified", probability=30, goal="The need, the budget and the decision maker are known",
                    required_fields=["amount"]),
    schemas.StageIn(name="Proposal", probability=60, goal="The client has our offer",
                    required_steps=["Send the offer"]),
    schemas.StageIn(name="Won", kind="won", probability=100),
    schemas.StageIn(name="Lost", kind="lost", probability=0),
)


@dataclass(frozen=True)
class Actor:
    """Who changes CRM objects: a tenant admin anything; an employee what they own or are assigned."""

    admin: bool
    employee_id: int | None = None

    def may_edit(self, owner_id: int | None) -> bool:
        return self.admin or (self.employee_id is not None and owner_id == self.employee_id)


class StepsMissing(ValidationError):
    """A move past stages whose required fields or steps are missing; ``missing`` names each."""

    def __init__(self, message: str, missing: list[str]) -> None:
        super().__init__(message, field="stage_id")
        self.missing = missing


def _deny(what: str) -> PermissionDenied:
    return PermissionDenied(f"only the owner or an admin may change this {what}")


# --- pipelines and stages ----------------------------------------------------------------------------
async def list_pipelines(session: AsyncSession, tenant_id: int) -> list[CrmPipeline]:
    return list((await session.execute(select(CrmPipeline).where(CrmPipeline.tenant_id == tenant_id)
                                       .order_by(CrmPipeline.id))).scalars())


async def get_pipeline(session: AsyncSession, tenant_id: int, pipeline_id: int) -> CrmPipeline:
    return await get_in_tenant(session, CrmPipeline, tenant_id, pipeline_id, "pipeline")


async def stages_of(session: AsyncSession, tenant_id: int, pipeline_id: int) -> list[CrmStage]:
    return list((await session.execute(select(CrmStage).where(
        CrmStage.tenant_id == tenant_id, CrmStage.pipeline_id == pipeline_id)
        .order_by(CrmStage.position, CrmStage.id))).scalars())


async def _check_requirements(session: AsyncSession, tenant_id: int, required: Sequence[str]) -> None:
    defs = {(d.entity, d.key) for d in (await session.execute(select(CrmField).where(
        CrmField.tenant_id == tenant_id))).scalars()}
    for name in required:
        prefix, _, key = name.partition(".")
        if key and ((prefix == "fields" and ("deal", key) not in defs) or (prefix == "client" and ("client", key) not in defs)):
            entity = "deal" if prefix == "fields" else "client"
            raise ValidationError(f"required_fields: {name}: no such {entity} field (define it in /crm/fields)",
                                  field="required_fields")


async def create_pipeline(session: AsyncSession, tenant_id: int, data: schemas.PipelineCreate) -> CrmPipeline:
    stages = list(data.stages if data.stages is not None else DEFAULT_STAGES)
    kinds = [s.kind for s in stages]
    if "open" not in kinds or kinds.count("won") != 1 or kinds.count("lost") != 1:
        raise ValidationError("stages: at least one open stage, one won and one lost", field="stages")
    if len({s.name for s in stages}) != len(stages):
        raise ValidationError("stages: each name once", field="stages")
    taken = (await session.execute(select(CrmPipeline.id).where(CrmPipeline.tenant_id == tenant_id,
                                                                CrmPipeline.name == data.name))).first()
    if taken is not None:
        raise Conflict(f"name: a pipeline {data.name!r} exists", field="name")
    for stage in stages:
        await _check_requirements(session, tenant_id, stage.required_fields)
    pipeline = CrmPipeline(tenant_id=tenant_id, name=data.name, currency=data.currency)
    session.add(pipeline)
    await session.flush()
    # open stages first, then won, then lost: a board reads left to right
    ordered = [s for s in stages if s.kind == "open"] + [s for s in stages if s.kind == "won"] + \
        [s for s in stages if s.kind == "lost"]
    for i, stage in enumerate(ordered):
        session.add(_stage_row(tenant_id, pipeline.id, stage, (i + 1) * 10))
    await session.flush()
    return pipeline


def _stage_row(tenant_id: int, pipeline_id: int, data: schemas.StageIn, position: int) -> CrmStage:
    return CrmStage(tenant_id=tenant_id, pipeline_id=pipeline_id, name=data.name, kind=data.kind, goal=data.goal,
                    probability=data.probability, position=position, required_fields=list(dict.fromkeys(data.required_fields)),
                    required_steps=list(dict.fromkeys(data.required_steps)))


async def default_pipeline(session: AsyncSession, tenant_id: int) -> CrmPipeline:
    """The tenant's first pipeline, made with the default stages on first use."""
    pipelines = await list_pipelines(session, tenant_id)
    if pipelines:
        return pipelines[0]
    currency = (await session.execute(select(Tenant.currency).where(Tenant.id == tenant_id))).scalar_one()
    return await create_pipeline(session, tenant_id, schemas.PipelineCreate(name="Sales", currency=currency))


async def update_pipeline(session: AsyncSession, tenant_id: int, pipeline_id: int,
                          data: schemas.PipelineUpdate) -> CrmPipeline:
    pipeline = await get_pipeline(session, tenant_id, pipeline_id)
    if data.name is not None and data.name != pipeline.name:
        taken = (await session.execute(select(CrmPipeline.id).where(CrmPipeline.tenant_id == tenant_id,
                                                                    CrmPipeline.name == data.name))).first()
        if taken is not None:
            raise Conflict(f"name: a pipeline {data.name!r} exists", field="name")
        pipeline.name = data.name
    if data.currency is not None:
        pipeline.currency = data.currency
    await session.flush()
    return pipeline


async def delete_pipeline(session: AsyncSession, tenant_id: int, pipeline_id: int) -> None:
    pipeline = await get_pipeline(session, tenant_id, pipeline_id)
    deals = int((await session.execute(select(func.count()).select_from(CrmDeal).where(
        CrmDeal.tenant_id == tenant_id, CrmDeal.pipeline_id == pipeline_id))).scalar_one())
    if deals:
        raise InUse(f"the pipeline has {deals} deal(s)")
    for stage in await stages_of(session, tenant_id, pipeline_id):
        await session.delete(stage)
    await session.delete(pipeline)
    await session.flush()


async def add_stage(session: AsyncSession, tenant_id: int, pipeline_id: int, data: schemas.StageIn) -> CrmStage:
    await get_pipeline(session, tenant_id, pipeline_id)
    stages = await stages_of(session, tenant_id, pipeline_id)
    if data.kind != "open":
        raise ValidationError("kind: a pipeline has one won and one lost stage; a new stage is open", field="kind")
    if any(s.name == data.name for s in stages):
        raise Conflict(f"name: a stage {data.name!r} exists", field="name")
    await _check_requirements(session, tenant_id, data.required_fields)
    opens = [s for s in stages if s.kind == "open"]
    position = data.position if data.position is not None else (opens[-1].position + 1 if opens else 1)
    if any(s.kind != "open" and s.position <= position for s in stages):
        raise ValidationError("position: open stages come before won and lost", field="position")
    row = _stage_row(tenant_id, pipeline_id, data, position)
    session.add(row)
    await session.flush()
    return row


async def update_stage(session: AsyncSession, tenant_id: int, stage_id: int, data: schemas.StageUpdate) -> CrmStage:
    stage = await get_in_tenant(session, CrmStage, tenant_id, stage_id, "stage")
    changes = data.model_dump(exclude_unset=True)
    for key in ("name", "goal", "probability", "required_fields", "required_steps", "position"):
        if key in changes and changes[key] is None:
            raise ValidationError(f"{key}: may not be null", field=key)
    if "required_fields" in changes:
        await _check_requirements(session, tenant_id, changes["required_fields"])
        changes["required_fields"] = list(dict.fromkeys(changes["required_fields"]))
    if "required_steps" in changes:
        changes["required_steps"] = list(dict.fromkeys(changes["required_steps"]))
    if "position" in changes and stage.kind == "open":
        others = await stages_of(session, tenant_id, stage.pipeline_id)
        if any(s.kind != "open" and s.position <= changes["position"] for s in others):
            raise ValidationError("position: open stages come before won and lost", field="position")
    if "name" in changes and changes["name"] != stage.name:
        others = await stages_of(session, tenant_id, stage.pipeline_id)
        if any(s.name == changes["name"] for s in others):
            raise Conflict(f"name: a stage {changes['name']!r} exists", field="name")
    for key, value in changes.items():
        setattr(stage, key, value)
    await session.flush()
    return stage


async def delete_stage(session: AsyncSession, tenant_id: int, stage_id: int) -> None:
    stage = await get_in_tenant(session, CrmStage, tenant_id, stage_id, "stage")
    if stage.kind != "open":
        raise ValidationError("a pipeline keeps its won and lost stages", field="stage_id")
    deals = int((await session.execute(select(func.count()).select_from(CrmDeal).where(
        CrmDeal.tenant_id == tenant_id, CrmDeal.stage_id == stage_id))).scalar_one())
    if deals:
        raise InUse(f"the stage has {deals} deal(s)")
    if sum(1 for s in await stages_of(session, tenant_id, stage.pipeline_id) if s.kind == "open") == 1:
        raise ValidationError("a pipeline keeps at least one open stage", field="stage_id")
    await session.delete(stage)
    await session.flush()


async def pipeline_out(session: AsyncSession, pipeline: CrmPipeline) -> schemas.PipelineOut:
    stages = await stages_of(session, pipeline.tenant_id, pipeline.id)
    return schemas.PipelineOut(id=pipeline.id, name=pipeline.name, currency=pipeline.currency,
                               stages=[schemas.StageOut.model_validate(s) for s in stages])


# --- the rule ------------------------------------------------------------------------------------------
def missing_at(stage: CrmStage, deal: CrmDeal, client: CrmClient | None) -> list[str]:
    """What ``deal`` still lacks to move past ``stage``: field names, then ``step: <text>``."""
    out: list[str] = []
    for name in stage.required_fields:
        prefix, _, key = name.partition(".")
        if prefix == "fields" and key:
            present = deal.fields.get(key) not in (None, "")
        elif prefix == "client" and key:
            present = client is not None and client.fields.get(key) not in (None, "")
        else:
            present = getattr(deal, name, None) is not None
        if not present:
            out.append(name)
    done = set(deal.steps_done.get(str(stage.id), []))
    out += [f"step: {step}" for step in stage.required_steps if step not in done]
    return out


def blocking(stages: Sequence[CrmStage], current: CrmStage, target: CrmStage, deal: CrmDeal,
             client: CrmClient | None) -> list[str]:
    """What keeps ``deal`` from moving ``current`` -> ``target`` (empty: it may), each as "<stage>: <what>"."""
    if target.kind == "lost" or (current.kind == "open" and target.kind == "open"
                                 and target.position <= current.position):
        return []  # lost needs a reason only; back is always allowed
    passed = [s for s in stages if s.kind == "open" and (target.kind == "won" or s.position < target.position)]
    return [f"{s.name}: {what}" for s in passed for what in missing_at(s, deal, client)]


# --- deals ---------------------------------------------------------------------------------------------
async def get_deal(session: AsyncSession, tenant_id: int, deal_id: int) -> CrmDeal:
    return await get_in_tenant(session, CrmDeal, tenant_id, deal_id, "deal")


async def _check_deal_refs(session: AsyncSession, tenant_id: int, client_id: int | None, owner_id: int | None) -> None:
    if client_id is not None:
        found = (await session.execute(select(CrmClient.id).where(CrmClient.tenant_id == tenant_id,
                                                                  CrmClient.id == client_id))).first()
        if found is None:
            raise ValidationError(f"client_id: client {client_id} does not exist", field="client_id")
    if owner_id is not None:
        found = (await session.execute(select(Employee.id).where(Employee.tenant_id == tenant_id,
                                                                 Employee.id == owner_id))).first()
        if found is None:
            raise ValidationError(f"owner_id: employee {owner_id} does not exist", field="owner_id")


async def create_deal(session: AsyncSession, tenant_id: int, data: schemas.DealCreate, actor: Actor) -> CrmDeal:
    pipeline = (await get_pipeline(session, tenant_id, data.pipeline_id) if data.pipeline_id is not None
                else await default_pipeline(session, tenant_id))
    stages = await stages_of(session, tenant_id, pipeline.id)
    if data.stage_id is not None:
        stage = next((s for s in stages if s.id == data.stage_id), None)
        if stage is None or stage.kind != "open":
            raise ValidationError(f"stage_id: no open stage {data.stage_id} in pipeline {pipeline.id}", field="stage_id")
    else:
        stage = next(s for s in stages if s.kind == "open")
    owner_id = data.owner_id if data.owner_id is not None else actor.employee_id
    if not actor.admin and owner_id != actor.employee_id:
        raise PermissionDenied("owner_id: an employee creates deals of their own")
    await _check_deal_refs(session, tenant_id, data.client_id, owner_id)
    deal = CrmDeal(tenant_id=tenant_id, pipeline_id=pipeline.id, stage_id=stage.id, title=data.title,
                   client_id=data.client_id, owner_id=owner_id, amount=data.amount,
                   currency=data.currency or pipeline.currency, expected_close=data.expected_close,
                   fields=await clean_fields(session, tenant_id, data.fields, None, "deal"), steps_done={})
    client = await session.get(CrmClient, data.client_id) if data.client_id is not None else None
    first_open = next(s for s in stages if s.kind == "open")
    if stage.id != first_open.id:  # created further along: the stages before it are passed
        missing = blocking(stages, first_open, stage, deal, client)
        if missing:
            raise StepsMissing("cannot start the deal at this stage: " + "; ".join(missing), missing)
    session.add(deal)
    await session.flush()
    session.add(CrmDealMove(tenant_id=tenant_id, deal_id=deal.id, from_stage_id=None, to_stage_id=stage.id,
                            employee_id=actor.employee_id))
    await session.flush()
    emit(session, events.DealChanged(tenant_id=tenant_id, deal_id=deal.id, action="created", stage_id=stage.id,
                                     owner_id=owner_id))
    return deal


async def update_deal(session: AsyncSession, tenant_id: int, deal_id: int, data: schemas.DealUpdate,
                      actor: Actor) -> CrmDeal:
    deal = await get_deal(session, tenant_id, deal_id)
    if not actor.may_edit(deal.owner_id):
        raise _deny("deal")
    changes = data.model_dump(exclude_unset=True)
    for key in ("title", "currency", "fields"):
        if key in changes and changes[key] is None:
            raise ValidationError(f"{key}: may not be null", field=key)
    if "owner_id" in changes and not actor.admin and changes["owner_id"] != deal.owner_id:
        raise PermissionDenied("owner_id: only an admin hands a deal over")
    await _check_deal_refs(session, tenant_id, changes.get("client_id"), changes.get("owner_id"))
    if "fields" in changes:
        deal.fields = await clean_fields(session, tenant_id, changes.pop("fields"), deal.fields, "deal")
    for key, value in changes.items():
        setattr(deal, key, value)
    await session.flush()
    emit(session, events.DealChanged(tenant_id=tenant_id, deal_id=deal.id, action="changed", stage_id=deal.stage_id,
                                     owner_id=deal.owner_id))
    return deal


async def set_step(session: AsyncSession, tenant_id: int, deal_id: int, data: schemas.StepIn, actor: Actor) -> CrmDeal:
    deal = await get_deal(session, tenant_id, deal_id)
    if not actor.may_edit(deal.owner_id):
        raise _deny("deal")
    stage = await get_in_tenant(session, CrmStage, tenant_id, data.stage_id, "stage")
    if stage.pipeline_id != deal.pipeline_id or data.step not in stage.required_steps:
        raise ValidationError(f"step: {data.step!r} is not a step of stage {stage.id} of this deal's pipeline",
                              field="step")
    done = dict(deal.steps_done)
    steps = [s for s in done.get(str(stage.id), []) if s != data.step]
    if data.done:
        steps.append(data.step)
    done[str(stage.id)] = steps
    deal.steps_done = done  # a new dict: JSON columns notice assignment, not mutation
    await session.flush()
    emit(session, events.DealChanged(tenant_id=tenant_id, deal_id=deal.id, action="changed", stage_id=deal.stage_id,
                                     owner_id=deal.owner_id))
    return deal


async def move_deal(session: AsyncSession, tenant_id: int, deal_id: int, data: schemas.MoveIn, actor: Actor) -> CrmDeal:
    deal = await get_deal(session, tenant_id, deal_id)
    if not actor.may_edit(deal.owner_id):
        raise _deny("deal")
    stages = await stages_of(session, tenant_id, deal.pipeline_id)
    current = next(s for s in stages if s.id == deal.stage_id)
    target = next((s for s in stages if s.id == data.stage_id), None)
    if target is None:
        raise ValidationError(f"stage_id: no stage {data.stage_id} in this deal's pipeline", field="stage_id")
    if target.id == current.id:
        return deal
    if target.kind == "lost" and not data.lost_reason:
        raise ValidationError("lost_reason: say why the deal is lost", field="lost_reason")
    client = await session.get(CrmClient, deal.client_id) if deal.client_id is not None else None
    missing = blocking(stages, current, target, deal, client)
    if missing:
        raise StepsMissing(f"cannot move to {target.name!r}: " + "; ".join(missing), missing)
    deal.stage_id = target.id
    deal.lost_reason = data.lost_reason if target.kind == "lost" else None
    deal.closed_at = utcnow() if target.kind != "open" else None
    session.add(CrmDealMove(tenant_id=tenant_id, deal_id=deal.id, from_stage_id=current.id, to_stage_id=target.id,
                            employee_id=actor.employee_id))
    await session.flush()
    emit(session, events.DealChanged(tenant_id=tenant_id, deal_id=deal.id, action="moved", stage_id=target.id,
                                     owner_id=deal.owner_id))
    return deal


async def delete_deal(session: AsyncSession, tenant_id: int, deal_id: int, actor: Actor) -> None:
    deal = await get_deal(session, tenant_id, deal_id)
    if not actor.may_edit(deal.owner_id):
        raise _deny("deal")
    await session.delete(deal)
    await session.flush()
    emit(session, events.DealChanged(tenant_id=tenant_id, deal_id=deal_id, action="deleted"))


async def list_deals(session: AsyncSession, tenant_id: int, *, pipeline_id: int | None = None,
                     stage_id: int | None = None, owner_id: int | None = None, client_id: int | None = None,
                     limit: int = 500, offset: int = 0) -> tuple[list[CrmDeal], int]:
    stmt = select(CrmDeal).where(CrmDeal.tenant_id == tenant_id)
    for column, value in ((CrmDeal.pipeline_id, pipeline_id), (CrmDeal.stage_id, stage_id),
                          (CrmDeal.owner_id, owner_id), (CrmDeal.client_id, client_id)):
        if value is not None:
            stmt = stmt.where(column == value)
    total = int((await session.execute(select(func.count()).select_from(stmt.subquery()))).scalar_one())
    rows = (await session.execute(stmt.order_by(CrmDeal.updated_at.desc(), CrmDeal.id.desc())
                                  .limit(limit).offset(offset))).scalars().all()
    return list(rows), total


async def history(session: AsyncSession, tenant_id: int, deal_id: int) -> list[schemas.MoveOut]:
    rows = (await session.execute(select(CrmDealMove, Employee.full_name)
                                  .outerjoin(Employee, Employee.id == CrmDealMove.employee_id)
                                  .where(CrmDealMove.tenant_id == tenant_id, CrmDealMove.deal_id == deal_id)
                                  .order_by(CrmDealMove.at, CrmDealMove.id))).all()
    return [schemas.MoveOut(from_stage_id=m.from_stage_id, to_stage_id=m.to_stage_id, employee_id=m.employee_id,
                            employee_name=name, at=m.at) for m, name in rows]


# --- payments ------------------------------------------------------------------------------------------
async def list_payments(session: AsyncSession, tenant_id: int, deal_id: int) -> list[CrmPayment]:
    await get_deal(session, tenant_id, deal_id)
    return list((await session.execute(select(CrmPayment).where(
        CrmPayment.tenant_id == tenant_id, CrmPayment.deal_id == deal_id)
        .order_by(CrmPayment.paid_on, CrmPayment.id))).scalars())


async def add_payment(session: AsyncSession, tenant_id: int, deal_id: int, data: schemas.PaymentIn,
                      actor: Actor) -> CrmPayment:
    deal = await get_deal(session, tenant_id, deal_id)
    if not actor.may_edit(deal.owner_id):
        raise _deny("deal")
    from . import invoices  # invoices build on deals

    invoice = (await invoices.check_payable(session, tenant_id, deal_id, data.invoice_id)
               if data.invoice_id is not None else None)
    row = CrmPayment(tenant_id=tenant_id, deal_id=deal_id, amount=data.amount, paid_on=data.paid_on,
                     method=data.method, note=data.note, invoice_id=data.invoice_id)
    session.add(row)
    await session.flush()
    if invoice is not None:
        await invoices.after_payment(session, invoice)
    emit(session, events.DealChanged(tenant_id=tenant_id, deal_id=deal_id, action="paid", stage_id=deal.stage_id,
                                     owner_id=deal.owner_id))
    return row


async def delete_payment(session: AsyncSession, tenant_id: int, payment_id: int, actor: Actor) -> None:
    row = await get_in_tenant(session, CrmPayment, tenant_id, payment_id, "payment")
    deal = await get_deal(session, tenant_id, row.deal_id)
    if not actor.may_edit(deal.owner_id):
        raise _deny("deal")
    invoice_id = row.invoice_id
    await session.delete(row)
    await session.flush()
    emit(session, events.DealChanged(tenant_id=tenant_id, deal_id=deal.id, action="paid", stage_id=deal.stage_id,
                                     owner_id=deal.owner_id))
    if invoice_id is not None:  # its status follows (a closed overdue task stays closed)
        emit(session, events.InvoiceChanged(tenant_id=tenant_id, invoice_id=invoice_id, deal_id=deal.id,
                                            action="paid"))


async def paid_of(session: AsyncSession, tenant_id: int, deal_ids: Sequence[int]) -> dict[int, Decimal]:
    if not deal_ids:
        return {}
    rows = await session.execute(select(CrmPayment.deal_id, func.sum(CrmPayment.amount)).where(
        CrmPayment.tenant_id == tenant_id, CrmPayment.deal_id.in_(deal_ids)).group_by(CrmPayment.deal_id))
    return {int(d): Decimal(str(total or 0)).quantize(Decimal("0.01")) for d, total in rows}


# --- output --------------------------------------------------------------------------------------------
async def deals_out(session: AsyncSession, tenant_id: int, deals: Sequence[CrmDeal]) -> list[schemas.DealOut]:
    if not deals:
        return []
    stages = {s.id: s for s in (await session.execute(select(CrmStage).where(
        CrmStage.tenant_id == tenant_id, CrmStage.id.in_({d.stage_id for d in deals})))).scalars()}
    client_ids = {d.client_id for d in deals if d.client_id is not None}
    clients: dict[int, CrmClient] = {}
    if client_ids:
        clients = {c.id: c for c in (await session.execute(select(CrmClient).where(
            CrmClient.tenant_id == tenant_id, CrmClient.id.in_(client_ids)))).scalars()}
    owner_ids = {d.owner_id for d in deals if d.owner_id is not None}
    owners: dict[int, str] = dict((await session.execute(select(Employee.id, Employee.full_name).where(
        Employee.tenant_id == tenant_id, Employee.id.in_(owner_ids)))).tuples().all()) if owner_ids else {}
    paid = await paid_of(session, tenant_id, [d.id for d in deals])
    out = []
    for d in deals:
        stage = stages[d.stage_id]
        client = clients.get(d.client_id) if d.client_id is not None else None
        got = paid.get(d.id, Decimal("0.00"))
        out.append(schemas.DealOut(
            id=d.id, tenant_id=d.tenant_id, pipeline_id=d.pipeline_id, stage_id=d.stage_id, stage_name=stage.name,
            stage_kind=stage.kind, probability=stage.probability, title=d.title, client_id=d.client_id,
            client_name=client.name if client else None, owner_id=d.owner_id,
            owner_name=owners.get(d.owner_id) if d.owner_id else None, amount=d.amount, currency=d.currency,
            expected_close=d.expected_close, fields=dict(d.fields), steps_done=dict(d.steps_done),
            lost_reason=d.lost_reason, closed_at=d.closed_at, paid=got,
            remaining=max(Decimal("0.00"), Decimal(d.amount) - got) if d.amount is not None else None,
            missing=missing_at(stage, d, client) if stage.kind == "open" else [],
            created_at=d.created_at, updated_at=d.updated_at))
    return out


async def deal_out(session: AsyncSession, deal: CrmDeal) -> schemas.DealOut:
    return (await deals_out(session, deal.tenant_id, [deal]))[0]
