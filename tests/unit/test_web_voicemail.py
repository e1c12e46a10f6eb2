"""Voicemail on the employee portal: my messages with a player and a delete button; a colleague's or
another company's message is a 404."""

from __future__ import annotations

import wave
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from test_web import Company, Web, a, b, csrf_of, login, web  # noqa: F401 - fixtures

from zvonok.org import schemas, service
from zvonok.telephony.voicemail import NewMessage
from zvonok.voicemail import schemas as vm_schemas
from zvonok.voicemail import service as vm_service


@pytest.fixture
async def employee_a(web: Web, a: Company) -> AsyncIterator[httpx.AsyncClient]:  # noqa: F811
    async with web.client() as client:
        assert (await login(client, a.employee)).status_code == 303
        yield client


async def leave(web: Web, tenant_id: int, extension_id: int, caller: str) -> int:  # noqa: F811
    async with web.db.session() as session:
        await vm_service.put_mailbox(session, tenant_id, extension_id, vm_schemas.MailboxIn(pin="4711"))
        await session.commit()
        number = (await vm_service.get_mailbox(session, tenant_id, extension_id))[1].number
    store = vm_service.VoicemailStore(web.db, vm_service.VoicemailFiles((web.settings.data_dir / "voicemail").resolve()))
    box = await store.mailbox(tenant_id, number)
    assert box is not None
    box.directory.mkdir(parents=True, exist_ok=True)
    path = Path(box.directory) / f"{caller}.wav"
    with wave.open(str(path), "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(8000)
        writer.writeframes(b"\x10\x00" * 16000)
    return await store.store(box, NewMessage(call_id="c", caller_number=caller, caller_name="Ivan", duration=2.0,
                                             file=path))


async def test_my_messages_play_and_delete(web: Web, a: Company, b: Company,  # noqa: F811
                                           employee_a: httpx.AsyncClient) -> None:
    mine = await leave(web, a.id, a.extension_id, "+74951112233")
    async with web.db.session() as session:
        colleague, _ = await service.create_extension(session, a.id, schemas.ExtensionCreate(
            number="102", display_name="Desk"))
        await session.commit()
    theirs = await leave(web, a.id, colleague.id, "+74954445566")
    foreign = await leave(web, b.id, b.extension_id, "+74957778899")
    page = await employee_a.get("/me")
    assert page.status_code == 200
    assert f'id="voicemail-message-{mine}"' in page.text and "+74951112233" in page.text
    assert f'src="/me/voicemail/{mine}/audio"' in page.text and "<audio" in page.text
    assert "+74954445566" not in page.text and "1 new of 1" in page.text and "*97" in page.text
    audio = await employee_a.get(f"/me/voicemail/{mine}/audio")
    assert audio.status_code == 200 and audio.headers["content-type"] == "audio/wav" and audio.content[:4] == b"RIFF"
    csrf = csrf_of(page.text)
    for other in (theirs, foreign):
        assert (await employee_a.get(f"/me/voicemail/{other}/audio")).status_code == 404
        assert (await employee_a.post(f"/me/voicemail/{other}/delete", data={"csrf_token": csrf})).status_code == 404
    r = await employee_a.post(f"/me/voicemail/{mine}/delete", data={"csrf_token": csrf})
    assert r.status_code == 303 and r.headers["location"].startswith("/me?voicemail_deleted=1")
    page = await employee_a.get("/me?voicemail_deleted=1")
    assert "Message deleted." in page.text and f"voicemail-message-{mine}" not in page.text
    assert "No messages." in page.text
    assert (await employee_a.get(f"/me/voicemail/{mine}/audio")).status_code == 404
