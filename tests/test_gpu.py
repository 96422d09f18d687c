"""The CUDA paths: the same model on the GPU, bf16 autocast, torch.compile, and a short
training run. Skipped where no GPU is present (``benchmarks/gpu_check.sh`` runs them)."""

from __future__ import annotations

import pytest
import torch
from conftest import randomize_

from glowflow import Glow
from glowflow.config import TrainConfig
from glowflow.train.trainer import Trainer

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
    pytest.mark.usefixtures("float32"),
]


def small_model() -> Glow:
    torch.manual_seed(0)
    model = Glow((3, 16, 16), levels=2, depth=4, hidden_channels=32)
    model.initialize(torch.rand(16, 3, 16, 16) - 0.5)
    return randomize_(model, 0.02)


def test_the_gpu_gives_the_cpus_log_likelihood_and_inverts_exactly():
    model = small_model()
    x = torch.rand(16, 3, 16, 16) - 0.5
    cpu = model.log_prob(x)
    gpu_model = model.cuda()
    gpu = gpu_model.log_prob(x.cuda()).cpu()
    assert ((gpu - cpu).abs() / cpu.abs()).max() < 1e-5
    eps = gpu_model.encode(x.cuda())
    assert (gpu_model.decode(eps) - x.cuda()).abs().max() < 1e-4


def test_bf16_autocast_on_the_gpu_stays_close_and_invertible():
    model = small_model().cuda()
    x = torch.rand(16, 3, 16, 16, device="cuda") - 0.5
    with torch.autocast("cuda", dtype=torch.bfloat16):
        low = model.log_prob(x)
        eps = model.encode(x)
        back = model.decode(eps)
    assert low.dtype == torch.float32
    assert ((low - model.log_prob(x)).abs() / low.abs()).max() < 0.02
    assert (back - x).abs().max() < 1e-3


def test_compiled_log_prob_matches_eager_on_the_gpu():
    model = small_model().cuda()
    x = torch.rand(16, 3, 16, 16, device="cuda") - 0.5
    compiled = torch.compile(model.log_prob)
    assert torch.allclose(compiled(x), model.log_prob(x), rtol=1e-4)


def test_a_short_run_trains_on_the_gpu_with_auto_precision(tmp_path):
    cfg = TrainConfig(dataset="mnist-mini", levels=2, depth=2, hidden_channels=16,
                      batch_size=16, steps=6, device="cuda", log_every=2)  # fmt: skip
    summary = Trainer(cfg, tmp_path / "run").run()
    assert summary["step"] == 6 and summary["precision"] == (
        "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    )
