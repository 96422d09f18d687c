"""Training and sampling throughput, peak memory and FLOP efficiency of glowflow's Glow.

Each configuration runs in a fresh process, so its peak memory is its own. Prints a table and
one JSON line with every figure.

    python benchmarks/bench_train.py --preset tiny --batch-size 64 --steps 12
    python benchmarks/bench_train.py --depths 8,16,32 --precision fp32,bf16 --memory-saving off,on

Figures: training images/s (forward + loss + backward + optimiser step, median of the timed
steps after warm-up), peak memory of a training step (CPU: the high-water mark of the resident
set, VmHWM, reset to the resident set before the steps, and its rise above that level, measured
in a second fresh process whose allocator returns freed memory at once, see memory_probe; CUDA:
max_memory_allocated), sampling images/s at temperature 0.7, the model's FLOPs per image for
one training step (forward and backward, counted by torch's FlopCounterMode), and the achieved
FLOP/s as a fraction of this machine's torch.mm FLOP/s in the same precision, measured in the
same run. A memory-saving model on a CPU is trained as glowflow advises for a loop of one's
own: ``glowflow.train.reuse_freed_memory()`` first.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import sys
import time

import torch
from common import (
    SINGLE,
    FreshProcessError,
    PeakRSS,
    machine,
    machine_line,
    mm_flops_per_s,
    reply,
    run_fresh,
)

from glowflow import Glow, preprocess, preset
from glowflow.train import reuse_freed_memory


def device_of(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


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


def build(cfg: dict, device: torch.device) -> tuple[Glow, torch.Tensor]:
    """The configuration's model, initialised, and its batch of random images."""
    torch.manual_seed(0)
    config = preset(cfg["preset"]).replace(
        depth=cfg["depth"], memory_saving=cfg["memory_saving"],
        **({"hidden_channels": cfg["width"]} if cfg["width"] else {}),
        **({"levels": cfg["levels"]} if cfg["levels"] else {}),
    )  # fmt: skip
    model = Glow.from_config(config).to(device)
    if cfg["memory_saving"] and device.type == "cpu":
        reuse_freed_memory()  # glowflow's advice for a memory-saving model in one's own loop
    if cfg["channels_last"]:
        model = model.to(memory_format=torch.channels_last)
    images = torch.randint(0, 256, (cfg["batch_size"], *config.image_shape), dtype=torch.uint8)
    x = preprocess(images).to(device)
    if cfg["channels_last"]:
        x = x.contiguous(memory_format=torch.channels_last)
    model.initialize(x)
    model.train()
    return model, x


def sample_img_s(model: Glow, device: torch.device, b: int, bf16: bool) -> float:
    """Sampling images/s at temperature 0.7: the median of 3 timed calls after one."""
    model.eval()
    times = []
    with torch.autocast(device.type, torch.bfloat16, enabled=bf16):
        for _ in range(4):
            t = time.perf_counter()
            model.sample(b, temperature=0.7)
            sync(device)
            times.append(time.perf_counter() - t)
    return b / statistics.median(times[1:])


def run_single(cfg: dict) -> dict:
    """One configuration, in this process."""
    device = device_of(cfg["device"])
    model, x = build(cfg, device)
    b = cfg["batch_size"]
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    bf16 = cfg["precision"] == "bf16"
    loss_fn = torch.compile(model.log_prob) if cfg["compile"] else model.log_prob

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
        return {"peak_mem_mb": rss.peak, "mem_rise_mb": rss.rise}
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
        peak, rise = torch.cuda.max_memory_allocated(device) / 2**20, None
    else:
        peak, rise = rss.peak, rss.rise
    # counted after the timed steps: its ordinary backprop would otherwise leave the process's
    # resident set at the size of a full set of activations before the memory-saving ones run
    flops = count_flops(model, x) / b
    return {
        **cfg,
        "train_img_s": b / step_s,
        "step_ms": 1000 * step_s,
        "peak_mem_mb": peak,
        "mem_rise_mb": rise,
        "sample_img_s": sample_img_s(model, device, b, bf16),
        "gflops_per_img": flops / 1e9,
        "achieved_tflop_s": flops * b / step_s / 1e12,
    }


