"""Data loading: every spec kind read from small real-format files written into ``tmp_path``."""

from __future__ import annotations

import gzip
import math
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import shared_npz
from PIL import Image

from glowflow.data import datasets
from glowflow.data.datasets import (
    BUILTIN,
    KINDS,
    DataError,
    ImageData,
    describe_specs,
    load_dataset,
    split_validation,
)

RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


def rng_images(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)


def write_png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


# --- MNIST IDX -------------------------------------------------------------------------------


def write_idx(path: Path, array: np.ndarray, magic: int) -> None:
    header = struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    if path.suffix == ".gz":
        with gzip.open(path, "wb") as f:
            f.write(payload)
    else:
        path.write_bytes(payload)


def make_mnist(
    folder: Path, n: int = 6, split: str = "train", style: str = "gz", seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    x = rng_images((n, 28, 28), seed)
    y = np.arange(n, dtype=np.uint8) % 10
    sep = "." if style == "dot" else "-"
    ext = ".gz" if style == "gz" else ""
    folder.mkdir(parents=True, exist_ok=True)
    write_idx(folder / f"{split}-images{sep}idx3-ubyte{ext}", x, 2051)
    write_idx(folder / f"{split}-labels{sep}idx1-ubyte{ext}", y, 2049)
    return x, y


@pytest.mark.parametrize("style", ["gz", "raw", "dot"])
def test_mnist_idx_pixels_labels_and_default_pad(tmp_path: Path, style: str) -> None:
    x, y = make_mnist(tmp_path, style=style)
    data = load_dataset(f"mnist:{tmp_path}")
    assert data.images.dtype == torch.uint8
    assert data.image_shape == (1, 32, 32)
    assert torch.equal(data.images[:, 0, 2:30, 2:30], torch.from_numpy(x))
    assert data.images[:, :, :2].sum() == 0 and data.images[:, :, :, -2:].sum() == 0
    assert data.labels.dtype == torch.int64
    assert data.labels.tolist() == y.tolist()
    assert data.class_names == [str(d) for d in range(10)]
    assert data.attrs is None and data.name == f"mnist:{tmp_path}"


def test_mnist_pad_resize_limit(tmp_path: Path) -> None:
    x, _ = make_mnist(tmp_path)
    assert load_dataset(f"mnist:{tmp_path}", pad=0).image_shape == (1, 28, 28)
    assert torch.equal(load_dataset(f"mnist:{tmp_path}", pad=0).images[:, 0], torch.from_numpy(x))
    assert load_dataset(f"mnist:{tmp_path}", image_size=16).image_shape == (1, 20, 20)
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


@pytest.mark.parametrize(
    "spec, name",
    [
        ("npz:/data/sets/test.npz", "test"),
        ("folder:/data/letters/", "letters"),
        ("mnist:/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz", "fashion-mnist-t10k"),
        ("mnist:/data/mnist", "mnist"),
        ("mnist-mini", "mnist-mini"),
    ],
)
def test_dataset_name_is_the_file_or_folder_name(spec: str, name: str) -> None:
    assert datasets.dataset_name(spec) == name


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
    assert len(data) == 10000 and data.image_shape == (1, 32, 32)
    assert data.labels.dtype == torch.int64
    assert sorted(data.labels.unique().tolist()) == list(range(10))
    assert data.class_names == [str(d) for d in range(10)] and data.num_classes == 10
    assert data.images[:, :, :2].sum() == 0  # the default zero pad
    raw = np.load(Path(datasets.__file__).parents[1] / "assets" / "mnist_mini.npz")
    assert torch.equal(data.images[:5, 0, 2:30, 2:30], torch.from_numpy(raw["x"][:5, ..., 0]))
    small = load_dataset("mnist-mini", pad=0, limit=5)
    assert small.image_shape == (1, 28, 28) and torch.equal(
        small.images, data.images[:5, :, 2:30, 2:30]
    )


# --- CIFAR-10 pickle batches -----------------------------------------------------------------

CIFAR_NAMES = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
]


def write_pickle(path: Path, obj: object, protocol: int = 2) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=protocol)


