"""Reading a photo the way the person who took it sees it: every image the course reads goes through here.
Taught in: 05_coco_dataset (reading images), used by ``coco build``, the Dataset and ``predict``.

Phones store landscape pixels plus an EXIF ``Orientation`` tag (1-8) saying how to turn them for display.
Annotation tools (LabelMe, CVAT, the YOLO exporters) draw on the turned, *upright* picture, and Detectron2's
``read_image`` applies the tag too; so the course's frame is the upright one everywhere: a COCO file's
``width``/``height`` and coordinates, the Dataset's tensors and ``predict``'s overlays and results.
(torchvision's ``CocoDetection`` reads stored pixels; for a photo with a tag other than 1 the two differ.)

``read_rgb(path)`` -> (H, W, 3) uint8 upright; ``upright(im)`` turns an open PIL image;
``orientation(im)`` is its tag (1 when absent); ``to_rgb_uint8(im)`` converts any mode to RGB uint8.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

ORIENTATION_TAG = 0x0112  # EXIF "Orientation"
# What each tag value means for display (EXIF 2.32, table of Orientation): the transform that makes it upright.
ORIENTATION_NAMES = {
    1: "upright", 2: "mirrored left-right", 3: "upside down", 4: "mirrored top-bottom",
    5: "mirrored along the main diagonal", 6: "turned 90 degrees (shown turned clockwise)",
    7: "mirrored along the other diagonal", 8: "turned 90 degrees (shown turned anticlockwise)",
}
# Tags 5-8 swap width and height: the stored image is W x H, the upright one H x W.
SWAPS_SIDES = frozenset({5, 6, 7, 8})


def orientation(im: Image.Image) -> int:
    """The image's EXIF Orientation tag, 1 (upright) when there is none or it is not a valid value 1-8."""
    try:
        value = int(im.getexif().get(ORIENTATION_TAG, 1))
    except (TypeError, ValueError, OSError, SyntaxError):  # a damaged EXIF block: read the pixels as stored
        return 1
    return value if value in ORIENTATION_NAMES else 1


def describe_orientation(tag: int) -> str:
    """'EXIF Orientation 6 (turned 90 degrees (shown turned clockwise))': for messages."""
    return f"EXIF Orientation {tag} ({ORIENTATION_NAMES.get(tag, 'not a valid value')})"


def upright(im: Image.Image) -> Image.Image:
    """``im`` turned as its EXIF Orientation says (``PIL.ImageOps.exif_transpose``); ``im`` itself when
    it is already upright."""
    if orientation(im) == 1:
        return im
    return ImageOps.exif_transpose(im)


def upright_size(im: Image.Image) -> tuple[int, int]:
    """(width, height) of the upright picture, without decoding the pixels."""
    w, h = im.size
    return (h, w) if orientation(im) in SWAPS_SIDES else (w, h)


def to_rgb_uint8(im: Image.Image) -> np.ndarray:
    """Any PIL image -> (H, W, 3) uint8 RGB, in the frame it is given (``upright`` it first for a photo).

    Grayscale is repeated in 3 channels, palette images go through their palette, alpha is dropped
    (not composited), and 16-bit images (``I;16*``, ``I``) are scaled from 0..65535 to 0..255.
    """
    if im.mode.startswith("I"):
        a = np.asarray(im).astype(np.float32)
        a = np.round(np.clip(a, 0, 65535) / 257).astype(np.uint8)
        return np.repeat(a[..., None], 3, axis=2)
    if im.mode in ("P", "PA"):
        im = im.convert("RGBA")  # via RGBA: PIL warns about palette transparency otherwise
    return np.array(im.convert("RGB"))  # a writable copy, for torch.from_numpy


def read_rgb(path: str | Path) -> np.ndarray:
    """The image at ``path`` as (H, W, 3) uint8 RGB in its upright frame (EXIF Orientation applied).
    PIL's own errors (missing file, truncated or unknown data) propagate: callers name the file."""
    with Image.open(path) as im:
        return to_rgb_uint8(upright(im))