def memory_probe(cfg: dict) -> dict:
    """Peak CPU memory of ``cfg``'s training step, from a fresh process in which glibc hands
    every block over 64 KiB back to the system when it is freed, so the resident set follows
    the live tensors (with the default allocator it keeps freed memory and the peak shows
    the history of the process, not the step). Timed apart: this allocator is slower."""
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    try:
        return run_fresh(__file__, {**cfg, "memory_probe": True}, env)
    except FreshProcessError as e:
        print(e.stderr, file=sys.stderr)
        return {"peak_mem_mb": None, "mem_rise_mb": None}


def parse_args() -> argparse.Namespace:
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
    p.add_argument(SINGLE, help=argparse.SUPPRESS)
    return p.parse_args()


def configurations(args: argparse.Namespace, device: torch.device) -> list[dict]:
    """Every combination of the comma lists, one configuration each."""

    def flags(text: str) -> list[bool]:
        return [v.strip() == "on" for v in text.split(",")]

    depths = (
        [int(d) for d in args.depths.split(",")] if args.depths else [preset(args.preset).depth]
    )
    combos = itertools.product(depths, args.precision.split(","), flags(args.memory_saving),
                               flags(args.channels_last), flags(args.compile))  # fmt: skip
    return [
        dict(preset=args.preset, depth=depth, width=args.width, levels=args.levels,
             batch_size=args.batch_size, steps=args.steps, warmup=args.warmup, precision=prec,
             memory_saving=mem, channels_last=cl, compile=comp, device=str(device))
        for depth, prec, mem, cl, comp in combos
    ]  # fmt: skip


def measure(cfg: dict, device: torch.device, mm_rate: float) -> dict | None:
    """``cfg`` in a fresh process (and the CPU's memory probe in another), or None if it
    failed, which is reported so that the others are still measured."""
    try:
        row = run_fresh(__file__, cfg)
    except FreshProcessError as e:
        print(e.stderr, file=sys.stderr)
        print(f"configuration {cfg} failed", file=sys.stderr)
        return None
    if device.type == "cpu":
        row.update(memory_probe(cfg))
    row["mm_tflop_s"] = mm_rate / 1e12
    row["fraction_of_mm"] = row["achieved_tflop_s"] * 1e12 / mm_rate
    return row


def print_table(rows: list[dict]) -> None:
    print(f"{'K':>3} {'prec':>4} {'memsave':>7} {'ch_last':>7} {'compile':>7} "
          f"{'train img/s':>11} {'step ms':>8} {'peak MB':>8} {'rise MB':>8} "
          f"{'sample img/s':>12} {'GFLOP/img':>9} {'of mm':>6}")  # fmt: skip
    for r in rows:
        rise = f"{r['mem_rise_mb']:8.0f}" if r["mem_rise_mb"] is not None else f"{'-':>8}"
        peak = f"{r['peak_mem_mb']:8.0f}" if r["peak_mem_mb"] is not None else f"{'-':>8}"
        print(f"{r['depth']:>3} {r['precision']:>4} {str(r['memory_saving']):>7} "
              f"{str(r['channels_last']):>7} {str(r['compile']):>7} {r['train_img_s']:11.1f} "
              f"{r['step_ms']:8.0f} {peak} {rise} {r['sample_img_s']:12.1f} "
              f"{r['gflops_per_img']:9.2f} {r['fraction_of_mm']:6.1%}")  # fmt: skip


def main() -> None:
    args = parse_args()
    if args.single:
        reply(run_single(json.loads(args.single)))
        return
    device = device_of(args.device)
    peaks = {
        prec: mm_flops_per_s(torch.float32 if prec == "fp32" else torch.bfloat16, device, 2048)
        for prec in args.precision.split(",")
    }
    rows = []
    for cfg in configurations(args, device):
        row = measure(cfg, device, peaks[cfg["precision"]])
        if row is not None:
            rows.append(row)
    facts = machine(torch.get_num_threads())
    print(f"{machine_line(facts)}; device {device}, preset {args.preset}, batch "
          f"{args.batch_size}; torch.mm: "
          + ", ".join(f"{k} {v / 1e12:.2f} TFLOP/s" for k, v in peaks.items()))  # fmt: skip
    print_table(rows)
    print(json.dumps({"device": str(device), "torch": torch.__version__, "machine": facts,
                      "rows": rows}))  # fmt: skip


if __name__ == "__main__":
    main()
