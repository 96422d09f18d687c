"""The files of an OOD detection, built from its scores and its ``Report``: the results
record (``results.json`` of ``glowflow ood``), the per-image rows (``scores.csv``, and the CSV of
``glowflow score``) and the score histograms, so that a Python user gets what the command writes.

Typical use, after ``glowflow.ood.detection.detect``::

    names = ood_set_names(["npz:mnist.npz"])  # "mnist"
    report = detect(held_out, {names[0]: digits})
    record = results_record(report, held_out, {names[0]: digits}, checkpoint="fashion-mnist",
                            in_spec="npz:fashion_test.npz", ood_specs=["npz:mnist.npz"])
    rows = detection_rows(report, held_out, {names[0]: digits}, labels)
    write_detection(Path("results"), record, rows, report, "fashion", "scores")
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from glowflow.data.datasets import dataset_name
from glowflow.files import atomic_write_text
from glowflow.ood.density import state_statistics
from glowflow.ood.detection import IN_DIST, ImageScores, Report
from glowflow.viz import plot_score_histograms

__all__ = ["SCORE_LABELS", "csv_text", "detection_rows", "ood_set_names", "results_record",
           "save_histograms", "score_rows"]  # fmt: skip

# the axis label of each method's score
#: The files of ``glowflow ood``'s results folder.
RESULTS_FILE, SCORES_FILE, HISTOGRAMS_FILE = "results.json", "scores.csv", "histograms.png"

SCORE_LABELS = {
    "bpd": "bits/dim",
    "complexity": "bits/dim - codec bits/dim",
    "dose": "-log density of the image's level and codec bits/dim",
    "typicality": "|batch mean bits/dim - reference|",
}


def ood_set_names(specs: Sequence[str]) -> list[str]:
    """A name for each OOD set, in order: its data set's name
    (``glowflow.data.datasets.dataset_name``), followed by ``-2``, ``-3``, ... where that
    would repeat an earlier set's name or be ``IN_DIST``."""
    names: list[str] = []
    for spec in specs:
        name, k = dataset_name(spec), 2
        while name in names or name == IN_DIST:
            name, k = f"{dataset_name(spec)}-{k}", k + 1
        names.append(name)
    return names


