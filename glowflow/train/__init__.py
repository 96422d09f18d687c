"""Training: the :class:`Trainer` and its parts (run folder, schedule, optimiser step, EMA,
logs, Ctrl-C), the machine-dependent choices, and the paper's permutation x coupling
comparison."""

from glowflow.train.allocator import reuse_freed_memory
from glowflow.train.trainer import Trainer

__all__ = ["Trainer", "reuse_freed_memory"]
