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


def eval_generator(seed: int, batch: int, draw: int = 0) -> torch.Generator:
    """The dequantisation noise of evaluation batch ``batch``, draw ``draw``: draw 0 is the one
    single-draw figures use (``generator(seed, batch, EVAL)``); each further draw of an
    importance-weighted estimate gets a seed of its own, spread far from those of
    ``generator`` by a large odd factor."""
    if draw == 0:
        return generator(seed, batch, EVAL)
    base = seed * 1_000_003 + batch * 3 + EVAL
    return torch.Generator().manual_seed((base * 2_147_483_659 + draw) % 2**63)
