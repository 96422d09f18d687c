"""glowflow against a plain reference (``plain_glow.py``), step by step over whole optimiser steps.

Every path a user trains through (fused and unfused Adam, Adamax; memory saving off and on;
each coupling and permutation; class-conditional; channels-last; sampling and decoding between
steps) starts from the same weights as the plain flow, takes the same batches of real images and
must end every step with the same weights, optimiser moments and log-likelihoods, in float64.
A cache or a fast path that goes stale under some writer of the weights shows here as a
difference; the trainer's own paths are in ``test_differential_training.py``.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from conftest import randomize_
from plain_glow import (
    PlainAdam,
    PlainAdamax,
    bits_per_dim,
    faces16,
    largest_difference,
    plain_copy,
    version_keyed_inverse,
)
from plain_glow import (
    check as within_tolerance,
)

from glowflow import Glow, InvConv1x1LU
from glowflow.nn.objective import preprocess

STEPS = 5
BATCH = 8
SHAPE = (3, 16, 16)
Y_WEIGHT = 0.01  # the class-conditional loss adds this much of the classifier's cross-entropy


FACES = faces16()


def batch(step: int, channels_last: bool = False):
    """Step ``step``'s batch: ``BATCH`` faces in a fixed order, dequantised with a fixed draw."""
    images, labels = FACES
    idx = torch.arange(step * BATCH, (step + 1) * BATCH) % len(images)
    g = torch.Generator().manual_seed(1000 + step)
    x = preprocess(images[idx], 8, generator=g, dtype=torch.float64)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x, labels[idx]


OPTIMIZERS = {
    "adam-fused": (lambda ps, lr: torch.optim.Adam(ps, lr=lr, fused=True), PlainAdam),
    "adam": (lambda ps, lr: torch.optim.Adam(ps, lr=lr, foreach=False), PlainAdam),
    "adam-foreach": (lambda ps, lr: torch.optim.Adam(ps, lr=lr, foreach=True), PlainAdam),
    "adamax": (lambda ps, lr: torch.optim.Adamax(ps, lr=lr), PlainAdamax),
}