def _json_number(value: Any) -> Any:
    """``value``, except that a non-finite float becomes ``None``: JSON has no infinity."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _means(scores: ImageScores) -> dict[str, float]:
    return {"mean_bpd": float(scores.bpd.mean()),
            "mean_compressed_bpd": float(scores.compressed_bpd.mean())}  # fmt: skip


def results_record(
    report: Report,
    in_dist: ImageScores,
    ood_sets: Mapping[str, ImageScores],
    *,
    checkpoint: str,
    in_spec: str,
    ood_specs: Sequence[str],
    image_size: int | None = None,
    pad: int | None = None,
    limit: int | None = None,
) -> dict[str, Any]:
    """The results record of a detection, as ``glowflow ood`` writes it to ``results.json``.

    Args:
        report: what ``detect`` found (and the settings it ran with).
        in_dist: the scores of all the in-distribution images (calibration part included).
        ood_sets: name -> scores of each OOD set, as given to ``detect``.
        checkpoint: how the model was named (a run folder, a bundled name, hf:user/repo, ...).
        in_spec: the in-distribution data set's spec.
        ood_specs: each OOD set's spec, in the order of ``ood_sets``.
        image_size: the data option the sets were loaded with, as recorded.
        pad: likewise.
        limit: likewise.

    Returns:
        ``checkpoint``; ``in_dist`` (``spec``, ``name``, ``n``, ``n_calibration``,
        ``n_evaluation``, ``mean_bpd``, ``mean_compressed_bpd``); ``ood_sets`` (per set ``name``,
        ``spec``, ``n``, ``mean_bpd``, ``mean_compressed_bpd``); the settings ``methods``,
        ``codec``, ``typicality_m``, ``dose_bandwidth``, ``calibration_fraction``, ``seed``,
        ``level``, ``image_size``, ``pad``, ``limit``; the conventions ``positive_class`` and
        ``higher_score_means``; and ``results``, the report's records with every non-finite
        number as ``None``.

    Raises:
        ValueError: when ``ood_specs`` and ``ood_sets`` differ in length.
    """
    if len(ood_specs) != len(ood_sets):
        raise ValueError(f"{len(ood_specs)} OOD specs for {len(ood_sets)} OOD sets")
    return {
        "checkpoint": checkpoint,
        "in_dist": {
            "spec": in_spec, "name": dataset_name(in_spec), "n": len(in_dist),
            "n_calibration": report.n_calibration, "n_evaluation": report.n_evaluation,
            **_means(in_dist),
        },
        "ood_sets": [
            {"name": name, "spec": spec, "n": len(scores), **_means(scores)}
            for (name, scores), spec in zip(ood_sets.items(), ood_specs)
        ],
        "methods": list(report.methods), "codec": in_dist.codec, "typicality_m": report.m,
        "dose_bandwidth": report.bandwidth,
        "calibration_fraction": report.calibration_fraction, "seed": report.seed,
        "level": report.level,
        "image_size": image_size, "pad": pad, "limit": limit,
        "positive_class": "ood", "higher_score_means": "more likely OOD",
        "results": [{k: _json_number(v) for k, v in r.items()} for r in report.records],
    }  # fmt: skip


def score_rows(
    scores: ImageScores,
    labels: torch.Tensor | None = None,
    lead: Mapping[str, Any] | None = None,
    dims: int | None = None,
    original_dims: int | None = None,
) -> list[dict[str, Any]]:
    """One row per image: the ``lead`` columns, ``index``, ``label`` (when ``labels`` are
    given), ``bpd``, ``bpd_level_0`` ... (each level's share), ``{codec}_bpd`` and
    ``complexity``; with the model's ``dims``, ``bits_per_image`` too, and with
    ``original_dims`` (an image's pixels before its padding) ``bpd_original``."""
    complexity = scores.complexity
    rows = []
    for i in range(len(scores)):
        row = {**(lead or {}), "index": i}
        if labels is not None:
            row["label"] = int(labels[i])
        row["bpd"] = float(scores.bpd[i])
        for level, value in enumerate(scores.level_bpd[i].tolist()):
            row[f"bpd_level_{level}"] = value
        row[f"{scores.codec}_bpd"] = float(scores.compressed_bpd[i])
        row["complexity"] = float(complexity[i])
        if dims is not None:
            row["bits_per_image"] = float(scores.bpd[i]) * dims
            if original_dims is not None:
                row["bpd_original"] = row["bits_per_image"] / original_dims
        rows.append(row)
    return rows


def detection_rows(
    report: Report,
    in_dist: ImageScores,
    ood_sets: Mapping[str, ImageScores],
    labels: Mapping[str, torch.Tensor | None] | None = None,
) -> list[dict[str, Any]]:
    """The per-image rows of every set of a detection (``scores.csv`` of ``glowflow ood``):
    the in-distribution images first, with ``set`` ``IN_DIST`` and
    ``part`` ``calibration`` or ``evaluation``, then each OOD set's, with ``part`` ``ood``.
    Beside the columns of ``score_rows``, a ``dose`` column where the report fitted a
    density of states: a calibration image's is its leave-one-out score (the density of the
    other calibration images), every other image's its score under the fitted density.

    ``labels``: set name (``IN_DIST`` for the in-distribution set) -> its images' labels, for
    a ``label`` column where a set has them.
    """
    labels = labels or {}
    calibration = set(report.calibration_index)
    rows = [
        {**row, "part": "calibration" if row["index"] in calibration else "evaluation"}
        for row in score_rows(in_dist, labels.get(IN_DIST), {"set": IN_DIST})
    ]
    density = report.density
    if density is not None:
        stats = state_statistics(in_dist)
        dose = density.score(stats)
        fitted = torch.tensor(report.calibration_index, dtype=torch.long)
        fitted = fitted[torch.isfinite(stats[fitted]).all(1)]  # the rows the density holds
        dose[fitted] = density.loo_scores()
        for row, value in zip(rows, dose.tolist()):
            row["dose"] = value
    for name, scores in ood_sets.items():
        extra = score_rows(scores, labels.get(name), {"set": name, "part": "ood"})
        if density is not None:
            for row, value in zip(extra, density.score(state_statistics(scores)).tolist()):
                row["dose"] = value
        rows += extra
    return rows


def csv_text(rows: Sequence[Mapping[str, Any]]) -> str:
    """``rows`` as CSV text: the union of their columns, in the order they first appear, with
    an empty cell where a row lacks a column."""
    fields: list[str] = []
    for row in rows:
        fields += [k for k in row if k not in fields]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def save_histograms(
    report: Report, out: str | Path, in_name: str, title: str | None = None
) -> Path:
    """Draw the report's scores as histograms, a panel per method (the in-distribution
    evaluation part labelled ``"{in_name} (in-distribution)"``, each OOD set with its AUROC,
    typicality's threshold as a dashed line), and save them as the PNG ``out``.

    Raises:
        OSError: when ``out`` cannot be written.
    """
    aurocs = {(r["method"], r["ood"]): r["auroc"] for r in report.records}
    thresholds = {r["method"]: r["threshold"] for r in report.records if "threshold" in r}
    in_label = f"{in_name} (in-distribution)"
    shown = {
        method: {in_label if k == IN_DIST else k: v for k, v in sets.items()}
        for method, sets in report.scores.items()
    }
    return plot_score_histograms(shown, aurocs, SCORE_LABELS, Path(out), thresholds, title,
                                 log_scale=("dose",))  # fmt: skip


def write_detection(
    out: Path,
    record: dict[str, Any],
    rows: Sequence[Mapping[str, Any]],
    report: Report,
    in_name: str,
    title: str,
) -> list[Path]:
    """Write a detection's results folder: the record (``results_record``), the per-image
    rows (``detection_rows``) and the histograms, each file atomically.

    Returns the paths written. Raises ``OSError`` where one cannot be written.
    """
    out = Path(out)
    atomic_write_text(out / RESULTS_FILE, json.dumps(record, indent=2) + "\n")
    atomic_write_text(out / SCORES_FILE, csv_text(rows))
    save_histograms(report, out / HISTOGRAMS_FILE, in_name, title)
    return [out / RESULTS_FILE, out / HISTOGRAMS_FILE, out / SCORES_FILE]
