"""Pretrained folders: exact round trips, strict loading, naming, the Hub and run export."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import torch
from conftest import assert_one_line, tiny_model
from safetensors.torch import load, save_file

from glowflow import Glow
from glowflow.hub import pretrained as pt
from glowflow.hub.load import load_model
from glowflow.hub.pretrained import PretrainedError
from glowflow.nn import invconv


def payload_bytes(path: Path) -> int:
    """Bytes of tensor data in a safetensors file: its size less the 8-byte length and header."""
    with open(path, "rb") as f:
        (header,) = struct.unpack("<Q", f.read(8))
    return path.stat().st_size - 8 - header


# ------------------------------------------------------------------------------ round trips
def test_float64_round_trip_is_exact_and_keeps_actnorm_init(tmp_path):
    model, x = tiny_model()
    assert next(model.parameters()).dtype == torch.float64  # the tests' default dtype
    folder = pt.save_pretrained(model, tmp_path / "m", dtype=torch.float64)
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", pt.WEIGHTS_FILE]

    loaded = Glow.from_pretrained(folder)
    assert not loaded.training and loaded.is_initialized
    assert loaded.config == model.config
    with torch.no_grad():
        assert torch.equal(loaded.log_prob(x), model.log_prob(x))

    # The first forward in training mode must not re-run actnorm's data-dependent init.
    before = {k: v.clone() for k, v in loaded.state_dict().items()}
    loaded.train()
    with torch.no_grad():
        loaded.log_prob(x + 0.3)
    after = loaded.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_float32_storage_is_exact_for_a_float32_model(tmp_path):
    model, x = tiny_model()
    model = model.float()
    folder = pt.save_pretrained(model, tmp_path / "m")  # float32 is the default
    assert json.loads((folder / "config.json").read_text())["glowflow"]["dtype"] == "float32"
    loaded = Glow.from_pretrained(folder).float()
    with torch.no_grad():
        assert torch.equal(loaded.log_prob(x.float()), model.log_prob(x.float()))


def test_float16_storage_halves_the_file_and_stays_close(tmp_path):
    model, x = tiny_model()
    full = pt.save_pretrained(model, tmp_path / "full", dtype="float32")
    half = pt.save_pretrained(model, tmp_path / "half", dtype=torch.float16)
    ratio = payload_bytes(half / pt.WEIGHTS_FILE) / payload_bytes(full / pt.WEIGHTS_FILE)
    assert 0.5 <= ratio < 0.52  # only actnorm's bool flags keep their size
    assert (half / pt.WEIGHTS_FILE).stat().st_size < 0.6 * (full / pt.WEIGHTS_FILE).stat().st_size

    stored = read_weights(half / pt.WEIGHTS_FILE)
    assert {t.dtype for t in stored.values()} == {torch.float16, torch.bool}
    assert json.loads((half / "config.json").read_text())["glowflow"]["dtype"] == "float16"

    loaded = Glow.from_pretrained(half)
    assert {p.dtype for p in loaded.parameters()} == {torch.get_default_dtype()}
    assert loaded.is_initialized
    with torch.no_grad():
        gap = (loaded.bits_per_dim(x) - model.bits_per_dim(x)).abs().max().item()
    assert 0 < gap < 5e-3


def test_storage_dtype_is_checked(tmp_path):
    model, _ = tiny_model()
    with pytest.raises(PretrainedError) as e:
        pt.save_pretrained(model, tmp_path / "m", dtype="bfloat16")
    assert_one_line(e, "bfloat16", "float16", "float32")
    assert not (tmp_path / "m").exists()


def test_float16_overflow_is_refused(tmp_path):
    model, _ = tiny_model()
    with torch.no_grad():
        next(model.parameters()).fill_(1e6)  # beyond float16's largest value, 65504
    with pytest.raises(PretrainedError) as e:
        pt.save_pretrained(model, tmp_path / "m", dtype="float16")
    assert_one_line(e, "not finite", "float32")


# ------------------------------------------------------------------------------ strict loading
def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file, read into memory (so the file may be rewritten)."""
    return load(path.read_bytes())


