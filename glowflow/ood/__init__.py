"""Out-of-distribution detection with a Glow's exact likelihood: per-image scores, the
detection report, the typicality test, the metrics, the codecs of input complexity and the
files of a detection (its results record, per-image rows and histograms)."""

from glowflow.ood.detect import (
    DEFAULT_TYPICALITY_M,
    IN_DIST,
    METHODS,
    ImageScores,
    OODError,
    Report,
    TypicalityTest,
    check_methods,
    check_sets,
    detect,
    score_images,
)
from glowflow.ood.results import (
    csv_text,
    detection_rows,
    ood_set_names,
    results_record,
    save_histograms,
    score_rows,
)

__all__ = [
    "DEFAULT_TYPICALITY_M",
    "IN_DIST",
    "METHODS",
    "ImageScores",
    "OODError",
    "Report",
    "TypicalityTest",
    "check_methods",
    "check_sets",
    "csv_text",
    "detect",
    "detection_rows",
    "ood_set_names",
    "results_record",
    "save_histograms",
    "score_images",
    "score_rows",
]
