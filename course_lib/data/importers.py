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
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pycocotools import mask as mask_utils

from course_lib.data.coco_meta import image_root_of  # noqa: F401 - its home is coco_meta; coco_command reads it here
from course_lib.data.coco_validate import validate_coco
from course_lib.data.errors import CocoFormatError
from course_lib.data.labelme_files import NO_AREA, check_frame, read_shape, skip_reason
from course_lib.data.labels import LabelSpellings, label_key
from course_lib.data.mask_files import VOID, ImageFileError, MaskFileError, image_header, read_mask_file
from course_lib.data.masks import encode_mask, mask_to_annotation
from course_lib.data.notes import print_notes
from course_lib.utils.files import write_atomic

VOC_CLASSES = ["aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
               "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
               "train", "tvmonitor"]


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

def labelme_to_coco(folder: str | Path, out_file: str | Path, categories: Sequence[str] | None = None) -> Path:
    """LabelMe JSON files (``folder/**/*.json``, one per image) -> a validated COCO file.

    Each file's ``imagePath`` (relative to the JSON file) names its image, read from disk; ``imageHeight`` /
    ``imageWidth`` must match it. Shapes are read as ``labelme_files`` says: ``polygon``, ``rectangle``,
    ``circle`` and ``mask`` become instances; ``line``, ``linestrip`` and ``point`` are skipped with a
    warning naming the file and the shape. Shapes with the same ``label`` and ``group_id`` (not null) form
    one instance (LabelMe's way to draw an object in parts); a group holding a mask is written as RLE.

    Photos with an EXIF Orientation are read upright, as LabelMe 4+ draws them (``labelme_files.check_frame``);
    a file drawn on the stored pixels is refused, naming "EXIF Orientation N". Labels that differ only in
    case or surrounding spaces are one category (``labels``), with a printed note naming the files.
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
    spellings = LabelSpellings()
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
        for s in data["shapes"]:
            if isinstance(s, dict) and isinstance(s.get("label"), str) and s.get("shape_type") not in NO_AREA:
                spellings.add(s["label"], os.path.relpath(path, folder))
    try:
        category_of, names = spellings.category_of(categories)
    except ValueError as e:
        raise CocoFormatError("cannot import LabelMe files", [str(e)]) from None
    cat_ids = {n: i for i, n in enumerate(names, start=1)}
    images, annotations, skipped, unsure = [], [], [], []
    for path, data in parsed:
        image_path = (path.parent / data["imagePath"].replace("\\", "/"))
        name = os.path.relpath(image_path, folder).replace(os.sep, "/")
        if not image_path.is_file():
            problems.append(f"{path}: imagePath {data['imagePath']!r}: image file {image_path} does not exist")
            continue
        try:
            header = image_header(image_path)
        except ImageFileError as e:
            problems.append(f"{path}: imagePath {data['imagePath']!r}: {e}")
            continue
        frame = check_frame(path, data, image_path, header, problems)
        if frame is False:
            continue
        if frame is None:
            unsure.append(f"{name} ({header.orientation})")
        h, w = header.height, header.width
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
            if shape.get("shape_type") in NO_AREA:
                skipped.append(f"{where}: {shape['shape_type']} skipped: {skip_reason(shape)}")
                continue
            if label not in category_of:
                problems.append(f"{where}: unknown label; categories: {names}")
                continue
            region = read_shape(shape, where, (h, w), problems)
            if region is None:
                continue
            gid = shape.get("group_id")
            key = (category_of[label], gid) if gid is not None else (category_of[label], None, i)
            groups.setdefault(key, ([], [], where))[0 if region[0] == "polygon" else 1].append(region[1])
        for key, (polys, masks, where) in groups.items():
            ann = _region_annotation(polys, masks, len(annotations) + 1, image_id, cat_ids[key[0]], h, w)
            if ann is None:
                problems.append(f"{where}: covers no whole pixel (too thin or too small to be an instance)")
            else:
                annotations.append(ann)
    if problems:
        raise CocoFormatError(f"{len(problems)} problem(s) importing LabelMe files from {folder}; "
                              "nothing written:", problems)
    print_notes(skipped, "warning")
    notes = spellings.notes(category_of)
    if unsure:
        notes.append(f"{len(unsure)} photo(s) with an EXIF Orientation tag (in brackets) whose LabelMe file cannot "
                     "confirm the frame it was drawn in (no imageData, and sizes alike either way) were read "
                     f"upright, as LabelMe 4+ draws them: {some_names(unsure)}")
    print_notes(notes)
    coco = {"info": {"source": "labelme"}, "images": images, "annotations": annotations,
            "categories": _categories(names)}
    return write_validated_coco(coco, out_file, folder)


def _region_annotation(polys: list[list[float]], masks: list[np.ndarray], ann_id: int, image_id: int, cat: int,
                       h: int, w: int) -> dict | None:
    """One instance from its polygons (written as polygons) or, when it has a mask, all its parts as RLE;
    ``None`` when it covers no pixel."""
    if not masks:
        ann = _polygon_annotation(polys, ann_id, image_id, cat, h, w)
        return ann if ann["area"] > 0 else None
    union = np.logical_or.reduce(masks)
    if polys:
        union |= mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(polys, h, w))).astype(bool)
    return mask_to_annotation(union, ann_id, image_id, cat, "rle")


def some_names(names: Sequence[str], n: int = 5) -> str:
    """The first ``n`` of ``names`` and how many more: for notes."""
    return ", ".join(names[:n]) + (f" and {len(names) - n} more" if len(names) > n else "")


# --- Pascal VOC -------------------------------------------------------------------------------------------

def voc_to_coco(voc_root: str | Path, out_file: str | Path, image_set: str | None = None,
                classes: Sequence[str] = VOC_CLASSES) -> tuple[Path, str]:
    """Pascal VOC segmentation (``JPEGImages/``, ``SegmentationObject/``, ``SegmentationClass/``) -> COCO.

    Both PNGs are palette images: in ``SegmentationObject`` index k is object k, in
    ``SegmentationClass`` index c is class c (1 = ``classes[0]``). ``VOID`` (255), VOC's outline round every
    object and its "difficult" regions, is never an object: neither object nor background (the returned
    message says how many pixels). An object's class is the class of its pixels; an object whose pixels
    have two classes, or none, is an error naming the file and the object.

    Difficult objects: each ``<object>`` of ``Annotations/<stem>.xml`` with ``<difficult>1`` becomes an
    ignore region (``iscrowd=1``) covering its ``<bndbox>``, the box VOC's own evaluation ignores
    detections in (its pixels are void in the masks). Training sets ignore regions aside and COCO's
    evaluation ignores detections on them, so such an object is neither learnt as background nor counted
    as a miss. The message counts them. ``image_set``: read only the stems in
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
    xml_dir = root / "Annotations"
    class_ids = {label_key(c): i for i, c in enumerate(classes, start=1)}
    problems: list[str] = []
    images, annotations, void_pixels, void_files, difficult, no_xml, unsure = [], [], 0, 0, 0, 0, []
    for stem in stems:
        obj_path, cls_path = obj_dir / f"{stem}.png", cls_dir / f"{stem}.png"
        image_path = next((p for p in (img_dir / f"{stem}.jpg", img_dir / f"{stem}.png") if p.is_file()), None)
        lost = [p for p in (obj_path, cls_path) if not p.is_file()] + ([] if image_path else [img_dir / f"{stem}.jpg"])
        if lost:
            problems += [f"{p}: missing (image {stem})" for p in lost]
            continue
        try:
            header = image_header(image_path)
            h, w, tag = header
            objects = read_mask_file(obj_path, "palette", (h, w), orientation=tag)
            cls = read_mask_file(cls_path, "palette", (h, w), orientation=tag)
        except (ImageFileError, MaskFileError) as e:
            problems.append(str(e))
            continue
        if header.frame_ambiguous:
            unsure.append(f"{image_path.name} ({tag})")
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
        xml = xml_dir / f"{stem}.xml"
        if not xml.is_file():
            no_xml += 1
            continue
        for region, cat in _voc_difficult_boxes(xml, (h, w), class_ids, problems):
            annotations.append(mask_to_annotation(region, len(annotations) + 1, image_id, cat, "rle", 1))
            difficult += 1
    if problems:
        raise CocoFormatError(f"{len(problems)} problem(s) importing Pascal VOC from {root}; nothing written:",
                              problems)
    if unsure:
        print_notes([f"{len(unsure)} photo(s) with an EXIF Orientation tag (in brackets) were read upright and "
                     f"their masks taken as drawn on the upright photo: {some_names(unsure)}"])
    coco = {"info": {"source": "pascal_voc"}, "images": images, "annotations": annotations,
            "categories": _categories(classes)}
    out = write_validated_coco(coco, out_file, img_dir)
    xml_note = ("no Annotations/ folder, so no difficult objects are known" if not xml_dir.is_dir() else
                f"no Annotations/<stem>.xml for {no_xml} image(s): their difficult objects are not known"
                if no_xml else "")
    return out, "; ".join(filter(None, [
        f"ignored {void_pixels} void pixel(s) (value {VOID}) in {void_files} of {len(images)} "
        "SegmentationObject file(s): VOC's outlines and difficult regions",
        f"kept {difficult} difficult object(s) as ignore regions (iscrowd=1, their boxes)", xml_note]))


