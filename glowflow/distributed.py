"""Multi-process training with ``torchrun``: process-group set-up and the few collectives used.

Launched by ``torchrun`` (which sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and the rendezvous
variables), the trainer joins a process group: NCCL when it trains on CUDA, gloo on the CPU.
Outside ``torchrun`` everything here is a no-op for a single process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from glowflow.errors import ConfigError


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes the run folder."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


def resolve_device(name: str) -> torch.device:
    """``auto`` (CUDA when there is one), ``cpu``, ``cuda`` or ``cuda:N``, checked."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for, but PyTorch sees no CUDA device")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise ConfigError(
            f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)"
        )
    return device


def job_id() -> str | None:
    """torchrun's id of this job (the same across its restarts), or None outside torchrun."""
    return os.environ.get("TORCHELASTIC_RUN_ID")


def restart_count() -> int:
    """How often torchrun has restarted this job after a process died (0 outside torchrun)."""
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))


def setup(device: torch.device) -> tuple[DistInfo, torch.device]:
    """Join the process group if launched by torchrun; returns the info and the device to use.

    On CUDA each process takes the GPU of its local rank (``cuda:LOCAL_RANK``).
    """
    if not launched_by_torchrun():
        return DistInfo(), device
    info = DistInfo(
        rank=int(os.environ["RANK"]),
        world_size=int(os.environ["WORLD_SIZE"]),
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
    )
    if device.type == "cuda":
        device = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(
            "nccl" if device.type == "cuda" else "gloo",
            store=_attempt_store(info),
            rank=info.rank,
            world_size=info.world_size,
        )
    return info, device


def _attempt_store(info: DistInfo) -> dist.Store:
    """The rendezvous store, with keys private to this attempt of the job.

    After an elastic restart the store still holds the dead attempt's addresses; a process
    that read one would try to connect to a process that no longer exists. Prefixing every key
    with the restart count keeps each attempt's keys apart.
    """
    # torchrun's agent hosts the store itself when it says so; otherwise rank 0 does
    agent_hosts = os.environ.get("TORCHELASTIC_USE_AGENT_STORE", "").lower() == "true"
    store = dist.TCPStore(
        os.environ.get("MASTER_ADDR", "127.0.0.1"),
        int(os.environ["MASTER_PORT"]),
        info.world_size,
        is_master=info.is_main and not agent_hosts,
        timeout=timedelta(minutes=10),
    )
    return dist.PrefixStore(f"glowflow/attempt-{restart_count()}", store)


def teardown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """The sum of ``t`` over all processes (``t`` itself when alone)."""
    if info.enabled:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def all_max(values: list[float], info: DistInfo, device: torch.device) -> list[float]:
    """The element-wise maximum of ``values`` over all processes (``values`` when alone)."""
    if not info.enabled:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t.tolist()


def wrap(module: torch.nn.Module, device: torch.device, unused_parameters: bool):
    """``module`` in DistributedDataParallel (which also broadcasts rank 0's weights);
    ``unused_parameters`` when some parameters get no gradient (an idle classifier)."""
    return torch.nn.parallel.DistributedDataParallel(
        module,
        device_ids=[device] if device.type == "cuda" else None,
        find_unused_parameters=unused_parameters,
    )


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()
