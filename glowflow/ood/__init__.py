"""Out-of-distribution detection with a Glow's exact likelihood: per-image scores, the
detection report, the typicality test, the metrics and the codecs of input complexity."""

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
    "detect",
    "score_images",
]
