"""What the explorer holds and draws: an ``Entry`` per image (its latent, bits/dim and how
exactly it reconstructs), a ``Picture`` per decoded latent, and how images become entries."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any, Sequence

import torch
from PIL import Image

from glowflow.explorer.checks import ExplorerError
from glowflow.explorer.faces import Framing
from glowflow.explorer.runtime import Runtime
from glowflow.hub.gallery import Gallery
from glowflow.latent.latents import reconstruction_errors


@dataclass
class Entry:
    """An image the explorer holds: uint8 ``image`` ``(C, H, W)`` as the model sees it, its
    flat latent ``eps`` ``(D,)``, its class label (class-conditional models) and facts."""

    id: str
    name: str
    image: torch.Tensor
    eps: torch.Tensor
    label: int | None
    bpd: float
    reconstruction_error: int
    framing: Framing
    source_size: tuple[int, int]
    gallery_index: int | None = None

    def to_dict(self) -> dict[str, Any]:
        c, h, w = self.image.shape
        record = {
            "id": self.id, "name": self.name, "bpd": round(self.bpd, 4), "width": int(w),
            "height": int(h), "reconstruction_error": self.reconstruction_error,
            "framing": self.framing.to_dict(), "source_size": list(self.source_size),
        }  # fmt: skip
        if self.label is not None:
            record["label"] = self.label
        return record


@dataclass(frozen=True)
class Picture:
    """A decoded picture: uint8 ``image`` ``(C, H, W)``, and whether its latent overflowed on
    the way back to pixels (those pixels come out black or saturated)."""

    image: torch.Tensor
    overflow: bool = False

    @property
    def warning(self) -> str | None:
        if not self.overflow:
            return None
        return ("some pixels overflowed (black or saturated): the latent lies far outside "
                "what the model learned; try smaller amounts or a lower temperature")  # fmt: skip


def png_bytes(image: torch.Tensor) -> bytes:
    """A uint8 ``(C, H, W)`` image as PNG file bytes."""
    array = image.permute(1, 2, 0).cpu().numpy()
    im = Image.fromarray(array[..., 0] if array.shape[2] == 1 else array)
    out = io.BytesIO()
    im.save(out, format="PNG")
    return out.getvalue()


@torch.no_grad()
def encode_entries(
    runtime: Runtime, images: torch.Tensor, labels: torch.Tensor | None, ids: Sequence[str],
    names: Sequence[str], framings: Sequence[Framing], sizes: Sequence[tuple[int, int]],
) -> list[Entry]:  # fmt: skip
    """An entry per uint8 image ``(N, C, H, W)``: its latent, bits/dim and reconstruction error.
    A class-conditional model's images without ``labels`` take their likeliest class."""
    if runtime.config.num_classes is not None and labels is None:
        labels = runtime.guess_labels(images)
    eps = runtime.encode(images, labels)
    back, _ = runtime.decode(eps, labels)
    errors = reconstruction_errors(images, back, runtime.config.n_bits).tolist()
    bpd = runtime.bits_per_dim(images).tolist()
    return [
        Entry(ids[i], names[i], images[i], eps[i], None if labels is None else int(labels[i]),
              bpd[i], int(errors[i]), framings[i], sizes[i])
        for i in range(len(images))
    ]  # fmt: skip


def gallery_entries(runtime: Runtime, gallery: Gallery, batch: int = 32) -> list[Entry]:
    """The gallery's images as entries ``g0``, ``g1``, ..., encoded ``batch`` at a time.

    Raises:
        ExplorerError: for a gallery whose images are not of the model's shape.
    """
    shape, want = tuple(gallery.images.shape[1:]), tuple(runtime.config.image_shape)
    if shape != want:
        raise ExplorerError(
            f"the gallery {gallery.spec} holds images {shape}, the model takes "
            f"{want}; give a data set of the model's size"
        )
    _, h, w = want
    whole = Framing("as given", (0.0, 0.0, float(w), float(h)), None)
    conditional = runtime.config.num_classes is not None and gallery.labels is not None
    n, entries = len(gallery.images), []
    for s in range(0, n, batch):
        part = slice(s, min(n, s + batch))
        images = gallery.images[part]
        labels = gallery.labels[part] if conditional else None
        ids = [f"g{i}" for i in range(part.start, part.stop)]
        found = encode_entries(runtime, images, labels, ids, gallery.names[part],
                               [whole] * len(images), [(w, h)] * len(images))  # fmt: skip
        for i, e in enumerate(found):
            e.gallery_index = part.start + i
        entries += found
    return entries
