"""Voicemail through the REST API and the call engine's port: mailbox settings (PIN write-only),
greetings converted on upload, messages listed/downloaded/marked/deleted, an employee limited to their
own mailbox, forwarding to voicemail, and the MailboxChanged events after each commit."""

from __future__ import annotations

import io
import wave
from pathlib import Path
from typing import Any

import numpy as np
from test_pstn_support import Company, make_company, ok

from zvonok.org.pins import verify_pin
from zvonok.telephony.voicemail import NewMessage
from zvonok.voicemail.events import MailboxChanged
from zvonok.voicemail.service import VoicemailFiles, VoicemailStore

Api = Any


def wav_bytes(seconds: float, rate: int = 16000, frequency: float = 600.0) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    samples = (0.4 * 32767 * np.sin(2 * np.pi * frequency * t)).astype("<i2")
    out = io.BytesIO()
    with wave.open(out, "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(rate)
        writer.writeframes(samples.tobytes())
    return out.getvalue()


def store_of(api: Api) -> VoicemailStore:
    return VoicemailStore(api.db, VoicemailFiles((api.settings.data_dir / "voicemail").resolve()))


async def leave(api: Api, tenant_id: int, number: str, caller: str = "+74951234567", seconds: float = 2.0) -> int:
    """A message as the engine leaves one: the WAV in the mailbox's directory, then the port's store()."""
    store = store_of(api)
    box = await store.mailbox(tenant_id, number)
    assert box is not None
    box.directory.mkdir(parents=True, exist_ok=True)
    path = box.directory / f"call-{caller[-4:]}-{seconds}.wav"
    path.write_bytes(wav_bytes(seconds, rate=8000))
    return await store.store(box, NewMessage(call_id="c1", caller_number=caller, caller_name="Ivan",
                                             duration=seconds, file=path))


async def setup(api: Api, make_tenant: Any, domain: str = "vm.example") -> Company:
    c = await make_company(api, make_tenant, domain)
    await ok(await api.client.put(f"{c.base}/extensions/{c.ext_alice}/voicemail", headers=c.headers,
                                  json={"pin": "4711", "email": "alice@vm.example", "silence_seconds": 3}))
    return c


async def test_mailbox_settings_pin_write_only(api: Api, make_tenant: Any) -> None:
    c = await make_company(api, make_tenant, "vm.example")
    url = f"{c.base}/extensions/{c.ext_alice}/voicemail"
    r = await api.client.get(url, headers=c.headers)
    assert r.status_code == 404  # no mailbox until one is set up
    r = await api.client.put(url, headers=c.headers, json={"pin": "4711", "max_message_seconds": 120})
    box = await ok(r)
    assert "4711" not in r.text and "pin_hash" not in r.text
    assert (box["number"], box["has_pin"], box["enabled"], box["max_message_seconds"], box["silence_seconds"],
            box["new_messages"]) == ("101", True, True, 120, 5, 0)
    info = await store_of(api).mailbox(c.id, "101")
    assert info is not None and info.pin_hash is not None and verify_pin("4711", info.pin_hash)
    # a PUT without the PIN keeps it; null removes it
    assert (await ok(await api.client.put(url, headers=c.headers, json={"enabled": False})))["has_pin"] is True
    assert (await ok(await api.client.put(url, headers=c.headers, json={"pin": None})))["has_pin"] is False
    for bad in ({"pin": "12"}, {"max_message_seconds": 5}, {"email": "nope"}, {"unknown": 1}):
        assert (await api.client.put(url, headers=c.headers, json=bad)).status_code == 422, bad
    await leave(api, c.id, "101")
    info = await store_of(api).mailbox(c.id, "101")
    assert info is not None and any(info.directory.iterdir())
    await ok(await api.client.delete(url, headers=c.headers), 204)
    assert await store_of(api).mailbox(c.id, "101") is None
    assert not info.directory.exists()  # its messages' files went with it


async def test_greeting_upload_is_converted_and_bad_files_refused(api: Api, make_tenant: Any) -> None:
    c = await setup(api, make_tenant)
    url = f"{c.base}/extensions/{c.ext_alice}/voicemail/greetings/busy"
    box = await ok(await api.client.put(url, headers=c.headers, content=wav_bytes(1.5)))
    assert (box["greeting_busy"], box["greeting_unavailable"]) == (True, False)
    info = await store_of(api).mailbox(c.id, "101")
    assert info is not None
    with wave.open(str(info.greetings["busy"]), "rb") as reader:
        assert (reader.getframerate(), reader.getnchannels()) == (8000, 1)
        assert abs(reader.getnframes() / 8000 - 1.5) < 0.05
    r = await api.client.put(url, headers=c.headers, content=b"not audio at all" * 10)
    assert r.status_code == 422
    assert (await api.client.put(f"{c.base}/extensions/{c.ext_alice}/voicemail/greetings/other", headers=c.headers,
                                 content=wav_bytes(1.0))).status_code == 404
    await ok(await api.client.delete(url, headers=c.headers), 204)
    info = await store_of(api).mailbox(c.id, "101")
    assert info is not None and info.greetings == {}
    # recorded by phone: the engine hands the file over
    info.directory.mkdir(parents=True, exist_ok=True)
    recorded = info.directory / "call-greeting.wav"
    recorded.write_bytes(wav_bytes(2.0, rate=8000))
    await store_of(api).save_greeting(info, "unavailable", recorded)
    box = await ok(await api.client.get(f"{c.base}/extensions/{c.ext_alice}/voicemail", headers=c.headers))
    assert (box["greeting_busy"], box["greeting_unavailable"]) == (False, True)
    info = await store_of(api).mailbox(c.id, "101")
    assert info is not None and info.greetings["unavailable"].read_bytes() == wav_bytes(2.0, rate=8000)
    assert not recorded.exists()


async def test_messages_list_download_mark_delete_and_events(api: Api, make_tenant: Any) -> None:
    c = await setup(api, make_tenant)
    seen: list[object] = []
    api.db.add_listener(seen.append)
    try:
        first = await leave(api, c.id, "101", seconds=1.5)
        second = await leave(api, c.id, "101", caller="+79161112233", seconds=2.5)
    finally:
        api.db.remove_listener(seen.append)
    changed = [e for e in seen if isinstance(e, MailboxChanged)]
    assert [e.new_message_id for e in changed] == [first, second]
    assert {e.extension_id for e in changed} == {c.ext_alice}
    url = f"{c.base}/voicemail/messages"
    page = await ok(await api.client.get(url, headers=c.headers))
    assert page["total"] == 2 and [m["id"] for m in page["items"]] == [second, first]  # newest first
    item = page["items"][0]
    assert (item["number"], item["caller_number"], item["caller_name"], item["duration"], item["read"],
            item["folder"]) == ("101", "+79161112233", "Ivan", 2.5, False, "inbox")
    box = await ok(await api.client.get(f"{c.base}/extensions/{c.ext_alice}/voicemail", headers=c.headers))
    assert (box["new_messages"], box["old_messages"]) == (2, 0)
    # the port lists unread first, newest first; the e-mail job finds them pending
    store = store_of(api)
    info = await store.mailbox(c.id, "101")
    assert info is not None
    assert [m.id for m in await store.messages(info)] == [second, first]
    audio = await api.client.get(f"{url}/{first}/audio", headers=c.headers)
    assert audio.status_code == 200 and audio.headers["content-type"] == "audio/wav"
    with wave.open(io.BytesIO(audio.content), "rb") as reader:
        assert abs(reader.getnframes() / 8000 - 1.5) < 0.01
    marked = await ok(await api.client.patch(f"{url}/{first}", headers=c.headers, json={"read": True,
                                                                                         "folder": "saved"}))
    assert (marked["read"], marked["folder"]) == (True, "saved")
    assert [m.id for m in await store.messages(info)] == [second, first]
    box = await ok(await api.client.get(f"{c.base}/extensions/{c.ext_alice}/voicemail", headers=c.headers))
    assert (box["new_messages"], box["old_messages"]) == (1, 1)
    assert (await api.client.patch(f"{url}/{first}", headers=c.headers, json={"folder": "trash"})).status_code == 422
    files = sorted(Path(info.directory).glob("*.wav"))
    assert len(files) == 2
    await ok(await api.client.delete(f"{url}/{first}", headers=c.headers), 204)
    assert len(sorted(Path(info.directory).glob("*.wav"))) == 1
    assert (await api.client.get(f"{url}/{first}", headers=c.headers)).status_code == 404
    assert (await ok(await api.client.get(url, headers=c.headers)))["total"] == 1


async def test_employee_sees_only_their_own_mailbox(api: Api, make_tenant: Any) -> None:
    c = await setup(api, make_tenant)
    bob_ext = next(e["id"] for e in (await ok(await api.client.get(f"{c.base}/extensions", headers=c.headers)))["items"]
                   if e["number"] == "102")
    await ok(await api.client.put(f"{c.base}/extensions/{bob_ext}/voicemail", headers=c.headers, json={"pin": "1111"}))
    mine = await leave(api, c.id, "101")
    bobs = await leave(api, c.id, "102")
    url = f"{c.base}/voicemail/messages"
    page = await ok(await api.client.get(url, headers=c.alice_headers))
    assert [m["id"] for m in page["items"]] == [mine]
    assert (await ok(await api.client.get(f"{url}?extension_id={bob_ext}", headers=c.alice_headers)))["total"] == 0
    for method, path in (("GET", f"{url}/{bobs}"), ("GET", f"{url}/{bobs}/audio"), ("DELETE", f"{url}/{bobs}"),
                         ("GET", f"{c.base}/extensions/{bob_ext}/voicemail")):
        assert (await api.client.request(method, path, headers=c.alice_headers)).status_code == 404, path
    r = await api.client.patch(f"{url}/{bobs}", headers=c.alice_headers, json={"read": True})
    assert r.status_code == 404
    # her own: read, mark, change her PIN, but not delete the mailbox
    assert (await ok(await api.client.patch(f"{url}/{mine}", headers=c.alice_headers, json={"read": True})))["read"]
    own = f"{c.base}/extensions/{c.ext_alice}/voicemail"
    assert (await ok(await api.client.put(own, headers=c.alice_headers, json={"pin": "2468"})))["has_pin"]
    assert (await api.client.delete(own, headers=c.alice_headers)).status_code == 403
    # the admin sees both
    assert (await ok(await api.client.get(url, headers=c.headers)))["total"] == 2


async def test_forwarding_to_voicemail(api: Api, make_tenant: Any) -> None:
    c = await setup(api, make_tenant)
    url = f"{c.base}/extensions/{c.ext_alice}/forwarding"
    fwd = await ok(await api.client.put(url, headers=c.headers, json={"no_answer": "voicemail",
                                                                      "busy": "voicemail:101"}))
    assert (fwd["no_answer"], fwd["busy"]) == ("voicemail:101", "voicemail:101")
    r = await api.client.put(url, headers=c.headers, json={"no_answer": "voicemail:102"})  # 102 has no mailbox
    assert r.status_code == 422 and "no mailbox" in r.text


async def test_company_smtp_settings(api: Api, make_tenant: Any) -> None:
    c = await setup(api, make_tenant)
    url = f"{c.base}/voicemail/smtp"
    assert (await api.client.get(url, headers=c.headers)).status_code == 404
    r = await api.client.put(url, headers=c.headers, json={"host": "smtp.vm.example", "port": 587,
                                                            "username": "pbx", "password": "s3cret",
                                                            "security": "starttls", "sender": "pbx@vm.example"})
    out = await ok(r)
    assert "s3cret" not in r.text and out["has_password"] is True and out["security"] == "starttls"
    kept = await ok(await api.client.put(url, headers=c.headers, json={"host": "smtp2.vm.example",
                                                                        "sender": "pbx@vm.example"}))
    assert (kept["host"], kept["port"], kept["has_password"]) == ("smtp2.vm.example", 25, True)
    for bad in ({"host": "a b", "sender": "x@y.example"}, {"host": "h", "sender": "nope"},
                {"host": "h", "sender": "x@y.example", "security": "ssl"}):
        assert (await api.client.put(url, headers=c.headers, json=bad)).status_code == 422, bad
    assert (await api.client.get(url, headers=c.alice_headers)).status_code == 403  # admins only
    await ok(await api.client.delete(url, headers=c.headers), 204)
    assert (await api.client.get(url, headers=c.headers)).status_code == 404
