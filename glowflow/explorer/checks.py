"""What the explorer accepts: the ranges and choices of every value a request may carry, the
checks that hold a value to them, and the errors a request outside them gets."""

from __future__ import annotations

import math
from typing import Mapping, Sequence

from glowflow.errors import GlowflowError
from glowflow.latent.latents import LEVEL_CHOICES

TEMPERATURE_RANGE = (0.0, 1.5)
# In units of the direction (the difference of the two means), as ``manipulate --alphas``. On
# the bundled celeba64 model, single moves within +-2 decode to finite pixels; beyond +-3, or
# several large moves at once, some faces overflow (then the picture says so).
AMOUNT_RANGE = (-2.0, 2.0)
SEED_RANGE = (0, 2**31 - 1)
PATHS = ("linear", "spherical")
#: The choices of ``glowflow serve --runtime``: see ``glowflow.explorer.runtime``.
RUNTIMES = ("auto", "torch", "onnx")
#: How uploads are cropped: around a detected face, or the centre square (``auto``: faces for
#: a model with CelebA's attributes).
FRAMINGS = ("auto", "face", "centre")


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


def check_range(name: str, value: float, bounds: tuple[float, float]) -> float:
    """``value`` if it is a finite number within ``bounds``, else an ``ExplorerError``."""
    lo, hi = bounds
    if not math.isfinite(value) or not lo <= value <= hi:
        raise ExplorerError(f"{name} must lie in [{lo}, {hi}], got {value}")
    return value


def check_amounts(amounts: Mapping[str, float], attributes: Sequence[str]) -> dict[str, float]:
    """The nonzero amounts, in the order of ``attributes``, each within ``AMOUNT_RANGE``."""
    unknown = [n for n in amounts if n not in attributes]
    if unknown:
        raise ExplorerError(
            f"unknown attribute {unknown[0]!r}: this model has "
            f"{len(attributes)} (see /api/attributes)"
            if attributes else f"unknown attribute {unknown[0]!r}: this model has none"
        )  # fmt: skip
    checked = {n: check_range(n, float(amounts[n]), AMOUNT_RANGE) for n in amounts}
    return {n: checked[n] for n in attributes if checked.get(n, 0.0) != 0.0}


def check_label(label: int | None, num_classes: int | None) -> int | None:
    """The class label to draw with: None for an unconditional model, else ``label`` (default
    0) if it names one of the ``num_classes`` classes."""
    if num_classes is None:
        if label is not None:
            raise ExplorerError("this model is not class-conditional: drop label")
        return None
    label = 0 if label is None else label
    if not 0 <= label < num_classes:
        raise ExplorerError(f"label must lie in [0, {num_classes - 1}], got {label}")
    return label


def check_levels(levels: str | None, n: int) -> str:
    """One of ``a``, ``b``, ``m`` per level of ``n`` (default all ``m``)."""
    levels = "m" * n if levels is None else levels
    if len(levels) != n or any(c not in LEVEL_CHOICES for c in levels):
        raise ExplorerError(
            f"levels must be {n} letters, each a, b or m (finest level first), got {levels!r}"
        )
    return levels


def check_path(path: str) -> str:
    """``path`` if it is one of ``PATHS``."""
    if path not in PATHS:
        raise ExplorerError(f"path must be one of {', '.join(PATHS)}, got {path!r}")
    return path
