"""Judge candidate single-image OOD scores side by side, to choose one on held-out *training*
images (never on the test sets the shipped figures are reported on).

    python tools/ood_candidates.py --checkpoint mnist --in-dist npz:WORK/mnist_heldout.npz \\
        --ood mnist:FASHION/t10k-images-idx3-ubyte.gz --ood npz:WORK/letters.npz \\
        --out docs/ood/candidates-mnist.json

The in-distribution images are split in halves as ``glowflow ood`` splits them (its seed); the
candidates fitted on the calibration half are judged on the other. Candidates, each higher for
more likely OOD:

- ``bpd``, ``complexity``: the baselines (``glowflow ood``'s methods).
- ``dose``: the density of states on per-level and codec bits/dim (``glowflow ood``'s method).
- ``dose_levels``: the same density on the per-level bits/dim alone, without the codec.
- ``typicality_1``: ``|bpd - median calibration bpd|``, the typicality test on one image.
- ``level_ratio``: the bits of the global levels minus the bits of the local one (level 0), from
  the calibration median: the one-model form of the local/global ratio of Schirrmeister et al.
  (2020), one-sided as they use it; ``level_ratio_2`` its absolute value.
Writes a JSON record (AUROC, AUPR and FPR95 per OOD set and candidate) and prints a table.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from glowflow.data.datasets import dataset_name
from glowflow.data.fitting import load_fitting
from glowflow.hub.load import load_model
from glowflow.ood.density import DensityOfStates, state_statistics
from glowflow.ood.detection import ImageScores, score_images
from glowflow.ood.metrics import detection_metrics


def candidates(cal: ImageScores) -> dict:
    """Each candidate as a function of a set's scores, fitted on the calibration scores."""
    dose = DensityOfStates().fit(state_statistics(cal))
    dose_levels = DensityOfStates().fit(cal.level_bpd)
    median = float(cal.bpd.median())

    def ratio(s: ImageScores) -> torch.Tensor:
        return s.level_bpd[:, 1:].sum(1) - s.level_bpd[:, 0]

    ratio_median = float(ratio(cal).median())
    return {
        "bpd": lambda s: s.bpd,
        "complexity": lambda s: s.complexity,
        "dose": lambda s: dose.score(state_statistics(s)),
        "dose_levels": lambda s: dose_levels.score(s.level_bpd),
        "typicality_1": lambda s: (s.bpd - median).abs(),
        "level_ratio": lambda s: ratio(s) - ratio_median,
        "level_ratio_2": lambda s: (ratio(s) - ratio_median).abs(),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--in-dist", required=True)
    p.add_argument("--ood", action="append", required=True)
    p.add_argument("--pad", type=int)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    model = load_model(args.checkpoint, "cpu").model

    def scores(spec: str) -> ImageScores:
        data = load_fitting(spec, model, None, args.pad, None, check_labels=False)
        return score_images(model, data.images, seed=args.seed)

    inside = scores(args.in_dist)
    n = len(inside)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(args.seed))
    half = round(n * 0.5)  # as glowflow ood's default --calibration-fraction splits them
    cal = inside.subset(perm[:half].sort().values)
    ev = inside.subset(perm[half:].sort().values)
    methods = candidates(cal)
    results = []
    for spec in args.ood:
        outside = scores(spec)
        for name, f in methods.items():
            m = detection_metrics(f(ev).numpy(), f(outside).numpy())
            results.append({"ood": dataset_name(spec), "spec": spec, "candidate": name, **m})
    record = {"checkpoint": args.checkpoint, "in_dist": args.in_dist, "n_in": n,
              "seed": args.seed, "results": results}  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"| OOD set | {' | '.join(methods)} |\n|---|{'---|' * len(methods)}")
    for spec in args.ood:
        cells = [f"{r['auroc']:.3f} / {r['fpr95']:.3f}" for r in results if r["spec"] == spec]
        print(f"| {dataset_name(spec)} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()
