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
how many pixels were ignored. The same file given as ``kind="ids"`` (a palette PNG holding 255) is refused
with a pointer to ``coco build voc``: read as ids, its outline would become one more instance.

``image_header`` / ``image_size`` are the one way the builders and importers read an image's size: the
*upright* size (EXIF Orientation applied, see ``image_files``); they raise ``ImageFileError`` naming the
file when it is missing or is not an image PIL can read.

Masks and EXIF: a mask PNG carries no Orientation tag, and the tools that draw masks show the photo
upright, so a mask must have the upright photo's size. A mask that has the photo's *stored* size instead
(a tag 5-8 swaps the sides) was made on the stored pixels: it is refused, naming "EXIF Orientation N".
When the size cannot tell (tags 2-4, or a square photo), the mask is taken to be upright.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from course_lib.data.image_files import ImageHeader, read_header, stored_size_reason

JPEG_MAGIC = b"\xff\xd8\xff"
NOISE_PIXELS = 128
NOISE_RATIO = 20
VOID = 255


class MaskFileError(ValueError):
    """A mask file the course refuses; the message starts with the file's path."""


class ImageFileError(ValueError):
    """An image file the course cannot read; the message starts with the file's path."""


def image_header(path: str | Path) -> ImageHeader:
    """(height, width, orientation) of an image file: its upright size (EXIF Orientation applied) and its tag,
    read from its header; ``ImageFileError`` naming the file otherwise."""
    path = Path(path)
    if not path.is_file():
        raise ImageFileError(f"{path}: cannot read the image: no such file")
    try:
        return read_header(path)
    except Exception as e:  # noqa: BLE001 - PIL raises many kinds; all mean "not a readable image"
        raise ImageFileError(f"{path}: cannot read the image: not an image file PIL can open "
                             f"({type(e).__name__}: {e})") from e


def image_size(path: str | Path) -> tuple[int, int]:
    """(height, width) of an image file as the course reads it: upright (see ``image_header``)."""
    h, w, _ = image_header(path)
    return h, w


def is_jpeg(path: str | Path) -> bool:
    """True when the file's content is a JPEG (by its magic bytes, not its extension)."""
    with open(path, "rb") as f:
        return f.read(3) == JPEG_MAGIC


def read_mask_file(path: str | Path, kind: str = "binary", size: tuple[int, int] | None = None,
                   allow_tiny: bool = False, orientation: int = 1) -> np.ndarray:
    """A mask file as a 2-D integer array, after the rules in this module's docstring.

    ``kind``: ``"binary"`` (returns a bool array), ``"ids"`` or ``"palette"`` (the stored values).
    ``size`` = (height, width) that the mask must have: its photo's upright size; ``orientation`` is the
    photo's EXIF tag, named when the mask has the photo's stored size instead. Raises ``MaskFileError``
    naming the file.
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
        why = stored_size_reason((arr.shape[1], arr.shape[0]), (size[1], size[0]), orientation)
        raise MaskFileError(f"{path}: the mask is {arr.shape[1]}x{arr.shape[0]} (WxH) "
                            f"but its image is {size[1]}x{size[0]}"
                            + (f": {why}; save the mask in the upright frame" if why else ""))
    values, counts = np.unique(arr, return_counts=True)
    if kind == "ids" and mode == "P" and VOID in values:
        raise MaskFileError(f"{path}: a palette PNG holding index {VOID}, Pascal VOC's void outline: this looks "
                            "like a VOC SegmentationObject mask; import it with ./course coco build voc "
                            "(as ids, the outline would become an instance; an id mask with 255 or more "
                            "instances must be a 16-bit PNG)")
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
