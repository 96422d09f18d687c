"""What int8 coupling networks would cost and give: bits/dim, the round trip and batch-1 latency.

Exports a model (default the bundled celeba64) to ONNX, then quantises, with ONNX Runtime's
static QDQ quantiser (uint8 activations, per-channel int8 weights), every convolution that the
encoder and the decoder share: the coupling networks and the split priors, found as the
convolutions whose weights are identical in both graphs (a 1x1 channel mix holds ``W`` in one
and ``W^-1`` in the other, so it stays float and the flow stays a bijection). The encoder is
calibrated on ``--calibration`` gallery images; the decoder's shared convolutions are given
exactly the encoder's scales and zero points (``TensorQuantOverrides``), so both graphs compute
the same networks. Reports, on the model's gallery, the bits/dim of float32 and int8 (at the
bins' centres and with a random draw), the share of pixels that ``decode(encode(x))`` gets
wrong, and p50 batch-1 encode and decode on ``--threads`` threads, float32 and int8 taking
turns:

    python benchmarks/bench_int8.py --out benchmarks/results/int8.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from common import command_line, commit_of, machine, machine_line, write_between_markers


def session(path: Path, threads: int, optimized: Path | None = None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    if optimized is not None:  # constant-folded, so that every weight is an initializer
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.optimized_model_filepath = str(optimized)
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def conv_weights(path: Path) -> dict[str, object]:
    """The Conv nodes of a graph whose weight is a constant, keyed by the weight's digest."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    weights = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    found = {}
    for node in model.graph.node:
        if node.op_type == "Conv" and node.input[1] in weights:
            w = weights[node.input[1]]
            found[hashlib.sha256(w.tobytes() + str(w.shape).encode()).hexdigest()] = node
    return found


class Feeds:
    """ONNX Runtime's calibration reader over a list of feeds."""

    def __init__(self, feeds: list[dict]):
        self.feeds = iter(feeds)

    def get_next(self):
        return next(self.feeds, None)


def quantize(folder: Path, work: Path, images: np.ndarray, z: np.ndarray) -> int:
    """Write ``work/encoder-int8.onnx`` and ``work/decoder-int8.onnx``; the number of shared
    convolutions quantised."""
    import onnx
    from onnx import numpy_helper
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    for name in ("encoder", "decoder"):
        session(folder / f"{name}.onnx", 1, work / f"{name}-basic.onnx")
    enc, dec = conv_weights(work / "encoder-basic.onnx"), conv_weights(work / "decoder-basic.onnx")
    shared = sorted(set(enc) & set(dec))
    options = dict(quant_format=QuantFormat.QDQ, op_types_to_quantize=["Conv"],
                   activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                   per_channel=True)  # fmt: skip
    half = np.full(images.shape, 0.5, np.float32)
    feeds = [{"images": images[i : i + 1], "noise": half[i : i + 1]} for i in range(len(images))]
    quantize_static(work / "encoder-basic.onnx", work / "encoder-int8.onnx", Feeds(feeds),
                    nodes_to_quantize=[enc[h].name for h in shared], **options)  # fmt: skip
    q = onnx.load(str(work / "encoder-int8.onnx"))
    consts = {i.name: numpy_helper.to_array(i) for i in q.graph.initializer}
    params = {n.input[0]: (consts[n.input[1]], consts[n.input[2]])
              for n in q.graph.node if n.op_type == "QuantizeLinear"}  # fmt: skip
    overrides = {}
    for h in shared:
        for te, td in ((enc[h].input[0], dec[h].input[0]), (enc[h].output[0], dec[h].output[0])):
            if te in params:
                scale, zero = params[te]
                overrides[td] = [{"scale": np.array(scale, np.float32),
                                  "zero_point": np.array(zero, np.uint8)}]  # fmt: skip
    quantize_static(work / "decoder-basic.onnx", work / "decoder-int8.onnx",
                    Feeds([{"z": z[i : i + 1]} for i in range(len(z))]),
                    nodes_to_quantize=[dec[h].name for h in shared],
                    extra_options={"TensorQuantOverrides": overrides}, **options)  # fmt: skip
    return len(shared)