def make_cifar(folder: Path, sizes: dict[str, int], protocol: int = 2) -> dict[str, np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for seed, (name, n) in enumerate(sizes.items()):
        data = rng_images((n, 3072), seed)
        batch = {
            b"batch_label": f"{name} of 5".encode(),
            b"labels": [(seed + i) % 10 for i in range(n)],
            b"data": data,
            b"filenames": [f"img_{i}.png".encode() for i in range(n)],
        }
        write_pickle(folder / name, batch, protocol)
        out[name] = data
    meta = {b"label_names": [c.encode() for c in CIFAR_NAMES], b"num_vis": 3072}
    write_pickle(folder / "batches.meta", meta, protocol)
    return out


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


# --- CelebA ----------------------------------------------------------------------------------

ATTR_NAMES = ["Bald", "Eyeglasses", "Smiling"]
ATTR_ROWS = {"000001.jpg": [-1, 1, 1], "000002.jpg": [1, -1, -1], "000003.jpg": [-1, -1, 1]}


def celeba_face(width: int = 178, height: int = 218) -> Image.Image:
    """Red outside the crop box; inside it the left half green and the right half blue."""
    sx, sy = width / 178, height / 218
    # Whole pixels around the (possibly fractional) box: none of them may show red.
    left, top = math.floor(15 * sx), math.floor(40 * sy)
    right, bottom = math.ceil(163 * sx), math.ceil(188 * sy)
    a = np.zeros((height, width, 3), np.uint8)
    a[:] = RED
    mid = (left + right) // 2
    a[top:bottom, left:mid] = GREEN
    a[top:bottom, mid:right] = BLUE
    return Image.fromarray(a)


def write_attr_file(path: Path, rows: dict[str, list[int]]) -> None:
    lines = [str(len(rows)), " ".join(ATTR_NAMES) + " "]
    lines += [name + "".join(f" {v:2d}" for v in values) for name, values in rows.items()]
    path.write_text("\n".join(lines) + "\n")


def make_celeba(root: Path, size: tuple[int, int] = (178, 218), attrs: bool = True) -> Path:
    images = root / "img_align_celeba"
    images.mkdir(parents=True)
    for name in ATTR_ROWS:
        celeba_face(*size).save(images / name, quality=100, subsampling=0)
    if attrs:
        write_attr_file(root / "list_attr_celeba.txt", ATTR_ROWS)
    return images


def assert_cropped(images: torch.Tensor) -> None:
    """No red border survives; green on the left edge, blue on the right edge."""
    im = images.to(torch.int64)
    red, green, blue = im[:, 0], im[:, 1], im[:, 2]
    assert red.max() < 40, "border colour in the crop"
    assert (green[:, :, 0] > 200).all() and (blue[:, :, 0] < 40).all()
    assert (blue[:, :, -1] > 200).all() and (green[:, :, -1] < 40).all()


def test_celeba_crop_resize_and_attrs(tmp_path: Path) -> None:
    make_celeba(tmp_path)
    data = load_dataset(f"celeba:{tmp_path}")
    assert len(data) == 3 and data.image_shape == (3, 64, 64)
    assert_cropped(data.images)
    assert data.labels is None and data.num_classes is None
    assert data.attr_names == ATTR_NAMES
    assert data.attrs.dtype == torch.bool
    assert data.attrs.tolist() == [[v == 1 for v in row] for row in ATTR_ROWS.values()]
    # Without the crop (plain folder), the red border is there.
    plain = load_dataset(f"folder:{tmp_path / 'img_align_celeba'}", image_size=64)
    assert plain.images[:, 0].max() > 200


def test_celeba_half_size_images_crop_alike(tmp_path: Path) -> None:
    make_celeba(tmp_path, size=(89, 109))
    data = load_dataset(f"celeba:{tmp_path}", image_size=32, pad=2)
    assert data.image_shape == (3, 36, 36)
    assert data.images[:, :, :2].sum() == 0
    assert_cropped(data.images[:, :, 2:-2, 2:-2])


@pytest.mark.parametrize("attr_place", ["beside", "inside"])
def test_celeba_dir_may_be_the_image_folder(tmp_path: Path, attr_place: str) -> None:
    images = make_celeba(tmp_path, attrs=False)
    target = tmp_path if attr_place == "beside" else images
    write_attr_file(target / "list_attr_celeba.txt", ATTR_ROWS)
    data = load_dataset(f"celeba:{images}", image_size=16, limit=2)
    assert data.image_shape == (3, 16, 16) and len(data) == 2
    assert data.attrs.shape == (2, 3)


def test_celeba_without_attr_file_and_missing_rows(tmp_path: Path) -> None:
    make_celeba(tmp_path / "noattrs", attrs=False)
    data = load_dataset(f"celeba:{tmp_path / 'noattrs'}", image_size=16)
    assert len(data) == 3 and data.attrs is None and data.attr_names is None

    make_celeba(tmp_path / "partial", attrs=False)
    write_attr_file(tmp_path / "partial" / "list_attr_celeba.txt", {"000001.jpg": [1, 1, 1]})
    with pytest.raises(DataError, match="2 images .* have no row"):
        load_dataset(f"celeba:{tmp_path / 'partial'}")

    (tmp_path / "nothing").mkdir()
    with pytest.raises(DataError, match="no CelebA images"):
        load_dataset(f"celeba:{tmp_path / 'nothing'}")


def test_celeba_bad_image_skip_keeps_attrs_aligned(tmp_path: Path) -> None:
    images = make_celeba(tmp_path)
    (images / "000002.jpg").write_bytes(b"\xff\xd8 this is not a jpeg")
    with pytest.warns(UserWarning, match="skipping unreadable image .*000002.jpg"):
        data = load_dataset(f"celeba:{tmp_path}", image_size=16)
    assert len(data) == 2
    rows = [ATTR_ROWS["000001.jpg"], ATTR_ROWS["000003.jpg"]]
    assert data.attrs.tolist() == [[v == 1 for v in row] for row in rows]
    with pytest.raises(DataError, match="cannot read image .*000002.jpg"):
        load_dataset(f"celeba:{tmp_path}", on_bad_image="error")


# --- folders of image files ------------------------------------------------------------------


def test_class_folders_exact_pixels_labels_names(tmp_path: Path) -> None:
    a = rng_images((4, 8, 8, 3), seed=1)
    write_png(tmp_path / "dogs" / "b.png", a[0])
    write_png(tmp_path / "dogs" / "a.PNG", a[1])  # case-insensitive extension
    write_png(tmp_path / "cats" / "z.png", a[2])
    write_png(tmp_path / "cats" / "deep" / "y.bmp", a[3])
    (tmp_path / "cats" / "notes.txt").write_text("not an image")
    (tmp_path / "empty").mkdir()  # no images: not a class
    data = load_dataset(f"folder:{tmp_path}")
    assert data.class_names == ["cats", "dogs"] and data.num_classes == 2
    assert data.labels.tolist() == [0, 0, 1, 1]
    expected = np.stack([a[3], a[2], a[1], a[0]])  # cats/deep/y, cats/z, dogs/a, dogs/b
    assert torch.equal(data.images, torch.from_numpy(expected).permute(0, 3, 1, 2))
    padded = load_dataset(f"folder:{tmp_path}", pad=3, limit=2)
    assert padded.image_shape == (3, 14, 14) and padded.labels.tolist() == [0, 0]
    assert torch.equal(padded.images[:, :, 3:-3, 3:-3], data.images[:2])
    assert padded.images[:, :, :3].sum() == 0


def test_flat_folder_grayscale_and_mixed_modes(tmp_path: Path) -> None:
    g = rng_images((2, 6, 6), seed=2)
    write_png(tmp_path / "gray" / "0.png", g[0])
    write_png(tmp_path / "gray" / "1.png", g[1])
    data = load_dataset(f"folder:{tmp_path / 'gray'}")
    assert data.image_shape == (1, 6, 6) and data.labels is None and data.class_names is None
    assert torch.equal(data.images[:, 0], torch.from_numpy(g))

    rgb = rng_images((6, 6, 3), seed=3)
    write_png(tmp_path / "gray" / "2.png", rgb)
    mixed = load_dataset(f"folder:{tmp_path / 'gray'}")
    assert mixed.image_shape == (3, 6, 6)
    assert torch.equal(mixed.images[0], torch.from_numpy(g[0]).expand(3, 6, 6))
    assert torch.equal(mixed.images[2], torch.from_numpy(rgb).permute(2, 0, 1))


def test_folder_sizes_must_match_unless_resized(tmp_path: Path) -> None:
    write_png(tmp_path / "a.png", rng_images((8, 8, 3)))
    write_png(tmp_path / "b.png", rng_images((10, 12, 3)))
    with pytest.raises(DataError, match="8x8 but .*b.png is 12x10; pass --image-size"):
        load_dataset(f"folder:{tmp_path}")
    data = load_dataset(f"folder:{tmp_path}", image_size=5)
    assert data.image_shape == (3, 5, 5) and len(data) == 2


def test_folder_corrupt_file_skip_and_error(tmp_path: Path) -> None:
    good = rng_images((2, 4, 4, 3), seed=4)
    write_png(tmp_path / "a.png", good[0])
    (tmp_path / "b.png").write_bytes(os.urandom(64))
    write_png(tmp_path / "c.png", good[1])
    with pytest.warns(UserWarning, match="skipping unreadable image .*b.png"):
        data = load_dataset(f"folder:{tmp_path}")
    assert torch.equal(data.images, torch.from_numpy(good).permute(0, 3, 1, 2))
    with pytest.raises(DataError, match="cannot read image .*b.png.*--on-bad-image skip"):
        load_dataset(f"folder:{tmp_path}", on_bad_image="error")

    (tmp_path / "only_bad").mkdir()
    (tmp_path / "only_bad" / "x.png").write_bytes(b"garbage")
    with pytest.warns(UserWarning), pytest.raises(DataError, match="none of the 1 image files"):
        load_dataset(f"folder:{tmp_path / 'only_bad'}")


def test_folder_errors(tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("no images here")
    with pytest.raises(DataError, match=r"no images found .*\.png"):
        load_dataset(f"folder:{tmp_path}")
    write_png(tmp_path / "loose.png", rng_images((4, 4, 3)))
    write_png(tmp_path / "cls" / "a.png", rng_images((4, 4, 3)))
    with pytest.raises(DataError, match="both image files and class sub-folders"):
        load_dataset(f"folder:{tmp_path}")


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


# --- specs and options -----------------------------------------------------------------------


def test_spec_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(f"folder:{tmp_path / 'missing'}")
    with pytest.raises(
        DataError, match=r"unknown data set kind 'imagenet'.*mnist, cifar10.*mnist-mini"
    ):
        load_dataset(f"imagenet:{tmp_path}")
    with pytest.raises(DataError, match="has no KIND: prefix.*folder:"):
        load_dataset(str(tmp_path))
    with pytest.raises(DataError, match="has no path"):
        load_dataset("npz:")
    with pytest.raises(DataError, match="npz: needs a .npz file"):
        load_dataset(f"npz:{tmp_path}")
    (tmp_path / "f.npz").write_bytes(b"")
    with pytest.raises(DataError, match="folder: needs a folder"):
        load_dataset(f"folder:{tmp_path / 'f.npz'}")
    monkeypatch.setattr(datasets.os, "access", lambda *args, **kwargs: False)
    with pytest.raises(DataError, match="cannot read .*permission denied"):
        load_dataset(f"folder:{tmp_path}")


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"on_bad_image": "ignore"}, "on_bad_image must be one of"),
        ({"image_size": 0}, "image_size must be a positive"),
        ({"pad": -1}, "pad must be 0 or more"),
        ({"limit": 0}, "limit must be at least 1"),
    ],
)
def test_option_errors(options: dict, match: str) -> None:
    with pytest.raises(DataError, match=match):
        load_dataset(BUILTIN, **options)


