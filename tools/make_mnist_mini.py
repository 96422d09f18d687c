"""Rebuild ``glowflow/assets/mnist_mini.npz``: the first 10,000 MNIST training images.

Usage: ``python tools/make_mnist_mini.py PATH/TO/mnist_train.npz`` where the input holds the
genuine MNIST training set as ``x`` uint8 [60000, 28, 28, 1] and ``y`` in the original order.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parents[1] / "glowflow" / "assets" / "mnist_mini.npz"


def main() -> None:
    src = np.load(sys.argv[1])
    x, y = src["x"][:10000], src["y"][:10000].astype(np.uint8)
    assert x.shape == (10000, 28, 28, 1) and x.dtype == np.uint8
    np.savez_compressed(OUT, x=x, y=y)
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
