"""The comparison with the ports, generated from a committed benchmark record.

    python benchmarks/speed_table.py benchmarks/results/ports.json --readme docs/performance.md

prints the table and, with ``--readme``, replaces the text between the page's
``<!-- ports-table -->`` and ``<!-- /ports-table -->`` markers with it, so that every figure
there comes from the record (and the record names the command that made it).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from common import write_between_markers

MARKER = "ports-table"  # docs/performance.md's <!-- ports-table --> ... <!-- /ports-table -->
NAMES = {
    "glowflow": "glowflow",
    "glowflow-ms": "glowflow, memory saving",
    "rosinality": "rosinality/glow-pytorch",
    "y0ast": "y0ast/Glow-PyTorch",
}
STATE_BYTES_PER_PARAM = 16  # weights, gradients and Adam's two moments, float32


def is_port(impl: str) -> bool:
    """Whether a record's row is one of the ports (not glowflow in one of its settings)."""
    return not impl.startswith("glowflow")


def activation_mb(row: dict, k: str) -> float | None:
    """Peak RSS minus the parameter state, in MB."""
    rss, params = row.get(f"peak_rss_mb_k{k}"), row.get(f"params_k{k}")
    if rss is None or params is None:
        return None
    return rss - params * STATE_BYTES_PER_PARAM / 2**20


def table(record: dict) -> str:
    rows = record["rows"]
    ports = [r for r in rows if is_port(r["impl"])]
    best_train = max((r["train_img_s"] for r in ports), default=None)
    best_sample = max((r["sample_img_s"] for r in ports), default=None)
    depths = [k[len("peak_rss_mb_k") :] for k in rows[0] if k.startswith("peak_rss_mb_k")]
    m = record["machine"]
    lines = [
        f"Machine: {m['cpu']} ({', '.join(m['flags'])}), {m['threads']} threads, torch "
        f"{m['torch']}; `torch.mm` {m['mm_gflops']['fp32']} GFLOP/s fp32, "
        f"{m['mm_gflops']['bf16']} bf16. Command: `{record['command']}`.",
        "",
        "| implementation | train img/s | vs fastest port | sample img/s | vs fastest port | "
        + " | ".join(f"peak RSS MB, K={k}" for k in depths)
        + " | K=32 / K=8, less parameter state |",
        "|---" * (5 + len(depths) + 1) + "|",
    ]

    def ratio(value, best):
        return f"{value / best:.2f}x" if best else ""

    for r in rows:
        growth = ""
        low, high = activation_mb(r, "8"), activation_mb(r, "32")
        if low and high:
            growth = f"{high / low:.2f}x"
        peaks = " | ".join(
            f"{r[f'peak_rss_mb_k{k}']:.0f}" if r.get(f"peak_rss_mb_k{k}") else "" for k in depths
        )
        lines.append(
            f"| {NAMES.get(r['impl'], r['impl'])} | {r['train_img_s']:.1f} | "
            f"{ratio(r['train_img_s'], best_train)} | {r['sample_img_s']:.1f} | "
            f"{ratio(r['sample_img_s'], best_sample)} | {peaks} | {growth} |"
        )
    return "\n".join(lines + ["", *aims(record)])


def aims(record: dict) -> list[str]:
    """One line per aim, with the record's figure and whether it is met."""
    rows = {r["impl"]: r for r in record["rows"]}
    ports = [r for name, r in rows.items() if is_port(name)]
    if "glowflow" not in rows or not ports:
        return ["The aims need glowflow and at least one port in the record."]
    plain, saving = rows["glowflow"], rows.get("glowflow-ms")
    checks = [
        ("training, fp32, against the fastest port", plain["train_img_s"]
         / max(r["train_img_s"] for r in ports), 1.2, True),
        ("sampling (T=0.7) against the fastest port", plain["sample_img_s"]
         / max(r["sample_img_s"] for r in ports), 1.3, True),
    ]  # fmt: skip
    if saving:
        low, high = activation_mb(saving, "8"), activation_mb(saving, "32")
        checks.append(("memory saving, training speed against ordinary backprop",
                       saving["train_img_s"] / plain["train_img_s"], 0.7, True))  # fmt: skip
        if low and high:
            checks.append(("memory saving, activation memory at K=32 over K=8",
                           high / low, 1.2, False))  # fmt: skip
    return [
        f"- {what}: {value:.2f}x (aim {'at least' if up else 'at most'} {aim}x): "
        + ("met" if (value >= aim if up else value <= aim) else "**not met**")
        for what, value, aim, up in checks
    ]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("record", type=Path)
    p.add_argument("--readme", type=Path)
    args = p.parse_args()
    text = table(json.loads(args.record.read_text()))
    print(text)
    if args.readme:
        write_between_markers(args.readme, MARKER, text)


if __name__ == "__main__":
    main()
