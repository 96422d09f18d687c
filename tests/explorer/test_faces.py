"""Uploads brought to the model's framing: safe decoding, the face crop and its fallbacks."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from glowflow.explorer import faces
from glowflow.explorer.faces import ImageInputError, decode_image, frame_image
from glowflow.hub.gallery import load_gallery
from glowflow.hub.names import bundled_root


def _bytes(im: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    out = io.BytesIO()
    im.save(out, format=fmt, **kw)
    return out.getvalue()


def celeba_face(k: int = 0) -> np.ndarray:
    """A real held-out CelebA face (64x64x3 uint8) from the bundled gallery."""
    return load_gallery(bundled_root() / "celeba64").images[k].permute(1, 2, 0).numpy()


def face_photo(
    k: int = 0, side: int = 200, canvas: tuple[int, int] = (480, 360), at: tuple = (150, 60)
) -> tuple[Image.Image, tuple[int, int, int, int]]:
    """A photo with a real face: a CelebA face enlarged to ``side`` and put on a grey canvas at
    ``at``; returns the photo and the face crop's box in it."""
    photo = Image.new("RGB", canvas, (118, 120, 125))
    photo.paste(Image.fromarray(celeba_face(k)).resize((side, side), Image.LANCZOS), at)
    return photo, (at[0], at[1], at[0] + side, at[1] + side)


@pytest.mark.parametrize(
    "data, fragment",
    [(b"", "no image"), (b"GIF89a not really", "not an image"),
     (b"<svg xmlns='http://www.w3.org/2000/svg'/>", "not an image")],
)  # fmt: skip
def test_bytes_that_are_not_an_image_are_refused_with_the_reason(data, fragment):
    with pytest.raises(ImageInputError, match=fragment):
        decode_image(data, 3)


def test_a_truncated_png_is_refused():
    data = _bytes(Image.new("RGB", (64, 64), (1, 2, 3)))
    with pytest.raises(ImageInputError, match="not an image"):
        decode_image(data[: len(data) // 2], 3)


def test_an_image_over_the_pixel_limit_is_refused_before_it_is_decoded(monkeypatch):
    monkeypatch.setattr(faces, "MAX_PIXELS", 100 * 100)
    with pytest.raises(ImageInputError, match="101x100"):
        decode_image(_bytes(Image.new("L", (101, 100))), 3)


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "P", "I;16", "CMYK"])
def test_any_mode_is_converted_to_the_models_channels(mode):
    im = Image.new("RGB", (20, 10), (200, 40, 40)).convert(mode)
    fmt = "JPEG" if mode == "CMYK" else ("TIFF" if mode == "I;16" else "PNG")
    for channels, want in ((3, "RGB"), (1, "L")):
        assert decode_image(_bytes(im, fmt), channels).mode == want


def test_transparency_is_laid_on_white():
    im = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    assert decode_image(_bytes(im), 3).getpixel((3, 3)) == (255, 255, 255)


