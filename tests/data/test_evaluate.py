"""Bits/dim over a data set: the mean over every image, reproducible from the seed."""

from __future__ import annotations

import math

import torch
from conftest import randomize_

from glowflow import Glow, preprocess, seeding
from glowflow.data.evaluate import (
    BitsEstimate,
    eval_batches,
    evaluate_bits,
    evaluate_bpd,
    image_bits,
    importance_weighted_bits,
)


def model_and_images():
    model = Glow((1, 8, 8), levels=2, depth=1, hidden_channels=4)
    images = torch.randint(0, 256, (10, 1, 8, 8), dtype=torch.uint8)
    model.initialize(preprocess(images, 8))
    return randomize_(model, 0.05), images


def test_bpd_is_the_mean_over_every_image_with_per_batch_noise():
    model, images = model_and_images()
    bpd = evaluate_bpd(model, images, batch_size=4, seed=3)
    by_hand = []
    for k, s in enumerate(range(0, 10, 4)):  # batches of 4, 4 and 2
        g = seeding.generator(3, k, seeding.EVAL)
        by_hand.append(
            model.bits_per_dim(preprocess(images[s : s + 4], 8, generator=g, dtype=torch.float64))
        )
    assert abs(bpd - torch.cat(by_hand).mean().item()) < 1e-12
    assert evaluate_bpd(model, images, batch_size=4, seed=3) == bpd  # reproducible
    assert evaluate_bpd(model, images, batch_size=4, seed=4) != bpd  # the seed draws the noise


def test_evaluation_leaves_the_training_mode_as_it_was():
    model, images = model_and_images()
    model.train()
    evaluate_bpd(model, images)
    assert model.training
    model.eval()
    evaluate_bpd(model, images)
    assert not model.training


def test_importance_weighting_is_the_log_mean_of_the_likelihoods():
    bits = torch.tensor([[1.0, 5.0], [3.0, 5.0]], dtype=torch.float64)  # (K=2 draws, N=2)
    got = importance_weighted_bits(bits)
    assert abs(got[0].item() + math.log2((2**-1 + 2**-3) / 2)) < 1e-12
    assert abs(got[1].item() - 5.0) < 1e-12  # equal draws: their common value
    one = torch.tensor([[2.5, 7.0]], dtype=torch.float64)
    assert torch.equal(importance_weighted_bits(one), one[0])  # K = 1: the draw itself


def test_k_draws_are_a_bound_no_looser_than_their_single_draws():
    model, images = model_and_images()
    single = evaluate_bits(model, images, batch_size=4, seed=3)
    assert single.samples == 1 and single.dims == 64 and single.n == 10
    assert abs(single.bpd - evaluate_bpd(model, images, batch_size=4, seed=3)) < 1e-12
    assert abs(single.bits_per_image - single.bpd * 64) < 1e-9
    k = 4
    weighted, order = image_bits(model, images, batch_size=4, seed=3, samples=k)
    assert order.tolist() == list(range(10))
    draws = torch.stack([  # each draw's bits per image, drawn as image_bits draws them
        torch.cat([model.bits_per_dim(x).double() * 64
                   for _, _, x in eval_batches(model, images, 4, 3, torch.device("cpu"), draw=j)])
        for j in range(k)
    ])  # fmt: skip
    assert not torch.equal(draws[0], draws[1])  # the draws are different noise
    assert torch.equal(draws[0], image_bits(model, images, batch_size=4, seed=3)[0])
    assert torch.allclose(weighted, importance_weighted_bits(draws), atol=1e-9)
    assert (weighted <= draws.mean(0) + 1e-9).all()  # Jensen, image by image
    estimate = evaluate_bits(model, images, batch_size=4, seed=3, samples=k)
    draw_means = draws.mean(1) / 64  # each single draw's bits/dim over the set
    assert estimate.samples == k and estimate.bpd <= draw_means.mean().item() + 1e-12
    assert abs(estimate.bits_per_image - weighted.mean().item()) < 1e-9


def test_the_record_counts_the_pixels_before_padding():
    found = BitsEstimate(bpd=1.0, bits_per_image=1024.0, dims=1024, samples=3, n=5)
    assert found.record() == {"bpd": 1.0, "n": 5, "samples": 3, "dims": 1024,
                              "bits_per_image": 1024.0}  # fmt: skip
    padded = found.record(original_dims=784)
    assert padded["bpd_original"] == 1024 / 784 and padded["original_dims"] == 784
