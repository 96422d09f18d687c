"""Each invertible layer, in float64: round trip, log-det cancellation and brute-force Jacobian."""

from __future__ import annotations

import pytest
import torch
from conftest import brute_logdet, randomize_

from glowflow import (
    ActNorm,
    AdditiveCoupling,
    AffineCoupling,
    ChannelPermutation,
    FlowStep,
    InvConv1x1,
    InvConv1x1LU,
    SplitPrior,
    Squeeze,
    TopPrior,
)
from glowflow.nn.invconv import mix_channels
from glowflow.train.ema import EMA

SHAPE = (2, 4, 4, 4)  # (B, C, H, W): tiny, so the full Jacobian is 64 x 64


def make_layer(name: str) -> torch.nn.Module:
    c = SHAPE[1]
    layers = {
        "actnorm": lambda: ActNorm(c),
        "invconv": lambda: InvConv1x1(c),
        "invconv_lu": lambda: InvConv1x1LU(c),
        "reverse": lambda: ChannelPermutation(c, "reverse"),
        "shuffle": lambda: ChannelPermutation(c, "shuffle"),
        "affine": lambda: AffineCoupling(c, 8),
        "additive": lambda: AdditiveCoupling(c, 8),
        "affine_odd": lambda: AffineCoupling(5, 8),
        "split": lambda: SplitPrior(c),
        "top": lambda: TopPrior(SHAPE[1:], learn_top=True, num_classes=None),
        "squeeze": lambda: Squeeze(),
        **{
            f"step_{cp}_{pm}": (lambda cp=cp, pm=pm: FlowStep(c, 8, cp, pm))
            for cp in ("affine", "additive")
            for pm in ("lu", "conv", "shuffle", "reverse")
        },
    }
    layer = layers[name]().double()
    x = torch.randn(SHAPE)
    # Run the data-dependent inits (actnorms, also inside coupling nets) on a shifted batch,
    # then move every parameter away from where it started.
    layer.train()
    if name == "affine_odd":
        x = torch.randn(2, 5, 4, 4)
    layer(x * 2 + 1)
    randomize_(layer, 0.2)
    return layer.eval()


STEPS = [
    f"step_{c}_{p}" for c in ("affine", "additive") for p in ("lu", "conv", "shuffle", "reverse")
]
NAMES = [
    "actnorm",
    "invconv",
    "invconv_lu",
    "reverse",
    "shuffle",
    "affine",
    "additive",
    "affine_odd",
    "split",
    "top",
    "squeeze",
    *STEPS,
]


def input_for(name: str) -> torch.Tensor:
    return torch.randn(2, 5, 4, 4) if name == "affine_odd" else torch.randn(SHAPE)


@pytest.mark.parametrize("name", NAMES)
def test_round_trip_and_logdets_cancel(name):
    layer = make_layer(name)
    x = input_for(name)
    z, ld_fwd = layer(x)
    x_back, ld_inv = layer.inverse(z)
    assert ld_fwd.shape == (x.shape[0],)
    assert torch.allclose(x_back, x, atol=1e-10, rtol=0)
    assert torch.allclose(ld_fwd + ld_inv, torch.zeros_like(ld_fwd), atol=1e-10)
    # inverse(z) then forward gives z back too
    z_again, _ = layer(layer.inverse(z)[0])
    assert torch.allclose(z_again, z, atol=1e-10, rtol=0)


@pytest.mark.parametrize("name", NAMES)
def test_logdet_matches_brute_force_jacobian(name):
    layer = make_layer(name)
    x = input_for(name)
    _, logdet = layer(x)
    for i in range(x.shape[0]):
        expected = brute_logdet(lambda v: layer(v)[0], x[i : i + 1])
        assert abs(logdet[i].item() - expected.item()) < 1e-8, (logdet[i].item(), expected.item())


def test_layers_are_not_trivial_after_randomisation():
    # Guards the two tests above against passing because a layer stayed the identity.
    for name in ("actnorm", "invconv_lu", "affine", "additive", "split", "top"):
        layer = make_layer(name)
        x = torch.randn(SHAPE)
        z, logdet = layer(x)
        assert (z - x).abs().max() > 1e-2, name


def test_actnorm_init_gives_zero_mean_unit_variance():
    norm = ActNorm(3)
    x = torch.randn(16, 3, 8, 8) * torch.tensor([0.1, 2.0, 5.0])[None, :, None, None] + 3.0
    z, _ = norm.train()(x)
    assert torch.allclose(z.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-10)
    assert torch.allclose(z.std(dim=(0, 2, 3), unbiased=False), torch.ones(3), atol=1e-5)
    assert bool(norm.initialized)
    # Initialised once: a second, different batch is not re-normalised.
    z2, _ = norm(x * 10)
    assert z2.std() > 5


def test_actnorm_inverse_and_eval_never_initialise():
    norm = ActNorm(3).train()
    norm.inverse(torch.randn(4, 3, 2, 2) + 5)
    assert not bool(norm.initialized)
    norm.eval()(torch.randn(4, 3, 2, 2) + 5)
    assert not bool(norm.initialized)
    assert torch.equal(norm.bias, torch.zeros_like(norm.bias))


def test_actnorm_loaded_state_is_not_reinitialised():
    src = ActNorm(3).train()
    src(torch.randn(8, 3, 4, 4) * 3)
    dst = ActNorm(3).train()
    dst.load_state_dict(src.state_dict())
    dst(torch.randn(8, 3, 4, 4) + 100)  # would move the bias if it re-initialised
    assert torch.equal(dst.bias, src.bias) and torch.equal(dst.logs, src.logs)


