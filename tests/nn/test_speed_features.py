"""Memory-saving backprop, mixed precision and the inverse weights: same maths, less cost."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import randomize_

from glowflow import Glow, InvConv1x1, InvConv1x1LU
from glowflow.train.ema import EMA


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
    step.coupling.net.register_forward_hook(record("coupling conv"))
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


def _writers():
    """Every way the weights of a layer get written, as ``write(layer)``."""

    def optimiser(make):
        def write(layer):
            opt = make(layer.parameters())
            z, _ = layer(torch.randn(2, layer_channels(layer), 3, 3))
            z.square().sum().backward()
            opt.step()

        return write

    def assign(layer):
        for p in layer.parameters():
            p.data = p.data + 0.1  # a new tensor under the same parameter

    def copy_under_no_grad(layer):
        with torch.no_grad():
            for p in layer.parameters():
                p.copy_(p + 0.1)

    def load_state(layer):
        layer.load_state_dict(randomize_(copy.deepcopy(layer), 0.1, seed=3).state_dict())

    def ema(layer):
        target = randomize_(copy.deepcopy(layer), 0.1, seed=5)
        average = EMA(target, 0.5)
        average.module = layer  # the average is the layer itself: lerp_ writes it
        average.update(target, 100, torch.tensor(False))

    return {
        "adam-fused": optimiser(lambda ps: torch.optim.Adam(ps, lr=0.05, fused=True)),
        "adam": optimiser(lambda ps: torch.optim.Adam(ps, lr=0.05, foreach=False)),
        "adamax": optimiser(lambda ps: torch.optim.Adamax(ps, lr=0.05)),
        "sgd": optimiser(lambda ps: torch.optim.SGD(ps, lr=0.05)),
        "assign-data": assign,
        "copy-under-no-grad": copy_under_no_grad,
        "load-state-dict": load_state,
        "ema-update": ema,
    }


def layer_channels(layer) -> int:
    return layer.log_s.shape[0] if isinstance(layer, InvConv1x1LU) else layer.weight.shape[0]


@pytest.mark.parametrize("writer", list(_writers()))
@pytest.mark.parametrize("cls", [InvConv1x1, InvConv1x1LU])
def test_inverse_follows_every_writer_of_the_weights(cls, writer):
    """The inverse used for sampling and memory-saving backprop is of the weights as they are
    now, whoever wrote them (a fused Adam step bumps no version counter, for one)."""
    layer = randomize_(cls(4).double(), 0.2)
    z = torch.randn(2, 4, 3, 3)
    with torch.no_grad():
        before, _ = layer.inverse(z)
    _writers()[writer](layer)
    fresh = cls(4).double()  # a new layer, nothing remembered, with the same weights
    fresh.load_state_dict(layer.state_dict())
    with torch.no_grad():
        after, _ = layer.inverse(z)
        assert not torch.allclose(after, before)  # the write moved the weights
        assert torch.equal(after, fresh.inverse(z)[0])
        assert torch.allclose(layer(after)[0], z, rtol=0, atol=1e-12)


def _reference_net(net, x):
    """The coupling network written out layer by layer, nothing folded: the definition."""
    import torch.nn.functional as F

    def norm(h, an):
        return (h + an.bias) * torch.exp(an.logs)

    h = F.relu(norm(F.conv2d(x, net.conv1.weight, padding=1), net.norm1))
    h = F.relu(norm(F.conv2d(h, net.conv2.weight), net.norm2))
    out = F.conv2d(h, net.out.conv.weight, net.out.conv.bias, padding=1)
    return out * torch.exp(3.0 * net.out.logs)


def test_the_folded_coupling_network_is_its_layer_by_layer_definition():
    torch.manual_seed(0)
    model = Glow((3, 8, 8), levels=2, depth=2, hidden_channels=16)
    model.initialize(torch.rand(8, 3, 8, 8) - 0.5)
    randomize_(model, 0.1)
    net = model.levels[0].steps[1].coupling.net
    x = torch.randn(4, 6, 4, 4, requires_grad=True)
    got, want = net(x), _reference_net(net, x)
    assert torch.allclose(got, want, rtol=1e-12, atol=1e-12)
    g1 = torch.autograd.grad(got.square().sum(), (x, *net.parameters()))
    g2 = torch.autograd.grad(want.square().sum(), (x, *net.parameters()))
    assert all(torch.allclose(a, b, rtol=1e-10, atol=1e-12) for a, b in zip(g1, g2))


@pytest.mark.usefixtures("float32")
def test_float32_log_likelihoods_stay_within_1e_5_of_float64():
    """The fast paths (folded networks, channels-last weights, in-place ReLUs) change float32
    rounding only: the log-likelihood stays within 1e-5 relative of the same model in float64."""
    torch.manual_seed(0)
    model = Glow((3, 16, 16), levels=2, depth=4, hidden_channels=32)
    x = torch.rand(16, 3, 16, 16) - 0.5
    model.initialize(x)
    randomize_(model, 0.02)
    logp32 = model.log_prob(x)
    exact = Glow.from_config(model.config).double()
    exact.load_state_dict(model.state_dict())
    logp64 = exact.log_prob(x.double())
    assert ((logp32.double() - logp64).abs() / logp64.abs()).max() < 1e-5
    assert (
        next(model.levels[0].steps[0].coupling.net.parameters()).is_contiguous(
            memory_format=torch.channels_last
        )
        == torch.backends.mkldnn.is_available()
    )


@pytest.mark.parametrize(
    "bf16_cost, want", [(0.5, "bf16"), (0.9, "fp32"), (1.0, "fp32"), (2.0, "fp32")]
)
def test_auto_precision_chooses_bf16_only_when_it_is_clearly_faster(bf16_cost, want):
    import time

    from glowflow.train.autotune import choose_precision

    calls = []

    def one_pass(bf16: bool) -> None:
        calls.append(bf16)
        time.sleep(0.02 * (bf16_cost if bf16 else 1.0))

    choice, why = choose_precision(one_pass, torch.device("cpu"), repeats=2)
    assert choice == want and "fp32" in why
    assert calls.count(True) == calls.count(False) == 3  # a warm-up each, then taking turns
