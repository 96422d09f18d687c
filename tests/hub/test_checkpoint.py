"""Checkpoints: atomic writes, and reading them never runs code from the file."""

from __future__ import annotations

import pytest
import torch

from glowflow import Glow
from glowflow.errors import GlowflowError
from glowflow.files import atomic_write
from glowflow.hub.checkpoint import (
    CheckpointError,
    load_checkpoint,
    model_from_checkpoint,
    save_checkpoint,
)  # fmt: skip


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
    with pytest.raises(CheckpointError, match="does not match its model config"):
        model_from_checkpoint(tmp_path / "bad.pt", ema=False)
