"""Preparing stores (:mod:`glowflow.data.prepare`, ``glowflow prepare``): the same images as the
loaders, image files decoded in workers, resumable preparation, and folders that hold something
else refused and left alone."""

from __future__ import annotations

import json
import threading
import warnings

import numpy as np
import pytest
import torch
from conftest import assert_one_line_error, main_in_process
from PIL import Image

from glowflow.data.datasets import load_dataset
from glowflow.data.formats import DataError
from glowflow.data.prepare import prepare_store
from glowflow.data.store import MANIFEST, StoreError, open_store, verify_store


def same_data(a, b) -> None:
    assert torch.equal(a.images[:], b.images[:])
    for field in ("labels", "attrs"):
        x, y = getattr(a, field), getattr(b, field)
        assert (x is None and y is None) or torch.equal(x, y), field
    assert a.class_names == b.class_names and a.attr_names == b.attr_names


def test_a_store_holds_what_the_loader_gives_in_shards(labelled_npz, tmp_path):
    m = prepare_store(f"npz:{labelled_npz}", tmp_path / "st", pad=1, shard_size=16)
    assert m["count"] == 50 and m["image_shape"] == [3, 8, 8]
    assert [s["count"] for s in m["shards"]] == [16, 16, 16, 2]
    data = load_dataset(f"store:{tmp_path / 'st'}")
    same_data(data, load_dataset(f"npz:{labelled_npz}", pad=1))
    # any shard opens with NumPy alone
    assert np.load(tmp_path / "st" / "images-00001.npy").shape == (16, 3, 8, 8)
    idx = torch.tensor([49, 0, 17, 16, 15, 17])
    assert torch.equal(data.images[idx], load_dataset(f"npz:{labelled_npz}", pad=1).images[idx])
    # a subset is a view: no image is read until it is indexed
    sub = data.subset(torch.tensor([3, 40]))
    assert type(sub.images).__name__ == "StoreImages" and len(sub) == 2
    assert torch.equal(sub.images[:], data.images[[3, 40]])
    assert len(load_dataset(f"store:{tmp_path / 'st'}", limit=7)) == 7
    verify_store(tmp_path / "st")


def write_folder(root, n=40, bad=True):
    rng = np.random.default_rng(1)
    for i in range(n):
        cls = root / ("cats" if i < n // 2 else "dogs")
        cls.mkdir(parents=True, exist_ok=True)
        if i % 5 == 0:  # some grayscale among RGB: all become RGB, as the loader does
            Image.fromarray(rng.integers(0, 256, (12, 10), dtype=np.uint8)).save(cls / f"{i}.png")
        else:
            array = rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)
            Image.fromarray(array).save(cls / f"{i}.png")
    if bad:
        (root / "cats" / "broken.png").write_bytes(b"not an image")


@pytest.mark.parametrize("workers", [1, 2])
def test_image_files_decode_in_workers_to_the_loaders_images(tmp_path, workers):
    write_folder(tmp_path / "src")
    with pytest.warns(UserWarning, match="broken.png"):
        m = prepare_store(f"folder:{tmp_path / 'src'}", tmp_path / "st", image_size=8,
                          shard_size=16, workers=workers)  # fmt: skip
    assert m["skipped"] == 1 and m["image_shape"] == [3, 8, 8]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = load_dataset(f"folder:{tmp_path / 'src'}", image_size=8)
    same_data(load_dataset(f"store:{tmp_path / 'st'}"), expected)
    names = (tmp_path / "st" / "names.txt").read_text().split()
    assert len(names) == 40 and names[0] == "cats/0.png" and "cats/broken.png" not in names
    with pytest.raises(DataError, match="broken.png"):
        prepare_store(f"folder:{tmp_path / 'src'}", tmp_path / "st2", image_size=8,
                      on_bad_image="error", workers=1)  # fmt: skip


def test_an_interrupted_prepare_resumes_to_the_same_store(labelled_npz, tmp_path):
    whole = prepare_store(f"npz:{labelled_npz}", tmp_path / "whole", shard_size=8)

    def stop_after_two_shards(done, total):
        if done >= 16:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        prepare_store(f"npz:{labelled_npz}", tmp_path / "st", shard_size=8,
                      progress=stop_after_two_shards)  # fmt: skip
    assert not (tmp_path / "st" / MANIFEST).exists()
    with pytest.raises(StoreError, match="did not finish"):
        open_store(tmp_path / "st")
    # a shard left half-written by a crash is made again
    (tmp_path / "st" / "images-00001.npy").write_bytes(b"half")
    seen = []
    again = prepare_store(f"npz:{labelled_npz}", tmp_path / "st", shard_size=8,
                          progress=lambda done, total: seen.append(done))  # fmt: skip
    assert seen[0] == 8  # resumed after the one whole shard
    assert again["checksum"] == whole["checksum"]


def test_another_store_or_other_files_are_refused_and_left_alone(labelled_npz, tmp_path):
    prepare_store(f"npz:{labelled_npz}", tmp_path / "st", shard_size=16)
    before = {p.name: p.read_bytes() for p in (tmp_path / "st").iterdir()}
    with pytest.raises(StoreError, match="holds another store"):
        prepare_store(f"npz:{labelled_npz}", tmp_path / "st", pad=2)
    assert {p.name: p.read_bytes() for p in (tmp_path / "st").iterdir()} == before
    # the same store again is verified, not rewritten
    assert prepare_store(f"npz:{labelled_npz}", tmp_path / "st", shard_size=16)["count"] == 50
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(StoreError, match="not empty"):
        prepare_store(f"npz:{labelled_npz}", tmp_path / "other")
    assert (tmp_path / "other" / "notes.txt").read_text() == "mine"


