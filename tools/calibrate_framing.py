"""Measure how a face model's images are framed relative to the face detector's box: the
constants of ``glowflow/explorer/faces.py``.

Usage: ``python tools/calibrate_framing.py SPEC [N]`` (e.g. the CelebA training faces of the
bundled model). Each image is enlarged to 256 px and padded by repeating its border, so the
detector sees some context; over the images where it finds exactly one face, the script prints
the crop's side in face widths and how far the crop's centre lies above the face's centre.
"""

from __future__ import annotations

import sys

import numpy as np
from PIL import Image

from glowflow.data.datasets import load_dataset
from glowflow.explorer.faces import find_face

SIDE = 256


def main() -> None:
    spec = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 600
    data = load_dataset(spec, limit=n)
    rows = []
    for image in data.images:
        big = np.asarray(Image.fromarray(image.permute(1, 2, 0).numpy()).resize((SIDE, SIDE)))
        padded = np.pad(big, ((SIDE // 2,) * 2, (SIDE // 2,) * 2, (0, 0)), mode="edge")
        face = find_face(Image.fromarray(padded))
        if face is None:
            continue
        x, y, w, h = face
        centre = SIDE // 2 + SIDE / 2
        rows.append((SIDE / w, (y + h / 2 - centre) / w))
    r = np.array(rows)
    print(f"{len(r)} of {len(data)} images with a face found")
    print(f"crop side / face width: {r[:, 0].mean():.2f} (std {r[:, 0].std():.2f})")
    print(f"crop centre above face centre, in face widths: {r[:, 1].mean():.2f} "
          f"(std {r[:, 1].std():.2f})")  # fmt: skip


if __name__ == "__main__":
    main()
