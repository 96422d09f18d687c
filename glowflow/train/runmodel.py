"""The model a run trains: its config (a new one, or a resumed checkpoint's) and its random
initial weights, drawn from the run's seed without touching the process's random state."""

from __future__ import annotations

from typing import Any

import torch

from glowflow.config import ConfigError, GlowConfig, TrainConfig
from glowflow.hub.checkpoint import CheckpointError
from glowflow.hub.model import Glow
from glowflow.hub.shapes import check_tensors, expected_tensors, tensor_specs


def run_model_config(
    cfg: TrainConfig,
    image_shape: tuple[int, int, int],
    num_classes: int | None,
    state: dict[str, Any] | None = None,
) -> GlowConfig:
    """The model of a new run on images of ``image_shape``, or that of the checkpoint
    ``state`` being resumed (checked against the data)."""
    if state is None:
        return cfg.model_config(image_shape, num_classes)
    return saved_model(state, image_shape)


def saved_model(state: dict[str, Any], image_shape: tuple[int, int, int]) -> GlowConfig:
    """The model config of a checkpoint being resumed, checked against the data and against
    the checkpoint's own weights (their names and shapes), before anything is built."""
    saved = GlowConfig.from_dict(state["model_config"])
    if saved.image_shape != image_shape:
        raise ConfigError(
            f"the checkpoint's model takes images {saved.image_shape}, the data set gives "
            f"{image_shape}; use the run's own data options"
        )
    # the weights agree with the config before a model of that config is built
    check_tensors(tensor_specs(state["model"]), expected_tensors(saved), "the checkpoint",
                  "its model config", "resume a checkpoint written by glowflow train",
                  CheckpointError)  # fmt: skip
    return saved


def build_model(
    config: GlowConfig, seed: int, device: torch.device, channels_last: bool = False
) -> Glow:
    """A fresh Glow on ``device`` whose random initial weights depend on ``seed`` alone.

    The layers draw their initial weights from torch's global generator in their constructors
    (the 1x1 convolutions' random rotations, the shuffle permutations, the coupling networks'
    convolutions), so the model is built on the CPU under a private copy of that generator,
    seeded with ``seed``: the weights are those of ``torch.manual_seed(seed)`` followed by
    ``Glow.from_config(config)``, and the caller's random state is left as it was.

    ``channels_last`` lays every weight out channels-last (NHWC) as well.
    """
    with torch.random.fork_rng(devices=[]):  # the CPU generator, restored on the way out
        torch.default_generator.manual_seed(seed)
        model = Glow.from_config(config)
    model = model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    return model
