"""What the training loop does after a step, besides the next step: read the steps' figures
back, write a metrics line, validate, draw a sample grid, save a checkpoint."""

from __future__ import annotations

from typing import NamedTuple

from glowflow.config import TrainConfig


class Due(NamedTuple):
    """The work due once a run has taken ``step`` steps (see ``due_after``)."""

    read: bool  # read the pending steps' figures back from the device
    log: bool  # write a metrics line
    evaluate: bool  # a validation pass
    sample: bool  # a sample grid
    checkpoint: bool  # save checkpoint.pt


def due_after(cfg: TrainConfig, step: int, unread: int) -> Due:
    """What is due after ``step`` steps with ``unread`` steps' figures not read back yet.

    A line every ``log_every`` steps, a validation every ``eval_every``, a grid every
    ``sample_every`` and a checkpoint every ``checkpoint_every`` (0: none during the run).
    The figures are read for a line or a checkpoint, and at the latest after
    ``max_nan_steps`` steps, so a run gone bad stops in time without each step waiting for
    the device.
    """
    log = step % cfg.log_every == 0
    checkpoint = bool(cfg.checkpoint_every) and step % cfg.checkpoint_every == 0
    return Due(
        read=log or checkpoint or unread >= cfg.max_nan_steps,
        log=log,
        evaluate=bool(cfg.eval_every) and step % cfg.eval_every == 0,
        sample=bool(cfg.sample_every) and step % cfg.sample_every == 0,
        checkpoint=checkpoint,
    )
