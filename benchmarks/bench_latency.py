"""Batch-1 latency, the explorer's case: one encode per image, one decode per slider move.

p50 and p95 of batch-1 ``encode`` (uint8 image -> latent), ``decode`` (latent -> uint8 image)
and ``edit`` (the decode of an encoded image's latent moved along a direction) for two models:

- ``celeba64``: the bundled model (64x64x3, L=4, K=8, width 128, 5 bits). glowflow runs its
  weights; the others, which cannot read them, run models of the same shape and options,
  initialised on a batch of images.
- ``ports``: the ports' configuration (32x32x3, L=3, K=8, width 256, 8 bits; LU-decomposed 1x1
  convolutions, affine coupling), every implementation initialised on the same batch.

Implementations, each in fresh processes that take turns, on ``--threads`` threads:

- ``glowflow``: eager PyTorch, as a user calls it (``encode``/``decode`` with the
  pre- and post-processing to and from uint8);
- ``glowflow-onnx``: the graphs of ``glowflow export --onnx`` in ONNX Runtime (their pre- and
  post-processing are inside them);
- ``rosinality`` (``rosinality/glow-pytorch``) and ``y0ast`` (``y0ast/Glow-PyTorch``) at the
  commits ``bench_ports.py`` names, imported at run time from ``--peers-root``, never copied;
  y0ast's reverse draws its split levels' latents itself (it takes only the top one): the same
  work;
- ``normflows`` (the package index's ``normflows``, installed for the benchmark only): a
  multi-scale Glow built from its own ``GlowBlock``, ``Squeeze``, ``Merge`` and ``GlowBase``.

Each process builds its model, warms up, then times ``--calls`` calls of each operation in turn;
the figures pool every call of every process of an implementation. Writes the JSON record and
regenerates the table of docs/performance.md between its markers:

    python benchmarks/bench_latency.py --peers-root /tmp/peers \\
        --out benchmarks/results/latency.json --readme docs/performance.md

``--from-record JSON --readme docs/performance.md`` writes the table of a committed record again.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import (
    SINGLE,
    FreshProcessError,
    command_line,
    commit_of,
    machine,
    machine_line,
    reply,
    run_fresh,
    write_between_markers,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_ports import PORTS, _import, find_port  # noqa: E402

MODELS = {
    "celeba64": {"shape": (3, 64, 64), "levels": 4, "depth": 8, "width": 128, "n_bits": 5},
    "ports": {"shape": (3, 32, 32), "levels": 3, "depth": 8, "width": 256, "n_bits": 8},
}
OPERATIONS = ("encode", "decode", "edit")
IMPLEMENTATIONS = ("glowflow", "glowflow-onnx", "rosinality", "y0ast", "normflows")
OURS = ("glowflow", "glowflow-onnx")


# ----------------------------------------------------------------------------- the adapters
def init_batch(spec: dict, n: int = 16):
    """uint8 images ``(n, C, H, W)``: the same for every implementation (celeba64's gallery
    faces for that model, seeded uniform noise for the other)."""
    import torch

    if spec["name"] == "celeba64":
        from glowflow.hub.gallery import load_gallery
        from glowflow.hub.names import resolve_pretrained

        return load_gallery(resolve_pretrained("celeba64")).images[:n]
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (n, *spec["shape"]), generator=g, dtype=torch.uint8)


def to_unit(images, n_bits: int):
    """uint8 -> the ports' input range [-0.5, 0.5), at the centre of each bin."""
    bins = 2**n_bits
    return (images.float().div(2 ** (8 - n_bits)).floor() + 0.5) / bins - 0.5


def to_uint8(x, n_bits: int):
    """The ports' output range -> uint8, as glowflow's postprocess does."""
    bins = 2**n_bits
    return ((x + 0.5) * bins).floor().clamp(0, bins - 1).mul(2 ** (8 - n_bits)).byte()


class GlowflowEager:
    def __init__(self, spec: dict, folder: Path):
        from glowflow import load_model, postprocess, preprocess

        self.model = load_model(folder).model.float()
        self.pre, self.post, self.n_bits = preprocess, postprocess, spec["n_bits"]

    def encode(self, image):
        return self.model.encode(self.pre(image, self.n_bits, dequantize=False))

    def decode(self, z):
        return self.post(self.model.decode(z), self.n_bits)


