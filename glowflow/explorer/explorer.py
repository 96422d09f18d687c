"""The model side of the latent explorer (``glowflow serve``): images held by id, edits, mixes,
samples, and what each picture's bits/dim is.

Everything here is plain Python on tensors, usable without the web server. An :class:`Explorer`
keeps the latent of every image it was given (the gallery, uploads), so an edit is one decode:
``x = decode(eps + sum_k amount_k * direction_k)``. The browser names images by id and sends
amounts as numbers; a latent never leaves the server. Model calls hold one lock, so the
explorer may be called from several threads at once.
"""

from __future__ import annotations

import hashlib
import io
import math
import shlex
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from PIL import Image

from glowflow.errors import GlowflowError
from glowflow.explorer.faces import Framing, decode_image, frame_image
from glowflow.hub.gallery import Gallery
from glowflow.latent.latents import decode_latents, encode_images, interpolate_at, seed_latents
from glowflow.nn.model import GlowFlow
from glowflow.nn.objective import postprocess, preprocess

TEMPERATURE_RANGE = (0.0, 1.5)
# In units of the direction (the difference of the two means), as ``manipulate --alphas``. On
# the bundled celeba64 model, single moves within +-2 decode to finite pixels; beyond +-3, or
# several large moves at once, some faces overflow (then the picture says so).
AMOUNT_RANGE = (-2.0, 2.0)
SEED_RANGE = (0, 2**31 - 1)
PATHS = ("linear", "spherical")
LEVEL_CHOICES = "abm"  # a level's latent from image a, from image b, or mixed at t


class ExplorerError(GlowflowError, ValueError):
    """A request the explorer cannot serve; the message says which value and what is allowed."""


class UnknownImage(ExplorerError):
    """An image id the explorer does not hold (never given, or dropped from its cache)."""

    def __init__(self, image_id: str) -> None:
        super().__init__(
            f"image {image_id!r} is not held by the server (it may have been dropped to make "
            f"room): upload the file again"
        )
        self.image_id = image_id


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


def check_range(name: str, value: float, bounds: tuple[float, float]) -> float:
    """``value`` if it is a finite number within ``bounds``, else an :class:`ExplorerError`."""
    lo, hi = bounds
    if not math.isfinite(value) or not lo <= value <= hi:
        raise ExplorerError(f"{name} must lie in [{lo}, {hi}], got {value}")
    return value


