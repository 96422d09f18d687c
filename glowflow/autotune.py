"""The fastest correct settings for the machine at hand, chosen without the user's flags.

- **Memory layout.** oneDNN (PyTorch's CPU convolution library) runs convolutions markedly
  faster when their weights are laid out channels-last (NHWC): about 1.2x for a training step of
  the paper's CIFAR-10 model on a 2-core CPU (``benchmarks/bench_ports.py``). A model built on
  the CPU takes that layout; values, state dicts and checkpoints are the same either way.
"""

from __future__ import annotations

import torch


def prefer_channels_last() -> bool:
    """Whether a model built now should lay its convolution weights out channels-last."""
    return bool(torch.backends.mkldnn.is_available())
