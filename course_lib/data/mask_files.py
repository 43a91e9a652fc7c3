"""Reading mask files so that they never go silently wrong: the rules every mask file passes. Taught in:
05_coco_dataset (used by ``build_coco_dataset`` and the importers in ``importers``).

A mask file is refused, with its file named, when:

1. it is a JPEG *by content* (its first bytes are ``FF D8 FF``), whatever its extension: JPEG is lossy, so
   a 0/255 mask comes back with values in between and an id mask gains phantom ids;
2. it is not single-channel (RGB masks are ambiguous);
3. ``kind="binary"`` (one instance per file) and it holds more than two distinct values: "saved with lossy
   compression?" (a binary mask is 0 and one other value, e.g. 0/1 or 0/255);
4. ``kind="ids"`` (instance k = pixels of value k) and it holds an instance of fewer than
   ``NOISE_PIXELS`` (128) pixels beside one at least ``NOISE_RATIO`` (20) times larger: the signature of
   compression noise (JPEG leaves 1-127 px specks of in-between values along the edges of the real
   instances). A real small object beside a big one is possible: ``allow_tiny=True`` accepts it, and
   ``build_coco_dataset`` passes it for an id mask with a JSON sidecar (the ids it lists are meant; an id
   it does not list is an error there anyway).

``kind="palette"`` (Pascal VOC's SegmentationObject/SegmentationClass) reads the palette indices, and
``VOID`` (255, VOC's outline round every object and its "difficult" regions) is ignored: the caller says
how many pixels were ignored.

``image_size`` is the one way the builders and importers read an image's size: it raises ``ImageFileError``
naming the file when the file is missing or is not an image PIL can read.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

JPEG_MAGIC = b"\xff\xd8\xff"
NOISE_PIXELS = 128
NOISE_RATIO = 20
VOID = 255


class MaskFileError(ValueError):
    """A mask file the course refuses; the message starts with the file's path."""


class ImageFileError(ValueError):
    """An image file the course cannot read; the message starts with the file's path."""


def image_size(path: str | Path) -> tuple[int, int]:
    """(height, width) of an image file, read from its header; ``ImageFileError`` naming the file otherwise."""
    path = Path(path)
    if not path.is_file():
        raise ImageFileError(f"{path}: cannot read the image: no such file")
    try:
        with Image.open(path) as im:
            w, h = im.size
    except Exception as e:  # noqa: BLE001 - PIL raises many kinds; all mean "not a readable image"
        raise ImageFileError(f"{path}: cannot read the image: not an image file PIL can open "
                             f"({type(e).__name__}: {e})") from e
    return h, w


def is_jpeg(path: str | Path) -> bool:
    """True when the file's content is a JPEG (by its magic bytes, not its extension)."""
    with open(path, "rb") as f:
        return f.read(3) == JPEG_MAGIC


def read_mask_file(path: str | Path, kind: str = "binary", size: tuple[int, int] | None = None,
                   allow_tiny: bool = False) -> np.ndarray:
    """A mask file as a 2-D integer array, after the rules in this module's docstring.

    ``kind``: ``"binary"`` (returns a bool array), ``"ids"`` or ``"palette"`` (the stored values).
    ``size`` = (height, width) that the mask must have. Raises ``MaskFileError`` naming the file.
    """
    path = Path(path)
    if kind not in ("binary", "ids", "palette"):
        raise ValueError(f"kind must be 'binary', 'ids' or 'palette', got {kind!r}")
    try:
        if is_jpeg(path):
            raise MaskFileError(f"{path}: is a JPEG file (by its content{', despite its extension' if path.suffix.lower() not in ('.jpg', '.jpeg') else ''}); "
                                "JPEG is lossy and changes mask values: save masks as PNG")
        with Image.open(path) as im:
            mode = im.mode
            if kind == "palette" and mode != "P":
                raise MaskFileError(f"{path}: is a {mode} image; a VOC mask is a palette (P) PNG whose "
                                    "indices are the class or object ids")
            arr = np.asarray(im)
    except MaskFileError:
        raise
    except Exception as e:
        raise MaskFileError(f"{path}: cannot read the mask ({type(e).__name__}: {e})") from e
    if arr.ndim != 2:
        raise MaskFileError(f"{path}: the mask is {mode} with {arr.shape[-1]} channels; "
                            "a mask must be single-channel (grayscale, palette or 16-bit)")
    if size is not None and arr.shape != tuple(size):
        raise MaskFileError(f"{path}: the mask is {arr.shape[1]}x{arr.shape[0]} (WxH) "
                            f"but its image is {size[1]}x{size[0]}")
    values, counts = np.unique(arr, return_counts=True)
    if kind == "binary":
        if len(values) > 2:
            raise MaskFileError(f"{path}: not a binary mask: {len(values)} distinct values "
                                f"({_some(values)}); saved with lossy compression?")
        return arr != 0
    if kind == "ids" and not allow_tiny:
        ids = {int(v): int(n) for v, n in zip(values, counts, strict=True) if v != 0}
        if ids:
            biggest = max(ids.values())
            tiny = sorted(k for k, n in ids.items() if n < NOISE_PIXELS and n * NOISE_RATIO <= biggest)
            if tiny:
                raise MaskFileError(f"{path}: instance id(s) {_some(tiny)} have only "
                                    f"{_some([ids[k] for k in tiny])} pixel(s) beside an instance of {biggest}: "
                                    "compression noise (was the mask saved as JPEG once?); "
                                    "if they are real objects pass allow_tiny (--allow-tiny)")
    return arr


def _some(values, n: int = 6) -> str:
    values = [int(v) for v in values]
    return ", ".join(map(str, values[:n])) + (", ..." if len(values) > n else "")
