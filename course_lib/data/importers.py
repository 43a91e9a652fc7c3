"""Annotations from annotation tools into COCO: LabelMe JSON, Pascal VOC segmentation PNGs, YOLO
segmentation labels, and COCO files written by other tools (CVAT, Label Studio). Taught in: 05_coco_dataset
(used by ``./course coco build``).

Every importer collects every problem (each naming its file, and its shape or instance), raises one
``CocoFormatError`` listing them, and writes nothing then. On success the COCO dict is written to a
temporary file beside ``out_file``, checked by ``validate_coco`` against the images, and only then renamed
into place: an importer never leaves a half-finished or invalid file. ``info["image_root"]`` records the
image folder relative to the output file, so ``finetune``, ``evaluate`` and ``predict`` find the images.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pycocotools import mask as mask_utils

from course_lib.data.coco_meta import image_root_of  # noqa: F401 - its home is coco_meta; coco_command reads it here
from course_lib.data.coco_validate import validate_coco
from course_lib.data.errors import CocoFormatError
from course_lib.data.mask_files import VOID, ImageFileError, MaskFileError, image_size, read_mask_file
from course_lib.data.masks import encode_mask
from course_lib.utils.files import write_atomic

VOC_CLASSES = ["aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
               "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
               "train", "tvmonitor"]
CIRCLE_POINTS = 32  # a LabelMe circle becomes a polygon with this many corners


def write_validated_coco(coco: dict, out_file: str | Path, image_root: str | Path) -> Path:
    """Write ``coco`` to ``out_file`` only if ``validate_coco`` finds no problem with it and its images."""
    out_file, image_root = Path(out_file), Path(image_root)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    coco = {**coco, "info": {**(coco.get("info") or {}),
                             "image_root": os.path.relpath(image_root.resolve(), out_file.parent.resolve())}}

    def write_then_validate(f):
        json.dump(coco, f)
        f.flush()
        report = validate_coco(f.name, image_root)
        if not report.ok:
            raise CocoFormatError(f"{len(report.problems)} problem(s) in the COCO file made for {out_file}; "
                                  "nothing written:", [str(p).replace(f.name, str(out_file)) for p in report.problems])

    write_atomic(out_file, write_then_validate, "w")
    return out_file


def _polygon_annotation(polygons: list[list[float]], ann_id: int, image_id: int, cat: int, h: int, w: int) -> dict:
    rle = mask_utils.merge(mask_utils.frPyObjects(polygons, h, w))
    return {"id": ann_id, "image_id": image_id, "category_id": cat, "segmentation": polygons,
            "area": float(mask_utils.area(rle)), "bbox": [float(v) for v in mask_utils.toBbox(rle)], "iscrowd": 0}


def _categories(names: Sequence[str]) -> list[dict]:
    return [{"id": i, "name": n, "supercategory": n} for i, n in enumerate(names, start=1)]


# --- LabelMe ----------------------------------------------------------------------------------------------

def _labelme_polygon(shape: dict, where: str, problems: list[str]) -> list[float] | None:
    kind = shape.get("shape_type") or "polygon"
    pts = shape.get("points")
    if not (isinstance(pts, list) and all(isinstance(p, list) and len(p) == 2 and
                                          all(isinstance(v, (int, float)) and math.isfinite(v) for v in p)
                                          for p in pts)):
        problems.append(f"{where}: points must be a list of [x, y] numbers")
        return None
    if kind == "polygon":
        if len(pts) < 3:
            problems.append(f"{where}: a polygon needs at least 3 points, got {len(pts)}")
            return None
        return [float(v) for p in pts for v in p]
    if kind == "rectangle":
        if len(pts) != 2:
            problems.append(f"{where}: a rectangle needs 2 points (two corners), got {len(pts)}")
            return None
        (x0, y0), (x1, y1) = pts
        x0, x1, y0, y1 = min(x0, x1), max(x0, x1), min(y0, y1), max(y0, y1)
        if x1 - x0 <= 0 or y1 - y0 <= 0:
            problems.append(f"{where}: the rectangle has no area")
            return None
        return [float(v) for v in (x0, y0, x1, y0, x1, y1, x0, y1)]
    if kind == "circle":
        if len(pts) != 2:
            problems.append(f"{where}: a circle needs 2 points (centre, a point on it), got {len(pts)}")
            return None
        (cx, cy), (px, py) = pts
        r = math.hypot(px - cx, py - cy)
        a = np.linspace(0, 2 * math.pi, CIRCLE_POINTS, endpoint=False)
        return np.stack([cx + r * np.cos(a), cy + r * np.sin(a)], 1).ravel().round(3).tolist()
    problems.append(f"{where}: shape_type {kind!r} has no area (use polygon, rectangle or circle)")
    return None


def labelme_to_coco(folder: str | Path, out_file: str | Path, categories: Sequence[str] | None = None) -> Path:
    """LabelMe JSON files (``folder/**/*.json``, one per image) -> a validated COCO file.

    Each file's ``imagePath`` (relative to the JSON file) names its image, read from disk (``imageData``
    is not needed); ``imageHeight``/``imageWidth`` must match it. Shapes: ``polygon``; ``rectangle`` (two
    corners); ``circle`` (centre and a point on it, as a ``CIRCLE_POINTS``-gon). Shapes with the same
    ``label`` and ``group_id`` (not null) form one instance (LabelMe's way to draw an object in parts).
    ``categories``: the names in id order (1, 2, ...); default: the labels found, sorted. The image
    folder is ``folder``.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise CocoFormatError("cannot import LabelMe files", [f"{folder}/: not a folder"])
    problems: list[str] = []
    files = sorted(p for p in folder.rglob("*.json") if not p.name.startswith("."))
    if not files:
        raise CocoFormatError("cannot import LabelMe files", [f"{folder}/: no LabelMe .json files"])
    parsed = []
    for path in files:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data, dict) or not isinstance(data.get("shapes"), list) \
                    or not isinstance(data.get("imagePath"), str):
                raise ValueError("not a LabelMe file: expected an object with 'shapes' and 'imagePath'")  # noqa: TRY004
        except (ValueError, UnicodeDecodeError) as e:
            problems.append(f"{path}: {e}")
            continue
        parsed.append((path, data))
    labels = sorted({s.get("label") for _, d in parsed for s in d["shapes"] if isinstance(s, dict)
                     and isinstance(s.get("label"), str)})
    names = list(categories) if categories else labels
    cat_ids = {n: i for i, n in enumerate(names, start=1)}
    images, annotations = [], []
    for path, data in parsed:
        image_path = (path.parent / data["imagePath"].replace("\\", "/"))
        name = os.path.relpath(image_path, folder).replace(os.sep, "/")
        if not image_path.is_file():
            problems.append(f"{path}: imagePath {data['imagePath']!r}: image file {image_path} does not exist")
            continue
        try:
            h, w = image_size(image_path)
        except ImageFileError as e:
            problems.append(f"{path}: imagePath {data['imagePath']!r}: {e}")
            continue
        if (data.get("imageHeight"), data.get("imageWidth")) not in ((h, w), (None, None)):
            problems.append(f"{path}: imageHeight x imageWidth = {data.get('imageHeight')}x{data.get('imageWidth')} "
                            f"but the image {image_path.name} is {h}x{w}")
            continue
        image_id = len(images) + 1
        images.append({"id": image_id, "file_name": name, "height": h, "width": w})
        groups: dict = {}
        for i, shape in enumerate(data["shapes"]):
            where = f"{path}: shape {i}"
            if not isinstance(shape, dict):
                problems.append(f"{where}: not an object")
                continue
            label = shape.get("label")
            where += f" ({label!r})"
            if label not in cat_ids:
                problems.append(f"{where}: unknown label; categories: {names}")
                continue
            poly = _labelme_polygon(shape, where, problems)
            if poly is None:
                continue
            xs, ys = poly[0::2], poly[1::2]
            if min(xs) < -0.5 or min(ys) < -0.5 or max(xs) > w + 0.5 or max(ys) > h + 0.5:
                problems.append(f"{where}: points outside the {w}x{h} image")
                continue
            poly = [min(max(v, 0.0), float(w if k % 2 == 0 else h)) for k, v in enumerate(poly)]
            gid = shape.get("group_id")
            groups.setdefault((label, gid) if gid is not None else (label, None, i), []).append(poly)
        for key, polys in groups.items():
            annotations.append(_polygon_annotation(polys, len(annotations) + 1, image_id, cat_ids[key[0]], h, w))
    if problems:
        raise CocoFormatError(f"{len(problems)} problem(s) importing LabelMe files from {folder}; "
                              "nothing written:", problems)
    coco = {"info": {"source": "labelme"}, "images": images, "annotations": annotations,
            "categories": _categories(names)}
    return write_validated_coco(coco, out_file, folder)


