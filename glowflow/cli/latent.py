"""``glowflow sample``, ``interpolate`` and ``manipulate``: the paper's latent-space figures."""

from __future__ import annotations

import argparse

import torch

from glowflow.cli.common import (
    UsageError,
    add_data_options,
    at_least,
    float_list,
    index_pair,
    int_list,
    load_data_for,
    positive_int,
    write_result,
)  # fmt: skip
from glowflow.cli.models import CHECKPOINT_HELP, gather_images
from glowflow.distributed import resolve_device
from glowflow.hub.load import load_model
from glowflow.latent.directions import attribute_choices, choose_direction
from glowflow.latent.latents import (
    interpolate_images,
    manipulate_images,
    reconstruction_errors,
    row_labels,
    sample_rows,
)
from glowflow.progress import progress_bar

IMAGES_HELP = (
    "indices into --dataset (e.g. 0,4,8 or 0-3) or image files of any size (e.g. face.png), "
    "which need no --dataset"
)


def add_parsers(sub: argparse._SubParsersAction) -> None:
    fmt = argparse.ArgumentDefaultsHelpFormatter
    p = sub.add_parser("sample", help="a PNG grid of samples", formatter_class=fmt)
    p.add_argument("--checkpoint", required=True, help=CHECKPOINT_HELP)
    p.add_argument("--n", type=positive_int, default=64, help="samples, seeds 0..n-1 (or --seeds)")
    p.add_argument("--seeds", type=int_list, help="e.g. 0-63 or 1,5,9: one generator each")
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--temperatures", type=float_list,
                   help="one row per temperature, same seeds, e.g. 0,0.5,0.7,1")  # fmt: skip
    p.add_argument("--label", help="class-conditional models: a class index, name, or 'all'")
    p.add_argument("--nrow", type=positive_int, help="images per row of the grid")
    p.add_argument("--out", default="samples.png", help="PNG path (a .json lands beside it)")
    p.add_argument("--device", default="auto")

    p = sub.add_parser("interpolate", help="latent interpolation between real images",
                       formatter_class=fmt)  # fmt: skip
    p.add_argument("--checkpoint", required=True, help=CHECKPOINT_HELP)
    p.add_argument("--dataset", metavar="SPEC", help="where indices point into")
    p.add_argument("--images", nargs="+", help=IMAGES_HELP + "; taken two by two")
    p.add_argument("--pairs", nargs="+", type=index_pair, help="index pairs, e.g. 3,17 5,9")
    p.add_argument("--steps", type=at_least(2), default=8,
                   help="images from one end to the other")  # fmt: skip
    p.add_argument("--spherical", action="store_true", help="slerp instead of a straight line")
    p.add_argument("--out", default="interpolation.png", help="PNG path (a .json beside it)")
    add_data_options(p)

    p = sub.add_parser("manipulate", help="move real images along an attribute direction",
                       formatter_class=fmt)  # fmt: skip
    p.add_argument("--checkpoint", required=True, help=CHECKPOINT_HELP)
    p.add_argument("--dataset", metavar="SPEC",
                   help="a labelled data set (else the model's own directions)")  # fmt: skip
    p.add_argument("--attribute", help="e.g. Smiling, or class:3-vs-8 / class:3 for labels")
    p.add_argument("--list-attributes", action="store_true", help="list the choices and exit")
    p.add_argument("--images", nargs="+", default=["0-3"], help=IMAGES_HELP)
    p.add_argument("--alphas", type=float_list, default=[-1.0, -0.5, 0.0, 0.5, 1.0])
    p.add_argument("--max-images", type=positive_int, help="use at most N images for the direction")
    p.add_argument("--out", default="manipulation.png", help="PNG path (a .json beside it)")
    add_data_options(p)


def sample(args: argparse.Namespace) -> int:
    loaded = load_model(args.checkpoint, resolve_device(args.device))
    model = loaded.model
    seeds = args.seeds if args.seeds is not None else list(range(args.n))
    temps = args.temperatures or [args.temperature]
    labels_per_row = row_labels(model, args.label, loaded.class_names)
    rows = sample_rows(model, seeds, temps, labels_per_row)
    one_row_each = len(rows) > 1
    nrow = args.nrow or (len(seeds) if one_row_each else max(1, int(len(seeds) ** 0.5)))
    record = {
        "checkpoint": str(args.checkpoint), "seeds": seeds, "temperatures": temps,
        "labels": labels_per_row, "rows": "temperature x label" if one_row_each else "grid",
    }  # fmt: skip
    write_result(args.out, torch.cat(rows), nrow, record)
    return 0


def interpolate(args: argparse.Namespace) -> int:
    model = load_model(args.checkpoint, resolve_device(args.device)).model
    if bool(args.images) == bool(args.pairs):
        raise UsageError("give --images (indices or files, taken two by two) or --pairs")
    tokens = args.images or [f"{a},{b}" for a, b in args.pairs]
    data = load_data_for(args, model) if args.dataset else None
    images, labels, names = gather_images(model, tokens, data)
    if len(images) % 2:
        raise UsageError("give an even number of --images: they are taken two by two")
    first, second = images[0::2], images[1::2]
    ends = (labels[0::2], labels[1::2]) if labels is not None else None
    rows = interpolate_images(model, first, second, args.steps, args.spherical, ends)
    grid = torch.cat([first[:, None], rows, second[:, None]], dim=1)  # real images at the ends
    record = {
        "checkpoint": str(args.checkpoint), "dataset": args.dataset,
        "pairs": [list(p) for p in zip(names[0::2], names[1::2])], "steps": args.steps,
        "spherical": args.spherical,
        "columns": "real, then steps decoded from t=0 to t=1, then real",
    }  # fmt: skip
    write_result(args.out, grid.flatten(0, 1), args.steps + 2, record)
    return 0


#: How a manipulation's JSON names where its direction came from, by its source.
DIRECTION_FROM = {
    "shipped": "shipped with the model",
    "cached": "cached",
    "computed": "computed over --dataset",
}


def manipulate(args: argparse.Namespace) -> int:
    loaded = load_model(args.checkpoint, resolve_device(args.device))
    model = loaded.model
    data = load_data_for(args, model) if args.dataset else None
    shipped = loaded.shipped_directions()
    if args.list_attributes:
        print(attribute_choices(shipped, data))
        return 0
    if not args.attribute:
        raise UsageError("give --attribute (see --list-attributes for the choices)")
    chosen = choose_direction(
        loaded, args.attribute, data, shipped, max_images=args.max_images,
        data_options={"image_size": args.image_size, "pad": args.pad},
        progress=progress_bar("encoding"),
    )  # fmt: skip
    images, labels, names = gather_images(model, args.images, data)
    rows = manipulate_images(model, images, chosen.direction, args.alphas, labels)
    record = {
        "checkpoint": str(args.checkpoint), "dataset": args.dataset,
        "attribute": args.attribute, "images": names, "alphas": args.alphas,
        "direction": chosen.info, "direction_from": DIRECTION_FROM[chosen.source],
    }  # fmt: skip
    if 0.0 in args.alphas:
        recon = rows[:, args.alphas.index(0.0)]
        errors = reconstruction_errors(images, recon, model.config.n_bits)
        record["reconstruction_max_grey_level_error"] = errors.max().item()
    write_result(args.out, rows.flatten(0, 1), len(args.alphas), record)
    return 0
