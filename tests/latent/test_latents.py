"""Latent tools: seeded sampling, interpolation, attribute directions and manipulation."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import assert_one_line_error as one_line_error
from conftest import digits
from conftest import main_in_process as glowflow
from PIL import Image

from glowflow import Glow, preprocess
from glowflow.config import TrainConfig
from glowflow.latent.latents import (
    decode_latents,
    decode_with_overflow,
    encode_images,
    interpolate_at,
    interpolate_images,
    interpolate_latents,
    level_slices,
    manipulate_images,
    mix_levels,
    reconstruction_errors,
    sample_images,
    seed_latents,
)
from glowflow.train.trainer import Trainer


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A run folder with a briefly trained model on 16x16 digits, plus the data set spec."""
    root = tmp_path_factory.mktemp("latents")
    x, y = digits()
    attrs = np.stack([y % 2 == 1, y >= 5], 1).astype(np.int8) * 2 - 1  # -1/+1 like CelebA
    npz = root / "digits.npz"
    np.savez(npz, x=x, y=y, attrs=attrs, attr_names=np.array(["Odd", "Big"]))
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)  # module-scoped: the float32 fixture cannot serve
    cfg = TrainConfig(
        dataset=f"npz:{npz}", levels=2, depth=2, hidden_channels=16, batch_size=16,
        init_batch_size=64, val_fraction=0, steps=30, n_samples=4, device="cpu",
    )  # fmt: skip
    Trainer(cfg, root / "run").run()
    torch.set_default_dtype(old)
    return root / "run", f"npz:{npz}"


def load(run):
    from glowflow.hub.checkpoint import model_from_checkpoint

    return model_from_checkpoint(run)[0]


@pytest.mark.usefixtures("float32")
def test_seeded_samples_do_not_depend_on_the_batch(trained):
    model = load(trained[0])
    together = sample_images(model, [3, 4, 5], temperature=0.7)
    alone = sample_images(model, [4], temperature=0.7)
    assert together.dtype == torch.uint8 and together.shape == (3, 1, 16, 16)
    assert torch.equal(together[1], alone[0])
    assert torch.equal(seed_latents([7, 8], 10)[1], seed_latents([8], 10)[0])
    assert not torch.equal(together[0], together[1])


@pytest.mark.usefixtures("float32")
def test_reconstruction_is_exact_and_manipulation_moves_images(trained):
    model = load(trained[0])
    x, y = digits(8)
    images = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
    rows = manipulate_images(model, images, torch.randn(model.num_dims), [-1.0, 0.0, 1.0])
    assert rows.shape == (8, 3, 1, 16, 16)
    # alpha = 0 gives the input back, to within one grey level after quantisation
    assert (rows[:, 1].int() - images.int()).abs().max() <= 1
    assert (rows[:, 0].int() - images.int()).abs().float().mean() > 1


@pytest.mark.usefixtures("float32")
def test_interpolation_has_reconstructions_at_both_ends(trained):
    model = load(trained[0])
    x, _ = digits(4)
    images = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
    rows = interpolate_images(model, images[:2], images[2:], steps=5)
    assert rows.shape == (2, 5, 1, 16, 16)
    assert (rows[:, 0].int() - images[:2].int()).abs().max() <= 1
    assert (rows[:, -1].int() - images[2:].int()).abs().max() <= 1
    slerp = interpolate_images(model, images[:2], images[2:], steps=5, spherical=True)
    assert (slerp[:, -1].int() - images[2:].int()).abs().max() <= 1


def test_slerp_keeps_ends_and_interpolates_norms():
    a, b = torch.randn(50), 2 * torch.randn(50)
    path = interpolate_latents(a, b, 5, spherical=True)
    assert torch.allclose(path[0], a) and torch.allclose(path[-1], b)
    norms = path.norm(dim=1)
    assert torch.allclose(norms, torch.linspace(a.norm().item(), b.norm().item(), 5))
    lin = interpolate_latents(a, b, 3)
    assert torch.allclose(lin[1], (a + b) / 2)


def test_cli_sample_grid_with_temperature_rows(trained, tmp_path):
    run, _ = trained
    out = tmp_path / "temps.png"
    r = glowflow("sample", "--checkpoint", run, "--seeds", "0-4", "--temperatures", "0,0.5,1",
                 "--out", out)  # fmt: skip
    assert r.returncode == 0, r.stderr
    grid = np.asarray(Image.open(out))
    assert grid.shape == (3 * 18 + 2, 5 * 18 + 2, 3)  # 3 rows x 5 seeds of 16 px, 2 px gaps
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["seeds"] == [0, 1, 2, 3, 4] and record["temperatures"] == [0, 0.5, 1]
    # temperature 0 decodes the zero latent: every column of that row is the same image
    cells = [grid[2:18, 2 + 18 * k : 18 + 18 * k] for k in range(5)]
    assert all(np.array_equal(cells[0], c) for c in cells)
    one_line_error(glowflow("sample", "--checkpoint", run, "--label", "3"), "not class-cond")


