"""The whole model in float64: exactness, the public contract, and input validation."""

from __future__ import annotations

import io
import math

import pytest
import torch
from conftest import randomize_

from glowflow import Glow, GlowConfig, bits_per_dim, preset, standard_normal_logp

COMBOS = [(c, p) for c in ("affine", "additive") for p in ("lu", "conv", "shuffle", "reverse")]


def tiny_model(coupling="affine", permutation="lu", num_classes=None, shape=(3, 4, 4), seed=0):
    torch.manual_seed(seed)
    model = Glow(
        image_shape=shape,
        levels=2,
        depth=2,
        hidden_channels=8,
        coupling=coupling,
        permutation=permutation,
        num_classes=num_classes,
    ).double()
    y = torch.arange(64) % num_classes if num_classes else None
    model.initialize(torch.rand(64, *shape) - 0.5, y)
    randomize_(model, 0.05, seed)
    return model.eval()


def labels_for(model, b):
    k = model.config.num_classes
    return torch.arange(b) % k if k else None


MODELS = [dict(coupling=c, permutation=p) for c, p in COMBOS] + [
    dict(coupling="affine", permutation="lu", num_classes=3),
    dict(coupling="additive", permutation="shuffle", num_classes=2),
]
IDS = [f"{m['coupling']}-{m['permutation']}{'-cond' if 'num_classes' in m else ''}" for m in MODELS]


@pytest.fixture(params=MODELS, ids=IDS)
def model(request):
    return tiny_model(**request.param)


def test_whole_model_round_trip(model):
    x = torch.rand(3, 3, 4, 4) - 0.5
    y = labels_for(model, 3)
    eps, ld_fwd = model(x, y)
    assert eps.shape == (3, 48) and ld_fwd.shape == (3,)
    x_back, ld_inv = model.inverse(eps, y)
    assert torch.allclose(x_back, x, atol=1e-10, rtol=0)
    assert torch.allclose(ld_fwd + ld_inv, torch.zeros(3), atol=1e-10)
    assert torch.allclose(model.decode(model.encode(x, y), y), x, atol=1e-10, rtol=0)


def test_log_prob_equals_change_of_variables_with_brute_force_jacobian(model):
    x = torch.rand(2, 3, 4, 4) - 0.5
    y = labels_for(model, 2)
    logp = model.log_prob(x, y)
    for i in range(2):
        yi = None if y is None else y[i : i + 1]

        def enc(v, yi=yi):
            return model.encode(v.reshape(1, 3, 4, 4), yi).reshape(-1)

        xi = x[i].reshape(-1)
        jac = torch.autograd.functional.jacobian(enc, xi)
        expected = standard_normal_logp(enc(xi)[None]) + torch.linalg.slogdet(jac)[1]
        assert abs(logp[i].item() - expected.item()) < 1e-8


def test_model_is_far_from_identity(model):
    # Guards the exactness tests: the randomised model must really transform its input.
    x = torch.rand(2, 3, 4, 4) - 0.5
    eps = model.encode(x, labels_for(model, 2))
    assert (eps.abs().mean() - x.abs().mean()).abs() > 1e-2 or eps.std() > 1.5 * x.std()
    assert model(x, labels_for(model, 2))[1].abs().min() > 1.0


def test_state_dict_round_trip_gives_identical_log_prob(model):
    x = torch.rand(4, 3, 4, 4) - 0.5
    y = labels_for(model, 4)
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    buf.seek(0)
    fresh = Glow.from_config(model.config).double()
    fresh.load_state_dict(torch.load(buf, weights_only=True))
    fresh.train()  # training mode must not re-initialise a loaded model
    assert fresh.is_initialized
    assert torch.equal(fresh.log_prob(x, y), model.log_prob(x, y))


def test_bits_per_dim_matches_hand_computation():
    model = tiny_model()
    x = torch.rand(2, 3, 4, 4) - 0.5
    logp = model.log_prob(x)
    d = 3 * 4 * 4
    hand = [(-(lp.item() / math.log(2)) + d * 8) / d for lp in logp]
    assert torch.allclose(model.bits_per_dim(x), torch.tensor(hand), atol=1e-12)
    assert torch.allclose(bits_per_dim(logp, d, 5), (-(logp / math.log(2)) + d * 5) / d)


def test_temperature_scales_the_latent():
    model = tiny_model()
    eps = torch.randn(2, 48)
    assert torch.allclose(model.decode(eps, temperature=0.5), model.inverse(eps * 0.5)[0])
    # encoding a decoded sample gives back the scaled latent: T * eps, for several T
    for t in (0.0, 0.3, 0.7, 1.0):
        assert torch.allclose(model.encode(model.decode(eps, temperature=t)), t * eps, atol=1e-9)
    # and T = 0 is the image of the prior's mode, the same for every eps
    assert torch.allclose(model.decode(eps, temperature=0)[0], model.decode(eps, temperature=0)[1])
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(model.sample(2, generator=g1), model.sample(2, generator=g2))
    assert model.sample(5, temperature=0.7).shape == (5, 3, 4, 4)


def test_class_conditional_marginal_density():
    model = tiny_model(num_classes=3)
    x = torch.rand(2, 3, 4, 4) - 0.5
    per_class = torch.stack([model.log_prob(x, torch.full((2,), k)) for k in range(3)], 1)
    assert (per_class[:, 0] - per_class[:, 1]).abs().min() > 1e-3  # labels matter
    marginal = torch.logsumexp(per_class, 1) - math.log(3)
    assert torch.allclose(model.log_prob(x), marginal, atol=1e-10)
    _, logits = model.log_prob_and_logits(x, torch.tensor([0, 1]))
    assert logits.shape == (2, 3)


