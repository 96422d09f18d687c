"""The paper's latent-space tools: temperature sampling, encoding and decoding, interpolation
(whole latents or level by level), and moving images along a direction.

All work on the flat standardised latent of ``glowflow.Glow.encode``, where the model's
prior is ``N(0, I)``: a temperature ``T`` scales it, and moving along a direction in it moves
every level's latent at once.
"""

from __future__ import annotations

import warnings
from typing import Callable, Sequence

import torch

from glowflow.data.imagedata import find_label, label_names
from glowflow.errors import GlowflowError
from glowflow.nn.model import GlowFlow
from glowflow.nn.objective import postprocess, preprocess


def seed_latents(seeds: Sequence[int], num_dims: int, device=None, dtype=None) -> torch.Tensor:
    """``(len(seeds), D)`` standard normal latents, row ``k`` drawn from its own generator
    seeded with ``seeds[k]``, so an image's latent does not depend on the batch it is in."""
    rows = [torch.randn(num_dims, generator=torch.Generator().manual_seed(s)) for s in seeds]
    return torch.stack(rows).to(device=device, dtype=dtype)


def _params(model: GlowFlow) -> tuple[torch.device, torch.dtype]:
    p = next(model.parameters())
    return p.device, p.dtype


def _batched(fn: Callable[[slice], torch.Tensor], n: int, batch_size: int) -> torch.Tensor:
    return torch.cat([fn(slice(s, s + batch_size)) for s in range(0, n, batch_size)])


@torch.no_grad()
def sample_images(
    model: GlowFlow,
    seeds: Sequence[int],
    temperature: float = 0.7,
    labels: torch.Tensor | None = None,
    batch_size: int = 64,
) -> torch.Tensor:
    """uint8 samples ``(len(seeds), C, H, W)``, image ``k`` fixed by ``seeds[k]``.

    ``labels`` (one per seed) are required for a class-conditional model.
    """
    device, dtype = _params(model)
    if model.config.num_classes is not None and labels is None:
        raise ValueError("this model is class-conditional: give a label for every sample")
    eps = seed_latents(seeds, model.num_dims, device, dtype)
    return decode_latents(model, eps * temperature, labels, batch_size)


class SampleError(GlowflowError, ValueError):
    """Labels or temperatures that cannot make a grid of samples; the message names the fix."""


def row_labels(
    model: GlowFlow, label: str | None, class_names: list[str] | None = None
) -> list[int | None]:
    """The label of each row of samples: the one ``label`` names (a class name, a number, or
    ``"all"`` for every class); every class for a class-conditional model without it; none
    for a model that is not class-conditional."""
    k = model.config.num_classes
    if label is None:
        return list(range(k)) if k is not None else [None]
    if k is None:
        raise SampleError("this model is not class-conditional; drop --label")
    if label == "all":
        return list(range(k))
    return [find_label(label_names(class_names, k), label)]


def sample_rows(
    model: GlowFlow,
    seeds: Sequence[int],
    temperatures: Sequence[float],
    labels: Sequence[int | None],
) -> list[torch.Tensor]:
    """One row of samples (``sample_images``, by ``seeds``) for each temperature, or for
    each label: rows are temperatures or labels, not both, so that a grid reads one way."""
    if not seeds:
        raise SampleError("--seeds names no seed; write a range like 0-63 or a list like 1,5,9")
    if len(temperatures) > 1 and len(labels) > 1:
        raise SampleError("give one label (--label K) with --temperatures: rows are temperatures")
    rows = []
    for t in temperatures:
        for label in labels:
            y = None if label is None else torch.full((len(seeds),), label, dtype=torch.long)
            rows.append(sample_images(model, seeds, t, y))
    return rows


