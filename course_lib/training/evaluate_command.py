"""``./course evaluate``: a model file on a COCO file: the COCO AP table, AP per class and an error
summary. Taught in: 06_fine_tuning

    ./course evaluate --model runs/mine/model.pt --data my/annotations_val.json
    ./course evaluate --model runs/mine/model.pt --data my/annotations_val.json --json runs/mine/eval.json

The data file is validated first (images included), and the model's classes must name its category
ids as the file does; either problem ends the command with the report and exit status 1.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from course_lib.data.coco_dataset import CocoInstanceDataset, get_transform
from course_lib.training.data_checks import check_data, check_model_categories
from course_lib.training.error_analysis import error_analysis, error_summary
from course_lib.training.evaluation import evaluate, format_report
from course_lib.training.model_file import load_model_file, rounded_metrics
from course_lib.utils.device import get_device
from course_lib.utils.files import write_json_atomic


def parse_args(argv):
    p = argparse.ArgumentParser(prog="course evaluate", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="a model file (finetune's model.pt, data/course_maskrcnn.pt)")
    p.add_argument("--data", required=True, help="the COCO file to evaluate on")
    p.add_argument("--images", help="its image folder (default: image_root_of the file)")
    p.add_argument("--score-threshold", type=float, default=0.5, help="detections counted by the error summary")
    p.add_argument("--json", help="also write every figure to this JSON file")
    p.add_argument("--device", default=None)
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def per_class_ap(ev, names: list[str]) -> dict[str, float]:
    """AP (IoU 0.5:0.95, all areas, 100 detections) of each category; -1 where it has no objects."""
    precision = ev.eval["precision"]  # (IoU thresholds, recall points, categories, areas, max dets)
    out = {}
    for k, cat_id in enumerate(ev.params.catIds):
        p = precision[:, :, k, 0, -1]
        out[names[cat_id] if cat_id < len(names) else str(cat_id)] = float(np.mean(p[p > -1])) if (p > -1).any() else -1.0
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    images = check_data(args.data, args.images, "--data")
    device = get_device(args.device)
    model, classes, _ = load_model_file(args.model, device)
    check_model_categories(classes, args.data)
    dataset = CocoInstanceDataset(images, args.data, get_transform(train=False))
    report = evaluate(model, dataset, device, progress=not args.no_progress)
    per_class = {t: per_class_ap(report["evals"][t], classes) for t in ("bbox", "segm")}
    errors = error_summary(error_analysis(report["outputs"], dataset, score_threshold=args.score_threshold))
    print(f"{args.model} on {args.data} ({len(dataset)} images)")
    print(format_report(report))
    print("\nAP per class   " + " ".join(f"{t:>7s}" for t in ("bbox", "segm")))
    for name in per_class["segm"]:
        print(f"  {name:12s} " + " ".join(f"{per_class[t][name]:7.3f}" for t in ("bbox", "segm")))
    print(f"\nerrors at score >= {args.score_threshold}: " + ", ".join(f"{k} {v}" for k, v in errors.items()))
    if args.json:
        out = {"model": str(args.model), "data": str(args.data), "images": len(dataset),
               **rounded_metrics(report),
               "per_class_ap": {t: {k: round(v, 4) for k, v in d.items()} for t, d in per_class.items()},
               "errors": errors, "score_threshold": args.score_threshold}
        print(f"wrote {write_json_atomic(out, Path(args.json))}")
    return 0
