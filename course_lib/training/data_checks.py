"""The checks every command runs on its data before using it: the COCO file and its images validated,
train and val (or model and data) agreeing on their categories. Taught in: 06_fine_tuning
"""

from __future__ import annotations

from pathlib import Path

from course_lib.data.coco_meta import image_root_of, read_categories
from course_lib.data.coco_validate import category_differences, validate_coco
from course_lib.utils.errors import CommandError


def check_data(ann_file: str | Path, root: str | Path | None, what: str) -> Path:
    """Validate a COCO file and its images (``root``, default ``image_root_of``); print the report and
    raise ``CommandError`` on any problem. Returns the image folder."""
    ann_file = Path(ann_file)
    if not ann_file.is_file():
        raise CommandError(f"{ann_file}: {what} file not found")
    images = Path(root) if root else image_root_of(ann_file)
    report = validate_coco(ann_file, images)
    if not report.ok:
        print(report)
        raise CommandError(f"{ann_file} ({what}): {len(report.problems)} problem(s), listed above; "
                           "fix them (./course coco validate lists them too)")
    return images


def check_categories(train_file: str | Path, val_file: str | Path) -> None:
    """Refuse when two COCO files name their category ids differently (a model learns label k for id k)."""
    diff = category_differences(train_file, val_file)
    if diff:
        raise CommandError("train and val disagree on their categories (a model learns label k for id k): "
                           + "; ".join(diff))


def check_model_categories(classes: list[str], ann_file: str | Path) -> None:
    """Refuse when a model's classes (index = label) name the data's category ids differently."""
    cats = read_categories(ann_file)
    diff = [f"category id {i} is {n!r} in {ann_file} but {classes[i] if i < len(classes) else None!r} in the model"
            for i, n in sorted(cats.items()) if i >= len(classes) or classes[i] != n]
    if diff:
        raise CommandError("the model and the data disagree on their categories: " + "; ".join(diff))


def crowd_regions(dataset) -> tuple[int, int]:
    """``(crowd regions, objects)``: the annotations with ``iscrowd=1`` and the others, over the images a
    ``CocoInstanceDataset`` (or a ``torch.utils.data.Subset`` of one) reads."""
    ds, indices = (dataset.dataset, dataset.indices) if hasattr(dataset, "indices") else (dataset, range(len(dataset)))
    anns = [a for i in indices for a in ds.coco.imgToAnns.get(ds.ids[i], [])]
    crowds = sum(a.get("iscrowd", 0) == 1 for a in anns)
    return crowds, len(anns) - crowds


def check_crowds(dataset, ann_file: str | Path) -> str:
    """The line that says how many crowd regions training sets aside (``""`` when none); ``CommandError``
    when every annotation is one (nothing would be learnt: CVAT marks each mask it exports iscrowd=1)."""
    crowds, objects = crowd_regions(dataset)
    if crowds and not objects:
        raise CommandError(f"{ann_file}: all {crowds} annotation(s) are crowd regions (iscrowd=1), which training "
                           "sets aside: nothing is left to learn. A CVAT export marks every mask iscrowd=1; if "
                           "they are single objects, build the file with ./course coco build coco --crowd-as-objects")
    if not crowds:
        return ""
    return (f"set aside {crowds} crowd region(s) (iscrowd=1) of {crowds + objects} annotations: training does not "
            "learn from them (as torchvision's references); evaluation ignores detections on them")
