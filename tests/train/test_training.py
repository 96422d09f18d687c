"""Training runs: the run folder, exact resume, NaN handling, Ctrl-C, checkpoints."""

from __future__ import annotations

import json
import os
import re
import signal

import numpy as np
import pytest
import torch
from conftest import assert_one_line_error, digits, losses, main_in_process, small_config

from glowflow.errors import GlowflowError
from glowflow.hub.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from glowflow.train.trainer import Interrupted, Trainer, TrainError


@pytest.mark.usefixtures("float32")
def test_run_folder_contents(digits_npz, tmp_path):
    summary = Trainer(small_config(digits_npz), tmp_path / "run").run()
    run = tmp_path / "run"
    for name in ("config.json", "checkpoint.pt", "metrics.jsonl", "summary.json",
                 "learning_curve.png"):  # fmt: skip
        assert (run / name).is_file(), name
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["step_0000006.png"]
    config = json.loads((run / "config.json").read_text())
    assert config["model"]["image_shape"] == [1, 16, 16] and config["train"]["depth"] == 1
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if "loss" in r]
    assert [r["step"] for r in train] == [1, 2, 3, 4, 5, 6]
    assert set(train[0]) >= {"step", "loss", "bpd", "lr", "grad_norm", "images_per_s"}
    assert records[-1]["val_bpd"] == summary["val_bpd"] and 0 < summary["val_bpd"] < 20
    state = load_checkpoint(run / "checkpoint.pt")
    assert state["step"] == 6 and state["ema"] is not None


@pytest.mark.usefixtures("float32")
def test_resume_continues_exactly(digits_npz, tmp_path):
    # a constant rate after warm-up, since raising the budget on resume (5 -> 10 steps)
    # rightly stretches a cosine schedule; the Ctrl-C test covers cosine with one budget
    kw = dict(lr_schedule="constant")
    Trainer(small_config(digits_npz, steps=10, **kw), tmp_path / "straight").run()
    Trainer(small_config(digits_npz, steps=5, **kw), tmp_path / "split").run()
    resumed = Trainer(small_config(digits_npz, steps=10, **kw), tmp_path / "split", resume=True)
    assert resumed.step == 5
    resumed.run()
    straight, split = losses(tmp_path / "straight"), losses(tmp_path / "split")
    assert sorted(split) == list(range(1, 11))
    for step in range(6, 11):
        assert split[step] == pytest.approx(straight[step], rel=1e-6, abs=1e-6), step
    a = load_checkpoint(tmp_path / "straight" / "checkpoint.pt")
    b = load_checkpoint(tmp_path / "split" / "checkpoint.pt")
    for part in ("model", "ema"):
        for k in a[part]:
            assert torch.allclose(a[part][k].float(), b[part][k].float(), atol=1e-6), (part, k)
    opt_a, opt_b = a["optimizer"]["state"], b["optimizer"]["state"]
    assert opt_a.keys() == opt_b.keys()
    for i in opt_a:
        assert torch.allclose(opt_a[i]["exp_avg_sq"], opt_b[i]["exp_avg_sq"], rtol=1e-5), i
        assert float(opt_a[i]["step"]) == float(opt_b[i]["step"]) == 10


@pytest.mark.usefixtures("float32")
def test_existing_run_is_refused_and_left_intact(digits_npz, tmp_path):
    Trainer(small_config(digits_npz, steps=3), tmp_path / "run").run()
    before = (tmp_path / "run" / "checkpoint.pt").read_bytes()
    with pytest.raises(GlowflowError, match="already holds a run.*--resume.*--overwrite"):
        Trainer(small_config(digits_npz), tmp_path / "run")
    assert (tmp_path / "run" / "checkpoint.pt").read_bytes() == before
    Trainer(small_config(digits_npz, steps=2), tmp_path / "run", overwrite=True).run()
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["step"] == 2


