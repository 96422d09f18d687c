"""Preprocessing and the bits-per-dimension objective: the one place for these formulas.

Images of ``n_bits`` bits per channel are mapped to ``x = k / 2**n_bits - 0.5`` for the integer
level ``k`` in ``[0, 2**n_bits)``, plus uniform noise of one bin's width (dequantisation), so
``x`` lies in ``[-0.5, 0.5)``. A density ``p`` of ``x`` gives the discrete model a probability of
at least ``p(x) * (1 / 2**n_bits)**D`` per image, hence

    bits/dim = -(log p(x) - D * log(2**n_bits)) / (D * log 2).
"""

from __future__ import annotations

import math

import torch


def quantize(images: torch.Tensor, n_bits: int = 8) -> torch.Tensor:
    """uint8 images (0..255) -> integer levels ``0 .. 2**n_bits - 1`` (still uint8)."""
    if images.dtype != torch.uint8:
        raise ValueError(f"expected uint8 images (0..255), got dtype {images.dtype}")
    if not 1 <= n_bits <= 8:
        raise ValueError(f"n_bits must be between 1 and 8, got {n_bits}")
    return images >> (8 - n_bits) if n_bits < 8 else images


def preprocess(
    images: torch.Tensor,
    n_bits: int = 8,
    dequantize: bool = True,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    noise: torch.Tensor | None = None,
) -> torch.Tensor:
    """uint8 images -> continuous model inputs in ``[-0.5, 0.5)``.

    Args:
        images: uint8 tensor, any shape (usually ``(B, C, H, W)``).
        n_bits: keep this many high bits of each value.
        dequantize: add ``U(0, 1/2**n_bits)`` noise (training and likelihood evaluation);
            without it each value is the centre of its bin (encoding real images for edits and
            reconstructions: the farthest point from the bin's edges).
        generator: for the noise.
        noise: ``U(0, 1)`` draws of the images' shape to use instead of drawing them (a
            process's share of the draws for a whole global batch).
    """
    bins = 2**n_bits
    x = quantize(images, n_bits).to(dtype) / bins - 0.5
    if dequantize:
        if noise is None:
            noise = torch.rand(x.shape, generator=generator, dtype=dtype, device=x.device)
        return x + noise / bins
    return x + 0.5 / bins


def postprocess(x: torch.Tensor, n_bits: int = 8) -> torch.Tensor:
    """Model outputs -> uint8 images (0..255): the bin each value falls in, rescaled.

    Inverts ``preprocess`` exactly for any noise draw: every value in a bin maps back to it.
    """
    bins = 2**n_bits
    k = torch.floor((x + 0.5) * bins).clamp(0, bins - 1)
    return (k * (256 // bins)).to(torch.uint8)


def bits_per_dim(log_prob: torch.Tensor, num_dims: int, n_bits: int = 8) -> torch.Tensor:
    """Bits per dimension of the discrete data from the continuous ``log_prob`` in nats."""
    return -(log_prob - num_dims * math.log(2**n_bits)) / (num_dims * math.log(2.0))


def bits_per_dim_levels(
    level_log_probs: torch.Tensor, num_dims: int, n_bits: int = 8
) -> torch.Tensor:
    """Each level's share of the bits/dim, from ``(B, L)`` per-level log-densities in nats
    (``glowflow.Glow.log_prob_levels``): rows sum to ``bits_per_dim`` of their total.

    Level 0, where the pixels enter the flow, carries the ``n_bits`` of the quantisation bins.
    """
    bits = -level_log_probs / (num_dims * math.log(2.0))
    bits[:, 0] = bits_per_dim(level_log_probs[:, 0], num_dims, n_bits)
    return bits
