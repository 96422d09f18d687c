"""A checkpoint's contents and their way back into a resumed run."""

from __future__ import annotations

import pytest
import torch
from conftest import randomize_, rng_images, small_config

from glowflow.config import GlowConfig
from glowflow.data.imagedata import ImageData
from glowflow.hub.checkpoint import CheckpointError
from glowflow.hub.model import Glow
from glowflow.train.ema import EMA
from glowflow.train.optim import make_optimizer
from glowflow.train.runstate import (
    FINGERPRINT_IMAGES,
    Position,
    check_same_data,
    checkpoint_state,
    data_fingerprint,
    restore_state,
    run_record,
)

CONFIG = GlowConfig(image_shape=(1, 8, 8), levels=2, depth=1, hidden_channels=8)


def parts(config: GlowConfig = CONFIG, seed: int = 0):
    torch.manual_seed(seed)
    model = Glow.from_config(config)
    optimizer, fused = make_optimizer("adam", model, 1e-3)
    return model, optimizer, fused, EMA(model, 0.9)


def record_of(model, digits_npz) -> dict:
    one_image = ImageData(torch.zeros(1, 1, 8, 8, dtype=torch.uint8))
    return run_record(small_config(digits_npz), model, one_image, None)


def test_the_record_says_what_the_run_and_its_data_are(digits_npz):
    images = torch.zeros(10, 1, 8, 8, dtype=torch.uint8)
    train = ImageData(images, class_names=["a"], attr_names=None)
    record = run_record(small_config(digits_npz), Glow.from_config(CONFIG), train, None)
    assert record["train"]["depth"] == 1 and record["model"]["image_shape"] == [1, 8, 8]
    assert record["data"] == {"train_images": 10, "val_images": 0, "class_names": ["a"],
                              "attr_names": None,
                              "train_fingerprint": data_fingerprint(train)}  # fmt: skip
    assert "torchelastic_run_id" in record


def trained_a_step(model, optimizer, ema) -> None:
    x = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(1)) - 0.5
    model.initialize(x)
    randomize_(model)
    (-model.log_prob(x).mean()).backward()
    optimizer.step()
    ema.update(model, 0, torch.tensor(False))


def test_a_saved_state_restores_weights_average_moments_and_position(digits_npz):
    model, optimizer, _, ema = parts()
    trained_a_step(model, optimizer, ema)
    record = record_of(model, digits_npz)
    state = checkpoint_state(record, model, optimizer, ema, Position(7, 12.5, 2))
    assert state["model_config"] == record["model"] and state["train_config"] == record["train"]
    assert state["data"] == record["data"]
    fresh, fresh_optimizer, fused, fresh_ema = parts(seed=1)
    position = restore_state(state, fresh, fresh_optimizer, fused, fresh_ema, "run/checkpoint.pt")
    assert position == Position(7, 12.5, 2)
    for name, value in model.state_dict().items():
        assert torch.equal(fresh.state_dict()[name], value), name
    for name, value in ema.state_dict().items():
        assert torch.equal(fresh_ema.state_dict()[name], value), name
    moments = [s["exp_avg"] for s in optimizer.state.values()]
    restored = [s["exp_avg"] for s in fresh_optimizer.state.values()]
    assert len(moments) == len(restored) and all(map(torch.equal, moments, restored))


def test_a_checkpoint_of_another_model_is_refused_naming_the_file(digits_npz):
    model, optimizer, _, ema = parts()
    state = checkpoint_state(record_of(model, digits_npz), model, optimizer, ema, Position())
    wider = GlowConfig(**{**CONFIG.to_dict(), "hidden_channels": 16})
    other, other_optimizer, fused, other_ema = parts(wider)
    with pytest.raises(CheckpointError, match="run/checkpoint.pt does not match its run's config"):
        restore_state(state, other, other_optimizer, fused, other_ema, "run/checkpoint.pt")
    del state["step"]
    with pytest.raises(CheckpointError, match="'step'"):
        restore_state(state, *parts()[:3], None, "run/checkpoint.pt")


def images_data(n: int, labels: bool = True, seed: int = 0) -> ImageData:
    images = torch.from_numpy(rng_images((n, 3, 4, 4), seed))
    return ImageData(images, labels=torch.arange(n) % 5 if labels else None)


