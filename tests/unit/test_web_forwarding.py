"""Forwarding and DND in the console: /me (an employee's own extensions) and /extensions/{id}/forwarding.

Fixtures come from test_web.py (a company per test with an admin and an employee login).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest
from test_web import Company, Web, a, admin_a, b, csrf_of, login, web  # noqa: F401 - fixtures

from zvonok.org import forwarding, schemas, service
from zvonok.org.events import ForwardingChanged


@pytest.fixture
async def employee_a(web: Web, a: Company) -> AsyncIterator[httpx.AsyncClient]:  # noqa: F811
    async with web.client() as client:
        assert (await login(client, a.employee)).status_code == 303
        yield client


@pytest.fixture
async def admin_b(web: Web, b: Company) -> AsyncIterator[httpx.AsyncClient]:  # noqa: F811
    async with web.client() as client:
        assert (await login(client, b.admin)).status_code == 303
        yield client


async def _colleague(web: Web, company: Company, number: str = "102") -> int:  # noqa: F811
    async with web.db.session() as session:
        ext, _ = await service.create_extension(
            session, company.id, schemas.ExtensionCreate(number=number, display_name="Front desk"))
        await session.commit()
        return ext.id


async def _stored(web: Web, company: Company, extension_id: int) -> forwarding.ForwardingOut:  # noqa: F811
    async with web.db.session() as session:
        return await forwarding.get_forwarding(session, company.id, extension_id)


def _form(csrf: str, **values: str) -> dict[str, str]:
    form = {"csrf_token": csrf, "unconditional": "", "busy": "", "no_answer": "", "no_answer_seconds": "20",
            "unavailable": ""}
    form.update(values)
    return form


# --- /me -----------------------------------------------------------------------------------------------
async def test_employee_sets_own_forwarding_and_dnd_on_me(web: Web, a: Company,  # noqa: F811
                                                          employee_a: httpx.AsyncClient) -> None:
    await _colleague(web, a)
    published: list[object] = []
    web.db.add_listener(published.append)
    page = await employee_a.get("/me")
    assert page.status_code == 200
    assert f'id="forwarding-{a.extension_id}"' in page.text and "No forwarding" in page.text
    assert "*72" in page.text and "*78" in page.text  # the feature codes as a hint
    r = await employee_a.post(f"/me/extensions/{a.extension_id}/forwarding", data=_form(
        csrf_of(page.text), dnd="1", unconditional="102", no_answer="8 495 123-45-67", no_answer_seconds="15"))
    assert r.status_code == 303 and r.headers["location"].startswith(f"/me?forwarding_saved={a.extension_id}")
    stored = await _stored(web, a, a.extension_id)
    assert stored.dnd and stored.unconditional == "102" and stored.no_answer == "+74951234567"
    assert stored.no_answer_seconds == 15 and stored.busy is None
    assert any(isinstance(e, ForwardingChanged) and e.extension_id == a.extension_id for e in published)
    page = await employee_a.get(r.headers["location"])
    assert "DND on" in page.text and "All calls → 102" in page.text and "No answer in 15 s → +74951234567" in page.text
    assert 'id="forwarding-saved-' in page.text and 'value="102"' in page.text
    state = await employee_a.get(f"/me/extensions/{a.extension_id}/forwarding/state")  # the live summary
    assert state.status_code == 200 and "DND on · All calls → 102" in state.text and "<html" not in state.text
    # everything off again: empty fields clear the targets
    r = await employee_a.post(f"/me/extensions/{a.extension_id}/forwarding", data=_form(csrf_of(page.text)))
    assert r.status_code == 303
    stored = await _stored(web, a, a.extension_id)
    assert not stored.dnd and stored.unconditional is None and stored.no_answer is None


@pytest.mark.parametrize(("field", "value"), [
    ("unconditional", "101"),  # the extension itself
    ("busy", "112"),  # an emergency number
    ("unavailable", "hello"),  # neither an extension nor a number
    ("no_answer", "x" * 40),  # too long for the schema
    ("no_answer_seconds", "2"),  # out of range
    ("no_answer_seconds", "soon"),
])
async def test_a_refused_field_is_marked_and_nothing_is_saved(web: Web, a: Company,  # noqa: F811
                                                              employee_a: httpx.AsyncClient, field: str,
                                                              value: str) -> None:
    await _colleague(web, a)
    page = await employee_a.get("/me")
    values = {"dnd": "1", "unconditional": "102", field: value}
    r = await employee_a.post(f"/me/extensions/{a.extension_id}/forwarding", data=_form(csrf_of(page.text), **values))
    assert r.status_code == 422
    assert f'id="fwd-{field}-error"' in r.text and 'aria-invalid="true"' in r.text
    assert "Nothing was saved" in r.text
    assert re.search(rf'name="{field}" value="{re.escape(value)}"', r.text) or field == "no_answer_seconds"
    stored = await _stored(web, a, a.extension_id)
    assert not stored.dnd and stored.unconditional is None  # the valid fields were not kept either


async def test_employee_cannot_change_a_colleagues_or_other_companys_forwarding(
        web: Web, a: Company, b: Company, employee_a: httpx.AsyncClient) -> None:  # noqa: F811
    colleague = await _colleague(web, a)
    page = await employee_a.get("/me")
    csrf = csrf_of(page.text)
    for ext_id in (colleague, b.extension_id):
        r = await employee_a.post(f"/me/extensions/{ext_id}/forwarding", data=_form(csrf, dnd="1"))
        assert r.status_code == 404
        assert (await employee_a.get(f"/extensions/{ext_id}/forwarding")).status_code == 403
        assert (await employee_a.get(f"/me/extensions/{ext_id}/forwarding/state")).status_code == 404
    assert (await employee_a.get(f"/extensions/{a.extension_id}/forwarding")).status_code == 403  # admins' page
    assert not (await _stored(web, a, colleague)).dnd and not (await _stored(web, b, b.extension_id)).dnd
    # no CSRF token: refused before anything is looked at
    r = await employee_a.post(f"/me/extensions/{a.extension_id}/forwarding", data={"dnd": "1"})
    assert r.status_code == 403 and not (await _stored(web, a, a.extension_id)).dnd


# --- the admin's page ------------------------------------------------------------------------------------
async def test_admin_edits_any_extension_from_the_list(web: Web, a: Company,  # noqa: F811
                                                       admin_a: httpx.AsyncClient) -> None:  # noqa: F811
    colleague = await _colleague(web, a)
    listing = await admin_a.get("/extensions")
    assert f'href="/extensions/{colleague}/forwarding"' in listing.text
    page = await admin_a.get(f"/extensions/{colleague}/forwarding")
    assert page.status_code == 200 and "Forwarding of extension 102" in page.text
    r = await admin_a.post(f"/extensions/{colleague}/forwarding",
                           data=_form(csrf_of(page.text), busy="101", unavailable="+7 812 555-12-34"))
    assert r.status_code == 303
    page = await admin_a.get(r.headers["location"])
    assert 'id="forwarding-saved"' in page.text and "Busy → 101" in page.text
    assert "Not registered → +78125551234" in page.text
    listing = await admin_a.get("/extensions")
    assert "Busy → 101" in listing.text  # the list shows the state compactly
    r = await admin_a.post(f"/extensions/{colleague}/forwarding", data=_form(csrf_of(page.text), busy="102"))
    assert r.status_code == 422 and 'id="fwd-busy-error"' in r.text
    assert (await _stored(web, a, colleague)).busy == "101"


async def test_other_companys_admin_gets_404(web: Web, a: Company, b: Company,  # noqa: F811
                                             admin_b: httpx.AsyncClient) -> None:
    page = await admin_b.get("/extensions")
    assert (await admin_b.get(f"/extensions/{a.extension_id}/forwarding")).status_code == 404
    r = await admin_b.post(f"/extensions/{a.extension_id}/forwarding", data=_form(csrf_of(page.text), dnd="1"))
    assert r.status_code == 404 and not (await _stored(web, a, a.extension_id)).dnd
