"""Checkpoints: atomic writes, and reading them never runs code from the file."""

from __future__ import annotations

import pytest
import torch
from conftest import assert_one_line, tiny_model
from test_pretrained import BAD_CONFIGS, watch_builds

from glowflow import Glow
from glowflow.errors import GlowflowError
from glowflow.files import atomic_write
from glowflow.hub.checkpoint import (
    CheckpointError,
    load_checkpoint,
    model_from_checkpoint,
    save_checkpoint,
)  # fmt: skip
from glowflow.hub.load import load_model


def test_checkpoint_loading_never_runs_code(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    bad = tmp_path / "checkpoint.pt"
    torch.save({"format": "glowflow-checkpoint", "evil": Evil()}, bad)
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        load_checkpoint(bad)
    assert not marker.exists()
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        load_checkpoint(tmp_path / "garbage.pt")


def test_a_failed_write_leaves_the_old_file_whole(tmp_path):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"step": 1})

    def breaks_half_way(f):
        f.write(b"half a checkpoint")
        raise OSError("No space left on device")

    with pytest.raises(OSError):
        atomic_write(path, breaks_half_way)
    assert load_checkpoint(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]  # no temporary file left


def test_wrong_files_are_named_in_one_line_errors(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")
    torch.save({"step": 3}, tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="not a glowflow checkpoint"):
        load_checkpoint(tmp_path / "plain.pt")
    save_checkpoint(tmp_path / "old.pt", {})
    state = torch.load(tmp_path / "old.pt", weights_only=True)
    torch.save({**state, "version": 99}, tmp_path / "old.pt")
    with pytest.raises(CheckpointError, match="version 99"):
        load_checkpoint(tmp_path / "old.pt")
    assert issubclass(CheckpointError, GlowflowError)


def test_model_comes_back_with_ema_or_raw_weights(tmp_path):
    model = Glow((1, 8, 8), levels=2, depth=1, hidden_channels=4)
    raw = model.state_dict()
    ema = {k: v + 1 if v.is_floating_point() else v for k, v in raw.items()}
    save_checkpoint(tmp_path / "c.pt", {"model_config": model.config.to_dict(), "model": raw,
                                        "ema": ema})  # fmt: skip
    loaded, _ = model_from_checkpoint(tmp_path / "c.pt")
    assert not loaded.training
    key = next(k for k, v in raw.items() if v.is_floating_point())
    assert torch.equal(loaded.state_dict()[key], ema[key])
    loaded, _ = model_from_checkpoint(tmp_path / "c.pt", ema=False)
    assert torch.equal(loaded.state_dict()[key], raw[key])
    bad = {**raw, key: torch.zeros(3)}
    save_checkpoint(tmp_path / "bad.pt", {"model_config": model.config.to_dict(), "model": bad})
    with pytest.raises(CheckpointError, match=rf"{key} has shape \(3,\), the model of its model_"):
        model_from_checkpoint(tmp_path / "bad.pt", ema=False)


@pytest.mark.parametrize("change, fragments", BAD_CONFIGS)
def test_a_bad_model_config_is_refused_before_the_model_is_built(
    tmp_path, monkeypatch, change, fragments
):
    model, _ = tiny_model()
    config = {**model.config.to_dict(), **change}
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"model_config": config, "model": model.state_dict(), "step": 1})
    built = watch_builds(monkeypatch)
    fragments = [f.replace("the model in config.json", "the model of its model_config")
                 for f in fragments]  # fmt: skip
    for loader in (lambda: model_from_checkpoint(path), lambda: load_model(tmp_path)):
        with pytest.raises(CheckpointError) as e:
            loader()
        assert_one_line(e, f"checkpoint {path}", *fragments)
    assert set(built) <= {"meta"}


def test_a_checkpoint_without_a_state_dict_is_refused(tmp_path):
    model, _ = tiny_model()
    path = tmp_path / "c.pt"
    for state, fragment in (
        ({"model_config": [3, 8, 8], "model": model.state_dict()}, "invalid model config"),
        ({"model_config": model.config.to_dict()}, "no state dict under 'model'"),
        ({"model_config": model.config.to_dict(), "ema": {"a": 1}}, "no state dict under 'ema'"),
    ):
        save_checkpoint(path, state)
        with pytest.raises(CheckpointError) as e:
            model_from_checkpoint(path)
        assert_one_line(e, str(path), fragment)
