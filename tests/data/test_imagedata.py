"""ImageData (:mod:`glowflow.data.imagedata`): shapes checked, classes counted, subsets, and
class names or numbers turned into labels."""

from __future__ import annotations

import pytest
import torch
from conftest import make_data

from glowflow.data.formats import DataError
from glowflow.data.imagedata import ImageData, find_label, label_names


def test_image_data_basics() -> None:
    data = make_data()
    assert len(data) == 20 and data.image_shape == (1, 2, 2) and data.num_classes == 4
    data.class_names = list("abcdef")
    assert data.num_classes == 6
    sub = data.subset(slice(2, 5))
    assert sub.images[:, 0, 0, 0].tolist() == [2, 3, 4] and sub.labels.tolist() == [2, 3, 0]
    assert sub.attrs.shape == (3, 2) and sub.class_names == data.class_names
    with pytest.raises(DataError, match="uint8"):
        ImageData(torch.zeros(2, 1, 2, 2))


def test_class_names_and_numbers_become_labels() -> None:
    assert label_names(None, 3) == ["0", "1", "2"]
    assert label_names(["cat", "dog"], 2) == ["cat", "dog"]
    assert find_label(["cat", "dog"], "dog") == 1 and find_label(["cat", "dog"], "0") == 0
    with pytest.raises(DataError, match="unknown class 'bird'; choose one of cat, dog"):
        find_label(["cat", "dog"], "bird")
    with pytest.raises(DataError, match="unknown class '2'"):
        find_label(["cat", "dog"], "2")
    data = ImageData(torch.zeros(2, 1, 1, 1, dtype=torch.uint8), labels=torch.tensor([0, 2]))
    assert data.label_names == ["0", "1", "2"] and data.label_index("2") == 2
