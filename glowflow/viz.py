"""Pictures: image grids as PNG and learning-curve plots."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def image_grid(images: torch.Tensor, nrow: int | None = None, padding: int = 2) -> np.ndarray:
    """uint8 images ``(N, C, H, W)`` (C = 1 or 3) -> one ``(H', W', 3)`` uint8 grid array."""
    if images.dtype != torch.uint8 or images.dim() != 4:
        raise ValueError(f"expected uint8 images (N, C, H, W), got {images.dtype} {images.shape}")
    n, c, h, w = images.shape
    nrow = nrow or max(1, math.ceil(math.sqrt(n)))
    rows = math.ceil(n / nrow)
    imgs = images.expand(-1, 3, -1, -1) if c == 1 else images
    grid = np.full(
        (rows * (h + padding) + padding, nrow * (w + padding) + padding, 3), 255, np.uint8
    )
    arr = imgs.permute(0, 2, 3, 1).cpu().numpy()
    for k in range(n):
        r, col = divmod(k, nrow)
        top, left = padding + r * (h + padding), padding + col * (w + padding)
        grid[top : top + h, left : left + w] = arr[k]
    return grid


def save_grid(images: torch.Tensor, path: str | Path, nrow: int | None = None) -> Path:
    """Save uint8 images as one PNG grid with ``nrow`` images a row."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image_grid(images, nrow)).save(path)
    return path


def new_figure(width: float, height: float):
    """A matplotlib figure drawn by the Agg renderer, without pyplot: the user's backend and
    pyplot state are left alone, and matplotlib is imported only when a plot is made."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def plot_learning_curve(records: list[dict], out: str | Path) -> Path:
    """Train and validation bits/dim against step, from ``metrics.jsonl`` records, as a PNG."""
    train = [(r["step"], r["bpd"]) for r in records if "bpd" in r]
    val = [(r["step"], r["val_bpd"]) for r in records if "val_bpd" in r]
    fig = new_figure(6, 4)
    ax = fig.subplots()
    if train:
        ax.plot(*zip(*train), label="train", lw=1)
    if val:
        ax.plot(*zip(*val), "o-", label="validation (EMA weights)", ms=3)
    ax.set_xlabel("step")
    ax.set_ylabel("bits / dim")
    ys = [y for _, y in train[len(train) // 10 :] + val]
    if ys:
        lo, hi = min(ys), max(ys)
        ax.set_ylim(lo - 0.05 * (hi - lo + 1e-3), hi + 0.05 * (hi - lo + 1e-3))
    ax.grid(alpha=0.3)
    if train or val:
        ax.legend()
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out)
    return out
