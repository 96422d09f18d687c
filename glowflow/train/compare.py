"""The paper's ablation: permutations x couplings, trained alike, as learning curves.

Every combination is trained by ``glowflow train`` in its own process, with the same seed, data
order and budget, into ``OUT/<coupling>-<permutation>/``. Runs go ``jobs`` at a time, each with
an equal share of the CPU threads. A finished run (one with its summary) is never redone,
and an interrupted one is resumed, so the whole comparison can be stopped and started again.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

from glowflow.errors import GlowflowError
from glowflow.files import atomic_write_json
from glowflow.train.rundir import RunDir
from glowflow.viz import new_figure, save_figure

#: What a comparison writes into its folder, beside one run folder per combination.
RESULTS_FILE = "results.json"  # the curves, final values and orderings
CURVES_FILE = "curves.png"  # the curves, a row per coupling
SETUP_FILE = "compare.json"  # the options of every run, so that runs of two setups never mix


class CompareError(GlowflowError, RuntimeError):
    """A run of the comparison failed; its log says why."""


def run_name(coupling: str, permutation: str) -> str:
    return f"{coupling}-{permutation}"


def _command(run_dir: Path, train_args: Sequence[str]) -> list[str]:
    cmd = [sys.executable, "-m", "glowflow", "train", "--no-progress"]
    if RunDir(run_dir).has_checkpoint():
        return cmd + ["--resume", str(run_dir)]
    return cmd + ["--out", str(run_dir), "--overwrite", *train_args]


def run_comparison(
    out: str | Path,
    permutations: Sequence[str],
    couplings: Sequence[str],
    train_args: Sequence[str],
    jobs: int = 2,
    log: Callable[[str], None] | None = None,
) -> dict:
    """Train every (coupling, permutation) not finished yet, then write the figure and JSON.

    ``train_args`` go to every ``glowflow train`` (data set, model size, budget, evaluation
    interval); the permutation and coupling are added per run. Returns the results record.
    """
    log = log or (lambda message: None)
    out = Path(out)
    val_fraction = dict(zip(train_args, train_args[1:])).get("--val-fraction")
    if val_fraction is not None and float(val_fraction) == 0:
        raise CompareError("the comparison needs validation curves: keep --val-fraction above 0")
    _check_same_setup(out, list(train_args))
    runs = [(c, p) for c in couplings for p in permutations]
    todo = [(c, p) for c, p in runs if not RunDir(out / run_name(c, p)).is_finished()]
    if len(todo) < len(runs):
        log(f"{len(runs) - len(todo)} of {len(runs)} runs already finished; keeping them")
    threads = max(1, (os.cpu_count() or 1) // max(1, jobs))
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    running: list[tuple[str, subprocess.Popen, object]] = []
    failed: list[str] = []
    pending = list(todo)
    try:
        _run_all(out, pending, running, failed, jobs, env, train_args, log)
    except KeyboardInterrupt:
        # let every run save its checkpoint (glowflow train does so on Ctrl-C), then stop
        for _, proc, _ in running:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for _, proc, logf in running:
            proc.wait()
            logf.close()
        raise CompareError(
            "interrupted; the runs saved their checkpoints: rerun the same command to continue"
        ) from None
    if failed:
        raise CompareError(f"runs failed: {', '.join(failed)}; rerun the same command to retry")
    results = collect(out, permutations, couplings)
    atomic_write_json(out / RESULTS_FILE, results, indent=2)
    plot_curves(results, out / CURVES_FILE)
    return results


def _check_same_setup(out: Path, train_args: list[str]) -> None:
    """Refuse to mix runs of different setups in one folder: ``SETUP_FILE`` records it."""
    record = out / SETUP_FILE
    if record.is_file():
        saved = json.loads(record.read_text()).get("train_args")
        if saved != train_args:
            raise CompareError(
                f"{out} holds a comparison run with other options ({' '.join(saved or [])}); "
                f"use another --out, or the same options to continue it"
            )
        return
    try:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(record, {"train_args": train_args}, indent=2)
    except OSError as e:
        raise CompareError(f"cannot write {record}: {e}; choose another --out") from e


def _run_all(out, pending, running, failed, jobs, env, train_args, log) -> None:
    """Keep ``jobs`` training processes busy until every pending run has ended."""
    while pending or running:
        while pending and len(running) < jobs:
            c, p = pending.pop(0)
            name = run_name(c, p)
            run_dir = out / name
            args = ["--coupling", c, "--permutation", p, *train_args]
            cmd = _command(run_dir, args)
            logf = open(out / f"{name}.log", "a")
            log(f"starting {name}")
            running.append((name, subprocess.Popen(cmd, stdout=logf, stderr=logf, env=env), logf))
        time.sleep(1.0)
        for item in list(running):
            name, proc, logf = item
            if proc.poll() is not None:
                logf.close()
                running.remove(item)
                if proc.returncode == 0:
                    log(f"finished {name}")
                else:
                    failed.append(name)
                    log(f"{name} failed (exit {proc.returncode}); see {out / (name + '.log')}")


def collect(out: Path, permutations: Sequence[str], couplings: Sequence[str]) -> dict:
    """Per run: the validation curve (step, seconds, bpd) and its final value."""
    record: dict = {"runs": {}, "final_val_bpd": {}, "ordering": {}}
    for c in couplings:
        finals = {}
        for p in permutations:
            name = run_name(c, p)
            run = RunDir(out / name)
            metrics = run.read_metrics()
            curve = [(r["step"], r.get("time"), r["val_bpd"]) for r in metrics if "val_bpd" in r]
            summary = run.read_summary()
            record["runs"][name] = {"curve": curve, "summary": summary}
            finals[p] = summary["val_bpd"]
            record["final_val_bpd"][name] = summary["val_bpd"]
        # best first: the paper's claim for these is lu/conv < shuffle < reverse
        record["ordering"][c] = sorted(finals, key=finals.get)
    return record


def plot_curves(results: dict, path: Path) -> Path:
    """Validation bits/dim against step (left) and wall time (right), a row per coupling."""
    couplings = sorted({name.split("-")[0] for name in results["runs"]})
    fig = new_figure(10, 3.6 * len(couplings))
    axes = fig.subplots(len(couplings), 2, squeeze=False)
    for row, c in enumerate(couplings):
        tails = []  # the later three quarters of each curve set the vertical range
        for name, run in sorted(results["runs"].items()):
            if not name.startswith(c + "-"):
                continue
            tails += [b for _, _, b in run["curve"][len(run["curve"]) // 4 :]]
            perm = name.split("-", 1)[1]
            steps = [s for s, _, _ in run["curve"]]
            times = [t / 60 if t is not None else None for _, t, _ in run["curve"]]
            bpd = [b for _, _, b in run["curve"]]
            axes[row][0].plot(steps, bpd, "o-", ms=2, label=perm)
            axes[row][1].plot(times, bpd, "o-", ms=2, label=perm)
        for col, xlabel in enumerate(("step", "wall time (minutes)")):
            ax = axes[row][col]
            ax.set_xlabel(xlabel)
            ax.set_ylabel("validation bits / dim")
            ax.set_title(f"{c} coupling")
            ax.grid(alpha=0.3)
            ax.legend()
            finite = [b for b in tails if b is not None and math.isfinite(b)]
            if len(finite) > 1 and max(finite) > min(finite):
                pad = 0.05 * (max(finite) - min(finite))
                ax.set_ylim(min(finite) - pad, max(finite) + pad)
    fig.tight_layout()
    return save_figure(fig, path)
