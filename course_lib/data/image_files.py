"""Reading a photo the way the person who took it sees it: every image the course reads goes through here.
Taught in: 05_coco_dataset (reading images), used by ``coco build``, the Dataset and ``predict``.

Phones store landscape pixels plus an EXIF ``Orientation`` tag (1-8) saying how to turn them for display.
Annotation tools (LabelMe, CVAT, the YOLO exporters) draw on the turned, *upright* picture, and Detectron2's
``read_image`` applies the tag too; so the course's frame is the upright one everywhere: a COCO file's
``width``/``height`` and coordinates, the Dataset's tensors and ``predict``'s overlays and results.
(torchvision's ``CocoDetection`` reads stored pixels; for a photo with a tag other than 1 the two differ.)

``read_rgb(path)`` -> (H, W, 3) uint8 upright; ``upright(im)`` turns an open PIL image;
``orientation(im)`` is its tag (1 when absent); ``to_rgb_uint8(im)`` converts any mode to RGB uint8;
``read_header(path)`` -> ``ImageHeader`` (upright height and width, the tag) without decoding the pixels;
``stored_size_reason`` says when a size someone wrote down is the stored one of a photo its tag turns.

A size tells the two frames apart only for a tag that swaps the sides (5-8) of a photo that is not square;
a file that records its frame some other way (LabelMe's ``imageData``) is checked by its content.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

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
# The transpose that turns the stored pixels upright, per tag (as PIL's ImageOps.exif_transpose does it).
UPRIGHT_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def orientation(im: Image.Image) -> int:
    """The image's EXIF Orientation tag, 1 (upright) when there is none or it is not a valid value 1-8.

    A PNG's tag is read from an eXIf chunk before its pixels only (where PIL writes it): looking for one after
    them would decode the whole image, and the answer must not change once the pixels are loaded.
    """
    if im.format == "PNG" and "exif" not in im.info:
        return 1
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


class ImageHeader(NamedTuple):
    """What an image file's header says: its upright ``height`` and ``width`` and its EXIF ``orientation``."""

    height: int
    width: int
    orientation: int

    @property
    def stored(self) -> tuple[int, int]:
        """(height, width) of the pixels as stored in the file, before the tag turns them."""
        return (self.width, self.height) if self.orientation in SWAPS_SIDES else (self.height, self.width)

    @property
    def frame_ambiguous(self) -> bool:
        """Whether a size cannot tell the upright frame from the stored one: a tag other than 1 that keeps the
        sides (2-4), or one that swaps the sides of a square photo."""
        return self.orientation != 1 and (self.orientation not in SWAPS_SIDES or self.height == self.width)


def read_header(path: str | Path) -> ImageHeader:
    """The upright size and the tag of the image at ``path``, from its header (PIL's errors propagate)."""
    with Image.open(path) as im:
        w, h = upright_size(im)
        return ImageHeader(h, w, orientation(im))


def stored_size_reason(found_wh: tuple[int, int], upright_wh: tuple[int, int], tag: int) -> str:
    """``""``, or why ``found_wh`` (width, height) that a file records is not the upright ``upright_wh``: it is
    the stored size of a photo whose EXIF Orientation ``tag`` swaps its sides. For error messages."""
    w, h = upright_wh
    if tag in SWAPS_SIDES and w != h and tuple(found_wh) == (h, w):
        return (f"{h}x{w} is the photo's stored size, but its {describe_orientation(tag)} turns it to {w}x{h}: "
                "the course reads photos upright, as annotation tools show them")
    return ""


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
