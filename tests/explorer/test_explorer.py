"""The explorer's model side: held images, edits, mixes and samples, each the same picture the
library's latent tools (and so the ``glowflow`` commands) draw."""

from __future__ import annotations

import hashlib
import io

import numpy as np
import pytest
import torch
from conftest import digits, randomize_
from PIL import Image

from glowflow import Glow
from glowflow.explorer.explorer import Explorer, ExplorerError, UnknownImage
from glowflow.hub.gallery import Gallery
from glowflow.latent.latents import (
    decode_latents,
    encode_images,
    interpolate_images,
    manipulate_images,
    sample_images,
)

SHAPE = (1, 16, 16)


@pytest.fixture(scope="module")
def model() -> Glow:
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    torch.manual_seed(0)
    m = Glow(SHAPE, levels=2, depth=2, hidden_channels=8)
    x, _ = digits(32)
    m.initialize(torch.from_numpy(x).permute(0, 3, 1, 2).double() / 256 - 0.5)
    randomize_(m, 0.05)
    torch.set_default_dtype(old)
    return m.eval()


@pytest.fixture(scope="module")
def gallery() -> Gallery:
    x, _ = digits(6)
    images = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
    return Gallery(images, [f"digit {i}" for i in range(6)], "terms", "npz:digits.npz")


@pytest.fixture(scope="module")
def directions(model) -> dict:
    g = torch.Generator().manual_seed(1)
    d = 0.2 * torch.randn(2, model.num_dims, generator=g)
    return {"names": ["Odd", "Big"], "directions": d}


@pytest.fixture
def explorer(model, directions, gallery) -> Explorer:
    return Explorer(model, directions, gallery, checkpoint="run", capacity=2,
                    gallery_words=["--dataset", "npz:digits.npz"])  # fmt: skip


