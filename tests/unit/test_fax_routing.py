# ruff: noqa: F811 - pytest fixtures imported from other test modules are parameters here
"""Faxes for one employee: a fax destination may name an employee's extension (``{"kind": "fax",
"number": "101"}``: their own fax line, a DID or a menu's key), and each fax received there is e-mailed
to that employee's fax address (``employees.fax_email``, else their e-mail), while the company's fax
number keeps mailing its own ``emails``.

The engine hands the destination's extension to the port (virtual-time harness); the port resolves the
address when the fax begins and the outbox mails the finished document there (a local SMTP server);
the REST API validates the extension and the fax address."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from callengine_harness import Harness
from test_pstn_support import add_number, make_company, ok
from test_voicemail_mailer import Inbox, smtpd  # noqa: F401 - the SMTP server fixture

from zvonok.fax.documents import pdf_to_tiff
from zvonok.fax.endpoint import FaxResult
from zvonok.fax.mailer import compose_fax
from zvonok.fax.service import FaxFiles, FaxStore
from zvonok.mail.outbox import Outbox, SmtpServer
from zvonok.telephony.fax_app import FaxApp, IncomingFax

Api = Any
PDF = (Path(__file__).resolve().parents[1] / "data" / "fax" / "two_pages.pdf").read_bytes()
OK = FaxResult(
    code=0, text="OK", pages_tx=0, pages_rx=2, remote_ident="+74991234567", bit_rate=14400, ecm=True
)
DID = "+74950000009"


def test_the_engine_hands_the_destinations_extension_to_the_port(tmp_path: Path) -> None:
    class Port:
        def __init__(self) -> None:
            self.begun: list[tuple[str, tuple[str, ...], str | None]] = []

        async def begin_receive(
            self,
            tenant_id: int,
            *,
            call_id: str,
            remote_number: str,
            local_number: str,
            emails: tuple[str, ...] = (),
            extension: str | None = None,
        ) -> IncomingFax:
            self.begun.append((local_number, emails, extension))
            return IncomingFax(id=3, tiff=tmp_path / "3.tif", emails=emails)

        async def finish_receive(
            self, tenant_id: int, fax: IncomingFax, result: FaxResult | None, reason: str
        ) -> int:
            return 0

    with Harness() as h:
        port = Port()
        h.engine.fax = FaxApp(h.engine, port)
        _trunk, carrier = h.trunk()
        h.did(DID, "fax", {"number": "101"})
        call = h.call_from_trunk(carrier, "+79161234567", DID)
        assert call.final_status() == 200
        call.ack()
        assert port.begun == [(DID, (), "101")]
        call.bye()
        assert not h.engine.calls


def _files(api: Api) -> FaxFiles:
    return FaxFiles((api.settings.data_dir / "fax").resolve())


async def receive(
    api: Api, tenant_id: int, *, emails: tuple[str, ...] = (), extension: str | None = None
) -> int:
    """A fax as the engine keeps one (begun at the answer, pages written, finished at phase E)."""
    store = FaxStore(api.db, _files(api))
    fax = await store.begin_receive(
        tenant_id,
        call_id=f"c-{datetime.now(UTC).timestamp()}",
        remote_number="+74991234567",
        local_number=DID,
        emails=emails,
        extension=extension,
    )
    pdf_to_tiff(PDF, fax.tiff)
    assert await store.finish_receive(tenant_id, fax, OK, "OK") == 2
    return fax.id


async def test_a_fax_to_an_employees_line_reaches_their_fax_address(
    api: Api, make_tenant: Any, smtpd: tuple[Inbox, int]
) -> None:  # noqa: F811
    inbox, port = smtpd
    c = await make_company(api, make_tenant, "faxroute.example")
    r = await api.client.patch(
        f"{c.base}/employees/{c.alice}", headers=c.headers, json={"fax_email": "alice.fax@faxroute.example"}
    )
    assert (await ok(r))["fax_email"] == "alice.fax@faxroute.example"
    assert (await ok(await api.client.get(f"{c.base}/employees/{c.bob}", headers=c.headers)))[
        "fax_email"
    ] is None

    await receive(api, c.id, extension="101")  # Alice's line: her fax address
    await receive(api, c.id, extension="102")  # Bob set none: his e-mail
    await receive(api, c.id, emails=("office@faxroute.example",))  # the company's fax number, as before
    await receive(api, c.id, extension="103")  # a desk phone's: nobody to mail it to, nothing queued
    job = Outbox(api.db, SmtpServer(host="127.0.0.1", port=port))
    job.register("fax", compose_fax(_files(api)))
    assert await job.run_once() == 3
    assert sorted(rcpts[0] for _s, rcpts, _m in inbox.mails) == [
        "alice.fax@faxroute.example",
        "bob@faxroute.example",
        "office@faxroute.example",
    ]
    assert all(len(rcpts) == 1 for _s, rcpts, _m in inbox.mails)
    assert all(any(p.get_content_type() == "application/pdf" for p in m.walk()) for _s, _r, m in inbox.mails)

    # cleared: back to her e-mail
    await ok(
        await api.client.patch(f"{c.base}/employees/{c.alice}", headers=c.headers, json={"fax_email": None})
    )
    await receive(api, c.id, extension="101")
    assert await job.run_once() == 1
    assert inbox.mails[-1][1] == ["alice@faxroute.example"]


async def test_rest_checks_the_fax_extension_and_address(api: Api, make_tenant: Any) -> None:
    c = await make_company(api, make_tenant, "faxrest.example")
    number = await add_number(api, "+74950000019", c.id)
    url = f"{c.base}/numbers/{number['id']}"
    out = await ok(
        await api.client.patch(
            url,
            headers=c.headers,
            json={
                "destination_kind": "fax",
                "destination": {"number": "101", "emails": ["copy@faxrest.example"]},
            },
        )
    )
    assert out["destination"] == {"number": "101", "emails": ["copy@faxrest.example"]}
    r = await api.client.patch(
        url, headers=c.headers, json={"destination_kind": "fax", "destination": {"number": "199"}}
    )
    assert r.status_code == 422 and "extension 199 does not exist" in r.text, r.text
    r = await api.client.patch(
        url, headers=c.headers, json={"destination_kind": "fax", "destination": {"number": "x"}}
    )
    assert r.status_code == 422, r.text
    r = await api.client.patch(
        f"{c.base}/employees/{c.alice}", headers=c.headers, json={"fax_email": "not-an-address"}
    )
    assert r.status_code == 422 and "fax_email" in r.text, r.text
    # an employee does not change their own directory entry (an admin sets the fax address)
    r = await api.client.patch(
        f"{c.base}/employees/{c.alice}", headers=c.alice_headers, json={"fax_email": "me@faxrest.example"}
    )
    assert r.status_code == 403