# --- Pascal VOC -------------------------------------------------------------------------------------------

def voc_to_coco(voc_root: str | Path, out_file: str | Path, image_set: str | None = None,
                classes: Sequence[str] = VOC_CLASSES) -> tuple[Path, str]:
    """Pascal VOC segmentation (``JPEGImages/``, ``SegmentationObject/``, ``SegmentationClass/``) -> COCO.

    Both PNGs are palette images: in ``SegmentationObject`` index k is object k, in
    ``SegmentationClass`` index c is class c (1 = ``classes[0]``). ``VOID`` (255), VOC's outline round every
    object and its "difficult" regions, is ignored: neither object nor background (the returned message
    says how many pixels). An object's class is the class of its pixels; an object whose pixels have two
    classes, or none, is an error naming the file and the object. ``image_set``: read only the stems in
    ``ImageSets/Segmentation/<image_set>.txt``. Returns ``(out_file, message)``.
    """
    root = Path(voc_root)
    obj_dir, cls_dir, img_dir = root / "SegmentationObject", root / "SegmentationClass", root / "JPEGImages"
    for d in (obj_dir, cls_dir, img_dir):
        if not d.is_dir():
            why = f"{d}/: missing (a VOC folder holds JPEGImages/, SegmentationObject/ and SegmentationClass/)"
            raise CocoFormatError("cannot import Pascal VOC", [why])
    if image_set:
        list_file = root / "ImageSets" / "Segmentation" / f"{image_set}.txt"
        if not list_file.is_file():
            raise CocoFormatError("cannot import Pascal VOC", [f"{list_file}: missing"])
        stems = [s.strip() for s in list_file.read_text().split() if s.strip()]
    else:
        stems = sorted(p.stem for p in obj_dir.iterdir() if not p.name.startswith("."))
    problems: list[str] = []
    images, annotations, void_pixels, void_files = [], [], 0, 0
    for stem in stems:
        obj_path, cls_path = obj_dir / f"{stem}.png", cls_dir / f"{stem}.png"
        image_path = next((p for p in (img_dir / f"{stem}.jpg", img_dir / f"{stem}.png") if p.is_file()), None)
        lost = [p for p in (obj_path, cls_path) if not p.is_file()] + ([] if image_path else [img_dir / f"{stem}.jpg"])
        if lost:
            problems += [f"{p}: missing (image {stem})" for p in lost]
            continue
        try:
            h, w = image_size(image_path)
            objects = read_mask_file(obj_path, "palette", (h, w))
            cls = read_mask_file(cls_path, "palette", (h, w))
        except (ImageFileError, MaskFileError) as e:
            problems.append(str(e))
            continue
        void = objects == VOID
        if void.any():
            void_pixels, void_files = void_pixels + int(void.sum()), void_files + 1
        image_id = len(images) + 1
        images.append({"id": image_id, "file_name": image_path.name, "height": h, "width": w})
        for k in (int(v) for v in np.unique(objects) if v not in (0, VOID)):
            inside = objects == k
            found = sorted(int(c) for c in np.unique(cls[inside]) if c != VOID)
            if len(found) != 1 or not 1 <= found[0] <= len(classes):
                problems.append(f"{obj_path}: object {k}: its pixels in {cls_path.name} have class(es) {found}; "
                                f"an object needs exactly one class in 1..{len(classes)}")
                continue
            rle = encode_mask(inside)
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": found[0],
                                "segmentation": rle, "area": float(mask_utils.area(rle)),
                                "bbox": [float(v) for v in mask_utils.toBbox(rle)], "iscrowd": 0})
    if problems:
        raise CocoFormatError(f"{len(problems)} problem(s) importing Pascal VOC from {root}; nothing written:",
                              problems)
    coco = {"info": {"source": "pascal_voc"}, "images": images, "annotations": annotations,
            "categories": _categories(classes)}
    out = write_validated_coco(coco, out_file, img_dir)
    return out, (f"ignored {void_pixels} void pixel(s) (value {VOID}) in {void_files} of {len(images)} "
                 "SegmentationObject file(s): VOC's outlines and difficult regions")


