"""``glowflow prepare``: decode a data set once into a store that every run reads from disk."""

from __future__ import annotations

import argparse

from tqdm.auto import tqdm

from glowflow.cli.common import info, positive_int
from glowflow.config import ON_BAD_IMAGE
from glowflow.data.datasets import describe_specs
from glowflow.data.prepare import prepare_store


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "prepare",
        help="convert a data set once into a store that runs read as store:DIR",
        description="Decode, resize and pad a data set once and write it to OUT_DIR as NumPy "
        ".npy shards with a manifest (counts, SHA-256 sums, the source and its options). "
        "Training and evaluation then read --dataset store:OUT_DIR from disk without loading "
        "it: start-up time and memory do not grow with the number of images, and processes "
        "share its pages. An interrupted prepare resumes when run again; a folder that holds "
        "another store, or that another prepare is writing, is refused. " + describe_specs(),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("spec", metavar="SPEC", help="the data set to convert")
    p.add_argument("out", metavar="OUT_DIR", help="the folder of the store")
    p.add_argument("--image-size", type=positive_int, help="resize every image to NxN")
    p.add_argument("--pad", type=int, help="zero-pad every image (MNIST kinds: 2)")
    p.add_argument("--shard-size", type=positive_int,
                   help="images per shard (default: about 256 MiB of images a shard)")  # fmt: skip
    p.add_argument("--on-bad-image", choices=ON_BAD_IMAGE, default="skip",
                   help="what to do with an image file that cannot be decoded")  # fmt: skip
    p.add_argument("--workers", type=positive_int,
                   help="processes decoding image files (default: one per CPU)")  # fmt: skip
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    bar = None

    def progress(done: int, total: int) -> None:
        nonlocal bar
        if args.no_progress:
            return
        if bar is None:
            bar = tqdm(total=total, initial=done, desc="prepare", unit="img", dynamic_ncols=True)
        bar.update(done - bar.n)

    try:
        manifest = prepare_store(
            args.spec, args.out, image_size=args.image_size, pad=args.pad,
            on_bad_image=args.on_bad_image, shard_size=args.shard_size, workers=args.workers,
            progress=progress,
        )  # fmt: skip
    finally:
        if bar is not None:
            bar.close()
    c, h, w = manifest["image_shape"]
    skipped = f", {manifest['skipped']} unreadable skipped" if manifest["skipped"] else ""
    info(
        f"store {args.out}: {manifest['count']} images {c}x{h}x{w} in "
        f"{len(manifest['shards'])} shards{skipped}; train with --dataset store:{args.out}"
    )
    return 0
