"""A checkpoint's contents and their way back into a resumed run."""

from __future__ import annotations

import pytest
import torch
from conftest import randomize_, small_config

from glowflow.config import GlowConfig
from glowflow.data.imagedata import ImageData
from glowflow.hub.checkpoint import CheckpointError
from glowflow.hub.model import Glow
from glowflow.train.ema import EMA
from glowflow.train.optim import make_optimizer
from glowflow.train.runstate import Position, checkpoint_state, restore_state, run_record

CONFIG = GlowConfig(image_shape=(1, 8, 8), levels=2, depth=1, hidden_channels=8)


def parts(config: GlowConfig = CONFIG, seed: int = 0):
    torch.manual_seed(seed)
    model = Glow.from_config(config)
    optimizer, fused = make_optimizer("adam", model, 1e-3)
    return model, optimizer, fused, EMA(model, 0.9)


def record_of(model, digits_npz) -> dict:
    one_image = ImageData(torch.zeros(1, 1, 8, 8, dtype=torch.uint8))
    return run_record(small_config(digits_npz), model, one_image, None)


def test_the_record_says_what_the_run_and_its_data_are(digits_npz):
    images = torch.zeros(10, 1, 8, 8, dtype=torch.uint8)
    train = ImageData(images, class_names=["a"], attr_names=None)
    record = run_record(small_config(digits_npz), Glow.from_config(CONFIG), train, None)
    assert record["train"]["depth"] == 1 and record["model"]["image_shape"] == [1, 8, 8]
    assert record["data"] == {"train_images": 10, "val_images": 0, "class_names": ["a"],
                              "attr_names": None}  # fmt: skip
    assert "torchelastic_run_id" in record


def trained_a_step(model, optimizer, ema) -> None:
    x = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(1)) - 0.5
    model.initialize(x)
    randomize_(model)
    (-model.log_prob(x).mean()).backward()
    optimizer.step()
    ema.update(model, 0, torch.tensor(False))


def test_a_saved_state_restores_weights_average_moments_and_position(digits_npz):
    model, optimizer, _, ema = parts()
    trained_a_step(model, optimizer, ema)
    record = record_of(model, digits_npz)
    state = checkpoint_state(record, model, optimizer, ema, Position(7, 12.5, 2))
    assert state["model_config"] == record["model"] and state["train_config"] == record["train"]
    assert state["data"] == record["data"]
    fresh, fresh_optimizer, fused, fresh_ema = parts(seed=1)
    position = restore_state(state, fresh, fresh_optimizer, fused, fresh_ema, "run/checkpoint.pt")
    assert position == Position(7, 12.5, 2)
    for name, value in model.state_dict().items():
        assert torch.equal(fresh.state_dict()[name], value), name
    for name, value in ema.state_dict().items():
        assert torch.equal(fresh_ema.state_dict()[name], value), name
    moments = [s["exp_avg"] for s in optimizer.state.values()]
    restored = [s["exp_avg"] for s in fresh_optimizer.state.values()]
    assert len(moments) == len(restored) and all(map(torch.equal, moments, restored))


def test_a_checkpoint_of_another_model_is_refused_naming_the_file(digits_npz):
    model, optimizer, _, ema = parts()
    state = checkpoint_state(record_of(model, digits_npz), model, optimizer, ema, Position())
    wider = GlowConfig(**{**CONFIG.to_dict(), "hidden_channels": 16})
    other, other_optimizer, fused, other_ema = parts(wider)
    with pytest.raises(CheckpointError, match="run/checkpoint.pt does not match its run's config"):
        restore_state(state, other, other_optimizer, fused, other_ema, "run/checkpoint.pt")
    del state["step"]
    with pytest.raises(CheckpointError, match="'step'"):
        restore_state(state, *parts()[:3], None, "run/checkpoint.pt")