def compare_training(
    optimizer: str = "adam-fused",
    memory_saving: bool = False,
    coupling: str = "affine",
    permutation: str = "lu",
    conditional: bool = False,
    channels_last: bool = True,
    between: bool = False,
    lr: float = 1e-3,
) -> dict[str, float]:
    """Train glowflow and the plain flow side by side for ``STEPS`` steps from the same
    weights; the largest difference of each kind over all steps (see :data:`TOLERANCE`).

    ``between``: after every step, draw samples by seed and decode the batch's latents, as a
    user's loop that looks at its model while training does; both must equal what a fresh
    model loaded with the same weights gives, and the plain flow's inverse.
    """
    torch.manual_seed(0)
    kw = dict(image_shape=SHAPE, levels=2, depth=3, hidden_channels=16, coupling=coupling,
              permutation=permutation, num_classes=2 if conditional else None)  # fmt: skip
    model = Glow(**kw, memory_saving=memory_saving)
    x0, y0 = batch(100)
    model.initialize(x0, y0 if conditional else None)
    randomize_(model, 0.01)  # every weight away from its identity-like start
    model.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    plain = plain_copy(model, model.config)
    make, plain_optimizer = OPTIMIZERS[optimizer]
    opt, ref_opt = make(model.parameters(), lr), plain_optimizer(plain.p, lr)
    names = {p: n for n, p in model.named_parameters()}
    worst = {"log_prob": 0.0, "weights": 0.0, "moments": 0.0}
    if between:
        worst.update(sample=0.0, decode=0.0, fresh=0.0)
    d = model.num_dims
    for step in range(STEPS):
        x, y = batch(step, channels_last)
        y = y if conditional else None
        # glowflow, as a user's loop runs it
        logp, logits = model.log_prob_and_logits(x, y)
        loss = model.bits_per_dim(x, y).mean() if logits is None else None
        if logits is not None:
            loss = bits_per_dim(logp, d, 8).mean() + Y_WEIGHT * F.cross_entropy(logits, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        # the plain flow
        ref_logp, ref_logits, _ = plain.log_prob(x.contiguous(), y)
        ref_loss = bits_per_dim(ref_logp, d, 8).mean()
        if ref_logits is not None:
            ref_loss = ref_loss + Y_WEIGHT * F.cross_entropy(ref_logits, y)
        grads = torch.autograd.grad(ref_loss, list(plain.p.values()), allow_unused=True)
        ref_opt.step(dict(zip(plain.p, grads)))

        worst["log_prob"] = max(worst["log_prob"], largest_difference(logp.detach(), ref_logp))
        for p, name in names.items():
            worst["weights"] = max(worst["weights"], largest_difference(p, plain.p[name]))
            state = opt.state.get(p, {})
            for moment in ref_opt.moments:
                if name in ref_opt.state:
                    ref = ref_opt.state[name][moment]
                    worst["moments"] = max(worst["moments"], largest_difference(state[moment], ref))
                else:
                    assert moment not in state, name
        if between:
            worst_between = looks_between_steps(model, plain, x, y, kw, memory_saving)
            for k, v in worst_between.items():
                worst[k] = max(worst[k], v)
    return worst


def looks_between_steps(model, plain, x, y, kw, memory_saving) -> dict[str, float]:
    """Sample and decode as a user looking at the model mid-training does; the largest
    differences from a fresh model with the same weights and from the plain inverse."""
    model.eval()
    fresh = Glow(**kw, memory_saving=memory_saving)
    fresh.load_state_dict(model.state_dict())
    fresh.eval()
    n = 4
    labels = None if y is None else y[:n]
    sample = model.sample(n, labels, 0.7, torch.Generator().manual_seed(7))
    fresh_sample = fresh.sample(n, labels, 0.7, torch.Generator().manual_seed(7))
    eps = torch.randn(n, model.num_dims, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        plain_sample = plain.decode(0.7 * eps, labels)
        z = model.encode(x, y)
        back = model.decode(z, y)
    model.train()
    return {
        "sample": largest_difference(sample, plain_sample),
        "decode": largest_difference(back, x),
        "fresh": largest_difference(sample, fresh_sample),
    }


def check(worst: dict[str, float]) -> None:
    within_tolerance(worst, "the plain flow")


@pytest.mark.parametrize("between", [False, True], ids=["train-only", "sample-between"])
@pytest.mark.parametrize("memory_saving", [False, True], ids=["backprop", "memory-saving"])
@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
def test_every_optimizer_and_backprop_equals_the_plain_flow(optimizer, memory_saving, between):
    check(compare_training(optimizer, memory_saving, between=between))


MODEL_OPTIONS = {
    "additive": dict(coupling="additive"),
    "conv": dict(permutation="conv"),
    "shuffle": dict(permutation="shuffle"),
    "reverse": dict(permutation="reverse"),
    "conditional": dict(conditional=True),
    "nchw": dict(channels_last=False),
}


@pytest.mark.slow
@pytest.mark.parametrize("optimizer", ["adam-fused", "adamax"])
@pytest.mark.parametrize("memory_saving", [False, True], ids=["backprop", "memory-saving"])
@pytest.mark.parametrize("option", list(MODEL_OPTIONS))
def test_every_model_option_equals_the_plain_flow(option, memory_saving, optimizer):
    check(compare_training(optimizer, memory_saving, between=True, **MODEL_OPTIONS[option]))


def test_the_plain_flow_is_a_flow():
    """The reference itself: its inverse undoes it, and its log-likelihood is glowflow's on a
    fresh copy (so a comparison failing above is glowflow drifting, not the reference)."""
    torch.manual_seed(0)
    model = Glow(SHAPE, levels=2, depth=2, hidden_channels=8, num_classes=2)
    x, y = batch(0)
    model.initialize(x, y)
    randomize_(model, 0.01)
    plain = plain_copy(model, model.config)
    logp, logits, eps = plain.log_prob(x, y)
    assert largest_difference(plain.decode(eps, y), x) < 1e-12
    assert largest_difference(model.log_prob(x, y), logp) < 1e-12
    assert largest_difference(model.encode(x, y), eps) < 1e-12
    assert largest_difference(model.log_prob_and_logits(x, y)[1], logits) < 1e-12
    # without labels, the exact marginal over a uniform label prior
    per_class = [plain.log_prob(x, torch.full_like(y, k))[0] for k in range(2)]
    marginal = torch.logsumexp(torch.stack(per_class), 0) - math.log(2)
    assert largest_difference(model.log_prob(x), marginal) < 1e-12


def test_the_comparison_catches_a_cache_that_misses_a_writer(monkeypatch):
    """With the version-keyed cache put back, fused Adam and memory saving (or sampling between
    steps) drift from the plain flow, and the comparison says so; unfused Adam bumps the
    counters and stays right."""
    monkeypatch.setattr(InvConv1x1LU, "inverse", version_keyed_inverse)
    assert max(compare_training("adam-fused", memory_saving=True).values()) > 1e-4
    assert compare_training("adam-fused", between=True)["fresh"] > 1e-4
    check(compare_training("adam", memory_saving=True, between=True))
