"""Two spandsp fax terminals wired back to back in memory over G.711 exchange a two-page document."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from zvonok.fax.documents import DocumentError, pdf_page_images, pdf_to_tiff, tiff_pages, tiff_to_pdf
from zvonok.fax.endpoint import FaxEndpoint
from zvonok.media import g711

DATA = Path(__file__).resolve().parents[1] / "data" / "fax"


def _thumb(image: Image.Image) -> np.ndarray:
    # 216 × 306: an eighth of the fax width, where the round trip's pixel jitter averages out
    return np.asarray(image.convert("L").resize((216, 306), Image.Resampling.BOX), dtype=np.float64)


def page_difference(a: Image.Image, b: Image.Image) -> float:
    """Mean absolute grey difference (0–255) of two pages reduced to the same small grid."""
    return float(np.mean(np.abs(_thumb(a) - _thumb(b))))


def run_back_to_back(sender: FaxEndpoint, receiver: FaxEndpoint, seconds: int = 300) -> int:
    """Exchange 20 ms frames until both reach phase E; return the audio time used, in frames."""
    for frame in range(seconds * 50):
        if sender.done and receiver.done:
            return frame
        to_receiver = sender.transmit()
        to_sender = receiver.transmit()
        assert len(to_receiver) == len(to_sender) == g711.FRAME_SAMPLES
        receiver.receive(to_receiver)
        sender.receive(to_sender)
    raise AssertionError("the fax call did not reach phase E")


@pytest.mark.parametrize("codec", [g711.Codec.PCMA, g711.Codec.PCMU])
def test_two_pages_back_to_back(tmp_path: Path, codec: g711.Codec) -> None:
    original = (DATA / "two_pages.pdf").read_bytes()
    assert pdf_to_tiff(original, tmp_path / "tx.tif") == 2
    sender = FaxEndpoint(calling=True, codec=codec, tx_tiff=tmp_path / "tx.tif", ident="+74951112233")
    receiver = FaxEndpoint(calling=False, codec=codec, rx_tiff=tmp_path / "rx.tif", ident="+74954445566")
    try:
        frames = run_back_to_back(sender, receiver)
    finally:
        sender.close()
        receiver.close()
    assert sender.result is not None and receiver.result is not None
    assert sender.result.ok and receiver.result.ok, (sender.result, receiver.result)
    assert sender.result.pages_tx == 2
    assert receiver.result.pages_rx == 2
    assert receiver.result.remote_ident == "+74951112233"
    assert sender.result.remote_ident == "+74954445566"
    assert receiver.result.bit_rate in (14400, 12000, 9600, 7200, 4800, 2400)
    assert frames < 120 * 50  # two short pages at V.17 take well under two minutes of call time

    received = tiff_pages(tmp_path / "rx.tif")
    assert len(received) == 2
    pdf, pages = tiff_to_pdf(tmp_path / "rx.tif")
    assert pages == 2 and pdf.startswith(b"%PDF")

    sent_pages = pdf_page_images(original)
    got_pages = pdf_page_images(pdf)
    assert len(got_pages) == 2
    same = [page_difference(s, g) for s, g in zip(sent_pages, got_pages, strict=True)]
    crossed = [page_difference(sent_pages[0], got_pages[1]), page_difference(sent_pages[1], got_pages[0])]
    # each received page matches its original closely, and clearly not the other page
    assert max(same) < 4.0, same
    assert min(crossed) > 3 * max(same), (same, crossed)


def test_hangup_before_phase_e_reports_failure(tmp_path: Path) -> None:
    assert pdf_to_tiff((DATA / "two_pages.pdf").read_bytes(), tmp_path / "tx.tif") == 2
    sender = FaxEndpoint(calling=True, tx_tiff=tmp_path / "tx.tif")
    receiver = FaxEndpoint(calling=False, rx_tiff=tmp_path / "rx.tif")
    for _ in range(5 * 50):  # five seconds: still in phase B
        receiver.receive(sender.transmit())
        sender.receive(receiver.transmit())
    sender.close()
    receiver.close()
    assert sender.result is not None and not sender.result.ok
    assert receiver.result is not None and not receiver.result.ok


def test_bad_documents_are_refused(tmp_path: Path) -> None:
    with pytest.raises(DocumentError):
        pdf_to_tiff(b"not a pdf", tmp_path / "x.tif")
    (tmp_path / "bad.tif").write_bytes(b"II*\x00garbage")
    with pytest.raises(DocumentError):
        tiff_to_pdf(tmp_path / "bad.tif")
    with pytest.raises(ValueError):
        FaxEndpoint(calling=True)
