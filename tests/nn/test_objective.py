"""Preprocessing, postprocessing and bits/dim: the one place for these formulas."""

from __future__ import annotations

import math

import pytest
import torch

from glowflow import bits_per_dim, postprocess, preprocess, quantize


@pytest.mark.parametrize("n_bits", [1, 3, 5, 8])
def test_preprocess_range_and_exact_postprocess(n_bits):
    images = torch.arange(256, dtype=torch.uint8).reshape(1, 1, 16, 16)
    x = preprocess(images, n_bits, generator=torch.Generator().manual_seed(0))
    assert x.min() >= -0.5 and x.max() < 0.5
    k = quantize(images, n_bits).double()
    # dequantisation noise stays inside each value's bin of width 1 / 2**n_bits
    lower = k / 2**n_bits - 0.5
    assert ((x - lower) >= 0).all() and ((x - lower) < 1 / 2**n_bits).all()
    # every point of a bin maps back to the same (bin-rounded) image
    expected = (k * 2 ** (8 - n_bits)).to(torch.uint8)
    assert torch.equal(postprocess(x, n_bits), expected)
    assert torch.equal(postprocess(preprocess(images, n_bits, dequantize=False), n_bits), expected)


def test_quantize_keeps_high_bits():
    images = torch.tensor([0, 7, 8, 255], dtype=torch.uint8)
    assert quantize(images, 5).tolist() == [0, 0, 1, 31]
    with pytest.raises(ValueError, match="uint8"):
        quantize(images.float(), 5)


def test_bits_per_dim_formula():
    d = 10
    # A uniform density on [-0.5, 0.5)^d has log p = 0: exactly n_bits bits per dim.
    assert bits_per_dim(torch.zeros(1), d, 8).item() == pytest.approx(8.0)
    assert bits_per_dim(torch.zeros(1), d, 5).item() == pytest.approx(5.0)
    lp = torch.tensor([-3.0 * d * math.log(2)])
    assert bits_per_dim(lp, d, 8).item() == pytest.approx(11.0)


def test_bits_per_dim_levels_sum_to_bits_per_dim_with_the_bins_on_level_zero():
    from glowflow.nn.objective import bits_per_dim, bits_per_dim_levels

    parts = torch.tensor([[-700.0, 100.0, -50.0], [-10.0, -20.0, -30.0]])
    bits = bits_per_dim_levels(parts, num_dims=1024, n_bits=5)
    assert torch.allclose(bits.sum(1), bits_per_dim(parts.sum(1), 1024, 5))
    assert torch.allclose(bits[:, 1:], -parts[:, 1:] / (1024 * math.log(2)))
