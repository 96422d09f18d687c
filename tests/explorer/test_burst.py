"""The explorer's server under the burst of ``benchmarks/bench_burst.py``, run as it is: eight
uploads of 35-megapixel PNGs at once while the uploaded photo is edited and the page asked for.
Every request is answered, the server's peak memory stays under 2 GB, and an edit still
answers afterwards (the timings it prints are the benchmark's, not asserted here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("starlette", reason="the explorer is the glowflow[serve] extra")
BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_burst.py"
PEAK_MB = 2048


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc for memory")
def test_a_burst_of_huge_uploads_is_answered_within_the_memory_bound(tmp_path):
    out = tmp_path / "burst.json"
    r = subprocess.run(
        [sys.executable, str(BENCH), "--uploads", "8", "--megapixels", "35", "--timeout", "240",
         "--out", str(out)],
        capture_output=True, text=True, timeout=420, cwd=BENCH.parent,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    record = json.loads(out.read_text())
    answers = record["answers"]
    assert answers["upload"]["count"] == 8 and answers["upload"]["statuses"] == [200]
    for kind in ("GET /", "GET /api/images/ID", "edit", "edit after"):
        assert answers[kind]["count"] >= 1 and answers[kind]["statuses"] == [200], kind
    assert record["server_alive"] and not record["timed_out"] and not record["bad"]
    assert record["peak_memory_mb"] <= PEAK_MB, record["peak_memory_mb"]
    print(
        f"burst: worst GET / {answers['GET /']['worst_ms']} ms, peak {record['peak_memory_mb']} MB"
    )
