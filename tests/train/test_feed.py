"""A run's batches: drawn from the seed and the step alone, split exactly between processes,
the same whether made in the training process or ahead by a store's workers."""

from __future__ import annotations

import pytest
import torch
from conftest import small_config

from glowflow.data.batches import BatchOrder
from glowflow.data.datasets import load_dataset
from glowflow.data.prepare import prepare_store
from glowflow.distributed import DistInfo
from glowflow.train.feed import RunBatches

CPU = torch.device("cpu")
ALONE = DistInfo()  # one process


def batches(cfg, data, dist=ALONE, num_classes=None) -> RunBatches:
    global_batch = cfg.batch_size * dist.world_size
    order = BatchOrder(len(data), global_batch, cfg.seed)
    model_config = cfg.model_config(data.image_shape, num_classes)
    return RunBatches(data, order, cfg, model_config, dist, CPU, torch.float32)


def test_a_steps_batch_depends_on_the_seed_and_step_alone(digits_npz):
    cfg = small_config(digits_npz, hflip=True)
    data = load_dataset(cfg.dataset)
    before = torch.get_rng_state()
    x, y = batches(cfg, data).step(7)
    again, _ = batches(cfg, data).step(7)  # a rerun, or a resume at step 7
    assert torch.equal(torch.get_rng_state(), before)
    assert x.shape == (16, 1, 16, 16) and y is None and torch.equal(x, again)
    assert not torch.equal(x, batches(cfg, data).step(8)[0])
    other_seed, _ = batches(small_config(digits_npz, hflip=True, seed=1), data).step(7)
    assert not torch.equal(x, other_seed)
    x, y = batches(cfg, data, num_classes=10).step(7)
    assert x.shape == (16, 1, 16, 16) and y is None  # labels only for a class-conditional model
    cond = small_config(digits_npz, y_condition=True)
    _, y = batches(cond, data, num_classes=10).step(7)
    assert y.shape == (16,) and y.dtype == torch.int64


def test_the_processes_slices_make_up_the_one_process_batch(digits_npz):
    data = load_dataset(f"npz:{digits_npz}")
    whole, _ = batches(small_config(digits_npz, batch_size=16, hflip=True), data).step(3)
    half = small_config(digits_npz, batch_size=8, hflip=True)
    parts = [batches(half, data, DistInfo(rank=r, world_size=2)).step(3)[0] for r in (0, 1)]
    assert torch.equal(torch.cat(parts), whole)


def test_the_init_batch_is_the_same_for_every_process_and_timing_takes_no_steps_draws(
    digits_npz,
):
    cfg = small_config(digits_npz, init_batch_size=200)
    data = load_dataset(cfg.dataset)
    x, _ = batches(cfg, data).init_batch()
    assert x.shape == (96, 1, 16, 16)  # at most the whole set
    other, _ = batches(cfg, data, DistInfo(rank=1, world_size=2)).init_batch()
    assert torch.equal(x, other)
    timing, _ = batches(cfg, data).timing_batch(0)
    step, _ = batches(cfg, data).step(0)
    assert not torch.equal(timing, step)  # the same images, noise of its own
    assert torch.equal((timing + 0.5).mul(256).floor(), (step + 0.5).mul(256).floor())


@pytest.mark.parametrize("workers", [0, 1])
def test_a_stores_batches_are_those_of_the_same_images_in_memory(digits_npz, tmp_path, workers):
    prepare_store(f"npz:{digits_npz}", tmp_path / "store", shard_size=40)
    cfg = small_config(digits_npz, data_workers=workers, dataset=f"store:{tmp_path / 'store'}")
    store = batches(cfg, load_dataset(cfg.dataset))
    memory = batches(cfg, load_dataset(f"npz:{digits_npz}"))
    store.start(2)
    try:
        for step in (2, 3, 4, 5, 6):  # across an epoch's end (6 steps an epoch)
            assert torch.equal(store.step(step)[0], memory.step(step)[0]), step
    finally:
        store.stop()