def test_exif_orientation_is_applied():
    im = Image.new("RGB", (40, 20), (0, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees to be upright
    assert decode_image(_bytes(im, "JPEG", exif=exif), 3).size == (20, 40)


def test_an_image_of_the_models_size_is_used_as_given():
    im = Image.fromarray(celeba_face())
    framed, framing = frame_image(im, (64, 64), faces=True)
    assert framing.method == "as given" and framing.notice is None
    assert np.array_equal(np.asarray(framed), celeba_face())


def test_without_faces_the_centre_square_is_taken():
    im = Image.new("RGB", (300, 200))
    im.paste((255, 0, 0), (50, 0, 250, 200))  # the centre square is red, the sides black
    framed, framing = frame_image(im, (32, 32), faces=False)
    assert framing.method == "centre crop" and framing.box == (50.0, 0.0, 250.0, 200.0)
    assert framing.notice is None  # not a face model: nothing to apologise for
    assert np.asarray(framed)[:, 1:-1, 0].min() > 240  # (LANCZOS reads a pixel past the box)


def test_no_detector_gives_a_centre_crop_and_says_how_to_get_one(monkeypatch):
    monkeypatch.setattr(faces, "face_detector", lambda: None)
    photo, _ = face_photo()
    _, framing = frame_image(photo, (64, 64), faces=True)
    assert framing.method == "centre crop"
    assert "glowflow[faces]" in framing.notice


def test_no_face_found_gives_a_centre_crop_with_a_notice():
    pytest.importorskip("cv2", reason="the face detector is the glowflow[faces] extra")
    _, framing = frame_image(Image.new("RGB", (300, 200), (90, 90, 90)), (64, 64), faces=True)
    assert framing.method == "centre crop" and framing.notice == "no face found: centre crop used"


@pytest.mark.parametrize("k", [0, 1, 2, 3])
def test_the_detector_finds_a_real_face_and_crops_it_as_the_model_was_trained(k):
    pytest.importorskip("cv2", reason="the face detector is the glowflow[faces] extra")
    photo, (left, top, right, bottom) = face_photo(k)
    framed, framing = frame_image(photo, (64, 64), faces=True)
    assert framing.method == "face detector" and framing.notice is None
    bl, bt, br, bb = framing.box
    overlap = max(0, min(br, right) - max(bl, left)) * max(0, min(bb, bottom) - max(bt, top))
    union = (br - bl) * (bb - bt) + (right - left) * (bottom - top) - overlap
    assert overlap / union > 0.7, (framing.box, (left, top, right, bottom))
    # and the crop looks like the face the model saw: far closer to it than the centre crop
    seen = torch.from_numpy(celeba_face(k)).double()
    centre, _ = frame_image(photo, (64, 64), faces=False)
    err = (torch.from_numpy(np.array(framed)).double() - seen).abs().mean()
    err_centre = (torch.from_numpy(np.array(centre)).double() - seen).abs().mean()
    assert err < 0.6 * err_centre


def test_a_face_at_the_edge_is_cropped_with_the_border_repeated():
    pytest.importorskip("cv2", reason="the face detector is the glowflow[faces] extra")
    photo, _ = face_photo(side=220, canvas=(400, 240), at=(-50, 10))
    framed, framing = frame_image(photo, (64, 64), faces=True)
    assert framing.method == "face detector"
    assert framing.box[0] < 0  # reaches past the left edge
    assert framed.size == (64, 64)


@pytest.mark.parametrize("shape", [(1, 16, 16), (3, 24, 32)])
def test_an_upload_becomes_a_writable_array_in_the_models_layout(shape):
    c, h, w = shape
    photo = Image.fromarray(np.arange(60 * 90 * 3, dtype=np.uint8).reshape(60, 90, 3))
    array, framing, size = faces.frame_upload(_bytes(photo), shape, faces=False)
    assert array.shape == shape and array.dtype == np.uint8 and array.flags.writeable
    assert size == (90, 60) and framing.method == "centre crop"
    framed, _ = frame_image(decode_image(_bytes(photo), c), (w, h), False)
    want = np.asarray(framed).reshape(h, w, c).transpose(2, 0, 1)
    assert np.array_equal(array, want)


def _as_before(data: bytes, channels: int) -> np.ndarray:
    """How a photo was decoded before photos were reduced: whole, then converted."""
    from PIL import ImageOps

    im = ImageOps.exif_transpose(Image.open(io.BytesIO(data)))
    if im.mode == "RGBA":
        im = Image.alpha_composite(Image.new("RGBA", im.size, (255, 255, 255, 255)), im)
    return np.asarray(im.convert("L" if channels == 1 else "RGB"))


@pytest.mark.parametrize("fmt, mode", [("PNG", "RGB"), ("JPEG", "RGB"), ("PNG", "RGBA"),
                                       ("PNG", "L")])  # fmt: skip
def test_a_photo_within_the_working_size_is_decoded_as_before(fmt, mode):
    rng = np.random.default_rng(0)
    shape = (300, 400, len(mode)) if mode != "L" else (300, 400)
    data = _bytes(Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode), fmt)
    for channels in (1, 3):
        assert np.array_equal(np.asarray(decode_image(data, channels)), _as_before(data, channels))


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_a_photo_over_the_working_size_is_reduced_as_it_is_decoded(monkeypatch, fmt):
    """Only a reduced copy outlives the decoder (a JPEG is decoded at a fraction of its size
    to begin with), and it shows the same picture."""
    y, x = np.mgrid[0:480, 0:640]
    smooth = np.stack([x * 255 // 639, y * 255 // 479, (x + y) * 255 // 1118], -1)
    data = _bytes(Image.fromarray(smooth.astype(np.uint8)), fmt)
    monkeypatch.setattr(faces, "WORK_PIXELS", 200 * 150)
    from PIL import JpegImagePlugin

    drafts = []
    real_draft = JpegImagePlugin.JpegImageFile.draft
    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft",
                        lambda im, *a: drafts.append(real_draft(im, *a)))  # fmt: skip
    im = decode_image(data, 3)
    assert im.size[0] * im.size[1] <= 200 * 150 and im.size[0] >= 150
    if fmt == "JPEG":  # the decoder itself made it a quarter of the size
        assert drafts and drafts[0] is not None and im.size == (160, 120)
    whole = np.asarray(Image.fromarray(_as_before(data, 3)).resize(im.size, Image.BOX), np.int16)
    assert np.abs(np.asarray(im, np.int16) - whole).mean() < 2


def test_a_16_bit_photo_keeps_its_high_byte():
    levels = np.arange(0, 65536, 256, dtype=np.uint16).reshape(16, 16)
    data = _bytes(Image.fromarray(levels))
    assert np.array_equal(np.asarray(decode_image(data, 1)), (levels >> 8).astype(np.uint8))


@pytest.mark.parametrize("mode", ["LAB", "F"])
def test_a_colour_mode_the_explorer_does_not_read_is_refused_naming_what_it_reads(mode):
    out = io.BytesIO()
    Image.new(mode, (8, 8)).save(out, format="TIFF")
    with pytest.raises(ImageInputError) as e:
        decode_image(out.getvalue(), 1)
    assert f"colour mode {mode}" in str(e.value) and "RGB or grayscale" in str(e.value)


def test_a_file_of_a_format_no_camera_writes_is_refused_unopened():
    """Only the formats of cameras, phones and browsers reach a decoder: Pillow's many other
    parsers (DDS, PSD, ...) fail on crafted files in ways of their own."""
    for fmt in ("PPM", "ICO", "TGA"):
        with pytest.raises(ImageInputError, match="not an image Pillow can read"):
            decode_image(_bytes(Image.new("RGB", (16, 16)), fmt), 3)


def test_any_failure_of_a_decoder_is_a_refusal(monkeypatch):
    data = _bytes(Image.new("RGB", (16, 16)), "TIFF")

    def broken(im):
        raise TypeError("a damaged tag")

    monkeypatch.setattr(Image.Image, "load", broken)
    with pytest.raises(ImageInputError, match=r"\(TypeError\)"):
        decode_image(data, 3)


def test_a_phones_multi_picture_jpeg_is_reduced_as_it_is_decoded(monkeypatch):
    frames = [Image.new("RGB", (640, 480), (200, 100, 50)), Image.new("RGB", (640, 480))]
    data = _bytes(frames[0], "MPO", save_all=True, append_images=frames[1:])
    assert Image.open(io.BytesIO(data)).format == "MPO"
    monkeypatch.setattr(faces, "WORK_PIXELS", 200 * 150)
    assert decode_image(data, 3).size == (160, 120)  # decoded at a quarter of its size


def test_a_16_bit_photo_is_turned_upright_as_its_exif_says():
    im = Image.fromarray(np.arange(0, 65536, 32, dtype=np.uint16).reshape(32, 64))
    exif = Image.Exif()
    exif[0x0112] = 6  # held turned: shown rotated 90 degrees clockwise
    out = io.BytesIO()
    im.save(out, format="PNG", exif=exif.tobytes())
    upright = decode_image(out.getvalue(), 1)
    want = Image.fromarray((np.asarray(im) >> 8).astype(np.uint8)).transpose(
        Image.Transpose.ROTATE_270
    )
    assert upright.size == (32, 64) and np.array_equal(np.asarray(upright), np.asarray(want))
