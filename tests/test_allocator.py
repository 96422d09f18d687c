"""glibc keeps freed memory for reuse once a memory-saving model trains on the CPU."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

SCRIPT = """
import resource, sys, torch
from glowflow import Glow
m = Glow((1, 8, 8), levels=1, depth=2, hidden_channels=8, memory_saving=sys.argv[1] == "on")
x = torch.rand(4, 1, 8, 8) - 0.5
m.initialize(x)
(-m.log_prob(x).mean()).backward()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    torch.ones(16 * 2**20).sum()  # a 64 MiB block: allocated, written, freed
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _page_faults(memory_saving: str) -> int:
    out = subprocess.run([sys.executable, "-c", SCRIPT, memory_saving], capture_output=True,
                         text=True, check=True)  # fmt: skip
    return int(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the setting is glibc's")
def test_memory_saving_training_makes_freed_blocks_reused_not_faulted_in_again():
    ordinary, saving = _page_faults("off"), _page_faults("on")
    # by default each 64 MiB block is mapped afresh: 5 x 16,384 pages faulted in
    assert ordinary > 4 * 16_384
    # kept for reuse, only the first one is faulted in
    assert saving < 2 * 16_384
