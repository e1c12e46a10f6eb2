"""The IVR menu REST API: CRUD, validation (422: unknown kinds, extensions, rooms and menus; timeout
cycles), greetings (text spoken by espeak-ng and cached; uploads converted to 8 kHz, bad files 422),
menus in use (409), a DID's ``ivr`` destination, tenant isolation, and the engine's port."""

from __future__ import annotations

import io
import wave
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from test_pstn_support import Company, add_number, make_company, ok

from zvonok.conference.models import ConferenceRoom
from zvonok.config import Settings
from zvonok.ivr.events import IvrChanged
from zvonok.ivr.prompts import IvrPrompts
from zvonok.ivr.service import MenuDirectory
from zvonok.storage.db import Database
from zvonok.telephony.ivr_dialogue import Target


@dataclass
class IvrApi:
    client: httpx.AsyncClient
    db: Database
    admin_token: str
    events: list[object]
    data_dir: Path

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_token}"}


@pytest.fixture
async def api(db: Database, settings: Settings) -> AsyncIterator[IvrApi]:
    from zvonok.api.app import create_app
    from zvonok.ivr import http as ivr_http
    from zvonok.org import accounts
    from zvonok.pstn import http as pstn_http

    async with db.session() as session:
        created = await accounts.platform_create_api_token(session, "tests")
        await session.commit()
    app = create_app(settings, db, routers=[ivr_http.router, pstn_http.router])
    seen: list[object] = []
    db.add_listener(seen.append)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://zvonok.test") as client:
            yield IvrApi(client, db, created.secret, seen, settings.data_dir)
    finally:
        db.remove_listener(seen.append)


def tone_wav(hz: float = 1000.0, seconds: float = 1.0, rate: int = 16000) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((8000 * np.sin(2 * np.pi * hz * t)).astype("<i2").tobytes())
    return buf.getvalue()


async def menu(api: IvrApi, c: Company, body: dict[str, Any], status: int = 201) -> dict[str, Any]:
    r = await api.client.post(f"{c.base}/ivr-menus", headers=c.headers, json=body)
    return await ok(r, status)  # type: ignore[no-any-return]


async def test_two_level_menu_crud_and_port(api: IvrApi, make_tenant: Any) -> None:
    c = await make_company(api, make_tenant, "acme.example")  # type: ignore[arg-type]
    sub = await menu(api, c, {"name": "Sales", "keys": {"1": {"kind": "extension", "number": "102"},
                                                        "2": {"kind": "ring", "numbers": ["101", "103"]}}})
    main = await menu(api, c, {"name": "Main", "prompt_text": "Здравствуйте! Нажмите 1.", "voice": "ru",
                               "keys": {"1": {"kind": "menu", "menu": sub["id"]}, "9": {"kind": "hangup"},
                                        "0": {"kind": "external", "number": "+7 495 123-45-67"},
                                        "3": {"kind": "fax", "emails": ["office@acme.example"]}},
                               "direct_dial": True, "repeat_key": "*", "timeout": 4, "retries": 1,
                               "timeout_destination": {"kind": "extension", "number": "101"}})
    assert main["greeting"] == "text" and sub["greeting"] == "none"
    assert main["keys"]["0"] == {"kind": "external", "number": "+74951234567"}
    assert main["keys"]["3"] == {"kind": "fax", "emails": ["office@acme.example"]}  # "press 3 to send a fax"
    assert any(isinstance(e, IvrChanged) and e.menu_id == main["id"] for e in api.events)
    page = await ok(await api.client.get(f"{c.base}/ivr-menus", headers=c.headers))
    assert [m["id"] for m in page["items"]] == [sub["id"], main["id"]]
    # the text was spoken when saved: a cached 8 kHz WAV of real speech
    prompts = IvrPrompts(api.data_dir / "ivr")
    spoken = prompts.speech_path("Здравствуйте! Нажмите 1.", "ru")
    with wave.open(str(spoken)) as w:
        assert (w.getframerate(), w.getnchannels()) == (8000, 1) and w.getnframes() > 8000
    r = await api.client.get(f"{c.base}/ivr-menus/{main['id']}/greeting", headers=c.headers)
    assert r.status_code == 200 and r.content == spoken.read_bytes()
    # the engine's port
    specs, extensions = await MenuDirectory(api.db, prompts).menus(c.id)
    spec = specs[main["id"]]
    assert spec.keys["3"] == Target(kind="fax", payload={"emails": ["office@acme.example"]})
    assert spec.prompt == str(spoken) and spec.repeat_key == "*" and spec.direct_dial and spec.retries == 1
    assert spec.keys["1"] == Target(kind="menu", payload={"menu": sub["id"]})
    assert spec.timeout_target == Target(kind="extension", payload={"number": "101"})
    assert extensions == {"101", "102", "103"} and specs[sub["id"]].prompt == ""
    # cached until the tenant's menus change
    directory = MenuDirectory(api.db, prompts)
    first = await directory.menus(c.id)
    assert await directory.menus(c.id) is first
    # PATCH, then DELETE refused while in use
    patched = await ok(await api.client.patch(f"{c.base}/ivr-menus/{main['id']}", headers=c.headers,
                                              json={"repeat_key": None, "name": "Main menu"}))
    assert (patched["repeat_key"], patched["name"]) == (None, "Main menu")
    directory.on_event(api.events[-1])
    assert (await directory.menus(c.id))[0][main["id"]].repeat_key is None
    r = await api.client.delete(f"{c.base}/ivr-menus/{sub['id']}", headers=c.headers)
    assert r.status_code == 409 and f"menu {main['id']}" in r.text
    await ok(await api.client.delete(f"{c.base}/ivr-menus/{main['id']}", headers=c.headers), 204)
    await ok(await api.client.delete(f"{c.base}/ivr-menus/{sub['id']}", headers=c.headers), 204)


