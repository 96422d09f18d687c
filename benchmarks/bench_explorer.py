"""Round-trip latency of the explorer's edits: a slider move to a new image.

Starts ``glowflow serve`` (the bundled celeba64 model, 64x64) in its own process, then plays
``--edits`` slider moves against it over one keep-alive HTTP connection, as the page does: each
move changes one attribute's amount on a gallery face or an uploaded photo and waits for the
whole PNG of ``/api/edit.png``. Prints the machine, a table of p50/p95/max in milliseconds, and
a JSON line, which ``--out`` also writes. ``--trees`` serves glowflow from several source trees
(``PYTHONPATH``), and ``--runtimes`` with each ``glowflow serve --runtime``, ``--repeats``
servers each, in turns, and reports each one's medians:

    python benchmarks/bench_explorer.py --edits 100 --trees .,/tmp/glowflow-old --repeats 5 \
        --out benchmarks/results/explorer.json
    python benchmarks/bench_explorer.py --edits 100 --runtimes torch,onnx --repeats 5 \
        --out benchmarks/results/explorer_runtimes.json
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import random
import sys
import time
import urllib.parse
from pathlib import Path

import numpy as np
from common import command_line, commit_of, free_port, machine, machine_line, start_serve
from PIL import Image


def upload(conn: http.client.HTTPConnection, gallery_png: bytes) -> str:
    """A photo-sized upload (a gallery face enlarged onto a 640x480 frame), its id."""
    face = Image.open(io.BytesIO(gallery_png)).resize((256, 256), Image.LANCZOS)
    photo = Image.new("RGB", (640, 480), (110, 112, 118))
    photo.paste(face, (190, 90))
    out = io.BytesIO()
    photo.save(out, format="JPEG", quality=90)
    conn.request("POST", "/api/images", body=out.getvalue(), headers={"Content-Type": "image/jpeg"})
    r = conn.getresponse()
    return json.loads(r.read())["id"]


def play(
    args: argparse.Namespace, tree: Path | None, runtime: str | None = None
) -> tuple[dict, list[float]]:
    """Start a server (glowflow from ``tree``, or the installed one; with ``--runtime
    runtime`` where given), play the edits against it; the model it served and each edit's
    round trip in milliseconds."""
    port = free_port()
    proc = start_serve(port, args.threads, tree, ["--runtime", runtime] if runtime else [])
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("GET", "/api/model")
        model = json.loads(conn.getresponse().read())
        attributes = model["attributes"]
        conn.request("GET", "/api/images/g0.png")
        images = [g["id"] for g in model["gallery"][:8]]
        images.append(upload(conn, conn.getresponse().read()))
        rng = random.Random(args.seed)
        image, amounts = images[0], {}
        times = []
        for k in range(args.warmup + args.edits):
            if k % 10 == 0:  # now and then the user picks another face
                image, amounts = rng.choice(images), {}
            name = rng.choice(attributes[:: max(1, len(attributes) // 8)])  # a few sliders
            amounts[name] = round(rng.uniform(-2, 2) / 0.05) * 0.05
            query = urllib.parse.urlencode({"image": image, **amounts})
            start = time.perf_counter()
            conn.request("GET", f"/api/edit.png?{query}")
            r = conn.getresponse()
            body = r.read()
            elapsed = time.perf_counter() - start
            if r.status != 200 or not body.startswith(b"\x89PNG"):
                sys.exit(f"edit failed: {r.status} {body[:200]!r}")
            if k >= args.warmup:
                times.append(elapsed * 1000)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return model, times


def figures(times: list[float]) -> dict[str, float]:
    ms = np.array(times)
    return {
        "p50_ms": round(float(np.percentile(ms, 50)), 1),
        "p95_ms": round(float(np.percentile(ms, 95)), 1),
        "max_ms": round(float(ms.max()), 1), "mean_ms": round(float(ms.mean()), 1),
    }  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--edits", type=int, default=100)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--threads", type=int, default=2, help="torch threads of the server")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--trees", help="comma list of glowflow source trees to serve from, in "
                   "turns (default: the installed glowflow)")  # fmt: skip
    p.add_argument("--runtimes", help="comma list of glowflow serve --runtime choices to "
                   "serve with, in turns (default: the server's own choice)")  # fmt: skip
    p.add_argument("--repeats", type=int, default=1, help="servers per tree, in turns")
    p.add_argument("--out", help="also write the JSON record here")
    args = p.parse_args()

    trees = [Path(t) for t in args.trees.split(",")] if args.trees else [None]
    runtimes = args.runtimes.split(",") if args.runtimes else [None]

    def name(tree: Path | None, runtime: str | None) -> str:
        return str(tree or "installed") + (f" --runtime {runtime}" if runtime else "")

    runs: dict[str, list[dict]] = {name(t, r): [] for t in trees for r in runtimes}
    for _ in range(args.repeats):
        for tree in trees:
            for runtime in runtimes:
                model, times = play(args, tree, runtime)
                runs[name(tree, runtime)].append(figures(times))
    by_tree = {
        t: {k: round(float(np.median([r[k] for r in rs])), 1) for k in rs[0]}
        for t, rs in runs.items()
    }
    record = {
        "benchmark": "explorer edit round trip (slider move -> PNG)",
        "model": model["checkpoint"], "image_shape": model["image_shape"],
        "edits": args.edits, "warmup": args.warmup, "server_threads": args.threads,
        **next(iter(by_tree.values())),  # the first tree's medians
        "trees": {t: {"commit": commit_of(Path(t.split(" --")[0]))
                      if not t.startswith("installed") else None, **f,
                      "runs": runs[t]} for t, f in by_tree.items()},
        "machine": machine(), "command": command_line(),
    }  # fmt: skip
    print(f"{machine_line(record['machine'])}, server threads {args.threads}; medians of "
          f"{args.repeats} server(s) per tree")  # fmt: skip
    print(f"{'server':<34} {'edits':>5} {'p50 ms':>7} {'p95 ms':>7} {'max ms':>7}")
    for t, f in by_tree.items():
        print(f"{t[-34:]:<34} {args.edits:>5} {f['p50_ms']:>7} {f['p95_ms']:>7} {f['max_ms']:>7}")
    print(json.dumps(record))
    if args.out:
        Path(args.out).write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
