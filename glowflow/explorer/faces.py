"""Bringing a user's photo to a model's framing: decode it safely, find the face, crop, resize.

A face model (CelebA 64x64) saw faces framed one way: the face a little below the centre,
filling about 70% of the width. A photo is cropped to that framing around the face that
OpenCV's Haar cascade finds (the optional extra ``glowflow[faces]``; the cascade ships inside
the ``opencv-python-headless`` package). Without the detector, when it finds no face, or for a
model that is not of faces, the photo is centre-cropped to a square, and the framing says so.

The framing constants come from ``tools/calibrate_framing.py``: the detector run on the
CelebA training faces that the bundled model learned, each padded with its border so the
detector sees context. Over the 572 of the first 600 faces where it found one, the model's crop
has a side of 1.43 face widths (std 0.24) and its centre lies 0.15 face widths above the face's
(std 0.08).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
from PIL import Image
from PIL.JpegImagePlugin import JpegImageFile

from glowflow.data.imagefiles import eight_bit
from glowflow.errors import GlowflowError, first_line

CROP_SIDE_PER_FACE_WIDTH = 1.43
CROP_CENTRE_ABOVE_FACE = 0.15  # in face widths
MAX_PIXELS = 40_000_000  # a larger photo is refused before it is decoded
#: A photo over this many pixels is brought under it as it is decoded (by the JPEG decoder's
#: draft mode, then a box filter by a whole factor), so that at most one full-size copy of it
#: ever exists. 2048x2048 leaves a face in any photo far more pixels than the model's 64x64;
#: a photo within it is framed exactly as it always was.
WORK_PIXELS = 2048 * 2048
#: The file formats an upload may be in: what cameras, phones and browsers write.
FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF")  # JPEG includes phones' MPO
_ORIENTATION_TAG = 0x0112  # EXIF: how the camera was held
_ORIENTATIONS = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
                 4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
                 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
                 8: Image.Transpose.ROTATE_90}  # fmt: skip
#: The colour modes a photo may come in; LAB, HSV and floating-point images are refused.
READABLE_MODES = ("1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK",
                  "YCbCr", "I", "I;16", "I;16B", "I;16L", "I;16N")  # fmt: skip
_FACE_MIN_FRACTION = 0.08  # smallest face searched for, as a fraction of the shorter side


class ImageInputError(GlowflowError):
    """Bytes that are not an image this module can read (the server answers 400)."""


@dataclass(frozen=True)
class Framing:
    """How a photo was brought to the model's size.

    ``method`` is ``"face detector"``, ``"centre crop"`` or ``"as given"`` (already the model's
    size); ``box`` is ``(left, top, right, bottom)`` in the photo's pixels (it may reach past
    the photo's edges, which are then filled by repeating the border); ``notice`` tells a
    person why no face crop was made, or is None.
    """

    method: str
    box: tuple[float, float, float, float]
    notice: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "box": [round(v, 1) for v in self.box],
                "notice": self.notice}  # fmt: skip


def decode_image(data: bytes, channels: int) -> Image.Image:
    """A PNG/JPEG/... file's bytes as a Pillow image in the model's mode (``L`` or ``RGB``),
    upright as its EXIF orientation says.

    Raises:
        ImageInputError: for bytes that are not an image, or one over ``MAX_PIXELS``.
    """
    if not data:
        raise ImageInputError("the request has no image: send a PNG or JPEG file as the body")
    try:
        im = Image.open(io.BytesIO(data), formats=FORMATS)
        w, h = im.size
        if w * h > MAX_PIXELS:
            raise ImageInputError(
                f"the image is {w}x{h}: over {MAX_PIXELS // 1_000_000} megapixels; send a "
                f"smaller one"
            )
        if im.mode not in READABLE_MODES:
            raise ImageInputError(
                f"the image is in the colour mode {im.mode[:12]}, which the explorer does not "
                f"read; send an RGB or grayscale PNG or JPEG (8 or 16 bits)"
            )
        factor = _reduction(w, h)
        if factor > 1 and isinstance(im, JpegImageFile):  # JPEG or MPO: decode at 1/2 to 1/8
            im.draft(im.mode, (-(-w // factor), -(-h // factor)))
        turn = _ORIENTATIONS.get(im.getexif().get(_ORIENTATION_TAG))
        im.load()
        im = _reduce(eight_bit(im))  # new images: the EXIF orientation, read above, is applied
        if turn is not None:
            im = im.transpose(turn)
    except ImageInputError:
        raise
    except Exception as e:  # a damaged file can fail any of Pillow's decoders in its own way
        raise ImageInputError(
            f"the file is not an image Pillow can read ({type(e).__name__}); send a PNG or JPEG"
        ) from e
    try:
        if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
            background = Image.new("RGBA", im.size, (255, 255, 255, 255))  # transparency: white
            im = Image.alpha_composite(background, im.convert("RGBA"))
        return im.convert("L" if channels == 1 else "RGB")
    except ValueError as e:  # a mode Pillow cannot convert
        raise ImageInputError(
            f"the image's colour mode {im.mode} cannot be converted ({first_line(e)}); send an "
            f"RGB or grayscale PNG or JPEG"
        ) from None


def _reduction(w: int, h: int) -> int:
    """The smallest whole factor that brings a ``w`` x ``h`` photo within ``WORK_PIXELS``."""
    factor = 1
    while (w // factor) * (h // factor) > WORK_PIXELS:
        factor += 1
    return factor


def _reduce(im: Image.Image) -> Image.Image:
    """``im`` box-filtered by the whole factor that brings it within ``WORK_PIXELS`` (a
    palette or bilevel image first takes the mode it will be framed in), or ``im`` itself."""
    factor = _reduction(*im.size)
    if factor == 1:
        return im
    if im.mode in ("P", "PA", "1"):
        transparent = im.mode == "PA" or "transparency" in im.info
        im = im.convert("RGBA" if transparent else "L" if im.mode == "1" else "RGB")
    return im.reduce(factor)


@lru_cache(maxsize=1)
def face_detector() -> Any | None:
    """OpenCV's frontal-face Haar cascade, or None where ``glowflow[faces]`` is not installed."""
    try:
        import cv2
    except ImportError:
        return None
    path = f"{cv2.data.haarcascades}haarcascade_frontalface_default.xml"
    cascade = cv2.CascadeClassifier(path)
    return None if cascade.empty() else cascade


