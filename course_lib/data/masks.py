"""Binary masks to COCO segmentations: RLE encoding and polygon tracing. Taught in: 05_coco_dataset

``encode_mask`` gives pycocotools' compressed RLE (``counts`` as str, JSON-ready); ``mask_to_polygons``
traces each region's outer boundary (holes are dropped, as polygons cannot hold them);
``mask_to_annotation`` builds one annotation with pycocotools' area and bbox.
"""

from __future__ import annotations

import numpy as np
from pycocotools import mask as mask_utils


def encode_mask(mask: np.ndarray) -> dict:
    """(H, W) binary mask (non-zero = inside) -> COCO RLE dict with ``counts`` as a str (JSON-ready)."""
    rle = mask_utils.encode(np.asfortranarray(np.asarray(mask) != 0, dtype=np.uint8))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def _boundary_loops(mask: np.ndarray) -> list[np.ndarray]:
    """Closed loops of pixel-corner points (x, y) around a mask, foreground on the right of travel.

    Outer boundaries run clockwise on screen (positive shoelace area), holes anticlockwise. Where two
    foreground pixels touch only at a corner the trace turns left, joining them (8-connectivity).
    """
    _, w = mask.shape
    m = np.pad(mask.astype(bool), 1)
    starts, dirs = [], []
    for edge, offset, d in (
        (m[1:, 1:-1] & ~m[:-1, 1:-1], (0, 0), (1, 0)),  # top of a pixel: (x, y) -> (x+1, y)
        (m[:-1, 1:-1] & ~m[1:, 1:-1], (1, 0), (-1, 0)),  # bottom: (x+1, y) -> (x, y)
        (m[1:-1, 1:] & ~m[1:-1, :-1], (0, 1), (0, -1)),  # left side: (x, y+1) -> (x, y)
        (m[1:-1, :-1] & ~m[1:-1, 1:], (0, 0), (0, 1)),  # right side: (x, y) -> (x, y+1)
    ):
        ys, xs = np.nonzero(edge)
        starts.append(np.stack([xs + offset[0], ys + offset[1]], 1))
        dirs.append(np.tile(d, (len(xs), 1)))
    start, d = np.concatenate(starts), np.concatenate(dirs)
    vertex = start[:, 1] * (w + 1) + start[:, 0]
    order = np.argsort(vertex, kind="stable")
    end = vertex + d[:, 1] * (w + 1) + d[:, 0]
    first = np.searchsorted(vertex[order], end)
    nxt, other = order[first], order[np.minimum(first + 1, len(order) - 1)]
    # Two edges leave a saddle corner: take the one turning left, (dx, dy) -> (dy, -dx).
    saddle = np.searchsorted(vertex[order], end, "right") - first == 2
    left = saddle & (d[other, 0] == d[:, 1]) & (d[other, 1] == -d[:, 0])
    nxt = np.where(left, other, nxt).tolist()
    seen, loops = bytearray(len(nxt)), []
    for e0 in range(len(nxt)):
        cycle, e = [], e0
        while not seen[e]:
            seen[e] = 1
            cycle.append(e)
            e = nxt[e]
        if cycle:
            corner = np.any(d[cycle] != d[np.roll(cycle, 1)], 1)  # keep the corners only
            loops.append(start[cycle][corner])
    return loops


def polygon_signed_area(loop: np.ndarray) -> float:
    """The shoelace formula: the area of the polygon ``loop`` (K, 2) of ``(x, y)`` corners, positive when the
    corners go anticlockwise in x-right, y-up axes (clockwise on an image, y down), negative the other way."""
    x, y = loop[:, 0].astype(np.float64), loop[:, 1].astype(np.float64)
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y))


def _inside(point: np.ndarray, loop: np.ndarray) -> bool:
    """Even-odd test of a pixel centre against an axis-aligned loop (a ray towards +x)."""
    a, b = loop, np.roll(loop, -1, axis=0)
    vertical = (a[:, 0] == b[:, 0]) & (a[:, 0] > point[0])
    spans = (np.minimum(a[:, 1], b[:, 1]) < point[1]) & (point[1] < np.maximum(a[:, 1], b[:, 1]))
    return bool(np.count_nonzero(vertical & spans) % 2)


def mask_to_polygons(mask: np.ndarray) -> list[list[int]]:
    """(H, W) binary mask -> COCO polygons that pycocotools decodes to exactly ``mask``.

    One polygon per 8-connected part, with integer pixel-corner coordinates traced along the pixel
    edges (a single pixel at (x, y) is the square ``[x, y, x+1, y, x+1, y+1, x, y+1]``). A part with
    holes stays one polygon: after the outer boundary it goes to each hole along a "bridge" segment,
    round the hole and back along the same bridge. pycocotools fills polygons even-odd, so the bridges
    cancel out; drawing tools that fill non-zero may show them as hairlines.
    """
    mask = np.asarray(mask, dtype=bool)
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    if not len(rows):
        return []
    crop = mask[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]  # trace the bounding box only: faster
    loops = [loop + (cols[0], rows[0]) for loop in _boundary_loops(crop)]
    areas = [polygon_signed_area(loop) for loop in loops]
    outers = [i for i, a in enumerate(areas) if a > 0]
    holes_of: dict[int, list[int]] = {i: [] for i in outers}
    for i in (i for i, a in enumerate(areas) if a < 0):
        p0, p1 = loops[i][0], loops[i][1]
        step = np.sign(p1 - p0)
        centre = p0 + 0.5 * step + 0.5 * np.array([step[1], -step[0]])  # a pixel inside the hole
        owner = min((j for j in outers if _inside(centre, loops[j])), key=lambda j: areas[j])
        holes_of[owner].append(i)
    polygons = []
    for i in outers:
        pts = [loops[i]]
        for j in holes_of[i]:
            pts += [loops[i][:1], loops[j], loops[j][:1]]
        polygons.append(np.concatenate(pts).ravel().tolist())
    return polygons


def mask_to_annotation(mask: np.ndarray, ann_id: int, image_id: int, category_id: int,
                       encoding: str = "rle", iscrowd: int = 0) -> dict:
    """One instance mask -> one COCO annotation; ``area`` and ``bbox`` are pycocotools' for the mask.

    ``encoding`` is ``"rle"`` or ``"polygon"``; crowd regions (``iscrowd=1``) are always RLE, as in COCO.
    """
    if encoding not in ("rle", "polygon"):
        raise ValueError(f"encoding must be 'rle' or 'polygon', got {encoding!r}")
    if iscrowd not in (0, 1):
        raise ValueError(f"annotation {ann_id}: iscrowd must be 0 or 1, got {iscrowd!r}")
    rle = encode_mask(mask)
    area = float(mask_utils.area(rle))
    if area == 0:
        raise ValueError(f"annotation {ann_id} (image {image_id}): the mask is empty")
    segmentation = rle if encoding == "rle" or iscrowd else mask_to_polygons(mask)
    return {"id": int(ann_id), "image_id": int(image_id), "category_id": int(category_id),
            "segmentation": segmentation, "area": area,
            "bbox": [float(v) for v in mask_utils.toBbox(rle)], "iscrowd": int(iscrowd)}