def p50_ms(call, calls: int, warmup: int = 5) -> float:
    for _ in range(warmup):
        call()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        call()
        times.append(1000 * (time.perf_counter() - start))
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="celeba64")
    p.add_argument("--calibration", type=int, default=16, help="gallery images to calibrate on")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--calls", type=int, default=40)
    p.add_argument("--rounds", type=int, default=3, help="float32 and int8 take turns")
    p.add_argument("--out", type=Path)
    p.add_argument("--readme", type=Path, help="write the table between its markers here")
    args = p.parse_args()
    import torch

    from glowflow import export_onnx, load_model
    from glowflow.hub.gallery import load_gallery

    torch.set_num_threads(args.threads)
    loaded = load_model(args.model)
    images = load_gallery(loaded.pretrained_dir).images.permute(0, 2, 3, 1).contiguous().numpy()
    n_bits = loaded.model.config.n_bits
    want = (images >> (8 - n_bits)) << (8 - n_bits)
    facts = machine(args.threads)
    print(machine_line(facts))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        export_onnx(loaded.model, work)
        graphs = {"float32": (session(work / "encoder.onnx", args.threads),
                              session(work / "decoder.onnx", args.threads))}  # fmt: skip
        half = np.full(images.shape, 0.5, np.float32)
        calibration = images[: args.calibration]
        z = graphs["float32"][0].run(
            ["z"], {"images": calibration, "noise": half[: len(calibration)]}
        )[0]
        shared = quantize(work, work, calibration, z)
        graphs["int8"] = (session(work / "encoder-int8.onnx", args.threads),
                          session(work / "decoder-int8.onnx", args.threads))  # fmt: skip
        drawn = np.random.default_rng(0).random(images.shape, dtype=np.float32)
        rows = {}
        for kind, (enc, dec) in graphs.items():
            row = {}
            for noise_name, noise in (("centre", half), ("drawn", drawn)):
                zs, bpd = enc.run(["z", "bpd"], {"images": images, "noise": noise})
                back = dec.run(["images"], {"z": zs})[0]
                row[f"bpd_{noise_name}"] = round(float(bpd.mean()), 4)
                row[f"wrong_pixels_{noise_name}"] = round(float((back != want).mean()), 4)
                row[f"max_error_{noise_name}"] = int(np.abs(back.astype(int) - want).max())
            rows[kind] = row
        one, centre = images[:1], half[:1]
        timings = {k: {"encode": [], "decode": []} for k in graphs}
        for _ in range(args.rounds):
            for kind, (enc, dec) in graphs.items():
                z1 = enc.run(["z"], {"images": one, "noise": centre})[0]
                calls = {"encode": lambda e=enc: e.run(["z"], {"images": one, "noise": centre}),
                         "decode": lambda d=dec, z=z1: d.run(["images"], {"z": z})}  # fmt: skip
                for op, call in calls.items():
                    timings[kind][op].append(p50_ms(call, args.calls))
        for kind in graphs:
            for op in ("encode", "decode"):
                rows[kind][f"{op}_p50_ms"] = round(statistics.median(timings[kind][op]), 2)
    print(f"{'':<8} {'bpd centre':>10} {'bpd drawn':>10} {'wrong px':>9} {'encode ms':>10} "
          f"{'decode ms':>10}")  # fmt: skip
    for kind, r in rows.items():
        print(f"{kind:<8} {r['bpd_centre']:>10.4f} {r['bpd_drawn']:>10.4f} "
              f"{r['wrong_pixels_centre']:>9.2%} {r['encode_p50_ms']:>10.2f} "
              f"{r['decode_p50_ms']:>10.2f}")  # fmt: skip
    record = {"benchmark": "int8 coupling networks", "model": args.model, "machine": facts,
              "glowflow": commit_of(), "images": len(images), "calibration": args.calibration,
              "shared_convolutions": shared, "rows": rows, "command": command_line()}  # fmt: skip
    if args.out:
        args.out.write_text(json.dumps(record, indent=1) + "\n")
    if args.readme:
        write_between_markers(args.readme, "int8-table", table(record))


def table(record: dict) -> str:
    lines = [f"{machine_line(record['machine'])}; glowflow {record['glowflow']}.", "",
             "| coupling networks | bits/dim, bins' centres | bits/dim, a random draw | "
             "pixels wrong after decode(encode(x)) | largest error, grey levels | "
             "encode p50 ms | decode p50 ms |", "|---|---|---|---|---|---|---|"]  # fmt: skip
    for kind, r in record["rows"].items():
        lines.append(f"| {kind} | {r['bpd_centre']:.4f} | {r['bpd_drawn']:.4f} | "
                     f"{r['wrong_pixels_centre']:.2%} | {r['max_error_centre']} | "
                     f"{r['encode_p50_ms']:.1f} | {r['decode_p50_ms']:.1f} |")  # fmt: skip
    return "\n".join(lines)


if __name__ == "__main__":
    main()
