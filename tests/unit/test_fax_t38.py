"""Two spandsp T.38 terminals exchange a two-page document over UDPTL in memory, with datagrams lost."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from test_fax_endpoint import page_difference

from zvonok.fax.documents import pdf_page_images, pdf_to_tiff, tiff_pages, tiff_to_pdf
from zvonok.fax.endpoint import FaxEndpoint
from zvonok.fax.t38 import T38Endpoint

DATA = Path(__file__).resolve().parents[1] / "data" / "fax"


def run_t38(sender: T38Endpoint, receiver: T38Endpoint, *, loss: float, seed: int = 38) -> int:
    """20 ms ticks until both reach phase E, each datagram lost with probability ``loss``; the ticks used."""
    rng = random.Random(seed)
    for tick in range(300 * 50):
        if sender.done and receiver.done:
            return tick
        to_receiver, to_sender = sender.tick(), receiver.tick()
        for datagram in to_receiver:
            if rng.random() >= loss:
                receiver.receive(datagram)
        for datagram in to_sender:
            if rng.random() >= loss:
                sender.receive(datagram)
    raise AssertionError("the T.38 fax call did not reach phase E")


@pytest.mark.parametrize("loss", [0.0, 0.1])
def test_two_pages_over_udptl(tmp_path: Path, loss: float) -> None:
    original = (DATA / "two_pages.pdf").read_bytes()
    assert pdf_to_tiff(original, tmp_path / "tx.tif") == 2
    sender = T38Endpoint(calling=True, tx_tiff=tmp_path / "tx.tif", ident="+74951112233")
    receiver = T38Endpoint(calling=False, rx_tiff=tmp_path / "rx.tif", ident="+74954445566")
    try:
        ticks = run_t38(sender, receiver, loss=loss)
    finally:
        sender.close()
        receiver.close()
    assert sender.result is not None and receiver.result is not None
    assert sender.result.ok and receiver.result.ok, (sender.result, receiver.result)
    assert (sender.result.pages_tx, receiver.result.pages_rx) == (2, 2)
    assert receiver.result.remote_ident == "+74951112233"
    assert sender.result.remote_ident == "+74954445566"
    assert receiver.result.bit_rate == 14400  # T.38 has no line to train down on
    if loss:
        assert receiver.receiver.recovered > 0  # redundancy rebuilt lost IFPs, T.30 never saw the loss
    assert ticks < 120 * 50
    pdf, pages = tiff_to_pdf(tmp_path / "rx.tif")
    assert pages == len(tiff_pages(tmp_path / "rx.tif")) == 2
    got = pdf_page_images(pdf)
    want = pdf_page_images(original)
    same = [page_difference(w, g) for w, g in zip(want, got, strict=True)]
    assert max(same) < 4.0, same
    assert page_difference(want[0], got[1]) > 3 * max(same)


def test_an_audio_terminal_is_replaced_by_a_t38_one_with_its_role_and_file(tmp_path: Path) -> None:
    assert pdf_to_tiff((DATA / "two_pages.pdf").read_bytes(), tmp_path / "tx.tif") == 2
    audio_tx = FaxEndpoint(calling=True, tx_tiff=tmp_path / "tx.tif", ident="+74951112233")
    audio_rx = FaxEndpoint(calling=False, rx_tiff=tmp_path / "rx.tif", ident="+74954445566")
    for _ in range(50):  # a second of CNG/CED before the re-INVITE
        audio_rx.receive(audio_tx.transmit())
        audio_tx.receive(audio_rx.transmit())
    sender, receiver = T38Endpoint.replacing(audio_tx), T38Endpoint.replacing(audio_rx)
    audio_tx.close()
    audio_rx.close()
    try:
        run_t38(sender, receiver, loss=0.0)
    finally:
        sender.close()
        receiver.close()
    assert receiver.result is not None and receiver.result.ok and receiver.result.pages_rx == 2
    assert receiver.result.remote_ident == "+74951112233"


def test_garbage_datagrams_are_dropped(tmp_path: Path) -> None:
    assert pdf_to_tiff((DATA / "two_pages.pdf").read_bytes(), tmp_path / "tx.tif") == 2
    endpoint = T38Endpoint(calling=True, tx_tiff=tmp_path / "tx.tif")
    try:
        for junk in (b"", b"\x00", b"\xff" * 40, b"\x00\x01\x7fxx"):
            endpoint.receive(junk)
        assert endpoint.receiver.malformed == 4
        assert endpoint.tick() != []  # still alive: it sends its CNG indicator
    finally:
        endpoint.close()
    assert endpoint.tick() == []
