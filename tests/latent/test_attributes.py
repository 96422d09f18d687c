"""Attribute masks over a labelled data set, and every direction in one pass."""

from __future__ import annotations

import pytest
import torch

from glowflow import Glow, preprocess
from glowflow.data.datasets import DataError, ImageData
from glowflow.latent.attributes import (
    all_directions,
    attribute_masks,
    cache_entry,
    cached_direction,
    list_attributes,
)
from glowflow.latent.latents import attribute_direction


def labelled(n: int = 12) -> ImageData:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 1, 4, 4), dtype=torch.uint8, generator=g)
    labels = torch.arange(n) % 3
    attrs = torch.stack([labels == 1, torch.arange(n) < 5], 1)
    return ImageData(images, labels, attrs, ["One", "Early"], ["a", "b", "c"], "toy")


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


def test_one_pass_gives_each_attributes_own_direction():
    data = labelled()
    model = Glow((1, 4, 4), levels=1, depth=1, hidden_channels=4)
    model.initialize(preprocess(data.images, 8))
    shipped = all_directions(model, data, batch_size=5)
    assert shipped["names"] == ["One", "Early"]
    for k, name in enumerate(shipped["names"]):
        pos, neg, _ = attribute_masks(data, name)
        direction, info = attribute_direction(model, data.images, pos, neg)
        assert torch.allclose(shipped["directions"][k].double(), direction.double(), atol=1e-5)
        assert shipped["info"][k]["positives"] == info["positives"]


def test_the_direction_cache_is_keyed_by_content_not_by_file_metadata(tmp_path):
    """A cached direction is reused for the same weights and images only: a model of the same
    size written over the same file with its modification time kept, a changed weight in
    memory, or a changed image at the same path all compute it again."""
    data = labelled()
    model = Glow((1, 4, 4), levels=1, depth=1, hidden_channels=4)
    model.initialize(preprocess(data.images))
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"the same bytes, size and time whatever the model")
    options = {"attribute": "Early", "max_images": None}

    def lookup(m, d):
        cache, key = cache_entry(weights, m, d, options)
        return cached_direction(m, cache, key, d, "Early")

    first, _, was_cached = lookup(model, data)
    assert not was_cached and lookup(model, data)[2]  # the same content: from the cache
    other = Glow((1, 4, 4), levels=1, depth=1, hidden_channels=4)  # same size, other weights
    other.load_state_dict(model.state_dict())
    with torch.no_grad():
        other.levels[0].steps[0].actnorm.bias.add_(0.5)
    direction, _, was_cached = lookup(other, data)
    assert not was_cached and not torch.equal(direction, first)
    changed = data.subset(torch.arange(len(data)))
    changed.images = changed.images.clone()
    changed.images[0, 0, 0, 0] ^= 1
    assert not lookup(model, changed)[2]
    assert lookup(model, data)[2] and lookup(other, data)[2]  # both entries are kept
