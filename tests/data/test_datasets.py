"""Data set specs (:mod:`glowflow.data.datasets`): spec and option errors in one line, the short
names of specs, the help text, and validation splits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_data

from glowflow.data import datasets
from glowflow.data.datasets import (
    BUILTIN,
    KINDS,
    DataError,
    describe_specs,
    load_dataset,
    split_validation,
)


@pytest.mark.parametrize(
    "spec, name",
    [
        ("npz:/data/sets/test.npz", "test"),
        ("folder:/data/letters/", "letters"),
        ("mnist:/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz", "fashion-mnist-t10k"),
        ("mnist:/data/mnist", "mnist"),
        ("mnist-mini", "mnist-mini"),
    ],
)
def test_dataset_name_is_the_file_or_folder_name(spec: str, name: str) -> None:
    assert datasets.dataset_name(spec) == name


# --- specs and options -----------------------------------------------------------------------


def test_spec_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(f"folder:{tmp_path / 'missing'}")
    with pytest.raises(
        DataError, match=r"unknown data set kind 'imagenet'.*mnist, cifar10.*mnist-mini"
    ):
        load_dataset(f"imagenet:{tmp_path}")
    with pytest.raises(DataError, match="has no KIND: prefix.*folder:"):
        load_dataset(str(tmp_path))
    with pytest.raises(DataError, match="has no path"):
        load_dataset("npz:")
    with pytest.raises(DataError, match="npz: needs a .npz file"):
        load_dataset(f"npz:{tmp_path}")
    (tmp_path / "f.npz").write_bytes(b"")
    with pytest.raises(DataError, match="folder: needs a folder"):
        load_dataset(f"folder:{tmp_path / 'f.npz'}")
    monkeypatch.setattr(datasets.os, "access", lambda *args, **kwargs: False)
    with pytest.raises(DataError, match="cannot read .*permission denied"):
        load_dataset(f"folder:{tmp_path}")


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"on_bad_image": "ignore"}, "on_bad_image must be one of"),
        ({"image_size": 0}, "image_size must be a positive"),
        ({"pad": -1}, "pad must be 0 or more"),
        ({"limit": 0}, "limit must be at least 1"),
    ],
)
def test_option_errors(options: dict, match: str) -> None:
    with pytest.raises(DataError, match=match):
        load_dataset(BUILTIN, **options)


def test_errors_are_one_line_value_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError) as info:
        load_dataset(f"mnist:{tmp_path}")
    assert isinstance(info.value, DataError) and "\n" not in str(info.value)


def test_describe_specs_names_every_kind() -> None:
    text = describe_specs()
    assert BUILTIN in text and "\n" not in text
    assert all(f"{kind}:" in text for kind in KINDS)


# --- validation splits ----------------------------------------------------------------------------


def test_split_validation_sizes_disjoint_and_deterministic() -> None:
    data = make_data(20)
    train, val = split_validation(data, 0.25, seed=3)
    assert (len(train), len(val)) == (15, 5)
    ids_train = train.images[:, 0, 0, 0].tolist()
    ids_val = val.images[:, 0, 0, 0].tolist()
    assert sorted(ids_train + ids_val) == list(range(20))
    assert ids_train == sorted(ids_train) and ids_val == sorted(ids_val)
    assert val.labels.tolist() == [i % 4 for i in ids_val]
    again = split_validation(data, 0.25, seed=3)[1].images[:, 0, 0, 0].tolist()
    other = split_validation(data, 0.25, seed=4)[1].images[:, 0, 0, 0].tolist()
    assert again == ids_val and other != ids_val


@pytest.mark.parametrize(("n", "fraction"), [(20, 0.0), (20, 1.0), (20, -0.1), (3, 0.1), (3, 0.9)])
def test_split_validation_errors(n: int, fraction: float) -> None:
    with pytest.raises(DataError, match="fraction"):
        split_validation(make_data(n), fraction)


def test_the_padding_a_loader_adds_is_recorded_and_kept_by_subsets(tmp_path):
    builtin = load_dataset("mnist-mini", limit=4)  # MNIST as it is: 28x28, no border
    assert builtin.pad == 0 and builtin.image_shape == (1, 28, 28)
    framed = load_dataset("mnist-mini", limit=4, pad=2)
    assert framed.image_shape == (1, 32, 32) and torch.equal(framed.images[:, :, 2:30, 2:30],
                                                             builtin.images)  # fmt: skip
    assert framed.original_dims == 784 and framed.subset(slice(0, 2)).pad == 2
    path = tmp_path / "x.npz"
    np.savez(path, x=np.zeros((3, 6, 6, 3), dtype=np.uint8))
    assert load_dataset(f"npz:{path}").pad == 0
    padded = load_dataset(f"npz:{path}", pad=1)
    assert padded.pad == 1 and padded.original_dims == 3 * 6 * 6