class GlowflowOnnx:
    def __init__(self, spec: dict, folder: Path, threads: int):
        import numpy as np
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.enc, self.dec = (ort.InferenceSession(str(folder / f"{k}.onnx"), options,
                                                   providers=["CPUExecutionProvider"])
                              for k in ("encoder", "decoder"))  # fmt: skip
        self.np = np

    def encode(self, image):
        images = image.permute(0, 2, 3, 1).numpy()
        noise = self.np.full(images.shape, 0.5, self.np.float32)
        return self.enc.run(["z"], {"images": images, "noise": noise})[0]

    def decode(self, z):
        return self.dec.run(["images"], {"z": z})[0]


class Rosinality:
    def __init__(self, spec: dict, root: Path):
        m = _import("rosinality", find_port(root, "rosinality"), "model")
        init = m.AffineCoupling.__init__
        init.__defaults__ = (spec["width"],) + init.__defaults__[1:]
        self.model = m.Glow(3, spec["depth"], spec["levels"], affine=True, conv_lu=True)
        self.n_bits = spec["n_bits"]

    def initialize(self, images):
        self.model(to_unit(images, self.n_bits))  # its actnorms initialise on the first batch

    def encode(self, image):
        return self.model(to_unit(image, self.n_bits))[2]  # log p, logdet, the latents

    def decode(self, z):
        return to_uint8(self.model.reverse(z, reconstruct=True), self.n_bits)


class Y0ast:
    def __init__(self, spec: dict, root: Path):
        m = _import("y0ast", find_port(root, "y0ast"), "model")
        c, h, w = spec["shape"]
        self.model = m.Glow((h, w, c), spec["width"], spec["depth"], spec["levels"], 1.0,
                            "invconv", "affine", True, 10, True, False)  # fmt: skip
        self.n_bits = spec["n_bits"]

    def initialize(self, images):
        self.model(to_unit(images, self.n_bits), None)

    def encode(self, image):
        return self.model(to_unit(image, self.n_bits), None)[0]  # z, bits/dim, logits

    def decode(self, z):
        return to_uint8(self.model(z=z, temperature=1.0, reverse=True), self.n_bits)


