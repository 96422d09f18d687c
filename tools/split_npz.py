"""Split an npz data set in file order: its first N images, and the rest held out.

Usage: ``python tools/split_npz.py SRC.npz N FIRST.npz REST.npz``. Every array whose first axis
has one entry per image (``x``, ``y``, ``attrs``, ``image_id``, ...) is cut; the others
(``attr_names``, ``class_names``) are copied to both files.
"""

from __future__ import annotations

import sys

import numpy as np


def main() -> None:
    src, n, first, rest = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    d = np.load(src)
    count = len(d["x"])
    if not 0 < n < count:
        sys.exit(f"N must lie between 1 and {count - 1}, got {n}")
    per_image = {k for k in d.files if d[k].ndim and len(d[k]) == count}
    np.savez(first, **{k: d[k][:n] if k in per_image else d[k] for k in d.files})
    np.savez(rest, **{k: d[k][n:] if k in per_image else d[k] for k in d.files})
    print(f"{first}: images 0..{n - 1}; {rest}: images {n}..{count - 1}")


if __name__ == "__main__":
    main()