def test_errors_are_one_line_value_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError) as info:
        load_dataset(f"mnist:{tmp_path}")
    assert isinstance(info.value, DataError) and "\n" not in str(info.value)


def test_describe_specs_names_every_kind() -> None:
    text = describe_specs()
    assert BUILTIN in text and "\n" not in text
    assert all(f"{kind}:" in text for kind in KINDS)


# --- ImageData and validation splits ---------------------------------------------------------


def make_data(n: int = 20) -> ImageData:
    images = torch.arange(n, dtype=torch.uint8).reshape(n, 1, 1, 1).expand(n, 1, 2, 2).clone()
    return ImageData(images, labels=torch.arange(n) % 4, attrs=torch.zeros(n, 2, dtype=torch.bool))


def test_image_data_basics() -> None:
    data = make_data()
    assert len(data) == 20 and data.image_shape == (1, 2, 2) and data.num_classes == 4
    data.class_names = list("abcdef")
    assert data.num_classes == 6
    sub = data.subset(slice(2, 5))
    assert sub.images[:, 0, 0, 0].tolist() == [2, 3, 4] and sub.labels.tolist() == [2, 3, 0]
    assert sub.attrs.shape == (3, 2) and sub.class_names == data.class_names
    with pytest.raises(DataError, match="uint8"):
        ImageData(torch.zeros(2, 1, 2, 2))


