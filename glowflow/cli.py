"""The ``glowflow`` command line: parses arguments, builds configs, calls the library."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Sequence

from glowflow import __version__
from glowflow.training import TrainError

# Options that may change when a run is resumed; every other one must match the run's config.
RESUMABLE = {
    "steps", "epochs", "max_time", "device", "log_every", "eval_every", "sample_every",
    "checkpoint_every", "tensorboard", "eval_batch_size",
}  # fmt: skip


class UsageError(ValueError):
    """A mistake in the command line."""


def _train_defaults() -> dict[str, Any]:
    from glowflow.training import TrainConfig

    return TrainConfig().to_dict()


def _add_train_parser(sub: argparse._SubParsersAction) -> None:
    from glowflow.datasets import describe_specs
    from glowflow.training import TRAIN_PRESETS

    d = _train_defaults()
    p = sub.add_parser(
        "train",
        help="train a Glow on images",
        description="Train a Glow. With no arguments: a small model on the built-in MNIST "
        "subset (mnist-mini), about 5 minutes on a 2-core CPU. " + describe_specs(),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )

    def opt(name: str, help: str, **kw: Any) -> None:
        key = name.lstrip("-").replace("-", "_")
        default = d.get(key)
        if kw.get("action") == "store_true":
            p.add_argument(name, default=None, help=help, **kw)
        else:
            p.add_argument(name, default=None, help=f"{help} (default: {default})", **kw)

    g = p.add_argument_group("run")
    g.add_argument("--out", help="run folder (default: a new folder under runs/)")
    g.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR exactly")
    g.add_argument("--overwrite", action="store_true", help="replace a run already in --out")
    g.add_argument("--preset", choices=sorted(TRAIN_PRESETS), help="the paper's settings")
    g.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(_group=g)
    opt("--dataset", "data set: mnist-mini or KIND:PATH", metavar="SPEC")
    opt("--val-dataset", "separate validation set (else --val-fraction)", metavar="SPEC")
    opt("--val-fraction", "fraction of the data held out for validation", type=float)
    opt("--image-size", "resize images to this square size", type=int)
    opt("--pad", "zero-pad images by this many pixels a side (MNIST kinds: 2)", type=int)
    opt("--hflip", "random horizontal flips", action="store_true")
    opt("--on-bad-image", "unreadable image files: skip with a warning or stop",
        choices=["skip", "error"])  # fmt: skip
    opt("--levels", "L, number of levels", type=int)
    opt("--depth", "K, flow steps per level", type=int)
    opt("--hidden-channels", "width of the coupling networks", type=int)
    opt("--coupling", "coupling layer", choices=["affine", "additive"])
    opt("--permutation", "channel mixing", choices=["lu", "conv", "shuffle", "reverse"])
    opt("--no-learn-top", "standard normal top prior", action="store_true", dest="no_learn_top")
    opt("--y-condition", "class-conditional prior and classification loss",
        action="store_true")  # fmt: skip
    opt("--y-weight", "weight of the classification loss (bits)", type=float)
    opt("--n-bits", "bits per colour channel", type=int)
    opt("--optimizer", "optimiser", choices=["adam", "adamax"])
    opt("--lr", "peak learning rate", type=float)
    opt("--lr-schedule", "after warm-up: constant, or cosine decay over the budget",
        choices=["constant", "cosine"])  # fmt: skip
    opt("--warmup-steps", "linear learning-rate warm-up", type=int)
    opt("--grad-clip", "clip the gradient norm (0: off)", type=float)
    opt("--ema-decay", "EMA of the weights for evaluation and samples (0: off)", type=float)
    opt("--batch-size", "images per step (per process)", type=int)
    opt("--init-batch-size", "images for actnorm's data-dependent init", type=int)
    opt("--steps", "stop after this many steps", type=int)
    opt("--epochs", "stop after this many epochs", type=float)
    opt("--max-time", "stop after this many minutes", type=float, metavar="MINUTES")
    opt("--seed", "random seed (data order, noise, init)", type=int)
    opt("--device", "auto, cpu, cuda, cuda:N")
    opt("--precision", "bf16 runs the coupling networks in bfloat16", choices=["fp32", "bf16"])
    opt("--log-every", "steps between metrics lines", type=int)
    opt("--eval-every", "steps between validation passes (0: at the end)", type=int)
    opt("--sample-every", "steps between sample grids (0: at the end)", type=int)
    opt("--checkpoint-every", "steps between checkpoints", type=int)
    opt("--n-samples", "images in each sample grid", type=int)
    opt("--sample-temperature", "temperature of the sample grids", type=float)
    opt("--tensorboard", "also log to TensorBoard (needs the tensorboard package)",
        action="store_true")  # fmt: skip


def _add_eval_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="bits/dim of a checkpoint on a data set",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--checkpoint", required=True, help="checkpoint.pt or a run folder")
    p.add_argument("--dataset", required=True, metavar="SPEC", help="mnist-mini or KIND:PATH")
    p.add_argument("--image-size", type=int, default=None, help="resize images")
    p.add_argument("--pad", type=int, default=None, help="zero-pad images (MNIST kinds: 2)")
    p.add_argument("--limit", type=int, default=None, help="use only the first N images")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--seed", type=int, default=0, help="dequantisation noise seed")
    p.add_argument("--device", default="auto")
    p.add_argument("--no-ema", action="store_true", help="use the raw, not the EMA, weights")
    p.add_argument("--json", action="store_true", help='print {"bpd": ..., "n": ...}')
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="glowflow", description="Glow normalizing flows: train, evaluate, sample."
    )
    parser.add_argument("--version", action="version", version=f"glowflow {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_train_parser(sub)
    _add_eval_parser(sub)
    return parser


def resolve_train_config(args: argparse.Namespace):
    """TrainConfig from defaults < preset < explicit flags; on resume, the run's own config."""
    from glowflow.training import TRAIN_PRESETS, TrainConfig

    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    given = {k: v for k, v in vars(args).items() if k in fields and v is not None}
    if getattr(args, "no_learn_top", None):
        given["learn_top"] = False
    if args.resume:
        saved = json.loads((Path(args.resume) / "config.json").read_text())["train"]
        changed = sorted(k for k, v in given.items() if k not in RESUMABLE and saved.get(k) != v)
        if changed or args.preset:
            names = ", ".join("--" + k.replace("_", "-") for k in changed) or "--preset"
            raise UsageError(
                f"{names} differ from the run being resumed; drop them, or start a new run"
            )
        return TrainConfig.from_dict({**saved, **given})
    values = _train_defaults()
    if args.preset:
        values.update(TRAIN_PRESETS[args.preset])
    values.update(given)
    # The default run (no budget given) is the 5-minute CPU job on mnist-mini.
    if values["steps"] is None and values["epochs"] is None and values["max_time"] is None:
        values["max_time"] = DEFAULT_MAX_TIME
    return TrainConfig.from_dict(values)


