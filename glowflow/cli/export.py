"""``glowflow export``: a run folder -> a pretrained folder (the Hub's layout, a model card);
any model -> ONNX graphs beside its pretrained files."""

from __future__ import annotations

import argparse
from pathlib import Path

from glowflow.cli.common import info, positive_int, read_text
from glowflow.errors import GlowflowError
from glowflow.files import atomic_write_bytes
from glowflow.hub.checkpoint import is_checkpoint
from glowflow.hub.hubname import is_hub_name
from glowflow.hub.names import push_to_hub
from glowflow.hub.pretrained import HUB_FILES, check_folder
from glowflow.progress import progress_bar
from glowflow.train.export import export_with_figures


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="turn a run folder into a pretrained folder",
        description="Write a run's EMA weights as OUT_DIR/model.safetensors with config.json "
        "and a model card (README.md), the layout the Hugging Face Hub uses. Optionally measure "
        "bits/dim on held-out images for the card, ship attribute directions, and push. With "
        "--onnx, MODEL may also be a bundled model's name, a pretrained folder or hf:user/repo: "
        "its pretrained files are copied into OUT_DIR and the ONNX graphs written beside them.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("model", metavar="MODEL", help="a folder written by glowflow train (or, "
                   "with --onnx, any model --checkpoint takes)")  # fmt: skip
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
    p.add_argument("--test", metavar="SPEC", help="a test set, reported on the card only "
                   "(one dequantisation draw an image)")  # fmt: skip
    p.add_argument("--test-description", help="what the test images are, for the card")
    p.add_argument(
        "--test-samples",
        type=positive_int,
        default=1,
        metavar="K",
        help="K > 1: give the test set's importance-weighted figure over K draws too",
    )
    p.add_argument("--comparison", metavar="FILE", help="a Markdown file: the card's section "
                   "that sets the model beside published results")  # fmt: skip
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
    p.add_argument("--onnx", action="store_true",
                   help="also write encoder.onnx, decoder.onnx and the attribute directions "
                        "as directions.npz into OUT_DIR (the glowflow[onnx] extra)")  # fmt: skip
    p.set_defaults(run_only_defaults={k: p.get_default(k) for k in RUN_ONLY})


#: The options that describe a run's export: a pretrained model has its card and weights.
RUN_ONLY = ("dtype", "heldout", "test", "test_description", "test_samples", "comparison",
            "attributes", "name", "data_description", "heldout_description", "data_license",
            "license", "notes", "push")  # fmt: skip


def _export_model_onnx(args: argparse.Namespace) -> int:
    """A model that is not a run: its pretrained files into OUT_DIR, the graphs beside them."""
    given = [k for k, default in args.run_only_defaults.items() if getattr(args, k) != default]
    if not args.onnx or given:
        what = f"--{given[0].replace('_', '-')}" if given else "a pretrained folder"
        raise GlowflowError(
            f"{args.model} is not a run folder (with checkpoint.pt), and {what} is written from "
            f"a run; pass a folder of glowflow train, or export a model to ONNX with --onnx alone"
        )
    from glowflow.hub.load import load_model
    from glowflow.hub.onnx_export import DECODER_FILE, ENCODER_FILE, check_onnx_extra, export_onnx

    check_onnx_extra()
    loaded = load_model(args.model)
    out = Path(args.out_dir).expanduser()
    source = loaded.pretrained_dir
    if source is not None and (not out.exists() or out.resolve() != source.resolve()):
        check_folder(out)
        out.mkdir(parents=True, exist_ok=True)
        for name in (ENCODER_FILE, DECODER_FILE, *HUB_FILES):  # nothing of another model stays
            (out / name).unlink(missing_ok=True)
        for name in HUB_FILES:
            if (source / name).is_file():
                atomic_write_bytes(out / name, (source / name).read_bytes())
    graphs = export_onnx(loaded, out)
    info(f"wrote {', '.join(path.name for path in graphs.values())} into {out}")
    return 0


def run(args: argparse.Namespace) -> int:
    if is_hub_name(args.model) or not is_checkpoint(Path(args.model).expanduser()):
        return _export_model_onnx(args)
    if args.onnx:  # before the long work, not after it
        from glowflow.hub.onnx_export import check_onnx_extra

        check_onnx_extra()
    card = {"license": args.license}
    for key in ("name", "data_license", "notes"):
        if getattr(args, key):
            card[key] = getattr(args, key)
    if args.data_description:
        card["dataset"] = args.data_description
    if args.push:
        card["repo_id"] = args.push
    if args.comparison:
        card["comparison"] = read_text(args.comparison, "--comparison").strip()
    out, measured = export_with_figures(
        args.model, args.out_dir, dtype=args.dtype, card=card, heldout=args.heldout,
        heldout_description=args.heldout_description, test=args.test,
        test_description=args.test_description, test_samples=args.test_samples,
        attributes_from=args.attributes, progress=progress_bar,
    )  # fmt: skip
    for key, spec in (("heldout", args.heldout), ("test", args.test)):
        if spec:
            info(f"{measured[key + '_bpd']:.4f} bits/dim over {measured['dims']} dimensions on "
                 f"the {measured[key + '_images']} images of {spec}")  # fmt: skip
    if "test_bpd_iw" in measured:
        info(f"{measured['test_bpd_iw']:.4f} importance-weighted over {args.test_samples} draws")
    if args.attributes:
        info(f"{len(measured['attributes'])} attribute directions from {args.attributes}")
    if args.onnx:  # from the folder just written: the weights as they were exported
        from glowflow.hub.load import load_model
        from glowflow.hub.onnx_export import export_onnx

        graphs = export_onnx(load_model(out), out)
        info(f"wrote {', '.join(path.name for path in graphs.values())}")
    info(f"wrote {out}")
    if args.push:
        info(f"pushed to {push_to_hub(out, args.push)}")
    return 0