class Normflows:
    """A multi-scale Glow from normflows' blocks: at each level K ``GlowBlock`` (affine
    coupling, LU 1x1 convolution, actnorm) and a ``Squeeze``, levels joined by ``Merge``, a
    learned ``GlowBase`` prior per level."""

    def __init__(self, spec: dict, root):
        import normflows as nf

        c, h, _ = spec["shape"]
        L, K = spec["levels"], spec["depth"]
        q0, flows, merges = [], [], []
        for i in range(L):
            channels = c * 2 ** (L + 1 - i)
            level = [nf.flows.GlowBlock(channels, spec["width"], split_mode="channel",
                                        scale=True) for _ in range(K)]  # fmt: skip
            flows.append([*level, nf.flows.Squeeze()])
            if i > 0:
                merges.append(nf.flows.Merge())
                shape = (c * 2 ** (L - i), h // 2 ** (L - i), h // 2 ** (L - i))
            else:
                shape = (c * 2 ** (L + 1), h // 2**L, h // 2**L)
            q0.append(nf.distributions.GlowBase(shape))
        self.model = nf.MultiscaleFlow(q0, flows, merges, class_cond=False)
        self.n_bits = spec["n_bits"]

    def initialize(self, images):
        self.model.inverse_and_log_det(to_unit(images, self.n_bits))

    def encode(self, image):
        return self.model.inverse_and_log_det(to_unit(image, self.n_bits))[0]

    def decode(self, z):
        return to_uint8(self.model.forward_and_log_det(z)[0], self.n_bits)


def shifted(z, amount: float = 0.5):
    """``z`` moved along a fixed direction of the same layout (a tensor, a list, an array)."""
    import numpy as np
    import torch

    if isinstance(z, np.ndarray):
        return z + amount * np.random.default_rng(1).standard_normal(z.shape).astype(z.dtype)
    if isinstance(z, (list, tuple)):
        return [shifted(t, amount) for t in z]
    g = torch.Generator().manual_seed(1)
    return z + amount * torch.randn(z.shape, generator=g, dtype=z.dtype)


def run_single(cfg: dict) -> dict:
    """One implementation's batch-1 timings, in this process (milliseconds a call)."""
    import torch

    torch.set_num_threads(cfg["threads"])
    torch.manual_seed(0)
    spec = {**MODELS[cfg["model"]], "name": cfg["model"]}
    impl, folder = cfg["impl"], Path(cfg["folder"])
    root = Path(cfg["root"]) if cfg["root"] else None
    with torch.no_grad():
        if impl == "glowflow":
            adapter = GlowflowEager(spec, folder)
        elif impl.startswith("glowflow-onnx"):
            adapter = GlowflowOnnx(spec, folder, cfg["threads"])
        else:
            adapter = {"rosinality": Rosinality, "y0ast": Y0ast, "normflows": Normflows}[impl](
                spec, root
            )
            adapter.initialize(init_batch(spec))  # in training mode, as their actnorms want
            adapter.model.eval()
        image = init_batch(spec, 1)
        z = adapter.encode(image)
        moved = shifted(z)
        calls = {"encode": lambda: adapter.encode(image), "decode": lambda: adapter.decode(z),
                 "edit": lambda: adapter.decode(moved)}  # fmt: skip
        out = {"impl": impl, "model": cfg["model"]}
        for op in OPERATIONS:
            for _ in range(cfg["warmup"]):
                calls[op]()
            times = []
            for _ in range(cfg["calls"]):
                start = time.perf_counter()
                calls[op]()
                times.append(1000 * (time.perf_counter() - start))
            out[op] = times
    return out


def spawn(cfg: dict) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(cfg["threads"])}
    try:
        return run_fresh(__file__, cfg, env)
    except FreshProcessError as e:
        raise SystemExit(f"{cfg['impl']} on {cfg['model']} failed:\n{e.stderr}") from None


# ----------------------------------------------------------------------------- the record
def prepare(model: str, work: Path) -> Path:
    """The glowflow folder of ``model``: its pretrained files and ONNX graphs; the ports'
    configuration is initialised on the shared batch."""
    import torch

    from glowflow import Glow, export_onnx, preprocess

    folder = work / model
    if model == "celeba64":
        from glowflow.hub.load import load_model

        loaded = load_model("celeba64")
        loaded.model.save_pretrained(folder)
        glow = loaded.model
    else:
        spec = MODELS[model]
        torch.manual_seed(0)
        glow = Glow(spec["shape"], levels=spec["levels"], depth=spec["depth"],
                    hidden_channels=spec["width"], n_bits=spec["n_bits"])  # fmt: skip
        glow.initialize(preprocess(init_batch({**spec, "name": model}), spec["n_bits"]))
        glow.save_pretrained(folder)
    export_onnx(glow, folder)
    return folder


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summarise(runs: list[dict]) -> list[dict]:
    rows = []
    for model in MODELS:
        for impl in IMPLEMENTATIONS:
            mine = [r for r in runs if (r["model"], r["impl"]) == (model, impl)]
            if not mine:
                continue
            row = {"model": model, "impl": impl, "processes": len(mine)}
            for op in OPERATIONS:
                pooled = [t for r in mine for t in r[op]]
                row[f"{op}_p50"] = round(statistics.median(pooled), 2)
                row[f"{op}_p95"] = round(percentile(pooled, 0.95), 2)
            rows.append(row)
    return rows


def table(record: dict) -> str:
    """The table of docs/performance.md: p50 / p95 milliseconds, and how far glowflow's
    fastest batch-1 decode is ahead of the fastest other implementation's."""
    lines = [f"{machine_line(record['machine'])}; glowflow {record['glowflow']}; "
             f"{record['config']['processes']} fresh processes of {record['config']['calls']} "
             f"calls each, taking turns.", "",
             "| model | implementation | encode p50 / p95 ms | decode p50 / p95 ms | "
             "edit p50 / p95 ms |", "|---|---|---|---|---|"]  # fmt: skip
    for row in record["rows"]:
        cells = [f"{row[f'{op}_p50']:.1f} / {row[f'{op}_p95']:.1f}" for op in OPERATIONS]
        name = f"**{row['impl']}**" if row["impl"] in OURS else row["impl"]
        lines.append(f"| {row['model']} | {name} | " + " | ".join(cells) + " |")
    lines.append("")
    for model, lead in record["decode_lead"].items():
        lines.append(f"- {model}: glowflow's fastest decode ({lead['ours']}, p50 "
                     f"{lead['ours_p50']:.1f} ms) is {lead['ratio']:.2f}x the fastest other "
                     f"({lead['other']}, {lead['other_p50']:.1f} ms).")  # fmt: skip
    return "\n".join(lines)


def decode_lead(rows: list[dict]) -> dict:
    lead = {}
    for model in MODELS:
        ours = [r for r in rows if r["model"] == model and r["impl"] in OURS]
        others = [r for r in rows if r["model"] == model and r["impl"] not in OURS]
        if ours and others:
            a = min(ours, key=lambda r: r["decode_p50"])
            b = min(others, key=lambda r: r["decode_p50"])
            lead[model] = {"ours": a["impl"], "ours_p50": a["decode_p50"], "other": b["impl"],
                           "other_p50": b["decode_p50"],
                           "ratio": round(b["decode_p50"] / a["decode_p50"], 2)}  # fmt: skip
    return lead


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--peers-root", type=Path, help="folder holding the ports' checkouts")
    p.add_argument("--processes", type=int, default=3, help="fresh processes per figure")
    p.add_argument("--calls", type=int, default=40, help="timed calls per operation a process")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--only", default=",".join(IMPLEMENTATIONS))
    p.add_argument("--out", type=Path, help="write the JSON record here")
    p.add_argument("--readme", type=Path, help="regenerate the latency table of this page")
    p.add_argument("--from-record", type=Path, metavar="JSON",
                   help="measure nothing: write this record's table (to --readme)")  # fmt: skip
    p.add_argument(SINGLE, help=argparse.SUPPRESS)
    return p.parse_args()


def available(args: argparse.Namespace) -> tuple[list[str], list[str]]:
    impls, missing = [], []
    wanted = args.only.split(",")
    for name in IMPLEMENTATIONS:
        if name not in wanted:
            continue
        if name in PORTS and not find_port(args.peers_root, name):
            missing.append(name)
        elif name == "normflows" and not _has("normflows"):
            missing.append(name)
        else:
            impls.append(name)
    return impls, missing


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def main() -> None:
    args = parse_args()
    if args.single:
        reply(run_single(json.loads(args.single)))
        return
    if args.from_record:
        text = table(json.loads(args.from_record.read_text()))
        print(text)
        if args.readme:
            write_between_markers(args.readme, "latency-table", text)
        return
    impls, missing = available(args)
    facts = machine(args.threads)
    print(machine_line(facts))
    for name in missing:
        print(f"note: {name} is not available: skipped")
    runs: list[dict] = []
    root = str(args.peers_root) if args.peers_root else None
    with tempfile.TemporaryDirectory() as work:
        models = args.models.split(",")
        folders = {m: prepare(m, Path(work)) for m in models}
        for rep in range(args.processes):
            for model in models:
                for impl in impls:
                    r = spawn({"impl": impl, "model": model, "threads": args.threads,
                               "calls": args.calls, "warmup": args.warmup,
                               "folder": str(folders[model]), "root": root})  # fmt: skip
                    shown = "  ".join(f"{op} {statistics.median(r[op]):6.1f}" for op in OPERATIONS)
                    print(f"  rep {rep} {model:<8} {impl:<19} ms p50: {shown}", flush=True)
                    runs.append(r)
    rows = summarise(runs)
    record = {"benchmark": "batch-1 latency", "machine": facts, "glowflow": commit_of(),
              "config": {"threads": args.threads, "processes": args.processes,
                         "calls": args.calls, "warmup": args.warmup, "models": MODELS},
              "ports": {n: PORTS[n][1] for n in impls if n in PORTS}, "missing": missing,
              "rows": rows, "decode_lead": decode_lead(rows), "runs": runs,
              "command": command_line()}  # fmt: skip
    text = table(record)
    print("\n" + text)
    if args.out:
        args.out.write_text(json.dumps(record, indent=1) + "\n")
    if args.readme:
        write_between_markers(args.readme, "latency-table", text)


if __name__ == "__main__":
    main()
