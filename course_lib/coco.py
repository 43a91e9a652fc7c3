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
import io
import json
import math
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from torchvision import tv_tensors

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


class CocoFormatError(ValueError):
    """Bad COCO input; ``problems`` lists every problem found, one per line of the message."""

    def __init__(self, headline: str, problems: Sequence[Any]):
        self.problems = list(problems)
        text = headline + "".join(f"\n  - {p}" for p in self.problems)
        # Non-UTF-8 file names reach here as lone surrogates: show them as escapes, printable anywhere.
        super().__init__(text.encode("utf-8", "backslashreplace").decode("utf-8"))


# ----------------------------------------------------------------------------------------------------
# Masks -> annotations
# ----------------------------------------------------------------------------------------------------

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
    h, w = mask.shape
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


def _shoelace(loop: np.ndarray) -> float:
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
    areas = [_shoelace(loop) for loop in loops]
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


def masks_to_coco(masks: np.ndarray | Sequence[np.ndarray], category_ids: int | Sequence[int], *,
                  image_id: int = 1, first_id: int = 1, iscrowd: int | Sequence[int] = 0,
                  encoding: str = "rle") -> list[dict]:
    """Instance masks of one image -> COCO annotations with ids ``first_id, first_id + 1, ...``.

    ``masks`` is an (N, H, W) array or a list of (H, W) arrays (non-zero = inside). ``category_ids``
    and ``iscrowd`` are one value per mask, or one value for all. ``encoding``: ``"rle"`` or
    ``"polygon"`` (exact, see ``mask_to_polygons``). An empty mask, a mask of another size or a
    length mismatch raises ``ValueError`` naming the mask's index.
    """
    masks = [np.asarray(m) for m in masks]
    n = len(masks)
    cats = [category_ids] * n if isinstance(category_ids, (int, np.integer)) else list(category_ids)
    crowd = [iscrowd] * n if isinstance(iscrowd, (int, np.integer)) else list(iscrowd)
    if len(cats) != n or len(crowd) != n:
        raise ValueError(f"{n} masks but {len(cats)} category ids and {len(crowd)} iscrowd values")
    annotations = []
    for i, (mask, cat, c) in enumerate(zip(masks, cats, crowd)):
        if mask.ndim != 2 or mask.shape != masks[0].shape:
            raise ValueError(f"mask {i} has shape {mask.shape}; expected (H, W) = {masks[0].shape[-2:]}")
        if not mask.any():
            raise ValueError(f"mask {i} (image {image_id}) is empty")
        annotations.append(mask_to_annotation(mask != 0, first_id + i, image_id, int(cat), encoding, int(c)))
    return annotations


def images_and_masks_to_coco(records: Iterable[tuple[str, np.ndarray, list[int]]], categories: list[dict],
                             size: tuple[int, int], info: dict | None = None) -> dict:
    """Build a COCO dict from ``(file_name, masks (N, H, W) bool, category_ids)`` records.

    Image ids are 1, 2, ... in record order; annotation ids are 1, 2, ... across the file.
    """
    h, w = size
    images, annotations = [], []
    for image_id, (file_name, masks, cat_ids) in enumerate(records, start=1):
        images.append({"id": image_id, "file_name": file_name, "height": h, "width": w})
        for mask, cat in zip(masks, cat_ids):
            annotations.append(mask_to_annotation(mask, len(annotations) + 1, image_id, cat))
    return {"info": info or {}, "images": images, "annotations": annotations, "categories": categories}


# ----------------------------------------------------------------------------------------------------
# Folders of images and masks -> a COCO file
# ----------------------------------------------------------------------------------------------------

def _normalise_categories(categories: str | Sequence[str | dict]) -> list[dict]:
    if isinstance(categories, str):
        categories = [categories]
    cats = [{"id": i, "name": c, "supercategory": c} if isinstance(c, str) else dict(c)
            for i, c in enumerate(categories, start=1)]
    if not cats:
        raise ValueError("categories is empty: give the category names (ids 1, 2, ... in that order)")
    for c in cats:
        if type(c.get("id")) is not int or c["id"] < 1 or not isinstance(c.get("name"), str):
            raise ValueError(f"category {c} needs an integer id >= 1 (0 is background) and a name")
    for key in ("id", "name"):
        values = [c[key] for c in cats]
        if len(set(values)) != len(values):
            raise ValueError(f"duplicate category {key}s in {values}")
    return cats