class Explorer:
    """A model, its attribute directions and the images it holds.

    The latents it holds (the gallery's, each upload's) are encodings by the model's weights
    as they were when each image came in: give it a model nobody trains meanwhile (a
    ``copy.deepcopy`` of one that is still training), or its images go stale.

    Args:
        model: the Glow, in eval mode.
        directions: ``{"names": [A], "directions": (A, D)}`` (as pretrained folders ship
            them), or None.
        gallery: images to offer (held for as long as the explorer lives), or None.
        checkpoint: how a ``glowflow`` command names the model (for the command lines shown).
        gallery_words: the options by which a command names the gallery's data set (e.g.
            ``["--dataset", "npz:.../gallery.npz"]``; the gallery is its first images), or None.
        direction_words: the options a command needs to get the same directions (``[]`` for
            directions the model ships; ``--dataset`` options for computed ones).
        faces: frame uploads around a detected face (a face model), else centre-crop them.
        capacity: uploads held at once; the least recently used one is dropped beyond it.
        name: the model's name to show.
    """

    def __init__(
        self,
        model: GlowFlow,
        directions: Mapping[str, Any] | None = None,
        gallery: Gallery | None = None,
        checkpoint: str = "MODEL",
        gallery_words: list[str] | None = None,
        direction_words: Sequence[str] = (),
        class_names: list[str] | None = None,
        faces: bool = False,
        capacity: int = 256,
        name: str | None = None,
    ) -> None:
        self.model = model.eval()
        p = next(model.parameters())
        self.device, self.dtype = p.device, p.dtype
        self.config = model.config
        self.checkpoint = checkpoint
        self.gallery_words = gallery_words
        self.direction_words = list(direction_words)
        self.class_names = class_names
        self.name = name or checkpoint
        self.faces = faces
        self.capacity = capacity
        self.lock = threading.RLock()
        names = list(directions["names"]) if directions else []
        self.attributes = names
        self._directions = (
            directions["directions"].to(self.device, self.dtype) if directions else None
        )
        self._uploads: OrderedDict[str, Entry] = OrderedDict()
        self._renders: OrderedDict[tuple, Picture] = OrderedDict()
        self.gallery_note = gallery.note if gallery else None
        self.gallery: list[Entry] = []
        if gallery is not None:
            self._hold_gallery(gallery)

    # ------------------------------------------------------------------------- model calls
    @torch.no_grad()
    def _picture(self, eps: torch.Tensor, label: int | None) -> Picture:
        """One latent ``(D,)`` decoded; an overflow is noted on the picture, not warned about."""
        y = None if label is None else torch.tensor([label], device=self.device)
        x = self.model.decode(eps[None].to(self.device, self.dtype), y)
        overflow = not bool(torch.isfinite(x).all())
        return Picture(postprocess(x, self.config.n_bits)[0].cpu(), overflow)

    @torch.no_grad()
    def bits_per_dim(self, images: torch.Tensor) -> torch.Tensor:
        """Bits/dim ``(N,)`` of uint8 images, each at the centre of its pixel bins (a
        class-conditional model's marginal over classes)."""
        x = preprocess(images, self.config.n_bits, dequantize=False, dtype=self.dtype)
        return self.model.bits_per_dim(x.to(self.device)).double().cpu()

    def picture_bpd(self, image: torch.Tensor) -> float:
        """Bits/dim of one uint8 picture ``(C, H, W)``, to 4 decimals."""
        with self.lock:
            return round(float(self.bits_per_dim(image[None])[0]), 4)

    @torch.no_grad()
    def _guess_labels(self, images: torch.Tensor) -> torch.Tensor | None:
        """The most likely class of each image, ``argmax_y p(x | y)``, or None (unconditional)."""
        k = self.config.num_classes
        if k is None:
            return None
        x = preprocess(images, self.config.n_bits, dequantize=False, dtype=self.dtype)
        x = x.to(self.device)
        logps = [self.model.log_prob(x, torch.full((len(x),), c, device=self.device))
                 for c in range(k)]  # fmt: skip
        return torch.stack(logps, 1).argmax(1).cpu()

    @torch.no_grad()
    def _entries(
        self, images: torch.Tensor, labels: torch.Tensor | None, ids: Sequence[str],
        names: Sequence[str], framings: Sequence[Framing], sizes: Sequence[tuple[int, int]],
    ) -> list[Entry]:  # fmt: skip
        if self.config.num_classes is not None and labels is None:
            labels = self._guess_labels(images)
        eps = encode_images(self.model, images, labels)
        back = decode_latents(self.model, eps, labels)
        n_bits = self.config.n_bits  # compare with the input as the model sees it
        seen = postprocess(preprocess(images, n_bits, dequantize=False), n_bits)
        errors = (back.int() - seen.int()).flatten(1).abs().amax(1).tolist()
        bpd = self.bits_per_dim(images).tolist()
        return [
            Entry(ids[i], names[i], images[i], eps[i], None if labels is None else int(labels[i]),
                  bpd[i], int(errors[i]), framings[i], sizes[i])
            for i in range(len(images))
        ]  # fmt: skip

    def _hold_gallery(self, gallery: Gallery, batch: int = 32) -> None:
        n = len(gallery.images)
        shape = tuple(gallery.images.shape[1:])
        if shape != tuple(self.config.image_shape):
            raise ExplorerError(
                f"the gallery {gallery.spec} holds images {shape}, the model takes "
                f"{tuple(self.config.image_shape)}; give a data set of the model's size"
            )
        _, h, w = self.config.image_shape
        whole = Framing("as given", (0.0, 0.0, float(w), float(h)), None)
        conditional = self.config.num_classes is not None and gallery.labels is not None
        for s in range(0, n, batch):
            part = slice(s, min(n, s + batch))
            images = gallery.images[part]
            labels = gallery.labels[part] if conditional else None
            ids = [f"g{i}" for i in range(part.start, part.stop)]
            entries = self._entries(images, labels, ids, gallery.names[part],
                                    [whole] * len(images), [(w, h)] * len(images))  # fmt: skip
            for i, e in enumerate(entries):
                e.gallery_index = part.start + i
            self.gallery += entries

    # ------------------------------------------------------------------------- images
    def model_info(self) -> dict[str, Any]:
        """What the page needs to know of the model."""
        k = self.config.num_classes
        return {
            "name": self.name, "checkpoint": self.checkpoint,
            "image_shape": list(self.config.image_shape), "n_bits": self.config.n_bits,
            "levels": self.config.levels, "num_classes": k,
            "class_names": self.class_names if k is not None else None,
            "attributes": self.attributes,
            "gallery": [{"id": e.id, "name": e.name} for e in self.gallery],
            "gallery_note": self.gallery_note, "face_detector": self.faces,
            "limits": {"temperature": list(TEMPERATURE_RANGE), "amount": list(AMOUNT_RANGE),
                       "seed": list(SEED_RANGE)},
        }  # fmt: skip

    def add_image(self, data: bytes) -> Entry:
        """Decode an uploaded image file, frame it as the model's images are, encode it and hold
        it under the first 16 hex digits of the file's SHA-256.

        Raises:
            glowflow.explorer.faces.ImageInputError: for bytes that are not an image.
        """
        image_id = hashlib.sha256(data).hexdigest()[:16]
        with self.lock:
            if image_id in self._uploads:
                self._uploads.move_to_end(image_id)
                return self._uploads[image_id]
        c, h, w = self.config.image_shape
        im = decode_image(data, c)
        framed, framing = frame_image(im, (w, h), self.faces)
        array = torch.from_numpy(np.asarray(framed).copy())
        image = (array[..., None] if c == 1 else array).permute(2, 0, 1)[None]  # (1, C, H, W)
        with self.lock:
            entry = self._entries(image, None, [image_id], ["upload"], [framing], [im.size])[0]
            self._uploads[image_id] = entry
            while len(self._uploads) > self.capacity:
                self._uploads.popitem(last=False)
        return entry

    def image(self, image_id: str) -> Entry:
        """The image held under ``image_id``.

        Raises:
            UnknownImage: for an id not held (any text: it is only ever looked up).
        """
        if image_id.startswith("g") and image_id[1:].isdigit():
            k = int(image_id[1:])
            if k < len(self.gallery) and image_id == f"g{k}":
                return self.gallery[k]
        with self.lock:
            if image_id in self._uploads:
                self._uploads.move_to_end(image_id)
                return self._uploads[image_id]
        raise UnknownImage(image_id)

    # ------------------------------------------------------------------------- pictures
    def _render(self, key: tuple, make: Callable[[], tuple[torch.Tensor, int | None]]) -> Picture:
        """The picture for ``key``, decoded once and kept for the picture's JSON request."""
        with self.lock:
            if key in self._renders:
                self._renders.move_to_end(key)
                return self._renders[key]
            picture = self._picture(*make())
            self._renders[key] = picture
            while len(self._renders) > 64:
                self._renders.popitem(last=False)
        return picture

    def check_amounts(self, amounts: Mapping[str, float]) -> dict[str, float]:
        """The nonzero amounts, in the order of :attr:`attributes`, each range-checked."""
        unknown = [n for n in amounts if n not in self.attributes]
        if unknown:
            raise ExplorerError(
                f"unknown attribute {unknown[0]!r}: this model has "
                f"{len(self.attributes)} (see /api/attributes)"
                if self.attributes else f"unknown attribute {unknown[0]!r}: this model has none"
            )  # fmt: skip
        checked = {n: check_range(n, float(amounts[n]), AMOUNT_RANGE) for n in amounts}
        return {n: checked[n] for n in self.attributes if checked.get(n, 0.0) != 0.0}

    def edit(self, image_id: str, amounts: Mapping[str, float]) -> Picture:
        """The image moved by ``amount * direction`` for every attribute."""
        entry = self.image(image_id)
        amounts = self.check_amounts(amounts)

        def make() -> tuple[torch.Tensor, int | None]:
            eps = entry.eps.clone()
            for n, a in amounts.items():
                eps += a * self._directions[self.attributes.index(n)]
            return eps, entry.label

        return self._render(("edit", image_id, tuple(amounts.items())), make)

    def sample(self, seed: int, temperature: float, label: int | None = None) -> Picture:
        """The sample of ``seed`` at ``temperature`` (as ``glowflow
        sample --seeds S`` draws it)."""
        check_range("seed", seed, SEED_RANGE)
        check_range("temperature", temperature, TEMPERATURE_RANGE)
        label = self._check_label(label)

        def make() -> tuple[torch.Tensor, int | None]:
            return seed_latents([seed], self.model.num_dims)[0] * temperature, label

        return self._render(("sample", seed, temperature, label), make)

    def _check_label(self, label: int | None) -> int | None:
        k = self.config.num_classes
        if k is None:
            if label is not None:
                raise ExplorerError("this model is not class-conditional: drop label")
            return None
        label = 0 if label is None else label
        if not 0 <= label < k:
            raise ExplorerError(f"label must lie in [0, {k - 1}], got {label}")
        return label

    def check_levels(self, levels: str | None) -> str:
        """One of ``a``, ``b``, ``m`` per level (default all ``m``)."""
        n = self.config.levels
        levels = "m" * n if levels is None else levels
        if len(levels) != n or any(c not in LEVEL_CHOICES for c in levels):
            raise ExplorerError(
                f"levels must be {n} letters, each a, b or m (finest level first), got {levels!r}"
            )
        return levels

    def level_slices(self) -> list[slice]:
        """Where each level's latent lies in the flat latent, finest level first."""
        out, start = [], 0
        for c, h, w in self.model.latent_shapes():
            out.append(slice(start, start + c * h * w))
            start += c * h * w
        return out

    def mix(
        self, a: str, b: str, t: float, path: str = "linear", levels: str | None = None
    ) -> Picture:
        """Each level's latent from image ``a``, from ``b``, or on the
        ``path`` between them at ``t`` (the levels marked ``m``, taken together)."""
        ea, eb = self.image(a), self.image(b)
        check_range("t", t, (0.0, 1.0))
        if path not in PATHS:
            raise ExplorerError(f"path must be one of {', '.join(PATHS)}, got {path!r}")
        levels = self.check_levels(levels)

        def make() -> tuple[torch.Tensor, int | None]:
            eps = ea.eps.clone()
            mixed = torch.zeros_like(eps, dtype=torch.bool)
            for choice, part in zip(levels, self.level_slices()):
                if choice == "b":
                    eps[part] = eb.eps[part]
                mixed[part] = choice == "m"
            if mixed.any():
                at = torch.tensor([t], dtype=torch.float64)
                point = interpolate_at(ea.eps[mixed].double(), eb.eps[mixed].double(), at,
                                       path == "spherical")[0]  # fmt: skip
                eps[mixed] = point.to(eps.dtype)
            label = ea.label if t < 0.5 else eb.label
            return eps, label

        return self._render(("mix", a, b, t, path, levels), make)

    # ------------------------------------------------------------------------- commands
    def _image_words(self, entry: Entry) -> list[str] | None:
        """How ``manipulate`` names the image and gets the directions: the image's index in the
        gallery's data set, or the crop's file (as ``/api/images/ID.png`` gives it); None where
        no command can. Computed directions come from the gallery's data set, so its options
        (``direction_words``) name both."""
        if entry.gallery_index is not None:
            if self.gallery_words is None:
                return None
            words = self.direction_words or self.gallery_words
            return [*words, "--images", str(entry.gallery_index)]
        if self.config.num_classes is not None:  # an upload's label is a guess of ours
            return None
        return [*self.direction_words, "--images", f"{entry.id}.png"]

    def edit_command(self, image_id: str, amounts: Mapping[str, float]) -> str | None:
        """The ``glowflow manipulate`` command that draws the same picture (an edit along one
        attribute at most), or None."""
        entry = self.image(image_id)
        amounts = self.check_amounts(amounts)
        words = self._image_words(entry)
        if words is None or len(amounts) > 1 or not self.attributes:
            return None
        name, amount = next(iter(amounts.items()), (self.attributes[0], 0.0))
        return shlex.join(["glowflow", "manipulate", "--checkpoint", self.checkpoint, *words,
                           "--attribute", name, f"--alphas={amount:g}",
                           "--out", "edit.png"])  # fmt: skip

    def sample_command(self, seed: int, temperature: float, label: int | None = None) -> str:
        """The ``glowflow sample`` command that draws the same picture."""
        words = ["glowflow", "sample", "--checkpoint", self.checkpoint, "--seeds", str(seed),
                 "--temperature", f"{temperature:g}", "--out", f"sample-{seed}.png"]  # fmt: skip
        if label is not None:
            words += ["--label", str(label)]
        return shlex.join(words)

    def mix_command(self, a: str, b: str, t: float, path: str, levels: str | None) -> str | None:
        """The ``glowflow interpolate`` command whose steps include this mix (every level
        mixed, ``t`` a multiple of 1/10 between two gallery images), or None."""
        ea, eb = self.image(a), self.image(b)
        if self.check_levels(levels) != "m" * self.config.levels or self.gallery_words is None:
            return None
        if ea.gallery_index is None or eb.gallery_index is None:
            return None
        tenths = t * 10
        if abs(tenths - round(tenths)) > 1e-9 or self.config.num_classes is not None:
            return None
        words = ["glowflow", "interpolate", "--checkpoint", self.checkpoint, *self.gallery_words,
                 "--pairs", f"{ea.gallery_index},{eb.gallery_index}", "--steps", "11",
                 *(["--spherical"] if path == "spherical" else []),
                 "--out", "mix.png"]  # fmt: skip
        return shlex.join(words) + f"  # column {round(tenths) + 2} of 13"
