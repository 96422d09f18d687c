"""The files of a detection (glowflow.ood.results): the results record, the per-image rows and
their CSV, and the OOD sets' names, on hand-made scores and reports."""

from __future__ import annotations

import csv
import io
import json
import math

import numpy as np
import pytest
import torch

from glowflow.ood.detection import IN_DIST, ImageScores, Report, detect
from glowflow.ood.results import (
    csv_text,
    detection_rows,
    ood_set_names,
    results_record,
    score_rows,
)


def scores(bpd, compressed, codec="png"):
    bpd = torch.as_tensor(bpd, dtype=torch.float64)
    levels = torch.stack([bpd / 4, 3 * bpd / 4], 1)
    return ImageScores(bpd, levels, torch.as_tensor(compressed, dtype=torch.float64), codec)


def small_report() -> Report:
    """Four in-distribution images (0 and 2 calibrate), one OOD set of two; a bpd record with
    an infinite figure, and a typicality record."""
    return Report(
        records=[
            {"ood": "digits", "method": "bpd", "auroc": 0.75, "aupr": 0.5, "fpr95": math.inf,
             "unit": "image", "n_in": 2, "n_ood": 2},
            {"ood": "digits", "method": "typicality", "auroc": 1.0, "aupr": 1.0, "fpr95": 0.0,
             "unit": "batch", "m": 2, "threshold": 0.25, "reference_bpd": 3.0},
        ],
        calibration_index=[0, 2], n_evaluation=2, methods=["bpd", "typicality"], m=2,
        calibration_fraction=0.5, seed=7,
    )  # fmt: skip


def test_the_results_record_holds_the_sets_the_settings_and_the_records():
    inside = scores([3.0, 2.0, 4.0, 3.0], [4.0, 4.0, 4.0, 5.0], codec="webp")
    outside = {"digits": scores([1.0, 2.0], [0.5, 1.5], codec="webp")}
    record = results_record(
        small_report(), inside, outside, checkpoint="mnist", in_spec="npz:data/held_out.npz",
        ood_specs=["npz:other/digits.npz"], image_size=32, pad=2, limit=None,
    )  # fmt: skip
    assert list(record) == [
        "checkpoint", "in_dist", "ood_sets", "methods", "codec", "typicality_m", "dose_bandwidth",
        "calibration_fraction", "seed", "level", "image_size", "pad", "limit", "positive_class",
        "higher_score_means", "results",
    ]  # fmt: skip
    assert record["checkpoint"] == "mnist"
    assert record["in_dist"] == {
        "spec": "npz:data/held_out.npz", "name": "held_out", "n": 4, "n_calibration": 2,
        "n_evaluation": 2, "mean_bpd": 3.0, "mean_compressed_bpd": 4.25,
    }  # fmt: skip
    assert record["ood_sets"] == [
        {"name": "digits", "spec": "npz:other/digits.npz", "n": 2, "mean_bpd": 1.5,
         "mean_compressed_bpd": 1.0},
    ]  # fmt: skip
    assert record["methods"] == ["bpd", "typicality"] and record["codec"] == "webp"
    assert (record["typicality_m"], record["calibration_fraction"], record["seed"]) == (2, 0.5, 7)
    assert (record["image_size"], record["pad"], record["limit"]) == (32, 2, None)
    assert record["positive_class"] == "ood"
    assert record["higher_score_means"] == "more likely OOD"
    bpd, typicality = record["results"]
    assert bpd["fpr95"] is None  # JSON has no infinity
    assert {k: v for k, v in bpd.items() if k != "fpr95"} == {
        "ood": "digits", "method": "bpd", "auroc": 0.75, "aupr": 0.5, "unit": "image",
        "n_in": 2, "n_ood": 2,
    }  # fmt: skip
    assert typicality == small_report().records[1]
    json.dumps(record, allow_nan=False)  # strict JSON


def test_the_record_refuses_specs_that_do_not_match_the_sets():
    inside = scores([3.0, 2.0, 4.0, 3.0], [4.0] * 4)
    with pytest.raises(ValueError, match="2 OOD specs for 1 OOD sets"):
        results_record(
            small_report(), inside, {"digits": scores([1.0], [1.0])}, checkpoint="m",
            in_spec="npz:a.npz", ood_specs=["npz:b.npz", "npz:c.npz"],
        )  # fmt: skip


