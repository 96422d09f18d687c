"""The array formats (:mod:`glowflow.data.formats`): MNIST IDX files, CIFAR-10 pickled batches,
npz archives and the built-in set, each loaded from small real-format files in ``tmp_path``."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import (
    CIFAR_NAMES,
    make_cifar,
    make_mnist,
    rng_images,
    shared_npz,
    write_idx,
    write_pickle,
)

from glowflow.data import formats
from glowflow.data.datasets import BUILTIN, load_dataset
from glowflow.data.formats import DataError

# --- MNIST IDX -------------------------------------------------------------------------------


@pytest.mark.parametrize("style", ["gz", "raw", "dot"])
def test_mnist_idx_pixels_labels_and_no_padding_by_default(tmp_path: Path, style: str) -> None:
    x, y = make_mnist(tmp_path, style=style)
    data = load_dataset(f"mnist:{tmp_path}")
    assert data.images.dtype == torch.uint8
    assert data.image_shape == (1, 28, 28) and data.pad == 0
    assert torch.equal(data.images[:, 0], torch.from_numpy(x))
    assert data.labels.dtype == torch.int64
    assert data.labels.tolist() == y.tolist()
    assert data.class_names == [str(d) for d in range(10)]
    assert data.attrs is None and data.name == f"mnist:{tmp_path}"


def test_mnist_pad_resize_limit(tmp_path: Path) -> None:
    x, _ = make_mnist(tmp_path)
    assert load_dataset(f"mnist:{tmp_path}", pad=0).image_shape == (1, 28, 28)
    assert torch.equal(load_dataset(f"mnist:{tmp_path}", pad=0).images[:, 0], torch.from_numpy(x))
    assert load_dataset(f"mnist:{tmp_path}", pad=2).image_shape == (1, 32, 32)
    assert load_dataset(f"mnist:{tmp_path}", image_size=16, pad=2).image_shape == (1, 20, 20)
    assert load_dataset(f"mnist:{tmp_path}", image_size=16, pad=0).image_shape == (1, 16, 16)
    small = load_dataset(f"mnist:{tmp_path}", pad=0, limit=3)
    assert len(small) == 3 and torch.equal(small.images[:, 0], torch.from_numpy(x[:3]))


def test_mnist_train_preferred_t10k_alone_and_torchvision_layout(tmp_path: Path) -> None:
    train_x, _ = make_mnist(tmp_path / "both", n=5, seed=1)
    make_mnist(tmp_path / "both", n=3, split="t10k", seed=2)
    assert torch.equal(
        load_dataset(f"mnist:{tmp_path / 'both'}", pad=0).images[:, 0], torch.from_numpy(train_x)
    )
    test_x, _ = make_mnist(tmp_path / "test", n=3, split="t10k", style="raw", seed=3)
    assert torch.equal(
        load_dataset(f"mnist:{tmp_path / 'test'}", pad=0).images[:, 0], torch.from_numpy(test_x)
    )
    tv_x, _ = make_mnist(tmp_path / "tv" / "MNIST" / "raw", n=4, style="raw")
    assert len(load_dataset(f"mnist:{tmp_path / 'tv'}")) == 4


def test_mnist_images_file_names_its_split(tmp_path: Path) -> None:
    make_mnist(tmp_path, n=5, seed=1)
    test_x, test_y = make_mnist(tmp_path, n=3, split="t10k", seed=2)
    data = load_dataset(f"mnist:{tmp_path / 't10k-images-idx3-ubyte.gz'}", pad=0)
    assert torch.equal(data.images[:, 0], torch.from_numpy(test_x))
    assert data.labels.tolist() == test_y.tolist()
    with pytest.raises(DataError, match="not an MNIST images file"):
        load_dataset(f"mnist:{tmp_path / 't10k-labels-idx1-ubyte.gz'}")


def test_mnist_errors(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="looked for train-images-idx3-ubyte"):
        load_dataset(f"mnist:{tmp_path / 'empty'}")

    make_mnist(tmp_path / "nolabels")
    (tmp_path / "nolabels" / "train-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="no labels file .*train-labels-idx1-ubyte"):
        load_dataset(f"mnist:{tmp_path / 'nolabels'}")

    bad = tmp_path / "magic"
    bad.mkdir()
    write_idx(bad / "train-images-idx3-ubyte", rng_images((2, 28, 28)), 2049)
    write_idx(bad / "train-labels-idx1-ubyte", np.zeros(2, np.uint8), 2049)
    with pytest.raises(DataError, match="magic number 2049, expected 2051"):
        load_dataset(f"mnist:{bad}")

    short = tmp_path / "short"
    make_mnist(short, style="raw")
    path = short / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(DataError, match="truncated"):
        load_dataset(f"mnist:{short}")

    odd = tmp_path / "odd"
    make_mnist(odd, n=4, style="raw")
    write_idx(odd / "train-labels-idx1-ubyte", np.zeros(3, np.uint8), 2049)
    with pytest.raises(DataError, match="4 images but .* 3 labels"):
        load_dataset(f"mnist:{odd}")


def test_builtin_mnist_mini() -> None:
    data = load_dataset(BUILTIN)
    assert len(data) == 10000 and data.image_shape == (1, 28, 28)
    assert data.labels.dtype == torch.int64
    assert sorted(data.labels.unique().tolist()) == list(range(10))
    assert data.class_names == [str(d) for d in range(10)] and data.num_classes == 10
    raw = np.load(Path(formats.__file__).parents[1] / "assets" / "mnist_mini.npz")
    assert torch.equal(data.images[:5, 0], torch.from_numpy(raw["x"][:5, ..., 0]))
    small = load_dataset("mnist-mini", pad=2, limit=5)
    assert small.image_shape == (1, 32, 32) and torch.equal(
        small.images[:, :, 2:30, 2:30], data.images[:5]
    )


# --- CIFAR-10 pickle batches -----------------------------------------------------------------


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_cifar_batches_in_order_with_exact_pixels(tmp_path: Path, protocol: int) -> None:
    root = tmp_path / "cifar-10-batches-py"
    # data_batch_10 checks the numeric (not lexical) batch order.
    sizes = {"data_batch_2": 3, "data_batch_10": 2, "data_batch_1": 4, "test_batch": 5}
    arrays = make_cifar(root, sizes, protocol)
    data = load_dataset(f"cifar10:{tmp_path}")  # the parent folder works too
    assert len(data) == 9 and data.image_shape == (3, 32, 32)
    rows = np.concatenate([arrays[n] for n in ("data_batch_1", "data_batch_2", "data_batch_10")])
    assert torch.equal(data.images, torch.from_numpy(rows.reshape(-1, 3, 32, 32)))
    # A pixel by hand: red, green, blue of row 0 column 1 sit at 1, 1025 and 2049.
    assert data.images[0, :, 0, 1].tolist() == [rows[0, 1], rows[0, 1025], rows[0, 2049]]
    assert data.labels.tolist() == [2, 3, 4, 5, 0, 1, 2, 1, 2]
    assert data.class_names == CIFAR_NAMES and data.num_classes == 10


def test_cifar_test_batch_alone_and_limit(tmp_path: Path) -> None:
    arrays = make_cifar(tmp_path / "test", {"test_batch": 4})
    data = load_dataset(f"cifar10:{tmp_path / 'test'}")
    assert torch.equal(data.images, torch.from_numpy(arrays["test_batch"].reshape(-1, 3, 32, 32)))

    make_cifar(tmp_path / "train", {"data_batch_1": 3, "data_batch_2": 3})
    limited = load_dataset(f"cifar10:{tmp_path / 'train'}", limit=4, image_size=8, pad=1)
    assert len(limited) == 4 and limited.image_shape == (3, 10, 10)
    assert len(limited.labels) == 4


def test_cifar_pickles_naming_numpy_core_load(tmp_path: Path) -> None:
    # Files pickled under numpy < 2 (as distributed) name numpy.core, not numpy._core.
    arrays = make_cifar(tmp_path, {"data_batch_1": 2})
    path = tmp_path / "data_batch_1"
    legacy = path.read_bytes().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")
    assert legacy != path.read_bytes()
    path.write_bytes(legacy)
    data = load_dataset(f"cifar10:{tmp_path}")
    assert torch.equal(data.images, torch.from_numpy(arrays["data_batch_1"].reshape(-1, 3, 32, 32)))


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_cifar_unpickler_refuses_other_globals(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    root = tmp_path / "evil"
    make_cifar(root, {"data_batch_1": 2})
    write_pickle(root / "data_batch_1", {b"data": _Exploit(marker), b"labels": [0]})
    with pytest.raises(DataError, match="refusing to unpickle"):
        load_dataset(f"cifar10:{root}")
    assert not marker.exists()


def test_cifar_errors(tmp_path: Path) -> None:
    (tmp_path / "none").mkdir()
    (tmp_path / "none" / "readme.txt").write_text("hi")
    with pytest.raises(DataError, match="no CIFAR-10 batches .*cifar-10-batches-py"):
        load_dataset(f"cifar10:{tmp_path / 'none'}")
    make_cifar(tmp_path / "broken", {"data_batch_1": 2})
    (tmp_path / "broken" / "data_batch_1").write_bytes(b"not a pickle at all")
    with pytest.raises(DataError, match="cannot unpickle"):
        load_dataset(f"cifar10:{tmp_path / 'broken'}")
    make_cifar(tmp_path / "wrong", {"data_batch_1": 2})
    write_pickle(
        tmp_path / "wrong" / "data_batch_1",
        {b"data": np.zeros((2, 10), np.uint8), b"labels": [0, 1]},
    )
    with pytest.raises(DataError, match=r"expected uint8 \[N, 3072\]"):
        load_dataset(f"cifar10:{tmp_path / 'wrong'}")


# --- npz -------------------------------------------------------------------------------------


@pytest.mark.parametrize("compressed", [False, True])
def test_npz_arrays_and_limit(tmp_path: Path, compressed: bool) -> None:
    x = rng_images((7, 5, 5, 3))
    y = np.array([0, 2, 1, 2, 0, 1, 1])
    attrs = np.where(rng_images((7, 2)) > 127, 1, -1).astype(np.int8)
    path = tmp_path / "d.npz"
    save = np.savez_compressed if compressed else np.savez
    save(path, x=x, y=y, attrs=attrs, attr_names=np.array(["Smiling", "Male"]),
         class_names=np.array(["a", "b", "c"]))  # fmt: skip
    data = load_dataset(f"npz:{path}")
    assert torch.equal(data.images, torch.from_numpy(x).permute(0, 3, 1, 2))
    assert data.labels.tolist() == y.tolist() and data.labels.dtype == torch.int64
    assert data.attrs.tolist() == (attrs == 1).tolist()
    assert data.attr_names == ["Smiling", "Male"] and data.class_names == ["a", "b", "c"]
    part = load_dataset(f"npz:{path}", limit=3, image_size=4, pad=1)
    assert len(part) == 3 and part.image_shape == (3, 6, 6)
    assert part.labels.tolist() == y[:3].tolist() and part.attrs.shape == (3, 2)
    exact = load_dataset(f"npz:{path}", limit=3)
    assert torch.equal(exact.images, data.images[:3])
    assert exact.images.is_contiguous() and exact.images.numpy().flags.writeable


def test_npz_binary_attrs_and_grayscale(tmp_path: Path) -> None:
    path = tmp_path / "g.npz"
    x = rng_images((3, 4, 4))
    np.savez(path, x=x, attrs=np.array([[0, 1], [1, 1], [0, 0]]))
    data = load_dataset(f"npz:{path}")
    assert data.image_shape == (1, 4, 4) and torch.equal(data.images[:, 0], torch.from_numpy(x))
    assert data.attrs.tolist() == [[False, True], [True, True], [False, False]]
    assert data.labels is None and data.num_classes is None


def test_npz_errors(tmp_path: Path) -> None:
    def check(match: str, **arrays: np.ndarray) -> None:
        path = tmp_path / "bad.npz"
        np.savez(path, **arrays)
        with pytest.raises(DataError, match=match):
            load_dataset(f"npz:{path}")

    check("no array x", images=rng_images((2, 4, 4, 3)))
    check(r"expected \[N, H, W, C\] uint8", x=rng_images((2, 4, 4, 3)).astype(np.float32))
    check(r"expected \[N, H, W, C\] uint8", x=rng_images((2, 3, 4, 4, 3)))
    check(r"expected \[N, H, W, C\] uint8", x=rng_images((2, 4, 4, 5)))
    check("integer labels", x=rng_images((2, 4, 4, 3)), y=np.array([0, 1, 2]))
    check("-1/.1 or 0/1", x=rng_images((2, 4, 4, 3)), attrs=np.array([[0, 2], [1, 1]]))
    check("no entry in class_names", x=rng_images((2, 4, 4, 3)), y=np.array([0, 3]),
          class_names=np.array(["a", "b"]))  # fmt: skip
    check("no object arrays", x=np.array([object(), 1], dtype=object))
    (tmp_path / "fake.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="not a .npz archive"):
        load_dataset(f"npz:{tmp_path / 'fake.npz'}")


# --- the team's real data files (skipped where absent) ---------------------------------------


@pytest.mark.parametrize(
    ("name", "shape"),
    [
        ("mnist_train.npz", (1, 28, 28)),
        ("cifar10_train.npz", (3, 32, 32)),
        ("celeba64.npz", (3, 64, 64)),
    ],
)
def test_shared_npz_files(name: str, shape: tuple[int, int, int]) -> None:
    path = shared_npz(name)
    data = load_dataset(f"npz:{path}", limit=50)
    assert len(data) == 50 and data.image_shape == shape
    if name == "mnist_train.npz":  # small enough to decompress whole for the comparison
        with np.load(path) as raw:
            expected = torch.from_numpy(raw["x"][:50]).permute(0, 3, 1, 2)
        assert torch.equal(data.images, expected)
    if name == "celeba64.npz":
        assert data.attrs.shape == (50, 40) and data.attr_names[31] == "Smiling"
        assert data.labels is None
    else:
        assert data.labels.shape == (50,) and 0 <= int(data.labels.min())
        assert int(data.labels.max()) < 10
    if name == "cifar10_train.npz":
        assert data.class_names[0] == "airplane" and data.num_classes == 10
