"""Data at scale: a 1.2-million-image store against a 60,000-image one, in one run.

    python benchmarks/bench_store.py --mnist ../shared/data/mnist_train.npz --work /tmp/bench \
        --out benchmarks/results/store.json

The large store holds the 60,000 MNIST training digits **repeated** 20 times (1,200,000 images,
not new data: the point is the count). For each store it measures, with the default model
(``glowflow train`` with its defaults, batch 32, in fp32):

- ``prepare`` time (from the npz, written as 32x32 .npy shards);
- start-up: from the command's start to the end of its first training step;
- the wall time of a whole 1-step run (start-up, the step, the final validation of 2,000 images
  and the sample grid: ``--val-fraction`` is set so both stores validate on 2,000 images);
- peak RSS (VmHWM) of each process under ``torchrun --nproc-per-node=2`` (each rank, and its
  DataLoader worker; a 5-step run), and of one process;
- steps per second over 150 steps after 20 warm-up steps, against the in-memory path on the
  60,000 digits (``npz:``): the three take turns (``--rounds``, in a rotated order), and each
  gets its median.

Prints the machine, a table and the JSON that ``--out`` saves;
``--readme docs/training.md --record benchmarks/results/store.json`` writes that record's table
between the ``<!-- store-table -->`` markers of docs/training.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from common import command_line, machine, peak_rss_mb, write_between_markers

REPEATS = 20
VAL_IMAGES = 2000


def child(args: argparse.Namespace) -> None:
    """One training run in this process: records when its first step ended, its peak RSS and
    its DataLoader workers' peak RSS, and its steps per second after a warm-up."""
    from glowflow.config import TrainConfig
    from glowflow.train.trainer import Trainer

    record: dict = {}
    cfg = TrainConfig(**json.loads(args.child))
    trainer = Trainer(cfg, args.run_dir, log=lambda m: None)
    real = trainer.train_step

    def timed(step):
        out = real(step)
        now = time.time()
        record.setdefault("first_step_end", now)
        if step == args.warmup:
            record["warm"] = (step, now)
        elif step == cfg.steps - 1 and "warm" in record:
            record["steps_per_s"] = (step - record["warm"][0]) / (now - record["warm"][1])
        if step == cfg.steps - 1:  # the DataLoader workers are still alive
            record["workers_peak_rss_mb"] = max(map(peak_rss_mb, child_pids()), default=0.0)
        return out

    trainer.train_step = timed
    trainer.run()
    rank = os.environ.get("RANK", "0")
    record["peak_rss_mb"] = peak_rss_mb()
    Path(args.record_dir, f"rank{rank}.json").write_text(json.dumps(record))


def child_pids() -> list[int]:
    """This process's children (its DataLoader workers), from /proc."""
    me, found = os.getpid(), []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = open(f"/proc/{entry}/stat").read()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == me:
                found.append(int(entry))
    return found


MARKER = "store-table"  # docs/training.md's <!-- store-table --> ... <!-- /store-table -->
COLUMNS = {
    "images": "images", "prepare_s": "prepare s", "startup_s": "start-up s",
    "one_step_run_s": "1-step run s", "one_process_peak_rss_mb": "peak RSS MB, 1 process",
    "torchrun2_peak_rss_mb": "peak RSS MB per rank, torchrun x2",
    "torchrun2_worker_peak_rss_mb": "its worker's MB", "steps_per_s": "steps/s (median)",
}  # fmt: skip


