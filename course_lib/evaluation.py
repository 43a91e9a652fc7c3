"""COCO evaluation (bbox and segm AP with pycocotools' ``COCOeval``). Taught in: 06_fine_tuning.

Used from 00_overview on to report the course checkpoint's quality.
"""

from __future__ import annotations

import contextlib
import io

import numpy as np
import torch
from pycocotools.cocoeval import COCOeval

from .ui import progress_bar

from .coco import collate_fn, encode_mask

# The 12 numbers COCOeval.summarize() prints, in its order.
STAT_NAMES = ["AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large",
              "AR1", "AR10", "AR100", "AR_small", "AR_medium", "AR_large"]


@torch.no_grad()
def predict(model, dataset, device, batch_size: int = 8, progress: bool = True) -> dict[int, dict]:
    """Run ``model`` over ``dataset`` (images as float [0, 1]); return ``{image_id: output on CPU}``."""
    model.eval()
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate_fn)
    outputs = {}
    for images, targets in progress_bar(loader, desc="predict", enabled=progress):
        for t, out in zip(targets, model([img.to(device) for img in images])):
            outputs[int(t["image_id"])] = {k: v.cpu() for k, v in out.items()}
    return outputs


def to_coco_results(outputs: dict[int, dict], mask_threshold: float = 0.5) -> list[dict]:
    """Model outputs -> COCO result dicts (xywh ``bbox``, RLE ``segmentation``, ``score``)."""
    results = []
    for image_id, out in outputs.items():
        boxes = out["boxes"].clone()
        boxes[:, 2:] -= boxes[:, :2]  # xyxy -> xywh
        masks = (out["masks"][:, 0] > mask_threshold).numpy() if "masks" in out else None
        for i in range(len(boxes)):
            r = {"image_id": image_id, "category_id": int(out["labels"][i]),
                 "bbox": [round(float(v), 3) for v in boxes[i]], "score": float(out["scores"][i])}
            if masks is not None:
                r["segmentation"] = encode_mask(masks[i])
            results.append(r)
    return results


def coco_eval(coco_gt, results: list[dict], iou_type: str, verbose: bool = False) -> COCOeval:
    """Run ``COCOeval`` for ``iou_type`` ('bbox' or 'segm') and return it (``.stats`` filled)."""
    quiet = contextlib.nullcontext() if verbose else contextlib.redirect_stdout(io.StringIO())
    with quiet:
        coco_dt = coco_gt.loadRes(results) if results else None
        if coco_dt is None:  # no detections at all: every AP is 0
            ev = COCOeval(coco_gt, iouType=iou_type)
            ev.stats = np.zeros(12)
            return ev
        ev = COCOeval(coco_gt, coco_dt, iouType=iou_type)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def evaluate(model, dataset, device, batch_size: int = 8, progress: bool = True,
             iou_types: tuple[str, ...] = ("bbox", "segm"), verbose: bool = False) -> dict:
    """COCO AP of ``model`` on a ``CocoInstanceDataset``.

    Returns ``{"bbox": {"AP": ..., "AP50": ..., ...}, "segm": {...}, "evals": {iou_type: COCOeval}}``;
    the ``COCOeval`` objects hold precision arrays for PR curves (``eval['precision']``).
    """
    outputs = predict(model, dataset, device, batch_size, progress)
    results = to_coco_results(outputs)
    report: dict = {"evals": {}}
    for iou_type in iou_types:
        ev = coco_eval(dataset.coco, results, iou_type, verbose)
        report[iou_type] = {name: float(v) for name, v in zip(STAT_NAMES, ev.stats)}
        report["evals"][iou_type] = ev
    return report
