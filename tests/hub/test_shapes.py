"""A model file's tensors checked against its config, on the meta device, before building."""

from __future__ import annotations

import resource

import pytest
import torch

from glowflow import Glow
from glowflow.config import GlowConfig
from glowflow.hub import names
from glowflow.hub import pretrained as pt
from glowflow.hub.pretrained import PretrainedError
from glowflow.hub.shapes import check_tensors, expected_tensors, tensor_specs

CONFIGS = [
    dict(permutation="lu"),
    dict(permutation="conv", coupling="additive"),
    dict(permutation="shuffle", learn_top=False),
    dict(permutation="reverse", num_classes=3),
    dict(memory_format="contiguous", memory_saving=True),
    dict(memory_format="channels_last", image_shape=(1, 16, 8), levels=3),
]


@pytest.mark.parametrize("options", CONFIGS)
def test_the_expected_tensors_are_those_of_the_built_model(options):
    config = GlowConfig(**{"image_shape": (3, 8, 8), "levels": 2, "depth": 2,
                           "hidden_channels": 8, **options})  # fmt: skip
    expected = expected_tensors(config, Glow)
    built = Glow.from_config(config).state_dict()
    assert list(expected) == list(built)  # state-dict order
    assert expected == tensor_specs(built)


def test_a_huge_config_is_checked_without_its_memory():
    """Within the bounds, yet 2.3 billion weights (9 GB in float32): found on the meta device."""
    config = GlowConfig((3, 256, 256), levels=6, depth=16, hidden_channels=4096)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB
    expected = expected_tensors(config)
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    numel = sum(torch.Size(shape).numel() for shape, _ in expected.values())
    assert numel > 2e9 and grown < 2**20  # under 1 GiB


def test_check_tensors_names_the_first_tensor_that_disagrees():
    config = GlowConfig((3, 8, 8), levels=2, depth=1, hidden_channels=8)
    expected = expected_tensors(config)
    keys = list(expected)

    def refused(found: dict) -> str:
        with pytest.raises(PretrainedError) as e:
            check_tensors(found, expected, "FILE", "the model", "FIX", PretrainedError)
        assert "\n" not in str(e.value) and str(e.value).endswith("; FIX")
        return str(e.value)

    check_tensors(expected, expected, "FILE", "the model", "FIX", PretrainedError)
    # floating point in any precision is fine: weights may be stored as float16
    half = {k: (s, torch.float16 if d.is_floating_point else d) for k, (s, d) in expected.items()}
    check_tensors(half, expected, "FILE", "the model", "FIX", PretrainedError)
    found = dict(expected)
    del found[keys[1]], found[keys[4]]
    assert refused(found).startswith(f"FILE lacks 2 tensor(s) of the model: {keys[1]}, {keys[4]}")
    assert "extra" in refused({**expected, "extra": ((1,), torch.float32)})
    shapes = {k: ((s[0] + 1, *s[1:]) if s else (2,), d) for k, (s, d) in expected.items()}
    assert refused({**expected, keys[3]: shapes[keys[3]], keys[5]: shapes[keys[5]]}) == (
        f"FILE: {keys[3]} has shape {shapes[keys[3]][0]}, the model needs "
        f"{expected[keys[3]][0]}; FIX"
    )
    flag = next(k for k, (_, d) in expected.items() if d == torch.bool)
    assert f"{flag} is stored as float32, the model needs bool" in refused(
        {**expected, flag: ((), torch.float32)}
    )
    shape = expected[keys[0]][0]
    assert f"{keys[0]} is stored as F8_E4M3" in refused({**expected, keys[0]: (shape, "F8_E4M3")})


def test_every_bundled_model_agrees_with_its_config():
    bundled = names.bundled_models()
    assert {"celeba64", "mnist"} <= set(bundled)
    for name in bundled:
        folder = names.bundled_root() / name
        config, _ = pt.read_pretrained_config(folder)
        header = pt.read_header(folder / pt.WEIGHTS_FILE)
        check_tensors(header, expected_tensors(config), name, "its config", "", PretrainedError)
