"""Building a COCO instance-segmentation file from images and masks. Taught in: 05_coco_dataset

``build_coco_dataset`` reads an image folder and a mask folder in one of ``LAYOUTS`` (one instance-id PNG per
image with a category side-car, or one PNG per instance), checks every file and writes the JSON atomically;
``masks_to_coco`` and ``images_and_masks_to_coco`` do the same from arrays in memory.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from course_lib.data.errors import CocoFormatError
from course_lib.data.image_files import ImageHeader
from course_lib.data.labels import label_key
from course_lib.data.mask_files import ImageFileError, MaskFileError, image_header, read_mask_file
from course_lib.data.masks import mask_to_annotation
from course_lib.data.notes import print_notes
from course_lib.utils.files import write_json_atomic

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


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
    for i, (mask, cat, c) in enumerate(zip(masks, cats, crowd, strict=True)):
        if mask.ndim != 2 or mask.shape != masks[0].shape:
            raise ValueError(f"mask {i} has shape {mask.shape}; expected (H, W) = {masks[0].shape[-2:]}")
        if not mask.any():
            raise ValueError(f"mask {i} (image {image_id}) is empty")
        annotations.append(mask_to_annotation(mask != 0, first_id + i, image_id, int(cat), encoding, int(c)))
    return annotations


def instance_map_to_annotations(instance_map: np.ndarray, sidecar: dict, cat_ids: dict[str, int], image_id: int,
                                first_id: int = 1) -> list[dict]:
    """One image's instance-id map and its sidecar -> its COCO annotations (RLE), as ``build_coco_dataset`` writes them.

    ``instance_map`` is (H, W) integer (0 = background, k = instance k); ``sidecar`` the JSON object beside it,
    ``{"k": name}`` or ``{"k": {"category": name, "iscrowd": 0 or 1}}`` (keys are strings, ``iscrowd`` defaults
    to 0); ``cat_ids`` maps names to category ids. One annotation per instance with pixels in the map, in
    increasing order of k (as numbers: 9 before 10), with ids ``first_id, first_id + 1, ...`` whatever gaps the
    instance ids have; sidecar entries without pixels (an instance cropped away) are skipped. Taught in 05.
    """
    annotations = []
    for k in (int(v) for v in np.unique(instance_map) if v != 0):
        entry = sidecar[str(k)]
        name, crowd = (entry["category"], entry.get("iscrowd", 0)) if isinstance(entry, dict) else (entry, 0)
        annotations.append(mask_to_annotation(instance_map == k, first_id + len(annotations), image_id,
                                              cat_ids[name], "rle", int(crowd)))
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
        for mask, cat in zip(masks, cat_ids, strict=True):
            annotations.append(mask_to_annotation(mask, len(annotations) + 1, image_id, cat))
    return {"info": info or {}, "images": images, "annotations": annotations, "categories": categories}


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
    keys = [label_key(c["name"]) for c in cats]
    if len(set(keys)) != len(keys):
        raise ValueError(f"category names {[c['name'] for c in cats]} differ only in case or surrounding spaces: "
                         "annotation tools let such spellings slip in for one class; give each class one name")
    return cats


def _utf8_name(path: Path, problems: list[str]) -> bool:
    try:
        path.name.encode("utf-8")
        return True
    except UnicodeEncodeError:
        problems.append(f"{os.fsencode(path)!r}: the file name is not valid UTF-8; rename the file")
        return False


def _read_mask(path: Path, header: ImageHeader, image: Path, problems: list[str], kind: str = "binary",
               allow_tiny: bool = False) -> np.ndarray | None:
    """A mask after the rules of ``mask_files`` (bool for ``kind="binary"``), sized as the upright image
    ``header`` says, or ``None`` with a problem."""
    try:
        return read_mask_file(path, kind, header[:2], allow_tiny, header.orientation)
    except MaskFileError as e:
        problems.append(str(e).replace("but its image is", f"but its image {image.name} is"))
        return None


def _read_sidecar(path: Path, cat_ids: dict[str, int], problems: list[str]) -> dict[int, tuple[int, int]] | None:
    """``{"1": "circle"}`` or ``{"1": {"category": "circle", "iscrowd": 1}}`` -> {1: (category id, iscrowd)}."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(raw, dict):
            raise ValueError("expected an object {instance id: category name}")  # noqa: TRY004 - caught just below
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


def _id_png_instances(image: Path, mask_dir: Path, header, cat_ids, problems, allow_tiny=False):
    """Layout "id_png": ``mask_dir/<stem>.png`` instance ids, ``mask_dir/<stem>.json`` their categories."""
    path = mask_dir / f"{image.stem}.png"
    if not path.exists():
        problems.append(f"{path}: missing; every image needs its instance mask "
                        f"(all zeros for an image without instances), image {image.name}")
        return
    sidecar = path.with_suffix(".json")
    # Ids a sidecar lists are meant; without one, tiny ids beside big ones are taken for compression noise.
    ids = _read_mask(path, header, image, problems, "ids", allow_tiny or sidecar.exists())
    present = [] if ids is None else [int(k) for k in np.unique(ids) if k != 0]
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


