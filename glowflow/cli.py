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

import torch

from glowflow import __version__
from glowflow.compare import CompareError
from glowflow.training import TrainError

# Options that may change when a run is resumed; every other one must match the run's config.
RESUMABLE = {
    "steps", "epochs", "max_time", "device", "log_every", "eval_every", "sample_every",
    "checkpoint_every", "tensorboard", "eval_batch_size", "compile", "channels_last",
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
    opt("--memory-saving", "backprop by inversion: activation memory flat in depth, about "
        "half the speed",
        action="store_true")  # fmt: skip
    opt("--optimizer", "optimiser", choices=["adam", "adamax"])
    opt("--lr", "peak learning rate", type=float)
    opt("--lr-schedule", "after warm-up: constant, or cosine decay over the budget",
        choices=["constant", "cosine"])  # fmt: skip
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
    opt("--precision", "bf16 runs the coupling networks in bfloat16", choices=["fp32", "bf16"])
    opt("--compile", "torch.compile the forward pass and loss (the first steps compile; 1.3x "
        "faster on a CPU at width 256, see the README)",
        action=argparse.BooleanOptionalAction)  # fmt: skip
    opt("--channels-last", "channels-last (NHWC) memory layout: faster convolutions on CPU, "
        "see the README", action=argparse.BooleanOptionalAction)  # fmt: skip
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
    p.add_argument("--limit", type=int, default=None, help="use only the first N images")
    p.add_argument("--batch-size", type=_positive, default=256)
    p.add_argument("--seed", type=int, default=0, help="dequantisation noise seed")
    _add_data_options(p)
    p.add_argument("--no-ema", action="store_true", help="use the raw, not the EMA, weights")
    p.add_argument("--json", action="store_true", help='print {"bpd": ..., "n": ...}')
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _add_latent_parsers(sub: argparse._SubParsersAction) -> None:
    fmt = argparse.ArgumentDefaultsHelpFormatter
    p = sub.add_parser("sample", help="a PNG grid of samples", formatter_class=fmt)
    p.add_argument("--checkpoint", required=True, help="checkpoint.pt or a run folder")
    p.add_argument("--n", type=_positive, default=64, help="samples, seeds 0..n-1 (or --seeds)")
    p.add_argument("--seeds", type=_int_list, help="e.g. 0-63 or 1,5,9: one generator each")
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--temperatures", type=_float_list,
                   help="one row per temperature, same seeds, e.g. 0,0.5,0.7,1")  # fmt: skip
    p.add_argument("--label", help="class-conditional models: a class index, name, or 'all'")
    p.add_argument("--nrow", type=int, help="images per row of the grid")
    p.add_argument("--out", default="samples.png", help="PNG path (a .json lands beside it)")
    p.add_argument("--device", default="auto")

    p = sub.add_parser("interpolate", help="latent interpolation between real images",
                       formatter_class=fmt)  # fmt: skip
    p.add_argument("--checkpoint", required=True, help="checkpoint.pt or a run folder")
    p.add_argument("--dataset", metavar="SPEC", help="where --pairs index into")
    p.add_argument("--pairs", nargs="+", type=_pair, help="index pairs, e.g. 3,17 5,9")
    p.add_argument("--images", nargs="+", help="image files, taken two by two")
    p.add_argument("--steps", type=int, default=8, help="images from one end to the other")
    p.add_argument("--spherical", action="store_true", help="slerp instead of a straight line")
    p.add_argument("--out", default="interpolation.png", help="PNG path (a .json beside it)")
    _add_data_options(p)

    p = sub.add_parser("manipulate", help="move real images along an attribute direction",
                       formatter_class=fmt)  # fmt: skip
    p.add_argument("--checkpoint", required=True, help="checkpoint.pt or a run folder")
    p.add_argument("--dataset", required=True, metavar="SPEC", help="a labelled data set")
    p.add_argument("--attribute", help="e.g. Smiling, or class:3-vs-8 / class:3 for labels")
    p.add_argument("--list-attributes", action="store_true", help="list the choices and exit")
    p.add_argument("--images", type=_int_list, default=[0, 1, 2, 3], help="indices, e.g. 0,4,8")
    p.add_argument("--alphas", type=_float_list, default=[-1.0, -0.5, 0.0, 0.5, 1.0])
    p.add_argument("--max-images", type=_positive, help="use at most N images for the direction")
    p.add_argument("--out", default="manipulation.png", help="PNG path (a .json beside it)")
    _add_data_options(p)


