"""The model side of the latent explorer (``glowflow serve``): images held by id, edits, mixes,
samples, and what each picture's bits/dim is.

Everything here is plain Python on tensors, usable without the web server. An ``Explorer``
keeps the latent of every image it was given (the gallery, uploads), so an edit is one decode:
``x = decode(eps + sum_k amount_k * direction_k)``. The browser names images by id and sends
amounts as numbers; a latent never leaves the server.

The explorer may be called from several threads at once. Model calls take turns on one lock;
looking an image up never waits for it (the held images and pictures are in thread-safe
stores), so a web server can answer what it already has while a model call runs. At most
``DECODES_AT_ONCE`` uploads are decoded at a time, which bounds the memory a burst of
large photos takes.
"""

from __future__ import annotations

import hashlib
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Mapping, Sequence

import torch

from glowflow.explorer.checks import (
    AMOUNT_RANGE,
    SEED_RANGE,
    TEMPERATURE_RANGE,
    ExplorerError,
    UnknownImage,
    check_amounts,
    check_label,
    check_levels,
    check_path,
    check_range,
)
from glowflow.explorer.commands import Commands
from glowflow.explorer.entries import Entry, Picture, encode_entries, gallery_entries, png_bytes
from glowflow.explorer.faces import frame_upload
from glowflow.explorer.lru import LRU
from glowflow.explorer.runtime import Runtime, TorchRuntime
from glowflow.hub.gallery import Gallery
from glowflow.latent.latents import level_slices, mix_levels, seed_latents
from glowflow.nn.model import GlowFlow

# The names this module has always offered, wherever they are defined now.
__all__ = ["Entry", "Explorer", "ExplorerError", "Picture", "UnknownImage", "png_bytes"]

