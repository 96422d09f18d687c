"""The paper's latent-space tools: temperature sampling, interpolation, attribute directions.

All work on the flat standardised latent of :meth:`glowflow.Glow.encode`, where the model's
prior is ``N(0, I)``: a temperature ``T`` scales it, and moving along a direction in it moves
every level's latent at once.
"""

from __future__ import annotations

import math
import warnings
from typing import Callable, Iterable, Sequence

import torch

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


def _decode(model: GlowFlow, eps: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
    """Decoded images in the model's range. A latent far from what the model learned (a long
    move along a direction, a high temperature) can overflow on the way back to pixels; such
    pixels come out black (NaN) or saturated (inf), with a warning that counts the images."""
    x = model.decode(eps, y)
    bad = ~torch.isfinite(x).flatten(1).all(1)
    if bad.any():
        warnings.warn(
            f"{int(bad.sum())} image(s) decoded to inf or NaN (drawn black or saturated): their "
            f"latents lie far outside what the model learned (try smaller alphas or temperatures)",
            stacklevel=3,
        )
    return x


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
def decode_latents(
    model: GlowFlow, eps: torch.Tensor, labels: torch.Tensor | None = None, batch_size: int = 64
) -> torch.Tensor:
    """uint8 images from flat latents (temperature 1: the latents are used as given)."""
    device, _ = _params(model)

    def decode(s: slice) -> torch.Tensor:
        y = labels[s].to(device) if labels is not None else None
        return postprocess(_decode(model, eps[s].to(device), y), model.config.n_bits)

    return _batched(decode, len(eps), batch_size)


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
    """``(len(t), D)`` latents at weights ``t`` on the path of :func:`interpolate_latents`."""
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
def attribute_direction(
    model: GlowFlow,
    images: torch.Tensor,
    positive: torch.Tensor,
    negative: torch.Tensor | None = None,
    labels: torch.Tensor | None = None,
    batch_size: int = 64,
    progress: Callable[[Iterable, int], Iterable] | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Mean latent of the images with an attribute minus the mean of those without.

    Args:
        images: uint8 ``(N, C, H, W)``.
        positive: bool ``(N,)``, the images that have the attribute.
        negative: bool ``(N,)``, those that count as not having it (default: ``~positive``).
        labels: class labels, needed by class-conditional models.

    Returns:
        The direction ``(D,)`` and a summary (counts and the direction's norm).
    """
    negative = ~positive if negative is None else negative
    n_pos, n_neg = int(positive.sum()), int(negative.sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"need images with and without the attribute, got {n_pos} and {n_neg}")
    device, dtype = _params(model)
    sums = {True: torch.zeros(model.num_dims, dtype=torch.float64, device=device)}
    sums[False] = sums[True].clone()
    keep = positive | negative
    index = torch.nonzero(keep).flatten()
    starts = range(0, len(index), batch_size)
    for s in progress(starts, len(starts)) if progress else starts:
        idx = index[s : s + batch_size]
        y = labels[idx] if labels is not None else None
        eps = encode_images(model, images[idx], y, batch_size).double()
        pos = positive[idx].to(device)
        sums[True] += eps[pos].sum(0)
        sums[False] += eps[negative[idx].to(device)].sum(0)
    direction = (sums[True] / n_pos - sums[False] / n_neg).to(dtype)
    info = {
        "positives": n_pos,
        "negatives": n_neg,
        "norm": direction.norm().item(),
        "norm_per_sqrt_dim": direction.norm().item() / math.sqrt(model.num_dims),
    }
    return direction, info


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