async def test_greeting_upload(api: IvrApi, make_tenant: Any) -> None:
    c = await make_company(api, make_tenant, "acme.example")  # type: ignore[arg-type]
    m = await menu(api, c, {"keys": {"1": {"kind": "extension", "number": "101"}}})
    url = f"{c.base}/ivr-menus/{m['id']}/greeting"
    r = await api.client.put(url, headers=c.headers, content=tone_wav(rate=44100, seconds=1.5))
    assert (await ok(r))["seconds"] == 1.5
    got = await api.client.get(url, headers=c.headers)
    with wave.open(io.BytesIO(got.content)) as w:
        assert (w.getframerate(), w.getnframes()) == (8000, 12000)
        samples = np.frombuffer(w.readframes(12000), dtype="<i2")
    peak = np.argmax(np.abs(np.fft.rfft(samples))) * 8000 / len(samples)
    assert abs(peak - 1000) < 5
    assert (await ok(await api.client.get(f"{c.base}/ivr-menus/{m['id']}", headers=c.headers)))["greeting"] == "upload"
    for bad in (b"", b"not audio at all" * 100):
        r = await api.client.put(url, headers=c.headers, content=bad)
        assert r.status_code == 422, r.text
    await ok(await api.client.delete(url, headers=c.headers), 204)
    assert (await api.client.get(url, headers=c.headers)).status_code == 404


MENU_ERRORS: list[tuple[dict[str, Any], str]] = [
    ({"keys": {"1": {"kind": "queue", "number": "5"}}}, "a queue number"),
    ({"keys": {"9": {"kind": "queue", "number": "500", "priority": 0}}},
     "keys.9.priority: a whole number from 1 to 100"),
    ({"keys": {"1": {"kind": "voicemail", "number": "101"}}}, "is not available here (one of extension, ring, conference, external, queue, menu, fax, hangup)"),
    ({"keys": {"3": {"kind": "fax", "emails": ["office@example.com", "not mail"]}}},
     "keys.3.emails: item 1: 'not mail' is not an e-mail address"),
    ({"keys": {"1": {"kind": "extension", "number": "555"}}}, "extension 555 does not exist"),
    ({"keys": {"1": {"kind": "ring", "numbers": ["101", "777"]}}}, "extension 777 does not exist"),
    ({"keys": {"1": {"kind": "conference", "number": "800"}}}, "conference room 800 does not exist"),
    ({"keys": {"1": {"kind": "menu", "menu": 99999}}}, "IVR menu 99999 does not exist"),
    ({"keys": {"1": {"kind": "external", "number": "12"}}}, "keys.1.number"),
    ({"keys": {"1": {"kind": "hangup", "x": 1}}}, "keys.1: unknown key 'x'"),
    ({"keys": {"1": "101"}}, "valid dictionary"),
    ({"keys": {"A": {"kind": "hangup"}}}, "keys"),
    ({"keys": {"1": {"kind": "hangup"}}, "repeat_key": "1"}, "repeat_key"),
    ({"timeout": 0}, "timeout"),
    ({"retries": 9}, "retries"),
    ({"voice": "de"}, "voice"),
    ({"prompt_text": "x" * 1001}, "prompt_text"),
    ({"invalid_destination": {"kind": "extension", "number": "999"}}, "extension 999 does not exist"),
]


@pytest.mark.parametrize(("body", "message"), MENU_ERRORS)
async def test_menu_validation_422(api: IvrApi, make_tenant: Any, body: dict[str, Any], message: str) -> None:
    c = await make_company(api, make_tenant, "acme.example")  # type: ignore[arg-type]
    r = await api.client.post(f"{c.base}/ivr-menus", headers=c.headers, json=body)
    assert r.status_code == 422, r.text
    assert message in r.text
    page = await ok(await api.client.get(f"{c.base}/ivr-menus", headers=c.headers))
    assert page["total"] == 0


