"""``glowflow eval``: bits/dim of a model on a data set."""

from __future__ import annotations

import argparse
import json

from glowflow.cli.common import add_data_options, load_data_for, positive_int
from glowflow.cli.models import CHECKPOINT_HELP
from glowflow.data.evaluate import evaluate_bits
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
    p.add_argument("--samples", type=positive_int, default=1, metavar="K",
                   help="dequantisation draws per image: K > 1 reports the importance-weighted "
                   "estimate (log-mean-exp of the K likelihoods), the tighter bound papers "
                   "report")  # fmt: skip
    add_data_options(p)
    p.add_argument("--no-ema", action="store_true", help="use the raw, not the EMA, weights")
    p.add_argument("--json", action="store_true",
                   help='print {"bpd": ..., "n": ..., "bits_per_image": ..., ...}')  # fmt: skip
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    device = resolve_device(args.device)
    model = load_model(args.checkpoint, device, ema=not args.no_ema).model
    data = load_data_for(args, model, limit=args.limit)
    found = evaluate_bits(
        model, data.images, data.labels, batch_size=args.batch_size, seed=args.seed,
        device=device, progress=None if args.no_progress else progress_bar("eval"),
        samples=args.samples,
    )  # fmt: skip
    record = found.record(data.original_dims if data.pad else None)
    if args.json:
        print(json.dumps(record))
        return 0
    draws = f", {found.samples} draws an image" if found.samples > 1 else ""
    print(f"{found.bpd:.4f} bits/dim over {found.n} images of {args.dataset} "
          f"({found.dims} dimensions an image{draws})")  # fmt: skip
    if data.pad:
        bits = f"{found.bits_per_image:.1f} bits an image"
        print(f"{record['bpd_original']:.4f} bits/dim over the {data.original_dims} pixels an "
              f"image had before its padding ({bits})")  # fmt: skip
    return 0
