"""The out-of-distribution table of docs/ood.md, generated from ``glowflow ood`` result files.

    python tools/ood_table.py docs/ood/*/results.json --readme docs/ood.md

prints one markdown table (a row per model, OOD set and method; from a run with another codec
than PNG only the rows of the methods that use the codec, complexity and dose, the others being
the same) and, with ``--readme``,
replaces the text between the page's ``<!-- ood-table -->`` and ``<!-- /ood-table -->``
markers with it, so that every figure there comes from a committed result file.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from common import write_between_markers  # noqa: E402

MARKER = "ood-table"  # docs/ood.md's <!-- ood-table --> ... <!-- /ood-table -->


def table(results: list[dict]) -> str:
    lines = [
        "| model | in-distribution (held out) | OOD set | method | AUROC | AUPR | FPR95 |",
        "|---|---|---|---|---|---|---|",
    ]
    for res in results:
        inside = f"{res['in_dist']['name']} ({res['in_dist']['n_evaluation']:,} of "
        inside += f"{res['in_dist']['n']:,})"
        sizes = {s["name"]: s["n"] for s in res["ood_sets"]}
        for r in res["results"]:
            method = r["method"]
            if res["codec"] != "png" and method not in ("complexity", "dose"):
                continue
            if method == "typicality":
                method += f", M={r['m']}"
            elif method == "complexity":
                method += f" ({r['codec'].upper()})"
            elif method == "dose":
                method = f"**dose** ({res['codec'].upper()})"
            lines.append(
                f"| `{res['checkpoint']}` | {inside} | {r['ood']} ({sizes[r['ood']]:,}) | "
                f"{method} | {r['auroc']:.3f} | {r['aupr']:.3f} | {r['fpr95']:.3f} |"
            )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("results", type=Path, nargs="+")
    p.add_argument("--readme", type=Path)
    args = p.parse_args()
    text = table([json.loads(path.read_text()) for path in args.results])
    print(text)
    if args.readme:
        write_between_markers(args.readme, MARKER, text)


if __name__ == "__main__":
    main()
