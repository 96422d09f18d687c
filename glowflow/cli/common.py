"""What the commands share: the user-mistake type, value parsers, messages and result files."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

from glowflow.data.fitting import load_fitting
from glowflow.data.imagedata import ImageData
from glowflow.errors import GlowflowError, first_line
from glowflow.files import atomic_write_json
from glowflow.nn.model import GlowFlow
from glowflow.viz import save_grid


class UsageError(GlowflowError):
    """A mistake in the command line."""


def info(message: str) -> None:
    """A one-line message on stderr; under torchrun only rank 0 speaks."""
    if os.environ.get("RANK", "0") == "0":
        print(f"glowflow: {message}", file=sys.stderr, flush=True)


def at_least(lowest: int):
    """An argparse type: a whole number no smaller than ``lowest``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = lowest - 1
        if value < lowest:
            what = "a positive whole number" if lowest == 1 else f"a whole number >= {lowest}"
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
        return value

    return parse


positive_int = at_least(1)


def positive_float(text: str) -> float:
    """An argparse type: a finite number greater than 0."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (0 < value < float("inf")):
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number")
    return value


def int_list(text: str) -> list[int]:
    """``"0-3,7"`` -> ``[0, 1, 2, 3, 7]``."""
    out: list[int] = []
    try:
        for part in text.split(","):
            lo, sep, hi = part.strip().partition("-")
            out.extend(range(int(lo), int(hi) + 1) if sep and lo else [int(part)])
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list like 0-63 or 1,5,9") from None
    return out


def float_list(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list like -1,-0.5,0,0.5,1") from None


def index_pair(text: str) -> tuple[int, int]:
    values = int_list(text)
    if len(values) != 2:
        raise argparse.ArgumentTypeError(f"{text!r} is not a pair of indices like 3,17")
    return values[0], values[1]


def add_data_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--image-size", type=int, help="resize the data set's images")
    p.add_argument(
        "--pad",
        type=int,
        help="zero-pad the data set's images (default: to the "
        "model's size where they are smaller by an even number of pixels)",
    )
    p.add_argument("--device", default="auto")


def load_data_for(args: argparse.Namespace, model: GlowFlow, limit: int | None = None) -> ImageData:
    """``--dataset`` with the data options, checked to fit the model."""
    return load_fitting(args.dataset, model, args.image_size, args.pad, limit)


def read_text(path: str, option: str) -> str:
    """The UTF-8 text of the file an option names."""
    try:
        return Path(path).expanduser().read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"cannot read {option} {path}: {first_line(e)}; pass a text file") from e


def check_indices(indices: list[int], n: int, what: str) -> None:
    bad = [i for i in indices if not 0 <= i < n]
    if bad:
        raise UsageError(f"{what} index {bad[0]} is out of range; the data set has 0..{n - 1}")


def write_result(out: str, images: torch.Tensor, nrow: int, record: dict) -> None:
    """The PNG grid and, beside it, the JSON of the numbers behind it."""
    png = Path(out)
    try:
        save_grid(images, png, nrow)
        atomic_write_json(png.with_suffix(".json"), record, indent=2)
    except OSError as e:
        raise UsageError(f"cannot write {png}: {first_line(e)}; choose another --out") from e
    info(f"wrote {png} and {png.with_suffix('.json')}")