@torch.no_grad()
def encode_images(
    model: GlowFlow, images: torch.Tensor, labels: torch.Tensor | None = None, batch_size: int = 64
) -> torch.Tensor:
    """Flat latents ``(N, D)`` of uint8 images, each encoded at the centre of its pixel bins."""
    device, dtype = _params(model)

    def encode(s: slice) -> torch.Tensor:
        x = preprocess(images[s], model.config.n_bits, dequantize=False, dtype=dtype)
        y = labels[s].to(device) if labels is not None else None
        return model.encode(x.to(device), y)

    return _batched(encode, len(images), batch_size)


@torch.no_grad()
def decode_with_overflow(
    model: GlowFlow, eps: torch.Tensor, labels: torch.Tensor | None = None, batch_size: int = 64
) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images ``(N, C, H, W)`` from flat latents ``(N, D)`` used as given (temperature
    1), and bool ``(N,)``: which of them overflowed.

    A latent far from what the model learned (a long move along a direction, a high
    temperature) can overflow on the way back to pixels; such pixels come out black (NaN) or
    saturated (inf). Nothing is warned about here: the caller says so as it sees fit.
    """
    device, dtype = _params(model)
    images, overflow = [], []
    for s in range(0, len(eps), batch_size):
        part = slice(s, s + batch_size)
        y = labels[part].to(device) if labels is not None else None
        x = model.decode(eps[part].to(device, dtype), y)  # (B, C, H, W) in the model's range
        overflow.append(~torch.isfinite(x).flatten(1).all(1))
        images.append(postprocess(x, model.config.n_bits))
    return torch.cat(images), torch.cat(overflow)


def decode_latents(
    model: GlowFlow, eps: torch.Tensor, labels: torch.Tensor | None = None, batch_size: int = 64
) -> torch.Tensor:
    """uint8 images from flat latents (temperature 1: the latents are used as given), with a
    warning that counts the images that overflowed (see ``decode_with_overflow``)."""
    images, overflow = decode_with_overflow(model, eps, labels, batch_size)
    if overflow.any():
        warnings.warn(
            f"{int(overflow.sum())} image(s) decoded to inf or NaN (drawn black or saturated): "
            f"their latents lie far outside what the model learned (try smaller alphas or "
            f"temperatures)",
            stacklevel=2,
        )
    return images


def reconstruction_errors(
    images: torch.Tensor, reconstructions: torch.Tensor, n_bits: int
) -> torch.Tensor:
    """int64 ``(N,)``: the largest grey-level error of each reconstruction (``decode(encode(x))``)
    against its uint8 input as an ``n_bits`` model sees it, that is quantised to ``n_bits``:
    ``postprocess(preprocess(x, n_bits, dequantize=False), n_bits)``. The flow being exact, it
    is 0 up to rounding."""
    seen = postprocess(preprocess(images, n_bits, dequantize=False), n_bits)
    diff = reconstructions.cpu().long() - seen.cpu().long()
    return diff.flatten(1).abs().amax(1)


def interpolation_weights(steps: int) -> torch.Tensor:
    """``steps`` evenly spaced weights from 0 to 1, both ends included."""
    if steps < 2:
        raise ValueError(f"interpolation needs at least 2 steps, got {steps}")
    return torch.linspace(0, 1, steps, dtype=torch.float64)


def interpolate_latents(
    a: torch.Tensor, b: torch.Tensor, steps: int, spherical: bool = False
) -> torch.Tensor:
    """``(steps, D)`` latents from ``a`` to ``b`` (both ``(D,)``), ends included.

    Linear: ``(1 - t) a + t b``. Spherical (slerp) follows the great circle between the two
    directions while interpolating the norms linearly, keeping the path in the shell where a
    high-dimensional Gaussian puts its mass.
    """
    return interpolate_at(a, b, interpolation_weights(steps), spherical)


def interpolate_at(
    a: torch.Tensor, b: torch.Tensor, t: torch.Tensor, spherical: bool = False
) -> torch.Tensor:
    """``(len(t), D)`` latents at weights ``t`` on the path of ``interpolate_latents``."""
    t = t.to(a.dtype)[:, None]
    if not spherical:
        return (1 - t) * a + t * b
    na, nb = a.norm(), b.norm()
    cos = torch.clamp(torch.dot(a / na, b / nb), -1.0, 1.0)
    omega = torch.arccos(cos)
    if omega.abs() < 1e-6:
        return (1 - t) * a + t * b
    wa = torch.sin((1 - t) * omega) / torch.sin(omega)
    wb = torch.sin(t * omega) / torch.sin(omega)
    unit = wa * (a / na) + wb * (b / nb)
    unit = unit / unit.norm(dim=1, keepdim=True)
    return unit * ((1 - t) * na + t * nb)


#: How ``mix_levels`` takes a level's latent: from ``a``, from ``b``, or mixed at ``t``.
LEVEL_CHOICES = "abm"


def level_slices(model: GlowFlow) -> list[slice]:
    """Where each level's latent lies in the flat latent, finest level first."""
    out, start = [], 0
    for c, h, w in model.latent_shapes():
        out.append(slice(start, start + c * h * w))
        start += c * h * w
    return out