DEFAULT_MAX_TIME = 4.0  # minutes of training in the default run, leaving time for the rest


def _default_run_dir(dataset: str) -> Path:
    slug = "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in dataset.split("/")[-1])
    return Path("runs") / f"{time.strftime('%Y%m%d-%H%M%S')}-{slug.strip('-')[:40]}"


def cmd_train(args: argparse.Namespace) -> int:
    from glowflow.training import Interrupted, Trainer

    if args.resume:
        run_dir = Path(args.resume)
        if not (run_dir / "config.json").is_file():
            raise UsageError(f"cannot resume: {run_dir} holds no run (no config.json)")
        if args.out and Path(args.out) != run_dir:
            raise UsageError("--resume continues the run in its own folder; drop --out")
    cfg = resolve_train_config(args)
    if args.dry_run:
        print(json.dumps(cfg.to_dict(), indent=2))
        return 0
    run_dir = Path(args.resume) if args.resume else Path(args.out or _default_run_dir(cfg.dataset))
    trainer = Trainer(
        cfg, run_dir, resume=bool(args.resume), overwrite=args.overwrite, log=_info,
        progress=not args.no_progress,
    )  # fmt: skip
    _info(
        f"training {trainer.model.config.image_shape} images from {cfg.dataset} "
        f"({len(trainer.train_data)} train) in {run_dir}"
    )
    try:
        summary = trainer.run()
    except Interrupted as e:
        where = f"checkpoint saved in {e.checkpoint}" if e.checkpoint else "no checkpoint written"
        _info(f"interrupted at step {e.step}; {where}; continue: glowflow train --resume {run_dir}")
        return 130
    val = f"{summary['val_bpd']:.4f}" if summary["val_bpd"] is not None else "n/a"
    _info(
        f"done: {summary['step']} steps in {summary['elapsed_s'] / 60:.1f} min, "
        f"validation {val} bits/dim; results in {run_dir}"
    )
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from glowflow.checkpoint import model_from_checkpoint
    from glowflow.datasets import load_dataset
    from glowflow.evaluate import evaluate_bpd
    from glowflow.training import resolve_device

    device = resolve_device(args.device)
    model, _ = model_from_checkpoint(args.checkpoint, device, ema=not args.no_ema)
    data = load_dataset(args.dataset, image_size=args.image_size, pad=args.pad, limit=args.limit)
    if data.image_shape != model.config.image_shape:
        raise UsageError(
            f"the model takes images {model.config.image_shape}, {args.dataset} gives "
            f"{data.image_shape}; match them with --image-size or --pad"
        )
    progress = None
    if not args.no_progress:
        from tqdm.auto import tqdm

        def progress(it, n):
            return tqdm(it, total=n, desc="eval", leave=False)

    bpd = evaluate_bpd(
        model, data.images, data.labels, batch_size=args.batch_size, seed=args.seed,
        device=device, progress=progress,
    )  # fmt: skip
    if args.json:
        print(json.dumps({"bpd": bpd, "n": len(data)}))
    else:
        print(f"{bpd:.4f} bits/dim over {len(data)} images of {args.dataset}")
    return 0


def _info(message: str) -> None:
    print(f"glowflow: {message}", file=sys.stderr, flush=True)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    _info(f"warning: {message}")


COMMANDS = {"train": cmd_train, "eval": cmd_eval}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    warnings.showwarning = _show_warning
    try:
        return COMMANDS[args.command](args)
    except (ValueError, OSError, TrainError) as e:
        if os.environ.get("GLOWFLOW_DEBUG"):
            raise
        message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        print(f"glowflow {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
