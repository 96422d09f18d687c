"""Batch assembly: the order of the images, and N processes seeing what one would."""

from __future__ import annotations

import torch

from glowflow.data.batches import BatchOrder, make_batch
from glowflow.data.imagedata import ImageData


def test_every_epoch_visits_each_image_once_in_a_seeded_order():
    order = BatchOrder(n=10, global_batch=3, seed=1)
    assert order.steps_per_epoch == 3
    epoch0 = torch.cat([order.indices(s) for s in range(3)])
    assert len(set(epoch0.tolist())) == 9  # one image left over per epoch
    epoch1 = torch.cat([order.indices(s) for s in range(3, 6)])
    assert not torch.equal(epoch0, epoch1)
    again = BatchOrder(n=10, global_batch=3, seed=1)
    assert torch.equal(again.indices(4), order.indices(4))  # the same for a resumed run
    assert not torch.equal(BatchOrder(10, 3, seed=2).indices(0), order.indices(0))


def test_slices_of_a_global_batch_equal_the_whole_batch():
    data = ImageData(torch.randint(0, 256, (8, 1, 4, 4), dtype=torch.uint8), torch.arange(8))
    idx = torch.tensor([5, 1, 7, 2])

    def batch(part=None):
        g = torch.Generator().manual_seed(0)
        return make_batch(data, idx, g, n_bits=5, hflip=True, with_labels=True, part=part)

    x, y = batch()
    assert x.shape == (4, 1, 4, 4) and torch.equal(y, idx)
    assert x.min() >= -0.5 and x.max() < 0.5
    halves = [batch(slice(0, 2)), batch(slice(2, 4))]
    assert torch.equal(torch.cat([h[0] for h in halves]), x)
    assert torch.equal(torch.cat([h[1] for h in halves]), y)
    x_nchw = make_batch(data, idx, torch.Generator().manual_seed(0), n_bits=5, channels_last=True)
    assert x_nchw[0].is_contiguous(memory_format=torch.channels_last) and x_nchw[1] is None
