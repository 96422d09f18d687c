"""Shared helpers for the tests: float64 by default and parameter randomisation."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def randomize_(module: torch.nn.Module, scale: float = 0.1, seed: int = 0) -> torch.nn.Module:
    """Move every parameter away from its (often identity-like) initialisation."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return module


def brute_logdet(f, x: torch.Tensor) -> torch.Tensor:
    """``log|det df/dx|`` of a per-sample map ``f`` on a batch of one, via the full Jacobian."""

    def flat(v: torch.Tensor) -> torch.Tensor:
        return f(v.reshape(x.shape)).reshape(-1)

    jac = torch.autograd.functional.jacobian(flat, x.reshape(-1))
    return torch.linalg.slogdet(jac)[1]


@pytest.fixture(autouse=True)
def _float64_and_seed():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    torch.manual_seed(0)
    yield
    torch.set_default_dtype(old)


def shared_npz(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"{path} is not present (team data set)")
    return path
