"""A trained Glow as two ONNX graphs that any runtime can use without glowflow: an encoder
(uint8 images and a dequantisation draw -> standardised latent and bits/dim) and a decoder
(latent -> uint8 images), with the ``glowflow[onnx]`` extra.

The graphs hold no matrix inverse and no determinant: every 1x1 convolution's ``W``, ``W^-1``
and ``log|det W|`` depend on the weights alone, so they are computed once here, in float64, and
stored as constants (float32). Everything else is the model's own code, traced by
``torch.onnx.export``. The interface, in NumPy and Pillow's layout:

- ``encoder.onnx``: ``images`` uint8 ``[B, H, W, C]``, ``noise`` float32 ``[B, H, W, C]`` in
  ``[0, 1)`` (0.5 everywhere is the centre of each pixel's bin), and ``label`` int64 ``[B]`` for
  a class-conditional model -> ``z`` float32 ``[B, D]`` (what :meth:`GlowFlow.encode` returns)
  and ``bpd`` float32 ``[B]``.
- ``decoder.onnx``: ``z`` (and ``label``) -> ``images`` uint8 ``[B, H, W, C]``. Sampling at a
  temperature ``T`` is decoding ``T`` times a standard normal draw.

The batch is dynamic; each file's metadata holds the model's ``n_bits``, ``image_shape``
(``C,H,W``), ``num_dims`` and ``num_classes``.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from glowflow.errors import GlowflowError
from glowflow.nn.invconv import InvConv1x1, InvConv1x1LU
from glowflow.nn.model import GlowFlow
from glowflow.nn.objective import bits_per_dim, postprocess, preprocess
from glowflow.nn.prior import standard_normal_logp

OPSET = 18
ONNX_EXTRA = "pip install 'glowflow[onnx]'"
ENCODER_FILE = "encoder.onnx"
DECODER_FILE = "decoder.onnx"


class OnnxError(GlowflowError):
    """An export that cannot be made (the extra missing, a model it cannot trace)."""


class FixedChannelMix(nn.Module):
    """A 1x1 convolution whose ``W``, ``W^-1`` and ``log|det W|`` are constants, computed once
    in float64 from a learned one (:class:`InvConv1x1` or :class:`InvConv1x1LU`): the same
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
    :class:`FixedChannelMix` constants; ``model`` itself is left as it was."""
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
    """``(z [B,D][, label [B]]) -> images uint8 [B,H,W,C]``."""

    def __init__(self, flow: GlowFlow) -> None:
        super().__init__()
        self.flow = flow

    def forward(self, z: torch.Tensor, label=None) -> torch.Tensor:
        x = self.flow.inverse(z, label, check_labels=False)[0]
        return postprocess(x, self.flow.config.n_bits).permute(0, 2, 3, 1)


def _metadata(flow: GlowFlow) -> dict[str, str]:
    from glowflow.version import __version__

    c = flow.config
    return {"n_bits": str(c.n_bits), "image_shape": ",".join(map(str, c.image_shape)),
            "num_dims": str(c.num_dims), "num_classes": str(c.num_classes or 0),
            "producer": f"glowflow {__version__}"}  # fmt: skip


def export_onnx(model: GlowFlow, out_dir: str | Path, opset: int = OPSET) -> dict[str, Path]:
    """Write ``encoder.onnx`` and ``decoder.onnx`` of ``model`` into ``out_dir``.

    Returns:
        ``{"encoder": path, "decoder": path}``.

    Raises:
        OnnxError: without the ``glowflow[onnx]`` extra.
    """
    try:
        import onnx
    except ImportError:
        raise OnnxError(f"exporting to ONNX needs the onnx extra: {ONNX_EXTRA}") from None
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
                    ["z", *(["label"] if conditional else [])], ["images"]),
    }  # fmt: skip
    paths = {}
    for name, (module, args, inputs, outputs) in graphs.items():
        path = out / f"{name}.onnx"
        shapes = tuple({0: batch} for _ in args)
        with torch.no_grad():
            program = torch.onnx.export(
                module, args, dynamo=True, opset_version=opset, input_names=inputs,
                output_names=outputs, dynamic_shapes=shapes, verbose=False,
            )  # fmt: skip
        proto = program.model_proto
        for key, value in _metadata(flow).items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.checker.check_model(proto)
        onnx.save(proto, str(path))
        paths[name] = path
    return paths
