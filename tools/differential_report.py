"""The largest differences between glowflow and the plain reference flow, case by case.

Runs the comparisons of ``tests/nn/test_differential.py`` and
``tests/train/test_differential_training.py`` (which assert them against their bounds) and
records every figure, for the README:

    python tools/differential_report.py --out benchmarks/results/differential.json
    python tools/differential_report.py --tree /tmp/glowflow-old --library-only \\
        --out /tmp/old.json   # the library cases on another source tree's glowflow

With ``--tree``, ``glowflow`` is imported from that tree (the trainer of an older tree may not
run in float64, hence ``--library-only``). The library cases train memory-saving models in a
loop of their own, so the process first calls ``glowflow.train.reuse_freed_memory()``, as
glowflow advises for such a loop (a tree without that function makes the setting in its model).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from common import command_line, commit_of, machine  # noqa: E402

# the test modules whose comparisons this runs, and the helpers they import
TEST_FOLDERS = (ROOT / "tests", ROOT / "tests" / "nn", ROOT / "tests" / "train")


def keep_freed_memory() -> None:
    """glowflow's malloc setting for a memory-saving model trained outside its Trainer."""
    try:
        from glowflow.train import reuse_freed_memory
    except ImportError:  # an older tree, whose memory-saving model makes the setting itself
        return
    reuse_freed_memory()


def library_cases(t) -> list[dict]:
    rows = []
    for opt, saving, between in itertools.product(t.OPTIMIZERS, (False, True), (False, True)):
        if saving:
            keep_freed_memory()
        worst = t.compare_training(opt, saving, between=between)
        rows.append({"optimizer": opt, "memory_saving": saving, "between": between,
                     "option": "base", **worst})  # fmt: skip
    for option, kw in t.MODEL_OPTIONS.items():
        for opt, saving in itertools.product(("adam-fused", "adamax"), (False, True)):
            worst = t.compare_training(opt, saving, between=True, **kw)
            rows.append({"optimizer": opt, "memory_saving": saving, "between": True,
                         "option": option, **worst})  # fmt: skip
    return rows


def trainer_cases(t, tmp: Path) -> list[dict]:
    import numpy as np
    import torch
    import torch.multiprocessing as mp
    from conftest import free_port
    from plain_glow import faces16

    from glowflow.data.prepare import prepare_store

    images, smiling = faces16()
    npz = tmp / "faces16.npz"
    np.savez(npz, x=images.permute(0, 2, 3, 1).numpy(), y=smiling.numpy())
    prepare_store(f"npz:{npz}", tmp / "store", shard_size=16)
    rows = []
    for run in t.RUNS:
        options = t.run_options(run, tmp / "store")
        t.glowflow_train(*t.argv(npz, tmp / run, sample_every=2, **options))
        rows.append({"run": run, **t.differences(tmp / run, t.plain_training(npz, 6, **options))})
    for saving in (False, True):  # Ctrl-C in the third of 6 steps, then --resume
        kw = dict(memory_saving=saving, checkpoint_every=0)
        run = tmp / f"resume-{saving}"
        t.ctrl_c_in_third_step_then_resume(npz, run, **kw)
        rows.append({"run": f"Ctrl-C in step 3 of 6, then --resume, memory saving {saving}",
                     **t.differences(run, t.plain_training(npz, 6, **kw))})  # fmt: skip
    kw = dict(memory_saving=True)
    two = t.argv(npz, tmp / "two", **{**kw, "batch_size": 4})
    mp.spawn(t._gloo_worker, args=(2, free_port(), two, True), nprocs=2)
    rows.append({"run": "two gloo processes of 4 images, memory saving",
                 **t.differences(tmp / "two", t.plain_training(npz, 6, **kw))})  # fmt: skip
    for precision, saving in itertools.product(t.OWN_PRECISION, (False, True)):
        kw = dict(memory_saving=saving, precision=precision)
        run = tmp / f"{precision}-{saving}"
        t.glowflow_train(*t.argv(npz, run, **kw), dtype=torch.float32)
        want = t.plain_training(npz, 6, init_dtype=torch.float32, **kw)
        loss, weights = t.own_precision_differences(run, want)
        rows.append({"run": f"float32 model, {precision}, memory saving {saving}",
                     "loss": loss, "weights_off_over_moved": weights})  # fmt: skip
    for precision in t.SAME_PRECISION:
        out = tmp / f"same-{precision}"
        out.mkdir()
        weights, loss = t.memory_saving_against_backprop(npz, out, precision)
        rows.append({"run": f"float32 model, {precision}: memory saving against backprop",
                     "weights": weights, "loss": loss})  # fmt: skip
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tree", type=Path, help="import glowflow from this source tree")
    p.add_argument("--library-only", action="store_true")
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    if args.tree:
        sys.path.insert(0, str(args.tree.resolve()))
    sys.path[:0] = [str(folder) for folder in TEST_FOLDERS]
    import torch

    torch.set_default_dtype(torch.float64)
    import plain_glow
    import test_differential

    import glowflow

    tree = args.tree or ROOT
    record = {
        "glowflow": str(Path(glowflow.__file__).parent),
        "glowflow_commit": commit_of(tree),
        "machine": machine(),
        "tolerance": plain_glow.TOLERANCE,
        "library": library_cases(test_differential),
        "command": command_line(),
    }
    if not args.library_only:
        import test_differential_training

        with tempfile.TemporaryDirectory() as tmp:
            record["trainer"] = trainer_cases(test_differential_training, Path(tmp))
    for part in ("library", "trainer"):
        for row in record.get(part, []):
            figures = {k: v for k, v in row.items() if isinstance(v, float)}
            name = row.get("run") or " ".join(
                f"{k}={row[k]}" for k in ("optimizer", "memory_saving", "between", "option")
            )
            print(f"{part:8} {name:64} " + " ".join(f"{k} {v:.1e}" for k, v in figures.items()))
    if args.out:
        args.out.write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
