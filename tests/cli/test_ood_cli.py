"""``glowflow score`` and ``glowflow ood`` on the bundled MNIST model and real digits."""

from __future__ import annotations

import csv
import json
from importlib import resources

import numpy as np
import pytest
from conftest import assert_one_line_error, main_in_process
from PIL import Image

METHODS = {"bpd", "complexity", "dose", "typicality"}


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    """Real digits (28x28, as the bundled mnist model takes them) and the same digits
    inverted (white background), an RGB set and an empty one, as npz files."""
    root = tmp_path_factory.mktemp("ood")
    with resources.files("glowflow").joinpath("assets/mnist_mini.npz").open("rb") as f:
        x = np.load(f)["x"]
    paths = {
        "digits": (x[9000:9100], None),
        "inverted": (255 - x[9100:9160], None),
        "rgb": (np.repeat(x[:20], 3, axis=3), None),
        "empty": (x[:0], None),
    }
    for name, (images, _) in paths.items():
        np.savez(root / f"{name}.npz", x=images, y=np.arange(len(images)) % 10)
    return {name: f"npz:{root / name}.npz" for name in paths}


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_score_writes_one_row_per_image_that_adds_up(sets, tmp_path):
    out = tmp_path / "scores.csv"
    r = main_in_process("score", "--checkpoint", "fashion-mnist", "--dataset", sets["digits"],
                        "--pad", 2, "--limit", 24, "--out", out, "--no-progress")  # fmt: skip
    assert r.returncode == 0, r.stderr
    rows = read_csv(out)
    assert len(rows) == 24
    assert list(rows[0]) == ["index", "label", "bpd", "bpd_level_0", "bpd_level_1",
                             "bpd_level_2", "png_bpd", "complexity", "bits_per_image",
                             "bpd_original"]  # fmt: skip
    for row in rows:
        v = {k: float(x) for k, x in row.items()}
        assert v["bpd"] == pytest.approx(sum(v[f"bpd_level_{i}"] for i in range(3)))
        assert v["complexity"] == pytest.approx(v["bpd"] - v["png_bpd"])
        assert 0.3 < v["bpd"] < 3 and 0.5 < v["png_bpd"] < 4
        # the fashion model sees 32x32 = 1024 dimensions; the digits had 28x28 = 784 pixels
        assert v["bits_per_image"] == pytest.approx(1024 * v["bpd"])
        assert v["bpd_original"] == pytest.approx(v["bits_per_image"] / 784)
    r = main_in_process("eval", "--checkpoint", "fashion-mnist", "--dataset", sets["digits"],
                        "--pad", 2, "--limit", 24, "--json", "--no-progress")  # fmt: skip
    mean = np.mean([float(row["bpd"]) for row in rows])
    found = json.loads(r.stdout)
    assert found["bpd"] == pytest.approx(mean, rel=1e-6)
    assert found["bpd_original"] == pytest.approx(mean * 1024 / 784, rel=1e-6)
    # K draws: bpd is the importance-weighted estimate, and eval's mean is the rows' mean
    r = main_in_process("score", "--checkpoint", "fashion-mnist", "--dataset", sets["digits"],
                        "--pad", 2, "--limit", 24, "--samples", 3, "--out", out,
                        "--no-progress")  # fmt: skip
    assert r.returncode == 0, r.stderr
    weighted = [float(row["bpd"]) for row in read_csv(out)]
    r = main_in_process("eval", "--checkpoint", "fashion-mnist", "--dataset", sets["digits"],
                        "--pad", 2, "--limit", 24, "--samples", 3, "--json",
                        "--no-progress")  # fmt: skip
    found = json.loads(r.stdout)
    assert found["samples"] == 3 and found["bpd"] == pytest.approx(np.mean(weighted), rel=1e-6)
    assert weighted != [float(row["bpd"]) for row in rows]
    # the mnist model takes the digits at 28x28: no padding, so no figure before it
    r = main_in_process("score", "--checkpoint", "mnist", "--dataset", sets["digits"],
                        "--limit", 24, "--out", out, "--no-progress")  # fmt: skip
    assert r.returncode == 0, r.stderr
    rows = read_csv(out)
    assert list(rows[0]) == ["index", "label", "bpd", "bpd_level_0", "bpd_level_1", "png_bpd",
                             "complexity", "bits_per_image"]  # fmt: skip
    assert all(float(row["bits_per_image"]) == pytest.approx(784 * float(row["bpd"]))
               for row in rows)  # fmt: skip


