"""Training: the ``Trainer`` and its parts (data, seeded model, batches, loss, run folder,
checkpoint contents, schedule, optimiser step, EMA, logs, validation and samples, Ctrl-C), the
machine-dependent choices, starting a run as ``glowflow train`` does (``.launch``), and the
paper's permutation x coupling comparison."""

from glowflow.train.allocator import reuse_freed_memory
from glowflow.train.trainer import Trainer

__all__ = ["Trainer", "reuse_freed_memory"]
