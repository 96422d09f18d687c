"""--init-from: a run that starts from a trained model's weights."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import assert_one_line_error, main_in_process, randomize_, small_config

from glowflow.config import ConfigError
from glowflow.hub.load import load_model
from glowflow.nn.model import GlowFlow
from glowflow.train.launch import train_config
from glowflow.train.trainer import Trainer
from glowflow.train.warmstart import widen_state


@pytest.fixture
def source_run(digits_npz, tmp_path):
    """A trained run: 6 steps of a 2-level, K=1, width-8 flow on 16x16 digits."""
    cfg = small_config(digits_npz, depth=1, hidden_channels=8, steps=6)
    Trainer(cfg, tmp_path / "a").run()
    return tmp_path / "a"


def test_the_run_begins_with_the_sources_weights_and_skips_the_data_dependent_init(
    digits_npz, source_run, tmp_path
):
    source = load_model(source_run, ema=True).model
    cfg = small_config(digits_npz, init_from=str(source_run), steps=2, seed=5)
    trainer = Trainer(cfg, tmp_path / "b")
    got, want = trainer.model.state_dict(), source.state_dict()
    assert got.keys() == want.keys()
    for name in want:
        assert torch.equal(got[name].float(), want[name].float()), name
    assert trainer.model.is_initialized  # actnorm's statistics came with the weights
    # a fresh seed's model differs, so the weights above are the source's, not chance
    fresh = Trainer(small_config(digits_npz, steps=2, seed=5), tmp_path / "c").model
    assert not all(torch.equal(fresh.state_dict()[k], want[k]) for k in want)
    # and it trains on from there: the first step's loss is the trained model's, not a new one's
    first_warm = _first_loss(trainer)
    first_fresh = _first_loss(Trainer(small_config(digits_npz, steps=2, seed=5), tmp_path / "d"))
    assert first_warm < first_fresh - 0.05


def _first_loss(trainer: Trainer) -> float:
    trainer.run()
    lines = (trainer.folder.path / "metrics.jsonl").read_text().splitlines()
    return next(r["loss"] for r in map(json.loads, lines) if "loss" in r)


def test_the_architecture_comes_from_the_source_unless_given(digits_npz, source_run):
    cfg = train_config({"dataset": f"npz:{digits_npz}", "init_from": str(source_run), "steps": 1})
    assert (cfg.levels, cfg.depth, cfg.hidden_channels) == (2, 1, 8)  # not the defaults (6, 64)
    given = {"dataset": f"npz:{digits_npz}", "init_from": str(source_run), "steps": 1, "depth": 3}
    assert train_config(given).depth == 3


def test_a_source_that_is_another_model_is_refused(digits_npz, source_run, tmp_path):
    cfg = small_config(digits_npz, init_from=str(source_run), hidden_channels=4)
    with pytest.raises(ConfigError, match="hidden_channels 8 there, 4 here"):
        Trainer(cfg, tmp_path / "b")
    result = main_in_process(
        "train", "--dataset", f"npz:{digits_npz}", "--init-from", source_run, "--depth", "2",
        "--steps", "1", "--out", tmp_path / "c", "--no-progress", "--device", "cpu",
    )  # fmt: skip
    assert_one_line_error(result, "--init-from", "depth 1 there, 2 here")
    assert not (tmp_path / "c" / "checkpoint.pt").exists()


def test_a_resumed_run_keeps_its_own_weights_not_the_sources(digits_npz, source_run, tmp_path):
    cfg = small_config(digits_npz, init_from=str(source_run), steps=3, checkpoint_every=3)
    Trainer(cfg, tmp_path / "b").run()
    saved = load_model(tmp_path / "b", ema=False).model.state_dict()
    resumed = Trainer(small_config(digits_npz, init_from=str(source_run), steps=5),
                      tmp_path / "b", resume=True)  # fmt: skip
    assert resumed.step == 3
    for name, value in saved.items():
        assert torch.equal(resumed.model.state_dict()[name].float(), value.float()), name


@pytest.mark.parametrize("coupling", ["affine", "additive"])
def test_a_widened_model_computes_exactly_what_its_source_does(coupling):
    torch.manual_seed(0)
    source = GlowFlow(image_shape=(2, 8, 8), levels=2, depth=2, hidden_channels=6,
                      coupling=coupling).double()  # fmt: skip
    source.initialize(torch.rand(16, 2, 8, 8, dtype=torch.float64) - 0.5)
    randomize_(source, 0.05)  # trained-looking: no zero last layer, no identity actnorm
    wide = GlowFlow(image_shape=(2, 8, 8), levels=2, depth=2, hidden_channels=10,
                    coupling=coupling).double()  # fmt: skip
    wide.load_state_dict(widen_state(source.state_dict(), 10, torch.Generator().manual_seed(1)))
    source.eval(), wide.eval()
    x = torch.rand(5, 2, 8, 8, dtype=torch.float64) - 0.5
    torch.testing.assert_close(wide.log_prob(x), source.log_prob(x), rtol=1e-12, atol=1e-10)
    torch.testing.assert_close(wide.encode(x), source.encode(x), rtol=1e-12, atol=1e-12)
    # the new units are live: they take inputs (so training moves their zero outgoing weights)
    net = wide.levels[0].steps[0].coupling.net
    assert net.conv1.weight[6:].abs().min() > 0 and net.norm2.logs[:, 6:].abs().sum() > 0
    assert net.out.conv.weight[:, 6:].abs().max() == 0
    wide.train()
    wide.log_prob(x).mean().backward()
    assert net.out.conv.weight.grad[:, 6:].abs().max() > 0


def test_a_wider_run_starts_from_the_narrower_sources_likelihood(digits_npz, source_run, tmp_path):
    source = load_model(source_run, ema=True).model.eval()
    trainer = Trainer(small_config(digits_npz, init_from=str(source_run), hidden_channels=12,
                                   steps=1), tmp_path / "w")  # fmt: skip
    assert trainer.model.config.hidden_channels == 12
    x = torch.rand(4, *source.config.image_shape) - 0.5
    with torch.no_grad():
        torch.testing.assert_close(trainer.model.eval().log_prob(x), source.log_prob(x))
