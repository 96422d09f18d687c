"""Image files (:mod:`glowflow.data.imagefiles`): CelebA's crop and attributes, folders of
images with or without class sub-folders, unreadable files skipped or refused."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import rng_images
from PIL import Image

from glowflow.data.datasets import load_dataset
from glowflow.data.formats import DataError

RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


def write_png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


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


def test_sixteen_bit_grayscale_png_keeps_its_high_byte(tmp_path):
    values = (np.arange(16, dtype=np.uint16).reshape(4, 4) * 4000).astype(np.uint16)
    Image.fromarray(values).save(tmp_path / "deep.png")  # mode I;16
    data = load_dataset(f"folder:{tmp_path}")
    assert data.image_shape == (1, 4, 4)
    assert data.images[0, 0].numpy().tolist() == (values >> 8).astype(np.uint8).tolist()
