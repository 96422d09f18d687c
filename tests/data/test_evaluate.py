"""Bits/dim over a data set: the mean over every image, reproducible from the seed."""

from __future__ import annotations

import torch
from conftest import randomize_

from glowflow import Glow, preprocess, seeding
from glowflow.data.evaluate import evaluate_bpd


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
