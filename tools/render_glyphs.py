"""Render letters from the fonts installed on this machine as an MNIST-style npz data set.

Usage: ``python tools/render_glyphs.py letters|alphabets OUT.npz [FONT_FILE ...]``

- ``letters``: the 52 Latin letters A-Z and a-z, one image per letter and font (like notMNIST).
- ``alphabets``: the letters of other scripts (Greek, Cyrillic, Hebrew, Armenian, Georgian,
  Devanagari, Thai, Ethiopic, ...), labelled by script (like Omniglot's alphabets, but set in
  type rather than written by hand).

Without font files, every TrueType/OpenType font that ``fc-list`` knows is tried, in sorted
order, except symbol, dingbat and key-cap fonts. A font that lacks a letter draws its "missing
glyph" box, which is detected (the same pixels as a private-use code point) and skipped, as are
empty images.

Each glyph is drawn white on black, cropped to its ink, scaled to fit a 20x20 box and placed in a
28x28 image with its centre of mass at the centre: the normalisation of the MNIST digits. The
npz holds ``x`` ``(N, 28, 28, 1)`` uint8, ``y`` (letter index, or script index for
``alphabets``), ``class_names``, ``char`` (each image's letter) and ``font`` (each image's file).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

LATIN = [chr(c) for c in range(ord("A"), ord("Z") + 1)] + [
    chr(c) for c in range(ord("a"), ord("z") + 1)
]
# Letters of each script, by Unicode range (the letters only: no digits, marks or signs).
SCRIPTS = {
    "Greek": [chr(c) for c in range(0x391, 0x3AA) if c != 0x3A2]
    + [chr(c) for c in range(0x3B1, 0x3CA)],
    "Cyrillic": [chr(c) for c in range(0x410, 0x450)],
    "Hebrew": [chr(c) for c in range(0x5D0, 0x5EB)],
    "Arabic": [chr(c) for c in range(0x627, 0x64B)],
    "Armenian": [chr(c) for c in range(0x531, 0x557)] + [chr(c) for c in range(0x561, 0x587)],
    "Georgian": [chr(c) for c in range(0x10D0, 0x10F1)],
    "Devanagari": [chr(c) for c in range(0x905, 0x915)] + [chr(c) for c in range(0x915, 0x93A)],
    "Bengali": [chr(c) for c in range(0x995, 0x9BA)],
    "Tamil": [chr(c) for c in range(0xB85, 0xBBA)],
    "Thai": [chr(c) for c in range(0xE01, 0xE2F)],
    "Ethiopic": [chr(c) for c in range(0x1200, 0x1248, 8)],
    "Cherokee": [chr(c) for c in range(0x13A0, 0x13F6)],
    "Runic": [chr(c) for c in range(0x16A0, 0x16EB)],
    "Tifinagh": [chr(c) for c in range(0x2D30, 0x2D68)],
}
RENDER_PX = 96  # glyphs are drawn this tall, then scaled down to the 20x20 box
MISSING = "\U0010fffd"  # a private-use code point: no font has a glyph for it
# Fonts whose letters are not letters: symbol and dingbat fonts map them to other signs, and
# Linux Biolinum's keyboard variant draws each one on a key cap.
NOT_LETTERS = ("symbol", "dingbat", "d050000l", "linbiolinum_k", "emoji", "music")


def font_files() -> list[str]:
    out = subprocess.run(["fc-list", "--format", "%{file}\n"], capture_output=True, text=True)
    files = {f for f in out.stdout.split("\n") if f.lower().endswith((".ttf", ".otf"))}
    return sorted(f for f in files if not any(k in Path(f).name.lower() for k in NOT_LETTERS))


def draw(font: ImageFont.FreeTypeFont, char: str) -> np.ndarray:
    """The glyph as a float array of ink (0..255), cropped to its ink; empty if none."""
    side = RENDER_PX * 3
    img = Image.new("L", (side, side), 0)
    ImageDraw.Draw(img).text((RENDER_PX, RENDER_PX), char, fill=255, font=font)
    a = np.asarray(img, dtype=np.float64)
    rows, cols = np.flatnonzero(a.max(1) > 0), np.flatnonzero(a.max(0) > 0)
    if rows.size == 0:
        return a[:0, :0]
    return a[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def normalise(ink: np.ndarray) -> np.ndarray:
    """MNIST's normalisation: fit in 20x20 keeping the aspect ratio, then centre of mass at the
    centre of a 28x28 image. Returns uint8 (28, 28)."""
    h, w = ink.shape
    scale = 20.0 / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = np.asarray(Image.fromarray(ink.astype(np.uint8)).resize(size, Image.LANCZOS))
    small = small.astype(np.float64)
    ys, xs = np.indices(small.shape)
    mass = small.sum()
    cy, cx = (ys * small).sum() / mass, (xs * small).sum() / mass
    top, left = int(round(14 - cy)), int(round(14 - cx))
    top = min(max(top, 0), 28 - small.shape[0])
    left = min(max(left, 0), 28 - small.shape[1])
    out = np.zeros((28, 28), dtype=np.float64)
    out[top : top + small.shape[0], left : left + small.shape[1]] = small
    return np.clip(out, 0, 255).astype(np.uint8)


def main() -> None:
    if len(sys.argv) < 3 or sys.argv[1] not in ("letters", "alphabets"):
        sys.exit(__doc__.split("\n\n")[1])
    which, out, fonts = sys.argv[1], sys.argv[2], sys.argv[3:] or font_files()
    groups = {"Latin": LATIN} if which == "letters" else SCRIPTS
    chars = [(name, c) for name, cs in groups.items() for c in cs]
    class_names = LATIN if which == "letters" else list(SCRIPTS)
    images, labels, char_of, font_of = [], [], [], []
    for path in fonts:
        try:
            font = ImageFont.truetype(path, RENDER_PX)
        except OSError:
            continue
        missing = draw(font, MISSING)
        for script, c in chars:
            ink = draw(font, c)
            if ink.size == 0 or (ink.shape == missing.shape and np.array_equal(ink, missing)):
                continue
            images.append(normalise(ink))
            labels.append(LATIN.index(c) if which == "letters" else list(SCRIPTS).index(script))
            char_of.append(c)
            font_of.append(Path(path).name)
    if not images:
        sys.exit("no glyphs rendered: install fonts (see docs/make_fashion_mnist.sh)")
    np.savez_compressed(
        out,
        x=np.stack(images)[..., None],
        y=np.array(labels, dtype=np.int64),
        class_names=np.array(class_names),
        char=np.array(char_of),
        font=np.array(font_of),
    )
    used = len(set(font_of))
    print(f"{out}: {len(images)} glyphs of {len(class_names)} classes from {used} fonts")


if __name__ == "__main__":
    main()
