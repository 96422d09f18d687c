"""Attribute masks over a labelled data set, and the one formula of a direction: the
difference of two mean latents, for one attribute or every attribute in one pass."""

from __future__ import annotations

import pytest
import torch
from conftest import labelled

from glowflow import Glow, preprocess
from glowflow.data.formats import DataError
from glowflow.data.imagedata import ImageData
from glowflow.latent.attributes import (
    all_directions,
    attribute_direction,
    attribute_masks,
    list_attributes,
    mean_differences,
)
from glowflow.latent.latents import encode_images


def test_masks_for_attributes_and_class_specs():
    data = labelled()
    pos, neg, _ = attribute_masks(data, "Early")
    assert pos.sum() == 5 and torch.equal(neg, ~pos)
    pos, neg, _ = attribute_masks(data, "class:b-vs-c")
    assert torch.equal(pos, data.labels == 1) and torch.equal(neg, data.labels == 2)
    pos, neg, _ = attribute_masks(data, "class:0")
    assert torch.equal(neg, data.labels != 0)
    with pytest.raises(DataError, match="did you mean Early"):
        attribute_masks(data, "early")
    with pytest.raises(DataError, match="unknown class 'd'; choose one of a, b, c"):
        attribute_masks(data, "class:d")
    with pytest.raises(DataError, match="0 without"):
        attribute_masks(data.subset(torch.tensor([1, 4])), "One")


def test_listing_counts_each_attribute_and_class():
    text = list_attributes(labelled())
    assert "One\t4 of 12" in text and "Early\t5 of 12" in text and "class:c\t4 of 12" in text


def model_for(data: ImageData) -> Glow:
    model = Glow((1, 4, 4), levels=1, depth=1, hidden_channels=4)
    model.initialize(preprocess(data.images, 8))
    return model.eval()


def test_each_difference_is_of_the_means_of_its_two_sides():
    """Sides that leave images out (class A against class B) and columns side by side."""
    data = labelled()
    model = model_for(data)
    positive = torch.stack([data.labels == 0, data.attrs[:, 1]], 1)
    negative = torch.stack([data.labels == 2, ~data.attrs[:, 1]], 1)
    got, n_pos, n_neg = mean_differences(model, data.images, positive, negative, batch_size=5)
    eps = encode_images(model, data.images).double()
    for k in range(2):
        want = eps[positive[:, k]].mean(0) - eps[negative[:, k]].mean(0)
        assert torch.allclose(got[k], want, atol=1e-12)
    assert n_pos.tolist() == [4, 5] and n_neg.tolist() == [4, 7]


def test_only_the_images_on_a_side_are_encoded():
    data = labelled()
    model = model_for(data)
    seen = []
    model.encode = lambda x, y=None: seen.append(len(x)) or torch.zeros(len(x), model.num_dims)
    positive, negative = data.labels == 0, data.labels == 1
    attribute_direction(model, data.images, positive, negative, batch_size=3)
    assert sum(seen) == 8  # of 12: the 4 images of class 2 are on neither side


def test_attribute_direction_is_difference_of_means():
    model = Glow((1, 8, 8), levels=2, depth=1, hidden_channels=8).double()
    images = torch.randint(0, 256, (20, 1, 8, 8), dtype=torch.uint8)
    model.initialize(preprocess(images, dtype=torch.float64))
    model.eval()
    positive = torch.arange(20) % 3 == 0
    direction, info = attribute_direction(model, images, positive, batch_size=7)
    eps = encode_images(model, images)
    expected = eps[positive].mean(0) - eps[~positive].mean(0)
    assert torch.allclose(direction, expected, atol=1e-10)
    assert (info["positives"], info["negatives"]) == (7, 13)
    with pytest.raises(ValueError, match="with and without"):
        attribute_direction(model, images, torch.zeros(20, dtype=torch.bool))


def test_one_pass_gives_each_attributes_own_direction():
    data = labelled()
    data.attrs = torch.cat([data.attrs, torch.ones(12, 1, dtype=torch.bool)], 1)
    data.attr_names = ["One", "Early", "Always"]
    model = model_for(data)
    shipped = all_directions(model, data, batch_size=5)
    assert shipped["names"] == ["One", "Early"]  # "Always" has no image without it
    assert shipped["directions"].dtype == torch.float32
    for k, name in enumerate(shipped["names"]):
        pos, neg, _ = attribute_masks(data, name)
        direction, info = attribute_direction(model, data.images, pos, neg)
        assert torch.allclose(shipped["directions"][k].double(), direction.double(), atol=1e-5)
        assert shipped["info"][k]["positives"] == info["positives"]
    data.attrs = data.attrs[:, 2:]
    data.attr_names = ["Always"]
    with pytest.raises(DataError, match="both with and without"):
        all_directions(model, data)