def test_ood_reports_every_method_and_writes_its_files(sets, tmp_path):
    out = tmp_path / "ood"
    r = main_in_process("ood", "--checkpoint", "mnist", "--in-dist", sets["digits"],
                        "--ood", sets["inverted"], "--ood", sets["inverted"],
                        "--typicality-m", 5, "--out", out, "--no-progress")  # fmt: skip
    assert r.returncode == 0, r.stderr
    results = json.loads((out / "results.json").read_text())
    records = results["results"]
    assert {(x["ood"], x["method"]) for x in records} == {
        (name, m) for name in ("inverted", "inverted-2") for m in METHODS
    }
    for x in records:
        assert 0 <= x["auroc"] <= 1 and 0 <= x["aupr"] <= 1 and 0 <= x["fpr95"] <= 1
        assert x["auroc"] > 0.95  # white backgrounds are far from any digit the model saw
        assert ("m" in x) == (x["method"] == "typicality")
        assert ("threshold" in x) == (x["method"] in ("dose", "typicality"))
    assert next(x for x in records if x["method"] == "typicality")["m"] == 5
    dose = next(x for x in records if x["method"] == "dose")
    assert dose["n_fit"] == 50 and dose["bandwidth"] == 1.0 and results["dose_bandwidth"] == 1.0
    assert results["in_dist"]["n_calibration"] == 50 and results["in_dist"]["n_evaluation"] == 50
    assert "inverted" in r.stdout and "AUROC" in r.stdout  # the table
    assert Image.open(out / "histograms.png").size[0] > 600
    rows = read_csv(out / "scores.csv")
    assert len(rows) == 100 + 60 + 60
    parts = [row["part"] for row in rows if row["set"] == "in-dist"]
    assert parts.count("calibration") == 50 and parts.count("evaluation") == 50
    # a dose column for every image; the OOD images score above the in-distribution ones
    dose = {part: [float(r["dose"]) for r in rows if r["part"] == part]
            for part in ("calibration", "evaluation", "ood")}  # fmt: skip
    assert min(dose["ood"]) > np.median(dose["evaluation"])
    assert "dose" in r.stdout


def test_ood_takes_the_dose_bandwidth_and_refuses_a_bad_one(sets, tmp_path):
    out = tmp_path / "ood"
    r = main_in_process("ood", "--checkpoint", "mnist", "--in-dist", sets["digits"],
                        "--ood", sets["inverted"], "--methods", "dose", "--dose-bandwidth",
                        "0.5", "--out", out, "--no-progress")  # fmt: skip
    assert r.returncode == 0, r.stderr
    (record,) = json.loads((out / "results.json").read_text())["results"]
    assert record["method"] == "dose" and record["bandwidth"] == 0.5
    assert record["kernel_scale"] == pytest.approx(0.5 * 50 ** (-1 / 7))  # 2 levels + the codec
    r = main_in_process("ood", "--checkpoint", "mnist", "--in-dist", sets["digits"],
                        "--ood", sets["inverted"], "--dose-bandwidth", "-1", "--out", out,
                        "--no-progress")  # fmt: skip
    assert_one_line_error(r, "--dose-bandwidth", "not a positive number")


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["--ood", "{rgb}"], ["3 channels", "grayscale"]),
        (["--ood", "{inverted}", "--pad", 2], ["(1, 32, 32)", "--image-size or --pad"]),
        (["--ood", "{empty}"], ["holds no images"]),
        (["--ood", "{inverted}", "--limit", 8], ["fewer than the typicality batch size M=10"]),
        (["--ood", "{inverted}", "--methods", "bpd,odin"], ["unknown method odin"]),
    ],
)
def test_ood_refuses_bad_sets_and_options_in_one_line(sets, tmp_path, args, fragments):
    args = [a.format(**sets) if isinstance(a, str) else a for a in args]
    r = main_in_process("ood", "--checkpoint", "mnist", "--in-dist", sets["digits"],
                        *args, "--out", tmp_path / "o", "--no-progress")  # fmt: skip
    assert_one_line_error(r, *fragments)


def test_ood_leaves_a_file_given_as_out_alone(sets, tmp_path):
    keep = tmp_path / "notes.txt"
    keep.write_text("mine")
    r = main_in_process("ood", "--checkpoint", "mnist", "--in-dist", sets["digits"],
                        "--ood", sets["inverted"], "--out", keep)  # fmt: skip
    assert_one_line_error(r, "is a file")
    assert keep.read_text() == "mine"
