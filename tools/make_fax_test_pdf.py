"""Write tests/data/fax/two_pages.pdf: the two-page document the fax tests send (run once, committed).

Pillow draws two A4 pages at 100 dpi (large text, boxes and stripes, so that a comparison after the
fax round trip has real structure to match) and saves them as one PDF.
"""

from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont


def page(number: int) -> Image.Image:
    img = Image.new("L", (827, 1169), 255)
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=72)
    draw.text((80, 80), f"Zvonok fax {number}/2", fill=0, font=font)
    draw.rectangle((80, 220, 747, 260), fill=0)
    if number == 1:
        for i in range(8):
            draw.rectangle((80 + i * 84, 320, 120 + i * 84, 320 + 60 * (i + 1)), fill=0)
    else:
        for i in range(6):
            draw.ellipse((100 + i * 40, 320 + i * 90, 700 - i * 40, 400 + i * 90), outline=0, width=12)
    draw.text((80, 1000), "ABCDEFGHIJ 0123456789", fill=0, font=ImageFont.load_default(size=48))
    return img


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "tests/data/fax/two_pages.pdf")
    first, second = page(1).convert("1"), page(2).convert("1")
    first.save(out, format="PDF", save_all=True, append_images=[second], resolution=100.0)


if __name__ == "__main__":
    main()
