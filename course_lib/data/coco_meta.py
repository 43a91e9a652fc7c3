"""What a COCO file says about itself, read in one place: its categories (id -> name), the class names a
model trained on it predicts (index = label, ``[0]`` the background) and the folder of its images.
Taught in: 05_coco_dataset, 06_fine_tuning

Every command and lesson that needs a COCO file's categories or image folder asks this module
(``finetune``, ``evaluate``, ``coco validate``, the checks before training).
"""

from __future__ import annotations

import json
from pathlib import Path

BACKGROUND = "__background__"


def read_coco_json(ann_file: str | Path) -> dict:
    """The COCO file as a dict (UTF-8 JSON)."""
    return json.loads(Path(ann_file).read_text(encoding="utf-8"))


def read_categories(ann_file: str | Path) -> dict[int, str]:
    """``{category id: name}`` of a COCO file, in the file's order."""
    return {c["id"]: c["name"] for c in read_coco_json(ann_file)["categories"]}


def class_names(categories: dict[int, str], source: str | Path = "the categories") -> list[str]:
    """Class names indexed by label from ``{category id: name}``: ``[0]`` is ``'__background__'``.

    The model predicts label ``k`` for category id ``k``, so ids must be 1, 2, ...: a gap is named
    ``'__unused_<id>__'`` and costs one unused output.
    """
    if not categories or min(categories) < 1:
        raise ValueError(f"{source}: categories need ids 1, 2, ... (0 is background); got {sorted(categories)}")
    return [BACKGROUND] + [categories.get(i, f"__unused_{i}__") for i in range(1, max(categories) + 1)]


def categories_of(ann_file: str | Path) -> list[str]:
    """Class names indexed by label (``[0]`` is ``'__background__'``), from a COCO file's categories.

    The model predicts label ``k`` for category id ``k``, so ids must be 1, 2, ...: a gap is named
    ``'__unused_<id>__'`` and costs one unused output.
    """
    return class_names(read_categories(ann_file), source=ann_file)


def image_root_of(ann_file: str | Path) -> Path:
    """The image folder of a COCO file: ``info["image_root"]`` (relative to the file) when present, else
    ``<its folder>/images`` when that exists, else ``<its folder>/../images``, else its folder."""
    ann_file = Path(ann_file)
    try:
        info = read_coco_json(ann_file).get("info") or {}
    except (OSError, ValueError, AttributeError):
        info = {}
    if isinstance(info, dict) and isinstance(info.get("image_root"), str):
        return ann_file.parent / info["image_root"]
    for candidate in (ann_file.parent / "images", ann_file.parent.parent / "images"):
        if candidate.is_dir():
            return candidate
    return ann_file.parent
