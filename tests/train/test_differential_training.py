"""``glowflow train`` against the plain reference (``plain_glow.py``), in float64.

The command runs in this process with float64 as the default dtype, so its model and batches
are float64; the plain flow takes the same stream of batches (the trainer's data order and noise,
drawn from the seed) and the update rules written out: actnorm's init on the init batch, the
loss, gradient clipping, the learning-rate schedule, Adam or Adamax, the weight average. At the
end the run folder's checkpoint must hold the plain weights, average and optimiser moments, and
its log the plain losses, to :data:`TOLERANCE`. Also: a stop and ``--resume`` in the middle, two
gloo processes against one, and a trained model against one loaded from its saved weights.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import signal

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F
from conftest import free_port
from plain_glow import (
    TOLERANCE,
    PlainAdam,
    PlainAdamax,
    bits_per_dim,
    clip_by_total_norm,
    faces16,
    largest_difference,
    plain_copy,
    version_keyed_inverse,
)
from plain_glow import (
    check as within_tolerance,
)

from glowflow import Glow, InvConv1x1LU, seeding
from glowflow.cli import main
from glowflow.config import TrainConfig
from glowflow.data.batches import BatchOrder
from glowflow.data.prepare import prepare_store
from glowflow.hub.checkpoint import load_checkpoint, model_from_checkpoint
from glowflow.latent.latents import sample_images
from glowflow.train.trainer import Trainer

#: The run: 36 faces at 16x16, batches of 8 (4 steps an epoch, so 6 steps cross into a second).
OPTIONS = dict(
    levels=2, depth=2, hidden_channels=16, batch_size=8, init_batch_size=16, val_fraction=0,
    steps=6, warmup_steps=2, lr=2e-3, grad_clip=0.5, ema_decay=0.9, log_every=1,
    checkpoint_every=3, n_samples=4, device="cpu", precision="fp32", seed=3,
)  # fmt: skip


@pytest.fixture(scope="module")
def faces_npz(tmp_path_factory):
    images, smiling = faces16()
    path = tmp_path_factory.mktemp("faces") / "faces16.npz"
    np.savez(path, x=images.permute(0, 2, 3, 1).numpy(), y=smiling.numpy())
    return path


def argv(npz, out, **options) -> list[str]:
    """``glowflow train`` arguments for :data:`OPTIONS` updated by ``options``."""
    args = ["train", "--dataset", f"npz:{npz}", "--out", str(out), "--no-progress"]
    for name, value in {**OPTIONS, **options}.items():
        flag = "--" + name.replace("_", "-")
        if name == "learn_top":
            args += [] if value else ["--no-learn-top"]
        elif value is True:
            args.append(flag)
        elif value is not False:
            args += [flag, str(value)]
    return args


def glowflow_train(*args: str, dtype: torch.dtype = torch.float64, expect: int = 0) -> None:
    """``glowflow ARGS`` through the CLI's ``main`` in this process, in ``dtype``; its exit
    code must be ``expect``."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = main(list(args))
    finally:
        torch.set_default_dtype(old)
    assert code == expect, err.getvalue()


