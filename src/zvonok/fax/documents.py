"""Fax documents: PDF → TIFF-F pages for spandsp to send, received TIFF → PDF.

spandsp reads and writes TIFF-F: one bilevel image per page, 1728 pixels wide (the A4/Letter scan
line of ITU-T T.4), 204 × 196 dots per inch ("fine" resolution). The tools:

* **pypdfium2** (PDFium, Apache-2.0/BSD) renders each PDF page to a greyscale bitmap. It is preferred
  over PyMuPDF (AGPL) and over Ghostscript (a separate AGPL program to run).
* **Pillow** scales it to the fax grid, thresholds it to 1 bit and writes a multi-page TIFF with
  CCITT Group 4 compression (libtiff), the compression every fax library reads.
* **img2pdf** (LGPL) wraps the received pages into a PDF losslessly, keeping the non-square
  204 × 196 (or 204 × 98) resolution so that pages keep their paper size.

A page is fitted to the 1728-pixel width keeping its aspect ratio; the non-square fax pixels are
accounted for by scaling the height by 196/204.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import img2pdf  # type: ignore[import-untyped]
import pypdfium2 as pdfium  # type: ignore[import-untyped]
from PIL import Image, ImageSequence

FAX_WIDTH = 1728
FAX_DPI_X = 204
FAX_DPI_Y = 196  # "fine"; "standard" is 98
MAX_PAGES = 50  # a sent document is bounded: a fax call at 9600 bit/s takes ~30 s per page


class DocumentError(ValueError):
    """The document is not a readable PDF/TIFF, or has no pages (the API answers 400/422)."""


def pdf_to_tiff(pdf: bytes, out: Path) -> int:
    """Render ``pdf`` to a TIFF-F file at ``out``; return the page count."""
    try:
        doc = pdfium.PdfDocument(pdf)
    except pdfium.PdfiumError as exc:
        raise DocumentError(f"not a readable PDF: {exc}") from exc
    try:
        if len(doc) == 0:
            raise DocumentError("the PDF has no pages")
        if len(doc) > MAX_PAGES:
            raise DocumentError(f"the PDF has {len(doc)} pages, at most {MAX_PAGES} are sent")
        pages: list[Image.Image] = []
        for page in doc:
            width_pt, height_pt = page.get_size()
            scale = FAX_WIDTH / width_pt
            bitmap = page.render(scale=scale, grayscale=True)
            grey = bitmap.to_pil().convert("L")
            rows = max(1, round(grey.height * FAX_DPI_Y / FAX_DPI_X))
            grey = grey.resize((FAX_WIDTH, rows), Image.Resampling.LANCZOS)
            pages.append(grey.point(lambda v: 255 if v >= 128 else 0, mode="1"))
            page.close()
    finally:
        doc.close()
    write_tiff(pages, out)
    return len(pages)


def write_tiff(pages: list[Image.Image], out: Path) -> None:
    """Write 1-bit ``pages`` (PIL images) as one multi-page Group 4 TIFF at fax resolution."""

    images = list(pages)
    if not images:
        raise DocumentError("no pages to write")
    images[0].save(
        out,
        format="TIFF",
        save_all=True,
        append_images=images[1:],
        compression="group4",
        dpi=(FAX_DPI_X, FAX_DPI_Y),
    )


def tiff_pages(path: Path) -> list[Image.Image]:
    """The pages of a TIFF file as 1-bit PIL images (white = 1), with their (x, y) dpi in ``.info``."""

    try:
        with Image.open(path) as img:
            return [frame.convert("1") for frame in ImageSequence.Iterator(img)]
    except (OSError, Image.DecompressionBombError) as exc:
        raise DocumentError(f"not a readable TIFF: {exc}") from exc


def tiff_to_pdf(path: Path) -> tuple[bytes, int]:
    """A PDF of the received TIFF at ``path`` and its page count."""
    chunks: list[bytes] = []
    try:
        with warnings.catch_warnings():
            # a damaged TIFF makes Pillow warn (corrupt tags) before it fails: it is unreadable
            warnings.simplefilter("error")
            with Image.open(path) as img:
                for frame in ImageSequence.Iterator(img):
                    dpi = frame.info.get("dpi", (FAX_DPI_X, FAX_DPI_Y))
                    buf = io.BytesIO()
                    frame.convert("1").save(buf, format="TIFF", compression="group4", dpi=dpi)
                    chunks.append(buf.getvalue())
    except (OSError, UserWarning, Image.DecompressionBombError) as exc:
        raise DocumentError(f"not a readable TIFF: {exc}") from exc
    if not chunks:
        raise DocumentError("the TIFF has no pages")
    pdf = img2pdf.convert(chunks)
    assert isinstance(pdf, bytes)
    return pdf, len(chunks)


def pdf_page_images(pdf: bytes, width: int = FAX_WIDTH) -> list[Image.Image]:
    """The pages of ``pdf`` rendered greyscale at ``width`` pixels (for comparisons and previews)."""
    doc = pdfium.PdfDocument(pdf)
    try:
        out: list[Image.Image] = []
        for page in doc:
            scale = width / page.get_size()[0]
            out.append(page.render(scale=scale, grayscale=True).to_pil().convert("L"))
            page.close()
        return out
    finally:
        doc.close()
