"""COCO instance files: building them from masks, checking them, and a torch ``Dataset`` that reads them.
Taught in: 05_coco_dataset (used from 00_overview on).

Box formats: COCO stores ``bbox`` as ``[x, y, width, height]``; the ``Dataset`` returns torchvision's
``(x1, y1, x2, y2)``. ``area`` and ``bbox`` are always computed by pycocotools from the mask, so
they agree with what ``COCOeval`` uses.

Segmentations are RLE (``{"size": [h, w], "counts": str}``) or polygons (``[[x1, y1, x2, y2, ...], ...]``).
The polygons written here trace the pixel edges, so pycocotools decodes them to exactly the original mask
(holes included). Crowd regions (``iscrowd=1``) are always written as RLE.

Every problem in the input is an error that names its file and instance: nothing is dropped silently,
and a failed build writes no file.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any


def write_json_atomic(obj: Any, path: str | Path) -> Path:
    """Write JSON to a temporary file beside ``path``, then rename: never a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(obj, f)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path