def plain_training(npz, steps: int, init_dtype=torch.float64, **options) -> dict:
    """What the run should give, computed with the plain flow in float64: weights, average,
    moments and each step's loss. ``init_dtype``: the run's dtype, in which its random initial
    weights were drawn (they are then taken to float64)."""
    cfg = TrainConfig(**{"dataset": f"npz:{npz}", **OPTIONS, **options})
    with np.load(npz) as d:  # the raw images and labels, not through the package's loaders
        raw = torch.from_numpy(d["x"]).permute(0, 3, 1, 2)  # (N, C, H, W) uint8
        labels = torch.from_numpy(d["y"])
    cond = cfg.y_condition
    old = torch.get_default_dtype()
    torch.set_default_dtype(init_dtype)
    try:
        torch.manual_seed(cfg.seed)  # the trainer's random weights, before any init
        start = Glow.from_config(cfg.model_config(tuple(raw.shape[1:]), 2 if cond else None))
    finally:
        torch.set_default_dtype(old)
    plain = plain_copy(start, start.config)
    dims = start.num_dims

    def inputs(idx, g):
        """Images ``idx`` dequantised as the paper does, ``x = k / 2^n - 0.5 + u / 2^n`` for
        level ``k`` and a uniform draw ``u``, flipped where a coin says so; the draws are the
        trainer's (flips first, then the noise, from the step's generator), and so is the
        float32 arithmetic of the inputs."""
        flip = torch.rand(len(idx), generator=g) < 0.5 if cfg.hflip else None
        noise = torch.rand((len(idx), *raw.shape[1:]), generator=g, dtype=torch.float32)
        images = raw[idx]
        if flip is not None:
            images = torch.where(flip[:, None, None, None], images.flip(3), images)
        bins = 2**cfg.n_bits
        levels = (images >> (8 - cfg.n_bits)).float()
        return ((levels / bins - 0.5) + noise / bins).double(), labels[idx] if cond else None

    # actnorm's data-dependent init, on the init batch
    g = seeding.generator(cfg.seed, 0, seeding.INIT)
    n = min(cfg.init_batch_size, len(raw))
    with torch.no_grad():
        plain.log_prob(*inputs(torch.randperm(len(raw), generator=g)[:n], g), init=True)
    average = {k: v.detach().clone() for k, v in plain.p.items()}
    initial = {k: v.detach().clone() for k, v in plain.p.items()}
    opt = (PlainAdamax if cfg.optimizer == "adamax" else PlainAdam)(plain.p, cfg.lr)
    order = BatchOrder(len(raw), cfg.batch_size, cfg.seed)
    losses = []
    for step in range(steps):
        x, y = inputs(order.indices(step), seeding.generator(cfg.seed, step, seeding.TRAIN))
        logp, logits, _ = plain.log_prob(x, y)
        loss = bits_per_dim(logp, dims, cfg.n_bits).mean()
        if cond:
            loss = loss + cfg.y_weight * F.cross_entropy(logits, y) / math.log(2)
        losses.append(float(loss.detach()))
        grads = dict(zip(plain.p, torch.autograd.grad(loss, list(plain.p.values()))))
        clip_by_total_norm(grads, cfg.grad_clip)
        opt.lr = cfg.lr * min(1.0, (step + 1) / cfg.warmup_steps)
        if cfg.lr_schedule == "cosine":
            opt.lr *= 0.5 * (1 + math.cos(math.pi * step / cfg.steps))
        opt.step(grads)
        decay = min(cfg.ema_decay, (1 + step) / (10 + step))
        for k, p in plain.p.items():
            average[k] += (1 - decay) * (p.detach() - average[k])
    return {"weights": plain.p, "ema": average, "optimizer": opt, "losses": losses,
            "initial": initial}  # fmt: skip


def logged_losses(run_dir) -> torch.Tensor:
    """Each step's loss as the run folder's ``metrics.jsonl`` holds it (a line every step)."""
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return torch.tensor([r["loss"] for r in records if "loss" in r], dtype=torch.float64)


def differences(run_dir, want: dict) -> dict[str, float]:
    """The largest differences between a run folder's results and the plain ones."""
    state = load_checkpoint(run_dir / "checkpoint.pt")
    names = list(want["weights"])  # the optimiser numbers the parameters in this order
    out = {"weights": 0.0, "ema": 0.0, "moments": 0.0}
    for name in names:
        out["weights"] = max(out["weights"], largest_difference(state["model"][name],
                                                                want["weights"][name]))  # fmt: skip
        out["ema"] = max(out["ema"], largest_difference(state["ema"][name], want["ema"][name]))
    saved = state["optimizer"]["state"]
    opt = want["optimizer"]
    if isinstance(opt, PlainAdamax):
        assert state["train_config"]["optimizer"] == "adamax"
    else:  # glowflow train takes fused Adam where torch has it, as this one does
        assert state["optimizer"]["param_groups"][0]["fused"] is True
    for i, name in enumerate(names):
        for moment in opt.moments:
            got = saved[i][moment]
            out["moments"] = max(out["moments"], largest_difference(got, opt.state[name][moment]))
    losses = logged_losses(run_dir)
    assert len(losses) == len(want["losses"])
    out["loss"] = largest_difference(losses, torch.tensor(want["losses"]))
    return out


