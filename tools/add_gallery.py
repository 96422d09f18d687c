"""Ship a gallery of held-out images with a pretrained model (``gallery.npz``, for
``glowflow serve``).

Usage: ``python tools/add_gallery.py MODEL_DIR SPEC N NOTE [--pad P]``: the first ``N`` images of
the data set ``SPEC`` (at the model's size, padded by ``P``), named by their ``image_id`` where
the set has one, with ``NOTE`` as their terms of use.
"""

from __future__ import annotations

import argparse

import numpy as np

from glowflow.data.datasets import load_dataset
from glowflow.hub.gallery import save_gallery


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("model_dir")
    p.add_argument("spec")
    p.add_argument("n", type=int)
    p.add_argument("note")
    p.add_argument("--pad", type=int)
    p.add_argument("--prefix", default="", help="put before each image_id, e.g. 'CelebA '")
    args = p.parse_args()
    data = load_dataset(args.spec, pad=args.pad, limit=args.n)
    kind, _, path = args.spec.partition(":")
    names = [f"held-out image {i}" for i in range(len(data))]
    if kind == "npz":
        with np.load(path, allow_pickle=False) as z:
            if "image_id" in z.files:
                names = [f"{args.prefix}{int(i):06d}" for i in z["image_id"][: len(data)]]
    out = save_gallery(args.model_dir, data, names, args.note)
    print(f"wrote {out}: {len(data)} images")


if __name__ == "__main__":
    main()
