"""COCO evaluation: bbox and segm AP with pycocotools' ``COCOeval``. Taught in: 06_fine_tuning.
Used from 00_overview on to report the course checkpoint's quality.

``predict`` -> ``to_coco_results`` -> ``coco_eval`` (or all three: ``evaluate``): COCO's AP, AP50, AP75, AP by
object size and AR, for boxes and masks; ``format_report`` prints them as a table.
"""

from __future__ import annotations

import contextlib
import io

import numpy as np
from pycocotools.cocoeval import COCOeval
from torchvision.ops import box_convert

from course_lib.data.masks import encode_mask
from course_lib.training.predict import predict

# The 12 numbers COCOeval.summarize() prints, in its order.
STAT_NAMES = ["AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large",
              "AR1", "AR10", "AR100", "AR_small", "AR_medium", "AR_large"]


def to_coco_results(outputs: dict[int, dict], mask_threshold: float = 0.5) -> list[dict]:
    """Model outputs -> COCO result dicts (xywh ``bbox``, RLE ``segmentation``, ``score``)."""
    results = []
    for image_id, out in outputs.items():
        boxes = box_convert(out["boxes"], "xyxy", "xywh")  # COCO results use [x, y, width, height]
        masks = (out["masks"][:, 0] > mask_threshold).numpy() if "masks" in out else None
        for i in range(len(boxes)):
            r = {"image_id": image_id, "category_id": int(out["labels"][i]),
                 "bbox": [round(float(v), 3) for v in boxes[i]], "score": float(out["scores"][i])}
            if masks is not None:
                r["segmentation"] = encode_mask(masks[i])
            results.append(r)
    return results


def coco_eval(coco_gt, results: list[dict], iou_type: str, verbose: bool = False,
              img_ids: list[int] | None = None) -> COCOeval:
    """Run ``COCOeval`` for ``iou_type`` ('bbox' or 'segm') and return it (``.stats`` filled).

    ``img_ids`` limits the evaluation to those images (default: every image of ``coco_gt``).
    """
    quiet = contextlib.nullcontext() if verbose else contextlib.redirect_stdout(io.StringIO())
    with quiet:
        coco_dt = coco_gt.loadRes(results) if results else None
        if coco_dt is None:  # no detections at all: every AP is 0
            ev = COCOeval(coco_gt, iouType=iou_type)
            ev.stats = np.zeros(12)
            return ev
        ev = COCOeval(coco_gt, coco_dt, iouType=iou_type)
        if img_ids is not None:
            ev.params.imgIds = sorted(int(i) for i in img_ids)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def evaluate(model, dataset, device, batch_size: int = 8, progress: bool = True,
             iou_types: tuple[str, ...] = ("bbox", "segm"), verbose: bool = False) -> dict:
    """COCO AP of ``model`` on a ``CocoInstanceDataset`` (or a ``Subset`` of one: only its images count).

    Returns ``{"bbox": {"AP": ..., "AP50": ..., ...}, "segm": {...}, "evals": {iou_type: COCOeval},
    "outputs": {image_id: output}}``; the ``COCOeval`` objects hold precision arrays for PR curves
    (``eval['precision']``, see ``pr_curves``), the outputs are for error analysis and pictures.
    """
    outputs = predict(model, dataset, device, batch_size, progress)
    results = to_coco_results(outputs)
    coco_gt = dataset.coco if hasattr(dataset, "coco") else dataset.dataset.coco
    img_ids = None if hasattr(dataset, "coco") else sorted(outputs)
    report: dict = {"evals": {}, "outputs": outputs}
    for iou_type in iou_types:
        ev = coco_eval(coco_gt, results, iou_type, verbose, img_ids)
        report[iou_type] = {name: float(v) for name, v in zip(STAT_NAMES, ev.stats, strict=True)}
        report["evals"][iou_type] = ev
    return report


def format_report(report: dict, names: tuple[str, ...] = ("AP", "AP50", "AP75", "AP_small", "AP_medium",
                                                          "AP_large")) -> str:
    """The COCO figures of ``evaluate``'s report as a small table, rounded to 3 decimals (-1: no such objects)."""
    lines = ["       " + " ".join(f"{n:>9s}" for n in names)]
    for iou_type in ("bbox", "segm"):
        if iou_type in report:
            lines.append(f"{iou_type:6s} " + " ".join(f"{report[iou_type][n]:9.3f}" for n in names))
    return "\n".join(lines)
