"""Mixed precision: which parts of the flow may run in bfloat16.

Under ``torch.autocast(device, dtype=torch.bfloat16)`` only the coupling networks should run in
low precision: they hold nearly all of the FLOPs, and an error in their output only perturbs a
shift and a scale, which the flow inverts exactly whatever their value. Actnorm, the 1x1
convolutions, the priors and every log-det stay in float32, where rounding would break
invertibility or bias the likelihood; they enter ``full_precision``.
"""

from __future__ import annotations

import torch


def full_precision(x: torch.Tensor) -> torch.autocast:
    """A context in which autocast is off for ``x``'s device."""
    return torch.autocast(x.device.type, enabled=False)
