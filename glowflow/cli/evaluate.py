"""``glowflow eval``: bits/dim of a model on a data set."""

from __future__ import annotations

import argparse
import json

from glowflow.cli.common import add_data_options, load_data_for, positive_int
from glowflow.cli.models import CHECKPOINT_HELP
from glowflow.data.evaluate import evaluate_bpd
from glowflow.distributed import resolve_device
from glowflow.hub.load import load_model
from glowflow.progress import progress_bar


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="bits/dim of a model on a data set",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--checkpoint", required=True, help=CHECKPOINT_HELP)
    p.add_argument("--dataset", required=True, metavar="SPEC", help="mnist-mini or KIND:PATH")
    p.add_argument("--limit", type=positive_int, help="use only the first N images")
    p.add_argument("--batch-size", type=positive_int, default=256)
    p.add_argument("--seed", type=int, default=0, help="dequantisation noise seed")
    add_data_options(p)
    p.add_argument("--no-ema", action="store_true", help="use the raw, not the EMA, weights")
    p.add_argument("--json", action="store_true", help='print {"bpd": ..., "n": ...}')
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    device = resolve_device(args.device)
    model = load_model(args.checkpoint, device, ema=not args.no_ema).model
    data = load_data_for(args, model, limit=args.limit)
    bpd = evaluate_bpd(
        model, data.images, data.labels, batch_size=args.batch_size, seed=args.seed,
        device=device, progress=None if args.no_progress else progress_bar("eval"),
    )  # fmt: skip
    if args.json:
        print(json.dumps({"bpd": bpd, "n": len(data)}))
    else:
        print(f"{bpd:.4f} bits/dim over {len(data)} images of {args.dataset}")
    return 0
