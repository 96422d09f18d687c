"""Memory-saving backprop for a sequence of invertible layers.

Ordinary backprop keeps every intermediate activation of every flow step, so memory grows with
depth. Here the forward pass keeps only the sequence's *output*; the backward pass walks the
steps in reverse, recomputes each step's input from its output with the exact inverse, re-runs
that one step with autograd on to get its local graph, and backpropagates through it. Memory is
then that of a single step, whatever the depth. A flow step's coupling is recomputed smarter:
its inverse and its local graph need the same network output (the network reads the half that
the coupling passes through unchanged), so the network runs once for both, and the whole cost
is one extra forward pass of the network per step.

The gradients equal ordinary backprop up to the round-off of the inversion (tested in float64).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


def _autocast_state(device_type: str) -> tuple[bool, torch.dtype | None]:
    """Whether autocast is on for ``device_type`` now, and its dtype (so backward can match)."""
    try:
        enabled = torch.is_autocast_enabled(device_type)
        dtype = torch.get_autocast_dtype(device_type) if enabled else None
    except TypeError:  # torch < 2.4: no per-device query
        if device_type == "cuda":
            enabled, dtype = torch.is_autocast_enabled(), torch.get_autocast_gpu_dtype()
        else:
            enabled, dtype = torch.is_autocast_cpu_enabled(), torch.get_autocast_cpu_dtype()
    return enabled, dtype


class _InvertibleSequence(torch.autograd.Function):
    """Autograd node for a whole sequence; ``params`` are passed so that they get gradients."""

    @staticmethod
    def forward(ctx, steps: Sequence[nn.Module], x: torch.Tensor, *params: torch.Tensor):
        ctx.steps = steps
        ctx.params = params
        ctx.autocast = _autocast_state(x.device.type)
        with torch.no_grad():
            logdet = x.new_zeros(x.shape[0])
            for step in steps:
                x, ld = step(x)
                logdet = logdet + ld
        ctx.save_for_backward(x)
        return x, logdet

    @staticmethod
    def backward(ctx, grad_z: torch.Tensor, grad_logdet: torch.Tensor):
        (z,) = ctx.saved_tensors
        device_type = z.device.type
        enabled, dtype = ctx.autocast
        # Every parameter's gradient is allocated before the step-by-step work: the long-lived
        # gradients then sit together, not scattered between the short-lived activations, so
        # the heap does not fragment as the model gets deeper. Each is handed to autograd as the
        # parameter's .grad itself (its own tensor, in the parameter's layout), never copied.
        grads = {id(p): torch.zeros_like(p) for p in ctx.params}
        reached = set()

        def local_grad(outputs, leaves, module, grad_out):
            """Gradients of ``outputs`` for the ``leaves`` and ``module``'s parameters."""
            params = [p for p in module.parameters() if p.requires_grad]
            pairs = [(o, g) for o, g in zip(outputs, grad_out) if o.requires_grad]
            out = torch.autograd.grad(
                [o for o, _ in pairs], [*leaves, *params], [g for _, g in pairs],
                allow_unused=True,
            )  # fmt: skip
            for p, g in zip(params, out[len(leaves) :]):
                if g is not None:
                    grads[id(p)].add_(g)
                    reached.add(id(p))
            return out[: len(leaves)]

        for step in reversed(ctx.steps):
            autocast = torch.autocast(device_type, dtype, enabled=enabled)
            coupling = getattr(step, "coupling", None)
            if hasattr(coupling, "inverse_with_graph") and hasattr(step, "head"):
                # the coupling's network runs once, for its inverse and its local graph
                with torch.enable_grad(), autocast:
                    (x_a, x_b), outputs = coupling.inverse_with_graph(z)
                grad_a, grad_b = local_grad(outputs, (x_a, x_b), coupling, (grad_z, grad_logdet))
                grad_z = torch.cat([grad_a, grad_b], dim=1)
                z = torch.cat([x_a.detach(), x_b.detach()], dim=1)
                head = step.head
            else:
                head = step
            with torch.no_grad(), autocast:
                x, _ = head.inverse(z)  # the input, recomputed from the output
            x = x.detach().requires_grad_(True)
            with torch.enable_grad(), autocast:
                outputs = head(x)
            (grad_z,) = local_grad(outputs, (x,), head, (grad_z, grad_logdet))
            z = x.detach()
        return (None, grad_z, *(grads[id(p)] if id(p) in reached else None for p in ctx.params))


def invertible_sequence(
    steps: Sequence[nn.Module], x: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run ``steps`` (each with ``forward``/``inverse`` returning ``(out, logdet)``) on ``x``,
    storing no intermediate activation for backward (see the module docstring).

    Returns the output and the summed log-det, like running the steps one after the other.
    The backward pass frees and allocates each step's activations in turn; on a CPU with
    glibc, call ``glowflow.train.reuse_freed_memory`` once first (``glowflow train`` and
    ``glowflow.train.Trainer`` do), or every one of those allocations is faulted in again.
    """
    params = [p for step in steps for p in step.parameters() if p.requires_grad]
    return _InvertibleSequence.apply(steps, x, *params)
