"""A run that starts from a trained model's weights (``--init-from``) instead of random ones.

Training that needs longer than one sitting goes on from the weights it left: a bundled model's
name, a pretrained folder, a Hub name ``hf:user/repo``, a run folder or a checkpoint file (a
run's EMA weights).
The new run keeps its own optimiser, schedule, warm-up and budget; only the weights, actnorm's
initialised statistics among them, come from the source, so no data-dependent init runs. The
architecture is the source's: model options the run does not give are taken from it, and any
it gives must agree with it.
"""

from __future__ import annotations

from typing import Any

import torch

from glowflow.config import MODEL_OPTIONS, ConfigError, GlowConfig, TrainConfig
from glowflow.hub.load import load_model
from glowflow.nn.model import GlowFlow


def source_model(source: str) -> GlowFlow:
    """The model ``source`` names, on the CPU (its EMA weights where it is a run)."""
    return load_model(source, "cpu", ema=True).model


def source_options(source: str) -> dict[str, Any]:
    """The training options that the model ``source`` fixes: its architecture, and
    ``y_condition`` for a class-conditional one."""
    config = source_model(source).config
    options = {name: getattr(config, name) for name in MODEL_OPTIONS}
    options["y_condition"] = config.num_classes is not None
    return options


def warm_start(model: GlowFlow, cfg: TrainConfig) -> None:
    """Copy the weights of ``cfg.init_from`` into the freshly built ``model`` of the run.

    Raises:
        ConfigError: where the source's architecture or image size is not the run's.
    """
    source = source_model(cfg.init_from)
    differ = _differences(source.config, model.config)
    if differ:
        raise ConfigError(
            f"--init-from {cfg.init_from} is another model than this run's ({'; '.join(differ)}); "
            f"drop the options that differ, or train the source's image size"
        )
    state = source.state_dict()
    if model.config.hidden_channels != source.config.hidden_channels:
        state = widen_state(state, model.config.hidden_channels, torch.Generator().manual_seed(0))
    model.load_state_dict(state)


def widen_state(
    state: dict[str, torch.Tensor], hidden: int, generator: torch.Generator, noise: float = 0.1
) -> dict[str, torch.Tensor]:
    """``state`` with every coupling network widened to ``hidden`` channels, computing the same.

    Each new hidden unit copies a randomly drawn unit of its layer: its incoming weights from the
    old units, with ``noise`` times their spread added so that the two part, and its actnorm,
    which starts it on activations of a trained unit's scale. Its outgoing weights are zero, so
    the model's output, log-det and likelihood are exactly the source's until training moves them.
    """
    out = dict(state)
    nets = sorted({k[: -len("conv1.weight")] for k in state if k.endswith(".net.conv1.weight")})
    for net in nets:
        old = state[net + "conv1.weight"].shape[0]
        pick1 = torch.randint(old, (hidden - old,), generator=generator)
        pick2 = torch.randint(old, (hidden - old,), generator=generator)
        w1 = state[net + "conv1.weight"]
        out[net + "conv1.weight"] = torch.cat([w1, _jitter(w1[pick1], noise, generator)])
        for norm, pick in (("norm1", pick1), ("norm2", pick2)):
            for name in ("bias", "logs"):
                p = state[f"{net}{norm}.{name}"]
                out[f"{net}{norm}.{name}"] = torch.cat([p, p[:, pick]], dim=1)
        w2 = state[net + "conv2.weight"]  # (out, in, 1, 1); nothing yet from the new units
        rows = torch.cat([w2, _jitter(w2[pick2], noise, generator)])
        out[net + "conv2.weight"] = torch.cat([rows, rows.new_zeros(hidden, hidden - old, 1, 1)], 1)
        w3 = state[net + "out.conv.weight"]
        out[net + "out.conv.weight"] = torch.cat(
            [w3, w3.new_zeros(w3.shape[0], hidden - old, *w3.shape[2:])], dim=1
        )
    return out


def _jitter(w: torch.Tensor, noise: float, generator: torch.Generator) -> torch.Tensor:
    spread = w.std() if w.numel() > 1 else w.abs().mean()
    return w + noise * spread * torch.randn(w.shape, generator=generator, dtype=w.dtype)


def _differences(source: GlowConfig, run: GlowConfig) -> list[str]:
    fields = ("image_shape", "num_classes", *MODEL_OPTIONS)
    return [
        f"{name} {getattr(source, name)} there, {getattr(run, name)} here"
        for name in fields
        if getattr(source, name) != getattr(run, name)
        and not (name == "hidden_channels" and run.hidden_channels > source.hidden_channels)
    ]
