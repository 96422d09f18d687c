"""A trained Glow as two ONNX graphs that any runtime can use without glowflow: an encoder
(uint8 images and a dequantisation draw -> standardised latent and bits/dim) and a decoder
(latent -> uint8 images), with the ``glowflow[onnx]`` extra.

The graphs hold no matrix inverse and no determinant: every 1x1 convolution's ``W``, ``W^-1``
and ``log|det W|`` depend on the weights alone, so they are computed once here, in float64, and
stored as constants (float32). Everything else is the model's own code, traced by
``torch.onnx.export``. The interface, in NumPy and Pillow's layout:

- ``encoder.onnx``: ``images`` uint8 ``[B, H, W, C]``, ``noise`` float32 ``[B, H, W, C]`` in
  ``[0, 1)`` (0.5 everywhere is the centre of each pixel's bin), and ``label`` int64 ``[B]`` for
  a class-conditional model -> ``z`` float32 ``[B, D]`` (what ``GlowFlow.encode`` returns)
  and ``bpd`` float32 ``[B]``.
- ``decoder.onnx``: ``z`` (and ``label``) -> ``images`` uint8 ``[B, H, W, C]``, and
  ``overflow`` bool ``[B]``: which images decoded to inf or NaN somewhere (drawn black or
  saturated). Sampling at a temperature ``T`` is decoding ``T`` times a standard normal draw.

The batch is dynamic; each file's metadata holds the model's ``n_bits``, ``image_shape``
(``C,H,W``), ``num_dims``, ``num_classes`` and ``weights_sha256`` (``weights_digest``: which
weights the graphs were made from). Beside them, ``directions.npz`` holds the
model's attribute directions where it ships any: ``names`` (``A`` strings) and ``directions``
float32 ``[A, D]``, in the latent ``z`` of the encoder; moving a face along one is decoding
``z + alpha * directions[k]``.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import importlib.util
import io
import json
import logging
import os
import warnings
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from glowflow.errors import GlowflowError
from glowflow.files import atomic_write_bytes, user_cache
from glowflow.hub.load import LoadedModel, load_model
from glowflow.nn.invconv import InvConv1x1, InvConv1x1LU
from glowflow.nn.model import GlowFlow
from glowflow.nn.objective import bits_per_dim, postprocess, preprocess
from glowflow.nn.prior import standard_normal_logp

OPSET = 18
ONNX_EXTRA = "pip install 'glowflow[onnx]'"
ENCODER_FILE = "encoder.onnx"
DECODER_FILE = "decoder.onnx"
DIRECTIONS_FILE = "directions.npz"
#: What the extra installs and exporting or running the graphs needs.
ONNX_MODULES = ("onnx", "onnxscript", "onnxruntime")


class OnnxError(GlowflowError):
    """An export that cannot be made (the extra missing, a model it cannot trace)."""


def has_onnx_extra() -> bool:
    """Whether every module of the ``glowflow[onnx]`` extra can be imported."""
    return all(importlib.util.find_spec(m) is not None for m in ONNX_MODULES)


def check_onnx_extra() -> None:
    """Raise ``OnnxError``, saying how to install it, without the extra."""
    if not has_onnx_extra():
        raise OnnxError(f"exporting to ONNX needs the onnx extra: {ONNX_EXTRA}")


class FixedChannelMix(nn.Module):
    """A 1x1 convolution whose ``W``, ``W^-1`` and ``log|det W|`` are constants, computed once
    in float64 from a learned one (``InvConv1x1`` or ``InvConv1x1LU``): the same
    layer contract, with nothing to invert at run time."""

    def __init__(self, conv: nn.Module) -> None:
        super().__init__()
        w = (conv.weight() if callable(conv.weight) else conv.weight).detach().double().cpu()
        self.register_buffer("w", w.float())
        self.register_buffer("w_inv", torch.linalg.inv(w).float())
        self.register_buffer("logabsdet", torch.linalg.slogdet(w)[1].float())

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = F.conv2d(x, self.w[:, :, None, None])
        return z, (x.shape[2] * x.shape[3] * self.logabsdet).expand(x.shape[0])

    def inverse(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = F.conv2d(z, self.w_inv[:, :, None, None])
        return x, (-z.shape[2] * z.shape[3] * self.logabsdet).expand(z.shape[0])


def frozen_copy(model: GlowFlow) -> GlowFlow:
    """A float32 copy of ``model`` on the CPU, in eval mode, whose 1x1 convolutions are
    ``FixedChannelMix`` constants; ``model`` itself is left as it was."""
    frozen = copy.deepcopy(model).cpu().float().eval()
    for module in list(frozen.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, (InvConv1x1, InvConv1x1LU)):
                setattr(module, name, FixedChannelMix(child))
    return frozen


class Encoder(nn.Module):
    """``(images uint8 [B,H,W,C], noise [B,H,W,C][, label [B]]) -> (z [B,D], bpd [B])``."""

    def __init__(self, flow: GlowFlow) -> None:
        super().__init__()
        self.flow = flow

    def forward(self, images: torch.Tensor, noise: torch.Tensor, label=None):
        n_bits = self.flow.config.n_bits
        x = preprocess(images.permute(0, 3, 1, 2), n_bits, noise=noise.permute(0, 3, 1, 2))
        z, logdet = self.flow(x, label, check_labels=False)
        logp = standard_normal_logp(z) + logdet
        return z, bits_per_dim(logp, self.flow.config.num_dims, n_bits).float()


class Decoder(nn.Module):
    """``(z [B,D][, label [B]]) -> (images uint8 [B,H,W,C], overflow bool [B])``: whether an
    image decoded to inf or NaN somewhere (a latent far from what the model learned; those
    pixels come out black or saturated)."""

    def __init__(self, flow: GlowFlow) -> None:
        super().__init__()
        self.flow = flow

    def forward(self, z: torch.Tensor, label=None) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.flow.inverse(z, label, check_labels=False)[0]
        overflow = ~torch.isfinite(x).flatten(1).all(1)
        return postprocess(x, self.flow.config.n_bits).permute(0, 2, 3, 1), overflow


def weights_digest(model: nn.Module) -> str:
    """The SHA-256 of ``model``'s config and its state as float32 (names, shapes and values,
    buffers included): what the graphs of ``export_onnx`` record as the model they hold."""
    digest = hashlib.sha256(json.dumps(model.config.to_dict(), sort_keys=True).encode())
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().cpu()
        t = t.float() if t.is_floating_point() else t
        digest.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        digest.update(t.contiguous().numpy().tobytes())
    return digest.hexdigest()


def _metadata(model: GlowFlow) -> dict[str, str]:
    from glowflow.version import __version__

    c = model.config
    return {"n_bits": str(c.n_bits), "image_shape": ",".join(map(str, c.image_shape)),
            "num_dims": str(c.num_dims), "num_classes": str(c.num_classes or 0),
            "weights_sha256": weights_digest(model),
            "producer": f"glowflow {__version__}"}  # fmt: skip


#: What the exporter says of every Glow and that is of no use to whoever exports one: the
#: operators of torchvision it skipped, and a renamed dynamic axis. Other warnings still show.
_EXPORTER_NOTES = (
    r".*isinstance\(treespec, LeafSpec\)",
    r".*The axis name: batch will not be used",
)
_REGISTRY_LOGGER = "torch.onnx._internal.exporter._registration"


@contextlib.contextmanager
def _quiet_exporter():
    """Keep the exporter's ``_EXPORTER_NOTES`` and its registry's notes off the terminal."""
    logger = logging.getLogger(_REGISTRY_LOGGER)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            for note in _EXPORTER_NOTES:
                warnings.filterwarnings("ignore", message=note)
            yield
    finally:
        logger.setLevel(level)


def directions_npz(directions: dict[str, Any]) -> bytes:
    """The bytes of ``directions.npz``: ``names`` and float32 ``directions`` ``[A, D]`` from
    attribute directions as ``glowflow.hub.pretrained.load_attributes`` returns them."""
    buffer = io.BytesIO()
    vectors = torch.as_tensor(directions["directions"]).detach().float().cpu().numpy()
    np.savez(buffer, names=np.array(directions["names"], dtype=str), directions=vectors)
    return buffer.getvalue()


def export_onnx(
    model: Union[GlowFlow, LoadedModel, str, os.PathLike],
    out_dir: str | os.PathLike,
    opset: int = OPSET,
    *,
    directions: dict[str, Any] | None = None,
) -> dict[str, Path]:
    """Write ``encoder.onnx`` and ``decoder.onnx`` of ``model`` into ``out_dir``, and
    ``directions.npz`` where there are attribute directions.

    Args:
        model: a model; or any name ``glowflow.load_model`` takes (a bundled model, a
            pretrained folder, ``hf:user/repo``, a run folder), or what it returned, whose
            shipped attribute directions come along unless ``directions`` is given.
        directions: ``{"names": [A], "directions": (A, D)}`` to write as ``directions.npz``.
        opset: the ONNX opset the graphs are pinned to.

    Returns:
        ``{"encoder": path, "decoder": path}``, and ``"directions": path`` where written.

    Raises:
        OnnxError: without the ``glowflow[onnx]`` extra.
    """
    check_onnx_extra()
    import onnx

    if not isinstance(model, nn.Module):
        loaded = model if isinstance(model, LoadedModel) else load_model(model)
        model = loaded.model
        directions = directions if directions is not None else loaded.shipped_directions()
    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    flow = frozen_copy(model)
    c, h, w = flow.config.image_shape
    conditional = flow.config.num_classes is not None
    batch = torch.export.Dim("batch", min=1, max=4096)
    label = torch.zeros(2, dtype=torch.int64)
    images = torch.zeros(2, h, w, c, dtype=torch.uint8)
    noise = torch.full((2, h, w, c), 0.5, dtype=torch.float32)  # whatever the default dtype
    z = torch.zeros(2, flow.config.num_dims, dtype=torch.float32)
    graphs = {
        "encoder": (Encoder(flow).eval(), (images, noise, *([label] if conditional else [])),
                    ["images", "noise", *(["label"] if conditional else [])], ["z", "bpd"]),
        "decoder": (Decoder(flow).eval(), (z, *([label] if conditional else [])),
                    ["z", *(["label"] if conditional else [])], ["images", "overflow"]),
    }  # fmt: skip
    paths, metadata = {}, _metadata(model)
    for name, (module, args, inputs, outputs) in graphs.items():
        path = out / f"{name}.onnx"
        shapes = tuple({0: batch} for _ in args)
        with torch.no_grad(), _quiet_exporter():
            program = torch.onnx.export(
                module, args, dynamo=True, opset_version=opset, input_names=inputs,
                output_names=outputs, dynamic_shapes=shapes, verbose=False,
            )  # fmt: skip
        proto = program.model_proto
        for key, value in metadata.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.checker.check_model(proto)
        atomic_write_bytes(path, proto.SerializeToString())
        paths[name] = path
    stale = out / DIRECTIONS_FILE  # another model's, from an earlier export into this folder
    if directions is not None:
        paths["directions"] = stale
        atomic_write_bytes(stale, directions_npz(directions))
    elif stale.is_file():
        stale.unlink()
    return paths


def graph_metadata(path: Path) -> dict[str, str]:
    """The metadata of an ONNX file (empty for a file that is not one)."""
    import onnx

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception:  # noqa: BLE001 - any unreadable file is simply not a match
        return {}
    return {e.key: e.value for e in proto.metadata_props}


def graphs_of(model: GlowFlow, beside: Path | None = None) -> Path | None:
    """A folder holding ``encoder.onnx`` and ``decoder.onnx`` made from exactly ``model``'s
    weights: ``beside`` (a pretrained folder exported with ``--onnx``) or the cache
    (``$XDG_CACHE_HOME/glowflow/onnx/DIGEST``, where ``cached_graphs`` puts them); None
    where there are none."""
    digest = weights_digest(model)
    for folder in (beside, onnx_cache() / digest):
        if folder is not None and all((folder / f).is_file() for f in (ENCODER_FILE, DECODER_FILE)):
            metas = [graph_metadata(folder / f) for f in (ENCODER_FILE, DECODER_FILE)]
            if all(m.get("weights_sha256") == digest for m in metas):
                return folder
    return None


def onnx_cache() -> Path:
    """Where graphs exported for a run of ``glowflow serve --runtime onnx`` are kept."""
    return user_cache() / "onnx"


def cached_graphs(model: GlowFlow, beside: Path | None = None) -> Path:
    """``graphs_of`` ``model``, exported into the cache first where there are none."""
    found = graphs_of(model, beside)
    if found is None:
        found = onnx_cache() / weights_digest(model)
        export_onnx(model, found)
    return found
