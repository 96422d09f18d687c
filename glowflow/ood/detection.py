"""Out-of-distribution (OOD) detection with a Glow's exact likelihood.

A flow trained on one image set gives a density, and the obvious test of whether an image is
unusual is its bits/dim. That test is known to fail: a Glow trained on Fashion-MNIST gives MNIST
digits *fewer* bits/dim than the clothes it learned (Nalisnick et al. 2019, "Do deep generative
models know what they don't know?"), because simple images are likely under any model of
images. This module scores images and judges four scores, each oriented so that a *higher*
score means *more likely OOD*:

- ``bpd``: bits/dim under the model (the raw likelihood, kept as the baseline).
- ``complexity``: bits/dim minus the bits/dim a lossless codec needs for the same image (Serrà
  et al. 2020, "Input complexity and out-of-distribution detection with likelihood-based
  generative models": ``S(x) = -log2 p(x) - L(x)``, here per dimension). The codec stands in for
  a universal model of images, so ``S`` asks whether *this* model explains the image better than
  a generic one.
- ``dose``: the density of states (Morningstar et al. 2021, ``glowflow.ood.density``): the
  negative log density of the image's per-level bits/dim and codec bits/dim under a kernel
  density fitted on the calibration images. It flags an image whose statistics are unusual in
  any direction, one image at a time: simpler images and more complex ones alike.
- ``typicality``: the test of Nalisnick et al. (2019, "Detecting out-of-distribution inputs to
  deep generative models using typicality") on batches of ``M`` images: ``|mean bpd of the batch
  - mean bpd of in-distribution images|``. A set of images is flagged when its average bits/dim
  is far from the model's typical value in either direction, which catches sets that are too
  likely as well as too unlikely. It judges batches, not single images.

Typical use, on uint8 image tensors::

    model = Glow.from_pretrained("fashion-mnist")
    held_out = score_images(model, fashion_test_images)
    digits = score_images(model, mnist_images)
    report = detect(held_out, {"mnist": digits})
    report.records  # [{"ood": "mnist", "method": "bpd", "auroc": ..., ...}, ...]

The in-distribution images must be ones the model never trained on. ``detect`` splits them
at random into a calibration part (the density of states and typicality's reference value and
thresholds are fitted on it, never on the OOD sets) and an evaluation part on which every method
is judged.
A class-conditional model is scored with its marginal likelihood over classes (a uniform label
prior): labels of the images are never used.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch

from glowflow.data.evaluate import eval_batches, image_bits
from glowflow.errors import GlowflowError
from glowflow.nn.model import GlowFlow
from glowflow.nn.objective import bits_per_dim_levels, quantize
from glowflow.ood.compression import CODECS, compressed_bits_per_dim
from glowflow.ood.density import (
    DEFAULT_BANDWIDTH,
    DensityOfStates,
    state_statistics,
    statistic_names,
)
from glowflow.ood.metrics import aupr, auroc, detection_metrics, fpr_at_tpr

__all__ = ["CODECS", "DEFAULT_BANDWIDTH", "DEFAULT_TYPICALITY_M", "IN_DIST", "METHODS",
           "PER_IMAGE", "ImageScores", "OODError", "Report", "TypicalityTest", "aupr", "auroc",
           "check_methods", "check_sets", "detect", "detection_metrics", "fpr_at_tpr",
           "score_images"]  # fmt: skip

METHODS = ("bpd", "complexity", "dose", "typicality")
PER_IMAGE = ("bpd", "complexity", "dose")  # the methods that score one image at a time
DEFAULT_TYPICALITY_M = 10
IN_DIST = "in-dist"  # the key of the in-distribution scores in Report.scores


class OODError(GlowflowError, ValueError):
    """Sets or options that cannot be scored as asked; the message says why and what to do."""


@dataclass
class ImageScores:
    """Per-image scores of one image set.

    Attributes:
        bpd: float64 ``[N]`` bits/dim under the model.
        level_bpd: float64 ``[N, L]`` each level's share of ``bpd`` (rows sum to it; level 0
            carries the quantisation bits, see ``glowflow.nn.objective.bits_per_dim_levels``).
        compressed_bpd: float64 ``[N]`` bits/dim of the image stored by ``codec`` (the image
            the model scores: for ``n_bits < 8`` its quantised levels).
        codec: the lossless codec (one of ``CODECS``).
        samples: the dequantisation draws behind ``bpd``: with more than one it is the
            importance-weighted estimate (``glowflow.data.evaluate.image_bits``), while
            ``level_bpd`` stays that of the first draw, the one a single-draw ``bpd`` uses.
    """

    bpd: torch.Tensor
    level_bpd: torch.Tensor
    compressed_bpd: torch.Tensor
    codec: str = "png"
    samples: int = 1

    @property
    def complexity(self) -> torch.Tensor:
        """The input-complexity score ``bpd - compressed_bpd``: ``[N]``."""
        return self.bpd - self.compressed_bpd

    def __len__(self) -> int:
        return len(self.bpd)

    def per_image(self, method: str) -> torch.Tensor:
        """The per-image score of ``method`` (``bpd`` or ``complexity``)."""
        if method == "bpd":
            return self.bpd
        if method == "complexity":
            return self.complexity
        raise OODError(f"{method!r} is not a per-image score; use bpd or complexity")

    def subset(self, index: torch.Tensor) -> ImageScores:
        return ImageScores(
            self.bpd[index], self.level_bpd[index], self.compressed_bpd[index], self.codec,
            self.samples,
        )  # fmt: skip


@torch.no_grad()
def score_images(
    model: GlowFlow,
    images: torch.Tensor,
    batch_size: int = 256,
    seed: int = 0,
    device: torch.device | str | None = None,
    codec: str = "png",
    progress: Callable[[Iterable, int], Iterable] | None = None,
    samples: int = 1,
) -> ImageScores:
    """Bits/dim (total and per level) and compressed size of every uint8 image ``(N, C, H, W)``.

    The batches and their noise are those of ``glowflow.data.evaluate.eval_batches``, as in
    ``glowflow.data.evaluate.evaluate_bpd``, so the mean of ``bpd`` is what ``glowflow eval``
    reports for the same batch size. A class-conditional model gives the marginal likelihood.
    ``progress`` wraps the batch iterator and gets the batch count. ``samples > 1`` makes
    ``bpd`` the importance-weighted estimate over that many draws an image.
    """
    if codec not in CODECS:
        raise OODError(f"unknown codec {codec!r}; use one of {', '.join(CODECS)}")
    shape = tuple(images.shape[1:])
    if images.dtype != torch.uint8 or images.dim() != 4 or shape != model.config.image_shape:
        raise OODError(
            f"the model takes uint8 images {model.config.image_shape}, got {images.dtype} "
            f"{shape}; resize or pad the images to fit"
        )
    if len(images) == 0:
        raise OODError("no images to score: the set is empty")
    was_training = model.training
    model.eval()
    device = torch.device(device) if device is not None else next(model.parameters()).device
    cfg = model.config
    levels, compressed = [], []
    try:
        for _, batch, x in eval_batches(model, images, batch_size, seed, device, progress):
            parts = model.log_prob_levels(x).double()
            levels.append(bits_per_dim_levels(parts, cfg.num_dims, cfg.n_bits).cpu())
            # the codec gets the same discrete image the model scores: its n_bits levels
            compressed.append(compressed_bits_per_dim(quantize(batch, cfg.n_bits), codec))
    finally:
        model.train(was_training)
    level_bpd = torch.cat(levels)
    bpd = level_bpd.sum(1)
    if samples > 1:
        bits, _ = image_bits(model, images, batch_size=batch_size, seed=seed, device=device,
                             samples=samples)  # fmt: skip
        bpd = bits / cfg.num_dims
    return ImageScores(
        bpd=bpd,
        level_bpd=level_bpd,
        compressed_bpd=torch.cat(compressed),
        codec=codec,
        samples=samples,
    )


class TypicalityTest:
    """The typicality test on batches of ``m`` images, fitted on in-distribution images.

    The statistic of a batch is ``|mean bpd of its images - reference|``, the reference being
    the mean bpd of the calibration images. The threshold is the ``level`` quantile of the
    statistic over ``bootstraps`` batches drawn with replacement from the calibration images, so
    about ``1 - level`` of in-distribution batches are flagged.
    """

    def __init__(
        self, m: int = DEFAULT_TYPICALITY_M, level: float = 0.95, bootstraps: int = 5000
    ) -> None:
        if m < 1:
            raise OODError(f"the typicality batch size M must be at least 1, got {m}")
        if not 0 < level < 1:
            raise OODError(f"the typicality level must lie in (0, 1), got {level}")
        self.m, self.level, self.bootstraps = m, level, bootstraps
        self.reference: float | None = None
        self.threshold: float | None = None

    def fit(self, calibration_bpd: torch.Tensor, seed: int = 0) -> TypicalityTest:
        bpd = np.asarray(calibration_bpd, dtype=np.float64)
        if bpd.size < 2:
            raise OODError("the typicality test needs at least 2 calibration images")
        self.reference = float(bpd.mean())
        rng = np.random.default_rng(seed)
        draws = bpd[rng.integers(0, bpd.size, size=(self.bootstraps, self.m))]
        self.threshold = float(np.quantile(np.abs(draws.mean(1) - self.reference), self.level))
        return self

    def statistics(self, bpd: torch.Tensor, seed: int = 0) -> np.ndarray:
        """The statistic of each batch of ``m`` images, the batches being consecutive after a
        seeded shuffle; the ``len(bpd) % m`` images left over are not used."""
        if self.reference is None:
            raise RuntimeError("fit the typicality test before using it")
        values = np.asarray(bpd, dtype=np.float64)
        n = values.size // self.m * self.m
        order = np.random.default_rng(seed).permutation(values.size)[:n]
        return np.abs(values[order].reshape(-1, self.m).mean(1) - self.reference)


@dataclass
class Report:
    """What ``detect`` found.

    Attributes:
        records: one dict per (OOD set, method): ``ood``, ``method``, ``auroc``, ``aupr``,
            ``fpr95``, ``unit`` (``image`` or ``batch``), ``n_in``, ``n_ood``, the mean score of
            each side, and for ``typicality`` ``m``, ``threshold``, ``reference_bpd`` and the
            rates flagged at the threshold (``tpr_at_threshold``, ``fpr_at_threshold``); for
            ``dose`` the ``statistics`` it fits, ``bandwidth`` (the factor on Scott's rule),
            ``kernel_scale``, ``n_fit``, and the ``threshold`` (the ``level`` quantile of the
            calibration images' leave-one-out scores) with the rates flagged at it; for
            ``complexity`` the ``codec``.
        scores: ``scores[method][set]``, the scores each record was computed from (the
            in-distribution evaluation part under ``IN_DIST``), for plots.
        calibration_index: which in-distribution images calibrated the density of states and
            the typicality test (the others are the evaluation part), in increasing order.
        n_evaluation: how many in-distribution images every method was judged on.
        density: the density of states fitted on the calibration part (``dose`` only), to score
            new images with ``density.score(state_statistics(score_images(model, images)))``.
        methods, m, calibration_fraction, seed, level, bandwidth: the settings ``detect``
            ran with.
    """

    records: list[dict[str, Any]] = field(default_factory=list)
    scores: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    calibration_index: list[int] = field(default_factory=list)
    n_evaluation: int = 0
    methods: list[str] = field(default_factory=lambda: list(METHODS))
    m: int = DEFAULT_TYPICALITY_M
    calibration_fraction: float = 0.5
    seed: int = 0
    level: float = 0.95
    bandwidth: float = DEFAULT_BANDWIDTH
    density: DensityOfStates | None = None

    @property
    def n_calibration(self) -> int:
        return len(self.calibration_index)


def detect(
    in_dist: ImageScores,
    ood_sets: dict[str, ImageScores],
    methods: Sequence[str] = METHODS,
    m: int = DEFAULT_TYPICALITY_M,
    calibration_fraction: float = 0.5,
    seed: int = 0,
    level: float = 0.95,
    bandwidth: float = DEFAULT_BANDWIDTH,
) -> Report:
    """Judge each method on telling ``ood_sets`` from the held-out in-distribution images.

    Args:
        in_dist: scores of in-distribution images the model never trained on.
        ood_sets: name -> scores of each other set.
        methods: some of ``METHODS``.
        m: images per batch of the typicality test.
        calibration_fraction: the share of ``in_dist`` (drawn at random with ``seed``) that
            fits the density of states and calibrates the typicality test; every method is
            judged on the rest.
        seed: for the split and the batches.
        level: the thresholds' quantile (their nominal in-distribution pass rate).
        bandwidth: the density of states' kernel width, a factor on Scott's rule.

    Raises:
        OODError: for unknown methods, empty sets, or a set too small for batches of ``m``.
    """
    check_sets(len(in_dist), {k: len(v) for k, v in ood_sets.items()}, methods, m,
               calibration_fraction)  # fmt: skip
    n = len(in_dist)
    n_cal = round(n * calibration_fraction)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    cal_index = perm[:n_cal].sort().values
    calibration = in_dist.subset(cal_index)
    evaluation = in_dist.subset(perm[n_cal:].sort().values)

    report = Report(
        calibration_index=cal_index.tolist(), n_evaluation=n - n_cal, methods=list(methods), m=m,
        calibration_fraction=calibration_fraction, seed=seed, level=level, bandwidth=bandwidth,
    )  # fmt: skip
    for method in methods:
        extra: dict[str, Any] = {}
        test = threshold = None
        if method == "typicality":
            test = TypicalityTest(m, level).fit(calibration.bpd, seed)
            threshold = test.threshold
            extra = {"m": m, "threshold": threshold, "reference_bpd": test.reference}
        elif method == "complexity":
            extra = {"codec": in_dist.codec}
        elif method == "dose":
            report.density = DensityOfStates(bandwidth).fit(state_statistics(calibration))
            threshold = float(np.quantile(report.density.loo_scores().numpy(), level))
            extra = {
                "statistics": statistic_names(in_dist.level_bpd.shape[1], in_dist.codec),
                "bandwidth": bandwidth, "kernel_scale": report.density.scale,
                "n_fit": report.density.n_fit, "threshold": threshold,
            }  # fmt: skip
        inside = _method_scores(method, evaluation, test, seed, report.density)
        report.scores[method] = {IN_DIST: inside}
        for name, scores in ood_sets.items():
            outside = _method_scores(method, scores, test, seed, report.density)
            report.scores[method][name] = outside
            record = {"ood": name, "method": method, **detection_metrics(inside, outside)}
            record.update(
                unit="batch" if test else "image",
                n_in=int(inside.size),
                n_ood=int(outside.size),
                mean_score_in=float(np.mean(inside)),
                mean_score_ood=float(np.mean(outside)),
                **extra,
            )
            if threshold is not None:
                record["tpr_at_threshold"] = float(np.mean(outside > threshold))
                record["fpr_at_threshold"] = float(np.mean(inside > threshold))
            report.records.append(record)
    return report


def check_methods(methods: Sequence[str]) -> None:
    """Raise an ``OODError`` unless ``methods`` are some of ``METHODS``."""
    unknown = [name for name in methods if name not in METHODS]
    if unknown or not methods:
        raise OODError(f"unknown method {unknown[0] if unknown else '(none)'}; use some of "
                       f"{', '.join(METHODS)}")  # fmt: skip


def check_sets(
    n_in: int,
    ood_sizes: dict[str, int],
    methods: Sequence[str] = METHODS,
    m: int = DEFAULT_TYPICALITY_M,
    calibration_fraction: float = 0.5,
) -> None:
    """Refuse, before any image is scored, what ``detect`` could not judge: unknown
    methods, no or empty OOD sets, a split that leaves a part empty, sets smaller than ``m``.

    Raises:
        OODError: naming the problem and the fix.
    """
    check_methods(methods)
    if not ood_sizes:
        raise OODError("no OOD set to compare with; give at least one")
    if not 0 < calibration_fraction < 1:
        raise OODError(f"the calibration fraction must lie in (0, 1), got {calibration_fraction}")
    n_cal = round(n_in * calibration_fraction)
    if n_cal < 2 or n_in - n_cal < 1:
        raise OODError(
            f"{n_in} in-distribution images cannot be split {calibration_fraction:g} for "
            f"calibration and the rest for evaluation; use a larger set"
        )
    for name, size in ood_sizes.items():
        if size == 0:
            raise OODError(f"the OOD set {name} is empty; give it at least one image")
    if "typicality" in methods:
        for name, size in [(None, n_in - n_cal), *ood_sizes.items()]:
            if size < m:
                what = name or "the in-distribution evaluation part"
                raise OODError(
                    f"{what} has {size} images, fewer than the typicality batch size "
                    f"M={m}; use a larger set or a smaller M"
                )


def _method_scores(
    method: str,
    scores: ImageScores,
    test: TypicalityTest | None,
    seed: int,
    density: DensityOfStates | None,
) -> np.ndarray:
    """One method's scores of a set: per image, or per batch for the typicality test."""
    if test is not None:
        return test.statistics(scores.bpd, seed)
    if method == "dose":
        return density.score(state_statistics(scores)).numpy()
    return scores.per_image(method).numpy()
