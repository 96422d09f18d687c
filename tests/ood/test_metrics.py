"""Detection metrics: hand-worked cases, ties, direction, and agreement with scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest

from glowflow.ood.metrics import aupr, auroc, detection_metrics, fpr_at_tpr


def test_perfect_reversed_and_tied_scores():
    inside, outside = [0.1, 0.2, 0.3], [0.7, 0.8]
    assert detection_metrics(inside, outside) == {"auroc": 1.0, "aupr": 1.0, "fpr95": 0.0}
    # a score that runs the wrong way is not flipped: AUROC 0 says so
    assert auroc(outside, inside) == 0.0
    assert fpr_at_tpr(outside, inside) == 1.0
    # every score equal: one threshold, half credit, precision = the OOD share
    assert auroc([1, 1, 1], [1, 1]) == 0.5
    assert aupr([1, 1, 1], [1, 1]) == pytest.approx(2 / 5)
    assert fpr_at_tpr([1, 1, 1], [1, 1]) == 1.0


def test_hand_worked_example():
    # OOD (positive) 0.9, 0.5, 0.5, 0.2; in-dist 0.5, 0.3, 0.1
    inside, outside = [0.5, 0.3, 0.1], [0.9, 0.5, 0.5, 0.2]
    # pairs won: 0.9 beats 3; each 0.5 beats 2 and ties 1; 0.2 beats 1 -> (3 + 2.5 + 2.5 + 1)/12
    assert auroc(inside, outside) == pytest.approx(9 / 12)
    # thresholds 0.9: P=1/1, R=1/4; 0.5: P=3/4, R=3/4; 0.3: R stays; 0.2: P=4/6, R=1
    assert aupr(inside, outside) == pytest.approx(0.25 * 1 + 0.5 * 0.75 + 0.25 * 4 / 6)
    # recall 0.95 is first reached at threshold 0.2, where 2 of 3 in-dist images are flagged
    assert fpr_at_tpr(inside, outside) == pytest.approx(2 / 3)
    assert fpr_at_tpr(inside, outside, tpr=0.75) == pytest.approx(1 / 3)


def test_infinite_scores_rank_highest_and_nan_is_refused():
    assert auroc([0.0, 1.0], [np.inf, 2.0]) == 1.0
    with pytest.raises(ValueError, match="NaN"):
        auroc([0.0, np.nan], [1.0])
    with pytest.raises(ValueError, match="at least one"):
        aupr([], [1.0])


@pytest.mark.parametrize("seed", range(6))
def test_agrees_with_scikit_learn_on_tied_scores(seed):
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(seed)
    # few distinct values, so that ties between and within the classes are common
    inside = rng.integers(0, 12, size=int(rng.integers(5, 60))).astype(float)
    outside = rng.integers(3, 15, size=int(rng.integers(5, 60))).astype(float)
    y = np.r_[np.zeros(inside.size), np.ones(outside.size)]
    s = np.r_[inside, outside]
    assert auroc(inside, outside) == pytest.approx(metrics.roc_auc_score(y, s), abs=1e-12)
    assert aupr(inside, outside) == pytest.approx(metrics.average_precision_score(y, s), abs=1e-12)
    fpr, tpr, _ = metrics.roc_curve(y, s)
    assert fpr_at_tpr(inside, outside) == pytest.approx(fpr[np.argmax(tpr >= 0.95)], abs=1e-12)