@pytest.mark.usefixtures("float32")
def test_nan_loss_is_skipped_counted_and_stops_without_a_nan_checkpoint(digits_npz, tmp_path):
    trainer = Trainer(small_config(digits_npz, steps=40, max_nan_steps=5), tmp_path / "run")
    real = trainer.model.log_prob_and_logits
    calls = {"n": 0}

    def sometimes_nan(x, y=None, **kw):
        calls["n"] += 1
        logp, logits = real(x, y)
        if calls["n"] == 2 or calls["n"] > 4:  # one isolated NaN, then NaN for good
            logp = logp * float("nan")
        return logp, logits

    trainer.model.log_prob_and_logits = sometimes_nan
    with pytest.raises(TrainError, match="NaN or inf for 5 steps in a row"):
        trainer.run()
    # skipped steps leave the weights alone, so the step-6 checkpoint is still a good one
    path = tmp_path / "run" / "checkpoint.pt"
    state = load_checkpoint(path)
    assert state["step"] == 6 and state["nan_skipped"] == 4  # steps 0, 3, 4, 5 (call 1 is init)
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    assert trainer.nan_skipped == 6
    # weights that did go bad are never written over the last good checkpoint
    before = path.read_bytes()
    with torch.no_grad():
        next(trainer.model.parameters()).fill_(float("nan"))
    assert trainer.save() is False
    assert path.read_bytes() == before


@pytest.mark.usefixtures("float32")
def test_nan_steps_are_read_in_time_even_when_lines_are_rare(digits_npz, tmp_path):
    cfg = small_config(digits_npz, steps=40, max_nan_steps=5, log_every=50, checkpoint_every=0)
    trainer = Trainer(cfg, tmp_path / "run")
    real = trainer.model.log_prob_and_logits
    calls = {"n": 0}

    def nan_from_step_2(x, y=None, **kw):
        calls["n"] += 1
        logp, logits = real(x, y)
        return (logp * float("nan") if calls["n"] > 3 else logp), logits  # call 1 is init

    trainer.model.log_prob_and_logits = nan_from_step_2
    with pytest.raises(TrainError, match="5 steps in a row at step 6"):
        trainer.run()
    assert trainer.step == 10  # read after every max_nan_steps steps, not at step 50
    assert trainer.nan_skipped == 5  # steps 2 to 6


@pytest.mark.usefixtures("float32")
@pytest.mark.parametrize("y_condition", [False, True])
def test_a_training_step_never_waits_for_the_device_and_a_skip_is_exact(
    digits_npz, tmp_path, monkeypatch, y_condition
):
    config = small_config(digits_npz, ema_decay=0.9, y_condition=y_condition)
    trainer = Trainer(config, tmp_path / "run")
    assert (trainer.model.config.num_classes is not None) == y_condition
    trainer.initialize()
    trainer.train_step(0)  # Adam's state exists from here on

    def read_back(*args, **kwargs):
        raise AssertionError("the training step read a value back from the device")

    for name in ("item", "tolist", "__bool__", "__float__", "__int__", "__index__"):
        monkeypatch.setattr(torch.Tensor, name, read_back)
    good = trainer.train_step(1)
    # a NaN loss: the step is flagged, and weights, EMA and Adam's moments stay as they were
    real = trainer.model.log_prob_and_logits
    trainer.model.log_prob_and_logits = lambda x, y=None, **kw: (
        real(x, y, **kw)[0] * float("nan"),
        None,
    )
    before = [t.clone() for t in trainer.model.state_dict().values()]
    ema_before = [t.clone() for t in trainer.ema.state_dict().values()]
    moments = [s["exp_avg"].clone() for s in trainer.optimizer.state.values()]
    bad = trainer.train_step(2)
    monkeypatch.undo()
    assert not good.skipped and bad.skipped
    assert all(torch.equal(a, b) for a, b in zip(before, trainer.model.state_dict().values()))
    assert all(torch.equal(a, b) for a, b in zip(ema_before, trainer.ema.state_dict().values()))
    after = [s["exp_avg"] for s in trainer.optimizer.state.values()]
    assert all(torch.equal(a, b) for a, b in zip(moments, after))
    assert all(int(s["step"]) == 2 for s in trainer.optimizer.state.values())


