"""Threshold-free detection metrics: AUROC, AUPR and the false-positive rate at 95% recall.

Conventions, the same for every function: the out-of-distribution (OOD) images are the positive
class, and a *higher* score means *more likely OOD*. A score that runs the other way is not
flipped here, so an AUROC under 0.5 shows a score that ranks the wrong way round. Tied scores
are one threshold: the ROC curve steps diagonally through them (an OOD and an in-distribution
image with the same score count as half a correct ranking), and precision is taken after the
whole tie, as in scikit-learn's ``roc_auc_score`` and ``average_precision_score``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["aupr", "auroc", "detection_metrics", "fpr_at_tpr"]


def _as_scores(x: Any, what: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64).reshape(-1)
    if a.size == 0:
        raise ValueError(f"no {what} scores: each side needs at least one")
    if np.isnan(a).any():
        raise ValueError(f"{what} scores contain NaN; a score must be a number (inf is allowed)")
    return a


def _curve(in_scores: Any, ood_scores: Any) -> tuple[np.ndarray, np.ndarray, int, int]:
    """True and false positives at each distinct threshold, from the highest score down."""
    neg = _as_scores(in_scores, "in-distribution")
    pos = _as_scores(ood_scores, "OOD")
    scores = np.concatenate([pos, neg])
    is_pos = np.concatenate([np.ones(pos.size), np.zeros(neg.size)])
    order = np.argsort(-scores, kind="mergesort")
    scores, is_pos = scores[order], is_pos[order]
    # the last position of every run of equal scores: a threshold takes a whole tie or none
    ends = np.r_[np.flatnonzero(scores[1:] != scores[:-1]), scores.size - 1]
    tp = np.cumsum(is_pos)[ends]
    fp = ends + 1 - tp
    return tp, fp, pos.size, neg.size


def auroc(in_scores: Any, ood_scores: Any) -> float:
    """Area under the ROC curve: the chance that a random OOD image scores above a random
    in-distribution one (ties count half)."""
    tp, fp, p, n = _curve(in_scores, ood_scores)
    tpr = np.r_[0.0, tp / p]
    fpr = np.r_[0.0, fp / n]
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))


def aupr(in_scores: Any, ood_scores: Any) -> float:
    """Area under the precision-recall curve with OOD positive, as average precision:
    ``sum_k (R_k - R_{k-1}) P_k`` over the distinct thresholds."""
    tp, fp, p, _ = _curve(in_scores, ood_scores)
    precision = tp / (tp + fp)
    recall = np.r_[0.0, tp / p]
    return float(np.sum(np.diff(recall) * precision))


def fpr_at_tpr(in_scores: Any, ood_scores: Any, tpr: float = 0.95) -> float:
    """The fraction of in-distribution images flagged at the highest threshold that flags at
    least ``tpr`` of the OOD images."""
    if not 0 < tpr <= 1:
        raise ValueError(f"tpr must lie in (0, 1], got {tpr}")
    tp, fp, p, n = _curve(in_scores, ood_scores)
    first = int(np.argmax(tp / p >= tpr - 1e-12))  # the recall reaches 1 at the last threshold
    return float(fp[first] / n)


def detection_metrics(in_scores: Any, ood_scores: Any) -> dict[str, float]:
    """``{"auroc", "aupr", "fpr95"}`` for one score on one pair of sets."""
    return {
        "auroc": auroc(in_scores, ood_scores),
        "aupr": aupr(in_scores, ood_scores),
        "fpr95": fpr_at_tpr(in_scores, ood_scores, 0.95),
    }
