"""Voice menus on /ivr: create with spoken text, keys and final targets through the form, a refused
key (422 with the service's reason), a greeting upload, isolation between companies, the nav entry.

Fixtures come from test_web.py (a company per test with an admin and an employee login).
"""

from __future__ import annotations

import io
import wave
from collections.abc import AsyncIterator

import httpx
import numpy as np
import pytest
from test_web import Company, Web, a, admin_a, b, csrf_of, login, web  # noqa: F401 - fixtures

from zvonok.ivr.models import IvrMenu


def tone_wav(seconds: float = 1.0, rate: int = 22050) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    out = io.BytesIO()
    with wave.open(out, "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(rate)
        writer.writeframes((np.sin(2 * np.pi * 800 * t) * 8000).astype("<i2").tobytes())
    return out.getvalue()


@pytest.fixture
async def admin_b(web: Web, b: Company) -> AsyncIterator[httpx.AsyncClient]:  # noqa: F811
    async with web.client() as client:
        assert (await login(client, b.admin)).status_code == 303
        yield client


def keys_form(csrf: str, **extra: str) -> dict[str, str]:
    form = {"csrf_token": csrf, "name": "Main", "prompt_text": "Hello, press one", "voice": "en", "timeout": "4",
            "retries": "1", "digit_timeout": "3", "repeat_key": "*", "timeout_kind": "extension",
            "timeout_target": "101", "invalid_kind": "hangup", "invalid_target": ""}
    form.update(extra)
    return form


async def test_admin_creates_and_edits_a_menu(web: Web, a: Company, b: Company,  # noqa: F811
                                              admin_a: httpx.AsyncClient,  # noqa: F811
                                              admin_b: httpx.AsyncClient) -> None:
    page = await admin_a.get("/ivr")
    assert page.status_code == 200 and 'href="/ivr"' in page.text and "No menus yet." in page.text
    r = await admin_a.post("/ivr", data={"csrf_token": csrf_of(page.text), "name": "Main",
                                         "prompt_text": "Hello", "voice": "en"})
    assert r.status_code == 303, r.text
    menu_url = r.headers["location"].split("?")[0]
    page = await admin_a.get(r.headers["location"])
    assert 'id="ivr-done"' in page.text and 'id="menu-form"' in page.text
    r = await admin_a.post(menu_url, data=keys_form(csrf_of(page.text), kind_1="extension", target_1="101",
                                                    kind_2="ring", target_2="101", kind_9="hangup"))
    assert r.status_code == 303, r.text
    async with web.db.session() as session:
        menu = await session.get(IvrMenu, int(menu_url.rsplit("/", 1)[1]))
        assert menu is not None and menu.tenant_id == a.id
        assert menu.keys == {"1": {"kind": "extension", "number": "101"}, "2": {"kind": "ring", "numbers": ["101"]},
                             "9": {"kind": "hangup"}}
        assert (menu.timeout, menu.retries, menu.repeat_key, menu.voice) == (4, 1, "*", "en")
        assert menu.timeout_destination == {"kind": "extension", "number": "101"}
    # a key to an extension that does not exist: 422, the service's reason, nothing saved
    page = await admin_a.get(menu_url)
    r = await admin_a.post(menu_url, data=keys_form(csrf_of(page.text), kind_1="extension", target_1="555"))
    assert r.status_code == 422 and "extension 555 does not exist" in r.text
    # the spoken greeting is previewed; an uploaded file replaces it
    assert (await admin_a.get(f"{menu_url}/greeting")).content[:4] == b"RIFF"
    r = await admin_a.post(f"{menu_url}/greeting", data={"csrf_token": csrf_of(page.text)},
                           files={"greeting": ("hello.wav", tone_wav(), "audio/wav")})
    assert r.status_code == 303, r.text
    with wave.open(io.BytesIO((await admin_a.get(f"{menu_url}/greeting")).content)) as w:
        assert (w.getframerate(), w.getnframes()) == (8000, 8000)
    r = await admin_a.post(f"{menu_url}/greeting", data={"csrf_token": csrf_of(page.text)},
                           files={"greeting": ("notes.txt", b"not audio" * 50, "text/plain")})
    assert r.status_code == 422 and "Not an audio file" in r.text
    # another company sees none of it
    assert (await admin_b.get(menu_url)).status_code == 404
    assert (await admin_b.get(f"{menu_url}/greeting")).status_code == 404
    listing = await admin_b.get("/ivr")
    assert 'id="menu-' not in listing.text and "Голосовые меню" in listing.text  # B's admin reads Russian
    page = await admin_a.get(menu_url)
    r = await admin_a.post(f"{menu_url}/delete", data={"csrf_token": csrf_of(page.text)})
    assert r.status_code == 303 and "No menus yet." in (await admin_a.get("/ivr")).text


def test_a_queue_destination_may_carry_a_priority_in_its_text() -> None:
    from zvonok.web.pages.destination_form import payload_of, text_of

    assert payload_of("queue", "500") == {"number": "500"}
    assert payload_of("queue", " 500 : 7 ") == {"number": "500", "priority": 7}
    assert payload_of("queue", "Sales:3") == {"queue": "Sales", "priority": 3}
    assert payload_of("queue", "500:x") == {"queue": "500:x"}  # no priority: the service says no such queue
    assert text_of({"number": "500", "priority": 7}) == "500:7" and text_of({"number": "500"}) == "500"


async def test_an_ivr_key_sends_callers_into_a_queue_with_a_priority(
        web: Web, a: Company, admin_a: httpx.AsyncClient) -> None:  # noqa: F811
    from zvonok.callcenter import schemas as cc_schemas
    from zvonok.callcenter import service as cc_service

    async with web.db.session() as session:
        await cc_service.create_queue(session, a.id, cc_schemas.QueueCreate(name="Sales", number="500"))
        await session.commit()
    page = await admin_a.get("/ivr")
    r = await admin_a.post("/ivr", data={"csrf_token": csrf_of(page.text), "name": "Main", "prompt_text": "Hello",
                                         "voice": "en"})
    menu_url = r.headers["location"].split("?")[0]
    page = await admin_a.get(r.headers["location"])
    assert ":priority (500:5)" in page.text
    r = await admin_a.post(menu_url, data=keys_form(csrf_of(page.text), kind_1="queue", target_1="500:7",
                                                    kind_2="queue", target_2="500"))
    assert r.status_code == 303, r.text
    async with web.db.session() as session:
        menu = await session.get(IvrMenu, int(menu_url.rsplit("/", 1)[1]))
        assert menu is not None
        assert menu.keys == {"1": {"kind": "queue", "number": "500", "priority": 7},
                             "2": {"kind": "queue", "number": "500"}}
    page = await admin_a.get(menu_url)
    assert 'value="500:7"' in page.text  # shown as typed
    r = await admin_a.post(menu_url, data=keys_form(csrf_of(page.text), kind_1="queue", target_1="500:0"))
    assert r.status_code == 422  # a priority is 1..100
