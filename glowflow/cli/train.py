"""``glowflow train``: options -> a TrainConfig -> a Trainer in a run folder.

The folder decisions (resume, overwrite, torchrun's restarts) and the config's layering are
``glowflow.train.launch``'s; this module parses, calls them and the trainer, and prints.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from typing import Any, Callable

from glowflow.cli.common import info
from glowflow.config import (
    COUPLINGS,
    LR_SCHEDULES,
    ON_BAD_IMAGE,
    OPTIMIZERS,
    PERMUTATIONS,
    PRECISIONS,
    TRAIN_PRESETS,
    TrainConfig,
)  # fmt: skip
from glowflow.data.datasets import BUILTIN, describe_specs
from glowflow.train.launch import DEFAULT_MAX_TIME, plan_launch, train_config
from glowflow.train.trainer import Interrupted, Trainer


def add_parser(sub: argparse._SubParsersAction) -> None:
    defaults = TrainConfig().to_dict()
    defaults["levels"] = "as many as the image size allows, up to 3: 3 at 32x32, 2 at 28x28"
    defaults["max_time"] = f"{DEFAULT_MAX_TIME:g} on {BUILTIN} without another budget, else none"
    p = sub.add_parser(
        "train",
        help="train a Glow on images",
        description="Train a Glow. With no arguments: a small model on the built-in MNIST "
        f"subset ({BUILTIN}), about 5 minutes on a 2-core CPU. " + describe_specs(),
    )

    def opt(name: str, help: str, **kw: Any) -> None:
        if kw.get("action") != "store_true":
            help = f"{help} (default: {defaults.get(name.lstrip('-').replace('-', '_'))})"
        p.add_argument(name, default=None, help=help, **kw)

    g = p.add_argument_group("run")
    g.add_argument("--out", help="run folder (default: a new folder under runs/)")
    g.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR exactly")
    g.add_argument("--overwrite", action="store_true", help="replace a run already in --out")
    g.add_argument("--preset", choices=sorted(TRAIN_PRESETS), help="the paper's settings")
    g.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    opt("--dataset", f"data set: {BUILTIN} or KIND:PATH", metavar="SPEC")
    opt("--val-dataset", "separate validation set (else --val-fraction)", metavar="SPEC")
    opt("--val-fraction", "fraction of the data held out for validation", type=float)
    opt("--image-size", "resize images to this square size", type=int)
    opt("--pad", "zero-pad images by this many pixels a side", type=int)
    opt("--hflip", "random horizontal flips", action="store_true")
    opt("--on-bad-image", "unreadable image files: skip with a warning or stop",
        choices=ON_BAD_IMAGE)  # fmt: skip
    _model_options(opt)
    opt("--optimizer", "optimiser", choices=OPTIMIZERS)
    opt("--lr", "peak learning rate", type=float)
    opt("--lr-schedule", "after warm-up: constant, or cosine decay over the budget",
        choices=LR_SCHEDULES)  # fmt: skip
    opt("--warmup-steps", "linear learning-rate warm-up", type=int)
    opt("--grad-clip", "clip the gradient norm (0: off)", type=float)
    opt("--ema-decay", "EMA of the weights for evaluation and samples (0: off)", type=float)
    opt("--batch-size", "images per step per process: under torchrun the global batch is "
        "N times this", type=int)  # fmt: skip
    opt("--init-batch-size", "images for actnorm's data-dependent init", type=int)
    opt("--steps", "stop after this many steps", type=int)
    opt("--epochs", "stop after this many epochs", type=float)
    opt("--max-time", "stop after this many minutes", type=float, metavar="MINUTES")
    opt("--seed", "random seed (data order, noise, init)", type=int)
    opt("--device", "auto, cpu, cuda, cuda:N")
    opt(
        "--precision",
        "bf16 runs the coupling networks in bfloat16; auto does so only where "
        "that is faster on this machine (timed at the start of the run)",
        choices=PRECISIONS,
    )
    opt("--compile", "torch.compile the forward pass and loss (the first steps compile, "
        "about a minute on a CPU)",
        action=argparse.BooleanOptionalAction)  # fmt: skip
    opt("--channels-last", "lay out batches and every weight channels-last (NHWC) on any "
        "device; on CPUs the model's convolution weights already are",
        action=argparse.BooleanOptionalAction)  # fmt: skip
    opt("--data-workers", "processes that read a store's batches ahead of the step (0: in "
        "the training process); in-memory data sets are always read in it", type=int)  # fmt: skip
    opt("--log-every", "steps between metrics lines", type=int)
    opt("--eval-every", "steps between validation passes (0: at the end)", type=int)
    opt("--sample-every", "steps between sample grids (0: at the end)", type=int)
    opt("--checkpoint-every", "steps between checkpoints", type=int)
    opt("--n-samples", "images in each sample grid (seeds 0..N-1)", type=int)
    opt("--sample-temperature", "temperature of the sample grids", type=float)
    opt("--tensorboard", "also log to TensorBoard (needs the tensorboard package)",
        action="store_true")  # fmt: skip


def _model_options(opt: Callable[..., None]) -> None:
    """The model's options, and the weights it starts from."""
    opt("--levels", "L, number of levels", type=int)
    opt("--init-from", "start from this model's weights, not random ones: a bundled model's "
        "name, pretrained folder, Hub model hf:user/repo, run folder or checkpoint (its "
        "architecture where these options give none, and a larger --hidden-channels widens "
        "it without changing what it computes; a fresh optimiser, warm-up and schedule)",
        metavar="MODEL")  # fmt: skip
    opt("--depth", "K, flow steps per level", type=int)
    opt("--hidden-channels", "width of the coupling networks", type=int)
    opt("--coupling", "coupling layer", choices=COUPLINGS)
    opt("--permutation", "channel mixing", choices=PERMUTATIONS)
    opt("--no-learn-top", "standard normal top prior", action="store_true")
    opt("--y-condition", "class-conditional prior and classification loss", action="store_true")
    opt("--y-weight", "weight of the classification loss (bits)", type=float)
    opt("--n-bits", "bits per colour channel", type=int)
    opt("--memory-saving", "backprop by inversion: activation memory flat in depth, about "
        "half the speed", action="store_true")  # fmt: skip


