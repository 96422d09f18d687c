"""Config: validation, presets, and one vocabulary for validation and the command line."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from glowflow import config as C
from glowflow.cli import build_parser
from glowflow.errors import ConfigError, GlowflowError


def test_bad_model_values_are_config_errors():
    with pytest.raises(ConfigError, match="coupling must be one of affine, additive"):
        C.GlowConfig(coupling="mixed")
    with pytest.raises(ConfigError, match=r"not divisible by 2\*\*levels = 8"):
        C.GlowConfig((3, 20, 20), levels=3)
    with pytest.raises(ConfigError, match="n_bits"):
        C.GlowConfig(n_bits=9)
    with pytest.raises(ConfigError, match="unknown GlowConfig fields"):
        C.GlowConfig.from_dict({"depht": 3})
    assert issubclass(ConfigError, GlowflowError) and issubclass(ConfigError, ValueError)


@pytest.mark.parametrize(
    "field,value,message",
    [("optimizer", "sgd", "optimizer"), ("lr_schedule", "step", "lr_schedule"),
     ("precision", "fp16", "precision"), ("on_bad_image", "ignore", "on_bad_image"),
     ("permutation", "random", "permutation"), ("batch_size", 0, "batch_size"),
     ("ema_decay", 1.0, "ema_decay")],
)  # fmt: skip
def test_bad_training_values_are_config_errors(field, value, message):
    with pytest.raises(ConfigError, match=message):
        C.TrainConfig(**{field: value})


def test_model_config_carries_every_model_option():
    cfg = C.TrainConfig(
        levels=2, depth=5, hidden_channels=7, coupling="additive", permutation="reverse",
        learn_top=False, n_bits=5, memory_saving=True,
    )  # fmt: skip
    model = cfg.model_config((1, 8, 8), num_classes=10)
    for name in C.MODEL_OPTIONS:
        assert getattr(model, name) == getattr(cfg, name), name
    assert model.image_shape == (1, 8, 8) and model.num_classes is None  # not y_condition
    assert dataclasses.replace(cfg, y_condition=True).model_config((1, 8, 8), 10).num_classes == 10
    assert set(C.MODEL_OPTIONS) == {f.name for f in dataclasses.fields(C.GlowConfig)} - {
        "image_shape", "num_classes", "memory_format"}  # fmt: skip


def test_training_presets_match_the_model_presets():
    for name, values in C.TRAIN_PRESETS.items():
        model = C.PRESETS[name]
        for option in C.MODEL_OPTIONS:
            assert values[option] == getattr(model, option), (name, option)
        C.TrainConfig(**values)  # every preset is a valid config


def _choices(command: str) -> dict[str, tuple]:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    parser = sub.choices[command]
    return {a.dest: tuple(a.choices) for a in parser._actions if a.choices}


def test_the_command_line_offers_exactly_the_config_vocabularies():
    choices = _choices("train")
    assert choices["coupling"] == C.COUPLINGS
    assert choices["permutation"] == C.PERMUTATIONS
    assert choices["optimizer"] == C.OPTIMIZERS
    assert choices["lr_schedule"] == C.LR_SCHEDULES
    assert choices["precision"] == C.PRECISIONS
    assert choices["on_bad_image"] == C.ON_BAD_IMAGE
    assert tuple(choices["preset"]) == tuple(sorted(C.TRAIN_PRESETS))


#: The fields of the configs as every file glowflow writes records them (run folders'
#: config.json, checkpoints, pretrained configs): a change here is a change of file format.
MODEL_KEYS = {"coupling", "depth", "hidden_channels", "image_shape", "learn_top", "levels",
              "memory_saving", "n_bits", "num_classes", "permutation"}  # fmt: skip
TRAIN_KEYS = MODEL_KEYS - {"image_shape", "num_classes"} | {
    "batch_size", "channels_last", "checkpoint_every", "compile", "data_workers", "dataset",
    "device", "ema_decay", "epochs", "eval_batch_size", "eval_every", "grad_clip", "hflip",
    "image_size", "init_batch_size", "log_every", "lr", "lr_schedule", "max_nan_steps",
    "max_time", "n_samples", "on_bad_image", "optimizer", "pad", "precision", "sample_every",
    "sample_temperature", "seed", "steps", "tensorboard", "val_dataset", "val_fraction",
    "warmup_steps", "y_condition", "y_weight",
}  # fmt: skip


def test_the_recorded_fields_are_those_files_have_always_held():
    assert set(C.GlowConfig().to_dict()) == MODEL_KEYS
    assert set(C.TrainConfig().to_dict()) == TRAIN_KEYS
    # a layout asked for is recorded and read back; the default is not written at all
    chosen = C.GlowConfig(memory_format="contiguous").to_dict()
    assert set(chosen) == MODEL_KEYS | {"memory_format"}
    assert C.GlowConfig.from_dict(chosen).memory_format == "contiguous"
    assert C.GlowConfig.from_dict(C.GlowConfig().to_dict()).memory_format == "auto"
    started = C.TrainConfig(init_from="mnist").to_dict()
    assert set(started) == TRAIN_KEYS | {"init_from"}
    assert C.TrainConfig.from_dict(started).init_from == "mnist"


@pytest.mark.parametrize(
    "size, levels", [((1, 32, 32), 3), ((1, 28, 28), 2), ((3, 64, 64), 3), ((1, 14, 14), 1),
                     ((3, 32, 48), 3), ((3, 32, 36), 2)],
)  # fmt: skip
def test_a_run_that_names_no_levels_gets_as_many_as_the_size_allows_up_to_three(size, levels):
    assert C.auto_levels(size) == levels
    assert C.TrainConfig().model_config(size, None).levels == levels
    assert C.TrainConfig(levels=1).model_config(size, None).levels == 1


#: Values a config file could hold for each model field and must not, with fragments of the
#: one-line error, which names the field, the value and what is allowed: a size must be a
#: whole number (not a float, even 2.0, nor a bool) within bounds.
BAD_MODEL_VALUES = [
    ("depth", 2.5, ["depth must be a whole number from 1 to 128, got 2.5"]),
    ("depth", 2.0, ["depth must be a whole number", "got 2.0"]),
    ("depth", True, ["depth must be a whole number", "got True"]),
    ("depth", "4", ["depth must be a whole number", "got '4'"]),
    ("depth", 129, ["depth must be a whole number from 1 to 128, got 129"]),
    ("levels", 0, ["levels must be a whole number from 1 to 10, got 0"]),
    ("levels", 11, ["levels must be a whole number from 1 to 10, got 11"]),
    ("hidden_channels", 1e8, ["hidden_channels must be a whole number from 1 to 4096, "
                              "got 100000000.0"]),
    ("hidden_channels", 10**8, ["hidden_channels", "from 1 to 4096, got 100000000"]),
    ("num_classes", 1e10, ["num_classes", "from 2 to 100000, got 10000000000.0"]),
    ("num_classes", 10**10, ["num_classes", "from 2 to 100000, got 10000000000"]),
    ("num_classes", 1, ["num_classes (null for an unconditional model) must be a whole number "
                        "from 2 to 100000, got 1"]),
    ("n_bits", 8.0, ["n_bits must be a whole number from 1 to 8, got 8.0"]),
    ("image_shape", [3, 16384, 16384], ["image_shape's H (height) must be a whole number "
                                        "from 1 to 1024, got 16384"]),
    ("image_shape", [3, 32, 32.5], ["image_shape's W (width)", "got 32.5"]),
    ("image_shape", [5, 32, 32], ["image_shape's C (channels)", "from 1 to 4, got 5"]),
    ("image_shape", [3, 32], ["image_shape must be [C, H, W], three whole numbers, got [3, 32]"]),
    ("image_shape", "abc", ["image_shape must be [C, H, W]", "got 'abc'"]),
    ("learn_top", "yes", ["learn_top must be true or false, got 'yes'"]),
    ("memory_saving", 1, ["memory_saving must be true or false, got 1"]),
    ("depth", "x" * 1000, ["depth must be a whole number", "got 'xxxx", "..."]),
]  # fmt: skip


@pytest.mark.parametrize("field, value, fragments", BAD_MODEL_VALUES)
def test_every_model_field_is_checked_for_type_and_bounds(field, value, fragments):
    with pytest.raises(ConfigError) as e:
        C.GlowConfig.from_dict({field: value})
    message = str(e.value)
    assert "\n" not in message and len(message) < 200, message
    for fragment in fragments:
        assert fragment in message, message


def test_whole_numbers_of_any_integer_type_are_kept_as_ints():
    np = pytest.importorskip("numpy")
    config = C.GlowConfig(
        image_shape=[np.int64(1), 28, np.int32(28)], levels=np.int64(2), depth=np.int16(4),
        hidden_channels=np.uint16(8), num_classes=np.int64(10), n_bits=np.int8(5),
    )  # fmt: skip
    assert config.image_shape == (1, 28, 28)
    for name in ("levels", "depth", "hidden_channels", "num_classes", "n_bits"):
        assert type(getattr(config, name)) is int, name
    assert all(type(s) is int for s in config.image_shape)


def test_the_bounds_hold_every_preset_and_are_themselves_allowed():
    for name, model in C.PRESETS.items():
        c, h, w = model.image_shape
        assert c <= C.MAX_IMAGE_CHANNELS and max(h, w) <= C.MAX_IMAGE_SIDE, name
        assert model.levels <= C.MAX_LEVELS and model.depth <= C.MAX_DEPTH, name
        assert model.hidden_channels <= C.MAX_HIDDEN_CHANNELS, name
    largest = C.GlowConfig(
        (C.MAX_IMAGE_CHANNELS, C.MAX_IMAGE_SIDE, C.MAX_IMAGE_SIDE), levels=C.MAX_LEVELS,
        depth=C.MAX_DEPTH, hidden_channels=C.MAX_HIDDEN_CHANNELS, num_classes=C.MAX_CLASSES,
    )  # fmt: skip
    assert C.GlowConfig.from_dict(largest.to_dict()) == largest
    assert (C.MAX_IMAGE_SIDE, C.MAX_LEVELS, C.MAX_DEPTH) == (1024, 10, 128)
    assert (C.MAX_HIDDEN_CHANNELS, C.MAX_CLASSES) == (4096, 100_000)
