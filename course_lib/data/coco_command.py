"""``./course coco build`` and ``./course coco validate``: your annotations to a checked COCO file.
Taught in: 05_coco_dataset

    ./course coco build labelme my_photos/ --out my/annotations.json --split 0.25
    ./course coco build voc VOCdevkit/VOC2012 --image-set train --out voc/train.json
    ./course coco build yolo my/images --labels my/labels --names my/data.yaml --out my/annotations.json
    ./course coco build coco cvat_export.json --images my/images --out my/annotations.json
    ./course coco build id_png my/images --masks my/masks --categories cat,dog --out my/annotations.json
    ./course coco validate my/annotations_val.json --against my/annotations_train.json

``--split F`` also writes ``<out>_train.json`` and ``<out>_val.json``: a fraction F of the images (at least
one), drawn with ``--seed``, for validation. Every file is validated before it is written, and the command
says what it holds: images, objects and ignore regions (``iscrowd=1``: crowds, VOC's difficult objects),
which training sets aside and evaluation ignores detections on. Notes and warnings (merged label
spellings, skipped LabelMe lines and points, photos read upright by their EXIF Orientation) come first.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from course_lib.data.errors import CocoFormatError
from course_lib.utils.errors import CommandError

FORMATS = ("labelme", "voc", "yolo", "coco", "id_png", "per_instance", "flat")


def parse_args(argv):
    p = argparse.ArgumentParser(prog="course coco", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    sub = p.add_subparsers(dest="action", required=True)
    b = sub.add_parser("build", help="import annotations into one validated COCO file")
    b.add_argument("format", choices=FORMATS,
                   help="labelme: a folder of LabelMe .json; voc: a VOC root; yolo: the image folder; "
                        "coco: another tool's COCO file; id_png/per_instance/flat: the image folder "
                        "(masks under --masks, see build_coco_dataset)")
    b.add_argument("source", help="the folder or file to import (see format)")
    b.add_argument("--out", required=True, help="the COCO file to write")
    b.add_argument("--masks", help="mask folder (id_png, per_instance, flat)")
    b.add_argument("--labels", help="YOLO label folder (default: <source>/../labels)")
    b.add_argument("--names", help="YOLO class names: data.yaml or a .txt, one per line")
    b.add_argument("--images", help="image folder of a coco file (default: beside it, see image_root_of)")
    b.add_argument("--image-set", help="voc: read only ImageSets/Segmentation/<name>.txt")
    b.add_argument("--categories", help="comma-separated category names in id order (1, 2, ...); "
                                        "labelme default: the labels found, sorted")
    b.add_argument("--allow-tiny", action="store_true",
                   help="accept tiny instances beside big ones in id masks (see mask_files)")
    b.add_argument("--split", type=float, default=None, metavar="F",
                   help="also write <out>_train.json and <out>_val.json with a fraction F of images for val")
    b.add_argument("--seed", type=int, default=0, help="seed of the --split draw")
    b.add_argument("--crowd-as-objects", action="store_true",
                   help="coco: make every crowd region (iscrowd=1) an object; CVAT marks each mask it exports "
                        "iscrowd=1, crowd or not")
    v = sub.add_parser("validate", help="check a COCO file and its images; exit 1 on any problem")
    v.add_argument("file")
    v.add_argument("--images", help="image folder (default: image_root_of the file)")
    v.add_argument("--against", help="another COCO file (the train file) whose categories must agree")
    return p.parse_args(argv)


def build(args) -> list[Path]:
    from course_lib.data import importers
    from course_lib.data.coco_build import build_coco_dataset

    src, out = Path(args.source), Path(args.out)
    cats = [c.strip() for c in args.categories.split(",") if c.strip()] if args.categories else None
    message = ""
    if not src.exists():
        raise CommandError(f"{src}: does not exist")
    if args.crowd_as_objects and args.format != "coco":
        raise CommandError("--crowd-as-objects is for coco files (other tools' COCO exports)")
    if args.format == "labelme":
        importers.labelme_to_coco(src, out, cats)
    elif args.format == "voc":
        _, message = importers.voc_to_coco(src, out, args.image_set, cats or importers.VOC_CLASSES)
    elif args.format == "yolo":
        if not args.names:
            raise CommandError("yolo needs --names (data.yaml or a .txt of class names)")
        importers.yolo_to_coco(src, Path(args.labels) if args.labels else src.parent / "labels", args.names, out)
    elif args.format == "coco":
        _, message = importers.normalise_coco(src, out, args.images or importers.image_root_of(src),
                                              crowd_as_objects=args.crowd_as_objects)
    else:
        if not args.masks or not cats:
            raise CommandError(f"{args.format} needs --masks and --categories")
        try:
            build_coco_dataset(src, args.masks, out, cats, layout=args.format, allow_tiny=args.allow_tiny,
                               info={"image_root": _relative(src, out)})
        except ValueError as e:
            if isinstance(e, CocoFormatError):
                raise
            raise CommandError(str(e)) from None
    print(f"wrote {out}: {contents(out)}" + (f" ({message})" if message else ""))
    written = [out]
    if args.split is not None:
        written += importers.split_coco(out, args.split, args.seed)
        print(f"wrote {written[1]} ({contents(written[1])}) and {written[2]} ({contents(written[2])}), "
              f"seed {args.seed}")
    return written


def contents(ann_file: Path) -> str:
    """'12 images, 30 objects, 2 ignore regions (iscrowd=1)': what a COCO file holds, for the command's output."""
    import json

    data = json.loads(Path(ann_file).read_text(encoding="utf-8"))
    crowds = sum(a.get("iscrowd") == 1 for a in data["annotations"])
    return (f"{len(data['images'])} images, {len(data['annotations']) - crowds} objects, {crowds} ignore region(s) "
            "(iscrowd=1)")


def _relative(folder: Path, out: Path) -> str:
    import os

    return os.path.relpath(folder.resolve(), out.parent.resolve())


def validate(args) -> None:
    from course_lib.data.coco_validate import category_differences, validate_coco
    from course_lib.data.importers import image_root_of

    images = Path(args.images) if args.images else image_root_of(args.file)
    report = validate_coco(args.file, images)
    print(report)
    if not report.ok:
        raise CommandError(f"{args.file}: {len(report.problems)} problem(s), listed above")
    if args.against:
        diff = category_differences(args.against, args.file)
        if diff:
            raise CommandError("the categories differ: " + "; ".join(diff))
        print(f"categories agree with {args.against}")


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        build(args) if args.action == "build" else validate(args)
    except CocoFormatError as e:
        print(e)
        raise CommandError(f"{len(e.problems)} problem(s), listed above; nothing written") from None
    return 0