def _utf8_name(path: Path, problems: list[str]) -> bool:
    try:
        path.name.encode("utf-8")
        return True
    except UnicodeEncodeError:
        problems.append(f"{os.fsencode(path)!r}: the file name is not valid UTF-8; rename the file")
        return False


def _read_mask(path: Path, size: tuple[int, int], image: Path, problems: list[str]) -> np.ndarray | None:
    """A single-channel mask as an array, or ``None`` with a problem."""
    try:
        with Image.open(path) as im:
            mode, arr = im.mode, np.asarray(im)
    except Exception as e:  # noqa: BLE001 - any decoding failure is reported with its file
        problems.append(f"{path}: cannot read the mask ({type(e).__name__}: {e})")
        return None
    if arr.ndim != 2:
        problems.append(f"{path}: the mask is {mode} with {arr.shape[-1]} channels; "
                        "a mask must be single-channel (grayscale, palette or 16-bit)")
        return None
    if arr.shape != tuple(size):
        problems.append(f"{path}: the mask is {arr.shape[1]}x{arr.shape[0]} (WxH) "
                        f"but its image {image.name} is {size[1]}x{size[0]}")
        return None
    return arr


def _read_sidecar(path: Path, cat_ids: dict[str, int], problems: list[str]) -> dict[int, tuple[int, int]] | None:
    """``{"1": "circle"}`` or ``{"1": {"category": "circle", "iscrowd": 1}}`` -> {1: (category id, iscrowd)}."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(raw, dict):
            raise ValueError("expected an object {instance id: category name}")
    except (ValueError, UnicodeDecodeError) as e:
        problems.append(f"{path}: invalid sidecar ({e})")
        return None
    labels, before = {}, len(problems)
    for key, value in raw.items():
        name, crowd = (value.get("category"), value.get("iscrowd", 0)) if isinstance(value, dict) else (value, 0)
        if not key.isdigit() or int(key) == 0:
            problems.append(f"{path}: key {key!r} is not an instance id (1, 2, ...; 0 is background)")
        elif not isinstance(name, str) or name not in cat_ids:
            problems.append(f"{path}: instance {key}: unknown category {name!r}; known: {sorted(cat_ids)}")
        elif crowd not in (0, 1) or isinstance(crowd, bool):
            problems.append(f"{path}: instance {key}: iscrowd must be 0 or 1, got {crowd!r}")
        else:
            labels[int(key)] = (cat_ids[name], crowd)
    return labels if len(problems) == before else None


def _id_png_instances(image: Path, mask_dir: Path, size, cat_ids, problems):
    """Layout "id_png": ``mask_dir/<stem>.png`` instance ids, ``mask_dir/<stem>.json`` their categories."""
    path = mask_dir / f"{image.stem}.png"
    if not path.exists():
        problems.append(f"{path}: missing; every image needs its instance mask "
                        f"(all zeros for an image without instances), image {image.name}")
        return
    ids = _read_mask(path, size, image, problems)
    present = [] if ids is None else [int(k) for k in np.unique(ids) if k != 0]
    sidecar = path.with_suffix(".json")
    if sidecar.exists():
        labels = _read_sidecar(sidecar, cat_ids, problems)
    elif len(cat_ids) == 1 or not present:  # one category (every instance has it), or no instances
        labels = {k: (next(iter(cat_ids.values())), 0) for k in present}
    else:
        problems.append(f"{sidecar}: missing; with {len(cat_ids)} categories each mask needs a sidecar "
                        '{"1": "<category>", ...} naming the category of each instance')
        return
    if ids is None or labels is None:
        return
    for k in sorted(set(labels) - set(present)):
        problems.append(f"{path}: instance {k} is listed in {sidecar.name} but has no pixels in the mask")
    for k in present:
        if k in labels:
            yield ids == k, *labels[k]
        else:
            problems.append(f"{path}: instance {k} ({np.count_nonzero(ids == k)} pixels) "
                            f"has no entry in {sidecar.name}")


_INSTANCE_NAME = re.compile(r"(?P<k>\d+)(?:_(?P<category>.+?))?(?P<crowd>_crowd)?")


def _per_instance_pngs(image: Path, mask_dir: Path, size, cat_ids, problems):
    """Layout "per_instance": ``mask_dir/<stem>/<k>_<category>.png``, one binary PNG per instance."""
    folder = mask_dir / image.stem
    if not folder.is_dir():
        problems.append(f"{folder}/: missing; every image needs a mask folder "
                        f"(empty for an image without instances), image {image.name}")
        return
    found: dict[int, tuple[Path, int, int]] = {}
    for path in sorted(folder.glob("*.png")):
        match = _INSTANCE_NAME.fullmatch(path.stem)
        name = match and (match["category"] or (next(iter(cat_ids)) if len(cat_ids) == 1 else None))
        if not match or name is None:
            problems.append(f"{path}: the name should be <k>_<category>.png (or <k>_<category>_crowd.png; "
                            "<k>.png with a single category)")
        elif name not in cat_ids:
            problems.append(f"{path}: unknown category {name!r}; known: {sorted(cat_ids)}")
        elif int(match["k"]) in found:
            problems.append(f"{path}: instance {int(match['k'])} also in {found[int(match['k'])][0].name}")
        else:
            found[int(match["k"])] = (path, cat_ids[name], int(bool(match["crowd"])))
    for k in sorted(found):
        path, cat, crowd = found[k]
        mask = _read_mask(path, size, image, problems)
        if mask is not None and not mask.any():
            problems.append(f"{path}: instance {k} has no pixels (an empty mask)")
        elif mask is not None:
            yield mask != 0, cat, crowd


LAYOUTS = {"id_png": _id_png_instances, "per_instance": _per_instance_pngs}


def build_coco_dataset(image_dir: str | Path, mask_dir: str | Path, out_file: str | Path,
                       categories: str | Sequence[str | dict], *, layout: str = "id_png",
                       encoding: str = "rle", info: dict | None = None) -> Path:
    """Write a COCO instances file for the images in ``image_dir`` and their masks in ``mask_dir``.

    Images are the files in ``image_dir`` ending in one of ``IMAGE_EXTENSIONS``; they get ids 1, 2,
    ... in name order, and ``file_name`` is the name in ``image_dir`` (use ``image_dir`` as the
    ``Dataset``'s ``root``). Masks are matched to images by file stem:

    - ``layout="id_png"``: one instance-id PNG per image, ``mask_dir/<stem>.png`` (uint8 or 16-bit,
      0 = background, k = instance k), and a JSON sidecar ``mask_dir/<stem>.json`` naming each
      instance's category: ``{"1": "circle", "2": {"category": "person", "iscrowd": 1}}``. With a
      single category the sidecars may be left out.
    - ``layout="per_instance"``: a folder per image, ``mask_dir/<stem>/``, holding one binary PNG per
      instance named ``<k>_<category>.png`` (non-zero = inside; ``k`` = 1, 2, ... orders the
      instances; ``<k>_<category>_crowd.png`` marks a crowd region; ``<k>.png`` with a single
      category). An empty folder is an image without instances.

    ``categories``: names (ids 1, 2, ... in that order) or COCO category dicts. ``encoding``:
    ``"rle"`` or ``"polygon"`` (exact; crowd regions stay RLE). Annotation ids are 1, 2, ... in
    image and instance order.

    Every problem (a missing or unreadable mask, a mask whose size differs from its image, an empty
    instance, an instance id without a sidecar entry, an unknown category, a non-UTF-8 file name,
    ...) is collected, and one ``CocoFormatError`` lists them all, each naming its file and instance.
    Then nothing is written: ``out_file`` is replaced atomically, only on success. Returns ``out_file``.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {sorted(LAYOUTS)}, got {layout!r}")
    if encoding not in ("rle", "polygon"):
        raise ValueError(f"encoding must be 'rle' or 'polygon', got {encoding!r}")
    cats = _normalise_categories(categories)
    cat_ids = {c["name"]: c["id"] for c in cats}
    image_dir, mask_dir = Path(image_dir), Path(mask_dir)
    problems: list[str] = []
    for folder in (image_dir, mask_dir):
        if not folder.is_dir():
            raise CocoFormatError("cannot build a COCO file", [f"{folder}/: not a folder"])
    paths = sorted(p for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    paths = [p for p in paths if _utf8_name(p, problems)]
    if not paths and not problems:
        problems.append(f"{image_dir}/: no images (files ending in {', '.join(IMAGE_EXTENSIONS)})")
    stems: dict[str, Path] = {}
    for p in paths:
        if p.stem in stems:
            problems.append(f"{p}: same stem as {stems[p.stem].name}; masks are matched by stem")
        stems[p.stem] = p
    images, annotations = [], []
    for image_id, path in enumerate(paths, start=1):
        try:
            with Image.open(path) as im:
                w, h = im.size
        except Exception as e:  # noqa: BLE001
            problems.append(f"{path}: cannot read the image ({type(e).__name__}: {e})")
            continue
        images.append({"id": image_id, "file_name": path.name, "height": h, "width": w})
        for mask, cat, crowd in LAYOUTS[layout](path, mask_dir, (h, w), cat_ids, problems):
            annotations.append(mask_to_annotation(mask, len(annotations) + 1, image_id, cat, encoding, crowd))
    # Masks without an image are a mistake too (a typo in a name, a missing image).
    per_instance = layout == "per_instance"
    expected = "<stem>/ folders" if per_instance else "<stem>.png masks and <stem>.json sidecars"
    for m in sorted(mask_dir.iterdir()):
        if m.name.startswith(".") or not (m.is_dir() or m.suffix in (".png", ".json")):
            continue  # hidden files and files that are not masks
        if m.is_dir() != per_instance or (m.name if per_instance else m.stem) not in stems:
            problems.append(f"{m}: matches no image in {image_dir}/ (layout {layout!r} expects {expected})")
    if problems:
        raise CocoFormatError(f"{len(problems)} problem(s) building {out_file}; nothing written:", problems)
    coco = {"info": info or {}, "images": images, "annotations": annotations, "categories": cats}
    return write_json_atomic(coco, out_file)


# ----------------------------------------------------------------------------------------------------
# Checking a COCO file
# ----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Problem:
    """One problem: its file, the annotation or image id it concerns (if any) and what is wrong."""

    file: str
    what: str
    ann_id: Any = None
    image_id: Any = None

    def __str__(self) -> str:
        where = [f"annotation id={self.ann_id!r}"] if self.ann_id is not None else []
        where += [f"image id={self.image_id!r}"] if self.image_id is not None else []
        return f"{self.file}: {', '.join(where) + ': ' if where else ''}{self.what}"


@dataclass
class ValidationReport:
    """What ``validate_coco`` found: every problem, plus counts for the summary line."""

    ann_file: str
    problems: list[Problem] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def summary(self) -> str:
        sizes = ", ".join(f"{n} {k}" for k, n in self.counts.items())
        verdict = "OK" if self.ok else f"{len(self.problems)} problem(s)"
        return f"{self.ann_file}: {verdict}" + (f" ({sizes})" if sizes else "")

    def __str__(self) -> str:
        return "\n".join([self.summary, *(f"  - {p}" for p in self.problems)])

    def raise_if_problems(self) -> "ValidationReport":
        """Raise one ``CocoFormatError`` listing every problem; return ``self`` when there are none."""
        if self.problems:
            raise CocoFormatError(self.summary + ":", self.problems)
        return self


def _is_int(v: Any) -> bool:
    return type(v) is int  # not bool, not 1.0, not "1"


def _is_number(v: Any) -> bool:
    return type(v) in (int, float) and math.isfinite(v)


def _within(lo: float, hi: float, size: int, eps: float = 0.01) -> bool:
    return -eps <= lo and hi <= size + eps


def _describe(v: Any) -> str:
    return f"{type(v).__name__} {v!r}"


def rle_string_counts(s: str) -> list[int]:
    """Run lengths of a compressed COCO RLE string (pycocotools' ``rleFrString``, in Python).

    pycocotools' C code trusts its input and can read or write out of bounds on a corrupt string;
    this raises ``ValueError`` instead.
    """
    counts, p = [], 0
    while p < len(s):
        x = k = 0
        more = True
        while more:
            if p >= len(s):
                raise ValueError("the string ends in the middle of a number")
            c = ord(s[p]) - 48
            if not 0 <= c < 64:
                raise ValueError(f"invalid character {s[p]!r} at position {p}")
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p, k = p + 1, k + 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        counts.append(x + (counts[-2] if len(counts) > 2 else 0))
    return counts


def _segmentation_rle(seg: Any, h: int, w: int, add: Callable[[str], None]):
    """The annotation's segmentation as a pycocotools RLE, or ``None`` after reporting why not."""
    if isinstance(seg, list):
        if not seg:
            return add("segmentation is an empty polygon list")
        ok = True
        for i, poly in enumerate(seg):
            if not isinstance(poly, list) or not all(_is_number(v) for v in poly):
                add(f"polygon {i} is not a list of finite numbers")
                ok = False
            elif len(poly) % 2 or len(poly) < 6:
                add(f"polygon {i} has {len(poly)} coordinates; a polygon needs an even number, at least 6 (3 points)")
                ok = False
            elif not (_within(min(poly[0::2]), max(poly[0::2]), w) and _within(min(poly[1::2]), max(poly[1::2]), h)):
                add(f"polygon {i} has points outside the {w}x{h} image")
                ok = False
        return mask_utils.merge(mask_utils.frPyObjects(seg, h, w)) if ok else None
    if not isinstance(seg, dict) or not {"size", "counts"} <= set(seg):
        return add("segmentation must be polygons [[x, y, ...]] or RLE {'size', 'counts'}, "
                   f"got {_describe(seg)[:80]}")
    size, counts = seg["size"], seg["counts"]
    if not (isinstance(size, list) and len(size) == 2 and all(map(_is_int, size))):
        return add(f"RLE size must be [height, width] integers, got {size!r}")
    if size != [h, w]:
        return add(f"RLE size {size} differs from the image's [height, width] = {[h, w]}")
    try:
        runs = rle_string_counts(counts) if isinstance(counts, str) else counts
        if not (isinstance(runs, list) and all(_is_int(v) and v >= 0 for v in runs)):
            raise ValueError("counts must be a string or a list of non-negative integers")
    except ValueError as e:
        return add(f"RLE counts are corrupt: {e}")
    if sum(runs) != h * w:
        return add(f"RLE counts add up to {sum(runs)} pixels, not height*width = {h * w}")
    if isinstance(counts, list):
        return mask_utils.frPyObjects(seg, h, w)
    return {"size": size, "counts": counts.encode("ascii")}


def validate_coco(ann_file: str | Path, image_dir: str | Path | None, *, strict: bool = False,
                  check_images: bool = True) -> ValidationReport:
    """Check a COCO instances file (and its images under ``image_dir``) and report every problem.

    Returns a ``ValidationReport``: ``.problems`` (each naming its file, the annotation or image id
    and what is wrong), ``.summary``, ``.ok``; ``strict=True`` (or ``.raise_if_problems()``) raises
    one ``CocoFormatError`` listing them all. Checked: unreadable, non-UTF-8 or invalid (truncated)
    JSON; missing top-level and per-entry keys; wrong types (string or float ids, ...); duplicate
    ids; empty categories; unknown ``image_id``/``category_id``; ``iscrowd`` not 0/1; bbox with a
    non-positive size, outside the image or not matching the mask; ``area`` not matching the mask;
    empty masks; polygons with fewer than 3 points, an odd coordinate count or points outside the
    image; RLE whose size differs from its image or whose counts are corrupt; file names that are
    not UTF-8 or are duplicated; missing or corrupt image files, or images whose size differs from
    the JSON's height/width (``check_images=False`` or ``image_dir=None`` skips opening images).
    Tolerances: bbox within 1 px of the mask's box (or the polygon's extent), area within
    max(1 px, 1 %) of the mask's pixel count (or the polygon's shoelace area), image bounds 0.01 px.
    """
    ann_file = Path(ann_file)
    report = ValidationReport(str(ann_file))
    problems = report.problems

    def add(what: str, ann_id: Any = None, image_id: Any = None, file: Any = None) -> None:
        problems.append(Problem(str(file or ann_file), what, ann_id, image_id))

    try:
        data = json.loads(ann_file.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        add("the annotation file does not exist")
    except UnicodeDecodeError as e:
        add(f"not valid UTF-8 at byte {e.start}; JSON files must be UTF-8")
    except json.JSONDecodeError as e:
        end = " (the file ends early: truncated?)" if e.pos >= len(e.doc.rstrip()) else ""
        add(f"invalid JSON at line {e.lineno} column {e.colno}: {e.msg}{end}")
    except OSError as e:
        add(f"cannot read the annotation file ({e})")
    else:
        _check_coco(data, add, report, image_dir if check_images else None)
    return report.raise_if_problems() if strict else report


def _entries(data: dict, key: str, add) -> list[dict]:
    value = data.get(key)
    if key not in data:
        add(f"missing top-level key {key!r}")
    elif not isinstance(value, list):
        add(f"top-level {key!r} must be a list, got {type(value).__name__}")
    else:
        good = [e for e in value if isinstance(e, dict)]
        for i, e in enumerate(value):
            if not isinstance(e, dict):
                add(f"{key}[{i}] must be an object, got {_describe(e)[:80]}")
        return good
    return []


def _check_coco(data: Any, add, report: ValidationReport, image_dir) -> None:
    if not isinstance(data, dict):
        return add(f"the top level must be an object with images, annotations and categories, "
                   f"got {type(data).__name__}")
    images, anns, cats = (_entries(data, k, add) for k in ("images", "annotations", "categories"))
    report.counts = {"images": len(images), "annotations": len(anns), "categories": len(cats)}
    if "categories" in data and not cats:
        add("no categories: 'categories' is empty")

    def where(kind: str, e: dict) -> dict:
        if kind == "annotation":
            return {"ann_id": e.get("id"), "image_id": e.get("image_id")}
        return {"image_id": e.get("id")} if kind == "image" else {}

    def unique_int_ids(entries: list[dict], kind: str, keys: tuple[str, ...]) -> dict:
        by_id = {}
        for i, e in enumerate(entries):
            lost = [k for k in keys if k not in e]
            if lost:
                label = f"{kind} id={e['id']!r}" if kind == "category" and "id" in e else f"{kind} #{i}"
                add(f"{label}: missing key(s) {', '.join(map(repr, lost))}", **where(kind, e))
            if "id" not in e:
                continue
            v = e["id"]
            if not _is_int(v):
                add(f"{kind} id must be an integer, got {_describe(v)}", **where(kind, e))
            elif v in by_id:
                add(f"duplicate {kind} id {v}", **where(kind, e))
            else:
                by_id[v] = e
        return by_id

    # categories
    cat_by_id = unique_int_ids(cats, "category", ("id", "name"))
    names = [c.get("name") for c in cats]
    for c in cats:
        if "name" in c and (not isinstance(c["name"], str) or not c["name"]):
            add(f"category id={c.get('id')!r}: name must be a non-empty string, got {_describe(c['name'])}")
    for n in sorted({n for n in names if isinstance(n, str) and names.count(n) > 1}):
        add(f"duplicate category name {n!r}")

    # images
    image_keys = ("id", "file_name", "height", "width")
    img_by_id = unique_int_ids(images, "image", image_keys)
    seen_names: dict[str, Any] = {}
    sizes: dict[int, tuple[int, int]] = {}
    for image_id, im in img_by_id.items():
        if any(k not in im for k in image_keys):
            continue
        h, w, name = im["height"], im["width"], im["file_name"]
        if not (_is_int(h) and _is_int(w) and h > 0 and w > 0):
            add(f"height and width must be positive integers, got {_describe(h)} and {_describe(w)}",
                image_id=image_id)
            continue
        sizes[image_id] = (h, w)
        if not isinstance(name, str) or not name:
            add(f"file_name must be a non-empty string, got {_describe(name)}", image_id=image_id)
            continue
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            add(f"file_name {name!r} is not valid UTF-8", image_id=image_id)
            continue
        if name in seen_names:
            add(f"file_name {name!r} is also used by image id={seen_names[name]!r}", image_id=image_id)
        seen_names[name] = image_id
        if image_dir is not None:
            _check_image_file(Path(image_dir) / name, (h, w), image_id, add)

    # annotations
    unique_int_ids(anns, "annotation", ("id", "image_id", "category_id", "segmentation", "area", "bbox", "iscrowd"))
    for a in anns:
        _check_annotation(a, img_by_id, sizes, cat_by_id, lambda what, a=a: add(what, a.get("id"), a.get("image_id")))


def _check_image_file(path: Path, size: tuple[int, int], image_id: Any, add) -> None:
    if not path.is_file():
        return add("image file does not exist", image_id=image_id, file=path)
    try:
        with Image.open(path) as im:
            im.load()
            w, h = im.size
    except Exception as e:  # noqa: BLE001
        return add(f"corrupt image file ({type(e).__name__}: {e})", image_id=image_id, file=path)
    if (h, w) != size:
        add(f"the image is {w}x{h} (WxH) but the JSON says {size[1]}x{size[0]}", image_id=image_id, file=path)


def _check_annotation(a: dict, img_by_id, sizes, cat_by_id, add) -> None:
    image_id, cat, crowd, bbox, area = (a.get(k) for k in ("image_id", "category_id", "iscrowd", "bbox", "area"))
    if "image_id" in a and not _is_int(image_id):
        add(f"image_id must be an integer, got {_describe(image_id)}")
    elif "image_id" in a and image_id not in img_by_id:
        add(f"unknown image_id {image_id}")
    if "category_id" in a and not _is_int(cat):
        add(f"category_id must be an integer, got {_describe(cat)}")
    elif "category_id" in a and cat not in cat_by_id:
        add(f"unknown category_id {cat}; known: {sorted(cat_by_id)}")
    if "iscrowd" in a and (not _is_int(crowd) or crowd not in (0, 1)):
        add(f"iscrowd must be 0 or 1, got {_describe(crowd)}")
    if "area" in a and not _is_number(area):
        add(f"area must be a finite number, got {_describe(area)}")
        area = None
    if "bbox" in a and not (isinstance(bbox, list) and len(bbox) == 4 and all(map(_is_number, bbox))):
        add(f"bbox must be [x, y, width, height] (4 finite numbers), got {_describe(bbox)[:80]}")
        bbox = None
    elif bbox is not None and (bbox[2] <= 0 or bbox[3] <= 0):
        add(f"bbox {bbox} has a non-positive width or height")
    size = sizes.get(image_id) if _is_int(image_id) else None
    if size is None:
        return  # the image is unknown or broken: nothing to check the geometry against
    h, w = size
    if bbox is not None and not (_within(bbox[0], bbox[0] + bbox[2], w) and _within(bbox[1], bbox[1] + bbox[3], h)):
        add(f"bbox {bbox} (x, y, w, h) is outside the {w}x{h} image")
    if "segmentation" not in a:
        return
    seg = a["segmentation"]
    rle = _segmentation_rle(seg, h, w, add)
    if rle is None:
        return
    pixels = float(mask_utils.area(rle))
    if pixels == 0:
        return add("the mask is empty (0 pixels)")
    boxes, areas = [[float(v) for v in mask_utils.toBbox(rle)]], [pixels]
    if isinstance(seg, list):  # other tools use the polygon's own extent and shoelace area
        xs = [v for p in seg for v in p[0::2]]
        ys = [v for p in seg for v in p[1::2]]
        boxes.append([min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)])
        areas.append(sum(abs(_shoelace(np.reshape(p, (-1, 2)))) for p in seg))
    if bbox is not None and all(max(abs(b - c) for b, c in zip(bbox, box)) > 1.0 for box in boxes):
        add(f"bbox {bbox} does not match the segmentation's box {boxes[0]}")
    if area is not None and all(abs(area - c) > max(1.0, 0.01 * c) for c in areas):
        add(f"area {area} does not match the segmentation's {pixels:g} pixels")


# ----------------------------------------------------------------------------------------------------
# A torch Dataset
# ----------------------------------------------------------------------------------------------------

def load_coco(ann_file: str | Path) -> COCO:
    """``pycocotools.coco.COCO`` without its progress prints."""
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(ann_file))


def to_rgb_uint8(im: Image.Image) -> np.ndarray:
    """Any PIL image -> (H, W, 3) uint8 RGB.

    Grayscale is repeated in 3 channels, palette images go through their palette, alpha is dropped
    (not composited), and 16-bit images (``I;16*``, ``I``) are scaled from 0..65535 to 0..255. EXIF
    orientation is not applied: COCO coordinates refer to the stored pixels, as in ``CocoDetection``.
    """
    if im.mode.startswith("I"):
        a = np.asarray(im).astype(np.float32)
        a = np.round(np.clip(a, 0, 65535) / 257).astype(np.uint8)
        return np.repeat(a[..., None], 3, axis=2)
    if im.mode in ("P", "PA"):
        im = im.convert("RGBA")  # via RGBA: PIL warns about palette transparency otherwise
    return np.array(im.convert("RGB"))  # a writable copy, for torch.from_numpy


class CocoInstanceDataset(torch.utils.data.Dataset):
    """COCO instances as ``(image, target)`` pairs in torchvision's detection format.

    ``root`` is the folder the ``file_name`` entries are relative to (as in ``CocoDetection``).
    ``image`` is a ``tv_tensors.Image`` (3, H, W) uint8 RGB (see ``to_rgb_uint8`` for grayscale,
    palette, RGBA and 16-bit files); ``target`` holds ``boxes`` (``tv_tensors.BoundingBoxes``, (N, 4)
    float XYXY; (0, 4) for an image without instances), ``labels`` (N,) int64, ``masks``
    (``tv_tensors.Mask``, (N, H, W) uint8), ``image_id`` int, ``area`` (N,) float, ``iscrowd`` (N,)
    int64. ``transforms`` (e.g. ``torchvision.transforms.v2``) get ``(image, target)`` together so
    that boxes and masks move with the image.

    Crowd regions (``iscrowd=1``) are kept in the target by default, flagged by ``iscrowd``.
    torchvision's detection models do not read ``iscrowd`` and would learn a crowd as one object,
    so pass ``drop_crowd=True`` for training, as torchvision's reference scripts do. Evaluation is
    unaffected either way: ``COCOeval`` reads crowds from the annotation file.

    A missing or unreadable image, or one whose size differs from the JSON's, raises an error
    naming the file and the image id. Run ``validate_coco`` first to check a whole file at once.
    """

    def __init__(self, root: str | Path, ann_file: str | Path, transforms: Callable | None = None,
                 drop_crowd: bool = False):
        self.root = Path(root)
        self.ann_file = Path(ann_file)
        self.coco = load_coco(ann_file)
        self.ids = sorted(self.coco.imgs)
        self.transforms = transforms
        self.drop_crowd = drop_crowd

    def __len__(self) -> int:
        return len(self.ids)

    def load_image(self, image_id: int) -> tv_tensors.Image:
        info = self.coco.imgs[image_id]
        path = self.root / info["file_name"]
        where = f"image id {image_id} of {self.ann_file.name}"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: image file not found ({where}; root is {self.root})")
        try:
            with Image.open(path) as im:
                rgb = to_rgb_uint8(im)
        except Exception as e:  # noqa: BLE001
            raise OSError(f"{path}: cannot read the image ({where}): {type(e).__name__}: {e}") from e
        if rgb.shape[:2] != (info["height"], info["width"]):
            raise ValueError(f"{path}: the image is {rgb.shape[1]}x{rgb.shape[0]} (WxH) but {where} "
                             f"says {info['width']}x{info['height']}")
        return tv_tensors.Image(torch.from_numpy(rgb).permute(2, 0, 1))

    def load_target(self, image_id: int, canvas_size: tuple[int, int]) -> dict:
        anns = self.coco.imgToAnns.get(image_id, [])
        if self.drop_crowd:
            anns = [a for a in anns if not a.get("iscrowd", 0)]
        h, w = canvas_size
        boxes = torch.tensor([a["bbox"] for a in anns], dtype=torch.float32).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]  # xywh -> xyxy
        masks = np.stack([self.coco.annToMask(a) for a in anns]) if anns else np.zeros((0, h, w), np.uint8)
        return {
            "boxes": tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=(h, w)),
            "labels": torch.tensor([a["category_id"] for a in anns], dtype=torch.int64),
            "masks": tv_tensors.Mask(torch.from_numpy(masks)),
            "image_id": int(image_id),
            "area": torch.tensor([a["area"] for a in anns], dtype=torch.float32),
            "iscrowd": torch.tensor([a.get("iscrowd", 0) for a in anns], dtype=torch.int64),
        }

    def __getitem__(self, idx: int):
        image_id = self.ids[idx]
        image = self.load_image(image_id)
        target = self.load_target(image_id, tuple(image.shape[-2:]))
        if self.transforms is not None:
            image, target = self.transforms(image, target)
        return image, target


def collate_fn(batch):
    """Detection batches are lists: images differ in size and targets in length."""
    return tuple(zip(*batch))


def get_transform(train: bool):
    """The course's standard ``transforms.v2`` pipeline: random flip when training, then float [0, 1]."""
    from torchvision.transforms import v2

    steps = [v2.RandomHorizontalFlip(0.5)] if train else []
    steps.append(v2.ToDtype(torch.float32, scale=True))
    return v2.Compose(steps)
