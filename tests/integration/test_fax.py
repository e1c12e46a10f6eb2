"""Fax over G.711 pass-through, end to end: a carrier-side fax machine (our own spandsp terminal behind a
minimal SIP UA, ``fax_peer``) calls the company's fax DID; the server answers, receives the two-page
document, stores it, lists it by REST and serves it as a PDF whose pages match the original's.
"""

from __future__ import annotations

import secrets
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from zvonok.fax.documents import pdf_page_images, pdf_to_tiff

from .fax_peer import send_fax

pytestmark = pytest.mark.integration

harness: Any = sys.modules["zvonok_bench_common"]

DATA = Path(__file__).resolve().parents[1] / "data" / "fax"
FAX_DID = "+74957650001"
CARRIER_HOST = "127.0.0.2"  # a trunk is recognised by the address its calls come from
SENDER = "+74991234567"


@dataclass
class World:
    server: Any
    seeded: Any
    carrier_port: int


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("fax")
    data_dir = tmp / "data"
    database_url = harness.os.environ.get("ZVONOK_TEST_DATABASE_URL") or None
    seeded = harness.seed(
        data_dir, domain=f"fax-{secrets.token_hex(3)}.test", numbers=["7501"], database_url=database_url
    )
    carrier_port = harness.free_sip_port()
    harness.seed_pstn(
        data_dir,
        seeded.tenant_id,
        {
            "offices": [{"name": "Moscow", "area_code": "495", "timezone": "Europe/Moscow"}],
            "trunks": [{"name": "Carrier", "host": CARRIER_HOST, "port": carrier_port}],
            "numbers": [{"number": FAX_DID, "office": "Moscow", "kind": "fax", "destination": {}}],
        },
        database_url=database_url,
    )
    server = harness.ZvonokServer(data_dir=data_dir, database_url=database_url)
    server.start()
    try:
        yield World(server=server, seeded=seeded, carrier_port=carrier_port)
    finally:
        code = server.stop()
        assert code == 0, f"zvonok serve exited with {code} on SIGTERM:\n{server.log_tail()}"


def _api(world: World, path: str) -> Any:
    return harness.http_json(
        f"{world.server.http_url}/api/v1/tenants/{world.seeded.tenant_id}{path}", world.seeded.token
    )


def _download(world: World, path: str) -> bytes:
    url = f"{world.server.http_url}/api/v1/tenants/{world.seeded.tenant_id}{path}"
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {world.seeded.token}"})
    with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - loopback URL we built
        assert resp.headers["Content-Type"] == "application/pdf"
        return bytes(resp.read())


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
    assert sent.bye_from_server  # the server hangs up itself once T.30 is over

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

    pdf = _download(world, f"/faxes/{fax['id']}.pdf")
    got = pdf_page_images(pdf)
    want = pdf_page_images(original)
    assert len(got) == 2
    same = [_mean_difference(w, g) for w, g in zip(want, got, strict=True)]
    crossed = [_mean_difference(want[0], got[1]), _mean_difference(want[1], got[0])]
    assert max(same) < 4.0, same
    assert min(crossed) > 3 * max(same), (same, crossed)