def table(record: dict) -> str:
    """The record as a markdown table, with the machine and the goals under it."""
    lines = ["| data | " + " | ".join(COLUMNS.values()) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for name, row in record["rows"].items():
        cells = [f"{row[c]:,.2f}" if isinstance(row.get(c), float) else f"{row.get(c, ''):,}"
                 if isinstance(row.get(c), int) else "" for c in COLUMNS]  # fmt: skip
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    m, g = record["machine"], record["goals"]
    lines += [
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']}. Command: "
        f"`{record['command']}`. Goals: start-up under 10 s: {g['startup_under_10s']}; 1-step "
        f"run at most 3 s longer: {g['one_step_run_at_most_3s_longer']}; RSS per rank within "
        f"1.2x: {g['torchrun_rss_within_1.2x']}; steps/s of the 60k store over the in-memory "
        f"path: {g['steps_per_s_vs_in_memory']:.2f}.",
    ]
    return "\n".join(lines)


def write_readme(record: dict, readme: Path) -> None:
    write_between_markers(readme, MARKER, table(record))


def run_child(cfg: dict, run_dir: Path, records: Path, warmup: int, nproc: int = 1) -> dict:
    shutil.rmtree(run_dir, ignore_errors=True)
    shutil.rmtree(records, ignore_errors=True)
    records.mkdir(parents=True)
    me = [str(Path(__file__).resolve()), "--child", json.dumps(cfg), "--run-dir", str(run_dir),
          "--record-dir", str(records), "--warmup", str(warmup)]  # fmt: skip
    if nproc > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc-per-node={nproc}", *me]  # fmt: skip
    else:
        cmd = [sys.executable, *me]
    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 2) // nproc))}
    start = time.time()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    wall = time.time() - start
    ranks = [json.loads(p.read_text()) for p in sorted(records.glob("rank*.json"))]
    return {
        "wall_s": wall,
        "startup_s": ranks[0]["first_step_end"] - start,
        "steps_per_s": ranks[0].get("steps_per_s"),
        "peak_rss_mb": max(r["peak_rss_mb"] for r in ranks),
        "worker_peak_rss_mb": max(r["workers_peak_rss_mb"] for r in ranks),
    }


# fp32 throughout: --precision auto decides by timing at each start, which would let the
# precision, not the data path, make the difference between runs
BASE = dict(max_time=None, log_every=10, checkpoint_every=0, n_samples=16, precision="fp32")
NO_WARMUP = 10**9  # a run too short for a steps-per-second figure


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mnist", type=Path, help="mnist_train.npz (60,000 digits)")
    p.add_argument("--work", type=Path, help="a folder with room for about 2.5 GB")
    p.add_argument("--out", type=Path)
    p.add_argument("--readme", type=Path, help="write the table of --record into this page")
    p.add_argument("--record", type=Path, help="with --readme: a saved result to show")
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--rounds", type=int, default=5, help="turns of the steps-per-second runs")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--run-dir", help=argparse.SUPPRESS)
    p.add_argument("--record-dir", help=argparse.SUPPRESS)
    p.add_argument("--warmup", type=int, default=20, help=argparse.SUPPRESS)
    return p.parse_args()


def write_inputs(mnist: Path, work: Path) -> dict[str, tuple[Path, int]]:
    """The two npz files the stores are prepared from: name -> (path, image count)."""
    d = np.load(mnist)
    small_npz, big_npz = work / "mnist60k.npz", work / "mnist1200k.npz"
    if not small_npz.exists():
        np.savez(small_npz, x=d["x"], y=d["y"])
    if not big_npz.exists():
        np.savez(
            big_npz, x=np.concatenate([d["x"]] * REPEATS), y=np.concatenate([d["y"]] * REPEATS)
        )
    return {"60k": (small_npz, 60000), "1200k": (big_npz, 60000 * REPEATS)}


def prepare_stores(work: Path, sets: dict[str, tuple[Path, int]]) -> dict[str, dict]:
    """Prepare a store of each set, timed: the first figures of each row."""
    from glowflow.data.prepare import prepare_store

    rows = {}
    for name, (npz, n) in sets.items():
        store = work / f"store{name}"
        shutil.rmtree(store, ignore_errors=True)
        start = time.time()
        prepare_store(f"npz:{npz}", store, pad=2)
        rows[name] = {"images": n, "prepare_s": time.time() - start}
    return rows


def store_config(work: Path, name: str, n: int) -> dict:
    return {**BASE, "dataset": f"store:{work / f'store{name}'}", "val_fraction": VAL_IMAGES / n}


