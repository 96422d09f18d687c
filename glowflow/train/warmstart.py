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
    model.load_state_dict(source.state_dict())


def _differences(source: GlowConfig, run: GlowConfig) -> list[str]:
    fields = ("image_shape", "num_classes", *MODEL_OPTIONS)
    return [
        f"{name} {getattr(source, name)} there, {getattr(run, name)} here"
        for name in fields
        if getattr(source, name) != getattr(run, name)
    ]
