# ruff: noqa: F811 - pytest fixtures imported from other test modules are parameters here
"""The mailbox settings page: an employee's own (``/me/extensions/{id}/mailbox``) and an admin's of any
extension (``/extensions/{id}/mailbox``): e-mail on/off and address, WAV/MP3, attach or link, delete
after e-mailing, the longest message, the PIN (hashed, never shown), the greetings (uploaded, played,
removed; a file that is not audio is refused with a message). A colleague's mailbox is a 404, the admin
pages a 403 for employees, another company's extension a 404."""

from __future__ import annotations

import io
import wave
from collections.abc import AsyncIterator

import httpx
import numpy as np
import pytest
from test_web import Company, Web, a, admin_a, b, csrf_of, login, web  # noqa: F401 - fixtures

from zvonok.org import schemas, service
from zvonok.org.pins import verify_pin
from zvonok.voicemail import schemas as vm_schemas
from zvonok.voicemail import service as vm_service
from zvonok.voicemail.models import Mailbox


@pytest.fixture
async def employee_a(web: Web, a: Company) -> AsyncIterator[httpx.AsyncClient]:  # noqa: F811
    async with web.client() as client:
        assert (await login(client, a.employee)).status_code == 303
        yield client


def wav_bytes(seconds: float, rate: int = 16000) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    out = io.BytesIO()
    with wave.open(out, "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(rate)
        writer.writeframes((0.3 * 32767 * np.sin(2 * np.pi * 440 * t)).astype("<i2").tobytes())
    return out.getvalue()


async def mailbox(web: Web, tenant_id: int, extension_id: int) -> Mailbox:  # noqa: F811
    async with web.db.session() as session:
        return (await vm_service.get_mailbox(session, tenant_id, extension_id))[0]


async def set_up(web: Web, tenant_id: int, extension_id: int) -> None:  # noqa: F811
    async with web.db.session() as session:
        await vm_service.put_mailbox(session, tenant_id, extension_id, vm_schemas.MailboxIn(pin="4711"))
        await session.commit()


SETTINGS = {
    "email_on": "1",
    "email": "ivan.vm@a.example",
    "attach_format": "mp3",
    "email_audio": "attach",
    "max_message_seconds": "240",
}


async def test_employee_changes_their_own_mailbox(
    web: Web, a: Company, employee_a: httpx.AsyncClient
) -> None:  # noqa: F811
    url = f"/me/extensions/{a.extension_id}/mailbox"
    page = await employee_a.get(url)
    assert (
        page.status_code == 200 and "ask your administrator" in page.text
    )  # no mailbox: not theirs to create
    r = await employee_a.post(url, data={**SETTINGS, "csrf_token": csrf_of(page.text)})
    assert r.status_code == 404
    await set_up(web, a.id, a.extension_id)
    me = await employee_a.get("/me")
    assert f'href="{url}"' in me.text
    page = await employee_a.get(url)
    assert page.status_code == 200 and 'value="ivan@a.example"' in page.text  # their e-mail offered
    assert "4711" not in page.text and "argon2" not in page.text and 'name="enabled"' not in page.text
    csrf = csrf_of(page.text)

    r = await employee_a.post(url, data={**SETTINGS, "delete_after_email": "1", "csrf_token": csrf})
    assert r.status_code == 303 and r.headers["location"] == f"{url}?done=saved"
    box = await mailbox(web, a.id, a.extension_id)
    assert (
        box.email,
        box.attach_format,
        box.email_audio,
        box.delete_after_email,
        box.max_message_seconds,
        box.enabled,
    ) == ("ivan.vm@a.example", "mp3", "attach", True, 240, True)
    assert box.pin_hash is not None and verify_pin("4711", box.pin_hash)  # the PIN kept
    page = await employee_a.get(r.headers["location"])
    assert "Mailbox settings saved." in page.text and 'id="mb-mp3" checked' in page.text

    # refused forms: nothing saved, the message next to the field
    for data, message in (
        ({**SETTINGS, "email": "nope"}, "Not a valid email address."),
        ({**SETTINGS, "email": ""}, "Enter the address"),
        ({**SETTINGS, "max_message_seconds": "5"}, "Whole seconds from 10 to 600."),
        ({**SETTINGS, "email_audio": "link", "delete_after_email": "1"}, "must be kept"),
        ({**SETTINGS, "email_on": "", "delete_after_email": "1"}, "only be deleted"),
    ):
        r = await employee_a.post(url, data={**data, "csrf_token": csrf})
        assert r.status_code == 422 and message in r.text, (data, r.text[-2000:])
    assert (await mailbox(web, a.id, a.extension_id)).max_message_seconds == 240

    # e-mail off
    r = await employee_a.post(url, data={**SETTINGS, "email_on": "", "csrf_token": csrf})
    assert r.status_code == 303 and (await mailbox(web, a.id, a.extension_id)).email is None

    # the PIN: hashed, never shown; a bad one refused
    for pin, confirm, message in (("12", "12", "4 to 8 digits"), ("2468", "2469", "differ")):
        r = await employee_a.post(f"{url}/pin", data={"pin": pin, "confirm": confirm, "csrf_token": csrf})
        assert r.status_code == 422 and message in r.text and f'value="{pin}"' not in r.text, r.text[-1500:]
    r = await employee_a.post(f"{url}/pin", data={"pin": "2468", "confirm": "2468", "csrf_token": csrf})
    assert r.status_code == 303
    box = await mailbox(web, a.id, a.extension_id)
    assert (
        box.pin_hash is not None and verify_pin("2468", box.pin_hash) and box.email is None
    )  # the rest kept

    # a greeting: uploaded (converted), played, removed; not audio: refused with a message
    r = await employee_a.post(
        f"{url}/greetings/busy",
        data={"csrf_token": csrf},
        files={"greeting": ("hello.wav", wav_bytes(1.0), "audio/wav")},
    )
    assert r.status_code == 303 and (await mailbox(web, a.id, a.extension_id)).greeting_busy
    page = await employee_a.get(url)
    assert (
        f'src="{url}/greetings/busy"' in page.text and f'src="{url}/greetings/unavailable"' not in page.text
    )
    audio = await employee_a.get(f"{url}/greetings/busy")
    assert audio.status_code == 200 and audio.headers["content-type"] == "audio/wav"
    with wave.open(io.BytesIO(audio.content), "rb") as reader:
        assert (reader.getframerate(), reader.getnchannels()) == (8000, 1)
        assert abs(reader.getnframes() / 8000 - 1.0) < 0.05
    assert (await employee_a.get(f"{url}/greetings/unavailable")).status_code == 404
    r = await employee_a.post(
        f"{url}/greetings/unavailable",
        data={"csrf_token": csrf},
        files={"greeting": ("notes.txt", b"not audio at all" * 20, "text/plain")},
    )
    assert r.status_code == 422 and "Not an audio file this server can read" in r.text
    assert not (await mailbox(web, a.id, a.extension_id)).greeting_unavailable
    r = await employee_a.post(f"{url}/greetings/busy/remove", data={"csrf_token": csrf})
    assert r.status_code == 303 and not (await mailbox(web, a.id, a.extension_id)).greeting_busy


async def test_only_their_own_mailbox_and_admins_for_all(
    web: Web,
    a: Company,
    b: Company,  # noqa: F811
    employee_a: httpx.AsyncClient,
    admin_a: httpx.AsyncClient,
) -> None:  # noqa: F811
    async with web.db.session() as session:
        desk, _ = await service.create_extension(
            session, a.id, schemas.ExtensionCreate(number="102", display_name="Desk")
        )
        await session.commit()
    for ext in (desk.id, a.extension_id, b.extension_id):
        await set_up(web, a.id if ext != b.extension_id else b.id, ext)
    csrf = csrf_of((await employee_a.get("/me")).text)
    for other in (desk.id, b.extension_id):  # a colleague's, another company's
        base = f"/me/extensions/{other}/mailbox"
        assert (await employee_a.get(base)).status_code == 404
        assert (await employee_a.post(base, data={**SETTINGS, "csrf_token": csrf})).status_code == 404
        r = await employee_a.post(f"{base}/pin", data={"pin": "1357", "confirm": "1357", "csrf_token": csrf})
        assert r.status_code == 404
    assert (await employee_a.get(f"/extensions/{a.extension_id}/mailbox")).status_code == 403

    # the admin: any extension of the company, the mailbox on/off, a new mailbox set up
    page = await admin_a.get(f"/extensions/{desk.id}/mailbox")
    assert page.status_code == 200 and 'name="enabled"' in page.text
    assert f'href="/extensions/{desk.id}/mailbox"' in (await admin_a.get("/extensions")).text
    r = await admin_a.post(
        f"/extensions/{desk.id}/mailbox",
        data={**SETTINGS, "email_audio": "link", "csrf_token": csrf_of(page.text)},
    )
    assert r.status_code == 303
    box = await mailbox(web, a.id, desk.id)
    assert (box.enabled, box.email_audio) == (False, "link")  # the switch was left off
    async with web.db.session() as session:
        third, _ = await service.create_extension(
            session, a.id, schemas.ExtensionCreate(number="103", display_name="Hall")
        )
        await session.commit()
    page = await admin_a.get(f"/extensions/{third.id}/mailbox")
    assert "no mailbox yet" in page.text
    r = await admin_a.post(
        f"/extensions/{third.id}/mailbox", data={**SETTINGS, "enabled": "1", "csrf_token": csrf_of(page.text)}
    )
    assert r.status_code == 303 and (await mailbox(web, a.id, third.id)).enabled
    assert (await admin_a.get(f"/extensions/{b.extension_id}/mailbox")).status_code == 404