# ASCII digits only ("g²" passes str.isdigit): a gallery image, or an upload's hash
_GALLERY_ID = re.compile(r"g[0-9]{1,9}")
_UPLOAD_ID = re.compile(r"[0-9a-f]{16}")
RENDERS_HELD = 64  # decoded pictures kept for the JSON request that follows a picture's
#: Uploads decoded at once: each may briefly take a few hundred MB (see
#: ``glowflow.explorer.faces.MAX_PIXELS``); others wait their turn.
DECODES_AT_ONCE = 2


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
        class_names: the name of each class of a class-conditional model, or None.
        faces: frame uploads around a detected face (a face model), else centre-crop them.
        capacity: uploads held at once; the least recently used one is dropped beyond it.
        name: the model's name to show.
        runtime: what runs the model's encodes and decodes (default: PyTorch, the model
            itself; ``glowflow.explorer.runtime.OnnxRuntime`` for its ONNX graphs).
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
        runtime: Runtime | None = None,
    ) -> None:
        self.model = model.eval()
        self.runtime = runtime if runtime is not None else TorchRuntime(model)
        self.device, self.dtype = self.runtime.device, self.runtime.dtype  # of its latents
        self.config = model.config
        self.checkpoint = checkpoint
        self.commands = Commands(
            checkpoint,
            gallery_words,
            list(direction_words),
            conditional=model.config.num_classes is not None,
            levels=model.config.levels,
        )
        self.class_names = class_names
        self.name = name or checkpoint
        self.faces = faces
        self.lock = threading.RLock()  # model calls take turns on it
        # Uploads are decoded by a pool of their own: at most DECODES_AT_ONCE at a time, and
        # the memory a large photo took is reused by the next (the allocator keeps a thread's
        # freed memory for that thread, so decoding in any worker would keep it in each).
        self._decoder = ThreadPoolExecutor(DECODES_AT_ONCE, thread_name_prefix="glowflow-decode")
        self.attributes: list[str] = list(directions["names"]) if directions else []
        self._directions = (
            directions["directions"].to(self.device, self.dtype) if directions else None
        )
        self._uploads: LRU[str, Entry] = LRU(capacity)
        self._renders: LRU[tuple, Picture] = LRU(RENDERS_HELD)
        self.gallery_note = gallery.note if gallery else None
        self.gallery: list[Entry] = (
            gallery_entries(self.runtime, gallery) if gallery is not None else []
        )

    # ------------------------------------------------------------------------- model calls
    def _picture(self, eps: torch.Tensor, label: int | None) -> Picture:
        """One latent ``(D,)`` decoded; an overflow is noted on the picture, not warned about."""
        y = None if label is None else torch.tensor([label])
        images, overflow = self.runtime.decode(eps[None], y)
        return Picture(images[0].cpu(), bool(overflow[0]))

    def bits_per_dim(self, images: torch.Tensor) -> torch.Tensor:
        """Bits/dim ``(N,)`` of uint8 images, each at the centre of its pixel bins (a
        class-conditional model's marginal over classes)."""
        return self.runtime.bits_per_dim(images)

    def picture_bpd(self, image: torch.Tensor) -> float:
        """Bits/dim of one uint8 picture ``(C, H, W)``, to 4 decimals."""
        with self.lock:
            return round(float(self.bits_per_dim(image[None])[0]), 4)

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
        held = self._uploads.get(image_id)
        if held is not None:
            return held
        decoding = self._decoder.submit(frame_upload, data, self.config.image_shape, self.faces)
        array, framing, size = decoding.result()
        image = torch.from_numpy(array)[None]  # (1, C, H, W)
        with self.lock:
            entry = encode_entries(self.runtime, image, None, [image_id], ["upload"], [framing],
                                   [size])[0]  # fmt: skip
        self._uploads.put(image_id, entry)
        return entry

    def image(self, image_id: str) -> Entry:
        """The image held under ``image_id``.

        Raises:
            ExplorerError: for text that is no image id (``g`` and a number, or 16 hex digits).
            UnknownImage: for an id not held.
        """
        gallery = _GALLERY_ID.fullmatch(image_id)
        if not (gallery or _UPLOAD_ID.fullmatch(image_id)):
            raise ExplorerError(
                f"an image id is g and a number (a gallery image) or 16 hex digits (an upload), "
                f"got {image_id[:40]!r}"
            )
        if gallery:
            k = int(image_id[1:])
            if k < len(self.gallery) and image_id == f"g{k}":
                return self.gallery[k]
        entry = self._uploads.get(image_id)
        if entry is None:
            raise UnknownImage(image_id)
        return entry

    # ------------------------------------------------------------------------- pictures
    def _render(self, key: tuple, make: Callable[[], tuple[torch.Tensor, int | None]]) -> Picture:
        """The picture for ``key``, decoded once and kept for the picture's JSON request."""
        picture = self._renders.get(key)
        if picture is None:
            with self.lock:
                picture = self._picture(*make())
            self._renders.put(key, picture)
        return picture

    def check_amounts(self, amounts: Mapping[str, float]) -> dict[str, float]:
        """The nonzero amounts, in the order of ``attributes``, each range-checked."""
        return check_amounts(amounts, self.attributes)

    def check_levels(self, levels: str | None) -> str:
        """One of ``a``, ``b``, ``m`` per level (default all ``m``)."""
        return check_levels(levels, self.config.levels)

    def level_slices(self) -> list[slice]:
        """Where each level's latent lies in the flat latent, finest level first."""
        return level_slices(self.model)

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
        label = check_label(label, self.config.num_classes)

        def make() -> tuple[torch.Tensor, int | None]:
            return seed_latents([seed], self.model.num_dims)[0] * temperature, label

        return self._render(("sample", seed, temperature, label), make)

    def mix(
        self, a: str, b: str, t: float, path: str = "linear", levels: str | None = None
    ) -> Picture:
        """Each level's latent from image ``a``, from ``b``, or on the
        ``path`` between them at ``t`` (the levels marked ``m``, taken together)."""
        ea, eb = self.image(a), self.image(b)
        check_range("t", t, (0.0, 1.0))
        check_path(path)
        levels = self.check_levels(levels)

        def make() -> tuple[torch.Tensor, int | None]:
            eps = mix_levels(ea.eps, eb.eps, levels, t, path == "spherical", self.level_slices())
            return eps, ea.label if t < 0.5 else eb.label

        return self._render(("mix", a, b, t, path, levels), make)

    # ------------------------------------------------------------------------- commands
    def edit_command(self, image_id: str, amounts: Mapping[str, float]) -> str | None:
        """The ``glowflow manipulate`` command that draws the same picture (an edit along one
        attribute at most), or None."""
        entry = self.image(image_id)
        return self.commands.edit(entry, self.check_amounts(amounts), self.attributes)

    def sample_command(self, seed: int, temperature: float, label: int | None = None) -> str:
        """The ``glowflow sample`` command that draws the same picture."""
        return self.commands.sample(seed, temperature, label)

    def mix_command(self, a: str, b: str, t: float, path: str, levels: str | None) -> str | None:
        """The ``glowflow interpolate`` command whose steps include this mix (every level
        mixed, ``t`` a multiple of 1/10 between two gallery images), or None."""
        ea, eb = self.image(a), self.image(b)
        return self.commands.mix(ea, eb, t, path, self.check_levels(levels))
