"""Two models' samples from the same seeds, one model a row, with how sharp each is.

``python tools/compare_samples.py OLD NEW OUT.png --seeds 0-11 --temperature 0.7
[--reference npz:HELDOUT.npz]`` draws each seed's sample from both models (any name
``--checkpoint`` takes), saves them as a grid (OLD's row above NEW's, a seed a column) and,
beside it, OUT.json: the models, seeds, temperature and each row's sharpness, the mean absolute
Laplacian of the grey image in grey levels (larger is sharper), with that of real faces
(``--reference``) for scale.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import torch.nn.functional as F

from glowflow import load_model
from glowflow.cli.common import int_list
from glowflow.data.datasets import load_dataset
from glowflow.latent.latents import sample_images
from glowflow.viz import save_grid

LAPLACIAN = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])


def sharpness(images: torch.Tensor) -> float:
    """Mean absolute Laplacian of uint8 images ``(N, C, H, W)`` made grey, in grey levels."""
    grey = images.float().mean(1, keepdim=True)
    return float(F.conv2d(grey, LAPLACIAN[None, None]).abs().mean())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("old")
    p.add_argument("new")
    p.add_argument("out", type=Path)
    p.add_argument("--seeds", type=int_list, default=list(range(12)))
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--reference", help="real images, for the sharpness of the real thing")
    args = p.parse_args()
    rows, record = [], {"seeds": args.seeds, "temperature": args.temperature, "rows": []}
    for name in (args.old, args.new):
        model = load_model(name).model.float()
        images = sample_images(model, args.seeds, args.temperature)
        rows.append(images)
        record["rows"].append({"model": name, "sharpness": round(sharpness(images), 3)})
    if args.reference:
        real = load_dataset(args.reference).images
        record["reference"] = {"data": args.reference, "sharpness": round(sharpness(real), 3)}
    save_grid(torch.cat(rows), args.out, nrow=len(args.seeds))
    args.out.with_suffix(".json").write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps(record))


if __name__ == "__main__":
    main()
