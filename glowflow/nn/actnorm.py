"""Activation normalisation: a per-channel affine map with data-dependent init."""

from __future__ import annotations

import torch
from torch import nn

from glowflow.nn.precision import full_precision


class ActNorm(nn.Module):
    """Per-channel scale and bias, ``z = (x + b) * exp(s)``.

    Shapes: ``x`` is ``(B, C, H, W)``; ``b`` and ``s`` are ``(1, C, 1, 1)``.
    The log-det is ``H * W * sum(s)``, the same for every sample.

    Data-dependent initialisation sets ``b = -mean(x)`` and ``s = -log(std(x) + eps)`` per channel
    so that the initialising batch comes out zero-mean, unit-variance. It runs when it is pending:
    a new module has it pending for its first forward in training mode, and ``request_init``
    (which ``Glow.initialize`` calls) makes the next forward run it in any mode. The
    ``initialized`` buffer records that it ran, in the state dict; loading a state sets the
    pending init from the loaded record, so a loaded model never re-initialises. ``inverse``
    never initialises.

    ``forward`` never reads the buffer, so a training step neither waits for the device nor
    breaks a compiled graph for it, and there is no copy of it to go stale: only
    ``request_init``, ``load_state_dict`` and the init itself decide. Writing the buffer by
    hand changes the record only (call ``request_init`` to initialise again). ``b`` and
    ``s`` are read afresh at every call, whoever wrote them.
    """

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.logs = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.eps = eps
        self.register_buffer("initialized", torch.tensor(False))
        self._init_pending = True  # for the first forward in training mode
        self._init_requested = False  # for the next forward, in any mode

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # type: ignore[override]
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        if prefix + "initialized" in state_dict:  # one read, at load time
            self._init_pending = not bool(state_dict[prefix + "initialized"])

    def _needs_init(self) -> bool:
        return self._init_requested or (self.training and self._init_pending)

    def request_init(self) -> None:
        """Make the next forward (in any mode) re-run the data-dependent initialisation."""
        self._init_requested = True

    @torch.no_grad()
    def _initialize(self, x: torch.Tensor) -> None:
        x = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
        mean = x.mean(dim=(0, 2, 3), keepdim=True)
        std = x.std(dim=(0, 2, 3), keepdim=True, unbiased=False)
        self.bias.copy_(-mean)
        self.logs.copy_(-torch.log(std + self.eps))
        self.initialized.fill_(True)
        self._init_requested = self._init_pending = False

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self._needs_init():
            self._initialize(x)
        with full_precision(x):
            z = (x + self.bias) * torch.exp(self.logs)
            logdet = x.shape[2] * x.shape[3] * self.logs.sum()
        return z, logdet.expand(x.shape[0])

    def inverse(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with full_precision(z):
            x = z * torch.exp(-self.logs) - self.bias
            logdet = -z.shape[2] * z.shape[3] * self.logs.sum()
        return x, logdet.expand(z.shape[0])
