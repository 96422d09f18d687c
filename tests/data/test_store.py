"""Reading stores (:mod:`glowflow.data.store`, ``store:DIR``): damaged stores refused in one
line, changed bytes found by verify, indexing like a tensor, and training from a store exactly
as from memory."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import assert_one_line_error, losses, main_in_process, small_config

from glowflow.data.batches import BatchOrder, cpu_batch, prefetched_batches
from glowflow.data.datasets import load_dataset
from glowflow.data.formats import DataError
from glowflow.data.prepare import prepare_store
from glowflow.data.store import MANIFEST, StoreError, verify_store
from glowflow.seeding import TRAIN, generator
from glowflow.train.trainer import Trainer


@pytest.mark.parametrize(
    "damage, match",
    [
        ("truncate", "truncated"),
        ("remove", "missing from the store"),
        ("count", "counts 51 images"),
        ("json", "damaged"),
        ("shape", "do not belong together"),
    ],
)
def test_a_damaged_store_is_refused_in_one_line(labelled_npz, tmp_path, damage, match):
    root = tmp_path / "st"
    prepare_store(f"npz:{labelled_npz}", root, shard_size=16)
    shard = root / "images-00002.npy"
    manifest = json.loads((root / MANIFEST).read_text())
    if damage == "truncate":
        shard.write_bytes(shard.read_bytes()[:-10])
    elif damage == "remove":
        shard.unlink()
    elif damage == "count":
        manifest["count"] = 51
        (root / MANIFEST).write_text(json.dumps(manifest))
    elif damage == "json":
        (root / MANIFEST).write_text("{not json")
    else:
        np.save(shard, np.zeros((16, 3, 7, 7), np.uint8))
    with pytest.raises(StoreError, match=match) as e:
        load_dataset(f"store:{root}")
    assert "\n" not in str(e.value)
    r = main_in_process("eval", "--checkpoint", "mnist", "--dataset", f"store:{root}")
    assert_one_line_error(r, match)


def test_changed_bytes_are_found_by_verify(labelled_npz, tmp_path):
    root = tmp_path / "st"
    prepare_store(f"npz:{labelled_npz}", root, shard_size=16)
    data = bytearray((root / "images-00000.npy").read_bytes())
    data[-1] ^= 0xFF
    (root / "images-00000.npy").write_bytes(bytes(data))
    load_dataset(f"store:{root}")  # opening only checks sizes: it stays fast
    with pytest.raises(StoreError, match="images-00000.npy does not match its checksum"):
        verify_store(root)


def test_indexing_edge_cases_and_repeated_options(labelled_npz, tmp_path):
    prepare_store(f"npz:{labelled_npz}", tmp_path / "st", pad=1, shard_size=16)
    data = load_dataset(f"store:{tmp_path / 'st'}")
    plain = load_dataset(f"npz:{labelled_npz}", pad=1)
    assert data.images[5:5].shape == (0, 3, 8, 8) and data.images[[]].shape == (0, 3, 8, 8)
    assert torch.equal(data.images[torch.tensor(7)], plain.images[7])
    mask = torch.arange(50) % 7 == 0
    assert torch.equal(data.images[mask], plain.images[mask])
    assert torch.equal(data.images[-1], plain.images[-1])
    # the option the store was prepared with may be repeated (one --pad for several sets)
    assert len(load_dataset(f"store:{tmp_path / 'st'}", pad=1)) == 50
    with pytest.raises(DataError, match="pad 1"):
        load_dataset(f"store:{tmp_path / 'st'}", pad=2)


def test_prefetched_batches_are_the_batches_of_each_step(digits_npz, tmp_path):
    prepare_store(f"npz:{digits_npz}", tmp_path / "st", shard_size=40)
    data = load_dataset(f"store:{tmp_path / 'st'}")
    order = BatchOrder(len(data), 16, seed=3)
    kw = dict(n_bits=5, hflip=True, with_labels=True, part=slice(8, 16))
    stream = prefetched_batches(data, order, start=4, seed=3, workers=2, **kw)
    for step in range(4, 12):  # across an epoch's end (6 steps an epoch)
        made, x, y = next(stream)
        ex, ey = cpu_batch(data, order.indices(step), generator(3, step, TRAIN), **kw)
        assert made == step and torch.equal(x, ex) and torch.equal(y, ey)


@pytest.mark.usefixtures("float32")
@pytest.mark.parametrize("workers", [0, 1])
def test_training_from_a_store_is_training_from_memory(digits_npz, tmp_path, workers):
    prepare_store(f"npz:{digits_npz}", tmp_path / "st", shard_size=30)
    Trainer(small_config(digits_npz, steps=8, lr_schedule="constant"), tmp_path / "mem").run()
    store = dict(dataset=f"store:{tmp_path / 'st'}", data_workers=workers)
    cfg = small_config(digits_npz, steps=4, lr_schedule="constant", **store)
    Trainer(cfg, tmp_path / "run").run()
    cfg = small_config(digits_npz, steps=8, lr_schedule="constant", **store)
    Trainer(cfg, tmp_path / "run", resume=True).run()  # and resumes exactly
    assert losses(tmp_path / "run") == pytest.approx(losses(tmp_path / "mem"), rel=1e-6)


@pytest.mark.usefixtures("float32")
def test_resuming_on_a_store_of_another_image_size_is_refused(digits_npz, tmp_path):
    prepare_store(f"npz:{digits_npz}", tmp_path / "st")
    Trainer(small_config(digits_npz, steps=2, dataset=f"store:{tmp_path / 'st'}"),
            tmp_path / "run").run()  # fmt: skip
    before = (tmp_path / "run" / "checkpoint.pt").read_bytes()
    for p in (tmp_path / "st").iterdir():
        p.unlink()
    prepare_store(f"npz:{digits_npz}", tmp_path / "st", pad=2)
    r = main_in_process("train", "--resume", tmp_path / "run", "--steps", 4)
    assert_one_line_error(r, "(1, 16, 16)", "(1, 20, 20)")
    assert (tmp_path / "run" / "checkpoint.pt").read_bytes() == before


@pytest.mark.usefixtures("float32")
def test_a_store_damaged_during_training_stops_it_in_one_line(digits_npz, tmp_path):
    prepare_store(f"npz:{digits_npz}", tmp_path / "st", shard_size=30)
    Trainer(small_config(digits_npz, steps=2, dataset=f"store:{tmp_path / 'st'}"),
            tmp_path / "run").run()  # fmt: skip
    trainer = Trainer(small_config(digits_npz, steps=40, dataset=f"store:{tmp_path / 'st'}",
                                   checkpoint_every=0), tmp_path / "run", resume=True)  # fmt: skip
    shard = tmp_path / "st" / "images-00003.npy"
    shard.write_bytes(shard.read_bytes()[:200])  # cut after the store was opened
    with pytest.raises(StoreError, match="images-00003.npy ended early"):
        trainer.run()


def test_a_store_records_the_padding_it_was_prepared_with(labelled_npz, tmp_path):
    prepare_store(f"npz:{labelled_npz}", tmp_path / "st", pad=1)
    data = load_dataset(f"store:{tmp_path / 'st'}")
    assert data.pad == 1 and data.original_dims == 3 * 6 * 6


def edit_manifest(root, edit) -> None:
    manifest = json.loads((root / MANIFEST).read_text())
    edit(manifest)
    (root / MANIFEST).write_text(json.dumps(manifest))


@pytest.mark.parametrize(
    "name",
    ["../x.npy", "ABSOLUTE", "sub/images-00000.npy", "..", ".", ".images-00000.npy",
     "images-00000.npy\0", "sub\\images-00000.npy", 7, None],
)  # fmt: skip
def test_a_manifest_file_name_outside_the_store_is_refused_naming_the_entry(
    labelled_npz, tmp_path, name
):
    """A shard named ``../x.npy`` must never be read, hashed or trained on: here ``x.npy``
    beside the store is a good copy of a shard, which the store would have loaded."""
    root = tmp_path / "st"
    prepare_store(f"npz:{labelled_npz}", root, shard_size=16)
    (tmp_path / "x.npy").write_bytes((root / "images-00001.npy").read_bytes())
    (root / "sub").mkdir()
    (root / "sub" / "images-00000.npy").write_bytes((root / "images-00001.npy").read_bytes())
    name = str(tmp_path / "x.npy") if name == "ABSOLUTE" else name
    edit_manifest(root, lambda m: m["shards"][1].update(file=name))
    shown = repr(name)[:20]
    with pytest.raises(StoreError, match=r"shards\[1\]\.file .* is not a file name inside") as e:
        load_dataset(f"store:{root}")
    assert "\n" not in str(e.value) and shown in str(e.value)
    with pytest.raises(StoreError, match=r"shards\[1\]\.file"):
        verify_store(root)
    r = main_in_process("eval", "--checkpoint", "mnist", "--dataset", f"store:{root}")
    assert_one_line_error(r, "shards[1].file", "is not a file name inside the store")


def test_a_link_that_leads_out_of_the_store_is_refused(labelled_npz, tmp_path):
    root = tmp_path / "st"
    prepare_store(f"npz:{labelled_npz}", root, shard_size=16)
    (tmp_path / "labels.npy").write_bytes((root / "labels.npy").read_bytes())
    (root / "labels.npy").unlink()
    (root / "labels.npy").symlink_to(tmp_path / "labels.npy")
    with pytest.raises(StoreError, match="labels.file 'labels.npy' is not a file name inside"):
        load_dataset(f"store:{root}")


@pytest.mark.parametrize(
    "entry, value, match",
    [
        ("image_shape", [3, 6, 6.0], r"image_shape \[3, 6, 6.0\] is not 3 positive whole"),
        ("image_shape", ["3", "6", "6"], r"image_shape \['3', '6', '6'\] is not 3 positive"),
        ("image_shape", [3, 6, 6, 1], r"image_shape \[3, 6, 6, 1\] is not 3 positive"),
        ("image_shape", [3, 0, 6], r"image_shape \[3, 0, 6\] is not 3 positive"),
        ("count", 50.0, "count 50.0 is not a positive whole number"),
        ("count", True, "count True is not a positive whole number"),
        ("count", 0, "count 0 is not a positive whole number"),
        ("shards.count", 16.0, r"shards\[1\]\.count 16.0 is not a whole number"),
        ("shards.count", -16, r"shards\[1\]\.count -16 is not a whole number"),
        ("shards.count", "16", r"shards\[1\]\.count '16' is not a whole number"),
        ("shards", {"file": "images-00000.npy"}, "shards {'file': .* is not a list"),
        ("shards", [], r"shards \[\] is not a list"),
        ("labels", "labels.npy", "labels 'labels.npy' is not a file entry"),
        ("labels.sha256", None, "labels has no sha256 checksum"),
        ("attr_names", 4, "attr_names 4 is not a list of names"),
        ("class_names", ["a", 1, "c"], r"class_names \['a', 1, 'c'\] is not a list of names"),
    ],
)
def test_a_manifest_of_another_form_is_refused_in_one_line(
    labelled_npz, tmp_path, entry, value, match
):
    root = tmp_path / "st"
    prepare_store(f"npz:{labelled_npz}", root, shard_size=16)

    def edit(m):
        if entry == "shards.count":
            m["shards"][1]["count"] = value
        elif entry == "labels.sha256":
            m["labels"]["sha256"] = value
        else:
            m[entry] = value

    edit_manifest(root, edit)
    with pytest.raises(StoreError, match=match) as e:
        load_dataset(f"store:{root}")
    assert "\n" not in str(e.value) and str(e.value).startswith(str(root / MANIFEST))
    r = main_in_process("eval", "--checkpoint", "mnist", "--dataset", f"store:{root}")
    assert_one_line_error(r, str(root / MANIFEST))