def _voc_difficult_boxes(xml: Path, size: tuple[int, int], class_ids: dict[str, int], problems: list[str]):
    """``(box mask (H, W) bool, category id)`` of each ``<difficult>1</difficult>`` object of a VOC XML file.

    VOC boxes count pixels from 1 and include both ends: ``xmin=1, xmax=3`` is the first three columns.
    """
    import xml.etree.ElementTree as ET

    try:
        objects = ET.parse(xml).getroot().findall("object")
    except (ET.ParseError, OSError) as e:
        problems.append(f"{xml}: not a readable VOC annotation ({type(e).__name__}: {e})")
        return
    h, w = size
    for i, obj in enumerate(objects, start=1):
        if (obj.findtext("difficult") or "0").strip() not in ("1", "true"):
            continue
        name = (obj.findtext("name") or "").strip()
        where = f"{xml}: object {i} ({name!r}, difficult)"
        if label_key(name) not in class_ids:
            problems.append(f"{where}: unknown class; classes: {list(class_ids)}")
            continue
        try:
            x0, y0, x1, y1 = (int(round(float(obj.findtext(f"bndbox/{k}")))) for k in ("xmin", "ymin", "xmax", "ymax"))
        except (TypeError, ValueError):
            problems.append(f"{where}: its bndbox needs xmin, ymin, xmax and ymax numbers")
            continue
        x0, y0, x1, y1 = max(x0, 1), max(y0, 1), min(x1, w), min(y1, h)
        if x1 < x0 or y1 < y0:
            problems.append(f"{where}: its bndbox holds no pixel of the {w}x{h} image")
            continue
        region = np.zeros((h, w), bool)
        region[y0 - 1:y1, x0 - 1:x1] = True
        yield region, class_ids[label_key(name)]


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


