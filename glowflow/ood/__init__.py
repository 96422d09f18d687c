"""Out-of-distribution detection with a Glow's exact likelihood: per-image scores, the
detection report, the density of states, the typicality test, the metrics, the codecs of input
complexity and the files of a detection (its results record, per-image rows and histograms)."""

from glowflow.ood.compression import CODECS
from glowflow.ood.density import DEFAULT_BANDWIDTH, DensityOfStates, state_statistics
from glowflow.ood.detection import (
    DEFAULT_TYPICALITY_M,
    IN_DIST,
    METHODS,
    PER_IMAGE,
    ImageScores,
    OODError,
    Report,
    TypicalityTest,
    check_methods,
    check_sets,
    detect,
    score_images,
)
from glowflow.ood.metrics import aupr, auroc, detection_metrics, fpr_at_tpr
from glowflow.ood.results import (
    csv_text,
    detection_rows,
    ood_set_names,
    results_record,
    save_histograms,
    score_rows,
    write_detection,
)

__all__ = [
    "CODECS",
    "DEFAULT_BANDWIDTH",
    "DEFAULT_TYPICALITY_M",
    "DensityOfStates",
    "IN_DIST",
    "METHODS",
    "PER_IMAGE",
    "ImageScores",
    "OODError",
    "Report",
    "TypicalityTest",
    "aupr",
    "auroc",
    "check_methods",
    "check_sets",
    "csv_text",
    "detect",
    "detection_metrics",
    "detection_rows",
    "fpr_at_tpr",
    "ood_set_names",
    "results_record",
    "save_histograms",
    "score_images",
    "score_rows",
    "state_statistics",
    "write_detection",
]
