"""The optimiser, and a step that a NaN or inf can skip without the host waiting for it."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def make_optimizer(name: str, model: nn.Module, lr: float) -> tuple[torch.optim.Optimizer, bool]:
    """The optimiser, and whether it is fused Adam, which can skip a step on the device
    (``found_inf``) so the loop never waits for it; other devices and older torch fall back."""
    if name == "adamax":
        return torch.optim.Adamax(model.parameters(), lr=lr), False
    try:
        return torch.optim.Adam(model.parameters(), lr=lr, fused=True), True
    except (RuntimeError, ValueError):  # no fused Adam for these parameters' device in this torch
        return torch.optim.Adam(model.parameters(), lr=lr), False


def step_unless(optimizer: torch.optim.Optimizer, fused: bool, skipped: torch.Tensor) -> None:
    """``optimizer.step()`` unless ``skipped`` (a bool tensor on the device) is true.

    Fused Adam reads the flag on the device as ``found_inf``, as under a gradient scaler, and
    then leaves weights, moments and step count alone; other optimisers read it back.
    ``found_inf`` is the attribute through which ``torch.amp.GradScaler`` hands fused
    optimisers its flag: no public argument of ``step()`` takes a device-side skip flag, and
    using a GradScaler itself would also rescale the loss, which a flow does not need.
    """
    if fused:
        optimizer.found_inf = skipped.to(torch.float32)
        try:
            optimizer.step()
        finally:
            del optimizer.found_inf
    elif not skipped.item():
        optimizer.step()


def load_optimizer_state(
    optimizer: torch.optim.Optimizer, saved: dict[str, Any], fused: bool
) -> None:
    """Load a saved state into ``optimizer``; the saved ``fused`` choice is replaced by this
    run's before loading, so torch places the state to suit it."""
    for group in saved.get("param_groups", []):
        if "fused" in group:
            group["fused"] = fused or None
    optimizer.load_state_dict(saved)
