"""glowflow against the two most used PyTorch ports of Glow, measured side by side in one run.

The ports are imported at run time from a folder the user names (``--peers-root``), never
copied here; each is used through its own classes, as its training script does:

- ``rosinality/glow-pytorch`` at commit 97081ff115a694cf04aeedbd58447f33d242c879
  (folder ``PEERS/rosinality+glow-pytorch`` or ``PEERS/glow-pytorch``);
- ``y0ast/Glow-PyTorch`` at commit 13c7b013dde32600e732416f2ed15438d686636f
  (folder ``PEERS/y0ast+Glow-PyTorch`` or ``PEERS/Glow-PyTorch``).

Without them the benchmark measures glowflow alone and says so. Every measurement runs in a
fresh process (so its peak memory is its own and no allocator state carries over); the
implementations take turns, repetition by repetition, and each figure is the median over the
repetitions of a median over at least five timed steps after warm-up. glowflow is measured as
a Python user calls it: ``Glow(...)`` with its defaults, ``initialize``, ``log_prob``,
``backward`` and ``torch.optim.Adam``; ``sample(n, temperature=...)``; with memory saving
(``glowflow-ms``) on a CPU it first calls ``glowflow.train.reuse_freed_memory()``, as the
library advises a user who trains such a model in a loop of their own.

    python benchmarks/bench_ports.py --peers-root /tmp/peers --out benchmarks/results/ports.json

The configuration is the same for all: 32x32x3 images, L=3, K=8 (and 16, 32 for memory), width
256, LU-decomposed 1x1 convolutions, affine coupling, batch 64, fp32. Peak memory
(``peak_rss_mb``) is VmHWM, the high-water mark of the resident set of the training process's
own address space (``/proc/self/status``), read after its warm-up and timed steps: everything
that process held at its peak (the interpreter, torch, the model, its gradients, Adam's state
and the activations), with the default glibc allocator settings and minus nothing. ``params``
lets a reader subtract the parameter state (16 bytes a parameter: weights, gradients and Adam's
two moments).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

from common import (
    SINGLE,
    FreshProcessError,
    command_line,
    commit_of,
    machine,
    machine_line,
    mm_flops_per_s,
    peak_rss_mb,
    reply,
    run_fresh,
)

PORTS = {
    "rosinality": (("rosinality+glow-pytorch", "glow-pytorch"),
                   "97081ff115a694cf04aeedbd58447f33d242c879"),
    "y0ast": (("y0ast+Glow-PyTorch", "Glow-PyTorch"), "13c7b013dde32600e732416f2ed15438d686636f"),
}  # fmt: skip
IMPLEMENTATIONS = ("glowflow", "glowflow-ms", *PORTS)  # -ms: Glow(..., memory_saving=True)


# ----------------------------------------------------------------------------- the adapters
def _import(name: str, folder: Path, module: str):
    """Import ``folder/module.py`` under a private name (the ports both call theirs model.py)."""
    sys.path.insert(0, str(folder))
    try:
        path = folder / f"{module}.py"
        spec = importlib.util.spec_from_file_location(f"peer_{name}_{module}", path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod
    finally:
        sys.path.remove(str(folder))


def find_port(root: Path | None, name: str) -> Path | None:
    if root is None:
        return None
    for folder in PORTS[name][0]:
        if (root / folder / "model.py").is_file():
            return root / folder
    return None


class GlowflowAdapter:
    def __init__(self, cfg: dict, root, memory_saving: bool = False):
        from glowflow import Glow

        self.model = Glow((3, 32, 32), levels=cfg["levels"], depth=cfg["depth"],
                          hidden_channels=cfg["width"], memory_saving=memory_saving)  # fmt: skip
        self.n_bits = 8
        on_cpu = cfg.get("device", "cpu").split(":")[0] == "cpu"
        if memory_saving and cfg["kind"] == "train" and on_cpu:
            from glowflow.train import reuse_freed_memory

            reuse_freed_memory()  # what a user's own training loop of such a model does first

    def initialize(self, x):
        self.model.initialize(x)

    def loss(self, x):
        return -self.model.log_prob(x).mean()

    def sample(self, n: int, temperature: float):
        return self.model.sample(n, temperature=temperature)


class RosinalityAdapter:
    """rosinality's Glow: its coupling width is a default argument (512), set here to the
    benchmark's width; its loss is its training script's, in nats per image."""

    def __init__(self, cfg: dict, root: Path):
        m = _import("rosinality", find_port(root, "rosinality"), "model")
        init = m.AffineCoupling.__init__
        init.__defaults__ = (cfg["width"],) + init.__defaults__[1:]
        self.m = m
        self.model = m.Glow(3, cfg["depth"], cfg["levels"], affine=True, conv_lu=True)
        self.shapes = None

    def initialize(self, x):
        with self.m.torch.no_grad():
            _, _, z = self.model(x)  # its actnorms initialise on the first batch
        self.shapes = [t.shape[1:] for t in z]

    def loss(self, x):
        log_p, logdet, _ = self.model(x)
        return -(log_p + logdet).mean()

    def sample(self, n: int, temperature: float):
        torch = self.m.torch
        device = next(self.model.parameters()).device
        with torch.no_grad():
            z = [torch.randn(n, *s, device=device) * temperature for s in self.shapes]
            return self.model.reverse(z)


class Y0astAdapter:
    """y0ast's Glow with the options of its CIFAR-10 command (actnorm scale 1, learned top,
    no class conditioning); its forward returns bits/dim, which is the loss."""

    def __init__(self, cfg: dict, root: Path):
        m = _import("y0ast", find_port(root, "y0ast"), "model")
        self.torch = m.torch
        self.model = m.Glow((32, 32, 3), cfg["width"], cfg["depth"], cfg["levels"], 1.0,
                            "invconv", "affine", True, 10, True, False)  # fmt: skip
        self.modules = _import("y0ast", find_port(root, "y0ast"), "modules")

    def initialize(self, x):
        with self.torch.no_grad():
            self.model(x, None)  # actnorm initialises on the first batch

    def loss(self, x):
        _, bpd, _ = self.model(x, None)
        return bpd.mean()

    def sample(self, n: int, temperature: float):
        with self.torch.no_grad():
            mean, logs = self.model.prior(
                self.torch.empty(n, 1, device=self.model.prior_h.device), None
            )
            z = self.modules.gaussian_sample(mean, logs, temperature)
            return self.model(z=z, temperature=temperature, reverse=True)


ADAPTERS = {
    "glowflow": GlowflowAdapter,
    "glowflow-ms": lambda cfg, root: GlowflowAdapter(cfg, root, memory_saving=True),
    "rosinality": RosinalityAdapter,
    "y0ast": Y0astAdapter,
}


# ----------------------------------------------------------------------------- one process
def synthetic_batch(batch: int):
    """Dequantised uniform noise images in [-0.5, 0.5): the same for every implementation."""
    import torch

    g = torch.Generator().manual_seed(0)
    return (torch.randint(0, 256, (batch, 3, 32, 32), generator=g).float() + torch.rand(
        batch, 3, 32, 32, generator=g)) / 256 - 0.5  # fmt: skip


def timed_steps(cfg: dict, step: Callable[[], Any], sync: Callable[[], None]) -> tuple[list, Any]:
    """The seconds of each of ``cfg["steps"]`` calls of ``step`` after ``cfg["warmup"]`` untimed
    ones, and what the last call returned."""
    times, out = [], None
    for k in range(cfg["warmup"] + cfg["steps"]):
        start = time.perf_counter()
        out = step()
        sync()
        if k >= cfg["warmup"]:
            times.append(time.perf_counter() - start)
    return times, out


def run_single(cfg: dict) -> dict:
    """One implementation's training or sampling figures, in this process."""
    import torch

    torch.set_num_threads(cfg["threads"])
    torch.manual_seed(0)
    device = torch.device(cfg.get("device", "cpu"))
    adapter = ADAPTERS[cfg["impl"]](cfg, Path(cfg["root"]) if cfg["root"] else None)
    model = adapter.model.to(device)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    params = sum(p.numel() for p in model.parameters())
    x = synthetic_batch(cfg["batch"]).to(device)
    adapter.initialize(x)
    out = {"impl": cfg["impl"], "kind": cfg["kind"], "depth": cfg["depth"], "params": params}
    if cfg["kind"] == "train":
        opt = torch.optim.Adam(model.parameters(), lr=1e-4)

        def step():
            loss = adapter.loss(x)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            return loss

        times, loss = timed_steps(cfg, step, sync)
        out["images_per_s"] = cfg["batch"] / statistics.median(times)
        out["loss_finite"] = bool(math.isfinite(float(loss.detach())))
        out["peak_rss_mb"] = peak_rss_mb()
        if device.type == "cuda":
            out["peak_cuda_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        model.eval()
        times, images = timed_steps(
            cfg, lambda: adapter.sample(cfg["batch"], cfg["temperature"]), sync
        )
        out["images_per_s"] = cfg["batch"] / statistics.median(times)
        out["finite_fraction"] = float(torch.isfinite(images).float().mean())
    return out


def spawn(cfg: dict) -> dict:
    """``run_single(cfg)`` in a fresh process with the default allocator, as a user has it."""
    env = {**os.environ, "OMP_NUM_THREADS": str(cfg["threads"])}
    for var in ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "LD_PRELOAD"):
        env.pop(var, None)
    try:
        return run_fresh(__file__, cfg, env)
    except FreshProcessError as e:
        what = f"{cfg['impl']} {cfg['kind']} K={cfg['depth']}"
        raise SystemExit(f"{what} failed:\n{e.stderr}") from None


