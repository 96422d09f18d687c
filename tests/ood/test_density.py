"""The density of states (glowflow.ood.density) and its place in a detection: the kernel
density against its closed form, leave-one-out against refitting, invariance to the units of
the statistics, images the model cannot score, and outliers on both sides of the
in-distribution images."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from glowflow.ood.density import DensityOfStates, state_statistics, statistic_names
from glowflow.ood.detection import IN_DIST, METHODS, ImageScores, OODError, detect
from glowflow.ood.results import detection_rows, results_record


def gaussian_rows(n, d=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    mix = torch.tensor([[1.0, 0.0, 0.0], [0.9, 0.3, 0.0], [0.2, -0.5, 0.4]])[:d, :d]
    return (torch.randn(n, d, generator=g, dtype=torch.float64) @ mix.double().T) + 2.0


def test_the_density_is_the_gaussian_mixture_of_its_closed_form():
    points = torch.tensor([[0.0], [1.0], [3.0]], dtype=torch.float64)
    density = DensityOfStates(bandwidth=0.7).fit(points)
    sd = float(points.std())  # the sample standard deviation (n - 1)
    h = 0.7 * 3 ** (-1 / 5) * sd * math.sqrt(1 + 1e-6)  # the ridge: a millionth of the variance
    assert density.scale == pytest.approx(0.7 * 3 ** (-1 / 5))
    for x in (-1.0, 0.5, 2.0, 7.0):
        expected = np.mean(
            [math.exp(-0.5 * ((x - p) / h) ** 2) / (h * math.sqrt(2 * math.pi)) for p in (0, 1, 3)]
        )
        got = density.log_density(torch.tensor([[x]]))
        assert float(got) == pytest.approx(math.log(expected), rel=1e-9)
    assert float(density.score(torch.tensor([[0.5]]))) == -float(
        density.log_density(torch.tensor([[0.5]]))
    )


def test_a_two_dimensional_kernel_follows_the_statistics_covariance():
    x = gaussian_rows(50, d=2)
    density = DensityOfStates().fit(x)
    cov = torch.cov(x.T)
    cov = cov + torch.diag(1e-6 * cov.diagonal())
    kernel = cov * density.scale**2
    query = torch.tensor([[2.5, 1.0], [0.0, 0.0]], dtype=torch.float64)
    normal = torch.distributions.MultivariateNormal(x, covariance_matrix=kernel)
    expected = torch.logsumexp(normal.log_prob(query[:, None, :]), dim=1) - math.log(50)
    torch.testing.assert_close(density.log_density(query), expected, rtol=1e-10, atol=1e-10)


def test_leave_one_out_scores_are_the_scores_of_a_refitted_density_with_the_same_kernel():
    x = gaussian_rows(7)
    density = DensityOfStates().fit(x)
    loo = density.loo_scores()
    for i in range(7):
        others = torch.cat([x[:i], x[i + 1 :]])
        # the same kernel (fitted on all 7), mixed over the other 6 points
        refit = DensityOfStates().fit(x)
        refit._points = refit._whitened(others)
        refit._log_norm += math.log(6) - math.log(7)
        assert float(loo[i]) == pytest.approx(float(refit.score(x[i : i + 1])), rel=1e-12)
    assert (loo > density.score(x)).all()  # without itself, each point is less likely


def test_scores_do_not_depend_on_the_units_or_mixing_of_the_statistics():
    x, query = gaussian_rows(200), gaussian_rows(30, seed=1) * 1.5
    a = torch.tensor([[3.0, 1.0, 0.0], [0.0, 0.5, 0.0], [1.0, 0.0, -2.0]], dtype=torch.float64)
    b = torch.tensor([10.0, -4.0, 0.5], dtype=torch.float64)
    plain = DensityOfStates().fit(x)
    moved = DensityOfStates().fit(x @ a.T + b)
    shift = math.log(abs(float(torch.linalg.det(a))))  # densities differ by the Jacobian only
    # (up to the ridge, a millionth of each statistic's variance)
    torch.testing.assert_close(moved.score(query @ a.T + b), plain.score(query) + shift,
                               rtol=1e-4, atol=1e-4)  # fmt: skip
    torch.testing.assert_close(moved.loo_scores(), plain.loo_scores() + shift, rtol=1e-4,
                               atol=1e-4)  # fmt: skip
    # other units for each statistic (a Jacobian of 1): the ridge scales too, so alike to rounding
    scaled = DensityOfStates().fit(x * torch.tensor([1e3, 1.0, 1e-3], dtype=torch.float64))
    torch.testing.assert_close(scaled.loo_scores(), plain.loo_scores(), rtol=1e-9, atol=1e-9)


def test_non_finite_statistics_score_infinite_and_are_left_out_of_the_fit():
    x = gaussian_rows(20)
    x[3, 1] = math.inf
    x[5, 0] = math.nan
    density = DensityOfStates().fit(x)
    assert density.n_fit == 18
    scores = density.score(x)
    assert scores[3] == math.inf and scores[5] == math.inf
    assert torch.isfinite(scores[[0, 1, 2, 4, 6]]).all()
    assert len(density.loo_scores()) == 18


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: DensityOfStates(0.0), "positive number"),
        (lambda: DensityOfStates().fit(torch.ones(1, 3)), "at least 2 calibration images"),
        (lambda: DensityOfStates().fit(torch.ones(5)), r"rows \[N, d\]"),
        (lambda: DensityOfStates().fit(torch.rand(5, 3)).score(torch.rand(2, 4)), "fitted on 3"),
    ],
)
def test_what_cannot_be_fitted_or_scored_is_refused_with_the_reason(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_identical_calibration_rows_still_give_a_density():
    density = DensityOfStates().fit(torch.ones(10, 2, dtype=torch.float64))
    scores = density.score(torch.tensor([[1.0, 1.0], [1.5, 1.0]], dtype=torch.float64))
    assert torch.isfinite(scores).all() and scores[1] > scores[0]


def image_scores(levels, compressed):
    levels = torch.as_tensor(levels, dtype=torch.float64)
    return ImageScores(levels.sum(1), levels, torch.as_tensor(compressed, dtype=torch.float64))


def test_statistics_are_each_levels_bits_and_the_codecs_bits():
    s = image_scores([[1.0, 2.0], [0.5, 0.25]], [3.0, 4.0])
    assert state_statistics(s).tolist() == [[1.0, 2.0, 3.0], [0.5, 0.25, 4.0]]
    assert statistic_names(2, "webp") == ["bpd_level_0", "bpd_level_1", "webp_bpd"]


def test_dose_flags_images_on_both_sides_that_raw_likelihood_and_complexity_miss():
    """In-distribution images have a varying amount of local detail ``a`` (level 0's bits, and
    the codec's) and a steady global part (level 1's). The OOD sets move bits between the levels,
    one way or the other: their total bits/dim and codec bits are typical, so bpd and complexity
    cannot see them; their statistics are not."""
    rng = np.random.default_rng(0)

    def images(n, moved):
        a = rng.normal(2.0, 0.3, n)
        global_ = rng.normal(1.0, 0.1, n)
        return image_scores(np.stack([a - moved, global_ + moved], 1),
                            a + 1.0 + rng.normal(0, 0.05, n))  # fmt: skip

    inside, more_local, less_local = images(1000, 0.0), images(300, -0.5), images(300, 0.5)
    report = detect(inside, {"more": more_local, "less": less_local}, m=5)
    by = {(r["ood"], r["method"]): r for r in report.records}
    for name in ("more", "less"):
        assert by[name, "dose"]["auroc"] > 0.99 and by[name, "dose"]["fpr95"] < 0.05
        assert 0.3 < by[name, "bpd"]["auroc"] < 0.7
        assert 0.3 < by[name, "complexity"]["auroc"] < 0.7
    dose = by["more", "dose"]
    assert dose["statistics"] == ["bpd_level_0", "bpd_level_1", "png_bpd"]
    assert dose["unit"] == "image" and dose["n_fit"] == 500 and dose["n_in"] == 500
    assert dose["bandwidth"] == 1.0 and dose["kernel_scale"] == pytest.approx(500 ** (-1 / 7))
    # the threshold is fitted on the calibration part: about 5% of unseen in-distribution
    # images lie above it, and nearly every OOD image
    assert 0.02 < dose["fpr_at_threshold"] < 0.09 and dose["tpr_at_threshold"] > 0.95
    assert report.density is not None and report.density.n_fit == 500


def test_dose_is_fitted_on_the_calibration_part_alone():
    rng = np.random.default_rng(1)
    levels = rng.normal(1.0, 0.2, (101, 2))
    inside = image_scores(levels, rng.normal(2, 0.2, 101))
    a = detect(inside, {"a": image_scores(levels[:7] + 5, np.ones(7))}, ["dose"])
    b = detect(inside, {"b": image_scores(levels[:9] - 5, np.ones(9))}, ["dose"])
    assert a.records[0]["threshold"] == b.records[0]["threshold"]
    evaluation = sorted(set(range(101)) - set(a.calibration_index))
    fitted = DensityOfStates().fit(state_statistics(inside.subset(torch.tensor(
        a.calibration_index))))  # fmt: skip
    expected = fitted.score(state_statistics(inside.subset(torch.tensor(evaluation))))
    np.testing.assert_allclose(a.scores["dose"][IN_DIST], expected.numpy(), rtol=1e-12)
    # a wider kernel is another density
    c = detect(inside, {"a": image_scores(levels[:7] + 5, np.ones(7))}, ["dose"], bandwidth=2.0)
    assert c.records[0]["kernel_scale"] == 2 * a.records[0]["kernel_scale"]
    assert c.records[0]["threshold"] != a.records[0]["threshold"]


def test_dose_is_a_default_method_and_has_its_column_and_settings_in_the_files():
    assert "dose" in METHODS
    rng = np.random.default_rng(2)
    inside = image_scores(rng.normal(1.0, 0.2, (40, 2)), rng.normal(2, 0.2, 40))
    outside = {"o": image_scores(rng.normal(3.0, 0.2, (10, 2)), rng.normal(2, 0.2, 10))}
    report = detect(inside, outside, m=5, bandwidth=1.5)
    rows = detection_rows(report, inside, outside)
    cal = [r for r in rows if r["part"] == "calibration"]
    assert [r["dose"] for r in cal] == report.density.loo_scores().tolist()
    ev = [r["dose"] for r in rows if r["part"] == "evaluation"]
    assert ev == pytest.approx(report.scores["dose"][IN_DIST].tolist(), rel=1e-12)
    ood = [r["dose"] for r in rows if r["set"] == "o"]
    assert ood == pytest.approx(report.scores["dose"]["o"].tolist(), rel=1e-12)
    record = results_record(report, inside, outside, checkpoint="m", in_spec="npz:i.npz",
                            ood_specs=["npz:o.npz"])  # fmt: skip
    assert record["dose_bandwidth"] == 1.5 and record["level"] == 0.95


def test_an_unknown_method_is_still_refused():
    inside = image_scores(np.ones((10, 2)), np.ones(10))
    with pytest.raises(OODError, match="unknown method density"):
        detect(inside, {"o": inside}, ["density"])
