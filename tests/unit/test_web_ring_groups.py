# ruff: noqa: F811 - the fixtures of test_web.py are imported (web, a, b, admin_a) and named as parameters
"""The ring-groups page of the web console: list, create, edit, delete through the API's service; bad input
answers 422 with the field's message and changes nothing; another company's groups are 404, employees
get 403; forms need their CSRF token; Russian; and the numbers page offers groups as a destination."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from test_web import Company, Web, a, admin_a, b, csrf_of, login, web  # noqa: F401 - fixtures

from zvonok.org import schemas as org_schemas
from zvonok.org import service as org_service
from zvonok.pstn import service as pstn_service
from zvonok.pstn.models import PhoneNumber
from zvonok.ringgroup.models import RingGroup

FORM = {"number": "600", "name": "Sales", "strategy": "hunt", "members": "101\n102\n+7 495 123-45-67",
        "ring_seconds": "15", "max_seconds": "", "no_answer_kind": "extension", "no_answer_target": "102"}


async def _post(client: httpx.AsyncClient, page: str, url: str, data: Mapping[str, Any]) -> httpx.Response:
    form = await client.get(page)
    assert form.status_code == 200, form.text
    return await client.post(url, data={"csrf_token": csrf_of(form.text), **data})


async def _groups(web: Web, tenant_id: int) -> list[RingGroup]:
    async with web.db.session() as session:
        return list((await session.execute(select(RingGroup).where(RingGroup.tenant_id == tenant_id))).scalars())


async def _extension(web: Web, company: Company, number: str) -> None:
    async with web.db.session() as session:
        await org_service.create_extension(session, company.id, org_schemas.ExtensionCreate(
            number=number, display_name=f"Desk {number}"))
        await session.commit()


@pytest.fixture
async def admin_b(web: Web, b: Company) -> AsyncIterator[httpx.AsyncClient]:
    async with web.client() as client:
        assert (await login(client, b.admin)).status_code == 303
        yield client


async def test_a_group_is_created_listed_edited_and_deleted(web: Web, a: Company, admin_a: httpx.AsyncClient) -> None:
    await _extension(web, a, "102")
    page = await admin_a.get("/ring-groups")
    assert page.status_code == 200 and "No ring groups yet." in page.text
    r = await _post(admin_a, "/ring-groups", "/ring-groups", FORM)
    assert r.status_code == 303 and r.headers["location"] == "/ring-groups?done=saved"
    (group,) = await _groups(web, a.id)
    assert (group.number, group.name, group.strategy, group.members, group.ring_seconds, group.no_answer) == (
        "600", "Sales", "hunt", ["101", "102", "+74951234567"], 15, {"kind": "extension", "number": "102"})
    page = await admin_a.get("/ring-groups?done=saved")
    assert f'id="group-{group.id}"' in page.text and "One after another" in page.text and "Saved." in page.text

    edit = await admin_a.get(f"/ring-groups/{group.id}")
    assert edit.status_code == 200 and 'value="Sales"' in edit.text and "+74951234567" in edit.text
    changed = {**FORM, "name": "Sales 2", "strategy": "round_robin", "members": "102, 101", "no_answer_kind": ""}
    r = await _post(admin_a, f"/ring-groups/{group.id}", f"/ring-groups/{group.id}", changed)
    assert r.status_code == 303, r.text
    (group,) = await _groups(web, a.id)
    assert (group.name, group.strategy, group.members, group.no_answer) == ("Sales 2", "round_robin", ["102", "101"],
                                                                            None)
    r = await _post(admin_a, f"/ring-groups/{group.id}", f"/ring-groups/{group.id}/delete", {})
    assert r.status_code == 303 and r.headers["location"] == "/ring-groups?done=deleted"
    assert await _groups(web, a.id) == []


@pytest.mark.parametrize(("change", "field", "message"), [
    ({"number": "6"}, "number", "2 to 8 digits"),
    ({"number": "101"}, "number", "This number is already taken."),
    ({"name": ""}, "name", "A name of 1 to 100 characters"),
    ({"members": ""}, "members", "One member per line"),
    ({"members": "101\n999"}, "members", "Extension 999 does not exist."),
    ({"members": "101\n+7 495"}, "members", "One member per line"),
    ({"strategy": "simultaneous"}, "members", "A group that rings all at once takes extensions only."),
    ({"ring_seconds": "1"}, "ring_seconds", "Whole seconds from 5 to 300."),
    ({"no_answer_target": "999"}, "no_answer_target", "Extension 999 does not exist."),
    ({"no_answer_kind": "ring_group", "no_answer_target": "600"}, "no_answer_target", "to itself"),
])
async def test_bad_input_is_shown_on_its_field(web: Web, a: Company, admin_a: httpx.AsyncClient,
                                              change: dict[str, str], field: str, message: str) -> None:
    await _extension(web, a, "102")
    r = await _post(admin_a, "/ring-groups", "/ring-groups", {**FORM, **change})
    assert r.status_code == 422, r.text
    assert message in r.text and f'id="{field}-error"' in r.text
    assert await _groups(web, a.id) == []


async def test_another_companys_groups_are_not_found(web: Web, a: Company, b: Company, admin_a: httpx.AsyncClient,
                                                    admin_b: httpx.AsyncClient) -> None:
    await _extension(web, a, "102")
    assert (await _post(admin_a, "/ring-groups", "/ring-groups", FORM)).status_code == 303
    (group,) = await _groups(web, a.id)
    assert (await admin_b.get(f"/ring-groups/{group.id}")).status_code == 404
    token = csrf_of((await admin_b.get("/ring-groups")).text)
    for url in (f"/ring-groups/{group.id}", f"/ring-groups/{group.id}/delete"):
        r = await admin_b.post(url, data={"csrf_token": token, **FORM, "members": "101"})
        assert r.status_code == 404, url
    assert 'id="group-' not in (await admin_b.get("/ring-groups")).text
    assert [g.name for g in await _groups(web, a.id)] == ["Sales"]


async def test_employees_and_forms_without_csrf_are_refused(web: Web, a: Company, admin_a: httpx.AsyncClient) -> None:
    async with web.client() as employee:
        assert (await login(employee, a.employee)).status_code == 303
        assert (await employee.get("/ring-groups")).status_code == 403
        token = csrf_of((await employee.get("/")).text)
        assert (await employee.post("/ring-groups", data={"csrf_token": token, **FORM})).status_code == 403
        assert 'href="/ring-groups"' not in (await employee.get("/")).text
    assert 'href="/ring-groups"' in (await admin_a.get("/")).text
    r = await admin_a.post("/ring-groups", data=FORM)  # no CSRF token
    assert r.status_code == 403
    assert await _groups(web, a.id) == []


async def test_russian(web: Web, b: Company, admin_b: httpx.AsyncClient) -> None:
    page = await admin_b.get("/ring-groups")
    assert page.status_code == 200
    assert "Группы вызова" in page.text and "Новая группа вызова" in page.text
    r = await _post(admin_b, "/ring-groups", "/ring-groups", {**FORM, "members": "101\n999"})
    assert r.status_code == 422 and "Внутреннего номера 999 нет." in r.text


async def test_the_numbers_page_routes_to_a_group(web: Web, a: Company, admin_a: httpx.AsyncClient) -> None:
    await _extension(web, a, "102")
    assert (await _post(admin_a, "/ring-groups", "/ring-groups", FORM)).status_code == 303
    async with web.db.session() as session:
        session.add(PhoneNumber(number="+74951112233", tenant_id=a.id))
        await session.commit()
        number_id = (await session.execute(select(PhoneNumber.id))).scalar_one()
    page = await admin_a.get(f"/numbers/{number_id}")
    assert '<option value="ring_group"' in page.text and '<option value="600">Sales</option>' in page.text
    r = await _post(admin_a, f"/numbers/{number_id}", f"/numbers/{number_id}", {"kind": "ring_group", "target": "601"})
    assert r.status_code == 422 and "Ring group 601 does not exist." in r.text
    r = await _post(admin_a, f"/numbers/{number_id}", f"/numbers/{number_id}", {"kind": "ring_group", "target": "600"})
    assert r.status_code == 303, r.text
    async with web.db.session() as session:
        number = await pstn_service.get_number(session, a.id, number_id)
        assert (number.destination_kind, number.destination) == ("ring_group", {"number": "600"})
        count = (await session.execute(select(func.count()).select_from(PhoneNumber))).scalar_one()
    assert count == 1
    assert "ring group 600" in (await admin_a.get("/numbers")).text
