"""What runs the explorer's model calls: PyTorch (``TorchRuntime``), or ONNX Runtime on the
graphs of ``glowflow export --onnx`` (``OnnxRuntime``, the ``glowflow[onnx]`` extra),
which answers a slider move several times faster on a CPU (``benchmarks/bench_latency.py``).

Both give the same four things, on uint8 images ``(N, C, H, W)`` and flat latents ``(N, D)``,
each image at the centre of its pixel bins: ``encode``, ``decode`` (with which images
overflowed), ``bits_per_dim`` (a class-conditional model's marginal over its classes) and
``guess_labels``. The flow being exact, both decode an encoded image back to itself.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Protocol

import numpy as np
import torch

from glowflow.config import GlowConfig
from glowflow.explorer.checks import RUNTIMES, ExplorerError
from glowflow.hub.onnx_export import ONNX_EXTRA, has_onnx_extra
from glowflow.latent.latents import decode_with_overflow, encode_images
from glowflow.nn.model import GlowFlow
from glowflow.nn.objective import bits_per_dim as objective_bits_per_dim
from glowflow.nn.objective import preprocess


class Runtime(Protocol):
    """What runs the explorer's model calls: ``name`` (one of ``torch``, ``onnx``), the model's
    ``config``, and the ``device`` and ``dtype`` of the latents it takes and gives."""

    name: str
    config: GlowConfig
    device: torch.device
    dtype: torch.dtype

    def encode(self, images: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor: ...

    def decode(
        self, eps: torch.Tensor, labels: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]: ...

    def bits_per_dim(self, images: torch.Tensor) -> torch.Tensor: ...

    def guess_labels(self, images: torch.Tensor) -> torch.Tensor | None: ...


class TorchRuntime:
    """The model's own PyTorch code, on its device and in its dtype."""

    name = "torch"

    def __init__(self, model: GlowFlow) -> None:
        self.model = model.eval()
        self.config = model.config
        p = next(model.parameters())
        self.device, self.dtype = p.device, p.dtype

    def encode(self, images: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        return encode_images(self.model, images, labels)

    def decode(
        self, eps: torch.Tensor, labels: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return decode_with_overflow(self.model, eps, labels)

    @torch.no_grad()
    def bits_per_dim(self, images: torch.Tensor) -> torch.Tensor:
        x = preprocess(images, self.config.n_bits, dequantize=False, dtype=self.dtype)
        return self.model.bits_per_dim(x.to(self.device)).double().cpu()

    @torch.no_grad()
    def guess_labels(self, images: torch.Tensor) -> torch.Tensor | None:
        k = self.config.num_classes
        if k is None:
            return None
        x = preprocess(images, self.config.n_bits, dequantize=False, dtype=self.dtype)
        x = x.to(self.device)
        logps = [self.model.log_prob(x, torch.full((len(x),), c, device=self.device))
                 for c in range(k)]  # fmt: skip
        return torch.stack(logps, 1).argmax(1).cpu()


class OnnxRuntime:
    """``encoder.onnx`` and ``decoder.onnx`` of a folder in ONNX Runtime, on the CPU with
    ``threads`` threads (default: as many as PyTorch uses); latents are float32 on the CPU."""

    name = "onnx"
    device = torch.device("cpu")
    dtype = torch.float32

    def __init__(self, folder: Path, config: GlowConfig, threads: int | None = None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        self.encoder, self.decoder = (
            ort.InferenceSession(str(folder / f"{k}.onnx"), options,
                                 providers=["CPUExecutionProvider"])
            for k in ("encoder", "decoder")
        )  # fmt: skip
        self.config = config

    def _labels(self, labels: torch.Tensor | None) -> dict[str, np.ndarray]:
        """The ``label`` input of a class-conditional model's graphs (required, as in PyTorch)."""
        if self.config.num_classes is None:
            return {}
        if labels is None:
            raise ValueError("this model is class-conditional: give a label for every image")
        return {"label": labels.cpu().numpy().astype(np.int64)}

    def _run_encoder(self, images: torch.Tensor, labels: torch.Tensor | None):
        feed = {"images": images.permute(0, 2, 3, 1).contiguous().numpy()}
        feed["noise"] = np.full(feed["images"].shape, 0.5, np.float32)  # the bins' centres
        return self.encoder.run(None, {**feed, **self._labels(labels)})

    def encode(self, images: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        return torch.from_numpy(self._run_encoder(images, labels)[0])

    def decode(
        self, eps: torch.Tensor, labels: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        feed = {"z": eps.detach().float().cpu().numpy(), **self._labels(labels)}
        images, overflow = self.decoder.run(None, feed)
        return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(overflow)

    def _class_bits(self, images: torch.Tensor) -> torch.Tensor:
        """float64 ``(N, K)``: each image's bits/dim given each class."""
        k = self.config.num_classes
        columns = [self._run_encoder(images, torch.full((len(images),), c))[1]
                   for c in range(k)]  # fmt: skip
        return torch.from_numpy(np.stack(columns, 1)).double()

    def bits_per_dim(self, images: torch.Tensor) -> torch.Tensor:
        if self.config.num_classes is None:
            return torch.from_numpy(self._run_encoder(images, None)[1]).double()
        # the marginal over classes, each as likely: log p(x) = logsumexp_y log p(x|y) - log K
        d, n_bits = self.config.num_dims, self.config.n_bits
        logp_given = d * math.log(2**n_bits) - self._class_bits(images) * d * math.log(2)
        logp = torch.logsumexp(logp_given, 1) - math.log(self.config.num_classes)
        return objective_bits_per_dim(logp, d, n_bits)

    def guess_labels(self, images: torch.Tensor) -> torch.Tensor | None:
        if self.config.num_classes is None:
            return None
        return self._class_bits(images).argmin(1)


def choose_runtime(
    model: GlowFlow, choice: str, beside: Path | None = None, say: Callable[[str], None] = print
) -> Runtime:
    """The runtime ``glowflow serve --runtime choice`` uses for ``model``.

    ``torch``: PyTorch. ``onnx``: ONNX Runtime on the CPU, on graphs made from exactly this
    model, found in ``beside`` (a pretrained folder exported with ``--onnx``) or the cache, or
    exported into the cache now (said through ``say``: it takes about a minute for a 64x64
    model). ``auto``: ONNX Runtime for a model on the CPU where the extra is installed and such
    graphs exist already, else PyTorch.

    Raises:
        ExplorerError: for ``onnx`` without the ``glowflow[onnx]`` extra, or an unknown choice
            (``check_runtime``).
    """
    check_runtime(choice)
    on_cpu = next(model.parameters()).device.type == "cpu"
    if choice == "torch" or (choice == "auto" and not (on_cpu and has_onnx_extra())):
        return TorchRuntime(model)
    from glowflow.hub.onnx_export import cached_graphs, graphs_of, onnx_cache

    folder = graphs_of(model, beside)
    if folder is None:
        if choice == "auto":
            return TorchRuntime(model)
        say(f"exporting the model to ONNX once (about a minute for a 64x64 model) into "
            f"{onnx_cache()}")  # fmt: skip
        folder = cached_graphs(model, beside)
    return OnnxRuntime(folder, model.config)


def check_runtime(choice: str) -> None:
    """Refuse, in one line, a runtime that is unknown or whose extra is not installed, before
    any long work."""
    if choice not in RUNTIMES:
        raise ExplorerError(f"--runtime is one of {', '.join(RUNTIMES)}, got {choice!r}")
    if choice == "onnx" and not has_onnx_extra():
        raise ExplorerError(f"--runtime onnx needs the onnx extra: {ONNX_EXTRA}")
