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

from typing import Any, Sequence


class CocoFormatError(ValueError):
    """Bad COCO input; ``problems`` lists every problem found, one per line of the message."""

    def __init__(self, headline: str, problems: Sequence[Any]):
        self.problems = list(problems)
        text = headline + "".join(f"\n  - {p}" for p in self.problems)
        # Non-UTF-8 file names reach here as lone surrogates: show them as escapes, printable anywhere.
        super().__init__(text.encode("utf-8", "backslashreplace").decode("utf-8"))
