"""glibc keeps freed memory for reuse once a memory-saving model trains on the CPU."""

from __future__ import annotations

import os
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


def _page_faults(memory_saving: str, **env: str) -> int:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    clean.pop("GLIBC_TUNABLES", None)
    out = subprocess.run([sys.executable, "-c", SCRIPT, memory_saving], capture_output=True,
                         text=True, check=True, env={**clean, **env})  # fmt: skip
    return int(out.stdout.strip().splitlines()[-1])


pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the setting is glibc's")


def test_memory_saving_training_makes_freed_blocks_reused_not_faulted_in_again():
    ordinary, saving = _page_faults("off"), _page_faults("on")
    # by default each 64 MiB block is mapped afresh and faulted in 5 times over; kept for
    # reuse, only the first one is faulted in (the page size does not matter to the ratio)
    assert saving * 3 < ordinary


def test_malloc_settings_of_the_users_environment_are_left_alone():
    chosen = _page_faults("on", MALLOC_MMAP_THRESHOLD_="65536")  # blocks handed back at once
    assert chosen > 3 * _page_faults("on")