def check(worst: dict[str, float]) -> None:
    within_tolerance(worst, "the plain training")


RUNS = {
    "adam-fused": {},
    "adam-fused-memory-saving": dict(memory_saving=True),
    "adamax": dict(optimizer="adamax"),
    "adamax-memory-saving": dict(optimizer="adamax", memory_saving=True),
    "conditional": dict(y_condition=True, memory_saving=True),
    "channels-last": dict(channels_last=True, memory_saving=True),
    "additive-conv": dict(coupling="additive", permutation="conv", memory_saving=True),
    "5-bit-flips-fixed-top": dict(n_bits=5, hflip=True, learn_top=False, memory_saving=True),
    # a prepared store, its batches made ahead in a DataLoader worker
    "store-prefetched": dict(dataset="store", data_workers=1, memory_saving=True),
    "compiled": dict(compile=True, memory_saving=True),  # about a minute of compiling
}


def run_options(run: str, store) -> dict:
    """The options of :data:`RUNS` ``run``, a store run reading the prepared store ``store``."""
    options = dict(RUNS[run])
    if options.get("dataset") == "store":
        options["dataset"] = f"store:{store}"
    return options


@pytest.fixture(scope="module")
def faces_store(faces_npz, tmp_path_factory):
    path = tmp_path_factory.mktemp("store") / "faces"
    prepare_store(f"npz:{faces_npz}", path, shard_size=16)
    return path


@pytest.mark.parametrize(
    "run",
    [pytest.param(r, marks=[pytest.mark.slow] if RUNS[r].get("compile") else []) for r in RUNS],
)
def test_glowflow_train_equals_the_plain_training(faces_npz, faces_store, tmp_path, run):
    options = run_options(run, faces_store)
    glowflow_train(*argv(faces_npz, tmp_path / "run", sample_every=2, **options))
    check(differences(tmp_path / "run", plain_training(faces_npz, 6, **options)))


def ctrl_c_in_third_step_then_resume(npz, run, **options) -> tuple[list[int], list[int]]:
    """``glowflow train`` for 6 steps with Ctrl-C during the third (the step finishes and is
    saved), then ``--resume``: the steps each command took. ``on_stop(run)`` in ``options`` is
    called in between."""
    on_stop = options.pop("on_stop", None)
    taken: list[int] = []
    real_step = Trainer.train_step

    def train_step(self, step):
        out = real_step(self, step)
        taken.append(step)
        if taken == [0, 1, 2]:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C, right after the optimiser step
        return out

    Trainer.train_step = train_step
    try:
        glowflow_train(*argv(npz, run, **options), expect=130)
        first = list(taken)
        if on_stop is not None:
            on_stop(run)
        taken.clear()
        glowflow_train("train", "--resume", str(run), "--no-progress")
    finally:
        Trainer.train_step = real_step
    return first, taken


@pytest.mark.parametrize("memory_saving", [False, True], ids=["backprop", "memory-saving"])
def test_a_stop_and_resume_equals_the_plain_training(faces_npz, tmp_path, memory_saving):
    """Ctrl-C during the third of 6 steps: the step finishes and is saved; ``--resume`` then
    takes exactly the last three, on the cosine schedule of the whole run."""
    kw = dict(memory_saving=memory_saving, checkpoint_every=0)  # only the stop saves

    def stopped(run):
        assert load_checkpoint(run / "checkpoint.pt")["step"] == 3
        check(differences(run, plain_training(faces_npz, 3, **kw)))

    run = tmp_path / "run"
    first, resumed = ctrl_c_in_third_step_then_resume(faces_npz, run, on_stop=stopped, **kw)
    assert first == [0, 1, 2] and resumed == [3, 4, 5]
    check(differences(run, plain_training(faces_npz, 6, **kw)))


