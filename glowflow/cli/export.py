"""``glowflow export``: a run folder -> a pretrained folder (the Hub's layout, a model card)."""

from __future__ import annotations

import argparse
from pathlib import Path

from glowflow.cli.common import info, load_fitting
from glowflow.data.evaluate import evaluate_bpd
from glowflow.hub.checkpoint import model_from_checkpoint
from glowflow.hub.names import push_to_hub
from glowflow.hub.pretrained import check_folder
from glowflow.latent.attributes import all_directions
from glowflow.progress import progress_bar
from glowflow.train.export import export_run
from glowflow.train.rundir import RunDir


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="turn a run folder into a pretrained folder",
        description="Write RUN_DIR's EMA weights as OUT_DIR/model.safetensors with config.json "
        "and a model card (README.md), the layout the Hugging Face Hub uses. Optionally measure "
        "bits/dim on held-out images for the card, ship attribute directions, and push.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="a folder written by glowflow train")
    p.add_argument("out_dir", metavar="OUT_DIR", help="the pretrained folder to write")
    p.add_argument(
        "--dtype",
        choices=("float32", "float16"),
        default="float32",
        help="storage of the weights (float16: half the size)",
    )
    p.add_argument(
        "--heldout",
        metavar="SPEC",
        help="images the model never saw: their bits/dim goes into the card",
    )
    p.add_argument(
        "--attributes",
        metavar="SPEC",
        help="a data set with binary attributes: ship the direction of each",
    )
    p.add_argument("--name", help="the model's name in the card")
    p.add_argument("--data-description", help="what it was trained on, for the card "
                   "(default: the run's --dataset)")  # fmt: skip
    p.add_argument("--heldout-description", help="what the held-out images are, for the card "
                   "(default: the --heldout spec)")  # fmt: skip
    p.add_argument("--data-license", help="the licence of the training data, for the card")
    p.add_argument("--license", default="mit", help="the licence of the weights, for the card")
    p.add_argument("--notes", help="a paragraph for the card")
    p.add_argument("--push", metavar="USER/REPO", help="then upload to this Hub repository")


def run(args: argparse.Namespace) -> int:
    check_folder(Path(args.out_dir).expanduser())  # before the long work, not after it
    model, _ = model_from_checkpoint(args.run_dir, "cpu", ema=True)
    if args.dtype == "float16":  # measure what is shipped: the weights as float16 stores them
        model = model.half().float()
    train = RunDir(args.run_dir).read_config()["train"]
    data_kw = dict(image_size=train.get("image_size"), pad=train.get("pad"))
    card = {"license": args.license}
    for key in ("name", "data_license", "notes"):
        if getattr(args, key):
            card[key] = getattr(args, key)
    if args.data_description:
        card["dataset"] = args.data_description
    if args.push:
        card["repo_id"] = args.push
    if args.heldout:
        heldout = load_fitting(args.heldout, model, **data_kw)
        bpd = evaluate_bpd(model, heldout.images, heldout.labels, progress=progress_bar("held-out"))
        described = args.heldout_description or args.heldout
        card.update(heldout=described, heldout_images=len(heldout), heldout_bpd=round(bpd, 4))
        info(f"{bpd:.4f} bits/dim on the {len(heldout)} held-out images of {args.heldout}")
    attributes = None
    if args.attributes:
        data = load_fitting(args.attributes, model, **data_kw)
        attributes = all_directions(model, data, progress=progress_bar("directions"))
        info(f"{len(attributes['names'])} attribute directions from {args.attributes}")
    out = export_run(args.run_dir, args.out_dir, dtype=args.dtype, card=card, attributes=attributes)
    info(f"wrote {out}")
    if args.push:
        info(f"pushed to {push_to_hub(out, args.push)}")
    return 0
