"""A run's data: the validation split or set, and the refusals before any training."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import digits, small_config

from glowflow.config import ConfigError
from glowflow.train.trainsets import load_train_val


def test_a_fraction_is_held_out_and_the_classes_are_counted_before_the_split(digits_npz):
    train, val, num_classes = load_train_val(small_config(digits_npz, val_fraction=0.25), 16)
    assert (len(train), len(val)) == (72, 24) and num_classes == 10
    again, _, _ = load_train_val(small_config(digits_npz, val_fraction=0.25), 16)
    assert (train.images == again.images).all()  # the same split for the same seed
    train, val, _ = load_train_val(small_config(digits_npz, val_fraction=0), 16)
    assert len(train) == 96 and val is None


def test_a_separate_validation_set_must_have_the_training_images_shape(digits_npz, tmp_path):
    x, y = digits(20)
    np.savez(tmp_path / "val.npz", x=x, y=y)
    np.savez(tmp_path / "big.npz", x=np.zeros((4, 32, 32, 1), np.uint8))
    cfg = small_config(digits_npz, val_dataset=f"npz:{tmp_path / 'val.npz'}")
    train, val, _ = load_train_val(cfg, 16)
    assert (len(train), len(val)) == (96, 20)
    cfg = small_config(digits_npz, val_dataset=f"npz:{tmp_path / 'big.npz'}")
    with pytest.raises(ConfigError, match=r"validation images are \(1, 32, 32\).*--image-size"):
        load_train_val(cfg, 16)


def test_too_few_images_or_missing_labels_are_refused(digits_npz, tmp_path):
    with pytest.raises(ConfigError, match="72 images, fewer than one batch of 80"):
        load_train_val(small_config(digits_npz), 80)
    np.savez(tmp_path / "unlabelled.npz", x=digits(40)[0])
    cfg = small_config(digits_npz, dataset=f"npz:{tmp_path / 'unlabelled.npz'}", y_condition=True)
    with pytest.raises(ConfigError, match="--y-condition needs labels"):
        load_train_val(cfg, 16)