def test_split_validation_sizes_disjoint_and_deterministic() -> None:
    data = make_data(20)
    train, val = split_validation(data, 0.25, seed=3)
    assert (len(train), len(val)) == (15, 5)
    ids_train = train.images[:, 0, 0, 0].tolist()
    ids_val = val.images[:, 0, 0, 0].tolist()
    assert sorted(ids_train + ids_val) == list(range(20))
    assert ids_train == sorted(ids_train) and ids_val == sorted(ids_val)
    assert val.labels.tolist() == [i % 4 for i in ids_val]
    again = split_validation(data, 0.25, seed=3)[1].images[:, 0, 0, 0].tolist()
    other = split_validation(data, 0.25, seed=4)[1].images[:, 0, 0, 0].tolist()
    assert again == ids_val and other != ids_val


@pytest.mark.parametrize(("n", "fraction"), [(20, 0.0), (20, 1.0), (20, -0.1), (3, 0.1), (3, 0.9)])
def test_split_validation_errors(n: int, fraction: float) -> None:
    with pytest.raises(DataError, match="fraction"):
        split_validation(make_data(n), fraction)


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


def test_sixteen_bit_grayscale_png_keeps_its_high_byte(tmp_path):
    from PIL import Image

    values = (np.arange(16, dtype=np.uint16).reshape(4, 4) * 4000).astype(np.uint16)
    Image.fromarray(values).save(tmp_path / "deep.png")  # mode I;16
    data = load_dataset(f"folder:{tmp_path}")
    assert data.image_shape == (1, 4, 4)
    assert data.images[0, 0].numpy().tolist() == (values >> 8).astype(np.uint8).tolist()