def mix_levels(
    a: torch.Tensor,
    b: torch.Tensor,
    levels: str,
    t: float,
    spherical: bool,
    slices: Sequence[slice],
) -> torch.Tensor:
    """A flat latent ``(D,)`` that takes each level's part from ``a`` or from ``b`` (both
    ``(D,)``), or mixes it: ``levels`` has one of ``LEVEL_CHOICES`` per level (finest level
    first, where ``slices`` says it lies). The levels marked ``m``, taken together as one
    vector, are the point at ``t`` on the path of ``interpolate_at``, computed in float64."""
    eps = a.clone()
    mixed = torch.zeros_like(eps, dtype=torch.bool)
    for choice, part in zip(levels, slices):
        if choice == "b":
            eps[part] = b[part]
        mixed[part] = choice == "m"
    if mixed.any():
        at = torch.tensor([t], dtype=torch.float64)
        point = interpolate_at(a[mixed].double(), b[mixed].double(), at, spherical)[0]
        eps[mixed] = point.to(eps.dtype)
    return eps


@torch.no_grad()
def interpolate_images(
    model: GlowFlow,
    first: torch.Tensor,
    second: torch.Tensor,
    steps: int = 8,
    spherical: bool = False,
    labels: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Rows of ``steps`` decoded images between pairs of real uint8 images.

    ``first`` and ``second`` are ``(P, C, H, W)``; the result is ``(P, steps, C, H, W)`` with the
    reconstructions of ``first`` and ``second`` at the ends. A class-conditional model needs
    the pairs' labels; the label of the nearer end is used along the way.
    """
    ya, yb = labels if labels is not None else (None, None)
    ea = encode_images(model, first, ya)
    eb = encode_images(model, second, yb)
    rows = []
    for k in range(len(first)):
        path = interpolate_latents(ea[k], eb[k], steps, spherical)
        y = None
        if labels is not None:
            t = interpolation_weights(steps)
            y = torch.where(t < 0.5, ya[k], yb[k]).long()
        rows.append(decode_latents(model, path, y))
    return torch.stack(rows)


@torch.no_grad()
def manipulate_images(
    model: GlowFlow,
    images: torch.Tensor,
    direction: torch.Tensor,
    alphas: Sequence[float],
    labels: torch.Tensor | None = None,
) -> torch.Tensor:
    """``(N, len(alphas), C, H, W)``: each real image moved by ``alpha * direction``.

    With ``alpha = 0`` the image is reconstructed; the flow being exact, it equals the input.
    """
    eps = encode_images(model, images, labels)
    rows = []
    for k in range(len(images)):
        path = torch.stack([eps[k] + a * direction.to(eps) for a in alphas])
        y = None if labels is None else labels[k].expand(len(alphas))
        rows.append(decode_latents(model, path, y))
    return torch.stack(rows)