# --- YOLO segmentation ------------------------------------------------------------------------------------

def read_names(path: str | Path) -> list[str]:
    """Class names of a YOLO data set: a ``.txt`` (one per line) or a ``data.yaml`` with ``names:``
    (a list, or a mapping ``0: name``), in class-id order."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() not in (".yaml", ".yml"):
        return [line.strip() for line in text.splitlines() if line.strip()]
    import yaml

    names = (yaml.safe_load(text) or {}).get("names")
    if isinstance(names, dict):
        names = [names[k] for k in sorted(names)]
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise CocoFormatError("cannot read YOLO class names", [f"{path}: 'names' must be a list of strings"])
    return names


def yolo_to_coco(image_dir: str | Path, label_dir: str | Path, names_file: str | Path,
                 out_file: str | Path) -> Path:
    """YOLO segmentation labels -> COCO. ``label_dir/<stem>.txt`` has one line per instance,
    ``class x1 y1 x2 y2 ...`` with coordinates normalised to 0..1 by the image's width and height; class
    ``c`` is ``names[c]`` (COCO id ``c + 1``). An image without a label file has no instances; a label
    file without an image is an error."""
    image_dir, label_dir = Path(image_dir), Path(label_dir)
    from course_lib.data.coco_build import IMAGE_EXTENSIONS

    names = read_names(names_file)
    problems: list[str] = []
    paths = sorted(p for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    stems = {p.stem for p in paths}
    for t in sorted(label_dir.glob("*.txt")):
        if t.stem not in stems:
            problems.append(f"{t}: no image {t.stem}.* in {image_dir}/")
    images, annotations = [], []
    for path in paths:
        try:
            h, w = image_size(path)
        except ImageFileError as e:
            problems.append(str(e))
            continue
        image_id = len(images) + 1
        images.append({"id": image_id, "file_name": path.name, "height": h, "width": w})
        label = label_dir / f"{path.stem}.txt"
        if not label.is_file():
            continue
        for n, line in enumerate(label.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            where = f"{label}: line {n}"
            try:
                values = [float(v) for v in line.split()]
            except ValueError:
                problems.append(f"{where}: not numbers")
                continue
            c, coords = values[0], values[1:]
            if c != int(c) or not 0 <= c < len(names):
                problems.append(f"{where}: class {line.split()[0]} is not in 0..{len(names) - 1} ({len(names)} names)")
                continue
            if len(coords) == 4:
                problems.append(f"{where}: 4 numbers is a YOLO box (x_centre y_centre w h), not a polygon")
                continue
            if len(coords) < 6 or len(coords) % 2:
                problems.append(f"{where}: a polygon needs an even number of coordinates, at least 6")
                continue
            if min(coords) < 0 or max(coords) > 1:
                problems.append(f"{where}: coordinates must be normalised to 0..1")
                continue
            poly = [round(v * (w if k % 2 == 0 else h), 3) for k, v in enumerate(coords)]
            annotations.append(_polygon_annotation([poly], len(annotations) + 1, image_id, int(c) + 1, h, w))
    if problems:
        raise CocoFormatError(f"{len(problems)} problem(s) importing YOLO labels from {label_dir}; nothing written:",
                              problems)
    coco = {"info": {"source": "yolo"}, "images": images, "annotations": annotations,
            "categories": _categories(names)}
    return write_validated_coco(coco, out_file, image_dir)


# --- COCO from other tools --------------------------------------------------------------------------------

def normalise_coco(in_file: str | Path, out_file: str | Path, image_dir: str | Path) -> tuple[Path, str]:
    """A COCO file written by another tool (CVAT, Label Studio, ...) -> one the course reads.

    - uncompressed RLE (``counts`` a list, CVAT's masks) -> compressed RLE;
    - float polygons are kept (pycocotools reads them); empty segmentations (box-only annotations)
      are an error naming the annotation: Mask R-CNN needs a mask for every object;
    - missing ``area``/``bbox``/``iscrowd`` are computed from the segmentation;
    - category ids from 0 (Label Studio) are shifted to 1, 2, ...: 0 is torchvision's background label.
    Returns ``(out_file, message)`` saying what was changed.
    """
    in_file = Path(in_file)
    try:
        data = json.loads(in_file.read_text(encoding="utf-8"))
        images = {im["id"]: im for im in data["images"]}
        cats, anns = data["categories"], data["annotations"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CocoFormatError(f"cannot read {in_file}",
                              [f"{in_file}: not a COCO file ({type(e).__name__}: {e})"]) from e
    problems, changed = [], []
    shift = 1 if cats and min(c["id"] for c in cats) == 0 else 0
    if shift:
        changed.append("category ids shifted by +1 (0 is the background label)")
        cats = [{**c, "id": c["id"] + 1} for c in cats]
    out_anns, rle_fixed, filled = [], 0, 0
    for a in anns:
        im = images.get(a.get("image_id"))
        seg = a.get("segmentation")
        where = f"{in_file}: annotation id={a.get('id')!r}"
        if im is None:
            problems.append(f"{where}: unknown image_id {a.get('image_id')!r}")
            continue
        h, w = im["height"], im["width"]
        if not seg:
            problems.append(f"{where}: no segmentation (a box-only annotation); Mask R-CNN needs a mask")
            continue
        a = {**a, "category_id": a["category_id"] + shift}
        if isinstance(seg, dict) and isinstance(seg.get("counts"), list):
            if sum(seg["counts"]) != h * w:
                problems.append(f"{where}: RLE counts add up to {sum(seg['counts'])} pixels, not {h}x{w}")
                continue
            rle = mask_utils.frPyObjects(seg, h, w)
            a["segmentation"] = {"size": [h, w], "counts": rle["counts"].decode("ascii")}
            rle_fixed += 1
        try:
            s = a["segmentation"]
            rle = (mask_utils.merge(mask_utils.frPyObjects(s, h, w)) if isinstance(s, list)
                   else {"size": s["size"], "counts": s["counts"].encode("ascii")})
        except Exception as e:  # noqa: BLE001
            problems.append(f"{where}: unreadable segmentation ({type(e).__name__}: {e})")
            continue
        if any(k not in a for k in ("area", "bbox", "iscrowd")):
            filled += 1
            a.setdefault("area", float(mask_utils.area(rle)))
            a.setdefault("bbox", [float(v) for v in mask_utils.toBbox(rle)])
            a.setdefault("iscrowd", 0)
        out_anns.append(a)
    if problems:
        raise CocoFormatError(f"{len(problems)} problem(s) in {in_file}; nothing written:", problems)
    if rle_fixed:
        changed.append(f"{rle_fixed} uncompressed RLE mask(s) compressed")
    if filled:
        changed.append(f"area/bbox/iscrowd filled in for {filled} annotation(s)")
    coco = {**data, "categories": cats, "annotations": out_anns}
    out = write_validated_coco(coco, out_file, image_dir)
    return out, "; ".join(changed) or "nothing to change"


def split_coco(ann_file: str | Path, val_fraction: float, seed: int = 0) -> tuple[Path, Path]:
    """Split a COCO file by image into ``<stem>_train.json`` and ``<stem>_val.json`` beside it.

    ``round(val_fraction x images)`` images (at least 1, at most all but 1), drawn with ``seed``, go to val;
    ids, categories and ``info`` (with ``image_root``) are kept, so both files use the same images folder.
    """
    ann_file = Path(ann_file)
    if not 0 < val_fraction < 1:
        raise CocoFormatError("cannot split", [f"the val fraction must be between 0 and 1, got {val_fraction}"])
    data = json.loads(ann_file.read_text(encoding="utf-8"))
    ids = sorted(im["id"] for im in data["images"])
    if len(ids) < 2:
        raise CocoFormatError("cannot split", [f"{ann_file}: {len(ids)} image(s); a split needs at least 2"])
    n_val = min(len(ids) - 1, max(1, round(val_fraction * len(ids))))
    val = set(np.random.default_rng(seed).choice(ids, n_val, replace=False).tolist())
    root = ann_file.parent / data.get("info", {}).get("image_root", ".")
    out = []
    for part, keep in (("train", lambda i: i not in val), ("val", lambda i: i in val)):
        coco = {**data, "images": [im for im in data["images"] if keep(im["id"])],
                "annotations": [a for a in data["annotations"] if keep(a["image_id"])]}
        out.append(write_validated_coco(coco, ann_file.with_name(f"{ann_file.stem}_{part}.json"), root))
    return out[0], out[1]