def _edit_weights(folder: Path, edit) -> None:
    tensors = read_weights(folder / pt.WEIGHTS_FILE)
    edit(tensors)
    save_file(tensors, folder / pt.WEIGHTS_FILE)


def _break(folder: Path, how: str) -> str:
    """Damage a saved folder one way; returns the file the error must name."""
    weights = folder / pt.WEIGHTS_FILE
    key = sorted(read_weights(weights))[0]
    if how == "missing key":
        _edit_weights(folder, lambda t: t.pop(key))
    elif how == "unexpected key":
        _edit_weights(folder, lambda t: t.update({"extra.weight": torch.zeros(2)}))
    elif how == "wrong shape":
        _edit_weights(folder, lambda t: t.update({key: torch.zeros(*t[key].shape, 2)}))
    elif how == "truncated":
        data = weights.read_bytes()
        weights.write_bytes(data[: len(data) // 2])
    elif how == "pickle":
        torch.save(read_weights(weights), weights)
    elif how == "missing config":
        (folder / "config.json").unlink()
        return "config.json"
    elif how == "invalid config":
        (folder / "config.json").write_text("{not json")
        return "config.json"
    elif how == "unknown field":
        config = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps({**config, "colour_depth": 3}))
        return "config.json"
    return pt.WEIGHTS_FILE


@pytest.mark.parametrize(
    "how, fragment",
    [
        ("missing key", "lacks 1 tensor"),
        ("unexpected key", "extra.weight"),
        ("wrong shape", "has shape"),
        ("truncated", "not a safetensors file"),
        ("pickle", "not a safetensors file"),
        ("missing config", "missing"),
        ("invalid config", "not valid JSON"),
        ("unknown field", "colour_depth"),
    ],
)
def test_damaged_folders_give_one_line_naming_the_file(tmp_path, how, fragment):
    model, _ = tiny_model()
    folder = pt.save_pretrained(model, tmp_path / "m")
    file = _break(folder, how)
    with pytest.raises(PretrainedError) as e:
        Glow.from_pretrained(folder)
    assert_one_line(e, str(folder / file), fragment)


#: Configs a file may hold that are refused before any model is built: the fields changed, and
#: fragments of the one-line error. The first four would allocate gigabytes (a 1e10-class label
#: projection, 1e8-wide couplings, 16384-square images) or fail deep in torch (depth 2.5); the
#: last is a valid config that disagrees with the weights' shapes.
BAD_CONFIGS = [
    ({"num_classes": 1e10}, ["num_classes", "10000000000.0", "whole number from 2 to 100000"]),
    ({"hidden_channels": 1e8}, ["hidden_channels", "100000000.0", "from 1 to 4096"]),
    ({"image_shape": [3, 16384, 16384]}, ["image_shape's H", "got 16384", "from 1 to 1024"]),
    ({"depth": 2.5}, ["depth must be a whole number from 1 to 128, got 2.5"]),
    ({"hidden_channels": 16}, ["levels.0.steps.0.coupling.net.conv1.weight has shape "
                               "(8, 6, 3, 3), the model in config.json needs (16, 6, 3, 3)"]),
]  # fmt: skip


def watch_builds(monkeypatch) -> list[str]:
    """The devices of the models built from now on (each 1x1 convolution's initial rotation is
    recorded): ``"meta"`` for a shape check, which allocates nothing, ``"cpu"`` for a model."""
    devices = []
    draw = invconv.random_rotation

    def watched(channels, generator=None):
        q = draw(channels, generator)
        devices.append(q.device.type)
        return q

    monkeypatch.setattr(invconv, "random_rotation", watched)
    return devices


@pytest.mark.parametrize("change, fragments", BAD_CONFIGS)
def test_a_bad_config_is_refused_before_the_model_is_built(
    tmp_path, monkeypatch, change, fragments
):
    model, _ = tiny_model()
    folder = pt.save_pretrained(model, tmp_path / "m")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, **change}))
    built = watch_builds(monkeypatch)
    for loader in (lambda: Glow.from_pretrained(folder), lambda: load_model(folder)):
        with pytest.raises(PretrainedError) as e:
            loader()
        assert_one_line(e, str(folder), *fragments)
    assert set(built) <= {"meta"}


