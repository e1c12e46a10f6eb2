"""The fax REST API: a PDF posted is rendered and queued (FaxQueued after the commit); bad input is 422;
received documents are listed, read and downloaded as PDF; another tenant's are 404."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from zvonok.fax.documents import pdf_to_tiff
from zvonok.fax.endpoint import FaxResult
from zvonok.fax.events import FaxQueued
from zvonok.fax.service import FaxFiles, FaxStore

Api = Any

DATA = Path(__file__).resolve().parents[1] / "data" / "fax"
PDF = (DATA / "two_pages.pdf").read_bytes()


def _files(api: Api) -> FaxFiles:
    return FaxFiles((api.settings.data_dir / "fax").resolve())


async def received_fax(api: Api, tenant_id: int) -> int:
    """A fax as the engine keeps one: begun at the answer, its TIFF written, finished at phase E."""
    store = FaxStore(api.db, _files(api))
    fax = await store.begin_receive(
        tenant_id, call_id="c1", remote_number="+74991234567", local_number="+74957650001"
    )
    pdf_to_tiff(PDF, fax.tiff)
    result = FaxResult(
        code=0, text="OK", pages_tx=0, pages_rx=2, remote_ident="+74991234567", bit_rate=14400, ecm=True
    )
    assert await store.finish_receive(tenant_id, fax, result, "OK") == 2
    return fax.id


async def test_post_queues_a_rendered_document(api: Api, make_tenant: Any) -> None:
    t = await make_tenant("fax.example")
    seen: list[object] = []
    api.db.add_listener(seen.append)
    r = await api.client.post(
        f"/api/v1/tenants/{t.id}/faxes",
        headers=t.headers,
        files={"file": ("doc.pdf", PDF, "application/pdf")},
        data={"number": "+7 (495) 765-00-02"},
    )
    assert r.status_code == 201, r.text
    out = r.json()
    assert (out["direction"], out["status"], out["pages"], out["remote_number"], out["has_pdf"]) == (
        "out",
        "queued",
        2,
        "+74957650002",
        True,
    )
    assert [e for e in seen if isinstance(e, FaxQueued)] == [FaxQueued(tenant_id=t.id, fax_id=out["id"])]
    assert (_files(api).tiff(t.id, out["id"])).is_file()
    r = await api.client.get(f"/api/v1/tenants/{t.id}/faxes/{out['id']}.pdf", headers=t.headers)
    assert r.status_code == 200 and r.content == PDF


async def test_bad_posts_are_422(api: Api, make_tenant: Any) -> None:
    t = await make_tenant("fax.example")
    url = f"/api/v1/tenants/{t.id}/faxes"
    cases = [
        ({"file": ("doc.pdf", b"%PDF-1.4 broken", "application/pdf")}, {"number": "+74957650002"}),
        ({"file": ("doc.txt", b"hello", "text/plain")}, {"number": "+74957650002"}),
        ({"file": ("doc.pdf", PDF, "application/pdf")}, {"number": "12345"}),
        ({}, {"number": "+74957650002"}),
    ]
    for files, data in cases:
        r = await api.client.post(url, headers=t.headers, files=files or None, data=data)
        assert r.status_code == 422, (files.keys(), data, r.text)
        assert r.json()["detail"]
    r = await api.client.post(url, headers=t.headers, json={"number": "+74957650002"})
    assert r.status_code == 422, r.text
    r = await api.client.get(url, headers=t.headers)
    assert r.json()["total"] == 0


async def test_received_faxes_are_listed_and_kept_to_their_tenant(api: Api, make_tenant: Any) -> None:
    a = await make_tenant("a.example")
    b = await make_tenant("b.example")
    fax_id = await received_fax(api, b.id)
    r = await api.client.get(f"/api/v1/tenants/{b.id}/faxes?direction=in", headers=b.headers)
    assert r.status_code == 200
    items = r.json()["items"]
    assert [(f["id"], f["status"], f["pages"], f["remote_ident"]) for f in items] == [
        (fax_id, "received", 2, "+74991234567")
    ]
    r = await api.client.get(f"/api/v1/tenants/{b.id}/faxes?direction=out", headers=b.headers)
    assert r.json()["items"] == []
    r = await api.client.get(f"/api/v1/tenants/{b.id}/faxes/{fax_id}.pdf", headers=b.headers)
    assert r.status_code == 200 and r.content.startswith(b"%PDF")
    for url in (
        f"/api/v1/tenants/{b.id}/faxes/{fax_id}",
        f"/api/v1/tenants/{a.id}/faxes/{fax_id}",
        f"/api/v1/tenants/{a.id}/faxes/{fax_id}.pdf",
    ):
        r = await api.client.get(url, headers=a.headers)
        assert r.status_code == 404, (url, r.text)
    r = await api.client.get(f"/api/v1/tenants/{a.id}/faxes", headers=a.headers)
    assert r.json()["items"] == []


async def test_a_busy_number_is_tried_again_then_given_up(api: Api, make_tenant: Any) -> None:
    t = await make_tenant("fax.example")
    r = await api.client.post(
        f"/api/v1/tenants/{t.id}/faxes",
        headers=t.headers,
        files={"file": ("doc.pdf", PDF, "application/pdf")},
        data={"number": "+74957650002"},
    )
    fax_id = r.json()["id"]
    store = FaxStore(api.db, _files(api))
    delays = []
    for call in range(3):
        job = await store.job(t.id, fax_id)
        assert job is not None and job.number == "+74957650002" and job.tiff.is_file()
        await store.start_send(t.id, fax_id, f"call-{call}")
        assert await store.job(t.id, fax_id) is None  # sending: not queued twice
        delays.append(await store.finish_send(t.id, fax_id, None, "not answered (SIP 486)", status=486))
    assert delays == [60.0, 120.0, None]
    out = (await api.client.get(f"/api/v1/tenants/{t.id}/faxes/{fax_id}", headers=t.headers)).json()
    assert (out["status"], out["attempts"], out["result"]) == ("failed", 3, "not answered (SIP 486)")
    assert await store.job(t.id, fax_id) is None


async def test_a_sent_fax_and_a_refused_one(api: Api, make_tenant: Any) -> None:
    t = await make_tenant("fax.example")
    store = FaxStore(api.db, _files(api))
    ids = []
    for _ in range(2):
        r = await api.client.post(
            f"/api/v1/tenants/{t.id}/faxes",
            headers=t.headers,
            files={"file": ("doc.pdf", PDF, "application/pdf")},
            data={"number": "+74957650002"},
        )
        ids.append(r.json()["id"])
        await store.start_send(t.id, ids[-1], "c")
    ok = FaxResult(code=0, text="OK", pages_tx=2, pages_rx=0, remote_ident="+7495", bit_rate=9600, ecm=True)
    assert await store.finish_send(t.id, ids[0], ok, "OK", status=None) is None
    assert (
        await store.finish_send(t.id, ids[1], None, "not answered (SIP 403)", status=403) is None
    )  # no retry
    r = await api.client.get(f"/api/v1/tenants/{t.id}/faxes?direction=out", headers=t.headers)
    states = {f["id"]: (f["status"], f["pages"], f["remote_ident"]) for f in r.json()["items"]}
    assert states == {ids[0]: ("sent", 2, "+7495"), ids[1]: ("failed", 2, "")}


async def test_unsent_faxes_are_bounded_per_company(api: Api, make_tenant: Any) -> None:
    """A company cannot pile up documents to send (each holds pages on disk and a call): the limit of
    queued faxes answers 409 and renders nothing; another company is not held back."""
    from zvonok.org import quotas

    a = await make_tenant("fax-quota-a.example")
    b = await make_tenant("fax-quota-b.example")
    quotas.configure({"queued_faxes": 1})
    try:
        def post(t: Any) -> Any:
            return api.client.post(f"/api/v1/tenants/{t.id}/faxes", headers=t.headers,
                                   files={"file": ("doc.pdf", PDF, "application/pdf")},
                                   data={"number": "+74957650002"})

        assert (await post(a)).status_code == 201
        r = await post(a)
        assert r.status_code == 409 and "queued_faxes" in r.text, r.text
        listed = await api.client.get(f"/api/v1/tenants/{a.id}/faxes", headers=a.headers)
        assert len(listed.json()["items"]) == 1
        assert (await post(b)).status_code == 201
    finally:
        quotas.configure(None)
