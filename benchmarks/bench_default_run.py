"""Steps per second of the default run (`glowflow train` with no options), for source trees
taken in turns, each in a fresh process.

    git worktree add /tmp/glowflow-old c8eef86
    python benchmarks/bench_default_run.py --trees .,/tmp/glowflow-old --steps 400 \\
        --out benchmarks/results/default_run.json

Each run is ``python -m glowflow train --steps N --no-progress --out TMP`` with the tree on
``PYTHONPATH`` (the default model, data set and options of that tree); steps/s is the trained
steps over the training loop's own clock (``summary.json``'s ``elapsed_s``), so start-up, the
final evaluation and the sample grid are not counted. The trees take turns, repetition by
repetition, and each figure is the median over the repetitions. (The default run trains
without memory saving, so no tree changes the process's malloc settings.)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from common import command_line, commit_of, machine, machine_line


def run_once(tree: Path, steps: int, threads: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        env = {**os.environ, "PYTHONPATH": str(tree.resolve()), "OMP_NUM_THREADS": str(threads)}
        cmd = [sys.executable, "-m", "glowflow", "train", "--steps", str(steps), "--no-progress",
               "--out", str(out)]  # fmt: skip
        r = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True)
        if r.returncode != 0:
            raise SystemExit(f"{tree}: glowflow train failed:\n{r.stderr[-2000:]}")
        summary = json.loads((out / "summary.json").read_text())
    return {"steps": summary["step"], "elapsed_s": summary["elapsed_s"],
            "steps_per_s": summary["step"] / summary["elapsed_s"],
            "precision": summary.get("precision"), "val_bpd": summary.get("val_bpd"),
            "precision_reason": summary.get("precision_reason")}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trees", default=".", help="comma list of source trees (the first is 'now')")
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, help="write the JSON record here")
    args = p.parse_args()
    trees = [Path(t) for t in args.trees.split(",")]
    facts = machine(args.threads)
    print(machine_line(facts))
    runs = []
    for rep in range(args.repeats):
        for tree in trees:
            r = {"tree": str(tree), "commit": commit_of(tree), "rep": rep,
                 **run_once(tree, args.steps, args.threads)}  # fmt: skip
            print(f"  rep {rep} {r['commit']:<16} {r['steps_per_s']:6.2f} steps/s "
                  f"({r['precision']})", flush=True)  # fmt: skip
            runs.append(r)
    rows = []
    for tree in trees:
        mine = [r for r in runs if r["tree"] == str(tree)]
        rows.append({"tree": str(tree), "commit": mine[0]["commit"],
                     "steps_per_s": statistics.median(r["steps_per_s"] for r in mine)})  # fmt: skip
    for row in rows:
        ratio = row["steps_per_s"] / rows[-1]["steps_per_s"]
        print(f"{row['commit']:<16} {row['steps_per_s']:6.2f} steps/s  {ratio:.2f}x the last")
    record = {"benchmark": "default run steps/s", "machine": facts, "steps": args.steps,
              "rows": rows, "runs": runs, "command": command_line()}  # fmt: skip
    print(json.dumps({"machine": facts, "rows": rows}))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
