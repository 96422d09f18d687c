"""A pretrained model's gallery: written, read back, readable as an npz data set, shipped with
the bundled models, and never left behind for another model."""

from __future__ import annotations

import pytest
import torch
from conftest import digits

from glowflow import Glow
from glowflow.data.datasets import load_dataset
from glowflow.data.imagedata import ImageData
from glowflow.explorer.explorer import Explorer, ExplorerError
from glowflow.hub.gallery import Gallery, load_gallery, save_gallery
from glowflow.hub.names import bundled_root
from glowflow.hub.pretrained import PretrainedError, save_pretrained


def small_set() -> ImageData:
    x, y = digits(5)
    return ImageData(torch.from_numpy(x).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(y),
                     class_names=[str(i) for i in range(10)], name="digits")  # fmt: skip


def test_a_gallery_reads_back_with_names_note_and_labels(tmp_path):
    data = small_set()
    save_gallery(tmp_path, data, list("abcde"), "terms of use")
    g = load_gallery(tmp_path)
    assert torch.equal(g.images, data.images) and torch.equal(g.labels, data.labels)
    assert g.names == list("abcde") and g.note == "terms of use"
    again = load_dataset(g.spec)  # the spec every command reads it with
    assert torch.equal(again.images, data.images)


def test_no_gallery_is_none_and_a_damaged_one_is_a_one_line_error(tmp_path):
    assert load_gallery(tmp_path) is None
    (tmp_path / "gallery.npz").write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(PretrainedError, match="not a gallery file"):
        load_gallery(tmp_path)


@pytest.mark.parametrize("name, shape", [("celeba64", (3, 64, 64)), ("mnist", (1, 28, 28))])
def test_the_bundled_models_ship_36_held_out_images_at_their_size(name, shape):
    g = load_gallery(bundled_root() / name)
    assert g.images.shape == (36, *shape) and g.images.dtype == torch.uint8
    assert g.note and len(set(g.names)) == 36


def test_saving_a_new_model_over_a_folder_drops_the_old_gallery(tmp_path):
    save_gallery(tmp_path, small_set(), list("abcde"))
    model = Glow((1, 16, 16), levels=2, depth=1, hidden_channels=8)
    model.initialize(torch.rand(4, 1, 16, 16) - 0.5)
    (tmp_path / "model.safetensors").write_bytes(b"")  # it is a pretrained folder
    save_pretrained(model, tmp_path)
    assert load_gallery(tmp_path) is None


def test_a_gallery_of_another_size_is_refused():
    model = Glow((1, 8, 8), levels=2, depth=1, hidden_channels=8)
    data = small_set()
    with pytest.raises(ExplorerError, match=r"holds images \(1, 16, 16\), the model takes"):
        Explorer(model, None, Gallery(data.images, list("abcde"), None, "npz:x.npz"))
