"""Validating a COCO instance-segmentation file: every problem, naming the image or annotation id and
what is wrong. Taught in: 05_coco_dataset

``validate_coco(ann_file, image_dir)`` returns a ``ValidationReport``; ``strict=True`` raises
``CocoFormatError`` on the first error.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from course_lib.data.coco_meta import read_categories
from course_lib.data.errors import CocoFormatError
from course_lib.data.image_files import orientation, stored_size_reason, upright_size
from course_lib.data.masks import polygon_signed_area


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

    def raise_if_problems(self) -> ValidationReport:
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
    ids; empty categories; category ids below 1 (0 is torchvision's background label); unknown ``image_id``/``category_id``; ``iscrowd`` not 0/1; bbox with a
    non-positive size, outside the image or not matching the mask; ``area`` not matching the mask;
    empty masks; polygons with fewer than 3 points, an odd coordinate count or points outside the
    image; RLE whose size differs from its image or whose counts are corrupt; file names that are
    not UTF-8 or are duplicated; missing or corrupt image files, or images whose size differs from
    the JSON's height/width (the upright size: EXIF Orientation applied, "EXIF Orientation N" named when the
    JSON holds the stored one) (``check_images=False`` or ``image_dir=None`` skips opening images).
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
                why = (" (pycocotools matches results by integer image id: a string id trains, then "
                       "evaluation fails with 'Results do not correspond to current coco set')"
                       if kind == "image" and isinstance(v, str) else "")
                add(f"{kind} id must be an integer, got {_describe(v)}{why}", **where(kind, e))
            elif kind == "category" and v < 1:
                add(f"category id {v} (name {e.get('name')!r}): ids must be 1, 2, ...; "
                    "0 is the background label of torchvision's detection models")
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
    """The image decodes, and its upright size (EXIF Orientation applied, as the course reads it) is the JSON's."""
    if not path.is_file():
        return add("image file does not exist", image_id=image_id, file=path)
    try:
        with Image.open(path) as im:
            (w, h), tag = upright_size(im), orientation(im)  # from the header, as coco build reads it
            im.load()
    except Exception as e:  # noqa: BLE001
        return add(f"corrupt image file ({type(e).__name__}: {e})", image_id=image_id, file=path)
    if (h, w) != size:
        why = stored_size_reason((size[1], size[0]), (w, h), tag)
        add(f"the image is {w}x{h} (WxH{', upright' if tag != 1 else ''}) but the JSON says {size[1]}x{size[0]}"
            + (f": {why}; the annotations were made on the stored pixels: remove the photo's tag "
               "(exiftool -Orientation= <file>) if they fit them, or annotate the upright photo" if why else ""),
            image_id=image_id, file=path)


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
        areas.append(sum(abs(polygon_signed_area(np.reshape(p, (-1, 2)))) for p in seg))
    if bbox is not None and all(max(abs(b - c) for b, c in zip(bbox, box, strict=True)) > 1.0 for box in boxes):
        add(f"bbox {bbox} does not match the segmentation's box {boxes[0]}")
    if area is not None and all(abs(area - c) > max(1.0, 0.01 * c) for c in areas):
        add(f"area {area} does not match the segmentation's {pixels:g} pixels")


def category_differences(train_file: str | Path, val_file: str | Path) -> list[str]:
    """How the categories (id -> name) of two COCO files differ; ``[]`` when they agree.

    A model learns label k for category id k: a val file whose ids name other categories (two ids
    swapped, say) evaluates the wrong class against each object without a word, so train and val must agree.
    """
    a, b = read_categories(train_file), read_categories(val_file)
    out = []
    for i in sorted(set(a) | set(b)):
        if i not in b:
            out.append(f"category id {i} ({a[i]!r}) is in {train_file} but not in {val_file}")
        elif i not in a:
            out.append(f"category id {i} ({b[i]!r}) is in {val_file} but not in {train_file}")
        elif a[i] != b[i]:
            out.append(f"category id {i} is {a[i]!r} in {train_file} but {b[i]!r} in {val_file}")
    return out