async def test_timeout_cycle_refused_key_cycle_allowed(api: IvrApi, make_tenant: Any) -> None:
    c = await make_company(api, make_tenant, "acme.example")  # type: ignore[arg-type]
    a = await menu(api, c, {"name": "A"})
    b = await menu(api, c, {"name": "B", "timeout_destination": {"kind": "menu", "menu": a["id"]},
                            "keys": {"0": {"kind": "menu", "menu": a["id"]}}})
    # A → B on a key: fine (the caller chose); A → B on timeout closes a silent loop: refused
    await ok(await api.client.patch(f"{c.base}/ivr-menus/{a['id']}", headers=c.headers,
                                    json={"keys": {"1": {"kind": "menu", "menu": b["id"]}}}))
    r = await api.client.patch(f"{c.base}/ivr-menus/{a['id']}", headers=c.headers,
                               json={"timeout_destination": {"kind": "menu", "menu": b["id"]}})
    assert r.status_code == 422 and f"{a['id']} → {b['id']} → {a['id']}" in r.text, r.text
    r = await api.client.patch(f"{c.base}/ivr-menus/{a['id']}", headers=c.headers,
                               json={"timeout_destination": {"kind": "menu", "menu": a["id"]}})
    assert r.status_code == 422 and "timeout" in r.text
    got = await ok(await api.client.get(f"{c.base}/ivr-menus/{a['id']}", headers=c.headers))
    assert got["timeout_destination"] is None


async def test_did_destination_and_isolation(api: IvrApi, make_tenant: Any) -> None:
    c = await make_company(api, make_tenant, "acme.example")  # type: ignore[arg-type]
    other = await make_company(api, make_tenant, "other.example")  # type: ignore[arg-type]
    m = await menu(api, c, {"keys": {"1": {"kind": "extension", "number": "101"}}})
    theirs = await menu(api, other, {})
    number = await add_number(api, "+74951110000", c.id)  # type: ignore[arg-type]
    url = f"{c.base}/numbers/{number['id']}"
    r = await api.client.patch(url, headers=c.headers, json={"destination_kind": "ivr",
                                                             "destination": {"menu": theirs["id"]}})
    assert r.status_code == 422 and "does not exist" in r.text
    assert (await api.client.get(f"{c.base}/ivr-menus/{theirs['id']}", headers=c.headers)).status_code == 404
    await ok(await api.client.patch(url, headers=c.headers, json={"destination_kind": "ivr",
                                                                  "destination": {"menu": m["id"]}}))
    r = await api.client.delete(f"{c.base}/ivr-menus/{m['id']}", headers=c.headers)
    assert r.status_code == 409 and "DID +74951110000" in r.text
    schedule = {"default": {"kind": "ivr", "menu": m["id"]},
                "rules": [{"days": [0], "from": "09:00", "to": "18:00", "destination": {"kind": "ivr", "menu": 424242}}]}
    r = await api.client.patch(url, headers=c.headers, json={"destination_kind": "schedule", "destination": schedule})
    assert r.status_code == 422 and "rules[0].destination.menu" in r.text
    schedule["rules"][0]["destination"] = {"kind": "extension", "number": "101"}  # type: ignore[index]
    await ok(await api.client.patch(url, headers=c.headers, json={"destination_kind": "schedule",
                                                                  "destination": schedule}))
    r = await api.client.delete(f"{c.base}/ivr-menus/{m['id']}", headers=c.headers)
    assert r.status_code == 409


async def test_keys_naming_another_tenants_things_are_422(api: IvrApi, make_tenant: Any) -> None:
    """Keys are typed destinations checked in the menu's tenant only: another tenant's menu, room or
    extension is answered exactly as one that does not exist; an unknown kind names the kinds a key takes."""
    a = await make_company(api, make_tenant, "a.example")  # type: ignore[arg-type]
    b = await make_company(api, make_tenant, "b.example")  # type: ignore[arg-type]
    theirs = await ok(await api.client.post(f"{b.base}/ivr-menus", headers=b.headers,
                                            json={"name": "B", "keys": {"1": {"kind": "hangup"}}}), 201)
    async with api.db.session() as session:
        session.add(ConferenceRoom(tenant_id=b.id, number="800"))
        await session.commit()
    await ok(await api.client.post(f"{b.base}/extensions", headers=b.headers,
                                   json={"number": "105", "display_name": "B"}), 201)
    for target, message in [
        ({"kind": "menu", "menu": theirs["id"]}, f"keys.1.menu: IVR menu {theirs['id']} does not exist"),
        ({"kind": "conference", "number": "800"}, "keys.1.number: conference room 800 does not exist"),
        ({"kind": "ring", "numbers": ["101", "105"]}, "keys.1.numbers[1]: extension 105 does not exist"),
        ({"kind": "teleport"}, "keys.1.kind: unknown destination kind 'teleport'"),
    ]:
        r = await api.client.post(f"{a.base}/ivr-menus", headers=a.headers, json={"name": "A", "keys": {"1": target}})
        assert r.status_code == 422, (target, r.text)
        detail = r.json()["detail"][0]
        assert detail["loc"] == ["body", "keys"] and detail["msg"].startswith(message), (target, detail)
