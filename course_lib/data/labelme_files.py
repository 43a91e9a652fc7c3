"""What a LabelMe file's shapes and image fields mean, for ``importers.labelme_to_coco``. Taught in:
05_coco_dataset

Shapes (``shape_type``): ``polygon``; ``rectangle`` (two corners); ``circle`` (centre and a point on it, as a
``CIRCLE_POINTS``-gon); ``mask`` (LabelMe 5: a base64 PNG in ``mask`` whose top-left pixel is the first of
the two ``points``, covering the box up to the second one, inclusive). ``line``, ``linestrip``, ``point`` and
``points`` have no area: ``read_shape`` returns ``SKIPPED`` and the importer warns, naming the file and the
shape, and goes on. A shape with area kinds that still covers nothing (a polygon whose points lie on one
line, a circle of radius 0, an empty mask) is an error that says so.

The frame (``check_frame``): LabelMe 4 and later show a photo upright (EXIF Orientation applied) and store
``imageHeight``/``imageWidth``, the points and ``imageData`` in that frame, the one the course uses. A file
whose ``imageHeight``/``imageWidth`` are the photo's stored size instead, or whose ``imageData`` shows the
stored pixels, was drawn on them (an older LabelMe): it is refused, naming "EXIF Orientation N".
"""

from __future__ import annotations

import base64
import binascii
import io
import math
from pathlib import Path

import numpy as np
from PIL import Image

from course_lib.data.image_files import (
    UPRIGHT_TRANSPOSE,
    ImageHeader,
    describe_orientation,
    stored_size_reason,
)

CIRCLE_POINTS = 32  # a LabelMe circle becomes a polygon with this many corners
NO_AREA = {"line": "a line", "linestrip": "a line strip", "point": "a point", "points": "points"}
SKIPPED = "skipped"  # what read_shape returns for a shape without area


def _points(pts, where: str, problems: list[str]) -> bool:
    ok = isinstance(pts, list) and all(isinstance(p, list) and len(p) == 2 and
                                       all(isinstance(v, (int, float)) and math.isfinite(v) for v in p) for p in pts)
    if not ok:
        problems.append(f"{where}: points must be a list of [x, y] numbers")
    return ok


def _polygon(kind: str, pts: list, where: str, problems: list[str]) -> list[float] | None:
    if kind == "polygon":
        if len(pts) < 3:
            problems.append(f"{where}: a polygon needs at least 3 points, got {len(pts)}")
            return None
        poly = [float(v) for p in pts for v in p]
        if _shoelace(poly) == 0:
            problems.append(f"{where}: the polygon has no area (its points lie on one line)")
            return None
        return poly
    if kind == "rectangle":
        if len(pts) != 2:
            problems.append(f"{where}: a rectangle needs 2 points (two corners), got {len(pts)}")
            return None
        (x0, y0), (x1, y1) = pts
        x0, x1, y0, y1 = min(x0, x1), max(x0, x1), min(y0, y1), max(y0, y1)
        if x1 - x0 <= 0 or y1 - y0 <= 0:
            problems.append(f"{where}: the rectangle has no area (its corners share an x or a y)")
            return None
        return [float(v) for v in (x0, y0, x1, y0, x1, y1, x0, y1)]
    if len(pts) != 2:  # circle
        problems.append(f"{where}: a circle needs 2 points (centre, a point on it), got {len(pts)}")
        return None
    (cx, cy), (px, py) = pts
    r = math.hypot(px - cx, py - cy)
    if r == 0:
        problems.append(f"{where}: the circle has no area (radius 0)")
        return None
    a = np.linspace(0, 2 * math.pi, CIRCLE_POINTS, endpoint=False)
    return np.stack([cx + r * np.cos(a), cy + r * np.sin(a)], 1).ravel().round(3).tolist()


def _shoelace(poly: list[float]) -> float:
    x, y = np.asarray(poly[0::2]), np.asarray(poly[1::2])
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y)))


def _mask(shape: dict, pts: list, where: str, size: tuple[int, int], problems: list[str]) -> np.ndarray | None:
    h, w = size
    if len(pts) != 2:
        problems.append(f"{where}: a mask needs 2 points (the corners of its box), got {len(pts)}")
        return None
    data = shape.get("mask")
    if not isinstance(data, str) or not data:
        problems.append(f"{where}: a mask shape needs its 'mask' (a base64 PNG), got {type(data).__name__}")
        return None
    try:
        with Image.open(io.BytesIO(base64.b64decode(data))) as im:  # LabelMe writes it with newlines
            arr = np.asarray(im)
    except (binascii.Error, ValueError, OSError) as e:
        problems.append(f"{where}: its 'mask' is not a base64 PNG ({type(e).__name__}: {e})")
        return None
    if arr.ndim != 2:
        problems.append(f"{where}: its 'mask' has {arr.shape[-1]} channels; a mask is single-channel")
        return None
    (x1, y1), (x2, y2) = np.asarray(pts).astype(int).tolist()  # as LabelMe reads them
    mh, mw = arr.shape
    if (mh, mw) not in ((y2 - y1 + 1, x2 - x1 + 1), (y2 - y1, x2 - x1)):
        problems.append(f"{where}: its 'mask' is {mw}x{mh} (WxH) but its points span {x2 - x1 + 1}x{y2 - y1 + 1} "
                        "pixels")
        return None
    if x1 < 0 or y1 < 0 or x1 + mw > w or y1 + mh > h:
        problems.append(f"{where}: the mask reaches outside the {w}x{h} image")
        return None
    full = np.zeros((h, w), bool)
    full[y1:y1 + mh, x1:x1 + mw] = arr != 0
    if not full.any():
        problems.append(f"{where}: the mask has no area (no pixel set)")
        return None
    return full


