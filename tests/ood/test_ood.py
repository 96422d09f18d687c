"""Out-of-distribution scores (glowflow.ood.detection, glowflow.ood.compression) on a tiny
model and on hand-made score sets."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from conftest import randomize_
from PIL import Image

from glowflow import Glow
from glowflow.data.evaluate import evaluate_bpd
from glowflow.nn.objective import preprocess
from glowflow.ood.compression import compressed_bits_per_dim
from glowflow.ood.detection import (
    IN_DIST,
    METHODS,
    ImageScores,
    OODError,
    TypicalityTest,
    detect,
    score_images,
)  # fmt: skip
from glowflow.seeding import EVAL, generator


def tiny(num_classes=None):
    torch.manual_seed(0)
    model = Glow(image_shape=(1, 8, 8), levels=2, depth=1, hidden_channels=8,
                 num_classes=num_classes)  # fmt: skip
    y = torch.arange(32) % num_classes if num_classes else None
    model.initialize(torch.rand(32, 1, 8, 8) - 0.5, y)
    return randomize_(model, 0.05).eval()


def images(n=20, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(n, 1, 8, 8, dtype=torch.uint8)
    x[:, :, 2:6, 2:6] = torch.randint(0, 256, (n, 1, 4, 4), generator=g, dtype=torch.uint8)
    return x


def test_scores_match_the_models_bits_per_dim_and_eval():
    model, x = tiny(), images()
    s = score_images(model, x, batch_size=8, seed=3)
    assert s.bpd.dtype == torch.float64 and s.level_bpd.shape == (20, 2)
    assert torch.allclose(s.level_bpd.sum(1), s.bpd)
    # batch k's dequantisation noise is generator (seed, k), as in glowflow eval
    noisy = preprocess(x[8:16], generator=generator(3, 1, EVAL), dtype=torch.float64)
    assert torch.allclose(s.bpd[8:16], model.bits_per_dim(noisy), atol=1e-10)
    assert s.bpd.mean().item() == pytest.approx(evaluate_bpd(model, x, batch_size=8, seed=3))
    assert torch.allclose(s.complexity, s.bpd - s.compressed_bpd)


def test_a_class_conditional_model_is_scored_by_its_marginal_likelihood():
    model, x = tiny(num_classes=3), images(6)
    s = score_images(model, x, batch_size=8)
    noisy = preprocess(x, generator=generator(0, 0, EVAL), dtype=torch.float64)
    assert torch.allclose(s.bpd, model.bits_per_dim(noisy), atol=1e-10)  # no labels: marginal
    by_label = model.bits_per_dim(noisy, torch.zeros(6, dtype=torch.long))
    assert (s.bpd - by_label).abs().max() > 1e-4


def test_compressed_size_is_the_whole_png_file_in_bits_per_dimension():
    x = images(3)
    buf = io.BytesIO()
    Image.fromarray(x[1, 0].numpy()).save(buf, format="PNG", optimize=True)
    bits = compressed_bits_per_dim(x, "png")
    assert bits[1].item() == buf.tell() * 8 / 64
    flat = torch.zeros(1, 1, 8, 8, dtype=torch.uint8)
    for codec in ("png", "webp"):
        assert compressed_bits_per_dim(flat, codec) < compressed_bits_per_dim(x[:1], codec)
    rgb = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8)
    assert compressed_bits_per_dim(rgb, "webp").shape == (2,)


def test_images_that_do_not_fit_are_refused():
    model = tiny()
    with pytest.raises(OODError, match=r"\(1, 8, 8\)"):
        score_images(model, torch.zeros(2, 1, 16, 16, dtype=torch.uint8))
    with pytest.raises(OODError, match="uint8"):
        score_images(model, torch.zeros(2, 1, 8, 8))
    with pytest.raises(OODError, match="empty"):
        score_images(model, torch.zeros(0, 1, 8, 8, dtype=torch.uint8))
    with pytest.raises(OODError, match="codec"):
        score_images(model, images(2), codec="gif")


def fake(bpd, compressed, levels=2):
    bpd = torch.as_tensor(bpd, dtype=torch.float64)
    level = torch.stack([bpd / levels] * levels, 1)
    return ImageScores(bpd, level, torch.as_tensor(compressed, dtype=torch.float64))


def test_typicality_statistic_and_threshold():
    test = TypicalityTest(m=4, level=0.95).fit(torch.tensor([1.0, 3.0, 2.0, 2.0]))
    assert test.reference == 2.0
    assert test.statistics(torch.full((9,), 5.0)).tolist() == [3.0, 3.0]  # the ninth is unused
    # batches are drawn after a seeded shuffle: the same seed gives the same batches
    values = torch.arange(40, dtype=torch.float64)
    assert np.array_equal(test.statistics(values, seed=4), test.statistics(values, seed=4))
    assert not np.array_equal(test.statistics(values, seed=4), test.statistics(values, seed=5))
    # the threshold is the 95% point of |batch mean - reference|: 1.96 sigma / sqrt(m)
    rng = np.random.default_rng(0)
    test = TypicalityTest(m=16, level=0.95).fit(torch.from_numpy(rng.normal(3, 0.4, 4000)))
    assert test.threshold == pytest.approx(1.96 * 0.4 / 4, rel=0.08)


def test_detect_reproduces_the_failure_of_raw_likelihood_on_simpler_images():
    rng = np.random.default_rng(0)
    # in-distribution: 3 bits/dim, 4 for the codec; OOD: simpler images, more likely (1.5
    # bits/dim) but not as much as their simplicity allows (codec 1.2)
    inside = fake(rng.normal(3.0, 0.3, 400), rng.normal(4.0, 0.3, 400))
    outside = fake(rng.normal(1.5, 0.3, 300), rng.normal(1.2, 0.3, 300))
    report = detect(inside, {"simple": outside}, m=5)
    by = {r["method"]: r for r in report.records}
    assert set(by) == set(METHODS)
    assert by["bpd"]["auroc"] < 0.01  # ranks the OOD images as the most normal of all
    assert by["complexity"]["auroc"] > 0.95
    assert by["typicality"]["auroc"] > 0.99  # two-sided: too likely is atypical too
    t = by["typicality"]
    assert t["unit"] == "batch" and t["m"] == 5 and t["n_ood"] == 60 and t["n_in"] == 40
    assert 0 <= t["fpr_at_threshold"] <= 0.2 and t["tpr_at_threshold"] == 1.0
    assert by["complexity"]["codec"] == "png" and by["bpd"]["n_in"] == 200
    assert report.n_calibration == 200 and report.n_evaluation == 200
    assert set(report.scores["bpd"]) == {IN_DIST, "simple"}


def test_calibration_never_sees_the_ood_sets_and_is_disjoint_from_evaluation():
    rng = np.random.default_rng(1)
    inside = fake(rng.normal(3, 0.3, 101), rng.normal(4, 0.3, 101))
    a = detect(inside, {"a": fake(rng.normal(1, 0.3, 50), np.ones(50))}, ["typicality"], m=5)
    b = detect(inside, {"b": fake(rng.normal(9, 0.3, 70), np.ones(70))}, ["typicality"], m=5)
    assert a.records[0]["threshold"] == b.records[0]["threshold"]
    assert a.records[0]["reference_bpd"] == b.records[0]["reference_bpd"]
    assert a.calibration_index == b.calibration_index and a.n_calibration == 50
    evaluation = sorted(set(range(101)) - set(a.calibration_index))
    assert len(evaluation) == 51 and a.records[0]["n_in"] == 51 // 5
    assert np.array_equal(
        detect(inside, {"a": inside}, ["bpd"]).scores["bpd"][IN_DIST],
        inside.bpd[evaluation].numpy(),
    )


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(methods=["bpd", "likelihood-ratio"]), "likelihood-ratio"),
        (dict(methods=["typicality"], m=30), "fewer than the typicality batch size M=30"),
        (dict(calibration_fraction=1.0), "calibration fraction"),
    ],
)
def test_detect_refuses_what_it_cannot_judge(kwargs, match):
    inside = fake(np.ones(40), np.ones(40))
    with pytest.raises(OODError, match=match):
        detect(inside, {"small": fake(np.ones(20), np.ones(20))}, **kwargs)
    with pytest.raises(OODError, match="empty"):
        detect(inside, {"none": fake(np.ones(0), np.ones(0))}, ["bpd"])
    with pytest.raises(OODError, match="no OOD set"):
        detect(inside, {})