def reordered(data: ImageData, order: torch.Tensor) -> ImageData:
    labels = data.labels[order] if data.labels is not None else None
    return ImageData(data.images[order], labels=labels)


def test_the_data_fingerprint_tells_the_size_order_and_contents_of_the_data():
    data = images_data(40)
    fingerprint = data_fingerprint(data)
    assert fingerprint == data_fingerprint(images_data(40))  # the same data, made again
    assert len(fingerprint) == 64 and int(fingerprint, 16) >= 0
    swapped = torch.arange(40)
    swapped[[3, 17]] = swapped[[17, 3]]
    assert data_fingerprint(reordered(data, swapped)) != fingerprint
    assert data_fingerprint(reordered(data, torch.arange(39))) != fingerprint  # one fewer
    assert data_fingerprint(images_data(40, labels=False)) != fingerprint
    other_labels = ImageData(data.images, labels=(data.labels + 1) % 5)
    assert data_fingerprint(other_labels) != fingerprint
    changed = data.images.clone()
    changed[39, 2, 3, 3] ^= 1  # one bit of the last image
    assert data_fingerprint(ImageData(changed, labels=data.labels)) != fingerprint


def test_the_fingerprint_of_a_large_set_reads_a_bounded_spread_sample():
    data = images_data(5000, labels=False)
    seen = []

    class Counted(torch.Tensor):
        """The images, recording every index they are read at."""

        def __getitem__(self, key):
            seen.append(torch.as_tensor(key).clone())
            return super().__getitem__(key)

    images = data.images.as_subclass(Counted)
    fingerprint = data_fingerprint(ImageData(images))
    (index,) = seen
    assert len(index) == FINGERPRINT_IMAGES == len(set(index.tolist()))
    assert index[0] == 0 and index[-1] == 4999 and int(index.diff().max()) <= 20
    assert fingerprint == data_fingerprint(data)  # the plain tensor gives the same
    # the order of the whole set counts, not only the sample's: the last image moved first
    moved = torch.cat([torch.tensor([4999]), torch.arange(4999)])
    assert data_fingerprint(reordered(data, moved)) != fingerprint


def test_a_store_and_memory_give_one_fingerprint(labelled_npz, tmp_path):
    from glowflow.data.datasets import load_dataset
    from glowflow.data.prepare import prepare_store

    prepare_store(f"npz:{labelled_npz}", tmp_path / "st", shard_size=16)
    stored = load_dataset(f"store:{tmp_path / 'st'}")
    assert data_fingerprint(stored) == data_fingerprint(load_dataset(f"npz:{labelled_npz}"))


def test_resuming_on_other_data_is_refused_naming_what_changed():
    data = images_data(40)
    state = {"data": {"train_images": 40, "train_fingerprint": data_fingerprint(data)}}
    check_same_data(state, 40, data_fingerprint(data), "run/checkpoint.pt")  # the same: fine
    with pytest.raises(CheckpointError, match=r"^run/checkpoint.pt was trained on 40 training "
                       r"images, and the data set now gives 39; train on the data set the run "
                       r"was started with .*--overwrite, or another --out$"):  # fmt: skip
        check_same_data(state, 39, data_fingerprint(reordered(data, torch.arange(39))),
                        "run/checkpoint.pt")  # fmt: skip
    flipped = data_fingerprint(reordered(data, torch.arange(39, -1, -1)))
    with pytest.raises(CheckpointError, match="other images, or the same in another order "
                       rf"\(data fingerprint {state['data']['train_fingerprint'][:12]}, now "
                       rf"{flipped[:12]}\); train on the data set"):  # fmt: skip
        check_same_data(state, 40, flipped, "run/checkpoint.pt")
    # a checkpoint from before fingerprints: the count alone is checked
    old = {"data": {"train_images": 40}}
    check_same_data(old, 40, flipped, "run/checkpoint.pt")
    with pytest.raises(CheckpointError, match="trained on 40 training images"):
        check_same_data(old, 41, flipped, "run/checkpoint.pt")
    check_same_data({}, 41, flipped, "run/checkpoint.pt")  # and one without data facts: none
