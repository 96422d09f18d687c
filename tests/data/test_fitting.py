"""A data set loaded to fit a model: refused by name where its images or labels do not fit."""

from __future__ import annotations

import numpy as np
import pytest

from glowflow import Glow
from glowflow.data.fitting import load_fitting
from glowflow.data.formats import DataError


@pytest.fixture
def grey_npz(tmp_path):
    path = tmp_path / "grey.npz"
    rng = np.random.default_rng(0)
    np.savez(path, x=rng.integers(0, 256, (6, 6, 6), dtype=np.uint8), y=np.arange(6) % 3)
    return path


def test_a_fitting_set_comes_back_padded_to_the_models_shape(grey_npz):
    model = Glow((1, 8, 8), levels=1, depth=1, hidden_channels=4)
    data = load_fitting(f"npz:{grey_npz}", model, pad=1)
    assert data.image_shape == (1, 8, 8) and len(data) == 6


def test_without_pad_smaller_images_get_the_zero_border_the_model_was_trained_with(grey_npz):
    model = Glow((1, 10, 10), levels=1, depth=1, hidden_channels=4)
    data = load_fitting(f"npz:{grey_npz}", model)
    raw = np.load(grey_npz)["x"]
    assert data.image_shape == (1, 10, 10) and data.pad == 2 and data.original_dims == 36
    assert np.array_equal(data.images[:, 0, 2:-2, 2:-2].numpy(), raw)
    assert data.images.sum() == int(raw.sum())  # the border is zeros


@pytest.mark.parametrize(
    "shape, kw, fragment",
    [
        ((3, 8, 8), {"pad": 1}, "3-channel images"),
        ((1, 8, 12), {}, "match them with --image-size or --pad"),
        ((1, 8, 8), {"pad": 0}, "match them with --image-size or --pad"),
    ],
)
def test_sets_that_do_not_fit_are_refused_naming_the_fix(grey_npz, shape, kw, fragment):
    model = Glow(shape, levels=1, depth=1, hidden_channels=4)
    with pytest.raises(DataError, match=fragment):
        load_fitting(f"npz:{grey_npz}", model, **kw)


def test_labels_out_of_a_conditional_models_range_are_refused_unless_unchecked(grey_npz):
    model = Glow((1, 8, 8), levels=1, depth=1, hidden_channels=4, num_classes=2)
    with pytest.raises(DataError):
        load_fitting(f"npz:{grey_npz}", model, pad=1)
    assert len(load_fitting(f"npz:{grey_npz}", model, pad=1, check_labels=False)) == 6
