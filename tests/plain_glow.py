"""A plain Glow for differential tests: the flow as the paper writes it, layer by layer.

Nothing here is shared with the package's model code: no caches, no folded weights, no
channels-last, no memory-saving backprop, no mixed precision. The weights live in a dict keyed
by the names of :class:`glowflow.Glow`'s state dict, as plain float64 NCHW tensors, and the two
optimisers are the update rules of their papers, written out. What glowflow computes for the
same weights and batches must agree with this to round-off.
"""

from __future__ import annotations

import math
from importlib import resources

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

ACTNORM_EPS = 1e-6  # actnorm's init: logs = -log(std + eps)

#: Weights, moments and log-likelihoods agree to this, relative to each tensor's largest entry.
#: Both sides are float64 and differ in the order of operations only (a batched product for a
#: convolution, folded actnorms, recomputation by inversion), about 1e-13 over a few steps.
TOLERANCE = 1e-10


def faces16() -> tuple[torch.Tensor, torch.Tensor]:
    """The 36 real CelebA faces of the bundled gallery at 16x16 (NCHW uint8), and whether each
    smiles (a real two-class label)."""
    with resources.files("glowflow").joinpath("models/celeba64/gallery.npz").open("rb") as f:
        d = np.load(f)
        x, attrs, names = d["x"], d["attrs"], list(d["attr_names"])
    small = np.stack([np.asarray(Image.fromarray(im).resize((16, 16), Image.BOX)) for im in x])
    labels = torch.from_numpy((attrs[:, names.index("Smiling")] > 0).astype(np.int64))
    return torch.from_numpy(small).permute(0, 3, 1, 2).contiguous(), labels


def check(worst: dict[str, float], what: str) -> None:
    """Every largest difference in ``worst`` is within :data:`TOLERANCE` of ``what``."""
    bad = {k: v for k, v in worst.items() if not v <= TOLERANCE}
    assert not bad, f"differs from {what}: {bad} (all: {worst})"


def largest_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    """``max|a - b|`` over ``max|b|``: the difference relative to the tensor's scale (infinite
    where either holds a NaN or an infinity)."""
    a, b = a.detach(), b.detach()
    if not (torch.isfinite(a).all() and torch.isfinite(b).all()):
        return float("inf")
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-300))


