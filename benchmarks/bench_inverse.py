"""What computing every 1x1 convolution's inverse at each use costs, against a perfect cache.

glowflow computes ``W^-1`` (float64, then cast) wherever the inverse flow runs: every decode
and sample, and every backward pass of memory-saving training. This times, in one process with
the two taking turns, the same call with the inverses computed as glowflow does and with them
handed over ready-made (what a cache that is never stale would save), and prints a table and a
JSON line:

    python benchmarks/bench_inverse.py --out benchmarks/results/inverse.json

Cases: the ports benchmark's model (32x32x3, L=3, K=8, width 256) sampling 1 and 64 images and
taking a memory-saving training step on 64, and the bundled ``celeba64`` model decoding 1
image (the explorer's edit). Before the memory-saving step the process calls
``glowflow.train.reuse_freed_memory()``, as glowflow advises for a training loop of one's own,
and the setting stays for the decode after it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from unittest import mock

import torch
from common import command_line, commit_of, machine, machine_line

from glowflow import Glow
from glowflow.nn import invconv
from glowflow.train import reuse_freed_memory


def timed(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def ready_inverses(model: Glow):
    """A stand-in for ``inverse_weight`` that returns each layer's inverse computed beforehand
    (exact for these unchanged weights: the cost a perfect cache leaves)."""
    table = {}
    for m in model.modules():
        if isinstance(m, (invconv.InvConv1x1, invconv.InvConv1x1LU)):
            w = m.weight() if callable(m.weight) else m.weight
            table[(tuple(w.shape), float(w.detach().double().sum()))] = invconv.inverse_weight(
                w.detach()
            )

    def lookup(weight: torch.Tensor) -> torch.Tensor:
        return table[(tuple(weight.shape), float(weight.detach().double().sum()))]

    return lookup


def compare(name: str, model: Glow, call, repeats: int) -> dict:
    """Median seconds of ``call()`` with inverses computed, and with them ready-made."""
    fast = ready_inverses(model)
    call()  # warm-up
    with mock.patch.object(invconv, "inverse_weight", fast):
        call()
    plain, cached = [], []
    for _ in range(repeats):  # in turns, so that machine noise falls on both
        plain += timed(call, 1)
        with mock.patch.object(invconv, "inverse_weight", fast):
            cached += timed(call, 1)
    t_plain, t_cached = statistics.median(plain), statistics.median(cached)
    layers = sum(isinstance(m, (invconv.InvConv1x1, invconv.InvConv1x1LU)) for m in model.modules())
    return {"case": name, "layers": layers, "computed_ms": 1e3 * t_plain,
            "ready_ms": 1e3 * t_cached, "ratio": t_plain / t_cached}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rows = []
    ports = Glow((3, 32, 32), levels=3, depth=8, hidden_channels=256).eval()
    ports.initialize(torch.rand(64, 3, 32, 32) - 0.5)
    g = torch.Generator()
    for n in (1, 64):

        def sample(n: int = n) -> None:
            ports.sample(n, temperature=0.7, generator=g.manual_seed(0))

        rows.append(compare(f"ports model, sample {n}", ports, sample, args.repeats))
    saving = Glow((3, 32, 32), levels=3, depth=8, hidden_channels=256, memory_saving=True)
    saving.load_state_dict(ports.state_dict())
    reuse_freed_memory()  # before a memory-saving model trains on a CPU
    x = torch.rand(64, 3, 32, 32) - 0.5

    def train_step() -> None:
        saving.zero_grad(set_to_none=True)
        (-saving.log_prob(x).mean()).backward()

    rows.append(compare("ports model, memory-saving step, batch 64", saving.train(), train_step,
                        max(3, args.repeats // 3)))  # fmt: skip
    celeba = Glow.from_pretrained("celeba64")
    eps = torch.randn(1, celeba.num_dims, generator=g.manual_seed(1))
    rows.append(compare("celeba64, decode 1", celeba,
                        lambda: celeba.decode(eps, temperature=0.7), args.repeats))  # fmt: skip
    record = {
        "machine": machine(args.threads),
        "glowflow_commit": commit_of(),
        "command": command_line(),
        "rows": rows,
    }
    print(machine_line(record["machine"]))
    print("| case | 1x1 layers | inverses computed, ms | ready-made, ms | ratio |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['case']} | {r['layers']} | {r['computed_ms']:.1f} | {r['ready_ms']:.1f} "
              f"| {r['ratio']:.3f}x |")  # fmt: skip
    print(json.dumps(record))
    if args.out:
        args.out.write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