def test_detect_keeps_its_settings_in_the_report():
    rng = np.random.default_rng(0)
    inside = scores(rng.normal(3, 0.3, 40), rng.normal(4, 0.3, 40))
    report = detect(inside, {"a": scores(rng.normal(1, 0.3, 20), np.ones(20))},
                    ["complexity", "bpd"], m=4, calibration_fraction=0.25, seed=3)  # fmt: skip
    assert report.methods == ["complexity", "bpd"] and report.m == 4
    assert (report.calibration_fraction, report.seed, report.level) == (0.25, 3, 0.95)
    record = results_record(
        report, inside, {"a": scores(np.ones(20), np.ones(20))}, checkpoint="m",
        in_spec="npz:in.npz", ood_specs=["npz:a.npz"],
    )  # fmt: skip
    assert record["methods"] == ["complexity", "bpd"] and record["typicality_m"] == 4
    assert record["in_dist"]["n_calibration"] == 10 and record["in_dist"]["n_evaluation"] == 30


def test_ood_set_names_are_unique_and_never_the_in_distribution_key():
    specs = ["npz:a/digits.npz", "npz:b/digits.npz", f"npz:{IN_DIST}.npz", "npz:c/digits.npz"]
    assert ood_set_names(specs) == ["digits", "digits-2", f"{IN_DIST}-2", "digits-3"]


def test_rows_say_each_images_set_part_and_scores_and_the_csv_joins_their_columns():
    inside = scores([3.0, 2.0, 4.0, 3.0], [4.0, 4.0, 4.0, 5.0])
    outside = {"digits": scores([1.0, 2.0], [0.5, 1.5])}
    labels = {IN_DIST: torch.tensor([7, 8, 9, 1])}  # the OOD set has none
    rows = detection_rows(small_report(), inside, outside, labels)
    assert [(r["set"], r["part"], r["index"]) for r in rows] == [
        (IN_DIST, "calibration", 0), (IN_DIST, "evaluation", 1), (IN_DIST, "calibration", 2),
        (IN_DIST, "evaluation", 3), ("digits", "ood", 0), ("digits", "ood", 1),
    ]  # fmt: skip
    assert rows[1] == {"set": IN_DIST, "index": 1, "label": 8, "bpd": 2.0, "bpd_level_0": 0.5,
                       "bpd_level_1": 1.5, "png_bpd": 4.0, "complexity": -2.0,
                       "part": "evaluation"}  # fmt: skip
    assert "label" not in rows[4] and rows[5]["complexity"] == 0.5
    table = list(csv.reader(io.StringIO(csv_text(rows))))
    assert table[0] == ["set", "index", "label", "bpd", "bpd_level_0", "bpd_level_1", "png_bpd",
                        "complexity", "part"]  # fmt: skip
    assert table[5] == ["digits", "0", "", "1.0", "0.25", "0.75", "0.5", "0.5", "ood"]
    assert score_rows(outside["digits"])[0] == {
        "index": 0, "bpd": 1.0, "bpd_level_0": 0.25, "bpd_level_1": 0.75, "png_bpd": 0.5,
        "complexity": 0.5,
    }  # fmt: skip


def test_the_results_folder_is_written_whole_and_a_failed_write_keeps_the_old_files(
    tmp_path, monkeypatch
):
    from glowflow.ood import results

    rng = np.random.default_rng(0)
    scores = {"bpd": {IN_DIST: rng.normal(1, 0.1, 20), "x": rng.normal(2, 0.1, 20)}}
    report = Report(records=[{"method": "bpd", "ood": "x", "auroc": 1.0}], scores=scores)
    written = results.write_detection(tmp_path, {"a": 1}, [{"k": 1}], report, "in", "t")
    assert [p.name for p in written] == ["results.json", "histograms.png", "scores.csv"]
    assert json.loads((tmp_path / "results.json").read_text()) == {"a": 1}

    def no_space(*args, **kwargs):
        raise OSError("No space left on device")

    monkeypatch.setattr(results, "save_histograms", no_space)
    with pytest.raises(OSError):
        results.write_detection(tmp_path, {"a": 2}, [{"k": 2}], report, "in", "t")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in written)