def test_cli_interpolate_and_manipulate(trained, tmp_path):
    run, spec = trained
    out = tmp_path / "strip.png"
    r = glowflow("interpolate", "--checkpoint", run, "--dataset", spec, "--pairs", "3,17",
                 "5,9", "--steps", 4, "--out", out)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert np.asarray(Image.open(out)).shape == (2 * 18 + 2, 6 * 18 + 2, 3)
    # --images: PNG files, taken two by two
    x, _ = digits(2)
    files = []
    for k in range(2):
        files.append(tmp_path / f"d{k}.png")
        Image.fromarray(x[k, :, :, 0]).save(files[-1])
    r = glowflow("interpolate", "--checkpoint", run, "--images", *files, "--out", out)
    assert r.returncode == 0, r.stderr

    r = glowflow("manipulate", "--checkpoint", run, "--dataset", spec, "--list-attributes")
    assert r.returncode == 0 and "Odd" in r.stdout and "class:3" in r.stdout
    out = tmp_path / "grid.png"
    args = ["manipulate", "--checkpoint", run, "--dataset", spec, "--attribute", "Odd",
            "--images", "0,4,8", "--alphas", "-1,0,1", "--out", out]  # fmt: skip
    r = glowflow(*args)
    assert r.returncode == 0, r.stderr
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["reconstruction_max_grey_level_error"] <= 1
    assert record["direction"]["positives"] + record["direction"]["negatives"] == 96
    assert record["direction_from"] == "computed over --dataset"
    assert (run / "attributes.pt").is_file()
    assert glowflow(*args).returncode == 0
    assert json.loads(out.with_suffix(".json").read_text())["direction_from"] == "cached"
    r = glowflow("manipulate", "--checkpoint", run, "--dataset", spec, "--attribute",
                 "class:3-vs-8", "--out", out)  # fmt: skip
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize(
    "args,fragments",
    [
        (["--attribute", "Smiling"], ["unknown attribute", "Odd", "Big", "class:A-vs-B"]),
        (["--attribute", "odd"], ["did you mean Odd"]),
        (["--attribute", "class:11"], ["unknown class", "0, 1, 2"]),
        (["--attribute", "Odd", "--images", "5,500"], ["500", "0..95"]),
    ],
)
def test_cli_manipulate_errors_list_the_choices(trained, args, fragments, tmp_path):
    run, spec = trained
    r = glowflow("manipulate", "--checkpoint", run, "--dataset", spec, *args,
                 "--out", tmp_path / "x.png")  # fmt: skip
    one_line_error(r, *fragments)


def test_cli_attribute_without_negatives(trained, tmp_path):
    run, _ = trained
    x, y = digits()
    npz = tmp_path / "all_odd.npz"
    np.savez(npz, x=x, y=y, attrs=np.ones((len(x), 1), np.int8), attr_names=np.array(["Any"]))
    r = glowflow("manipulate", "--checkpoint", run, "--dataset", f"npz:{npz}",
                 "--attribute", "Any")  # fmt: skip
    one_line_error(r, "96 images with it and 0 without")


@pytest.mark.usefixtures("float32")
def test_reconstruction_check_uses_the_models_bit_depth(tmp_path):
    x, y = digits()
    npz = tmp_path / "d.npz"
    np.savez(npz, x=x, y=y)
    cfg = TrainConfig(
        dataset=f"npz:{npz}", levels=2, depth=1, hidden_channels=8, batch_size=16,
        init_batch_size=64, val_fraction=0, steps=3, n_samples=4, device="cpu", n_bits=5,
    )  # fmt: skip
    Trainer(cfg, tmp_path / "run").run()
    out = tmp_path / "m.png"
    r = glowflow("manipulate", "--checkpoint", tmp_path / "run", "--dataset", f"npz:{npz}",
                 "--attribute", "class:1", "--images", "0,1", "--out", out)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert (
        json.loads(out.with_suffix(".json").read_text())["reconstruction_max_grey_level_error"] == 0
    )


def small_model() -> Glow:
    model = Glow((1, 8, 8), levels=2, depth=1, hidden_channels=8).double()
    model.initialize(preprocess(torch.randint(0, 256, (16, 1, 8, 8), dtype=torch.uint8)))
    return model.eval()


def test_a_decode_that_overflows_is_drawn_black_with_a_warning(recwarn):
    model = small_model()
    eps = torch.randn(3, model.num_dims, generator=torch.Generator().manual_seed(1))
    eps[1] = float("inf")
    images, overflow = decode_with_overflow(model, eps, batch_size=2)
    assert overflow.tolist() == [False, True, False] and not recwarn.list  # flagged, not warned
    with pytest.warns(UserWarning, match="^1 image.*decoded to inf or NaN.*smaller alphas"):
        assert torch.equal(decode_latents(model, eps), images)
    assert (images[1] == 0).all()
    assert torch.equal(images[[0, 2]], decode_latents(model, eps[[0, 2]]))