def _per_instance_pngs(image: Path, mask_dir: Path, header, cat_ids, problems, allow_tiny=False):
    """Layout "per_instance": ``mask_dir/<stem>/<k>_<category>.png``, one binary PNG per instance."""
    folder = mask_dir / image.stem
    if not folder.is_dir():
        problems.append(f"{folder}/: missing; every image needs a mask folder "
                        f"(empty for an image without instances), image {image.name}")
        return
    found: dict[int, tuple[Path, int, int]] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith("."):
            continue
        if path.suffix.lower() != ".png":
            problems.append(f"{path}: not a .png mask; every file in a mask folder must be one "
                            "(JPEG masks are lossy: save them as PNG)")
            continue
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
        mask = _read_mask(path, header, image, problems)
        if mask is not None and not mask.any():
            problems.append(f"{path}: instance {k} has no pixels (an empty mask)")
        elif mask is not None:
            yield mask, cat, crowd


def _flat_name(name: str, stems, cat_ids) -> tuple[str, str, int] | None:
    """``<stem>_<category>_<k>.png`` -> (stem, category, k), or ``None`` when no image and category fit."""
    base, dot, ext = name.rpartition(".")
    head, _, k = base.rpartition("_")
    if not dot or ext.lower() != "png" or not k.isdigit():
        return None
    for cat in cat_ids:
        if head.endswith("_" + cat) and head[:-len(cat) - 1] in stems:
            return head[:-len(cat) - 1], cat, int(k)
    return None


def _flat_pngs(image: Path, mask_dir: Path, header, cat_ids, problems, allow_tiny=False):
    """Layout "flat": ``mask_dir/<stem>_<category>_<k>.png``, one binary PNG per instance, all in one folder."""
    found = []
    for path in sorted(mask_dir.glob(f"{glob_escape(image.stem)}_*")):
        parsed = _flat_name(path.name, {image.stem}, cat_ids)
        if parsed is None:
            continue  # reported by the check for files that match no image
        found.append((parsed[2], parsed[1], path))
    for k, cat, path in sorted(found):
        mask = _read_mask(path, header, image, problems, "binary")
        if mask is not None and not mask.any():
            problems.append(f"{path}: instance {k} has no pixels (an empty mask)")
        elif mask is not None:
            yield mask, cat_ids[cat], 0


def glob_escape(text: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in text)


LAYOUTS = {"id_png": _id_png_instances, "per_instance": _per_instance_pngs, "flat": _flat_pngs}


def build_coco_dataset(image_dir: str | Path, mask_dir: str | Path, out_file: str | Path,
                       categories: str | Sequence[str | dict], *, layout: str = "id_png",
                       encoding: str = "rle", info: dict | None = None, allow_tiny: bool = False) -> Path:
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
    - ``layout="flat"``: one folder of binary PNGs, ``mask_dir/<stem>_<category>_<k>.png``; an image
      without such files has no instances.

    Every mask file goes through ``mask_files.read_mask_file`` (no JPEG content, binary masks with two
    values, no compression-noise ids unless ``allow_tiny``), and every file in ``mask_dir`` must be
    one the layout reads: a mask file that matches no rule (a ``.jpg`` among the ``.png`` masks, a
    name without its image) is a problem, never skipped.

    Photos are read upright (EXIF Orientation applied; ``width``/``height`` are the upright ones) and a
    mask must have the upright size: one with the photo's stored size instead (a tag 5-8 swaps the sides)
    is a problem naming "EXIF Orientation N"; where the size cannot tell (tags 2-4, square photos) the mask
    is taken as upright and a printed note lists those photos. A palette PNG holding VOC's void index 255
    given as an id mask is refused with a pointer to ``coco build voc``.

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
    images, annotations, unsure = [], [], []
    for image_id, path in enumerate(paths, start=1):
        try:
            header = image_header(path)
        except ImageFileError as e:
            problems.append(str(e))
            continue
        if header.frame_ambiguous:
            unsure.append(f"{path.name} ({header.orientation})")
        images.append({"id": image_id, "file_name": path.name, "height": header.height, "width": header.width})
        for mask, cat, crowd in LAYOUTS[layout](path, mask_dir, header, cat_ids, problems, allow_tiny):
            annotations.append(mask_to_annotation(mask, len(annotations) + 1, image_id, cat, encoding, crowd))
    # Masks without an image are a mistake too (a typo in a name, a missing image), and so is any
    # file that is not a mask of the layout (a .jpg among the .png masks).
    per_instance = layout == "per_instance"
    expected = {"per_instance": "<stem>/ folders", "id_png": "<stem>.png masks and <stem>.json sidecars",
                "flat": "<stem>_<category>_<k>.png masks"}[layout]
    for m in sorted(mask_dir.iterdir()):
        if m.name.startswith("."):
            continue  # hidden files
        if layout == "flat":
            bad = m.is_dir() or _flat_name(m.name, stems, cat_ids) is None
        elif m.is_dir() != per_instance:
            bad = True
        elif per_instance:
            bad = m.name not in stems
        else:
            bad = m.suffix not in (".png", ".json") or m.stem not in stems
        if bad:
            problems.append(f"{m}: matches no image in {image_dir}/ (layout {layout!r} expects {expected}); "
                            "remove or rename it")
    if problems:
        raise CocoFormatError(f"{len(problems)} problem(s) building {out_file}; nothing written:", problems)
    if unsure:
        shown = ", ".join(unsure[:5]) + (f" and {len(unsure) - 5} more" if len(unsure) > 5 else "")
        print_notes([f"{len(unsure)} photo(s) with an EXIF Orientation tag (in brackets) were read upright and "
                     f"their masks taken as drawn on the upright photo (the sizes look alike either way): {shown}"])
    coco = {"info": info or {}, "images": images, "annotations": annotations, "categories": cats}
    return write_json_atomic(coco, out_file)
