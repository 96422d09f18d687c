"""Seeds for the randomness of one step or one batch, so that reruns and resumes redraw it.

Each use gets its own stream: training batches, the actnorm-init batch and evaluation batches
never share noise.
"""

from __future__ import annotations

import torch

TRAIN, INIT, EVAL = 0, 1, 2


def generator(seed: int, index: int, stream: int) -> torch.Generator:
    """A CPU generator for item ``index`` (a step or a batch) of ``stream`` under ``seed``."""
    return torch.Generator().manual_seed((seed * 1_000_003 + index * 3 + stream) % 2**63)