def test_reconstruction_errors_compare_with_the_input_as_the_model_sees_it():
    images = torch.tensor([[[[0, 7], [8, 255]]], [[[100, 101], [102, 103]]]], dtype=torch.uint8)
    seen = images // 8 * 8  # what a 5-bit model sees: the bottom 3 bits dropped
    assert reconstruction_errors(images, seen, 5).tolist() == [0, 0]
    off = seen.clone()
    off[1, 0, 1, 1] += 16
    assert reconstruction_errors(images, off, 5).tolist() == [0, 16]
    assert reconstruction_errors(images, seen, 8).tolist() == [7, 7]  # 8 bits: every bit counts
    model = small_model()
    big = images.repeat(1, 1, 4, 4)  # (2, 1, 8, 8)
    back = decode_latents(model, encode_images(model, big))  # the flow is exact in float64
    assert reconstruction_errors(big, back, 8).tolist() == [0, 0]


def test_mixing_levels_takes_each_from_the_latent_it_names():
    model = small_model()
    fine, top = slices = level_slices(model)
    assert fine.start == 0 and fine.stop == top.start and top.stop == model.num_dims
    a, b = torch.randn(model.num_dims), torch.randn(model.num_dims)
    assert torch.equal(mix_levels(a, b, "ab", 0.3, False, slices), torch.cat([a[fine], b[top]]))
    assert torch.equal(mix_levels(a, b, "bb", 0.3, False, slices), b)
    at = torch.tensor([0.3], dtype=torch.float64)
    both = mix_levels(a, b, "mm", 0.3, True, slices)
    assert torch.equal(both, interpolate_at(a, b, at, spherical=True)[0])
    coarse = mix_levels(a, b, "am", 0.3, True, slices)
    assert torch.equal(coarse[fine], a[fine])
    assert torch.equal(coarse[top], interpolate_at(a[top], b[top], at, spherical=True)[0])


def test_exported_model_edits_image_files_with_its_own_directions(trained, tmp_path):
    run, spec = trained
    out = tmp_path / "exported"
    r = glowflow("export", run, out, "--heldout", spec, "--attributes", spec,
                        "--name", "digits", "--data-license", "CC BY-SA 3.0")  # fmt: skip
    assert r.returncode == 0, r.stderr
    card = (out / "README.md").read_text()
    assert "CC BY-SA 3.0" in card and "96" in card and "glowflow train" in card
    x, _ = digits(3)
    files = []
    for k in range(3):
        files.append(tmp_path / f"face{k}.png")
        Image.fromarray(x[k, :, :, 0]).resize((40, 40)).save(files[-1])  # any size will do
    grid = tmp_path / "odd.png"
    r = glowflow("manipulate", "--checkpoint", out, "--attribute", "Odd",
                        "--images", *files, "--alphas=-1,0,1", "--out", grid)  # fmt: skip
    assert r.returncode == 0, r.stderr
    record = json.loads(grid.with_suffix(".json").read_text())
    assert record["direction_from"] == "shipped with the model"
    assert record["images"] == [str(f) for f in files]
    assert record["reconstruction_max_grey_level_error"] <= 1
    assert np.asarray(Image.open(grid)).shape == (3 * 18 + 2, 3 * 18 + 2, 3)
    r = glowflow("interpolate", "--checkpoint", out, "--images", *files[:2],
                        "--steps", 3, "--out", tmp_path / "strip.png")  # fmt: skip
    assert r.returncode == 0, r.stderr
    r = glowflow("manipulate", "--checkpoint", out, "--attribute", "class:3",
                        "--images", *files)  # fmt: skip
    one_line_error(r, "give --dataset SPEC", "it ships Odd, Big")
    r = glowflow("manipulate", "--checkpoint", out, "--attribute", "Odd",
                        "--images", "0,1", files[0])  # fmt: skip
    one_line_error(r, "indices or image files, not both")


def test_rows_are_temperatures_or_labels_and_bad_labels_name_the_fix():
    from glowflow.latent.latents import SampleError, row_labels, sample_rows

    plain = Glow((1, 4, 4), levels=1, depth=1, hidden_channels=4)
    conditional = Glow((1, 4, 4), levels=1, depth=1, hidden_channels=4, num_classes=3)
    assert row_labels(plain, None) == [None]
    assert row_labels(conditional, None) == [0, 1, 2] == row_labels(conditional, "all")
    assert row_labels(conditional, "b", ["a", "b", "c"]) == [1]
    with pytest.raises(SampleError, match="not class-conditional"):
        row_labels(plain, "1")
    rows = sample_rows(conditional, [4, 5], [0.5], [0, 2])
    assert [r.shape for r in rows] == [(2, 1, 4, 4)] * 2
    # a row is what sample_images draws for its label, image k fixed by seed k
    y = torch.full((2,), 2, dtype=torch.long)
    assert torch.equal(rows[1], sample_images(conditional, [4, 5], 0.5, y))
    with pytest.raises(SampleError, match="rows are temperatures"):
        sample_rows(conditional, [1], [0.5, 1.0], [0, 1])
    with pytest.raises(SampleError, match="names no seed"):
        sample_rows(plain, [], [0.7], [None])