def test_prepare_and_store_options_on_the_command_line(labelled_npz, tmp_path):
    r = main_in_process("prepare", f"npz:{labelled_npz}", tmp_path / "st", "--no-progress")
    assert r.returncode == 0, r.stderr
    assert "50 images 3x6x6" in r.stderr and f"store:{tmp_path / 'st'}" in r.stderr
    r = main_in_process("prepare", f"npz:{labelled_npz}", tmp_path / "st", "--pad", 1)
    assert_one_line_error(r, "holds another store")
    r = main_in_process("eval", "--checkpoint", "mnist", "--dataset", f"store:{tmp_path / 'st'}",
                        "--image-size", 32)  # fmt: skip
    assert_one_line_error(r, "resized and padded when it was prepared")
    r = main_in_process("eval", "--checkpoint", "mnist", "--dataset", f"store:{tmp_path / 'no'}")
    assert_one_line_error(r, "does not exist")


def test_a_shard_of_only_unreadable_files_still_makes_a_store(tmp_path):
    write_folder(tmp_path / "src", n=8, bad=False)
    for i in range(3):  # sorted first in cats/: a whole shard of 3 broken files
        (tmp_path / "src" / "cats" / f"!{i}.png").write_bytes(b"broken")
    with pytest.warns(UserWarning):
        m = prepare_store(f"folder:{tmp_path / 'src'}", tmp_path / "st", image_size=8,
                          shard_size=3, workers=1)  # fmt: skip
    assert m["count"] == 8 and m["shards"][0]["count"] == 0
    assert len(load_dataset(f"store:{tmp_path / 'st'}").images[:]) == 8


def test_a_source_that_changed_during_an_interrupted_prepare_is_refused(tmp_path):
    write_folder(tmp_path / "src", n=12, bad=False)

    def stop(done, total):
        if done >= 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        prepare_store(f"folder:{tmp_path / 'src'}", tmp_path / "st", image_size=8,
                      shard_size=4, workers=1, progress=stop)  # fmt: skip
    (tmp_path / "src" / "dogs" / "6.png").unlink()
    with pytest.raises(StoreError, match="has changed since the preparation"):
        prepare_store(f"folder:{tmp_path / 'src'}", tmp_path / "st", image_size=8,
                      shard_size=4, workers=1)  # fmt: skip


def test_a_second_prepare_into_a_folder_being_prepared_is_refused(labelled_npz, tmp_path):
    """Two prepares into one folder would race (the one that finishes first deletes the
    other's progress file and kept files): the second is refused at once, the first's work
    kept."""
    root = tmp_path / "st"
    paused, go_on = threading.Event(), threading.Event()
    first: dict = {}

    def pause_after_the_first_shard(done, total):
        if done == 16:
            paused.set()
            assert go_on.wait(60)

    def prepare_first():
        try:
            first["manifest"] = prepare_store(f"npz:{labelled_npz}", root, shard_size=16,
                                              progress=pause_after_the_first_shard)  # fmt: skip
        except BaseException as e:  # noqa: BLE001 - shown by the assertion below
            first["error"] = e

    thread = threading.Thread(target=prepare_first)
    thread.start()
    try:
        assert paused.wait(60)
        before = {p.name: p.read_bytes() for p in root.iterdir()}
        assert "prepare-progress.json" in before and "images-00000.npy" in before
        with pytest.raises(StoreError, match="another glowflow prepare is writing") as e:
            prepare_store(f"npz:{labelled_npz}", root, shard_size=16)
        assert "\n" not in str(e.value) and str(root) in str(e.value)
        r = main_in_process("prepare", f"npz:{labelled_npz}", root, "--shard-size", 16,
                            "--no-progress")  # fmt: skip
        assert_one_line_error(r, "another glowflow prepare is writing", "wait for it to finish")
        assert {p.name: p.read_bytes() for p in root.iterdir()} == before
    finally:
        go_on.set()
        thread.join(60)
    assert "error" not in first, first.get("error")
    assert first["manifest"]["count"] == 50
    verify_store(root)
    # once it is done, the folder is free: the same prepare verifies the whole store
    assert prepare_store(f"npz:{labelled_npz}", root, shard_size=16)["count"] == 50
    # a folder made for the lock alone is not left behind by a prepare that fails at once
    with pytest.raises(DataError):
        prepare_store(f"npz:{tmp_path / 'missing.npz'}", tmp_path / "other")
    assert not (tmp_path / "other").exists()


@pytest.mark.parametrize(
    "damage",
    [
        lambda s: s["shards"][0].update(file="../x.npy"),
        lambda s: s["shards"][1].update(file="images-00000.npy"),
        lambda s: s["shards"][0].update(count=8.0),
        lambda s: s.update(shard_size="8"),
    ],
)
def test_a_progress_file_of_another_form_is_refused(labelled_npz, tmp_path, damage):
    """The progress file names the shards written so far: a name from it must not lead out of
    the folder either (``../x.npy`` would be hashed, then read into the store)."""

    def stop_after_two_shards(done, total):
        if done >= 16:
            raise KeyboardInterrupt

    root = tmp_path / "st"
    with pytest.raises(KeyboardInterrupt):
        prepare_store(f"npz:{labelled_npz}", root, shard_size=8, progress=stop_after_two_shards)
    (tmp_path / "x.npy").write_bytes((root / "images-00000.npy").read_bytes())
    state = json.loads((root / "prepare-progress.json").read_text())
    damage(state)
    (root / "prepare-progress.json").write_text(json.dumps(state))
    with pytest.raises(StoreError, match="prepare-progress.json is damaged"):
        prepare_store(f"npz:{labelled_npz}", root, shard_size=8)
