"""Write any data set glowflow reads as an npz file (``x`` NHWC uint8, ``y``, names).

Usage: ``python tools/spec_to_npz.py SPEC OUT.npz [--class-names A,B,...]``. The images are
written at their stored size (no padding); ``--class-names`` names the label values when the
source has none of its own (Fashion-MNIST's IDX files carry only numbers).
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
    args = p.parse_args()
    data = load_dataset(args.spec, pad=0)
    arrays = {"x": data.images.permute(0, 2, 3, 1).numpy()}
    if data.labels is not None:
        arrays["y"] = data.labels.numpy()
    names = args.class_names.split(",") if args.class_names else data.class_names
    if names:
        arrays["class_names"] = np.array(names)
    if data.attrs is not None:
        arrays["attrs"] = data.attrs.numpy()
        arrays["attr_names"] = np.array(data.attr_names)
    np.savez(args.out, **arrays)
    print(f"{args.out}: {len(data)} images {data.image_shape} from {args.spec}")


if __name__ == "__main__":
    main()