def squeeze(x: torch.Tensor) -> torch.Tensor:
    """Space-to-depth: input pixel ``(c, 2i + di, 2j + dj)`` goes to channel ``4c + 2di + dj``."""
    b, c, h, w = x.shape
    parts = [x[:, :, di::2, dj::2] for di in (0, 1) for dj in (0, 1)]  # 4 x (B, C, H/2, W/2)
    return torch.stack(parts, dim=2).reshape(b, 4 * c, h // 2, w // 2)


def unsqueeze(z: torch.Tensor) -> torch.Tensor:
    b, c4, h, w = z.shape
    parts = z.reshape(b, c4 // 4, 4, h, w)
    x = z.new_empty(b, c4 // 4, 2 * h, 2 * w)
    for k, (di, dj) in enumerate((di, dj) for di in (0, 1) for dj in (0, 1)):
        x[:, :, di::2, dj::2] = parts[:, :, k]
    return x


def normal_logp(eps: torch.Tensor) -> torch.Tensor:
    return (-0.5 * eps**2 - 0.5 * math.log(2 * math.pi)).flatten(1).sum(1)


class PlainGlow:
    """``log p(x | y)``, the class logits and the inverse of a Glow with the given weights.

    Args:
        config: the :class:`glowflow.config.GlowConfig` of the model the weights come from.
        params: trainable weights by state-dict name (float64 leaves that require grad).
        buffers: the fixed tensors (permutations, signs of the LU diagonal).
    """

    def __init__(self, config, params: dict, buffers: dict) -> None:
        self.cfg = config
        self.p = params
        self.b = buffers

    # ------------------------------------------------------------------ layers
    def _actnorm(self, name, x, init):
        if init:  # data-dependent: this batch comes out zero-mean, unit-variance per channel
            mean = x.mean(dim=(0, 2, 3), keepdim=True)
            std = (x - mean).pow(2).mean(dim=(0, 2, 3), keepdim=True).sqrt()
            with torch.no_grad():
                self.p[name + ".bias"].copy_(-mean)
                self.p[name + ".logs"].copy_(-torch.log(std + ACTNORM_EPS))
        return (x + self.p[name + ".bias"]) * torch.exp(self.p[name + ".logs"])

    def _mixing(self, name):
        """The channel-mixing matrix ``W`` of a 1x1 convolution (None for a fixed permutation)."""
        kind = self.cfg.permutation
        if kind == "conv":
            return self.p[name + ".weight"]
        if kind == "lu":
            lower, upper, log_s = (self.p[f"{name}.{k}"] for k in ("lower", "upper", "log_s"))
            c = log_s.shape[0]
            l_full = torch.tril(lower, -1) + torch.eye(c, dtype=lower.dtype)
            u_full = torch.triu(upper, 1) + torch.diag(self.b[name + ".sign_s"] * torch.exp(log_s))
            return self.b[name + ".perm"] @ l_full @ u_full
        return None

    def _zero_conv(self, name, x):
        out = F.conv2d(x, self.p[name + ".conv.weight"], self.p[name + ".conv.bias"], padding=1)
        return out * torch.exp(3 * self.p[name + ".logs"])

    def _coupling_net(self, name, x, init):
        h = F.conv2d(x, self.p[name + ".conv1.weight"], padding=1)
        h = F.relu(self._actnorm(name + ".norm1", h, init))
        h = F.conv2d(h, self.p[name + ".conv2.weight"])
        h = F.relu(self._actnorm(name + ".norm2", h, init))
        return self._zero_conv(name + ".out", h)

    def _step(self, name, x, init):
        b, c, h, w = x.shape
        x = self._actnorm(name + ".actnorm", x, init)
        logdet = h * w * self.p[name + ".actnorm.logs"].sum()
        weight = self._mixing(name + ".permute")
        if weight is None:
            x = x[:, self.b[name + ".permute.perm"]]
        else:
            x = F.conv2d(x, weight[:, :, None, None])
            logdet = logdet + h * w * torch.linalg.slogdet(weight)[1]
        half = c // 2
        x_a, x_b = x[:, :half], x[:, half:]
        t = self._coupling_net(name + ".coupling.net", x_a, init)
        if self.cfg.coupling == "affine":
            shift, raw = t[:, : c - half], t[:, c - half :]
            scale = torch.sigmoid(raw + 2.0)
            x_b = (x_b + shift) * scale
            logdet = logdet + torch.log(scale).flatten(1).sum(1)
        else:
            x_b = x_b + t
        return torch.cat([x_a, x_b], dim=1), logdet.expand(b)

    def _top_stats(self, y, like):
        c, h, w = self.top_shape()
        stats = like.new_zeros(like.shape[0], 2 * c, h, w)
        if self.cfg.learn_top:
            stats = self._zero_conv("top.learn", stats)
        if self.cfg.num_classes is not None:
            onehot = F.one_hot(y, self.cfg.num_classes).to(like.dtype)
            proj = onehot @ self.p["top.label_proj.weight"].T + self.p["top.label_proj.bias"]
            stats = stats + proj[:, :, None, None]
        return stats[:, :c], stats[:, c:]

    def top_shape(self):
        c, h, w = self.cfg.image_shape
        for level in range(self.cfg.levels):
            c, h, w = 4 * c, h // 2, w // 2
            if level < self.cfg.levels - 1:
                c = c // 2
        return c, h, w

    # ------------------------------------------------------------------ the model
    def log_prob(self, x: torch.Tensor, y=None, init: bool = False):
        """``(log p(x | y) [B] in nats, logits or None, the flat latent [B, D])``; with ``init``
        every actnorm is first set from this batch, in order, as Glow's initialisation does."""
        logp = x.new_zeros(x.shape[0])
        latents = []
        h = x
        for level in range(self.cfg.levels):
            h = squeeze(h)
            for k in range(self.cfg.depth):
                h, ld = self._step(f"levels.{level}.steps.{k}", h, init)
                logp = logp + ld
            if level < self.cfg.levels - 1:
                keep = h.shape[1] // 2
                h_a, h_b = h[:, :keep], h[:, keep:]
                stats = self._zero_conv(f"levels.{level}.split.net", h_a)
                mean, logs = stats[:, : h_b.shape[1]], stats[:, h_b.shape[1] :]
                eps = (h_b - mean) * torch.exp(-logs)
                logp = logp + normal_logp(eps) - logs.flatten(1).sum(1)
                latents.append(eps.flatten(1))
                h = h_a
        mean, logs = self._top_stats(y, h)
        eps = (h - mean) * torch.exp(-logs)
        logp = logp + normal_logp(eps) - logs.flatten(1).sum(1)
        latents.append(eps.flatten(1))
        logits = None
        if self.cfg.num_classes is not None:
            pooled = h.mean(dim=(2, 3))
            logits = pooled @ self.p["classifier.weight"].T + self.p["classifier.bias"]
        return logp, logits, torch.cat(latents, dim=1)

    @torch.no_grad()
    def decode(self, eps: torch.Tensor, y=None) -> torch.Tensor:
        """Images from flat standardised latents, each layer undone in reverse order."""
        c, h, w = self.cfg.image_shape
        shapes = []
        for level in range(self.cfg.levels):
            c, h, w = 4 * c, h // 2, w // 2
            if level < self.cfg.levels - 1:
                shapes.append((c - c // 2, h, w))
                c = c // 2
        shapes.append((c, h, w))
        sizes = [math.prod(s) for s in shapes]
        parts = [p.reshape(-1, *s) for p, s in zip(eps.split(sizes, dim=1), shapes)]
        mean, logs = self._top_stats(y, parts[-1])
        z = parts[-1] * torch.exp(logs) + mean
        for level in reversed(range(self.cfg.levels)):
            if level < self.cfg.levels - 1:
                stats = self._zero_conv(f"levels.{level}.split.net", z)
                part = parts[level]
                mean, logs = stats[:, : part.shape[1]], stats[:, part.shape[1] :]
                z = torch.cat([z, part * torch.exp(logs) + mean], dim=1)
            for k in reversed(range(self.cfg.depth)):
                z = self._step_inverse(f"levels.{level}.steps.{k}", z)
            z = unsqueeze(z)
        return z

    def _step_inverse(self, name, z):
        c = z.shape[1]
        half = c // 2
        z_a, z_b = z[:, :half], z[:, half:]
        t = self._coupling_net(name + ".coupling.net", z_a, False)
        if self.cfg.coupling == "affine":
            shift, raw = t[:, : c - half], t[:, c - half :]
            z_b = z_b / torch.sigmoid(raw + 2.0) - shift
        else:
            z_b = z_b - t
        z = torch.cat([z_a, z_b], dim=1)
        weight = self._mixing(name + ".permute")
        if weight is None:
            z = z[:, torch.argsort(self.b[name + ".permute.perm"])]
        else:  # solve W x = z at every pixel
            b, _, h, w = z.shape
            z = torch.linalg.solve(weight, z.reshape(b, c, h * w)).reshape(b, c, h, w)
        an = name + ".actnorm"
        return z * torch.exp(-self.p[an + ".logs"]) - self.p[an + ".bias"]


def plain_copy(model, config) -> PlainGlow:
    """A :class:`PlainGlow` holding float64 NCHW copies of ``model``'s weights."""
    params = {
        n: p.detach().to(torch.float64).contiguous().clone().requires_grad_(True)
        for n, p in model.named_parameters()
    }
    buffers = {
        n: b.detach().to(torch.float64 if b.is_floating_point() else b.dtype).clone()
        for n, b in model.named_buffers()
    }
    return PlainGlow(config, params, buffers)


def bits_per_dim(logp: torch.Tensor, num_dims: int, n_bits: int) -> torch.Tensor:
    """``-(log p - D log 2^n) / (D log 2)``: the discrete data's code length per dimension."""
    return -(logp - num_dims * n_bits * math.log(2)) / (num_dims * math.log(2))


class PlainAdam:
    """Adam (Kingma & Ba 2015, Algorithm 1), for one dict of parameters."""

    moments = ("exp_avg", "exp_avg_sq")

    def __init__(self, params: dict, lr: float, betas=(0.9, 0.999), eps: float = 1e-8) -> None:
        self.params, self.lr, self.betas, self.eps = params, lr, betas, eps
        self.state: dict[str, dict] = {}

    @torch.no_grad()
    def step(self, grads: dict) -> None:
        b1, b2 = self.betas
        for name, g in grads.items():
            if g is None:  # torch's optimisers leave a parameter with no gradient alone
                continue
            s = self.state.setdefault(
                name, {"t": 0, "exp_avg": torch.zeros_like(g), "exp_avg_sq": torch.zeros_like(g)}
            )
            s["t"] += 1
            s["exp_avg"] = b1 * s["exp_avg"] + (1 - b1) * g
            s["exp_avg_sq"] = b2 * s["exp_avg_sq"] + (1 - b2) * g * g
            m_hat = s["exp_avg"] / (1 - b1 ** s["t"])
            v_hat = s["exp_avg_sq"] / (1 - b2 ** s["t"])
            self.params[name] -= self.lr * m_hat / (v_hat.sqrt() + self.eps)


class PlainAdamax(PlainAdam):
    """Adamax (Kingma & Ba 2015, Algorithm 2), with torch's ``eps`` inside the max."""

    moments = ("exp_avg", "exp_inf")

    @torch.no_grad()
    def step(self, grads: dict) -> None:
        b1, b2 = self.betas
        for name, g in grads.items():
            if g is None:
                continue
            s = self.state.setdefault(
                name, {"t": 0, "exp_avg": torch.zeros_like(g), "exp_inf": torch.zeros_like(g)}
            )
            s["t"] += 1
            s["exp_avg"] = b1 * s["exp_avg"] + (1 - b1) * g
            s["exp_inf"] = torch.maximum(b2 * s["exp_inf"], g.abs() + self.eps)
            self.params[name] -= self.lr / (1 - b1 ** s["t"]) * s["exp_avg"] / s["exp_inf"]


def clip_by_total_norm(grads: dict, max_norm: float) -> torch.Tensor:
    """Scale every gradient by ``min(1, max_norm / (norm + 1e-6))``, the norm over them all."""
    norm = torch.sqrt(sum((g * g).sum() for g in grads.values() if g is not None))
    factor = min(1.0, max_norm / (float(norm) + 1e-6))
    for name, g in grads.items():
        if g is not None:
            grads[name] = g * factor
    return norm


def version_keyed_inverse(self, z):
    """An LU layer's inverse through a cache keyed on the weights' version counters: what
    glowflow once did, and wrong after a fused Adam step (which bumps no counter). For the
    tests that show the comparisons catch it; monkeypatch it over ``InvConv1x1LU.inverse``."""
    from glowflow.nn.invconv import inverse_weight, mix_channels

    key = tuple(p._version for p in self.parameters())
    cache = self.__dict__.get("_stale_cache")
    if torch.is_grad_enabled() or cache is None or cache[0] != key:
        cache = (key, inverse_weight(self.weight()))
        self.__dict__["_stale_cache"] = cache
    x = mix_channels(z, cache[1])
    return x, -z.shape[2] * z.shape[3] * self.log_s.sum().expand(z.shape[0])