def startup_and_memory(work: Path, sets: dict, rows: dict[str, dict], memory: dict) -> None:
    """Into ``rows``: each store's start-up, 1-step run and peak RSS of one process and of
    each of two torchrun ranks; the same for the in-memory path (``memory``)."""
    run, rec = work / "run", work / "rec"
    for name, (_, n) in sets.items():
        cfg = store_config(work, name, n)
        one = run_child({**cfg, "steps": 1}, run, rec, warmup=NO_WARMUP)
        five = run_child({**cfg, "steps": 5}, run, rec, NO_WARMUP, nproc=2)
        rows[name].update(startup_s=one["startup_s"], one_step_run_s=one["wall_s"],
                          one_process_peak_rss_mb=one["peak_rss_mb"],
                          torchrun2_peak_rss_mb=five["peak_rss_mb"],
                          torchrun2_worker_peak_rss_mb=five["worker_peak_rss_mb"])  # fmt: skip
    one = run_child({**memory, "steps": 1}, run, rec, warmup=NO_WARMUP)
    five = run_child({**memory, "steps": 5}, run, rec, NO_WARMUP, nproc=2)
    rows["60k in memory"] = {"images": 60000, "startup_s": one["startup_s"],
                             "one_step_run_s": one["wall_s"],
                             "one_process_peak_rss_mb": one["peak_rss_mb"],
                             "torchrun2_peak_rss_mb": five["peak_rss_mb"]}  # fmt: skip


def steps_per_second(work: Path, cfgs: dict[str, dict], rows: dict, args) -> None:
    """Into ``rows``: each configuration's median steps per second over ``args.rounds`` runs,
    the configurations taking turns in a rotated order each round, and every run's figure."""
    names = list(cfgs)
    speeds: dict[str, list[float]] = {name: [] for name in names}
    for r in range(args.rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            run = run_child({**cfgs[name], "steps": args.warmup + args.steps},
                            work / "run", work / "rec", args.warmup)  # fmt: skip
            speeds[name].append(run["steps_per_s"])
    for name, values in speeds.items():
        rows[name]["steps_per_s"] = statistics.median(values)
        rows[name]["steps_per_s_runs"] = values


def goals(rows: dict[str, dict]) -> dict:
    big, small = rows["1200k"], rows["60k"]
    return {
        "startup_under_10s": big["startup_s"] < 10,
        "one_step_run_at_most_3s_longer": big["one_step_run_s"] - small["one_step_run_s"] <= 3,
        "torchrun_rss_within_1.2x": big["torchrun2_peak_rss_mb"]
        <= 1.2 * small["torchrun2_peak_rss_mb"],
        "steps_per_s_vs_in_memory": small["steps_per_s"] / rows["60k in memory"]["steps_per_s"],
    }


def main() -> None:
    args = parse_args()
    if args.child:
        return child(args)
    if args.readme:
        return write_readme(json.loads(args.record.read_text()), args.readme)
    if args.mnist is None or not args.mnist.exists():
        sys.exit("give --mnist PATH/TO/mnist_train.npz (the 60,000 MNIST training digits)")
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    sets = write_inputs(args.mnist, work)
    print(f"machine: {machine()}")
    print(f"large store: the 60,000 MNIST training digits repeated {REPEATS} times "
          f"({60000 * REPEATS:,} images; repeated, not new data)")  # fmt: skip
    rows = prepare_stores(work, sets)
    memory = {**BASE, "dataset": f"npz:{sets['60k'][0]}", "pad": 2,
              "val_fraction": VAL_IMAGES / 60000}  # fmt: skip
    startup_and_memory(work, sets, rows, memory)
    speed_cfgs = {name: store_config(work, name, n) for name, (_, n) in sets.items()}
    speed_cfgs["60k in memory"] = memory
    steps_per_second(work, speed_cfgs, rows, args)
    record = {"machine": machine(), "command": command_line(), "repeats": REPEATS,
              "rows": rows, "goals": goals(rows)}  # fmt: skip
    print(table(record))
    print(json.dumps(record))
    if args.out:
        args.out.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