#: Paths that cannot run in float64 are compared in their own precision: float32 (the default,
#: what every user runs) and bf16 couplings, against the plain float64 training from the same
#: float32 initial weights. Two figures, each bound about 10x what it measured (loss 8e-8 and
#: 1.3e-5, weights 4.5e-5 and 0.04 on a 2-core Intel Xeon):
#: - the largest difference of a step's loss, relative: float32 rounding; bf16's 8-bit mantissa
#:   in the coupling networks, whose outputs then move log p by about 1e-5 relative;
#: - the distance of all weights from the plain weights after the 6 steps, over the distance
#:   the plain weights moved: Adam's nearly sign-like first steps turn the rounding of the
#:   smallest gradients into whole steps, so this grows with the rounding (bf16 most).
#: A stale inverse in memory-saving backprop moves the float32 loss figure to about 1e-4; the
#: tighter check of that path in bf16 is memory saving against ordinary backprop (below).
OWN_PRECISION = {"fp32": (1e-6, 5e-4), "bf16": (1e-4, 0.3)}


def own_precision_differences(run_dir, want: dict) -> tuple[float, float]:
    state = load_checkpoint(run_dir / "checkpoint.pt")
    losses = logged_losses(run_dir)
    loss = float(
        ((losses - torch.tensor(want["losses"])) / torch.tensor(want["losses"])).abs().max()
    )
    off = sum(
        ((state["model"][k].double() - w.detach()) ** 2).sum() for k, w in want["weights"].items()
    )
    moved = sum(((w.detach() - want["initial"][k]) ** 2).sum() for k, w in want["weights"].items())
    return loss, float((off / moved).sqrt())


@pytest.mark.parametrize("memory_saving", [False, True], ids=["backprop", "memory-saving"])
@pytest.mark.parametrize("precision", list(OWN_PRECISION))
def test_float32_and_bf16_training_follow_the_plain_training(
    faces_npz, tmp_path, precision, memory_saving
):
    kw = dict(memory_saving=memory_saving, precision=precision)
    glowflow_train(*argv(faces_npz, tmp_path / "run", **kw), dtype=torch.float32)
    want = plain_training(faces_npz, 6, init_dtype=torch.float32, **kw)
    loss, weights = own_precision_differences(tmp_path / "run", want)
    loss_bound, weight_bound = OWN_PRECISION[precision]
    assert loss <= loss_bound and weights <= weight_bound, (loss, weights)


#: Memory saving against ordinary backprop, both glowflow in the same precision: the forward
#: passes round alike, and only the recomputation of each step's input by inversion differs.
#: Bounds (largest weight difference relative to its tensor, largest relative step-loss
#: difference) about 10x what was measured on a 2-core Intel Xeon: bf16 2.3e-3 and 3.2e-7,
#: float32 1.0e-5 and 0. A stale inverse gave 0.35 and 1.1e-4 (bf16), 0.27 and 1.0e-4 (float32).
SAME_PRECISION = {"fp32": (1e-4, 1e-6), "bf16": (2e-2, 3e-6)}


def saved_run(run_dir) -> tuple[dict, torch.Tensor]:
    return load_checkpoint(run_dir / "checkpoint.pt")["model"], logged_losses(run_dir)


def memory_saving_against_backprop(npz, tmp_path, precision) -> tuple[float, float]:
    for name, saving in (("backprop", False), ("saving", True)):
        kw = dict(memory_saving=saving, precision=precision)
        glowflow_train(*argv(npz, tmp_path / name, **kw), dtype=torch.float32)
    (plain_w, plain_l), (ms_w, ms_l) = (saved_run(tmp_path / n) for n in ("backprop", "saving"))
    weights = max(largest_difference(ms_w[k], plain_w[k]) for k in plain_w
                  if plain_w[k].is_floating_point())  # fmt: skip
    return weights, float(((ms_l - plain_l) / plain_l).abs().max())


