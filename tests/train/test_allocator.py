"""glibc keeps freed memory for reuse where a run asks for it, and only there: a model's own
forward and backward passes leave the process's malloc settings alone."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

SCRIPT = """
import resource, sys, torch
from glowflow import Glow
from glowflow.train import reuse_freed_memory
if sys.argv[1] == "asked":
    reuse_freed_memory()
m = Glow((1, 8, 8), levels=1, depth=2, hidden_channels=8, memory_saving=True)
x = torch.rand(4, 1, 8, 8) - 0.5
m.initialize(x)
(-m.log_prob(x).mean()).backward()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    torch.ones(16 * 2**20).sum()  # a 64 MiB block: allocated, written, freed
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _page_faults(setting: str, **env: str) -> int:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    clean.pop("GLIBC_TUNABLES", None)
    out = subprocess.run([sys.executable, "-c", SCRIPT, setting], capture_output=True,
                         text=True, check=True, env={**clean, **env})  # fmt: skip
    return int(out.stdout.strip().splitlines()[-1])


pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the setting is glibc's")


def test_asking_makes_freed_blocks_reused_and_a_models_own_passes_change_nothing():
    untouched, asked = _page_faults("model only"), _page_faults("asked")
    # by default each 64 MiB block is mapped afresh and faulted in 5 times over; kept for
    # reuse, only the first one is faulted in (the page size does not matter to the ratio).
    # The memory-saving model trained in both, so its passes alone did not set anything.
    assert asked * 3 < untouched


def test_malloc_settings_of_the_users_environment_are_left_alone():
    chosen = _page_faults("asked", MALLOC_MMAP_THRESHOLD_="65536")  # blocks handed back at once
    assert chosen > 3 * _page_faults("asked")
