"""``glowflow score`` (per-image bits/dim and complexity) and ``glowflow ood`` (how well each
score tells a held-out in-distribution set from other sets)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from glowflow.cli.common import (
    UsageError,
    add_data_options,
    info,
    positive_float,
    positive_int,
)
from glowflow.cli.models import CHECKPOINT_HELP
from glowflow.data.datasets import dataset_name
from glowflow.data.fitting import load_fitting
from glowflow.data.imagedata import ImageData
from glowflow.distributed import resolve_device
from glowflow.errors import first_line
from glowflow.files import atomic_write_text
from glowflow.hub.load import load_model
from glowflow.nn.model import GlowFlow
from glowflow.ood.detection import (
    CODECS,
    DEFAULT_BANDWIDTH,
    DEFAULT_TYPICALITY_M,
    IN_DIST,
    METHODS,
    ImageScores,
    check_methods,
    check_sets,
    detect,
    score_images,
)
from glowflow.ood.results import (
    csv_text,
    detection_rows,
    ood_set_names,
    results_record,
    score_rows,
    write_detection,
)
from glowflow.progress import progress_bar


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, help=CHECKPOINT_HELP)
    p.add_argument("--codec", choices=CODECS, default="png",
                   help="lossless codec whose size the complexity score subtracts")  # fmt: skip
    p.add_argument("--limit", type=positive_int, help="use only the first N images of each set")
    p.add_argument("--batch-size", type=positive_int, default=256)
    p.add_argument("--seed", type=int, default=0, help="dequantisation noise (and split) seed")
    add_data_options(p)
    p.add_argument("--no-ema", action="store_true", help="use the raw, not the EMA, weights")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "score",
        help="per-image bits/dim, per-level bits/dim and input complexity, as CSV",
        description="Write one CSV row per image: its bits/dim under the model, each level's "
        "share of it, the bits/dim of the image stored losslessly by --codec, the "
        "complexity-corrected score (bits/dim minus the codec's), its bits per image and, for "
        "padded images (--pad), bits/dim over the pixels before the padding. A "
        "class-conditional model gives the marginal likelihood over classes.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    _add_common(p)
    p.add_argument("--dataset", required=True, metavar="SPEC", help="mnist-mini or KIND:PATH")
    p.add_argument("--out", required=True, help="the CSV file to write")
    p.add_argument("--samples", type=positive_int, default=1, metavar="K",
                   help="dequantisation draws per image: K > 1 makes bpd the "
                   "importance-weighted estimate over K draws (levels: the first)")  # fmt: skip

    p = sub.add_parser(
        "ood",
        help="out-of-distribution detection: AUROC, AUPR and FPR95 of each score",
        description="Score a held-out in-distribution set (images the model never trained on) "
        "and one or more other sets, and report for each method how well it tells them apart, "
        "with the OOD images as the positive class: bpd (raw bits/dim), complexity (bits/dim "
        "minus the codec's bits/dim, Serra et al. 2020), dose (the density of states, "
        "Morningstar et al. 2021: how unusual an image's per-level and codec bits/dim are "
        "under a density fitted on in-distribution images; one image at a time, and both "
        "ways: simpler and more complex images alike) and typicality (the test of Nalisnick "
        "et al. 2019 on batches of M images). A random --calibration-fraction of the "
        "in-distribution set fits the density of states and the typicality test and is left "
        "out of every method's figures. Writes DIR/results.json, DIR/histograms.png and "
        "DIR/scores.csv.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    _add_common(p)
    p.add_argument("--in-dist", required=True, metavar="SPEC",
                   help="held-out images of the model's own distribution")  # fmt: skip
    p.add_argument("--ood", required=True, action="append", metavar="SPEC",
                   help="another set (repeat the option for more)")  # fmt: skip
    p.add_argument("--methods", default=",".join(METHODS),
                   help=f"comma-separated, some of {', '.join(METHODS)}")  # fmt: skip
    p.add_argument("--typicality-m", type=positive_int, default=DEFAULT_TYPICALITY_M,
                   metavar="M", help="images per batch of the typicality test")  # fmt: skip
    p.add_argument("--calibration-fraction", type=float, default=0.5,
                   help="share of the in-distribution set that fits dose and "
                   "typicality")  # fmt: skip
    p.add_argument("--dose-bandwidth", type=positive_float, default=DEFAULT_BANDWIDTH,
                   metavar="F", help="the density of states' kernel width, a factor on "
                   "Scott's rule")  # fmt: skip
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the results")


def _load(args: argparse.Namespace, model: GlowFlow, spec: str) -> ImageData:
    data = load_fitting(spec, model, args.image_size, args.pad, args.limit, check_labels=False)
    if len(data) == 0:
        raise UsageError(f"{spec} holds no images; give a set with at least one")
    return data


def _score(args: argparse.Namespace, model: GlowFlow, data: ImageData, device) -> ImageScores:
    name = dataset_name(data.name)
    return score_images(
        model, data.images, batch_size=args.batch_size, seed=args.seed, device=device,
        codec=args.codec, progress=None if args.no_progress else progress_bar(name),
        samples=getattr(args, "samples", 1),
    )  # fmt: skip


def _write_text(path: Path, text: str) -> None:
    """Write atomically, so a failed write leaves any earlier file whole."""
    try:
        atomic_write_text(path, text)
    except OSError as e:
        raise UsageError(f"cannot write {path}: {first_line(e)}; choose another --out") from e


def score(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.is_dir():
        raise UsageError(f"--out {out} is a folder; give the CSV file's path")
    device = resolve_device(args.device)
    model = load_model(args.checkpoint, device, ema=not args.no_ema).model
    data = _load(args, model, args.dataset)
    scores = _score(args, model, data, device)
    original = data.original_dims if data.pad else None
    rows = score_rows(scores, data.labels, dims=model.config.num_dims, original_dims=original)
    _write_text(out, csv_text(rows))
    info(
        f"{len(data)} images of {args.dataset}: mean {scores.bpd.mean():.4f} bits/dim, "
        f"{args.codec} {scores.compressed_bpd.mean():.4f} bits/dim, complexity "
        f"{scores.complexity.mean():.4f}; wrote {out}"
    )
    return 0


def _table(records: list[dict[str, Any]]) -> str:
    lines = [f"{'OOD set':<22} {'method':<11} {'AUROC':>7} {'AUPR':>7} {'FPR95':>7}  unit"]
    for r in records:
        unit = f"batches of {r['m']}" if r["method"] == "typicality" else "images"
        lines.append(
            f"{r['ood']:<22} {r['method']:<11} {r['auroc']:7.4f} {r['aupr']:7.4f} "
            f"{r['fpr95']:7.4f}  {unit}"
        )
    return "\n".join(lines)


def ood(args: argparse.Namespace) -> int:
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    check_methods(methods)  # before anything is loaded
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file; give a folder for the results")
    device = resolve_device(args.device)
    model = load_model(args.checkpoint, device, ema=not args.no_ema).model
    # every set is loaded and checked before the slow scoring starts
    in_data = _load(args, model, args.in_dist)
    ood_data = [_load(args, model, spec) for spec in args.ood]
    names = ood_set_names(args.ood)
    check_sets(len(in_data), {name: len(d) for name, d in zip(names, ood_data)}, methods,
               args.typicality_m, args.calibration_fraction)  # fmt: skip
    try:  # before the slow part, so that a folder that cannot be written is found at once
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"cannot create {out}: {first_line(e)}; choose another --out") from e
    in_scores = _score(args, model, in_data, device)
    ood_scores = {name: _score(args, model, d, device) for name, d in zip(names, ood_data)}
    report = detect(
        in_scores, ood_scores, methods, m=args.typicality_m,
        calibration_fraction=args.calibration_fraction, seed=args.seed,
        bandwidth=args.dose_bandwidth,
    )  # fmt: skip

    record = results_record(
        report, in_scores, ood_scores, checkpoint=args.checkpoint, in_spec=args.in_dist,
        ood_specs=args.ood, image_size=args.image_size, pad=args.pad, limit=args.limit,
    )  # fmt: skip
    # per-image scores of every set; the in-distribution images say which part they were in
    labels = {IN_DIST: in_data.labels, **{n: d.labels for n, d in zip(names, ood_data)}}
    rows = detection_rows(report, in_scores, ood_scores, labels)
    title = f"{args.checkpoint}: scores of held-out images and of other sets"
    try:
        written = write_detection(out, record, rows, report, dataset_name(args.in_dist), title)
    except OSError as e:
        raise UsageError(f"cannot write in {out}: {first_line(e)}; choose another --out") from e
    print(_table(report.records))
    info(f"wrote {written[0]}, {written[1]} and {written[2]}")
    return 0
