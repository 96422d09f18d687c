"""Write any data set glowflow reads as an npz file (``x`` NHWC uint8, ``y``, names).

Usage: ``python tools/spec_to_npz.py SPEC OUT.npz [--class-names A,B,...] [--image-size N]
[--rgb] [--limit N]``. The images are written at their stored size (no padding) unless
``--image-size`` resizes them (as ``glowflow``'s own option does); ``--rgb`` repeats a grey
channel three times, for a model of colour images; ``--class-names`` names the label values when
the source has none of its own (Fashion-MNIST's IDX files carry only numbers).
"""

from __future__ import annotations

import argparse

import numpy as np

from glowflow.data.datasets import load_dataset


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("spec")
    p.add_argument("out")
    p.add_argument("--class-names", help="comma-separated, one per label value")
    p.add_argument("--image-size", type=int, help="resize every image to this size")
    p.add_argument("--rgb", action="store_true", help="grey images as three equal channels")
    p.add_argument("--limit", type=int, help="the first N images only")
    args = p.parse_args()
    data = load_dataset(args.spec, image_size=args.image_size, pad=0, limit=args.limit)
    x = data.images.permute(0, 2, 3, 1).numpy()
    if args.rgb and x.shape[3] == 1:
        x = np.repeat(x, 3, axis=3)
    arrays = {"x": x}
    if data.labels is not None:
        arrays["y"] = data.labels.numpy()
    names = args.class_names.split(",") if args.class_names else data.class_names
    if names:
        arrays["class_names"] = np.array(names)
    if data.attrs is not None:
        arrays["attrs"] = data.attrs.numpy()
        arrays["attr_names"] = np.array(data.attr_names)
    np.savez(args.out, **arrays)
    print(f"{args.out}: {len(data)} images {x.shape[1:]} (HWC) from {args.spec}")


if __name__ == "__main__":
    main()