def png(image: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(image).save(out, format="PNG")
    return out.getvalue()


def test_gallery_images_are_encoded_exactly_with_their_bits_per_dim(explorer, model, gallery):
    assert [e.id for e in explorer.gallery] == [f"g{i}" for i in range(6)]
    x = gallery.images.double() / 256 - 0.5 + 1 / 512  # the centres of the pixel bins
    with torch.no_grad():
        want = model.bits_per_dim(x)
    for k, entry in enumerate(explorer.gallery):
        assert entry.reconstruction_error == 0
        assert entry.bpd == pytest.approx(float(want[k]), abs=1e-9)
        assert torch.equal(explorer.edit(entry.id, {}).image, gallery.images[k])


def test_an_edit_is_the_manipulation_the_library_draws(explorer, model, directions, gallery):
    d = directions["directions"]
    got = explorer.edit("g2", {"Odd": 0.75}).image
    want = manipulate_images(model, gallery.images[2:3], d[0], [0.75])[0, 0]
    assert torch.equal(got, want)
    both = explorer.edit("g2", {"Odd": 0.75, "Big": -1.5}).image
    eps = encode_images(model, gallery.images[2:3])
    assert torch.equal(both, decode_latents(model, eps + 0.75 * d[0] - 1.5 * d[1])[0])
    assert not torch.equal(both, got)
    assert not explorer.edit("g2", {"Odd": 0.75}).overflow


def test_an_overflowing_picture_says_so_instead_of_warning(model, gallery, recwarn):
    huge = {"names": ["Far"], "directions": torch.full((1, model.num_dims), 1e6)}
    picture = Explorer(model, huge, gallery).edit("g0", {"Far": 2})
    assert picture.overflow and "try smaller amounts" in picture.warning
    assert not [w for w in recwarn if "inf or NaN" in str(w.message)]


def test_zero_amounts_are_dropped_and_order_follows_the_attributes(explorer):
    assert explorer.check_amounts({"Big": 1, "Odd": 0}) == {"Big": 1.0}
    assert explorer.check_amounts({"Big": 1, "Odd": 2}) == {"Odd": 2.0, "Big": 1.0}


def test_a_sample_is_the_seeds_sample(explorer, model):
    for seed, t in ((0, 0.7), (123456, 1.0), (5, 0.0)):
        assert torch.equal(explorer.sample(seed, t).image, sample_images(model, [seed], t)[0])


@pytest.mark.parametrize("spherical", [False, True])
def test_mixing_every_level_is_the_interpolation(explorer, model, gallery, spherical):
    row = interpolate_images(model, gallery.images[1:2], gallery.images[4:5], 11, spherical)[0]
    path = "spherical" if spherical else "linear"
    for k in (0, 3, 10):
        assert torch.equal(explorer.mix("g1", "g4", k / 10, path, "mm").image, row[k])


def test_levels_come_from_the_image_they_name(explorer, model, gallery):
    fine, top = explorer.level_slices()
    sizes = [c * h * w for c, h, w in model.latent_shapes()]
    assert (fine.stop - fine.start, top.stop - top.start) == tuple(sizes)
    assert sizes[0] >= sizes[1]  # the finest level is split off first
    a, b = explorer.image("g0"), explorer.image("g5")
    assert torch.equal(explorer.mix("g0", "g5", 0.3, "linear", "aa").image, a.image)
    assert torch.equal(explorer.mix("g0", "g5", 0.3, "linear", "bb").image, b.image)
    eps = torch.cat([a.eps[fine], b.eps[top]])[None]
    mixed = explorer.mix("g0", "g5", 0.3, "linear", "ab").image
    assert torch.equal(mixed, decode_latents(model, eps)[0])


def test_an_upload_is_held_under_its_content_hash_until_pushed_out(explorer):
    x, _ = digits(40)
    files = [png(np.repeat(np.repeat(x[i + 30, :, :, 0], 3, 0), 3, 1)) for i in range(3)]
    first = explorer.add_image(files[0])
    assert first.id == hashlib.sha256(files[0]).hexdigest()[:16]
    assert first.framing.method == "centre crop" and first.framing.notice is None
    assert first.source_size == (48, 48) and first.image.shape == SHAPE
    assert first.reconstruction_error == 0
    assert explorer.add_image(files[0]) is first  # the same file is not encoded twice
    explorer.add_image(files[1])
    explorer.add_image(files[2])  # capacity 2: the least recently used one goes
    with pytest.raises(UnknownImage) as e:
        explorer.image(first.id)
    assert e.value.image_id == first.id and "upload the file again" in str(e.value)


@pytest.mark.parametrize("image_id", ["g6", "g01", "0123456789abcdef"])
def test_ids_not_held_are_unknown(explorer, image_id):
    with pytest.raises(UnknownImage):
        explorer.image(image_id)


@pytest.mark.parametrize("image_id", ["g-1", "../g0", "", "g0.png", "g\u00b2", "g\u0663",
                                      "0123456789ABCDEF", "0123456789abcdef0"])  # fmt: skip
def test_text_that_is_no_image_id_is_refused_naming_the_forms(explorer, image_id):
    with pytest.raises(ExplorerError) as e:  # "g²" once passed str.isdigit, then failed int()
        explorer.image(image_id)
    assert not isinstance(e.value, UnknownImage)
    assert "g and a number" in str(e.value) and "16 hex digits" in str(e.value)


@pytest.mark.parametrize(
    "call, fragment",
    [(lambda e: e.edit("g0", {"Smiling": 1}), "unknown attribute 'Smiling'"),
     (lambda e: e.edit("g0", {"Odd": 2.5}), "Odd must lie in [-2.0, 2.0]"),
     (lambda e: e.edit("g0", {"Odd": float("inf")}), "Odd must lie"),
     (lambda e: e.sample(-1, 0.7), "seed must lie"),
     (lambda e: e.sample(2**31, 0.7), "seed must lie"),
     (lambda e: e.sample(0, float("nan")), "temperature must lie"),
     (lambda e: e.sample(0, 0.5, label=1), "not class-conditional"),
     (lambda e: e.mix("g0", "g1", 1.5), "t must lie"),
     (lambda e: e.mix("g0", "g1", 0.5, "curved"), "path must be one of linear, spherical"),
     (lambda e: e.mix("g0", "g1", 0.5, "linear", "mmm"), "levels must be 2 letters"),
     (lambda e: e.mix("g0", "g1", 0.5, "linear", "mx"), "levels must be 2 letters")],
)  # fmt: skip
def test_values_out_of_range_are_refused_with_what_is_allowed(explorer, call, fragment):
    with pytest.raises(ExplorerError) as e:
        call(explorer)
    assert fragment in str(e.value)


def test_commands_are_shown_where_one_draws_the_same_picture(explorer):
    cmd = explorer.edit_command("g3", {"Big": -0.5})
    assert cmd == ("glowflow manipulate --checkpoint run --dataset npz:digits.npz --images 3 "
                   "--attribute Big --alphas=-0.5 --out edit.png")  # fmt: skip
    assert "--alphas=0" in explorer.edit_command("g3", {})
    assert explorer.edit_command("g3", {"Big": 1, "Odd": 1}) is None  # one attribute at a time
    assert explorer.sample_command(7, 0.5) == (
        "glowflow sample --checkpoint run --seeds 7 --temperature 0.5 --out sample-7.png"
    )
    mix = explorer.mix_command("g1", "g2", 0.3, "spherical", "mm")
    assert "--pairs 1,2 --steps 11 --spherical" in mix and mix.endswith("column 5 of 13")
    assert explorer.mix_command("g1", "g2", 0.35, "linear", "mm") is None
    assert explorer.mix_command("g1", "g2", 0.3, "linear", "am") is None


def test_a_class_conditional_model_edits_each_image_with_its_likeliest_class():
    torch.manual_seed(0)
    model = randomize_(Glow(SHAPE, levels=2, depth=1, hidden_channels=8, num_classes=3), 0.05)
    x, _ = digits(4)
    images = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
    model.initialize(images.double() / 256 - 0.5, torch.tensor([0, 1, 2, 0]))
    model.eval()
    explorer = Explorer(model, None, Gallery(images, list("abcd"), None, "s"), class_names=None)
    xs = images.double() / 256 - 0.5 + 1 / 512
    logps = torch.stack([model.log_prob(xs, torch.full((4,), c)) for c in range(3)], 1)
    assert [e.label for e in explorer.gallery] == logps.argmax(1).tolist()
    assert all(e.reconstruction_error == 0 for e in explorer.gallery)
    assert explorer.model_info()["num_classes"] == 3
    y = torch.full((1,), 2)
    assert torch.equal(explorer.sample(4, 0.6, label=2).image, sample_images(model, [4], 0.6, y)[0])
    with pytest.raises(ExplorerError, match=r"label must lie in \[0, 2\]"):
        explorer.sample(4, 0.6, label=3)
