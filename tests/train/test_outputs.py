"""What a run shows: validation records, sample grids, and the closing files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import digits, small_config
from PIL import Image

from glowflow.config import GlowConfig
from glowflow.data.imagedata import ImageData
from glowflow.distributed import DistInfo
from glowflow.hub.model import Glow
from glowflow.latent.latents import sample_images
from glowflow.train.outputs import RunOutputs
from glowflow.train.rundir import RunDir
from glowflow.train.steplog import MetricsLog


@pytest.fixture
def val_data() -> ImageData:
    x, y = digits(24)
    return ImageData(torch.from_numpy(x).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(y))


def model(num_classes=None) -> Glow:
    config = GlowConfig(image_shape=(1, 16, 16), levels=2, depth=1, hidden_channels=8,
                        num_classes=num_classes)  # fmt: skip
    model = Glow.from_config(config)
    model.initialize(torch.rand(8, 1, 16, 16, generator=torch.Generator().manual_seed(0)) - 0.5)
    return model.eval()


def outputs(digits_npz, tmp_path, val_data, lines=None, **kw) -> RunOutputs:
    cfg = small_config(digits_npz, n_samples=6, **kw)
    log = lines.append if lines is not None else (lambda message: None)
    return RunOutputs(cfg, RunDir(tmp_path / "run"), val_data, DistInfo(), log)


def test_a_validation_pass_is_recorded_and_said(digits_npz, tmp_path, val_data):
    lines: list[str] = []
    out = outputs(digits_npz, tmp_path, val_data, lines)
    metrics = MetricsLog(out.folder, tensorboard=False, log=lines.append)
    (tmp_path / "run").mkdir()
    glow = model()
    bpd = out.evaluate(glow, metrics, step=5, elapsed=1.234)
    assert 0 < bpd < 20
    assert out.folder.read_metrics() == [{"step": 5, "time": 1.23, "val_bpd": bpd}]
    assert lines == [f"step 5: validation {bpd:.4f} bits/dim"]
    again = outputs(digits_npz, tmp_path, val_data).evaluate(glow, metrics, 5, 1.0)
    assert again == bpd  # the noise comes from the seed
    assert outputs(digits_npz, tmp_path, None).evaluate(glow, metrics, 6, 2.0) is None
    assert len(out.folder.read_metrics()) == 2


@pytest.mark.parametrize("num_classes", [None, 3])
def test_a_sample_grid_holds_the_samples_of_seeds_0_to_n(digits_npz, tmp_path, val_data,
                                                         num_classes):  # fmt: skip
    out = outputs(digits_npz, tmp_path, val_data, sample_temperature=0.5)
    glow = model(num_classes)
    path = out.save_samples(glow, step=12)
    assert path == out.folder.sample_path(12) and path.is_file()
    labels = torch.arange(6) % 3 if num_classes else None
    want = sample_images(glow, range(6), 0.5, labels)
    grid = np.array(Image.open(path))  # (H, W, 3)
    first = torch.from_numpy(grid[2:18, 2:18, 0])  # the first cell, inside its 2-pixel border
    assert torch.equal(first, want[0, 0])


def test_the_end_writes_the_last_grid_the_curve_and_the_summary(digits_npz, tmp_path, val_data):
    out = outputs(digits_npz, tmp_path, val_data)
    out.folder.start({"train": {}}, overwrite=False)
    out.folder.append_metrics({"step": 1, "bpd": 5.0, "loss": 5.0})
    out.finish(model(), 1, {"step": 1, "val_bpd": 4.5})
    assert json.loads(out.folder.summary.read_text()) == {"step": 1, "val_bpd": 4.5}
    assert out.folder.learning_curve.is_file() and out.folder.sample_path(1).is_file()
