"""A run's data: the training set, the validation set and the number of classes."""

from __future__ import annotations

from glowflow.config import ConfigError, TrainConfig
from glowflow.data.datasets import load_dataset, split_validation
from glowflow.data.imagedata import ImageData


def load_train_val(
    cfg: TrainConfig, global_batch: int
) -> tuple[ImageData, ImageData | None, int | None]:
    """The training set, the validation set (``val_dataset``, a ``val_fraction`` split, or
    None) and the number of classes.

    Raises ``ConfigError`` for validation images of another shape, a training set smaller
    than one global batch, or ``y_condition`` on a data set without labels.
    """
    kw = dict(image_size=cfg.image_size, pad=cfg.pad, on_bad_image=cfg.on_bad_image)
    data = load_dataset(cfg.dataset, **kw)
    num_classes = data.num_classes  # counted before a split can hide a class
    if cfg.val_dataset:
        train, val = data, load_dataset(cfg.val_dataset, **kw)
        if val.image_shape != data.image_shape:
            raise ConfigError(
                f"validation images are {val.image_shape}, training images "
                f"{data.image_shape}; pass --image-size to bring both to one size"
            )
        if val.num_classes is not None:
            num_classes = max(num_classes or 0, val.num_classes)
    elif cfg.val_fraction > 0:
        train, val = split_validation(data, cfg.val_fraction, cfg.seed)
    else:
        train, val = data, None
    if len(train) < global_batch:
        raise ConfigError(
            f"the training set has {len(train)} images, fewer than one batch of "
            f"{global_batch}; lower --batch-size"
        )
    if cfg.y_condition and train.labels is None:
        raise ConfigError(f"--y-condition needs labels, and {cfg.dataset} has none")
    return train, val, num_classes
