"""The command lines the explorer shows beside a picture, for gallery images and uploads."""

from __future__ import annotations

import torch

from glowflow.explorer.commands import Commands
from glowflow.explorer.entries import Entry
from glowflow.explorer.faces import Framing

WHOLE = Framing("as given", (0.0, 0.0, 16.0, 16.0), None)


def entry(image_id: str, gallery_index: int | None = None) -> Entry:
    image = torch.zeros(1, 16, 16, dtype=torch.uint8)
    return Entry(image_id, "x", image, torch.zeros(256), None, 1.0, 0, WHOLE, (16, 16),
                 gallery_index)  # fmt: skip


COMPUTED = Commands("run", ["--dataset", "npz:d.npz"], ["--dataset", "npz:d.npz",
                    "--max-images", "300"], levels=2)  # fmt: skip


def test_computed_directions_name_their_data_set_for_gallery_images_and_uploads():
    words = COMPUTED.image_words(entry("g4", 4))
    assert words == ["--dataset", "npz:d.npz", "--max-images", "300", "--images", "4"]
    upload = COMPUTED.image_words(entry("0123456789abcdef"))
    assert upload[-2:] == ["--images", "0123456789abcdef.png"] and "--max-images" in upload
    cmd = COMPUTED.edit(entry("g4", 4), {"class:7": 1.0}, ["class:7"])
    assert cmd.startswith("glowflow manipulate --checkpoint run --dataset npz:d.npz")
    assert cmd.endswith("--attribute class:7 --alphas=1 --out edit.png")


def test_no_command_where_none_draws_the_same_picture():
    shipped = Commands("celeba64", None, [], levels=2)
    assert shipped.image_words(entry("g0", 0)) is None  # no data set names the gallery
    assert shipped.image_words(entry("abc")) == ["--images", "abc.png"]
    conditional = Commands("run", ["--dataset", "s"], [], conditional=True, levels=2)
    assert conditional.image_words(entry("abc")) is None  # an upload's label is a guess
    assert conditional.mix(entry("g0", 0), entry("g1", 1), 0.5, "linear", "mm") is None
    assert COMPUTED.edit(entry("g0", 0), {}, []) is None  # a model without directions
    assert COMPUTED.mix(entry("g0", 0), entry("abc"), 0.5, "linear", "mm") is None


def test_a_sample_command_names_its_label():
    cmd = Commands("run", levels=2).sample(3, 0.75, label=2)
    assert cmd == ("glowflow sample --checkpoint run --seeds 3 --temperature 0.75 "
                   "--out sample-3.png --label 2")  # fmt: skip