def read_shape(shape: dict, where: str, size: tuple[int, int], problems: list[str]):
    """One LabelMe shape in an image of ``size`` = (height, width) -> ``("polygon", [x0, y0, x1, ...])``,
    ``("mask", (H, W) bool)``, ``SKIPPED`` (no area: the caller warns), or ``None`` after adding the
    problem (naming ``where``) to ``problems``."""
    kind = shape.get("shape_type") or "polygon"
    if kind in NO_AREA:
        return SKIPPED
    pts = shape.get("points")
    if not _points(pts, where, problems):
        return None
    if kind == "mask":
        mask = _mask(shape, pts, where, size, problems)
        return None if mask is None else ("mask", mask)
    if kind not in ("polygon", "rectangle", "circle"):
        problems.append(f"{where}: unknown shape_type {kind!r} (known: polygon, rectangle, circle, mask; "
                        f"{', '.join(NO_AREA)} are skipped)")
        return None
    poly = _polygon(kind, pts, where, problems)
    if poly is None:
        return None
    h, w = size
    xs, ys = poly[0::2], poly[1::2]
    if min(xs) < -0.5 or min(ys) < -0.5 or max(xs) > w + 0.5 or max(ys) > h + 0.5:
        problems.append(f"{where}: points outside the {w}x{h} image")
        return None
    return "polygon", [min(max(v, 0.0), float(w if k % 2 == 0 else h)) for k, v in enumerate(poly)]


def skip_reason(shape: dict) -> str:
    """Why a ``SKIPPED`` shape was skipped, for the warning."""
    return f"{NO_AREA[shape.get('shape_type')]} has no area; only shapes with area become instances"


def _thumbnail(im: Image.Image) -> np.ndarray:
    im.draft("L", (128, 128))  # JPEG: decode at a reduced size
    return np.asarray(im.convert("L").resize((32, 32), Image.Resampling.BILINEAR), np.float32)


def _image_data_frame(image_data: str, photo: Path, header: ImageHeader) -> str:
    """``"upright"`` or ``"stored"``: the frame of the photo that ``imageData`` shows (its pixels as stored,
    as LabelMe draws them), by size when that tells, else by content; its ``"WxH"`` when it fits neither."""
    with Image.open(io.BytesIO(base64.b64decode(image_data))) as shown:
        size = (shown.height, shown.width)
        if size not in (header.stored, (header.height, header.width)):
            return f"{shown.width}x{shown.height}"
        if size != header.stored:
            return "upright"
        if size != (header.height, header.width):
            return "stored"
        small = _thumbnail(shown)
    with Image.open(photo) as im:
        stored = _thumbnail(im)
    upright = np.asarray(Image.fromarray(stored).transpose(UPRIGHT_TRANSPOSE[header.orientation]), np.float32)
    return "stored" if np.abs(small - stored).mean() < np.abs(small - upright).mean() else "upright"


def check_frame(path: Path, data: dict, photo: Path, header: ImageHeader, problems: list[str]) -> bool | None:
    """Whether LabelMe file ``path`` (its JSON ``data``) was drawn on its ``photo`` upright, as the course reads it.

    ``True``: its sizes or ``imageData`` show that it was (or the photo has no tag); ``None``: the photo has a
    tag but the file cannot tell (no ``imageData``, and a size that looks the same either way: the caller
    notes it and reads it upright, as LabelMe 4+ draws); ``False`` after adding the problem to ``problems``.
    """
    h, w, tag = header
    jh, jw = data.get("imageHeight"), data.get("imageWidth")
    if (jh, jw) not in ((h, w), (None, None)):
        why = stored_size_reason((jw, jh), (w, h), tag)
        if why:
            problems.append(f"{path}: imageWidth x imageHeight = {jw}x{jh} but the image {photo.name} is {w}x{h} "
                            f"upright: {why}. This file was drawn on the stored pixels (an older LabelMe): "
                            f"remove the photo's tag (exiftool -Orientation= {photo.name}) so that it reads "
                            "as it was drawn")
        else:
            problems.append(f"{path}: imageHeight x imageWidth = {jh}x{jw} but the image {photo.name} is {h}x{w}"
                            + (f" (upright, {describe_orientation(tag)})" if tag != 1 else ""))
        return False
    if tag == 1:
        return True
    image_data = data.get("imageData")
    if isinstance(image_data, str) and image_data:
        try:
            frame = _image_data_frame(image_data, photo, header)
        except (binascii.Error, ValueError, OSError) as e:
            problems.append(f"{path}: imageData is not a readable image ({type(e).__name__}: {e})")
            return False
        if frame == "stored":
            problems.append(f"{path}: its imageData shows the stored pixels of {photo.name}, which "
                            f"{describe_orientation(tag)} turns: this file was drawn on the stored pixels (an "
                            f"older LabelMe), while the course reads photos upright; remove the photo's tag "
                            f"(exiftool -Orientation= {photo.name}) so that it reads as it was drawn")
            return False
        if frame != "upright":
            problems.append(f"{path}: its imageData is {frame} (WxH) but the image {photo.name} is {w}x{h} upright: "
                            "was the photo changed after it was annotated?")
            return False
        return True
    return True if not header.frame_ambiguous and jh is not None else None

