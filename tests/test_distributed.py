"""Multi-process training on the CPU with gloo, as torchrun runs it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch
import torch.multiprocessing as mp

from glowflow import distributed
from glowflow.config import TrainConfig
from glowflow.data.prepare import prepare_store
from glowflow.hub.checkpoint import load_checkpoint
from glowflow.train.trainer import Trainer


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def config(npz, batch_size, **kw) -> dict:
    base = dict(
        dataset=f"npz:{npz}", levels=2, depth=2, hidden_channels=8, batch_size=batch_size,
        init_batch_size=32, val_fraction=0.25, steps=4, log_every=1, checkpoint_every=2,
        n_samples=4, warmup_steps=1, device="cpu",
    )  # fmt: skip
    return {**base, **kw}


def _worker(rank: int, world: int, port: int, cfg: dict, run_dir: str, out_dir: str) -> None:
    os.environ.update(
        RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
    )  # fmt: skip
    torch.set_num_threads(1)
    trainer = Trainer(TrainConfig(**cfg), run_dir)
    after_init = None
    real_init = trainer.initialize

    def init_and_record():
        nonlocal after_init
        real_init()  # each process on its own; DDP's broadcast comes later
        after_init = {k: v.clone() for k, v in trainer.model.state_dict().items()}

    trainer.initialize = init_and_record
    summary = trainer.run()
    torch.save(
        {"init": after_init, "final": trainer.model.state_dict(), "summary": summary},
        f"{out_dir}/rank{rank}.pt",
    )
    distributed.teardown()


def losses(run_dir):
    records = [json.loads(line) for line in open(f"{run_dir}/metrics.jsonl")]
    return [r["loss"] for r in records if "loss" in r], [r for r in records if "val_bpd" in r]


@pytest.mark.slow
@pytest.mark.usefixtures("float32")
@pytest.mark.parametrize("source", ["memory", "store"])
def test_two_processes_equal_one_process_on_the_same_global_batch(digits_npz, tmp_path, source):
    cfg = config(digits_npz, batch_size=8)
    if source == "store":  # each process reads its share of every batch in a DataLoader worker
        prepare_store(f"npz:{digits_npz}", tmp_path / "store", shard_size=40)
        cfg["dataset"] = f"store:{tmp_path / 'store'}"
    mp.spawn(_worker, args=(2, free_port(), cfg, str(tmp_path / "ddp"), str(tmp_path)), nprocs=2)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    for stage in ("init", "final"):
        for k in r0[stage]:
            assert torch.equal(r0[stage][k], r1[stage][k]), (stage, k)
    # one process with the same global batch (2 x 8) sees the same data and noise
    single = Trainer(TrainConfig(**config(digits_npz, batch_size=16)), tmp_path / "single")
    single.run()
    ddp_losses, ddp_val = losses(tmp_path / "ddp")
    one_losses, one_val = losses(tmp_path / "single")
    assert ddp_losses == pytest.approx(one_losses, rel=1e-4)
    assert ddp_val[-1]["val_bpd"] == pytest.approx(one_val[-1]["val_bpd"], rel=1e-4)
    # only rank 0 wrote the run folder: one checkpoint, no stray temporary files
    files = sorted(p.name for p in (tmp_path / "ddp").iterdir())
    assert files.count("checkpoint.pt") == 1 and not [f for f in files if f.endswith(".tmp")]
    assert load_checkpoint(tmp_path / "ddp" / "checkpoint.pt")["step"] == 4
    # resuming with another number of processes: one process picks up the two-process run,
    # with its weights, EMA and optimiser state
    resumed = Trainer(TrainConfig(**config(digits_npz, batch_size=16, steps=6)),
                      tmp_path / "ddp", resume=True)  # fmt: skip
    saved = load_checkpoint(tmp_path / "ddp" / "checkpoint.pt")
    for k, v in saved["ema"].items():
        assert torch.equal(resumed.ema.state_dict()[k], v), k
    assert not torch.equal(saved["ema"]["top.learn.logs"], saved["model"]["top.learn.logs"])
    assert resumed.run()["step"] == 6


@pytest.mark.slow
@pytest.mark.slow
def test_elastic_restart_after_a_killed_process_resumes_from_the_last_checkpoint(
    digits_npz, tmp_path
):
    run = tmp_path / "run"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
        "--max-restarts=1", "-m", "glowflow", "train", "--dataset", f"npz:{digits_npz}",
        "--out", str(run), "--levels", "2", "--depth", "1", "--hidden-channels", "8",
        "--batch-size", "8", "--init-batch-size", "32", "--steps", "400",
        "--checkpoint-every", "10", "--log-every", "10", "--no-progress", "--device", "cpu",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    launcher = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.time() + 120
        while not (run / "checkpoint.pt").exists():
            assert launcher.poll() is None and time.time() < deadline, "no checkpoint appeared"
            time.sleep(0.2)
        killed_at = load_checkpoint(run / "checkpoint.pt")["step"]
        workers = subprocess.run(["pgrep", "-P", str(launcher.pid)], capture_output=True,
                                 text=True).stdout.split()  # fmt: skip
        assert len(workers) == 2, workers
        os.kill(int(workers[1]), signal.SIGKILL)  # one rank dies mid-run
        out, _ = launcher.communicate(timeout=240)
    finally:
        if launcher.poll() is None:
            launcher.kill()
    text = out.decode()
    assert launcher.returncode == 0, text
    assert "elastic restart 1: resuming" in text
    state = load_checkpoint(run / "checkpoint.pt")
    assert state["step"] == 400 and killed_at >= 10
    steps = [json.loads(line)["step"] for line in open(run / "metrics.jsonl")]
    assert steps == sorted(steps) and steps[-1] == 400  # continued, nothing logged twice