# ----------------------------------------------------------------------------- the table
def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--peers-root", type=Path, help="folder holding the ports' checkouts")
    p.add_argument("--repeats", type=int, default=5, help="processes per figure, interleaved")
    p.add_argument("--steps", type=int, default=5, help="timed steps per process")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--memory-depths", default="8,16,32")
    p.add_argument("--only", default=",".join(IMPLEMENTATIONS))
    p.add_argument("--out", type=Path, help="write the JSON record here")
    p.add_argument(SINGLE, help=argparse.SUPPRESS)
    return p.parse_args()


def available(root: Path | None, only: str) -> tuple[list[str], list[str]]:
    """The implementations of ``only`` that can run, and the ports missing from ``root``."""
    impls, missing = [], []
    for name in only.split(","):
        if name.startswith("glowflow") or find_port(root, name):
            impls.append(name)
        else:
            missing.append(name)
    return impls, missing


def describe_machine(threads: int) -> dict:
    """The machine's facts with its ``torch.mm`` rates at ``threads`` threads, printed."""
    import torch

    facts = machine(threads)
    torch.set_num_threads(threads)
    facts["mm_gflops"] = {"fp32": round(mm_flops_per_s(torch.float32) / 1e9, 1),
                          "bf16": round(mm_flops_per_s(torch.bfloat16) / 1e9, 1)}  # fmt: skip
    print(f"{machine_line(facts)}, torch.mm fp32 {facts['mm_gflops']['fp32']} GFLOP/s, "
          f"bf16 {facts['mm_gflops']['bf16']} GFLOP/s")  # fmt: skip
    return facts