@pytest.mark.parametrize("precision", list(SAME_PRECISION))
def test_memory_saving_follows_backprop_in_float32_and_bf16(faces_npz, tmp_path, precision):
    weights, loss = memory_saving_against_backprop(faces_npz, tmp_path, precision)
    weight_bound, loss_bound = SAME_PRECISION[precision]
    assert weights <= weight_bound and loss <= loss_bound, (weights, loss)


@pytest.mark.parametrize("precision", list(SAME_PRECISION))
def test_the_own_precision_checks_catch_a_stale_inverse(
    faces_npz, tmp_path, monkeypatch, precision
):
    monkeypatch.setattr(InvConv1x1LU, "inverse", version_keyed_inverse)
    weights, loss = memory_saving_against_backprop(faces_npz, tmp_path, precision)
    weight_bound, loss_bound = SAME_PRECISION[precision]
    assert weights > 5 * weight_bound and loss > 5 * loss_bound
    if precision == "fp32":  # and against the plain flow
        kw = dict(memory_saving=True, precision="fp32")
        want = plain_training(faces_npz, 6, init_dtype=torch.float32, **kw)
        loss, _ = own_precision_differences(tmp_path / "saving", want)
        assert loss > 10 * OWN_PRECISION["fp32"][0]


def _gloo_worker(rank: int, world: int, port: int, args: list[str], perturb: bool) -> None:
    os.environ.update(
        RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
    )  # fmt: skip
    torch.set_num_threads(1)
    if perturb and rank == 1:  # other weights than rank 0's, until DDP's broadcast
        real_wrap = Trainer._wrap_for_processes

        def wrap(self):
            with torch.no_grad():
                for p in self.model.parameters():
                    p.add_(0.01 * torch.randn_like(p))
            real_wrap(self)

        Trainer._wrap_for_processes = wrap
    glowflow_train(*args)


@pytest.mark.slow
def test_two_gloo_processes_equal_one_and_the_plain_training(faces_npz, tmp_path):
    """Two processes of 4 images each take the steps of one process of 8 (and of the plain
    flow). The second process's weights are moved before DDP wraps the model, so only DDP's
    broadcast of rank 0's weights can make it right."""
    kw = dict(memory_saving=True)
    two = argv(faces_npz, tmp_path / "two", **{**kw, "batch_size": 4})
    mp.spawn(_gloo_worker, args=(2, free_port(), two, True), nprocs=2)
    glowflow_train(*argv(faces_npz, tmp_path / "one", **kw))
    want = plain_training(faces_npz, 6, **kw)
    check(differences(tmp_path / "two", want))
    check(differences(tmp_path / "one", want))


def test_a_trained_model_equals_one_loaded_from_its_saved_weights(faces_npz, tmp_path):
    """After fused Adam steps with memory saving and samples drawn between them (no weight
    average, so the grids come from the trained weights themselves), the model in memory
    encodes, decodes and samples as a fresh one loaded from the checkpoint does."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        options = {**OPTIONS, "memory_saving": True, "ema_decay": 0.0, "sample_every": 1}
        trainer = Trainer(TrainConfig(dataset=f"npz:{faces_npz}", **options), tmp_path / "run")
        trainer.run()
    finally:
        torch.set_default_dtype(old)
    trained = trainer.eval_model().eval()
    loaded, _ = model_from_checkpoint(tmp_path / "run")
    assert trained.is_initialized and not trained.training
    images, _ = faces16()
    x = (images[:8].double() + 0.5) / 256 - 0.5
    with torch.no_grad():
        z = trained.encode(x)
        assert largest_difference(z, loaded.encode(x)) <= TOLERANCE
        assert torch.equal(trained.decode(z), loaded.decode(z))
        assert largest_difference(trained.decode(z), x) <= TOLERANCE
    a = sample_images(trained, range(6), 0.7)
    b = sample_images(loaded, range(6), 0.7)
    assert torch.equal(a, b)
