"""``glowflow compare``: the paper's permutation x coupling ablation, as learning curves."""

from __future__ import annotations

import argparse
from pathlib import Path

from glowflow.cli.common import UsageError, info, positive_int
from glowflow.config import COUPLINGS, PERMUTATIONS
from glowflow.train.compare import CURVES_FILE, RESULTS_FILE, run_comparison


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compare",
        help="the paper's permutation x coupling ablation, as curves",
        description="Train every permutation x coupling with the same seed, data order and "
        f"budget (separate processes, --jobs at a time), then write OUT/{CURVES_FILE} and "
        f"OUT/{RESULTS_FILE}. Finished runs are kept, interrupted ones resumed: rerun the same "
        "command to continue. Other options (e.g. --depth 8 --hidden-channels 64) go to "
        "every glowflow train.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--dataset", required=True, metavar="SPEC")
    p.add_argument("--permutations", default="reverse,shuffle,lu", help=", ".join(PERMUTATIONS))
    p.add_argument("--couplings", default="additive,affine", help=", ".join(COUPLINGS))
    p.add_argument("--max-time", type=float, help="minutes per run")
    p.add_argument("--steps", type=int, help="steps per run")
    p.add_argument("--eval-every", type=int, default=200, help="steps between validations")
    p.add_argument("--jobs", type=positive_int, default=2, help="runs at a time")
    p.add_argument("--out", required=True, help="folder for the runs, figure and JSON")


def _names(text: str, allowed: tuple[str, ...], what: str) -> list[str]:
    values = [v.strip() for v in text.split(",")]
    bad = [v for v in values if v not in allowed]
    if bad:
        raise UsageError(f"unknown {what} {bad[0]!r}; choose from {', '.join(allowed)}")
    return values


def run(args: argparse.Namespace, extra: list[str]) -> int:
    perms = _names(args.permutations, PERMUTATIONS, "permutation")
    coups = _names(args.couplings, COUPLINGS, "coupling")
    if args.max_time is None and args.steps is None:
        raise UsageError("give each run a budget: --max-time MINUTES or --steps N")
    if any(flag in extra for flag in ("--permutation", "--coupling", "--out", "--resume")):
        raise UsageError("--permutation, --coupling, --out and --resume are set per run by compare")
    train_args = ["--dataset", args.dataset, "--eval-every", str(args.eval_every), *extra]
    if args.max_time is not None:
        train_args += ["--max-time", str(args.max_time)]
    if args.steps is not None:
        train_args += ["--steps", str(args.steps)]
    results = run_comparison(args.out, perms, coups, train_args, args.jobs, log=info)
    for c, order in results["ordering"].items():
        finals = ", ".join(f"{p} {results['final_val_bpd'][f'{c}-{p}']:.4f}" for p in order)
        info(f"{c}: {finals} bits/dim (best first)")
    info(f"wrote {Path(args.out) / CURVES_FILE} and {Path(args.out) / RESULTS_FILE}")
    return 0
