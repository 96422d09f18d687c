"""Pictures: image grids as PNG and learning-curve plots."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from glowflow.files import atomic_write


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
    atomic_write(path, lambda f: Image.fromarray(image_grid(images, nrow)).save(f, format="PNG"))
    return path


def save_figure(fig, out: str | Path) -> Path:
    """Save a figure atomically, in the format its suffix names (PNG by default)."""
    out = Path(out)
    atomic_write(out, lambda f: fig.savefig(f, format=out.suffix.lstrip(".") or "png"))
    return out


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
    return save_figure(fig, out)


def plot_score_histograms(
    scores: dict[str, dict[str, np.ndarray]],
    aurocs: dict[tuple[str, str], float],
    labels: dict[str, str],
    out: str | Path,
    thresholds: dict[str, float] | None = None,
    title: str | None = None,
    log_scale: Sequence[str] = (),
) -> Path:
    """One panel per method: histograms of the in-distribution and each OOD set's scores.

    Args:
        scores: ``scores[method][set]`` as in ``glowflow.ood.detection.Report``; the
            first set of each method is the in-distribution one.
        aurocs: ``(method, set) -> AUROC``, shown in the legend.
        labels: method -> the axis label of its score.
        thresholds: method -> a threshold drawn as a dashed line.
        title: a line above the panels.
        log_scale: methods whose scores span orders of magnitude (a negative log density grows
            with the square of a distance): their scores are shifted to start at 0 (the axis
            label says by how much), their axis is logarithmic beyond 1 and linear below, their
            bins even on it, and each bar the share of its set's images.
    """
    methods = list(scores)
    fig = new_figure(5.2 * len(methods), 3.8)
    axes = fig.subplots(1, len(methods), squeeze=False)[0]
    for ax, method in zip(axes, methods):
        sets = scores[method]
        logged = method in log_scale
        finite = np.concatenate([v[np.isfinite(v)] for v in sets.values()])
        lo, hi = np.quantile(finite, [0.001, 0.999]) if finite.size else (0.0, 1.0)
        shift = -lo if logged else 0.0
        if logged:  # from 0, even on the axis: log10(1 + v)
            lo, hi = 0.0, hi + shift
            bins = 10 ** np.linspace(0, np.log10(1 + hi) + 1e-9, 60) - 1
        else:
            bins = np.linspace(lo, hi + 1e-9, 60)
        for i, (name, values) in enumerate(sets.items()):
            label = name if i == 0 else f"{name} (AUROC {aurocs[(method, name)]:.3f})"
            clipped = np.clip(values[np.isfinite(values)] + shift, lo, hi)
            weights = np.full(clipped.size, 1 / max(clipped.size, 1)) if logged else None
            ax.hist(clipped, bins=bins, density=not logged, weights=weights,
                    histtype="step" if i else "stepfilled", alpha=0.45 if i == 0 else 1.0,
                    lw=1.5, label=label)  # fmt: skip
        if thresholds and method in thresholds:
            ax.axvline(thresholds[method] + shift, color="k", ls="--", lw=1, label="threshold")
        xlabel = labels.get(method, method)
        if logged:
            ax.set_xscale("symlog", linthresh=1.0)
            ax.set_xlim(bins[0], bins[-1])
            xlabel += f" {'+' if shift >= 0 else '-'} {abs(shift):.3g}"
        ax.set_title(method)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("share of images" if logged else "density")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, out)
