"""The model a run trains: its config, and initial weights drawn from the seed in private."""

from __future__ import annotations

import pytest
import torch

from glowflow.config import ConfigError, GlowConfig, TrainConfig
from glowflow.hub.model import Glow
from glowflow.train.runmodel import build_model, run_model_config

CONFIG = GlowConfig(image_shape=(1, 16, 16), levels=2, depth=2, hidden_channels=8,
                    permutation="shuffle")  # fmt: skip


def weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("permutation", ["shuffle", "lu", "conv"])
def test_the_weights_depend_on_the_seed_alone_and_the_global_state_is_kept(permutation):
    config = GlowConfig(**{**CONFIG.to_dict(), "permutation": permutation})
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a = weights(build_model(config, 5, torch.device("cpu")))
    assert torch.equal(torch.get_rng_state(), before)
    torch.manual_seed(456)  # another global state: the same weights
    b = weights(build_model(config, 5, torch.device("cpu")))
    torch.manual_seed(5)  # those of seeding the global generator, then building
    c = weights(Glow.from_config(config))
    for k in a:
        assert torch.equal(a[k], b[k]) and torch.equal(a[k], c[k]), k
    other = weights(build_model(config, 6, torch.device("cpu")))
    assert any(not torch.equal(a[k], other[k]) for k in a)


def test_channels_last_lays_out_every_convolution_weight():
    contiguous = GlowConfig(**{**CONFIG.to_dict(), "memory_format": "contiguous"})
    for channels_last in (False, True):
        model = build_model(contiguous, 0, torch.device("cpu"), channels_last=channels_last)
        convs = [p for p in model.parameters() if p.dim() == 4 and p.shape[-1] > 1]
        nhwc = [p.is_contiguous(memory_format=torch.channels_last) for p in convs]
        assert convs and all(nhwc) == channels_last and any(nhwc) == channels_last


def test_a_resumed_run_takes_its_checkpoints_model_checked_against_the_data():
    cfg = TrainConfig(levels=2, depth=1, hidden_channels=8, y_condition=True)
    new = run_model_config(cfg, (1, 16, 16), 10)
    assert new.depth == 1 and new.num_classes == 10 and new.image_shape == (1, 16, 16)
    weights = build_model(CONFIG, seed=0, device=torch.device("cpu")).state_dict()
    state = {"model_config": CONFIG.to_dict(), "model": weights}
    assert run_model_config(cfg, (1, 16, 16), 10, state) == CONFIG  # not the options' model
    with pytest.raises(ConfigError, match=r"takes images \(1, 16, 16\).*gives \(3, 16, 16\)"):
        run_model_config(cfg, (3, 16, 16), 10, state)
