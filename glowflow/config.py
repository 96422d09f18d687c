"""Model configuration and the paper's named presets."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from glowflow.flowstep import COUPLINGS, PERMUTATIONS


def known_fields(cls: type, d: dict[str, Any], what: str) -> dict[str, Any]:
    """``d`` itself, after checking that it names only fields of the dataclass ``cls``."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ValueError(f"unknown {what} {unknown}; known: {sorted(known)}")
    return d


@dataclass(frozen=True)
class GlowConfig:
    """Everything needed to build a :class:`glowflow.Glow`; saved inside every checkpoint.

    Attributes:
        image_shape: ``(C, H, W)`` of the images; ``H`` and ``W`` divisible by ``2**levels``.
        levels: ``L``, the number of squeeze-steps-split levels.
        depth: ``K``, flow steps per level.
        hidden_channels: width of the coupling networks.
        coupling: ``"affine"`` or ``"additive"``.
        permutation: ``"lu"`` (LU-decomposed 1x1 conv), ``"conv"`` (plain 1x1 conv),
            ``"shuffle"`` (fixed random) or ``"reverse"`` (fixed reversal).
        learn_top: learn the top prior's mean and scale (else standard normal).
        num_classes: make the top prior class-conditional on this many labels.
        n_bits: bits per colour channel of the data (the paper uses 5 for CelebA-HQ).
        memory_saving: backprop by inversion: each level's flow steps recompute their inputs
            from their outputs instead of storing activations, so training memory does not
            grow with depth (same gradients, about a third more compute).
    """

    image_shape: tuple[int, int, int] = (3, 32, 32)
    levels: int = 3
    depth: int = 32
    hidden_channels: int = 512
    coupling: str = "affine"
    permutation: str = "lu"
    learn_top: bool = True
    num_classes: int | None = None
    n_bits: int = 8
    memory_saving: bool = False

    def __post_init__(self) -> None:
        shape = tuple(int(s) for s in self.image_shape)
        object.__setattr__(self, "image_shape", shape)
        if len(shape) != 3 or min(shape) < 1:
            raise ValueError(f"image_shape must be (C, H, W) with positive sizes, got {shape}")
        if self.levels < 1 or self.depth < 1 or self.hidden_channels < 1:
            raise ValueError(
                f"levels, depth and hidden_channels must be >= 1, got "
                f"{self.levels}, {self.depth}, {self.hidden_channels}"
            )
        c, h, w = shape
        step = 2**self.levels
        if h % step or w % step:
            raise ValueError(
                f"image size {h}x{w} is not divisible by 2**levels = {step}; "
                f"use fewer levels or resize the images to a multiple of {step}"
            )
        if self.coupling not in COUPLINGS:
            raise ValueError(f"coupling must be one of {COUPLINGS}, got {self.coupling!r}")
        if self.permutation not in PERMUTATIONS:
            raise ValueError(f"permutation must be one of {PERMUTATIONS}, got {self.permutation!r}")
        if self.num_classes is not None and self.num_classes < 2:
            raise ValueError(f"num_classes must be None or >= 2, got {self.num_classes}")
        if not 1 <= self.n_bits <= 8:
            raise ValueError(f"n_bits must be between 1 and 8, got {self.n_bits}")

    @property
    def num_dims(self) -> int:
        """``D = C * H * W``, the number of dimensions bits/dim divides by."""
        c, h, w = self.image_shape
        return c * h * w

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["image_shape"] = list(self.image_shape)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GlowConfig:
        return cls(**known_fields(cls, d, "GlowConfig fields"))

    def replace(self, **changes: Any) -> GlowConfig:
        return dataclasses.replace(self, **changes)


#: The paper's models (hyper-parameters from its experiments and the original code) plus
#: ``tiny`` for CPU work. ``mnist`` is padded to 32x32.
PRESETS: dict[str, GlowConfig] = {
    "cifar10": GlowConfig((3, 32, 32), levels=3, depth=32, hidden_channels=512),
    "imagenet32": GlowConfig((3, 32, 32), levels=3, depth=48, hidden_channels=512),
    "imagenet64": GlowConfig((3, 64, 64), levels=4, depth=48, hidden_channels=512),
    "celeba-hq-256": GlowConfig(
        (3, 256, 256), levels=6, depth=32, hidden_channels=512, coupling="additive", n_bits=5
    ),
    "mnist": GlowConfig((1, 32, 32), levels=3, depth=32, hidden_channels=512),
    "tiny": GlowConfig((3, 32, 32), levels=3, depth=4, hidden_channels=64),
}


def preset(name: str, **overrides: Any) -> GlowConfig:
    """The preset ``name`` with some fields replaced, e.g. ``preset("cifar10", depth=8)``."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name].replace(**overrides)
