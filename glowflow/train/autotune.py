"""The fastest correct precision for the machine at hand, chosen without the user's flags.

- **Precision.** ``--precision auto`` (training's default) runs the coupling networks in
  bfloat16 only where that makes this model's steps faster: decided from the GPU, or measured
  on the CPU at the start of a run (``choose_precision``). A CPU with native bf16 matrix
  units can run large couplings 1.3x faster; one without runs them slower than fp32. Under
  torchrun the processes agree on one choice (``agree_precision``).
"""

from __future__ import annotations

import statistics
import time
from typing import Callable

import torch

from glowflow import distributed

#: bf16 must be this much faster to be chosen. bf16 couplings cost some likelihood: the default
#: run trained 1,500 steps in bf16 ended 0.014 and 0.015 bits/dim above fp32 (seeds 0 and 1,
#: validation), for 1.2x the steps per second; a small gain is not worth that.
BF16_MIN_SPEEDUP = 1.25


def _timed(fn: Callable[[], None], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def choose_precision(
    pass_fn: Callable[[bool], None], device: torch.device, repeats: int = 2
) -> tuple[str, str]:
    """``"bf16"`` where this machine runs the model faster with bfloat16 couplings, else
    ``"fp32"``, and why.

    On CUDA the answer comes from the hardware (bf16 tensor cores, or not). On a CPU it is
    measured: ``pass_fn(bf16)`` runs one forward and backward pass of the real model on a real
    batch (with ``torch.autocast(..., torch.bfloat16)`` when ``bf16``); after one warm-up pass
    each, the two take turns ``repeats`` times and bf16 is chosen only if its median step is at
    least ``BF16_MIN_SPEEDUP`` times as fast. A CPU without bf16 arithmetic runs it slowly,
    and the measurement says so.
    """
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return "bf16", "this GPU computes in bfloat16 natively"
        return "fp32", "this GPU has no native bfloat16"
    if device.type != "cpu":
        return "fp32", f"no bfloat16 measurement for {device.type} devices"
    for bf16 in (False, True):
        pass_fn(bf16)
    times: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(repeats):
        for bf16 in (False, True):
            times[bf16].append(_timed(lambda b=bf16: pass_fn(b), device))
    ratio = statistics.median(times[False]) / statistics.median(times[True])
    if ratio >= BF16_MIN_SPEEDUP:
        return "bf16", f"bf16 couplings ran a step {ratio:.2f}x as fast as fp32 here"
    return "fp32", f"bf16 couplings ran a step only {ratio:.2f}x as fast as fp32 here"


def agree_precision(
    choice: str, why: str, dist: distributed.DistInfo, device: torch.device
) -> tuple[str, str]:
    """One precision for every process of a job: bf16 only if every process chose it (the
    processes must run the same steps), else fp32; ``why`` says when a process disagreed."""
    votes = torch.tensor([float(choice == "bf16")], device=device)
    if distributed.all_reduce_sum(votes, dist).item() < dist.world_size:
        if choice == "bf16":
            why += "; not every process found bf16 faster"
        choice = "fp32"
    return choice, why