def test_latent_layout_is_documented_order():
    model = tiny_model()
    assert model.latent_shapes() == [(6, 2, 2), (24, 1, 1)]
    assert sum(c * h * w for c, h, w in model.latent_shapes()) == model.num_dims == 48


def test_initialize_normalises_first_actnorm_and_is_persisted():
    model = Glow((3, 8, 8), levels=2, depth=2, hidden_channels=8).double()
    assert not model.is_initialized
    x = torch.randn(16, 3, 8, 8) * 2 + 1
    model.initialize(x)
    assert model.is_initialized
    first = model.levels[0].steps[0].actnorm
    from glowflow import squeeze2d

    z, _ = first(squeeze2d(x))
    assert torch.allclose(z.mean(dim=(0, 2, 3)), torch.zeros(12), atol=1e-10)
    assert torch.allclose(z.std(dim=(0, 2, 3), unbiased=False), torch.ones(12), atol=1e-5)
    assert all(bool(v) for k, v in model.state_dict().items() if k.endswith("initialized"))


def test_first_training_forward_initialises():
    model = Glow((3, 8, 8), levels=2, depth=1, hidden_channels=8).double().train()
    model.log_prob(torch.randn(8, 3, 8, 8))
    assert model.is_initialized


def test_config_and_presets():
    cfg = preset("cifar10")
    assert (cfg.levels, cfg.depth, cfg.hidden_channels) == (3, 32, 512)
    assert preset("celeba-hq-256").n_bits == 5
    for name in ("cifar10", "imagenet32", "imagenet64", "celeba-hq-256", "mnist", "tiny"):
        assert isinstance(preset(name), GlowConfig)
    model = Glow.from_config(preset("tiny", depth=1))
    assert model.config == preset("tiny", depth=1)
    assert GlowConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown preset"):
        preset("nope")


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(image_shape=(3, 30, 32)), r"not divisible by 2\*\*levels = 8"),
        (dict(coupling="affinee"), "coupling must be one of"),
        (dict(permutation="random"), "permutation must be one of"),
        (dict(n_bits=9), "n_bits"),
        (dict(num_classes=1), "num_classes"),
    ],
)
def test_bad_config_is_a_value_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Glow(**{"levels": 3, "depth": 1, "hidden_channels": 4, **kwargs})


def test_bad_input_names_the_expected_shape_or_range():
    model = tiny_model(num_classes=3)
    y = torch.tensor([0, 1])
    with pytest.raises(ValueError, match=r"shape \(B, 3, 4, 4\).*got \(2, 1, 4, 4\)"):
        model.log_prob(torch.rand(2, 1, 4, 4), y)
    with pytest.raises(ValueError, match=r"\(B, 3, 4, 4\), got \(2, 3, 8, 8\)"):
        model.log_prob(torch.rand(2, 3, 8, 8), y)
    with pytest.raises(ValueError, match="float tensor.*uint8.*preprocess"):
        model.log_prob(torch.zeros(2, 3, 4, 4, dtype=torch.uint8), y)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        model.log_prob(torch.rand(2, 3, 4, 4), torch.tensor([0, 3]))
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        model.log_prob(torch.rand(2, 3, 4, 4), torch.tensor([0]))
    with pytest.raises(ValueError, match="class-conditional"):
        model.encode(torch.rand(2, 3, 4, 4))
    with pytest.raises(ValueError, match=r"latent of shape \(B, 48\)"):
        model.decode(torch.randn(2, 47), y)
    with pytest.raises(ValueError, match="num_classes=None"):
        tiny_model().log_prob(torch.rand(2, 3, 4, 4), y)


def test_single_channel_images_round_trip_and_density():
    model = tiny_model(shape=(1, 4, 4))
    assert model.latent_shapes() == [(2, 2, 2), (8, 1, 1)]
    x = torch.rand(1, 1, 4, 4) - 0.5

    def enc(v):
        return model.encode(v.reshape(1, 1, 4, 4)).reshape(-1)

    jac = torch.autograd.functional.jacobian(enc, x.reshape(-1))
    expected = standard_normal_logp(model.encode(x)) + torch.linalg.slogdet(jac)[1]
    assert abs(model.log_prob(x).item() - expected.item()) < 1e-8
    assert torch.allclose(model.decode(model.encode(x)), x, atol=1e-10, rtol=0)


@pytest.mark.parametrize("conditional", [False, True])
def test_log_prob_levels_sum_to_log_prob_and_only_the_top_sees_labels(conditional):
    model = tiny_model(num_classes=3 if conditional else None)
    x = torch.rand(5, 3, 4, 4) - 0.5
    parts = model.log_prob_levels(x)
    assert parts.shape == (5, model.config.levels)
    assert torch.allclose(parts.sum(1), model.log_prob(x), atol=1e-10)
    if conditional:
        a = model.log_prob_levels(x, torch.zeros(5, dtype=torch.long))
        b = model.log_prob_levels(x, torch.ones(5, dtype=torch.long))
        assert torch.equal(a[:, :-1], b[:, :-1])  # the label enters through the top prior only
        assert (a[:, -1] - b[:, -1]).abs().min() > 1e-3
        assert torch.allclose(a.sum(1), model.log_prob(x, torch.zeros(5, dtype=torch.long)))
