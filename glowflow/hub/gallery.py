"""A pretrained model's gallery: a few held-out images shipped with it to explore it with.

``gallery.npz`` in a pretrained folder is an ``npz:`` data set (``x`` ``[N, H, W, C]`` uint8,
plus ``names``, one per image, and ``note``, the images' terms of use), so every command reads it
with ``--dataset npz:FOLDER/gallery.npz``. It is read with ``allow_pickle=False``: nothing in
it can run.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from glowflow.data.datasets import load_dataset
from glowflow.data.imagedata import ImageData
from glowflow.errors import GlowflowError, first_line
from glowflow.files import atomic_write_bytes
from glowflow.hub.pretrained import GALLERY_FILE, PretrainedError


@dataclass
class Gallery:
    """uint8 ``images`` ``(N, C, H, W)``, a name for each, the terms they come under, and the
    ``npz:`` spec that reads the same images (labels too, where they have them)."""

    images: torch.Tensor
    names: list[str]
    note: str | None
    spec: str
    labels: torch.Tensor | None = None


def save_gallery(
    directory: str | Path, data: ImageData, names: Sequence[str], note: str | None = None
) -> Path:
    """Write ``data`` (its labels and attributes too) as ``directory/gallery.npz``."""
    if len(names) != len(data):
        raise PretrainedError(f"the gallery has {len(data)} images but {len(names)} names")
    arrays = {"x": data.images.permute(0, 2, 3, 1).numpy(), "names": np.array(list(names))}
    if data.labels is not None:
        arrays["y"] = data.labels.numpy()
        if data.class_names is not None:
            arrays["class_names"] = np.array(data.class_names)
    if data.attrs is not None:
        arrays["attrs"] = data.attrs.numpy().astype(np.int8)
        arrays["attr_names"] = np.array(data.attr_names)
    if note:
        arrays["note"] = np.array(note)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    path = Path(directory).expanduser() / GALLERY_FILE
    try:
        atomic_write_bytes(path, buffer.getvalue())
    except OSError as e:
        raise PretrainedError(f"cannot write {path}: {first_line(e)}; free space") from e
    return path


def load_gallery(directory: str | Path) -> Gallery | None:
    """The gallery shipped in a pretrained folder, or None where it has none."""
    path = Path(directory) / GALLERY_FILE
    if not path.is_file():
        return None
    spec = f"npz:{path}"
    try:
        data = load_dataset(spec)
        with np.load(path, allow_pickle=False) as z:
            names = [str(n) for n in z["names"]] if "names" in z else []
            note = str(z["note"]) if "note" in z else None
    except (GlowflowError, OSError, ValueError, KeyError) as e:
        raise PretrainedError(f"{path} is not a gallery file ({first_line(e)}); remove it") from e
    if len(names) != len(data):
        names = [f"image {i}" for i in range(len(data))]
    return Gallery(data.images, names, note, spec, data.labels)