def measure(args: argparse.Namespace, impls: list[str]) -> tuple[dict, list[dict]]:
    """Every process's figures, the implementations taking turns; and the shared settings."""
    base = {"levels": 3, "width": 256, "batch": 64, "threads": args.threads, "temperature": 0.7,
            "warmup": args.warmup, "steps": args.steps, "device": args.device,
            "root": str(args.peers_root) if args.peers_root else None}  # fmt: skip
    jobs = [("train", 8), ("sample", 8)]
    jobs += [("train", int(k)) for k in args.memory_depths.split(",") if int(k) != 8]
    runs: list[dict] = []
    for rep in range(args.repeats):
        for kind, depth in jobs:
            if depth != 8 and rep > 0:
                continue  # deeper models: one process each, for their memory
            for impl in impls:
                r = spawn({**base, "impl": impl, "kind": kind, "depth": depth})
                peak = f"  peak {r['peak_rss_mb']:.0f} MB" if "peak_rss_mb" in r else ""
                print(f"  rep {rep} {impl:<10} {kind:<6} K={depth:<2} "
                      f"{r['images_per_s']:7.1f} img/s{peak}", flush=True)  # fmt: skip
                runs.append(r)
    return base, runs


def summarise(runs: list[dict], impls: list[str], depths: list[str]) -> list[dict]:
    """One row per implementation: the median of each figure over its processes."""

    def median(impl, kind, depth, key):
        vals = [r[key] for r in runs if (r["impl"], r["kind"], r["depth"]) == (impl, kind, depth)]
        return statistics.median(vals) if vals else None

    rows = []
    for impl in impls:
        row = {"impl": impl, "train_img_s": median(impl, "train", 8, "images_per_s"),
               "sample_img_s": median(impl, "sample", 8, "images_per_s")}  # fmt: skip
        for k in depths:
            row[f"peak_rss_mb_k{k}"] = median(impl, "train", int(k), "peak_rss_mb")
            row[f"params_k{k}"] = median(impl, "train", int(k), "params")
        rows.append(row)
    return rows


def print_table(rows: list[dict], depths: list[str]) -> None:
    print(f"\n{'implementation':<14} {'train img/s':>11} {'sample img/s':>12} "
          + " ".join(f"{'RSS MB K=' + k:>12}" for k in depths))  # fmt: skip
    for row in rows:
        peaks = " ".join(f"{row[f'peak_rss_mb_k{k}']:>12.0f}" for k in depths)
        print(f"{row['impl']:<14} {row['train_img_s']:>11.1f} {row['sample_img_s']:>12.1f} {peaks}")


def main() -> None:
    args = parse_args()
    if args.single:
        reply(run_single(json.loads(args.single)))
        return
    impls, missing = available(args.peers_root, args.only)
    facts = describe_machine(args.threads)
    for name in missing:
        print(f"note: {name} is not under --peers-root ({args.peers_root}): skipped; check out "
              f"{PORTS[name][1]} as {PORTS[name][0][0]}")  # fmt: skip
    base, runs = measure(args, impls)
    depths = args.memory_depths.split(",")
    rows = summarise(runs, impls, depths)
    print_table(rows, depths)
    record = {"benchmark": "glowflow vs ports", "machine": facts, "config": base,
              "glowflow": commit_of(), "peak_memory": "VmHWM of the training process",
              "ports": {n: PORTS[n][1] for n in impls if n in PORTS}, "missing": missing,
              "rows": rows, "runs": runs, "command": command_line()}  # fmt: skip
    print(json.dumps({k: record[k] for k in ("machine", "rows")}))
    if args.out:
        args.out.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
