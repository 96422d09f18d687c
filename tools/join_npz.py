"""Join npz data sets image by image: ``python tools/join_npz.py A.npz[:N] B.npz[:M] ... OUT.npz``.

Each source may keep its first ``N`` images (``:N``), its last ones (``-N:``) or a range
(``N:M``), in file order. Every array with one entry per image (``x``, ``y``, ``attrs``,
``image_id``, ...) is concatenated; the others (``attr_names``, ``class_names``) must agree
between the sources and are copied once.
"""

from __future__ import annotations

import sys

import numpy as np


def part(spec: str) -> tuple[dict[str, np.ndarray], set[str]]:
    """The arrays of one source, cut as its spec says, and which of them are per image (told
    by the whole file, so that no other array is taken for one by a cut of its length)."""
    path, _, cut = spec.partition(".npz")
    d = np.load(path + ".npz")
    count = len(d["x"])
    per_image = {k for k in d.files if d[k].ndim and len(d[k]) == count}
    cut = cut.lstrip("[").rstrip("]")
    lo, _, hi = cut.partition(":") if cut else ("", "", "")
    rows = slice(int(lo) if lo else None, int(hi) if hi else None)
    return {k: d[k][rows] if k in per_image else d[k] for k in d.files}, per_image


def main() -> None:
    *sources, out = sys.argv[1:]
    if not sources:
        sys.exit("usage: python tools/join_npz.py A.npz[:N] B.npz[:M] ... OUT.npz")
    cut = [part(s) for s in sources]
    parts, per_image = [p for p, _ in cut], cut[0][1]
    keys = set(parts[0])
    if any(set(p) != keys or kinds != per_image for p, kinds in cut):
        sys.exit("the sources hold different arrays; join data sets of one layout")
    joined = {}
    for k in sorted(keys):
        if k in per_image:
            joined[k] = np.concatenate([p[k] for p in parts])
        elif any(not np.array_equal(p[k], parts[0][k]) for p in parts):
            sys.exit(f"the sources' {k} differ; join data sets that agree on it")
        else:
            joined[k] = parts[0][k]
    np.savez(out, **joined)
    print(f"{out}: {len(joined['x'])} images from {len(parts)} sources")


if __name__ == "__main__":
    main()