def check_names(names: Sequence[str], source: str | Path) -> list[str]:
    """YOLO class names as category names: surrounding spaces removed (with a note); two class ids whose names
    differ only in case or surrounding spaces are refused (one category cannot have two ids)."""
    problems, first = [], {}
    for i, n in enumerate(names):
        if not n.strip():
            problems.append(f"{source}: class {i} has an empty name")
        elif label_key(n) in first:
            j = first[label_key(n)]
            problems.append(f"{source}: classes {j} ({names[j]!r}) and {i} ({n!r}) differ only in case or "
                            "surrounding spaces: as categories they would be one name with two ids; give the "
                            "objects of both one class id")
        else:
            first[label_key(n)] = i
    if problems:
        raise CocoFormatError(f"cannot use the YOLO class names of {source}", problems)
    changed = [f"{n!r}" for n in names if n != n.strip()]
    if changed:
        print_notes([f"{source}: surrounding spaces removed from class name(s) {', '.join(changed)}"])
    return [n.strip() for n in names]


def yolo_to_coco(image_dir: str | Path, label_dir: str | Path, names_file: str | Path,
                 out_file: str | Path) -> Path:
    """YOLO segmentation labels -> COCO. ``label_dir/<stem>.txt`` has one line per instance,
    ``class x1 y1 x2 y2 ...`` with coordinates normalised to 0..1 by the image's width and height; class
    ``c`` is ``names[c]`` (COCO id ``c + 1``; see ``check_names``). An image without a label file has no
    instances; a label file without an image is an error.

    A photo with an EXIF Orientation is read upright and its coordinates are taken as normalised by the
    upright width and height, as the YOLO tools read such photos (Ultralytics through OpenCV, which applies
    the tag); a note lists these photos."""
    image_dir, label_dir = Path(image_dir), Path(label_dir)
    from course_lib.data.coco_build import IMAGE_EXTENSIONS

    names = check_names(read_names(names_file), names_file)
    problems: list[str] = []
    tagged: list[str] = []
    paths = sorted(p for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    stems = {p.stem for p in paths}
    for t in sorted(label_dir.glob("*.txt")):
        if t.stem not in stems:
            problems.append(f"{t}: no image {t.stem}.* in {image_dir}/")
    images, annotations = [], []
    for path in paths:
        try:
            h, w, tag = image_header(path)
        except ImageFileError as e:
            problems.append(str(e))
            continue
        if tag != 1:
            tagged.append(f"{path.name} ({tag})")
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
    if tagged:
        print_notes([f"{len(tagged)} photo(s) with an EXIF Orientation tag (in brackets) were read upright, their "
                     f"coordinates taken as normalised by the upright size: {some_names(tagged)}"])
    coco = {"info": {"source": "yolo"}, "images": images, "annotations": annotations,
            "categories": _categories(names)}
    return write_validated_coco(coco, out_file, image_dir)


# --- COCO from other tools --------------------------------------------------------------------------------

def normalise_coco(in_file: str | Path, out_file: str | Path, image_dir: str | Path,
                   crowd_as_objects: bool = False) -> tuple[Path, str]:
    """A COCO file written by another tool (CVAT, Label Studio, ...) -> one the course reads.

    - uncompressed RLE (``counts`` a list, column-major: CVAT's masks) -> compressed RLE;
    - float polygons are kept (pycocotools reads them); empty segmentations (box-only annotations)
      are an error naming the annotation: Mask R-CNN needs a mask for every object;
    - missing ``area``/``bbox``/``iscrowd`` are computed from the segmentation;
    - category ids from 0 (Label Studio) are shifted to 1, 2, ...: 0 is torchvision's background label;
    - crowd regions (``iscrowd=1``) are kept as COCO's ignore regions and counted in the message. CVAT
      (through Datumaro) writes every annotation it exports as a mask with ``iscrowd=1``, crowd or not;
      ``crowd_as_objects=True`` makes them all objects (``iscrowd=0``) for such a file.
    Image sizes must be the upright ones (``validate_coco``); photos whose EXIF Orientation the sizes cannot
    confirm are noted. Returns ``(out_file, message)`` saying what was changed and kept.
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
    crowds = sum(a["iscrowd"] == 1 for a in out_anns)
    if crowds and crowd_as_objects:
        out_anns = [{**a, "iscrowd": 0} for a in out_anns]
        changed.append(f"{crowds} crowd region(s) (iscrowd=1) made objects (iscrowd=0) by --crowd-as-objects")
    elif crowds:
        changed.append(f"kept {crowds} crowd region(s) (iscrowd=1) as ignore regions: training sets them aside. "
                       "CVAT marks every mask it exports iscrowd=1: if these are single objects, build again "
                       "with --crowd-as-objects")
    tagged = []
    for im in images.values():
        try:
            header = image_header(Path(image_dir) / str(im.get("file_name")))
        except ImageFileError:
            continue  # validate_coco reports it
        if header.frame_ambiguous:
            tagged.append(f"{im.get('file_name')} ({header.orientation})")
    if tagged:
        print_notes([f"{len(tagged)} photo(s) with an EXIF Orientation tag (in brackets) were read upright, their "
                     f"annotations taken as drawn on the upright photo, as CVAT and Label Studio show it: "
                     f"{some_names(tagged)}"])
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
