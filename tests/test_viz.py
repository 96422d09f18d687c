"""Pictures: grid layout, and plots that leave the user's matplotlib alone."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import torch
from PIL import Image

from glowflow.viz import image_grid, plot_learning_curve, save_grid


def test_grid_places_each_image_with_white_padding():
    images = torch.stack([torch.full((1, 2, 3), 10 * k, dtype=torch.uint8) for k in range(5)])
    grid = image_grid(images, nrow=2, padding=1)
    assert grid.shape == (3 * 3 + 1, 2 * 4 + 1, 3)  # 3 rows of 2, grayscale shown as RGB
    assert (grid[0] == 255).all() and (grid[:, 0] == 255).all()
    for k in range(5):
        r, c = divmod(k, 2)
        assert (grid[1 + 3 * r : 3 + 3 * r, 1 + 4 * c : 4 + 4 * c] == 10 * k).all()
    assert (grid[7:9, 5:8] == 255).all()  # the sixth cell is empty


def test_save_grid_makes_the_folder_and_a_png(tmp_path):
    images = torch.randint(0, 256, (4, 3, 5, 5), dtype=torch.uint8)
    path = save_grid(images, tmp_path / "a" / "b.png", nrow=2)
    assert np.array_equal(np.asarray(Image.open(path)), image_grid(images, 2))


def test_learning_curve_neither_imports_pyplot_nor_switches_the_backend(tmp_path):
    code = f"""
import sys, matplotlib
matplotlib.use("svg")
from glowflow.viz import plot_learning_curve
plot_learning_curve([{{"step": 1, "bpd": 3.0}}, {{"step": 2, "bpd": 2.5, "val_bpd": 2.6}}],
                    {str(tmp_path / "curve.png")!r})
assert matplotlib.get_backend() == "svg", matplotlib.get_backend()
assert "matplotlib.pyplot" not in sys.modules
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert Image.open(tmp_path / "curve.png").size == (600, 400)


def test_plot_in_process_writes_the_file(tmp_path):
    out = plot_learning_curve([{"step": 1, "bpd": 3.0}], tmp_path / "c.png")
    assert out.is_file()