def given_options(args: argparse.Namespace) -> dict[str, Any]:
    """The TrainConfig fields set on the command line."""
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    given = {k: v for k, v in vars(args).items() if k in fields and v is not None}
    if args.no_learn_top:
        given["learn_top"] = False
    return given


def run(args: argparse.Namespace) -> int:
    launch = plan_launch(args.out, args.resume, args.overwrite, args.preset)
    if launch.restart:
        info(f"elastic restart {launch.restart}: resuming {args.out} from its last checkpoint")
    cfg = train_config(given_options(args), launch.preset, launch.resume)
    if args.dry_run:
        print(json.dumps(cfg.to_dict(), indent=2))
        return 0
    run_dir = launch.run_dir(cfg)
    trainer = Trainer(
        cfg, run_dir, resume=launch.resume is not None, overwrite=launch.overwrite, log=info,
        progress=not args.no_progress,
    )  # fmt: skip
    world = trainer.dist.world_size
    info(
        f"training {trainer.model.config.image_shape} images from {cfg.dataset} "
        f"({len(trainer.train_data)} train) in {run_dir}"
        + (f" on {world} processes, global batch {trainer.global_batch}" if world > 1 else "")
    )
    try:
        summary = trainer.run()
    except Interrupted as e:
        where = f"checkpoint saved in {e.checkpoint}" if e.checkpoint else "no checkpoint written"
        info(f"interrupted at step {e.step}; {where}; continue: glowflow train --resume {run_dir}")
        return 130
    val = f"{summary['val_bpd']:.4f}" if summary["val_bpd"] is not None else "n/a"
    rate = summary["step"] / max(trainer.elapsed, 1e-9)  # the clock unrounded
    info(
        f"done: {summary['step']} steps in {summary['elapsed_s'] / 60:.1f} min "
        f"({rate:.1f} steps/s), validation {val} bits/dim; results in {run_dir}"
    )
    return 0
