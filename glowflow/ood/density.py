"""Density of states: how likely an image's own likelihood statistics are, fitted on held-out
in-distribution images (Morningstar et al. 2021, "Density of States Estimation for
Out-of-Distribution Detection").

Bits/dim alone is one number, and OOD images can have too few bits as well as too many. The
exact likelihood of a multi-scale Glow gives more: each level's share of the bits (the local
detail that level 0 codes, the global shape that the top codes) and, beside it, the bits a
lossless codec needs for the same image. Over in-distribution images these statistics follow a
narrow joint distribution; an image whose statistics fall outside it is unusual, whichever way it
differs. This module fits a Gaussian kernel density estimate to the statistics of the calibration
images and scores an image by the negative log density of its own statistics: one image is scored
from itself and the fitted calibration set alone.

The kernel's covariance is ``(factor * h)**2`` times the calibration statistics' covariance
(``h`` by Scott's rule, ``n ** (-1 / (d + 4))``), so the score does not depend on the units or the
correlation of the statistics, and nothing in it is fitted to OOD images.

Typical use::

    density = DensityOfStates().fit(state_statistics(calibration_scores))
    scores = density.score(state_statistics(score_images(model, images)))  # higher: more unusual
"""

from __future__ import annotations

import math

import torch

from glowflow.errors import GlowflowError

__all__ = ["DEFAULT_BANDWIDTH", "DensityOfStates", "state_statistics", "statistic_names"]

DEFAULT_BANDWIDTH = 1.0  # times Scott's rule: fixed before any detection was judged
_CHUNK = 2048  # query rows a distance block holds


class DensityError(GlowflowError, ValueError):
    """A density that cannot be fitted or used as asked; the message says why."""


def state_statistics(scores) -> torch.Tensor:
    """The statistics a density of states is fitted on, float64 ``[N, L + 1]``: each level's
    bits/dim (``scores.level_bpd``, whose rows sum to the image's bits/dim) and the codec's
    bits/dim of the same image (``scores.compressed_bpd``), of an
    ``ImageScores``."""
    return torch.cat([scores.level_bpd, scores.compressed_bpd[:, None]], dim=1).double()


def statistic_names(levels: int, codec: str) -> list[str]:
    """The names of ``state_statistics``' columns, as ``scores.csv`` names them."""
    return [f"bpd_level_{i}" for i in range(levels)] + [f"{codec}_bpd"]


class DensityOfStates:
    """A Gaussian kernel density estimate of image statistics, scoring ``-log density``.

    Args:
        bandwidth: the factor on Scott's rule (``DEFAULT_BANDWIDTH``); larger smooths more.

    Attributes (after ``fit``):
        n_fit: how many calibration rows the density holds (rows with a non-finite statistic
            are left out).
        scale: the kernel's width, ``bandwidth * n_fit ** (-1 / (d + 4))``, in units of the
            statistics' standard deviations.
    """

    def __init__(self, bandwidth: float = DEFAULT_BANDWIDTH) -> None:
        if not (bandwidth > 0 and math.isfinite(bandwidth)):
            raise DensityError(f"the bandwidth factor must be a positive number, got {bandwidth}")
        self.bandwidth = bandwidth
        self.n_fit = 0
        self.scale = float("nan")
        self._points: torch.Tensor | None = None  # whitened calibration rows
        self._whiten: torch.Tensor | None = None  # lower Cholesky factor of the kernel covariance
        self._mean: torch.Tensor | None = None
        self._log_norm = 0.0

    def fit(self, statistics: torch.Tensor) -> DensityOfStates:
        """Fit on the calibration rows ``statistics`` ``[n, d]``; returns ``self``. Rows with a
        non-finite statistic are left out (``loo_scores`` follows the others, in order).

        Raises:
            DensityError: with fewer than two finite rows.
        """
        x = _rows(statistics)
        x = x[torch.isfinite(x).all(1)]
        n, d = x.shape
        if n < 2:
            raise DensityError(
                f"a density of states needs at least 2 calibration images with finite "
                f"statistics, got {n}; use a larger in-distribution set"
            )
        mean = x.mean(0)
        cov = torch.cov(x.T).reshape(d, d)
        # a ridge of each statistic's own scale keeps the factor defined where statistics are
        # nearly collinear (and a floor where a statistic is the same in every row)
        var = cov.diagonal()
        cov = cov + torch.diag(torch.where(var > 0, 1e-6 * var, torch.full_like(var, 1e-12)))
        self.scale = self.bandwidth * n ** (-1.0 / (d + 4))
        chol = torch.linalg.cholesky(cov) * self.scale
        self._mean, self._whiten = mean, chol
        self._points = self._whitened(x)
        self.n_fit = n
        # log of the kernel's normalising constant and of the mixture's 1/n
        self._log_norm = (
            math.log(n) + 0.5 * d * math.log(2 * math.pi) + float(chol.diagonal().log().sum())
        )
        return self

    def log_density(self, statistics: torch.Tensor) -> torch.Tensor:
        """``log p(s)`` of each row ``[N, d]``, float64 ``[N]``; ``-inf`` where a statistic is
        not finite."""
        x = _rows(statistics)
        self._check(x)
        out = torch.full((len(x),), -math.inf, dtype=torch.float64)
        finite = torch.isfinite(x).all(1)
        u = self._whitened(x[finite])
        values = [
            torch.logsumexp(-0.5 * torch.cdist(block, self._points).square(), dim=1)
            for block in u.split(_CHUNK)
        ]
        out[finite] = (torch.cat(values) if values else u.new_zeros(0)) - self._log_norm
        return out

    def score(self, statistics: torch.Tensor) -> torch.Tensor:
        """The OOD score of each row, ``-log p(s)``: higher means more unusual; ``+inf`` where a
        statistic is not finite (an image the model cannot score is as unusual as can be)."""
        return -self.log_density(statistics)

    def loo_scores(self) -> torch.Tensor:
        """The score of each calibration row under the density of the other ``n_fit - 1``:
        what an unseen in-distribution image scores, for a threshold."""
        self._check(None)
        n = self.n_fit
        values = []
        for start in range(0, n, _CHUNK):
            block = self._points[start : start + _CHUNK]
            logk = -0.5 * torch.cdist(block, self._points).square()
            rows = torch.arange(len(block))
            logk[rows, rows + start] = -math.inf  # leave the row itself out
            values.append(torch.logsumexp(logk, dim=1))
        # the other n - 1 rows make the mixture: 1/(n - 1) instead of 1/n
        return -(torch.cat(values) - self._log_norm + math.log(n) - math.log(n - 1))

    def _whitened(self, x: torch.Tensor) -> torch.Tensor:
        return torch.linalg.solve_triangular(self._whiten, (x - self._mean).T, upper=False).T

    def _check(self, x: torch.Tensor | None) -> None:
        if self._points is None:
            raise RuntimeError("fit the density of states before scoring with it")
        if x is not None and x.shape[1] != self._points.shape[1]:
            raise DensityError(
                f"the density was fitted on {self._points.shape[1]} statistics an image, these "
                f"rows have {x.shape[1]}: score images of the model it was fitted for"
            )


def _rows(statistics: torch.Tensor) -> torch.Tensor:
    x = torch.as_tensor(statistics, dtype=torch.float64)
    if x.dim() != 2:
        raise DensityError(f"statistics are rows [N, d], got shape {tuple(x.shape)}")
    return x