def test_missing_and_wrong_shape_messages_name_the_key(tmp_path):
    model, _ = tiny_model()
    folder = pt.save_pretrained(model, tmp_path / "m")
    key = sorted(model.state_dict())[0]
    _edit_weights(folder, lambda t: t.pop(key))
    with pytest.raises(PretrainedError) as e:
        Glow.from_pretrained(folder)
    assert_one_line(e, key)


# ------------------------------------------------------------------------------ card, attributes
def test_model_card_states_the_facts_given_and_no_others(tmp_path):
    model, _ = tiny_model()
    card = {
        "name": "Glow on digits",
        "repo_id": "someone/glow-digits",
        "license": "mit",
        "dataset": "mnist-mini",
        "data_license": "CC BY-SA 3.0",
        "heldout": "MNIST training images 50,000-59,999",
        "heldout_images": 10000,
        "heldout_bpd": 1.368,
    }
    text = (pt.save_pretrained(model, tmp_path / "m", card=card) / "README.md").read_text()
    front, body = text.split("---\n")[1], text.split("---\n", 2)[2]
    assert text.startswith("---\n")
    assert "library_name: glowflow\n" in front and "license: mit\n" in front
    assert "- glow\n- normalizing-flow\n- generative\n" in front
    assert "# Glow on digits" in body
    assert "1.368" in body and "10000" in body and "CC BY-SA 3.0" in body
    assert "L=2 levels, K=2 flow steps per level, width 8, affine coupling" in body
    # a Hub repo is shown by its explicit name: a bare user/repo would be a local path
    assert 'glowflow.Glow.from_pretrained("hf:someone/glow-digits")' in body
    assert "glowflow sample --checkpoint hf:someone/glow-digits " in body
    assert "Command" not in body and "Steps" not in body and "Wall time" not in body

    with pytest.raises(PretrainedError) as e:
        pt.save_pretrained(model, tmp_path / "n", card={"heldout_bdp": 1.0})
    assert_one_line(e, "heldout_bdp", "heldout_bpd")


def test_attributes_round_trip_and_stale_ones_are_removed(tmp_path):
    model, _ = tiny_model()
    attributes = {
        "names": ["Smiling", "Eyeglasses"],
        "directions": torch.randn(2, model.num_dims),
        "info": [{"positives": 3, "norm": 1.5}, {"positives": 7, "norm": 0.25}],
    }
    folder = pt.save_pretrained(model, tmp_path / "m", attributes=attributes)
    back = pt.load_attributes(folder)
    assert back["names"] == attributes["names"] and back["info"] == attributes["info"]
    assert torch.equal(back["directions"], attributes["directions"].float())

    pt.save_pretrained(model, folder)  # replaced without attributes: the old ones go
    assert pt.load_attributes(folder) is None

    wrong = {**attributes, "directions": torch.randn(2, 5)}
    with pytest.raises(PretrainedError) as e:
        pt.save_pretrained(model, folder, attributes=wrong)
    assert_one_line(e, "attributes.safetensors", f"(A, {model.num_dims})")


def test_save_refuses_a_folder_holding_other_files(tmp_path):
    model, _ = tiny_model()
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(PretrainedError) as e:
        pt.save_pretrained(model, tmp_path)
    assert_one_line(e, "notes.txt", "new or empty folder")
    assert (tmp_path / "notes.txt").read_text() == "keep me"
