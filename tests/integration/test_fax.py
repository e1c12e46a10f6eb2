"""Fax over G.711 pass-through, end to end.

Receiving: a carrier-side fax machine (our own spandsp terminal behind a minimal SIP UA, ``fax_peer``)
calls the company's fax DID; the server answers, receives the two-page document, stores it, lists it by
REST and serves it as a PDF whose pages match the original's.

The fax DID's destination names an e-mail address: the document arrives there too, as a PDF attached,
through a local SMTP server (aiosmtpd) the server is pointed at. An employee's own fax DID (its
destination names their extension) mails the document to that employee's fax address instead.

Sending: a PDF posted to the API goes out through the company's trunk — a loopback trunk pointing at the
server itself, so the same server also receives it on its fax DID (both ends are our code, but each side
runs the real path: permissions, routing, the trunk's INVITE, the DID's destination, the media engine).
"""

from __future__ import annotations

import email
import email.message
import json
import secrets
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from zvonok.fax.documents import pdf_page_images, pdf_to_tiff

from .fax_peer import send_fax

pytestmark = pytest.mark.integration

harness: Any = sys.modules["zvonok_bench_common"]

DATA = Path(__file__).resolve().parents[1] / "data" / "fax"
FAX_DID = "+74957650001"  # kind fax: the carrier's calls come in on it
LOOP_DID = "+74957650002"  # kind fax too: what the server sends through its loopback trunk arrives here
EMPLOYEE_DID = "+74957650003"  # kind fax naming extension 7501: an employee's own fax line
CARRIER_HOST = "127.0.0.2"  # a trunk is recognised by the address its calls come from
SENDER = "+74991234567"


FAX_EMAIL = "office@fax.test"


class Inbox:
    def __init__(self) -> None:
        self.mails: list[tuple[list[str], email.message.Message]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's name
        self.mails.append((list(envelope.rcpt_tos), email.message_from_bytes(envelope.content)))
        return "250 OK"


@dataclass
class World:
    server: Any
    seeded: Any
    carrier_port: int
    inbox: Inbox


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("fax")
    data_dir = tmp / "data"
    database_url = harness.os.environ.get("ZVONOK_TEST_DATABASE_URL") or None
    seeded = harness.seed(
        data_dir, domain=f"fax-{secrets.token_hex(3)}.test", numbers=["7501"], database_url=database_url
    )
    carrier_port = harness.free_sip_port()
    sip_port = harness.free_sip_port()
    spec = {
        "offices": [{"name": "Moscow", "area_code": "495", "timezone": "Europe/Moscow"}],
        "trunks": [
            {"name": "Carrier", "host": CARRIER_HOST, "port": carrier_port},
            {"name": "Loop", "host": harness.LOOPBACK, "port": sip_port},  # the server itself
        ],
        "routes": [{"prefix": "7495765", "trunk": "Loop"}],
        "numbers": [
            {"number": FAX_DID, "office": "Moscow", "kind": "fax", "destination": {"emails": [FAX_EMAIL]}},
            {"number": LOOP_DID, "office": "Moscow", "kind": "fax", "destination": {}},
            {"number": EMPLOYEE_DID, "office": "Moscow", "kind": "fax", "destination": {"number": "7501"}},
        ],
        "policies": [{"level": "tenant", "caller_id": FAX_DID, "service_class": "long_distance"}],
    }
    harness.seed_pstn(data_dir, seeded.tenant_id, spec, database_url=database_url)
    inbox = Inbox()
    smtpd = Controller(inbox, hostname=harness.LOOPBACK, port=harness.free_port())
    smtpd.start()
    smtp = {"ZVONOK_SMTP_HOST": harness.LOOPBACK, "ZVONOK_SMTP_PORT": str(smtpd.port), "ZVONOK_SMTP_FROM": "fax@fax.test"}
    server = harness.ZvonokServer(data_dir=data_dir, database_url=database_url, sip_port=sip_port, env=smtp)
    server.start()
    try:
        yield World(server=server, seeded=seeded, carrier_port=carrier_port, inbox=inbox)
    finally:
        code = server.stop()
        smtpd.stop()
        assert code == 0, f"zvonok serve exited with {code} on SIGTERM:\n{server.log_tail()}"


def _api(world: World, path: str) -> Any:
    return harness.http_json(
        f"{world.server.http_url}/api/v1/tenants/{world.seeded.tenant_id}{path}", world.seeded.token
    )


def _post_fax(world: World, pdf: bytes, number: str) -> dict[str, Any]:
    boundary = secrets.token_hex(8)
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="number"\r\n\r\n{number}\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="doc.pdf"\r\n'
            f"Content-Type: application/pdf\r\n\r\n"
        ).encode()
        + pdf
        + f"\r\n--{boundary}--\r\n".encode()
    )
    req = urllib.request.Request(
        f"{world.server.http_url}/api/v1/tenants/{world.seeded.tenant_id}/faxes",
        data=body,
        method="POST",
        headers={
            "Authorization": f"Bearer {world.seeded.token}",
            "Content-Type": f"multipart/form-data; boundary={boundary}",
        },
    )
    with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310 - loopback URL we built
        assert resp.status == 201
        out: dict[str, Any] = json.loads(resp.read())
        return out


