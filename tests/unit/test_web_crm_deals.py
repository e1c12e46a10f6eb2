"""The console's sales pages: the pipeline board (a refused move shows what the stage still needs, and the
move succeeds once the step is ticked), a deal's page (checklist, payments, tasks, history), my tasks
overdue first, the client card's deals and tasks, the admin-only pipeline settings and dashboard, another
company's deal (404), and the Russian translation."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import test_web
from test_web import Company, Web, csrf_of, login

import zvonok.web
from zvonok.crm import deals, schemas, service, tasks
from zvonok.crm.models import CrmStage

web, a, b, admin_a = test_web.web, test_web.a, test_web.b, test_web.admin_a


async def _setup(web: Web, a: Company) -> tuple[int, int, int]:
    """A pipeline whose first stage needs a step; a client: (pipeline, first stage, client)."""
    async with web.db.session() as session:
        p = await deals.create_pipeline(session, a.id, schemas.PipelineCreate(name="Sales", currency="RUB", stages=[
            schemas.StageIn(name="Contact", required_steps=["Call the client"]),
            schemas.StageIn(name="Offer", probability=50), schemas.StageIn(name="Won", kind="won"),
            schemas.StageIn(name="Lost", kind="lost")]))
        client = await service.create_client(session, a.id, schemas.ClientCreate(name="Ромашка"))
        await session.commit()
        stages = await deals.stages_of(session, a.id, p.id)
        return p.id, stages[0].id, client.id


async def test_board_refuses_a_skipped_step_then_moves(web: Web, a: Company, b: Company,
                                                        admin_a: httpx.AsyncClient) -> None:
    pipeline, contact, client = await _setup(web, a)
    async with web.client() as ivan:
        assert (await login(ivan, a.employee)).status_code == 303
        board = await ivan.get("/crm/deals")
        assert board.status_code == 200 and 'id="stage-' in board.text and "Contact" in board.text
        r = await ivan.post("/crm/deals/new", data={"csrf_token": csrf_of(board.text), "title": "Licences",
                                                     "amount": "1 500,50", "client_id": str(client),
                                                     "pipeline_id": str(pipeline)})
        assert r.status_code == 303, r.text
        deal = int(r.headers["location"].rsplit("/", 1)[1])
        stages = {s.name: s.id for s in await _stages(web, a.id, pipeline)}
        board = await ivan.get("/crm/deals")
        assert f'id="deal-{deal}"' in board.text and "Needs:" in board.text
        r = await ivan.post(f"/crm/deals/{deal}/move", data={"csrf_token": csrf_of(board.text),
                                                             "stage_id": str(stages["Offer"])})
        assert r.status_code == 422
        assert 'id="move-error"' in r.text and "Contact: step: Call the client" in r.text
        page = await ivan.get(f"/crm/deals/{deal}")
        assert "Call the client" in page.text and 'aria-pressed="false"' in page.text
        r = await ivan.post(f"/crm/deals/{deal}/steps", data={"csrf_token": csrf_of(page.text), "stage_id": str(contact),
                                                              "step": "Call the client", "done": "1"})
        assert r.status_code == 303
        r = await ivan.post(f"/crm/deals/{deal}/move", data={"csrf_token": csrf_of(page.text),
                                                             "stage_id": str(stages["Offer"])})
        assert r.status_code == 303
        page = await ivan.get(f"/crm/deals/{deal}")
        assert '<span id="deal-stage">Offer</span>' in page.text and "Contact → Offer" in page.text
        # a payment; a task on the deal, overdue: first on my tasks
        r = await ivan.post(f"/crm/deals/{deal}/payments", data={"csrf_token": csrf_of(page.text), "amount": "500",
                                                                 "paid_on": "2026-12-01", "method": "cash"})
        assert r.status_code == 303
        page = await ivan.get(f"/crm/deals/{deal}")
        assert re.search(r'id="deal-remaining">[^<]*1[  ,.]?000', page.text), page.text
        past = (datetime.now(UTC) - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M")
        r = await ivan.post(f"/crm/deals/{deal}/tasks", data={"csrf_token": csrf_of(page.text), "title": "Send invoice",
                                                              "due_at": past})
        assert r.status_code == 303
        mine = await ivan.get("/crm/tasks")
        assert "Send invoice" in mine.text and "overdue" in mine.text
        card = await ivan.get(f"/crm/{client}")
        assert f'id="client-deal-{deal}"' in card.text and "Send invoice" in card.text
        # admin pages are the admin's
        assert (await ivan.get("/crm/pipeline")).status_code == 403
        assert (await ivan.get("/crm/dashboard")).status_code == 403
    dash = await admin_a.get("/crm/dashboard", params={"pipeline_id": pipeline})
    assert dash.status_code == 200 and 'id="dash-stages"' in dash.text and "Offer" in dash.text
    settings = await admin_a.get("/crm/pipeline", params={"pipeline_id": pipeline})
    assert settings.status_code == 200 and "Call the client" in settings.text
    r = await admin_a.post(f"/crm/pipeline/{pipeline}/stages", data={
        "csrf_token": csrf_of(settings.text), "stage_id": str(stages["Offer"]), "name": "Offer", "probability": "60",
        "goal": "Offer sent", "required_fields": "amount, fields.nope", "required_steps": ""})
    assert r.status_code == 422 and "fields.nope" in r.text
    r = await admin_a.post(f"/crm/pipeline/{pipeline}/stages", data={
        "csrf_token": csrf_of(settings.text), "stage_id": str(stages["Offer"]), "name": "Offer", "probability": "60",
        "goal": "Offer sent", "required_fields": "amount", "required_steps": "Agree the price\nSign"})
    assert r.status_code == 303
    async with web.db.session() as session:
        offer = next(s for s in await deals.stages_of(session, a.id, pipeline) if s.name == "Offer")
        assert (offer.probability, offer.required_steps) == (60, ["Agree the price", "Sign"])
        assert len((await tasks.list_tasks(session, a.id))[0]) == 1
    async with web.client() as other:  # company B (Russian): A's deal is a 404 page
        assert (await login(other, b.admin)).status_code == 303
        assert (await other.get(f"/crm/deals/{deal}")).status_code == 404
        board = await other.get("/crm/deals")
        assert "Сделки" in board.text and "Licences" not in board.text


async def _stages(web: Web, tenant_id: int, pipeline: int) -> list[CrmStage]:
    async with web.db.session() as session:
        return await deals.stages_of(session, tenant_id, pipeline)


def test_translations_complete() -> None:
    text = (Path(zvonok.web.__file__).parent / "locale" / "ru" / "LC_MESSAGES" / "messages.po").read_text("utf-8")
    for msgid in ("Deals", "Tasks", "Pipeline settings", "Sales dashboard", "The CRM did not let this deal move on.",
                  "Checklist", "Payments", "Stage history"):
        entry = re.search(r'msgid "' + re.escape(msgid) + r'"\nmsgstr "(.+)"', text)
        assert entry is not None and entry.group(1), msgid


async def test_deal_fields_on_the_fields_page_and_the_deal(web: Web, a: Company, admin_a: httpx.AsyncClient) -> None:
    page = await admin_a.get("/crm/fields")
    r = await admin_a.post("/crm/fields", data={"csrf_token": csrf_of(page.text), "key": "contract", "label": "Contract no",
                                                "kind": "text", "entity": "deal"})
    assert r.status_code == 303
    page = await admin_a.get("/crm/fields")
    assert re.search(r"Contract no.*?<td>Deal</td>", page.text, re.S)
    async with web.db.session() as session:
        assert [f.key for f in await service.list_fields(session, a.id)] == []  # not a client field
        deal = await deals.create_deal(session, a.id, schemas.DealCreate(title="D"), deals.Actor(admin=True))
        await session.commit()
    page = await admin_a.get(f"/crm/deals/{deal.id}")
    assert 'name="field.contract"' in page.text
    r = await admin_a.post(f"/crm/deals/{deal.id}/edit", data={"csrf_token": csrf_of(page.text), "title": "D",
                                                               "field.contract": "K-17"})
    assert r.status_code == 303
    assert "K-17" in (await admin_a.get(f"/crm/deals/{deal.id}")).text