@pytest.mark.usefixtures("float32")
def test_ctrl_c_saves_a_whole_step_and_resumes_exactly(digits_npz, tmp_path):
    Trainer(small_config(digits_npz, steps=8), tmp_path / "straight").run()
    trainer = Trainer(small_config(digits_npz, steps=8, checkpoint_every=0), tmp_path / "run")
    real = trainer.train_step

    def ctrl_c_during_step_4(step):
        out = real(step)
        if step == 4:  # Ctrl-C arrives right after the optimiser step
            os.kill(os.getpid(), signal.SIGINT)
        return out

    trainer.train_step = ctrl_c_during_step_4
    with pytest.raises(Interrupted) as info:
        trainer.run()
    assert info.value.step == 5  # step 4 completed, and counted
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["step"] == 5
    resumed = Trainer(small_config(digits_npz, steps=8), tmp_path / "run", resume=True)
    assert resumed.run()["step"] == 8
    straight, split = losses(tmp_path / "straight"), losses(tmp_path / "run")
    assert sorted(split) == list(range(1, 9))
    for step in range(1, 9):
        assert split[step] == pytest.approx(straight[step], rel=1e-6, abs=1e-6), step


@pytest.mark.usefixtures("float32")
def test_class_conditional_training(digits_npz, tmp_path):
    Trainer(small_config(digits_npz, y_condition=True, steps=3), tmp_path / "run").run()
    model, state = model_from_checkpoint(tmp_path / "run")
    assert model.config.num_classes == 10
    assert model.classifier is not None and state["train_config"]["y_condition"]


@pytest.mark.usefixtures("float32")
def test_bad_training_setups(digits_npz, tmp_path):
    with pytest.raises(GlowflowError, match=r"not divisible by 2\*\*levels = 32"):
        Trainer(small_config(digits_npz, levels=5), tmp_path / "a")
    with pytest.raises(GlowflowError, match="fewer than one batch"):
        Trainer(small_config(digits_npz, batch_size=1000), tmp_path / "b")
    with pytest.raises(GlowflowError, match="no checkpoint.pt"):
        Trainer(small_config(digits_npz), tmp_path / "c", resume=True)
    with pytest.raises(GlowflowError, match="optimizer must be"):
        small_config(digits_npz, optimizer="sgd")


@pytest.mark.slow
@pytest.mark.usefixtures("float32")
@pytest.mark.parametrize("option", ["compile", "channels_last"])
def test_speed_options_take_the_same_steps_as_plain_training(digits_npz, tmp_path, option):
    Trainer(small_config(digits_npz, steps=3), tmp_path / "plain").run()
    Trainer(small_config(digits_npz, steps=3, **{option: True}), tmp_path / "fast").run()
    plain, fast = losses(tmp_path / "plain"), losses(tmp_path / "fast")
    assert sorted(fast) == [1, 2, 3]
    for step in (1, 2, 3):
        assert fast[step] == pytest.approx(plain[step], rel=1e-4), step


def test_auto_precision_times_both_and_keeps_the_model_untouched(digits_npz, tmp_path):
    trainer = Trainer(small_config(digits_npz, precision="auto", steps=1), tmp_path / "run")
    trainer.initialize()
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    lines = []
    trainer.log = lines.append
    choice = trainer._choose_precision()
    assert choice in ("fp32", "bf16")
    assert lines and lines[0].startswith(f"precision auto: {choice} (")
    assert all(torch.equal(v, trainer.model.state_dict()[k]) for k, v in before.items())
    assert all(p.grad is None for p in trainer.model.parameters())
    summary = Trainer(small_config(digits_npz, precision="auto"), tmp_path / "r2").run()
    assert summary["precision"] in ("fp32", "bf16")
    # the measured ratio is kept with the choice
    assert re.search(r"ran a step (only )?[0-9.]+x as fast as fp32", summary["precision_reason"])


@pytest.mark.usefixtures("float32")
def test_a_run_leaves_the_global_random_state_alone_and_depends_on_its_seed_only(
    digits_npz, tmp_path
):
    cfg = small_config(digits_npz, steps=3, permutation="shuffle", hflip=True)
    results = []
    for i, global_seed in enumerate((1, 2)):
        torch.manual_seed(global_seed)
        before = torch.get_rng_state()
        trainer = Trainer(cfg, tmp_path / f"run{i}")
        assert torch.equal(torch.get_rng_state(), before)  # the weights came from the run's seed
        trainer.run()
        assert torch.equal(torch.get_rng_state(), before)  # and so did every batch and sample
        results.append((losses(tmp_path / f"run{i}"), trainer.model.state_dict()))
    (losses_a, weights_a), (losses_b, weights_b) = results
    assert losses_a == losses_b
    assert all(torch.equal(weights_a[k], weights_b[k]) for k in weights_a)