@pytest.mark.parametrize("cls", [AffineCoupling, AdditiveCoupling])
def test_fresh_coupling_leaves_conditioning_half_and_shifts_nothing(cls):
    layer = cls(4, 8).train()
    x = torch.randn(SHAPE)
    z, logdet = layer(x)
    assert torch.equal(z[:, :2], x[:, :2])
    if cls is AdditiveCoupling:
        # A fresh additive coupling is exactly the identity.
        assert torch.equal(z, x)
        assert torch.equal(logdet, torch.zeros(2))
    else:
        # The paper's affine coupling starts with zero shift and scale sigmoid(0 + 2) on x_b.
        scale = torch.sigmoid(torch.tensor(2.0))
        assert torch.allclose(z[:, 2:], x[:, 2:] * scale, atol=1e-12)
        assert torch.allclose(logdet, torch.full((2,), 2 * 16 * torch.log(scale).item()))


def test_fresh_priors_are_standard_normal():
    split = SplitPrior(4)
    x = torch.randn(SHAPE)
    z, logdet = split(x)
    assert torch.equal(z, x) and torch.equal(logdet, torch.zeros(2))
    top = TopPrior((4, 4, 4), learn_top=True, num_classes=3)
    eps, logdet = top(x, torch.tensor([0, 2]))
    assert torch.equal(eps, x) and torch.equal(logdet, torch.zeros(2))


def test_lu_weight_matches_plain_determinant():
    layer = randomize_(InvConv1x1LU(6).double(), 0.3)
    w = layer.weight()
    assert torch.allclose(torch.linalg.slogdet(w)[1], layer.log_s.sum(), atol=1e-12)
    assert torch.allclose(torch.sign(torch.det(w)), torch.det(layer.perm) * layer.sign_s.prod())


def test_initial_convolutions_are_rotations():
    for layer in (InvConv1x1(6), InvConv1x1LU(6)):
        w = layer.weight if isinstance(layer, InvConv1x1) else layer.weight()
        assert torch.allclose(w @ w.T, torch.eye(6), atol=1e-6)


def test_squeeze_channel_order():
    x = torch.arange(2 * 4 * 4, dtype=torch.float64).reshape(1, 2, 4, 4)
    z, _ = Squeeze()(x)
    assert z.shape == (1, 8, 2, 2)
    # output channel c*4 + di*2 + dj at (i, j) holds input (c, 2i+di, 2j+dj)
    for c in range(2):
        for di in range(2):
            for dj in range(2):
                for i in range(2):
                    for j in range(2):
                        assert z[0, c * 4 + di * 2 + dj, i, j] == x[0, c, 2 * i + di, 2 * j + dj]


@pytest.mark.parametrize("layout", ["nchw", "channels_last", "sliced"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_mixing_channels_is_the_1x1_convolution_in_every_layout(layout, dtype):
    g = torch.Generator().manual_seed(0)
    w = torch.randn(6, 6, generator=g, dtype=dtype, requires_grad=True)
    x = torch.randn(3, 9, 5, 4, generator=g, dtype=dtype)
    x = {"nchw": x[:, :6].contiguous(), "channels_last": x[:, :6].contiguous(
        memory_format=torch.channels_last), "sliced": x[:, 3:]}[layout]  # fmt: skip
    x.requires_grad_(True)
    grad_out = torch.randn(3, 6, 5, 4, generator=g, dtype=dtype)
    got = mix_channels(x, w)
    want = torch.nn.functional.conv2d(x, w[:, :, None, None])
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    assert torch.allclose(got, want, atol=tol)
    for a, b in zip(torch.autograd.grad(got, (x, w), grad_out),
                    torch.autograd.grad(want, (x, w), grad_out)):  # fmt: skip
        assert torch.allclose(a, b, atol=tol * 10)


def test_actnorm_init_is_decided_by_requests_and_loads_never_by_other_writes():
    """Whether a forward initialises depends on the module's life (new, loaded, asked), never on
    who else wrote the buffer or the weights: optimisers, copies, the weight average."""
    x = torch.randn(8, 3, 4, 4) * 3 + 1
    norm = ActNorm(3).train()
    norm(x)  # a new module: its first training forward initialises
    fresh = ActNorm(3).state_dict()  # never initialised
    norm.load_state_dict(fresh)  # a loaded record of no init: the next training forward inits
    norm(x + 100)
    assert bool(norm.initialized) and torch.allclose(norm.bias, -(x + 100).mean((0, 2, 3), True))
    with torch.no_grad():
        norm.initialized.copy_(torch.tensor(False))  # a hand-written record decides nothing
    kept = norm.bias.clone()
    norm.train()(x)
    assert torch.equal(norm.bias, kept)
    norm.request_init()  # asking does, in any mode
    norm.eval()(x)
    assert torch.allclose(norm.bias, -x.mean((0, 2, 3), True)) and bool(norm.initialized)
    norm.train()
    params = list(norm.parameters())
    for opt in (torch.optim.Adam(params, fused=True), torch.optim.SGD(params)):
        (norm(x)[0] - 1).square().sum().backward()
        opt.step()  # optimisers write the weights, never the decision
    moved = norm.bias.clone()
    assert not torch.allclose(moved, -x.mean((0, 2, 3), True))
    norm(x + 50)
    assert torch.equal(norm.bias, moved)
    average = EMA(torch.nn.Sequential(ActNorm(3)), 0.5)  # made before its model initialised
    average.reset(torch.nn.Sequential(norm))  # as the trainer does after the init: a load
    average.update(torch.nn.Sequential(norm), 0, torch.tensor(False))  # copies the buffer too
    before = average.module[0].bias.clone()
    average.module.train()(x + 7)
    assert torch.equal(average.module[0].bias, before)