def find_face(im: Image.Image) -> tuple[int, int, int, int] | None:
    """The largest frontal face in ``im`` as ``(x, y, width, height)``, or None."""
    detector = face_detector()
    if detector is None:
        return None
    gray = np.asarray(im.convert("L"))
    side = min(gray.shape)
    smallest = max(24, int(side * _FACE_MIN_FRACTION))
    faces = detector.detectMultiScale(
        gray, scaleFactor=1.1, minNeighbors=5, minSize=(smallest, smallest)
    )
    if len(faces) == 0:
        return None
    x, y, w, h = max(faces, key=lambda f: f[2] * f[3])
    return int(x), int(y), int(w), int(h)


def _centre_square(w: int, h: int) -> tuple[float, float, float, float]:
    side = min(w, h)
    left, top = (w - side) / 2, (h - side) / 2
    return left, top, left + side, top + side


def frame_image(im: Image.Image, size: tuple[int, int], faces: bool) -> tuple[Image.Image, Framing]:
    """``im`` cropped to the model's framing and resized (LANCZOS) to ``size`` ``(W, H)``.

    With ``faces``, the crop is placed around the detected face; otherwise, or when no face
    is found, it is the central square of the photo.
    """
    w, h = im.size
    if (w, h) == tuple(size):
        return im, Framing("as given", (0.0, 0.0, float(w), float(h)), None)
    notice = None
    face = find_face(im) if faces else None
    if face is not None:
        fx, fy, fw, fh = face
        side = CROP_SIDE_PER_FACE_WIDTH * fw
        cx, cy = fx + fw / 2, fy + fh / 2 - CROP_CENTRE_ABOVE_FACE * fw
        box = (cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2)
        method = "face detector"
    else:
        box = _centre_square(w, h)
        method = "centre crop"
        if faces:
            notice = (
                "no face detector installed (pip install 'glowflow[faces]'): centre crop used"
                if face_detector() is None
                else "no face found: centre crop used"
            )
    return _crop(im, box, size), Framing(method, box, notice)


def frame_upload(
    data: bytes, image_shape: tuple[int, int, int], faces: bool
) -> tuple[np.ndarray, Framing, tuple[int, int]]:
    """An image file's bytes decoded (``decode_image``) and framed (``frame_image``)
    for a model of ``image_shape`` ``(C, H, W)``: the uint8 ``(C, H, W)`` array, how it was
    framed, and the photo's size ``(W, H)``."""
    c, h, w = image_shape
    im = decode_image(data, c)
    framed, framing = frame_image(im, (w, h), faces)
    array = np.asarray(framed)  # (H, W, C), or (H, W) for grayscale
    array = array[..., None] if c == 1 else array
    return array.transpose(2, 0, 1).copy(), framing, im.size  # a writable copy


def _crop(im: Image.Image, box: tuple[float, ...], size: tuple[int, int]) -> Image.Image:
    """The box of ``im`` resized to ``size``; parts of the box past the photo's edges repeat
    the nearest border pixels, as the detector's crop of a face near an edge needs."""
    w, h = im.size
    left, top, right, bottom = box
    margin = int(np.ceil(max(0.0, -left, -top, right - w, bottom - h)))
    if margin:
        arr = np.asarray(im)
        pad = ((margin, margin), (margin, margin)) + ((0, 0),) * (arr.ndim - 2)
        im = Image.fromarray(np.pad(arr, pad, mode="edge"))
        box = (left + margin, top + margin, right + margin, bottom + margin)
    return im.resize(size, Image.LANCZOS, box=box)