def _add_compare_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compare",
        help="the paper's permutation x coupling ablation, as curves",
        description="Train every permutation x coupling with the same seed, data order and "
        "budget (separate processes, --jobs at a time), then write OUT/curves.png and "
        "OUT/results.json. Finished runs are kept, interrupted ones resumed: rerun the same "
        "command to continue. Other options (e.g. --depth 8 --hidden-channels 64) go to "
        "every glowflow train.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--dataset", required=True, metavar="SPEC")
    p.add_argument("--permutations", default="reverse,shuffle,lu")
    p.add_argument("--couplings", default="additive,affine")
    p.add_argument("--max-time", type=float, help="minutes per run")
    p.add_argument("--steps", type=int, help="steps per run")
    p.add_argument("--eval-every", type=int, default=200, help="steps between validations")
    p.add_argument("--jobs", type=_positive, default=2, help="runs at a time")
    p.add_argument("--out", required=True, help="folder for the runs, figure and JSON")


def _add_data_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--image-size", type=int, help="resize the data set's images")
    p.add_argument("--pad", type=int, help="zero-pad the data set's images (MNIST kinds: 2)")
    p.add_argument("--device", default="auto")


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return value


def _int_list(text: str) -> list[int]:
    """``"0-3,7"`` -> ``[0, 1, 2, 3, 7]``."""
    out: list[int] = []
    try:
        for part in text.split(","):
            lo, sep, hi = part.strip().partition("-")
            out.extend(range(int(lo), int(hi) + 1) if sep and lo else [int(part)])
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list like 0-63 or 1,5,9") from None
    return out


