"""Activation normalisation: a per-channel affine map with data-dependent init."""

from __future__ import annotations

import torch
from torch import nn

from glowflow.precision import full_precision


class ActNorm(nn.Module):
    """Per-channel scale and bias, ``z = (x + b) * exp(s)``.

    Shapes: ``x`` is ``(B, C, H, W)``; ``b`` and ``s`` are ``(1, C, 1, 1)``.
    The log-det is ``H * W * sum(s)``, the same for every sample.

    Data-dependent initialisation sets ``b = -mean(x)`` and ``s = -log(std(x) + eps)`` per channel
    so that the initialising batch comes out zero-mean, unit-variance. It runs once: on the first
    forward in training mode, or when :meth:`request_init` was called before a forward. The
    ``initialized`` buffer records it in the state dict, so a loaded model never re-initialises;
    :meth:`inverse` never initialises.

    The flag is read from the buffer at the first training forward after the module was made,
    loaded or switched into training mode (:meth:`train`), and remembered in Python until then,
    so that a training step neither waits for the device nor breaks a compiled graph to read
    it. Everything that writes the flag goes through one of those (the init itself,
    ``load_state_dict``, ``Glow.initialize``); a hand-written flag counts from the next
    ``train()``, and :meth:`request_init` is the way to ask for a new init. ``b`` and ``s``
    are read afresh at every call, whoever wrote them.
    """

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.logs = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.eps = eps
        self.register_buffer("initialized", torch.tensor(False))
        # Transient: set by ``Glow.initialize`` to force a (re-)init on the next forward.
        self._init_requested = False
        # Python mirror of ``initialized`` so that the hot path does not read a device tensor.
        self._known_initialized = False

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # type: ignore[override]
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self._known_initialized = False

    def train(self, mode: bool = True) -> ActNorm:
        self._known_initialized = False  # read the buffer again: it may have been written
        return super().train(mode)

    def _needs_init(self) -> bool:
        if self._init_requested:
            return True
        if not self.training or self._known_initialized:
            return False
        self._known_initialized = bool(self.initialized)
        return not self._known_initialized

    def request_init(self) -> None:
        """Make the next forward re-run the data-dependent initialisation."""
        self._init_requested = True

    @torch.no_grad()
    def _initialize(self, x: torch.Tensor) -> None:
        x = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
        mean = x.mean(dim=(0, 2, 3), keepdim=True)
        std = x.std(dim=(0, 2, 3), keepdim=True, unbiased=False)
        self.bias.copy_(-mean)
        self.logs.copy_(-torch.log(std + self.eps))
        self.initialized.fill_(True)
        self._init_requested = False
        self._known_initialized = True

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