def _wait_fax(world: World, fax_id: int, done: tuple[str, ...], timeout: float = 240) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    fax: dict[str, Any] = {}
    while time.monotonic() < deadline:
        fax = _api(world, f"/faxes/{fax_id}")
        if fax["status"] in done:
            return fax
        time.sleep(0.5)
    raise AssertionError(f"fax {fax_id} still {fax.get('status')}:\n{world.server.log_tail()}")


def _assert_same_pages(original: bytes, received: bytes) -> None:
    got = pdf_page_images(received)
    want = pdf_page_images(original)
    assert len(got) == 2
    same = [_mean_difference(w, g) for w, g in zip(want, got, strict=True)]
    crossed = [_mean_difference(want[0], got[1]), _mean_difference(want[1], got[0])]
    assert max(same) < 4.0, same
    assert min(crossed) > 3 * max(same), (same, crossed)


def _download(world: World, path: str) -> bytes:
    url = f"{world.server.http_url}/api/v1/tenants/{world.seeded.tenant_id}{path}"
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {world.seeded.token}"})
    with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - loopback URL we built
        assert resp.headers["Content-Type"] == "application/pdf"
        return bytes(resp.read())


def _fax_cdr(world: World, call_id: str, timeout: float = 30) -> tuple[int | None, str | None]:
    """The fax pages and result of the call's CDR (written a moment after the call ends)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for cdr in _api(world, "/cdrs?limit=100")["items"]:
            if cdr["call_id"] == call_id:
                return cdr["fax_pages"], cdr["fax_result"]
        time.sleep(0.3)
    raise AssertionError(f"no CDR for call {call_id}:\n{world.server.log_tail()}")


def _mean_difference(a: Any, b: Any) -> float:
    import numpy as np
    from PIL import Image

    size = (216, 306)
    x = np.asarray(a.convert("L").resize(size, Image.Resampling.BOX), dtype=np.float64)
    y = np.asarray(b.convert("L").resize(size, Image.Resampling.BOX), dtype=np.float64)
    return float(np.mean(np.abs(x - y)))


def test_a_two_page_fax_arrives_on_the_fax_number(world: World, tmp_path: Path) -> None:
    original = (DATA / "two_pages.pdf").read_bytes()
    assert pdf_to_tiff(original, tmp_path / "send.tif") == 2
    sent = send_fax(
        server=(harness.LOOPBACK, world.server.sip_port),
        local_host=CARRIER_HOST,
        sip_port=world.carrier_port,
        did=FAX_DID,
        caller=SENDER,
        tiff=tmp_path / "send.tif",
    )
    assert sent.status == 200, sent
    assert sent.result is not None and sent.result.ok, (sent, world.server.log_tail())
    assert sent.result.pages_tx == 2
    assert sent.bye_from_server, world.server.log_tail()  # the server hangs up itself once T.30 is over

    deadline = time.monotonic() + 30
    faxes: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        faxes = _api(world, "/faxes?direction=in")["items"]
        if faxes and faxes[0]["status"] != "receiving":
            break
        time.sleep(0.2)
    assert len(faxes) == 1, faxes
    fax = faxes[0]
    assert (fax["status"], fax["pages"], fax["remote_number"], fax["local_number"]) == (
        "received",
        2,
        SENDER,
        FAX_DID,
    ), fax
    assert fax["remote_ident"] == SENDER[-20:] and fax["has_pdf"], fax
    assert _api(world, f"/faxes/{fax['id']}")["id"] == fax["id"]

    _assert_same_pages(original, _download(world, f"/faxes/{fax['id']}.pdf"))

    assert _fax_cdr(world, fax["call_id"]) == (2, fax["result"])  # the call's CDR: pages and T.30's result

    # the fax destination's address gets the document by e-mail (the outbox job, after the call)
    deadline = time.monotonic() + 60
    while not world.inbox.mails and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(world.inbox.mails) == 1, world.server.log_tail()
    rcpts, mail = world.inbox.mails[0]
    assert rcpts == [FAX_EMAIL] and SENDER in str(mail["Subject"]), mail["Subject"]
    (pdf,) = [p.get_payload(decode=True) for p in mail.walk() if p.get_content_type() == "application/pdf"]
    assert isinstance(pdf, bytes)
    _assert_same_pages(original, pdf)  # two pages, the ones sent


def test_a_posted_pdf_is_sent_through_the_trunk_and_arrives(world: World) -> None:
    original = (DATA / "two_pages.pdf").read_bytes()
    queued = _post_fax(world, original, LOOP_DID)
    assert (queued["direction"], queued["status"], queued["pages"], queued["remote_number"]) == (
        "out",
        "queued",
        2,
        LOOP_DID,
    ), queued
    sent = _wait_fax(world, queued["id"], ("sent", "failed"))
    assert (sent["status"], sent["pages"], sent["attempts"]) == ("sent", 2, 1), sent
    assert _fax_cdr(world, sent["call_id"]) == (2, sent["result"])  # the sending call's CDR
    assert sent["remote_ident"] == LOOP_DID, sent  # the receiving side's T.30 ident is its DID

    received = [f for f in _api(world, "/faxes?direction=in")["items"] if f["local_number"] == LOOP_DID]
    assert len(received) == 1, received
    got = _wait_fax(world, received[0]["id"], ("received", "failed"), timeout=30)
    assert (got["status"], got["pages"], got["remote_number"]) == ("received", 2, FAX_DID), got
    _assert_same_pages(original, _download(world, f"/faxes/{got['id']}.pdf"))

    # the outgoing call is an ordinary outside call in the CDRs
    cdrs = _api(world, "/cdrs?limit=100")["items"]
    outbound = [c for c in cdrs if c["direction"] == "outbound" and c["callee_number"] == LOOP_DID]
    assert outbound and outbound[-1]["disposition"] == "answered", cdrs


def test_bad_sends_are_refused(world: World) -> None:
    for pdf, number in ((b"not a pdf", LOOP_DID), ((DATA / "two_pages.pdf").read_bytes(), "12345")):
        try:
            _post_fax(world, pdf, number)
        except urllib.error.HTTPError as exc:
            assert exc.code == 422, exc.read()
        else:
            raise AssertionError("a bad fax was queued")


def test_a_fax_to_an_employees_number_reaches_their_fax_address(world: World, tmp_path: Path) -> None:
    base = f"{world.server.http_url}/api/v1/tenants/{world.seeded.tenant_id}"
    token = world.seeded.token
    employee = harness.http_json(f"{base}/employees", token, method="POST", body={
        "full_name": "Anna", "email": "anna@fax.test", "fax_email": "anna.fax@fax.test"})
    (ext,) = [e for e in _api(world, "/extensions")["items"] if e["number"] == "7501"]
    harness.http_json(f"{base}/extensions/{ext['id']}", token, method="PATCH", body={"employee_id": employee["id"]})
    original = (DATA / "two_pages.pdf").read_bytes()
    assert pdf_to_tiff(original, tmp_path / "send.tif") == 2
    sent = send_fax(server=(harness.LOOPBACK, world.server.sip_port), local_host=CARRIER_HOST,
                    sip_port=world.carrier_port, did=EMPLOYEE_DID, caller=SENDER, tiff=tmp_path / "send.tif")
    assert sent.status == 200 and sent.result is not None and sent.result.ok, (sent, world.server.log_tail())
    deadline = time.monotonic() + 60
    mine: list[email.message.Message] = []
    while not mine and time.monotonic() < deadline:
        mine = [mail for rcpts, mail in world.inbox.mails if rcpts == ["anna.fax@fax.test"]]
        time.sleep(0.2)
    assert len(mine) == 1, (world.inbox.mails, world.server.log_tail())
    body = next(p for p in mine[0].walk() if p.get_content_type() == "text/plain").get_payload(decode=True)
    assert isinstance(body, bytes) and EMPLOYEE_DID in body.decode(), body  # "... arrived on <the DID>"
    (pdf,) = [p.get_payload(decode=True) for p in mine[0].walk() if p.get_content_type() == "application/pdf"]
    assert isinstance(pdf, bytes)
    _assert_same_pages(original, pdf)