def digits_npz_at(path, order=None):
    """The test digits as an npz data set at ``path``: all 96, or those of ``order``."""
    x, y = digits()
    order = np.arange(len(x)) if order is None else np.asarray(order)
    np.savez(path, x=x[order], y=y[order])
    return path


@pytest.mark.usefixtures("float32")
@pytest.mark.parametrize(
    "order, match",
    [
        (np.arange(95), "trained on 72 training images, and the data set now gives 71"),
        (np.arange(95, -1, -1), "trained on other images, or the same in another order"),
    ],
)
def test_resuming_on_a_changed_data_set_is_refused(tmp_path, order, match):
    """The batches of a resumed run are drawn by position: one image fewer, or the same images
    in another order, would silently train on other images than the run's own."""
    data = digits_npz_at(tmp_path / "digits.npz")
    Trainer(small_config(data, steps=3), tmp_path / "run").run()
    before = {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir() if p.is_file()}
    digits_npz_at(data, order)
    with pytest.raises(GlowflowError, match=match) as e:
        Trainer(small_config(data, steps=6), tmp_path / "run", resume=True)
    message = str(e.value)
    assert "\n" not in message and "start a new run: --overwrite, or another --out" in message
    r = main_in_process("train", "--resume", tmp_path / "run", "--steps", 6, "--no-progress")
    assert_one_line_error(r, str(tmp_path / "run" / "checkpoint.pt"), match)
    after = {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir() if p.is_file()}
    assert after == before  # the run is left as it was
    digits_npz_at(data)  # the run's own data again: it resumes
    assert Trainer(small_config(data, steps=6), tmp_path / "run", resume=True).run()["step"] == 6


@pytest.mark.usefixtures("float32")
def test_a_checkpoint_without_a_data_fingerprint_resumes_checked_on_its_count(tmp_path):
    """A checkpoint written before fingerprints were recorded still resumes."""
    data = digits_npz_at(tmp_path / "digits.npz")
    Trainer(small_config(data, steps=3), tmp_path / "run").run()
    checkpoint = tmp_path / "run" / "checkpoint.pt"
    state = load_checkpoint(checkpoint)
    del state["data"]["train_fingerprint"]
    save_checkpoint(checkpoint, {k: v for k, v in state.items() if k not in ("format", "version")})
    digits_npz_at(data, np.arange(95))
    with pytest.raises(GlowflowError, match="trained on 72 training images.*now gives 71"):
        Trainer(small_config(data, steps=6), tmp_path / "run", resume=True)
    digits_npz_at(data)
    assert Trainer(small_config(data, steps=6), tmp_path / "run", resume=True).run()["step"] == 6
    assert load_checkpoint(checkpoint)["data"]["train_fingerprint"]  # recorded from now on


@pytest.mark.usefixtures("float32")
def test_a_checkpoint_whose_weights_disagree_with_its_config_is_refused_before_building(
    tmp_path, monkeypatch
):
    """Resume reads the model's size from the checkpoint's config: weights of another size
    (a damaged or edited file) are refused before a model of that config is built."""
    data = digits_npz_at(tmp_path / "digits.npz")
    Trainer(small_config(data, steps=3), tmp_path / "run").run()
    checkpoint = tmp_path / "run" / "checkpoint.pt"
    state = load_checkpoint(checkpoint)
    state["model_config"]["hidden_channels"] = 4096  # within bounds, far from its weights
    save_checkpoint(checkpoint, {k: v for k, v in state.items() if k not in ("format", "version")})
    built = []
    monkeypatch.setattr("glowflow.train.runmodel.Glow.from_config",
                        lambda config: built.append(config) or pytest.fail("built"))  # fmt: skip
    r = main_in_process("train", "--resume", tmp_path / "run", "--steps", 6, "--no-progress")
    assert_one_line_error(r, "the checkpoint", "shape")
    assert not built
