"""How long ``glowflow ood`` takes with all its default methods, on 10,000 in-distribution and
30,000 OOD images: the whole command, model loading, scoring, the codec, the density of states,
the typicality test and the files, timed as a user runs it.

    python benchmarks/bench_ood.py --checkpoint fashion-mnist \\
        --in-dist mnist:/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz \\
        --ood npz:../shared/data/mnist_test.npz --ood npz:WORK/letters.npz \\
        --ood npz:WORK/alphabets.npz --ood-images 30000 --out benchmarks/results/ood_time.json

The OOD sets are joined in order and cut to ``--ood-images`` (an npz in a temporary folder), so
that the count is the one asked. Prints the machine, the command's wall time and the images a
second, and writes them to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import command_line, commit_of, machine, machine_line, write_between_markers

from glowflow.data.datasets import load_dataset


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--in-dist", required=True)
    p.add_argument("--ood", action="append", required=True)
    p.add_argument("--ood-images", type=int, default=30000)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path)
    p.add_argument("--readme", type=Path, help="write the table between its ood-time markers")
    args = p.parse_args()
    facts = machine(args.threads)
    print(machine_line(facts))
    with tempfile.TemporaryDirectory() as tmp:
        parts = [load_dataset(spec, pad=0).images.permute(0, 2, 3, 1).numpy() for spec in args.ood]
        joined = np.concatenate(parts)[: args.ood_images]
        if len(joined) < args.ood_images:
            sys.exit(f"the OOD sets hold {len(joined)} images, fewer than {args.ood_images}")
        np.savez(Path(tmp) / "ood.npz", x=joined)
        n_in = len(load_dataset(args.in_dist, pad=0))
        cmd = [sys.executable, "-m", "glowflow", "ood", "--checkpoint", args.checkpoint,
               "--in-dist", args.in_dist, "--ood", f"npz:{tmp}/ood.npz", "--out",
               f"{tmp}/results", "--no-progress"]  # fmt: skip
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
        start = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True, env=env)
        seconds = time.perf_counter() - start
        if done.returncode:
            sys.exit(done.stderr)
        methods = json.loads((Path(tmp) / "results" / "results.json").read_text())["methods"]
    record = {
        "machine": facts, "commit": commit_of(), "command": command_line(),
        "checkpoint": args.checkpoint, "n_in": n_in, "n_ood": int(len(joined)),
        "methods": methods, "seconds": round(seconds, 1),
        "images_per_s": round((n_in + len(joined)) / seconds, 1),
    }  # fmt: skip
    table = (
        "| model | images (in + OOD) | methods | wall time | images/s |\n|---|---|---|---|---|\n"
        f"| `{args.checkpoint}` | {n_in:,} + {len(joined):,} | {', '.join(methods)} | "
        f"{seconds / 60:.1f} min | {record['images_per_s']:.0f} |\n\n"
        f"{machine_line(facts)}, commit {record['commit']}: "
        f"`{record['command']}`"
    )
    print(table)
    if args.out:
        args.out.write_text(json.dumps(record, indent=2) + "\n")
    if args.readme:
        write_between_markers(args.readme, "ood-time", table)


if __name__ == "__main__":
    main()
