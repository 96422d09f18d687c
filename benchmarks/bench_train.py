"""Training and sampling throughput, peak memory and FLOP efficiency of glowflow's Glow.

Each configuration runs in a fresh process, so its peak memory is its own. Prints a table and
one JSON line with every figure.

    python benchmarks/bench_train.py --preset tiny --batch-size 64 --steps 12
    python benchmarks/bench_train.py --depths 8,16,32 --precision fp32,bf16 --memory-saving off,on

Figures: training images/s (forward + loss + backward + optimiser step, median of the timed
steps after warm-up), peak memory of a training step (CPU: resident set size sampled every
millisecond, and its rise above the level before the step, measured in a second fresh process
whose allocator returns freed memory at once, see memory_probe; CUDA: max_memory_allocated),
sampling images/s at temperature 0.7, the model's FLOPs per image for one training step
(forward and backward, counted by torch's FlopCounterMode), and the achieved FLOP/s as a
fraction of this machine's torch.mm FLOP/s in the same precision, measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time

import torch

from glowflow import Glow, preprocess, preset


def device_of(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRSS:
    """Samples the resident set size in a thread while the block runs."""

    def __enter__(self):
        self.base = self.peak = rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes())
            time.sleep(0.001)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())


def mm_flops_per_s(device: torch.device, dtype: torch.dtype, n: int = 2048) -> float:
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    sync(device)
    times = []
    for _ in range(10):
        t = time.perf_counter()
        a @ b
        sync(device)
        times.append(time.perf_counter() - t)
    return 2 * n**3 / statistics.median(times)


def count_flops(model: Glow, x: torch.Tensor) -> int:
    """FLOPs of one forward and backward pass of ordinary backprop: the useful work, also
    for a memory-saving model (whose recomputation comes on top, and shows as a lower
    fraction of torch.mm)."""
    from torch.utils.flop_counter import FlopCounterMode

    plain = Glow.from_config(model.config.replace(memory_saving=False)).to(x.device)
    plain.load_state_dict(model.state_dict())
    counter = FlopCounterMode(display=False)
    with counter:
        (-plain.log_prob(x).mean()).backward()
    return counter.get_total_flops()


def run_single(cfg: dict) -> dict:
    """One configuration, in this process."""
    device = device_of(cfg["device"])
    torch.manual_seed(0)
    config = preset(cfg["preset"]).replace(
        depth=cfg["depth"], memory_saving=cfg["memory_saving"],
        **({"hidden_channels": cfg["width"]} if cfg["width"] else {}),
        **({"levels": cfg["levels"]} if cfg["levels"] else {}),
    )  # fmt: skip
    model = Glow.from_config(config).to(device)
    if cfg["channels_last"]:
        model = model.to(memory_format=torch.channels_last)
    c, h, w = config.image_shape
    b = cfg["batch_size"]
    images = torch.randint(0, 256, (b, c, h, w), dtype=torch.uint8)
    x = preprocess(images).to(device)
    if cfg["channels_last"]:
        x = x.contiguous(memory_format=torch.channels_last)
    model.initialize(x)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    bf16 = cfg["precision"] == "bf16"
    loss_fn = model.log_prob
    if cfg["compile"]:
        loss_fn = torch.compile(model.log_prob)

    def step():
        with torch.autocast(device.type, torch.bfloat16, enabled=bf16):
            loss = -loss_fn(x).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    if cfg.get("memory_probe"):  # a second process, only for the CPU's peak memory
        step()
        with PeakRSS() as rss:
            for _ in range(2):
                step()
        return {"peak_mem_mb": rss.peak / 2**20, "mem_rise_mb": (rss.peak - rss.base) / 2**20}
    for _ in range(cfg["warmup"]):
        step()
    sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    with PeakRSS() as rss:
        for _ in range(cfg["steps"]):
            t = time.perf_counter()
            step()
            sync(device)
            times.append(time.perf_counter() - t)
    step_s = statistics.median(times)
    if device.type == "cuda":
        peak, rise = torch.cuda.max_memory_allocated(device), None
    else:
        peak, rise = rss.peak, rss.peak - rss.base
    # counted after the timed steps: its ordinary backprop would otherwise leave the process's
    # resident set at the size of a full set of activations before the memory-saving ones run
    flops = count_flops(model, x) / b
    model.eval()
    sample_times = []
    with torch.autocast(device.type, torch.bfloat16, enabled=bf16):
        for _ in range(4):
            t = time.perf_counter()
            model.sample(b, temperature=0.7)
            sync(device)
            sample_times.append(time.perf_counter() - t)
    return {
        **cfg,
        "train_img_s": b / step_s,
        "step_ms": 1000 * step_s,
        "peak_mem_mb": peak / 2**20,
        "mem_rise_mb": None if rise is None else rise / 2**20,
        "sample_img_s": b / statistics.median(sample_times[1:]),
        "gflops_per_img": flops / 1e9,
        "achieved_tflop_s": flops * b / step_s / 1e12,
    }


def memory_probe(cfg: dict) -> dict:
    """Peak CPU memory of ``cfg``'s training step, from a fresh process in which glibc hands
    every block over 64 KiB back to the system when it is freed, so the resident set follows
    the live tensors (with the default allocator it keeps freed memory and the peak shows
    the history of the process, not the step). Timed apart: this allocator is slower."""
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    out = subprocess.run(
        [sys.executable, __file__, "--single", json.dumps({**cfg, "memory_probe": True})],
        capture_output=True, text=True, env=env,
    )  # fmt: skip
    if out.returncode != 0:
        print(out.stderr, file=sys.stderr)
        return {"peak_mem_mb": None, "mem_rise_mb": None}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="tiny", help="model preset (image shape, L, K, width)")
    p.add_argument("--depths", default=None, help="comma list of K (default: the preset's)")
    p.add_argument("--width", type=int, default=None, help="override hidden channels")
    p.add_argument("--levels", type=int, default=None, help="override L")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--steps", type=int, default=10, help="timed steps (median reported)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--precision", default="fp32", help="comma list of fp32, bf16")
    p.add_argument("--memory-saving", default="off", help="comma list of off, on")
    p.add_argument("--channels-last", default="off", help="comma list of off, on")
    p.add_argument("--compile", default="off", help="comma list of off, on (torch.compile)")
    p.add_argument("--device", default="auto")
    p.add_argument("--single", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.single:
        print(json.dumps(run_single(json.loads(args.single))))
        return

    device = device_of(args.device)
    depths = (
        [int(d) for d in args.depths.split(",")] if args.depths else [preset(args.preset).depth]
    )

    def flags(text: str) -> list[bool]:
        return [v.strip() == "on" for v in text.split(",")]

    peaks = {
        prec: mm_flops_per_s(device, torch.float32 if prec == "fp32" else torch.bfloat16)
        for prec in args.precision.split(",")
    }
    rows = []
    for depth in depths:
        for prec in args.precision.split(","):
            for mem in flags(args.memory_saving):
                for cl in flags(args.channels_last):
                    for comp in flags(args.compile):
                        cfg = dict(
                            preset=args.preset, depth=depth, width=args.width, levels=args.levels,
                            batch_size=args.batch_size, steps=args.steps, warmup=args.warmup,
                            precision=prec, memory_saving=mem, channels_last=cl, compile=comp,
                            device=str(device),
                        )  # fmt: skip
                        out = subprocess.run(
                            [sys.executable, __file__, "--single", json.dumps(cfg)],
                            capture_output=True, text=True,
                        )  # fmt: skip
                        if out.returncode != 0:  # report it, and measure the others
                            print(out.stderr, file=sys.stderr)
                            print(f"configuration {cfg} failed", file=sys.stderr)
                            continue
                        row = json.loads(out.stdout.strip().splitlines()[-1])
                        if device.type == "cpu":
                            row.update(memory_probe(cfg))
                        row["mm_tflop_s"] = peaks[prec] / 1e12
                        row["fraction_of_mm"] = row["achieved_tflop_s"] * 1e12 / peaks[prec]
                        rows.append(row)
    head = (f"{'K':>3} {'prec':>4} {'memsave':>7} {'ch_last':>7} {'compile':>7} "
            f"{'train img/s':>11} {'step ms':>8} {'peak MB':>8} {'rise MB':>8} "
            f"{'sample img/s':>12} {'GFLOP/img':>9} {'of mm':>6}")  # fmt: skip
    print(f"device {device}, torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"preset {args.preset}, batch {args.batch_size}; torch.mm: "
          + ", ".join(f"{k} {v / 1e12:.2f} TFLOP/s" for k, v in peaks.items()))  # fmt: skip
    print(head)
    for r in rows:
        rise = f"{r['mem_rise_mb']:8.0f}" if r["mem_rise_mb"] is not None else f"{'-':>8}"
        peak = f"{r['peak_mem_mb']:8.0f}" if r["peak_mem_mb"] is not None else f"{'-':>8}"
        print(f"{r['depth']:>3} {r['precision']:>4} {str(r['memory_saving']):>7} "
              f"{str(r['channels_last']):>7} {str(r['compile']):>7} {r['train_img_s']:11.1f} "
              f"{r['step_ms']:8.0f} {peak} {rise} {r['sample_img_s']:12.1f} "
              f"{r['gflops_per_img']:9.2f} {r['fraction_of_mm']:6.1%}")  # fmt: skip
    print(json.dumps({"device": str(device), "torch": torch.__version__, "rows": rows}))


if __name__ == "__main__":
    main()
