"""The multi-scale Glow model."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from glowflow.config import GlowConfig
from glowflow.nn.actnorm import ActNorm
from glowflow.nn.backprop import invertible_sequence
from glowflow.nn.flowstep import FlowStep
from glowflow.nn.objective import bits_per_dim
from glowflow.nn.prior import SplitPrior, TopPrior, standard_normal_logp
from glowflow.nn.squeeze import squeeze2d, unsqueeze2d


def weights_channels_last(memory_format: str) -> bool:
    """Whether a model built with ``memory_format`` (see ``GlowConfig``) lays its
    convolution weights out channels-last; ``"auto"`` does where oneDNN runs convolutions."""
    if memory_format == "auto":
        return bool(torch.backends.mkldnn.is_available())
    return memory_format == "channels_last"


class Level(nn.Module):
    """One scale: ``squeeze -> K flow steps -> split`` (no split on the top level).

    forward maps ``(B, C, H, W)`` to ``(B, 4C, H/2, W/2)``; when it splits, the second half of
    those channels is already the standardised latent of this level (see ``SplitPrior``).
    """

    def __init__(self, channels: int, config: GlowConfig, split: bool) -> None:
        super().__init__()
        c = channels * 4
        self.steps = nn.ModuleList(
            FlowStep(c, config.hidden_channels, config.coupling, config.permutation)
            for _ in range(config.depth)
        )
        self.split = SplitPrior(c) if split else None
        self.memory_saving = config.memory_saving

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = squeeze2d(x)  # (B, 4C, H/2, W/2)
        if self.memory_saving and torch.is_grad_enabled():
            x, logdet = invertible_sequence(self.steps, x)
        else:
            logdet = x.new_zeros(x.shape[0])
            for step in self.steps:
                x, ld = step(x)
                logdet = logdet + ld
        if self.split is not None:
            x, ld = self.split(x)
            logdet = logdet + ld
        return x, logdet

    def inverse(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logdet = z.new_zeros(z.shape[0])
        if self.split is not None:
            z, ld = self.split.inverse(z)
            logdet = logdet + ld
        for step in reversed(self.steps):
            z, ld = step.inverse(z)
            logdet = logdet + ld
        return unsqueeze2d(z), logdet


class GlowFlow(nn.Module):
    """Glow: ``L`` levels of ``squeeze -> K x (actnorm, 1x1 conv, coupling) -> split``.

    The flow maps continuous images ``x`` of shape ``(B, C, H, W)`` (see
    ``glowflow.preprocess``) to a standardised latent ``eps`` of shape ``(B, C*H*W)`` with

        log p(x) = log N(eps; 0, I) + sum of every layer's log|det J|,

    the learned priors of the splits and of the top being layers that standardise their latent.

    Flat latent layout (``encode``): the latent that level 0's split sends off, then
    level 1's, ..., then the top latent; each block is one level's ``(C_l, H_l, W_l)`` tensor
    flattened in C-order. ``latent_shapes`` lists those shapes.

    The arguments (``image_shape``, ``levels``, ``depth``, ``hidden_channels``, ``coupling``,
    ``permutation``, ``learn_top``, ``num_classes``, ``n_bits``, ``memory_saving``,
    ``memory_format``) are the fields of ``GlowConfig``, which says what each means. Use
    ``from_config`` to build from one.

    ``glowflow.Glow`` is this flow with the methods that load and save it
    (``from_pretrained``, ``save_pretrained``, ``push_to_hub``).
    """

    def __init__(
        self,
        image_shape: tuple[int, int, int] = (3, 32, 32),
        levels: int = 3,
        depth: int = 32,
        hidden_channels: int = 512,
        coupling: str = "affine",
        permutation: str = "lu",
        learn_top: bool = True,
        num_classes: int | None = None,
        n_bits: int = 8,
        memory_saving: bool = False,
        memory_format: str = "auto",
    ) -> None:
        super().__init__()
        self.config = GlowConfig(
            image_shape=image_shape,
            levels=levels,
            depth=depth,
            hidden_channels=hidden_channels,
            coupling=coupling,
            permutation=permutation,
            learn_top=learn_top,
            num_classes=num_classes,
            n_bits=n_bits,
            memory_saving=memory_saving,
            memory_format=memory_format,
        )
        c, h, w = self.config.image_shape
        self.levels = nn.ModuleList()
        self._latent_shapes: list[tuple[int, int, int]] = []
        for i in range(levels):
            c, h, w = c * 4, h // 2, w // 2
            last = i == levels - 1
            self.levels.append(Level(c // 4, self.config, split=not last))
            if not last:
                self._latent_shapes.append((c - c // 2, h, w))
                c = c // 2
        self._latent_shapes.append((c, h, w))
        self.top = TopPrior((c, h, w), learn_top, num_classes)
        if num_classes is not None:
            # Predicts the label from the top latent (mean over space); its cross-entropy can
            # be added to the loss, as in the paper's class-conditional models.
            self.classifier = nn.Linear(c, num_classes)
            nn.init.zeros_(self.classifier.weight)
            nn.init.zeros_(self.classifier.bias)
        else:
            self.classifier = None
        if weights_channels_last(memory_format):
            self.to(memory_format=torch.channels_last)

    @classmethod
    def from_config(cls, config: GlowConfig | dict[str, Any]) -> GlowFlow:
        if isinstance(config, dict):
            config = GlowConfig.from_dict(config)
        return cls(**{f: getattr(config, f) for f in config.__dataclass_fields__})

    # ----------------------------------------------------------------------------- shapes
    def latent_shapes(self) -> list[tuple[int, int, int]]:
        """``(C, H, W)`` of each level's latent, in the flat layout's order (top last)."""
        return list(self._latent_shapes)

    @property
    def num_dims(self) -> int:
        return self.config.num_dims

    def _check_x(self, x: torch.Tensor) -> None:
        expected = self.config.image_shape
        if not torch.is_tensor(x) or not x.is_floating_point():
            dtype = x.dtype if torch.is_tensor(x) else type(x).__name__
            raise ValueError(
                f"expected a float tensor of shape (B, {', '.join(map(str, expected))}), got "
                f"{dtype}; convert uint8 images with glowflow.preprocess first"
            )
        if x.dim() != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(
                f"expected images of shape (B, {', '.join(map(str, expected))}), "
                f"got {tuple(x.shape)}"
            )

    def _check_y(
        self, y: torch.Tensor | None, batch: int, required: bool, check_range: bool = True
    ) -> None:
        k = self.config.num_classes
        if y is None:
            if required and k is not None:
                raise ValueError(f"this model is class-conditional: pass labels y in [0, {k})")
            return
        if k is None:
            raise ValueError("labels y were given, but the model has num_classes=None")
        if not torch.is_tensor(y) or y.dtype not in (torch.int64, torch.int32, torch.int16):
            raise ValueError(f"labels y must be an integer tensor of shape ({batch},)")
        if tuple(y.shape) != (batch,):
            raise ValueError(f"labels y must have shape ({batch},), got {tuple(y.shape)}")
        # reading the range back waits for the device: callers that checked their labels
        # once (the trainer, when it loaded the data) skip it
        if check_range and y.numel() and (int(y.min()) < 0 or int(y.max()) >= k):
            raise ValueError(
                f"labels must lie in [0, {k}), got values from {int(y.min())} to {int(y.max())}"
            )

    # ----------------------------------------------------------------------------- flow
    def _flow(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor, list[torch.Tensor]]:
        """Through every level: (split-off latents, top ``z``, each level's log-det ``[B]``)."""
        logdets = []
        latents = []
        h = x
        for level in self.levels:
            h, ld = level(h)
            logdets.append(ld)
            if level.split is not None:
                keep = level.split.keep
                latents.append(h[:, keep:])
                h = h[:, :keep]
        return latents, h, logdets

    def forward(
        self, x: torch.Tensor, y: torch.Tensor | None = None, check_labels: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``x (B, C, H, W) -> (eps (B, D), logdet (B,))``; ``log p(x) = log N(eps) + logdet``.

        ``check_labels=False`` skips the check that every label is in range (which reads the
        labels' values: a traced graph, such as an ONNX export's, has none to read)."""
        self._check_x(x)
        self._check_y(y, x.shape[0], required=True, check_range=check_labels)
        latents, z_top, logdets = self._flow(x)
        eps_top, ld = self.top(z_top, y)
        latents.append(eps_top)
        return torch.cat([e.flatten(1) for e in latents], dim=1), sum(logdets) + ld

    def inverse(
        self, eps: torch.Tensor, y: torch.Tensor | None = None, check_labels: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``eps (B, D) -> (x (B, C, H, W), logdet (B,))``, the exact inverse of ``forward``
        (``check_labels`` as there)."""
        d = self.config.num_dims
        if not torch.is_tensor(eps) or eps.dim() != 2 or eps.shape[1] != d:
            shape = tuple(eps.shape) if torch.is_tensor(eps) else type(eps).__name__
            raise ValueError(f"expected a latent of shape (B, {d}), got {shape}")
        b = eps.shape[0]
        self._check_y(y, b, required=True, check_range=check_labels)
        sizes = [c * h * w for c, h, w in self._latent_shapes]
        parts = [
            p.reshape(b, *shape) for p, shape in zip(eps.split(sizes, dim=1), self._latent_shapes)
        ]
        h, logdet = self.top.inverse(parts[-1], y)
        split_latents = parts[:-1]
        for level in reversed(self.levels):
            if level.split is not None:
                h = torch.cat([h, split_latents.pop()], dim=1)
            h, ld = level.inverse(h)
            logdet = logdet + ld
        return h, logdet

    # ----------------------------------------------------------------------------- densities
    def log_prob_and_logits(
        self, x: torch.Tensor, y: torch.Tensor | None = None, check_labels: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``log p(x | y)`` in nats, shape ``[B]``, and the classifier's logits (or None).

        For a class-conditional model called without ``y``, the density is the exact marginal
        ``log sum_y p(y) p(x | y)`` under a uniform label prior. ``check_labels=False`` skips
        the check that every label is in range, for labels already checked.
        """
        parts, z_top = self._level_log_probs(x, y, check_labels)
        logits = self.classifier(z_top.mean(dim=(2, 3))) if self.classifier is not None else None
        return sum(parts), logits

    def log_prob_levels(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """``log p(x | y)`` in nats, split by level: shape ``[B, L]``, rows summing to
        ``log_prob``.

        Level ``l``'s part is the log-det of its squeeze, steps and split plus the standard
        normal log-density of the latent it sends off; the last level's part holds the top
        prior (the marginal over classes for a class-conditional model called without ``y``).
        """
        return torch.stack(self._level_log_probs(x, y, True)[0], dim=1)

    def _level_log_probs(
        self, x: torch.Tensor, y: torch.Tensor | None, check_labels: bool
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Each level's share of ``log p(x | y)`` (``[B]`` each) and the top latent ``z``."""
        self._check_x(x)
        self._check_y(y, x.shape[0], required=False, check_range=check_labels)
        latents, z_top, parts = self._flow(x)
        parts = [ld + standard_normal_logp(eps) for ld, eps in zip(parts, latents)] + parts[-1:]
        if self.config.num_classes is not None and y is None:
            parts[-1] = parts[-1] + self.top.marginal_logp(z_top)
        else:
            eps_top, ld = self.top(z_top, y)
            parts[-1] = parts[-1] + standard_normal_logp(eps_top) + ld
        return parts, z_top

    def log_prob(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Log-density of continuous ``x`` (B, C, H, W) in nats: shape ``[B]``."""
        return self.log_prob_and_logits(x, y)[0]

    def bits_per_dim(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Bits per dimension of each image of the discrete data: shape ``[B]``."""
        return bits_per_dim(self.log_prob(x, y), self.config.num_dims, self.config.n_bits)

    # ----------------------------------------------------------------------------- latents
    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """The standardised latent of every level, flat: ``(B, C*H*W)`` (see class docs)."""
        return self.forward(x, y)[0]

    def decode(
        self, eps: torch.Tensor, y: torch.Tensor | None = None, temperature: float = 1.0
    ) -> torch.Tensor:
        """Images from flat latents; ``temperature`` scales every level's prior std."""
        return self.inverse(eps * temperature, y)[0]

    @torch.no_grad()
    def sample(
        self,
        n: int,
        y: torch.Tensor | None = None,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """``n`` images ``(n, C, H, W)`` in model space; labels drawn uniformly if needed."""
        p = next(self.parameters())
        k = self.config.num_classes
        if k is not None and y is None:
            y = torch.randint(0, k, (n,), generator=generator, device=p.device)
        eps = torch.randn(
            n, self.config.num_dims, generator=generator, device=p.device, dtype=p.dtype
        )
        return self.decode(eps, y, temperature)

    # ----------------------------------------------------------------------------- init
    def actnorms(self) -> list[ActNorm]:
        return [m for m in self.modules() if isinstance(m, ActNorm)]

    @property
    def is_initialized(self) -> bool:
        return all(bool(m.initialized) for m in self.actnorms())

    @torch.no_grad()
    def initialize(self, x: torch.Tensor, y: torch.Tensor | None = None) -> None:
        """Run every actnorm's data-dependent initialisation on the batch ``x``."""
        for m in self.actnorms():
            m.request_init()
        self.log_prob(x, y)
