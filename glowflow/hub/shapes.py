"""A model file's tensors checked against its config before the model is built.

A config read from a file says how large a model to build, and building it allocates memory
(a 1x1 convolution's random rotation alone is a ``C x C`` QR). So the tensors the file holds
(names, shapes and dtypes: a safetensors header, or a checkpoint's state dict) are first
compared with those the config's model would have, which ``expected_tensors`` finds by
building that model on PyTorch's ``meta`` device, where tensors have shapes and no memory.
Only a model its weights agree with, name by name and shape by shape, is then built.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

from glowflow.config import GlowConfig
from glowflow.errors import GlowflowError
from glowflow.nn.model import GlowFlow

#: A tensor as a file describes it: its shape and its dtype (a torch dtype, or the name a
#: safetensors header gives a dtype that torch has not).
Spec = tuple[tuple[int, ...], Any]


class _MetaScalars(TorchFunctionMode):
    """Answers a read of a meta tensor's value (``bool(t)``, ``t.item()``) with zero.

    Meta tensors have shapes and no values, and the 1x1 convolutions' random initialisation
    branches on a value (the sign of a determinant, ``glowflow.nn.invconv.random_rotation``).
    What such a branch decides changes values only, never a shape, so any answer gives the
    true shapes. (A function mode, not a dispatch mode: one of those would run every operation
    through PyTorch's Python decompositions, at twice the time.)"""

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[override]
        if func in (torch.Tensor.__bool__, torch.Tensor.item) and args[0].is_meta:
            return False if args[0].dtype == torch.bool else 0
        return func(*args, **(kwargs or {}))


def expected_tensors(config: GlowConfig, cls: type[GlowFlow] = GlowFlow) -> dict[str, Spec]:
    """Shape and dtype of each tensor of the state dict of ``config``'s model (built as a
    ``cls`` in the default dtype), in state-dict order, found without allocating their memory:
    the model is built on the meta device.

    On a 2-core CPU that takes about 5 ms a flow step: 0.2 s for the bundled celeba64 (4 levels
    of 8 steps), 7 s for the largest config ``GlowConfig`` allows (10 levels of 128
    steps), plus, once in a process, about 0.7 s for PyTorch to import ``torch._dynamo``, which
    its Python implementations of operations on meta tensors load at their first use."""
    with torch.device("meta"), _MetaScalars():
        model = cls.from_config(config)
    return {key: (tuple(t.shape), t.dtype) for key, t in model.state_dict().items()}


def tensor_specs(tensors: Mapping[str, torch.Tensor]) -> dict[str, Spec]:
    """The shapes and dtypes of tensors in memory (a checkpoint's state dict)."""
    return {key: (tuple(t.shape), t.dtype) for key, t in tensors.items()}


def _keys(keys: list[str], limit: int = 3) -> str:
    return ", ".join(keys[:limit]) + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def _dtype_name(dtype: Any) -> str:
    return str(dtype).replace("torch.", "")


def _fits(stored: Any, wanted: torch.dtype) -> bool:
    """Whether a tensor stored as ``stored`` loads into one of dtype ``wanted``: floating point
    in any precision (weights may be stored as float16) or, for any other, exactly ``wanted``."""
    if isinstance(stored, torch.dtype) and stored.is_floating_point:
        return wanted.is_floating_point
    return stored == wanted


def check_tensors(
    found: Mapping[str, Spec],
    expected: Mapping[str, Spec],
    where: str,
    model: str,
    fix: str,
    error: type[GlowflowError],
) -> None:
    """Refuse, as ``error`` in one line, a file whose tensors ``found`` are not exactly the
    ``expected`` ones: each present, none other, each of the same shape and a dtype that
    fits (``_fits``). The message names ``where`` (the file), the first tensors that
    disagree, ``model`` (what the expected tensors are of) and ``fix``."""
    missing = [key for key in expected if key not in found]
    if missing:
        raise error(f"{where} lacks {len(missing)} tensor(s) of {model}: {_keys(missing)}; {fix}")
    unexpected = sorted(key for key in found if key not in expected)
    if unexpected:
        raise error(
            f"{where} holds {len(unexpected)} tensor(s) that {model} does not have: "
            f"{_keys(unexpected)}; {fix}"
        )
    for key, (shape, dtype) in expected.items():
        stored_shape, stored_dtype = found[key]
        if tuple(stored_shape) != shape:
            raise error(
                f"{where}: {key} has shape {tuple(stored_shape)}, {model} needs {shape}; {fix}"
            )
        if not _fits(stored_dtype, dtype):
            raise error(
                f"{where}: {key} is stored as {_dtype_name(stored_dtype)}, {model} needs "
                f"{_dtype_name(dtype)}; {fix}"
            )
