"""Configuration: the model's and the training run's settings, their presets, and every option
vocabulary (written here once, used both to validate and as the command line's ``choices``)."""

from __future__ import annotations

import dataclasses
import numbers
from dataclasses import dataclass
from typing import Any

from glowflow.errors import ConfigError

COUPLINGS = ("affine", "additive")
PERMUTATIONS = ("lu", "conv", "shuffle", "reverse")
#: How the model lays out its convolution weights; "auto": channels-last where oneDNN runs them
MEMORY_FORMATS = ("auto", "channels_last", "contiguous")
OPTIMIZERS = ("adam", "adamax")
LR_SCHEDULES = ("constant", "cosine")
#: "auto": bf16 where it is faster here (glowflow.train.autotune)
PRECISIONS = ("auto", "fp32", "bf16")
ON_BAD_IMAGE = ("skip", "error")
BUILTIN_DATASET = "mnist-mini"  # the 10,000 MNIST digits that ship in the package
#: TrainConfig fields that the library takes but ``glowflow train`` has no flag for.
LIBRARY_ONLY = ("eval_batch_size", "max_nan_steps")


def known_fields(cls: type, d: dict[str, Any], what: str) -> dict[str, Any]:
    """``d`` itself, after checking that it names only fields of the dataclass ``cls``."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ConfigError(f"unknown {what} {unknown}; known: {sorted(known)}")
    return d


def _shown(value: Any, limit: int = 40) -> str:
    """``repr(value)`` on one line and cut short: what an error quotes of a value from a file."""
    text = " ".join(repr(value).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _choose(value: Any, allowed: tuple[str, ...], what: str) -> None:
    if not isinstance(value, str) or value not in allowed:
        raise ConfigError(f"{what} must be one of {', '.join(allowed)}, got {_shown(value)}")


def _whole(value: Any, what: str, lowest: int, highest: int) -> int:
    """``value`` as an int, if it is a whole number (an int, not a bool nor a float such as
    2.0 or 1e10: a config file that says 2.5 or 1e10 was not written by glowflow) within
    ``[lowest, highest]``."""
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Integral)
        or not lowest <= value <= highest
    ):
        raise ConfigError(
            f"{what} must be a whole number from {lowest} to {highest}, got {_shown(value)}"
        )
    return int(value)


def _flag(value: Any, what: str) -> None:
    if not isinstance(value, bool):
        raise ConfigError(f"{what} must be true or false, got {_shown(value)}")


#: Bounds of ``GlowConfig``'s sizes. Every real model lies far inside them (the paper's
#: largest is 3x256x256 with 6 levels, depth 48 and width 512). A config read from a file is
#: checked against its weights' shapes before the model is built (glowflow.hub.shapes, on the
#: meta device: no memory), and these bounds keep that check to seconds.
MAX_IMAGE_CHANNELS = 4  # grayscale, RGB, or RGB plus one more
MAX_IMAGE_SIDE = 1024
MAX_LEVELS = 10  # 2**10 = 1024: the most a side of MAX_IMAGE_SIDE pixels can be halved
MAX_DEPTH = 128
MAX_HIDDEN_CHANNELS = 4096
MAX_CLASSES = 100_000


@dataclass(frozen=True)
class GlowConfig:
    """Everything needed to build a ``glowflow.Glow``; saved inside every checkpoint.

    Every field is checked when a config is made, by type and by bounds, with a one-line
    ``ConfigError`` naming the field, the value and what is allowed: the sizes must be
    whole numbers (an ``int``; not a bool, nor a float such as ``2.5`` or ``1e10``), the options
    strings of their vocabularies and the flags bools. The bounds (``MAX_IMAGE_SIDE`` etc.)
    hold every real model with room to spare, so that a config read from a file cannot ask
    for an absurd model:

    - ``image_shape``: ``C`` from 1 to 4, ``H`` and ``W`` from 1 to 1024;
    - ``levels``: 1 to 10; ``depth``: 1 to 128; ``hidden_channels``: 1 to 4096;
    - ``num_classes``: None or 2 to 100,000; ``n_bits``: 1 to 8.

    Attributes:
        image_shape: ``(C, H, W)`` of the images; ``H`` and ``W`` divisible by ``2**levels``.
        levels: ``L``, the number of squeeze-steps-split levels.
        depth: ``K``, flow steps per level.
        hidden_channels: width of the coupling networks.
        coupling: ``"affine"`` or ``"additive"``.
        permutation: ``"lu"`` (LU-decomposed 1x1 conv), ``"conv"`` (plain 1x1 conv),
            ``"shuffle"`` (fixed random) or ``"reverse"`` (fixed reversal).
        learn_top: learn the top prior's mean and scale (else standard normal).
        num_classes: make the top prior class-conditional on this many labels.
        n_bits: bits per colour channel of the data (the paper uses 5 for CelebA-HQ).
        memory_saving: backprop by inversion: each level's flow steps recompute their inputs
            from their outputs instead of storing activations, so training memory does not
            grow with depth (same gradients; measured at about half the speed on a CPU).
        memory_format: how the convolution weights are laid out: ``"channels_last"`` (NHWC),
            ``"contiguous"`` (NCHW) or ``"auto"``, channels-last where PyTorch runs convolutions
            with oneDNN (its CPU builds), which runs them markedly faster in that layout (about
            1.2x for a training step of the CIFAR-10 model on a 2-core CPU). Values, state
            dicts and checkpoints are the same either way.
    """

    image_shape: tuple[int, int, int] = (3, 32, 32)
    levels: int = 3
    depth: int = 32
    hidden_channels: int = 512
    coupling: str = "affine"
    permutation: str = "lu"
    learn_top: bool = True
    num_classes: int | None = None
    n_bits: int = 8
    memory_saving: bool = False
    memory_format: str = "auto"

    def __post_init__(self) -> None:
        # Every field is checked for its type and bounds here, before anything is built from
        # it: a config comes from files too (pretrained folders, checkpoints, run folders).
        shape = self.image_shape
        if not isinstance(shape, (list, tuple)) or len(shape) != 3:
            raise ConfigError(
                f"image_shape must be [C, H, W], three whole numbers, got {_shown(shape)}"
            )
        c = _whole(shape[0], "image_shape's C (channels)", 1, MAX_IMAGE_CHANNELS)
        h = _whole(shape[1], "image_shape's H (height)", 1, MAX_IMAGE_SIDE)
        w = _whole(shape[2], "image_shape's W (width)", 1, MAX_IMAGE_SIDE)
        object.__setattr__(self, "image_shape", (c, h, w))
        for name, highest in (
            ("levels", MAX_LEVELS), ("depth", MAX_DEPTH), ("hidden_channels", MAX_HIDDEN_CHANNELS),
        ):  # fmt: skip
            object.__setattr__(self, name, _whole(getattr(self, name), name, 1, highest))
        step = 2**self.levels
        if h % step or w % step:
            raise ConfigError(
                f"image size {h}x{w} is not divisible by 2**levels = {step}; "
                f"use fewer levels or resize the images to a multiple of {step}"
            )
        _choose(self.coupling, COUPLINGS, "coupling")
        _choose(self.permutation, PERMUTATIONS, "permutation")
        _choose(self.memory_format, MEMORY_FORMATS, "memory_format")
        _flag(self.learn_top, "learn_top")
        _flag(self.memory_saving, "memory_saving")
        if self.num_classes is not None:
            what = "num_classes (null for an unconditional model)"
            object.__setattr__(self, "num_classes", _whole(self.num_classes, what, 2, MAX_CLASSES))
        object.__setattr__(self, "n_bits", _whole(self.n_bits, "n_bits", 1, 8))

    @property
    def num_dims(self) -> int:
        """``D = C * H * W``, the number of dimensions bits/dim divides by."""
        c, h, w = self.image_shape
        return c * h * w

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["image_shape"] = list(self.image_shape)
        if d["memory_format"] == "auto":
            # how this process lays out the weights, not what the model is: files (run folders,
            # checkpoints, pretrained configs) and cache keys stay as they were, and readable
            # by earlier versions, unless a layout was asked for
            del d["memory_format"]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GlowConfig:
        """The config a dict (e.g. a file's JSON object) describes; missing fields take their
        defaults, unknown ones are refused."""
        if not isinstance(d, dict):
            raise ConfigError(f"a model config must be a mapping of fields, got {_shown(d)}")
        return cls(**known_fields(cls, d, "GlowConfig fields"))

    def replace(self, **changes: Any) -> GlowConfig:
        return dataclasses.replace(self, **changes)


#: The paper's models (hyper-parameters from its experiments and the original code) plus
#: ``tiny`` for CPU work. ``mnist`` takes the digits at their own 28x28, with two levels (the
#: paper's code padded them to 32x32 for three; the 28x28 model needs fewer bits a digit).
PRESETS: dict[str, GlowConfig] = {
    "cifar10": GlowConfig((3, 32, 32), levels=3, depth=32, hidden_channels=512),
    "imagenet32": GlowConfig((3, 32, 32), levels=3, depth=48, hidden_channels=512),
    "imagenet64": GlowConfig((3, 64, 64), levels=4, depth=48, hidden_channels=512),
    "celeba-hq-256": GlowConfig(
        (3, 256, 256), levels=6, depth=32, hidden_channels=512, coupling="additive", n_bits=5
    ),
    "mnist": GlowConfig((1, 28, 28), levels=2, depth=32, hidden_channels=512),
    "tiny": GlowConfig((3, 32, 32), levels=3, depth=4, hidden_channels=64),
}


#: The levels a run gets when it names none, where the image size allows: the paper's 3 at 32x32.
MAX_AUTO_LEVELS = 3


def auto_levels(image_shape: tuple[int, int, int]) -> int:
    """As many levels as the image size allows, up to ``MAX_AUTO_LEVELS``: 3 at 32x32, 2 at
    MNIST's 28x28 (28 -> 14 -> 7), 1 at 14x14."""
    _, h, w = image_shape
    levels = 1
    while levels < MAX_AUTO_LEVELS and h % 2 ** (levels + 1) == 0 and w % 2 ** (levels + 1) == 0:
        levels += 1
    return levels


def preset(name: str, **overrides: Any) -> GlowConfig:
    """The preset ``name`` with some fields replaced, e.g. ``preset("cifar10", depth=8)``."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name].replace(**overrides)


#: The model fields a training run chooses; the image shape and the number of classes come
#: from the data, and a run's model keeps the "auto" memory format (``channels_last`` asks for
#: NHWC everywhere).
MODEL_OPTIONS = tuple(
    f.name
    for f in dataclasses.fields(GlowConfig)
    if f.name not in ("image_shape", "num_classes", "memory_format")
)


@dataclass
class TrainConfig:
    """Everything a training run depends on; saved as ``config.json`` in the run folder.

    The model fields (``MODEL_OPTIONS``) mean what they mean in ``GlowConfig``; their
    defaults here are the tuned 5-minute CPU run on mnist-mini: a small, fast flow takes many
    more steps in a fixed time, which beats a wider one (see docs/default_run.md).
    """

    # data
    dataset: str = BUILTIN_DATASET
    val_dataset: str | None = None
    val_fraction: float = 0.05
    image_size: int | None = None
    pad: int | None = None
    hflip: bool = False
    on_bad_image: str = "skip"
    # model
    levels: int | None = None  # None: as many as the image size allows, up to 3 (auto_levels)
    depth: int = 6
    hidden_channels: int = 64
    coupling: str = "affine"
    permutation: str = "lu"
    learn_top: bool = True
    y_condition: bool = False
    y_weight: float = 0.01
    n_bits: int = 8
    memory_saving: bool = False
    # weights to start from instead of random ones (glowflow.train.warmstart): a bundled name,
    # pretrained folder, Hub model hf:user/repo, run folder or checkpoint; None: a new model
    init_from: str | None = None
    # optimisation
    optimizer: str = "adam"
    lr: float = 4e-3
    lr_schedule: str = "cosine"
    warmup_steps: int = 150
    grad_clip: float = 50.0
    ema_decay: float = 0.999
    batch_size: int = 32
    init_batch_size: int = 512
    # budget: training stops at whichever limit comes first
    steps: int | None = None
    epochs: float | None = None
    max_time: float | None = None  # minutes of wall time
    # run
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"
    compile: bool = False  # torch.compile the forward pass and loss
    channels_last: bool = False  # NHWC batches and weights (CPU models already use NHWC convs)
    # DataLoader processes making batches ahead of the step from a store (store:DIR); 0 or an
    # in-memory data set: made in the training process
    data_workers: int = 1
    log_every: int = 50
    eval_every: int = 0  # steps; 0 = only at the end
    sample_every: int = 0  # steps; 0 = only at the end
    checkpoint_every: int = 500
    eval_batch_size: int = 256
    n_samples: int = 64
    sample_temperature: float = 0.7
    max_nan_steps: int = 20
    tensorboard: bool = False

    def __post_init__(self) -> None:
        _choose(self.optimizer, OPTIMIZERS, "optimizer")
        _choose(self.lr_schedule, LR_SCHEDULES, "lr_schedule")
        _choose(self.precision, PRECISIONS, "precision")
        _choose(self.on_bad_image, ON_BAD_IMAGE, "on_bad_image")
        _choose(self.coupling, COUPLINGS, "coupling")
        _choose(self.permutation, PERMUTATIONS, "permutation")
        checks = [
            (self.batch_size >= 1, "batch_size must be >= 1"),
            (self.data_workers >= 0, "data_workers must be >= 0"),
            (self.init_batch_size >= 1, "init_batch_size must be >= 1"),
            (self.lr > 0, "lr must be > 0"),
            (0 <= self.ema_decay < 1, "ema_decay must be in [0, 1)"),
            (0 <= self.val_fraction < 1, "val_fraction must be in [0, 1)"),
            (self.steps is None or self.steps >= 1, "steps must be >= 1"),
            (self.epochs is None or self.epochs > 0, "epochs must be > 0"),
            (self.max_time is None or self.max_time > 0, "max_time must be > 0 minutes"),
            (self.log_every >= 1, "log_every must be >= 1"),
            (self.eval_batch_size >= 1, "eval_batch_size must be >= 1"),
            (self.n_samples >= 1, "n_samples must be >= 1"),
            (self.max_nan_steps >= 1, "max_nan_steps must be >= 1"),
            (
                min(self.eval_every, self.sample_every, self.checkpoint_every) >= 0,
                "eval_every, sample_every and checkpoint_every must be >= 0 (0: off)",
            ),
            (self.grad_clip >= 0, "grad_clip must be >= 0 (0: off)"),
            (self.warmup_steps >= 0, "warmup_steps must be >= 0"),
            (self.levels is None or self.levels >= 1, "levels must be >= 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)

    def model_config(
        self, image_shape: tuple[int, int, int], num_classes: int | None
    ) -> GlowConfig:
        """The model this run trains on images of ``image_shape`` (``num_classes`` is used only
        with ``y_condition``)."""
        options = {name: getattr(self, name) for name in MODEL_OPTIONS}
        if options["levels"] is None:
            options["levels"] = auto_levels(image_shape)
        return GlowConfig(
            image_shape=image_shape,
            num_classes=num_classes if self.y_condition else None,
            **options,
        )

    def to_dict(self) -> dict[str, Any]:
        """The fields, ``init_from`` only where given: a new run's record reads as it always
        has."""
        d = dataclasses.asdict(self)
        if d["init_from"] is None:
            del d["init_from"]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        return cls(**known_fields(cls, d, "training options"))


def _model_part(name: str) -> dict[str, Any]:
    """The training options that ``PRESETS`` ``name`` fixes."""
    return {option: getattr(PRESETS[name], option) for option in MODEL_OPTIONS}


_PAPER = dict(optimizer="adamax", lr=1e-3, batch_size=64, ema_decay=0.999)
#: Named training setups. ``cifar10`` etc. follow the paper and its code (Adamax, lr 1e-3,
#: batch 64, warm-up over about 10 epochs); the model part is ``PRESETS``'.
TRAIN_PRESETS: dict[str, dict[str, Any]] = {
    "cifar10": {**_model_part("cifar10"), **_PAPER, "warmup_steps": 7800},
    "imagenet32": {**_model_part("imagenet32"), **_PAPER, "warmup_steps": 20000},
    "imagenet64": {**_model_part("imagenet64"), **_PAPER, "warmup_steps": 20000},
    "celeba-hq-256": {**_model_part("celeba-hq-256"), **_PAPER, "warmup_steps": 5000,
                      "image_size": 256},
    "mnist": {**_model_part("mnist"), **_PAPER, "warmup_steps": 9000},
    "tiny": _model_part("tiny"),
}  # fmt: skip
