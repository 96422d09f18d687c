"""The processes of a job agree on one precision."""

from __future__ import annotations

import torch

from glowflow import distributed
from glowflow.distributed import DistInfo
from glowflow.train.autotune import agree_precision

CPU = torch.device("cpu")


def test_one_process_keeps_its_choice():
    assert agree_precision("bf16", "faster", DistInfo(), CPU) == ("bf16", "faster")
    assert agree_precision("fp32", "slower", DistInfo(), CPU) == ("fp32", "slower")


def test_bf16_only_when_every_process_chose_it(monkeypatch):
    job = DistInfo(rank=0, world_size=2)
    for other_vote, want in ((1.0, "bf16"), (0.0, "fp32")):
        monkeypatch.setattr(distributed, "all_reduce_sum", lambda t, info, v=other_vote: t + v)
        choice, why = agree_precision("bf16", "bf16 ran 1.4x as fast", job, CPU)
        assert choice == want
        disagreed = why.endswith("; not every process found bf16 faster")
        assert disagreed == (want == "fp32")
    choice, why = agree_precision("fp32", "slower here", job, CPU)
    assert (choice, why) == ("fp32", "slower here")
