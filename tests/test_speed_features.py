"""Memory-saving backprop, mixed precision and the inverse-weight cache: same maths, less cost."""

from __future__ import annotations

import pytest
import torch
from conftest import randomize_

from glowflow import Glow, InvConv1x1, InvConv1x1LU


def grads(model, x, y=None):
    model.zero_grad()
    (-model.log_prob(x, y).mean()).backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("coupling,permutation", [("affine", "lu"), ("additive", "conv")])
def test_memory_saving_gradients_equal_ordinary_backprop(coupling, permutation):
    kw = dict(image_shape=(3, 8, 8), levels=2, depth=3, hidden_channels=8, coupling=coupling,
              permutation=permutation, num_classes=3)  # fmt: skip
    torch.manual_seed(0)
    plain = Glow(**kw).double()
    x = torch.rand(6, 3, 8, 8) - 0.5
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    plain.initialize(x, y)
    randomize_(plain, 0.05)
    saving = Glow(**kw, memory_saving=True).double()
    saving.load_state_dict(plain.state_dict())
    assert torch.equal(plain.log_prob(x, y), saving.log_prob(x, y))
    g_plain, g_saving = grads(plain.train(), x, y), grads(saving.train(), x, y)
    assert g_plain.keys() == g_saving.keys() and len(g_plain) > 20
    for name, g in g_plain.items():
        err = (g_saving[name] - g).norm() / g.norm().clamp_min(1e-30)
        assert err < 1e-8, (name, err.item())
    # gradient flows to the input too
    xg = x.clone().requires_grad_(True)
    saving.log_prob(xg, y).sum().backward()
    xp = x.clone().requires_grad_(True)
    plain.log_prob(xp, y).sum().backward()
    assert torch.allclose(xg.grad, xp.grad, rtol=1e-8, atol=1e-12)


def test_memory_saving_initialises_actnorm_on_first_training_forward():
    model = Glow((1, 8, 8), levels=2, depth=2, hidden_channels=8, memory_saving=True).double()
    loss = -model.train().log_prob(torch.rand(8, 1, 8, 8) * 3).mean()
    loss.backward()
    assert model.is_initialized


@pytest.mark.usefixtures("float32")
def test_bf16_autocast_runs_couplings_low_and_keeps_the_rest_float32():
    torch.manual_seed(0)
    model = Glow((3, 8, 8), levels=2, depth=2, hidden_channels=16)
    x = torch.rand(8, 3, 8, 8) - 0.5
    model.initialize(x)
    randomize_(model, 0.02)
    seen = {}

    def record(name):
        def hook(module, inputs, output):
            out = output[0] if isinstance(output, tuple) else output
            seen[name] = out.dtype

        return hook

    step = model.levels[0].steps[0]
    step.coupling.net.conv1.register_forward_hook(record("coupling conv"))
    step.permute.register_forward_hook(record("1x1 conv"))
    step.actnorm.register_forward_hook(record("actnorm"))
    model.levels[0].split.register_forward_hook(record("split prior"))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logp_bf16 = model.log_prob(x)
    assert seen["coupling conv"] == torch.bfloat16
    assert seen["1x1 conv"] == seen["actnorm"] == seen["split prior"] == torch.float32
    assert logp_bf16.dtype == torch.float32
    logp = model.log_prob(x)
    # bf16 only perturbs the coupling networks' outputs: a small change of the density
    assert ((logp_bf16 - logp).abs() / logp.abs()).max() < 0.02
    # and the flow stays exactly invertible under autocast
    with torch.autocast("cpu", dtype=torch.bfloat16):
        eps = model.encode(x)
        back = model.decode(eps)
    assert (back - x).abs().max() < 1e-4


@pytest.mark.parametrize("cls", [InvConv1x1, InvConv1x1LU])
def test_inverse_weight_is_cached_and_invalidated_on_update(cls):
    layer = randomize_(cls(4).double(), 0.2)
    z = torch.randn(2, 4, 3, 3)
    with torch.no_grad():
        first, _ = layer.inverse(z)
        cached = layer._inverse_cache[1]
        again, _ = layer.inverse(z)
        assert layer._inverse_cache[1] is cached and torch.equal(first, again)
        for p in layer.parameters():
            p.add_(0.1)  # what an optimiser step does: an in-place write
        moved, _ = layer.inverse(z)
    assert layer._inverse_cache[1] is not cached
    assert torch.allclose(layer(moved)[0], z, atol=1e-10)
    # with autograd recording, the inverse is differentiable (no cache involved)
    x, _ = layer.inverse(z)
    x.sum().backward()
    assert all(p.grad is not None for p in layer.parameters())