def _float_list(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list like -1,-0.5,0,0.5,1") from None


def _pair(text: str) -> tuple[int, int]:
    values = _int_list(text)
    if len(values) != 2:
        raise argparse.ArgumentTypeError(f"{text!r} is not a pair of indices like 3,17")
    return values[0], values[1]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="glowflow", description="Glow normalizing flows: train, evaluate, sample."
    )
    parser.add_argument("--version", action="version", version=f"glowflow {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_train_parser(sub)
    _add_eval_parser(sub)
    _add_latent_parsers(sub)
    _add_compare_parser(sub)
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
    # The default run (no budget given) is the 5-minute CPU job on mnist-mini; any other run
    # states its budget.
    no_budget = values["steps"] is None and values["epochs"] is None and values["max_time"] is None
    if no_budget and values["dataset"] == "mnist-mini" and not args.preset:
        values["max_time"] = DEFAULT_MAX_TIME
    return TrainConfig.from_dict(values)


DEFAULT_MAX_TIME = 4.0  # minutes of training in the default run, leaving time for the rest


def _default_run_dir(dataset: str) -> Path:
    slug = "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in dataset.split("/")[-1])
    return Path("runs") / f"{time.strftime('%Y%m%d-%H%M%S')}-{slug.strip('-')[:40]}"


def _started_by_this_job(run_dir: Path) -> bool:
    """Whether ``run_dir`` was created by this torchrun job (not a run that was there before)."""
    try:
        saved = json.loads((run_dir / "config.json").read_text())
    except (OSError, ValueError):
        return False
    return saved.get("torchelastic_run_id") == os.environ.get("TORCHELASTIC_RUN_ID")


def cmd_train(args: argparse.Namespace) -> int:
    from glowflow import distributed
    from glowflow.training import Interrupted, Trainer

    if distributed.launched_by_torchrun() and not (args.out or args.resume):
        raise UsageError("under torchrun give --out RUN_DIR, the one folder all processes share")
    restarts = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))
    if restarts and args.out and not args.resume and _started_by_this_job(Path(args.out)):
        # torchrun restarted the job after a process died: continue from the last checkpoint
        if (Path(args.out) / "checkpoint.pt").is_file():
            _info(f"elastic restart {restarts}: resuming {args.out} from its last checkpoint")
            args.resume, args.out, args.overwrite, args.preset = args.out, None, False, None
        else:
            args.overwrite = True  # it died before its first checkpoint: start again
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
    world = trainer.dist.world_size
    _info(
        f"training {trainer.model.config.image_shape} images from {cfg.dataset} "
        f"({len(trainer.train_data)} train) in {run_dir}"
        + (f" on {world} processes, global batch {trainer.global_batch}" if world > 1 else "")
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


def _write_result(out: str, images: torch.Tensor, nrow: int, record: dict) -> None:
    from glowflow.viz import save_grid

    png = save_grid(images, out, nrow)
    png.with_suffix(".json").write_text(json.dumps(record, indent=2))
    _info(f"wrote {png} and {png.with_suffix('.json')}")


def _load_model(args: argparse.Namespace):
    from glowflow.checkpoint import model_from_checkpoint
    from glowflow.training import resolve_device

    return model_from_checkpoint(args.checkpoint, resolve_device(args.device))


def _resolve_label(text: str, model, class_names: list[str] | None) -> list[int]:
    k = model.config.num_classes
    if k is None:
        raise UsageError("this checkpoint's model is not class-conditional; drop --label")
    names = class_names or [str(i) for i in range(k)]
    if text == "all":
        return list(range(k))
    if text in names:
        return [names.index(text)]
    if text.isdigit() and int(text) < k:
        return [int(text)]
    raise UsageError(f"unknown label {text!r}; choose one of {', '.join(names)} or all")


def cmd_sample(args: argparse.Namespace) -> int:
    from glowflow.latents import sample_images

    model, state = _load_model(args)
    seeds = args.seeds if args.seeds is not None else list(range(args.n))
    if not seeds:
        raise UsageError("--seeds names no seed; write a range like 0-63 or a list like 1,5,9")
    temps = args.temperatures or [args.temperature]
    k = model.config.num_classes
    labels_per_row: list[int | None] = [None]
    if args.label is not None:
        labels_per_row = _resolve_label(args.label, model, state.get("data", {}).get("class_names"))
    elif k is not None:
        labels_per_row = list(range(k))
    if len(temps) > 1 and len(labels_per_row) > 1:
        raise UsageError("give one label (--label K) with --temperatures: rows are temperatures")
    rows = []
    for t in temps:
        for label in labels_per_row:
            y = None if label is None else torch.full((len(seeds),), label, dtype=torch.long)
            rows.append(sample_images(model, seeds, t, y))
    images = torch.cat(rows)
    one_row_each = len(rows) > 1
    nrow = args.nrow or (len(seeds) if one_row_each else max(1, int(len(seeds) ** 0.5)))
    record = {
        "checkpoint": str(args.checkpoint), "seeds": seeds, "temperatures": temps,
        "labels": labels_per_row, "rows": "temperature x label" if one_row_each else "grid",
    }  # fmt: skip
    _write_result(args.out, images, nrow, record)
    return 0


def _load_data_for(args: argparse.Namespace, model):
    from glowflow.datasets import load_dataset

    data = load_dataset(args.dataset, image_size=args.image_size, pad=args.pad)
    if data.image_shape != model.config.image_shape:
        raise UsageError(
            f"the model takes images {model.config.image_shape}, {args.dataset} gives "
            f"{data.image_shape}; match them with --image-size or --pad"
        )
    return data


def _check_indices(indices: list[int], n: int, what: str) -> None:
    bad = [i for i in indices if not 0 <= i < n]
    if bad:
        raise UsageError(f"{what} index {bad[0]} is out of range; the data set has 0..{n - 1}")


def _read_image_files(paths: list[str], shape: tuple[int, int, int]) -> torch.Tensor:
    from PIL import Image, UnidentifiedImageError

    c, h, w = shape
    out = []
    for path in paths:
        try:
            with Image.open(path) as im:
                im = im.convert("L" if c == 1 else "RGB").resize((w, h), Image.LANCZOS)
                arr = torch.frombuffer(bytearray(im.tobytes()), dtype=torch.uint8)
        except (OSError, UnidentifiedImageError, Image.DecompressionBombError) as e:
            raise UsageError(f"cannot read image {path}: {e}") from None
        out.append(arr.reshape(h, w, c).permute(2, 0, 1))
    return torch.stack(out)


def cmd_interpolate(args: argparse.Namespace) -> int:
    from glowflow.latents import interpolate_images

    model, _ = _load_model(args)
    labels = None
    if args.images:
        if args.pairs or len(args.images) % 2:
            raise UsageError("give an even number of --images (taken two by two), not --pairs")
        if model.config.num_classes is not None:
            raise UsageError("a class-conditional model needs labels: use --dataset and --pairs")
        images = _read_image_files(args.images, model.config.image_shape)
        first, second = images[0::2], images[1::2]
        ends = [(a, b) for a, b in zip(args.images[0::2], args.images[1::2])]
    else:
        if not (args.dataset and args.pairs):
            raise UsageError("give --dataset and --pairs (e.g. --pairs 3,17 5,9), or --images")
        data = _load_data_for(args, model)
        flat = [i for pair in args.pairs for i in pair]
        _check_indices(flat, len(data), "--pairs")
        a = torch.tensor([p[0] for p in args.pairs])
        b = torch.tensor([p[1] for p in args.pairs])
        first, second = data.images[a], data.images[b]
        if model.config.num_classes is not None:
            if data.labels is None:
                raise UsageError(f"the model is class-conditional and {args.dataset} has no labels")
            labels = (data.labels[a], data.labels[b])
        ends = args.pairs
    rows = interpolate_images(model, first, second, args.steps, args.spherical, labels)
    grid = torch.cat([first[:, None], rows, second[:, None]], dim=1)  # real images at the ends
    record = {
        "checkpoint": str(args.checkpoint), "dataset": args.dataset, "pairs": ends,
        "steps": args.steps, "spherical": args.spherical,
        "columns": "real, then steps decoded from t=0 to t=1, then real",
    }  # fmt: skip
    _write_result(args.out, grid.flatten(0, 1), args.steps + 2, record)
    return 0


def _attribute_masks(data, name: str) -> tuple[torch.Tensor, torch.Tensor, str]:
    """(positive, negative, description) for an attribute name or a class:A[-vs-B] spec."""
    if name.startswith("class:"):
        if data.labels is None:
            raise UsageError(f"{data.name} has no class labels; use one of its attributes")
        names = data.class_names or [str(i) for i in range(data.num_classes or 0)]

        def cls(text: str) -> int:
            if text in names:
                return names.index(text)
            if text.isdigit() and int(text) < len(names):
                return int(text)
            raise UsageError(f"unknown class {text!r}; choose one of {', '.join(names)}")

        a, sep, b = name[len("class:") :].partition("-vs-")
        positive = data.labels == cls(a)
        negative = data.labels == cls(b) if sep else ~positive
        return positive, negative, name
    choices = [*(data.attr_names or []), "class:A-vs-B", "class:A"]
    if data.attrs is None or name not in data.attr_names:
        close = [n for n in data.attr_names or [] if n.lower() == name.lower()]
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise UsageError(
            f"unknown attribute {name!r}{hint}; choose one of {', '.join(choices)}"
            if data.attrs is not None or data.labels is not None
            else f"{data.name} has no attributes or labels to manipulate"
        )
    positive = data.attrs[:, data.attr_names.index(name)]
    return positive, ~positive, name


def _list_attributes(data) -> str:
    lines = []
    for i, n in enumerate(data.attr_names or []):
        lines.append(f"{n}\t{int(data.attrs[:, i].sum())} of {len(data)}")
    if data.labels is not None:
        names = data.class_names or [str(i) for i in range(data.num_classes)]
        counts = torch.bincount(data.labels, minlength=len(names)).tolist()
        lines += [f"class:{n}\t{c} of {len(data)}" for n, c in zip(names, counts)]
        lines.append("class:A-vs-B\tany two classes")
    return "\n".join(lines) or f"{data.name} has no attributes or labels"


def _cached_direction(args, model, state, data, positive, negative):
    """The attribute direction, computed once and kept in attributes.pt beside the checkpoint."""
    from glowflow.checkpoint import atomic_save
    from glowflow.latents import attribute_direction

    ckpt = Path(args.checkpoint)
    ckpt_file = ckpt / "checkpoint.pt" if ckpt.is_dir() else ckpt
    cache = ckpt_file.parent / "attributes.pt"
    # the key names the exact checkpoint file and data, so a retrained model never reuses it
    st = ckpt_file.stat()
    kind, _, path = args.dataset.partition(":")
    data_id = f"{kind}:{Path(path).resolve()}" if path else kind
    key = f"{ckpt_file.name}|{st.st_size}|{st.st_mtime_ns}|step{state.get('step')}|{data_id}"
    key += f"|{args.image_size}|{args.pad}|{args.attribute}|{args.max_images}"
    entries: dict = {}
    if cache.is_file():
        try:
            entries = torch.load(cache, weights_only=True).get("entries", {})
        except Exception:  # a damaged cache is recomputed, never trusted
            entries = {}
    if key in entries:
        return entries[key]["direction"], entries[key]["info"], True
    images, labels = data.images, data.labels
    if args.max_images:
        images, labels = (
            images[: args.max_images],
            None if labels is None else labels[: args.max_images],
        )
        positive, negative = positive[: args.max_images], negative[: args.max_images]
    if model.config.num_classes is None:
        labels = None
    from tqdm.auto import tqdm

    def bar(it, n):
        return tqdm(it, total=n, desc="encoding", leave=False)

    direction, info = attribute_direction(model, images, positive, negative, labels, progress=bar)
    entries[key] = {"direction": direction.cpu(), "info": info}
    atomic_save(cache, {"entries": entries})
    return direction, info, False


def cmd_manipulate(args: argparse.Namespace) -> int:
    from glowflow.latents import manipulate_images

    model, state = _load_model(args)
    data = _load_data_for(args, model)
    if args.list_attributes:
        print(_list_attributes(data))
        return 0
    if not args.attribute:
        raise UsageError("give --attribute (see --list-attributes for the choices)")
    positive, negative, name = _attribute_masks(data, args.attribute)
    n_pos, n_neg = int(positive.sum()), int(negative.sum())
    if n_pos == 0 or n_neg == 0:
        raise UsageError(
            f"{name} has {n_pos} images with it and {n_neg} without in {args.dataset}; "
            f"both must be non-zero: pick another attribute (see --list-attributes)"
        )
    _check_indices(args.images, len(data), "--images")
    direction, info, cached = _cached_direction(args, model, state, data, positive, negative)
    idx = torch.tensor(args.images)
    labels = data.labels[idx] if model.config.num_classes is not None else None
    rows = manipulate_images(model, data.images[idx], direction, args.alphas, labels)
    record = {
        "checkpoint": str(args.checkpoint), "dataset": args.dataset, "attribute": name,
        "images": args.images, "alphas": args.alphas, "direction": info, "cached": cached,
    }  # fmt: skip
    if 0.0 in args.alphas:
        from glowflow.objective import postprocess, preprocess

        n_bits = model.config.n_bits  # compare with the input as the model sees it
        seen = postprocess(preprocess(data.images[idx], n_bits, dequantize=False), n_bits)
        recon = rows[:, args.alphas.index(0.0)].int()
        record["reconstruction_max_grey_level_error"] = (recon - seen.int()).abs().max().item()
    _write_result(args.out, rows.flatten(0, 1), len(args.alphas), record)
    return 0


def cmd_compare(args: argparse.Namespace, extra: list[str]) -> int:
    from glowflow.compare import run_comparison
    from glowflow.flowstep import COUPLINGS, PERMUTATIONS

    perms = [p.strip() for p in args.permutations.split(",")]
    coups = [c.strip() for c in args.couplings.split(",")]
    for value, allowed, what in (
        (perms, PERMUTATIONS, "permutation"),
        (coups, COUPLINGS, "coupling"),
    ):
        bad = [v for v in value if v not in allowed]
        if bad:
            raise UsageError(f"unknown {what} {bad[0]!r}; choose from {', '.join(allowed)}")
    if args.max_time is None and args.steps is None:
        raise UsageError("give each run a budget: --max-time MINUTES or --steps N")
    if any(flag in extra for flag in ("--permutation", "--coupling", "--out", "--resume")):
        raise UsageError("--permutation, --coupling, --out and --resume are set per run by compare")
    train_args = ["--dataset", args.dataset, "--eval-every", str(args.eval_every), *extra]
    if args.max_time is not None:
        train_args += ["--max-time", str(args.max_time)]
    if args.steps is not None:
        train_args += ["--steps", str(args.steps)]
    results = run_comparison(args.out, perms, coups, train_args, args.jobs, log=_info)
    for c, order in results["ordering"].items():
        finals = ", ".join(f"{p} {results['final_val_bpd'][f'{c}-{p}']:.4f}" for p in order)
        _info(f"{c}: {finals} bits/dim (best first)")
    _info(f"wrote {Path(args.out) / 'curves.png'} and {Path(args.out) / 'results.json'}")
    return 0


def _info(message: str) -> None:
    if os.environ.get("RANK", "0") == "0":  # under torchrun, one process speaks
        print(f"glowflow: {message}", file=sys.stderr, flush=True)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    _info(f"warning: {message}")


COMMANDS = {
    "train": cmd_train,
    "eval": cmd_eval,
    "sample": cmd_sample,
    "interpolate": cmd_interpolate,
    "manipulate": cmd_manipulate,
}


# List options whose values may start with a minus sign ("--alphas -1,-0.5,0,0.5,1"), which
# argparse would otherwise take for an option.
SIGNED_LISTS = ("--alphas", "--temperatures")


def _join_signed_lists(argv: Sequence[str]) -> list[str]:
    out: list[str] = []
    for token in argv:
        if out and out[-1] in SIGNED_LISTS and token.startswith("-"):
            out[-1] = f"{out[-1]}={token}"
        else:
            out.append(token)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = _join_signed_lists(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["compare"]:  # compare passes the options it does not know on to train
        args, extra = parser.parse_known_args(argv)
    else:
        args, extra = parser.parse_args(argv), []
    if not args.command:
        parser.print_help()
        return 2
    warnings.showwarning = _show_warning
    try:
        if args.command == "compare":
            return cmd_compare(args, extra)
        return COMMANDS[args.command](args)
    except (ValueError, OSError, RuntimeError) as e:
        if isinstance(e, RuntimeError) and not isinstance(e, (TrainError, CompareError)):
            raise
        if os.environ.get("GLOWFLOW_DEBUG"):
            raise
        message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        print(f"glowflow {args.command}: error: {message}", file=sys.stderr)
        return 2
    finally:
        from glowflow import distributed

        distributed.teardown()


if __name__ == "__main__":
    sys.exit(main())
