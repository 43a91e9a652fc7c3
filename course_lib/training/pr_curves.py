"""Precision-recall curves per class, read off a finished ``COCOeval``. Taught in: 06_fine_tuning
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pycocotools.cocoeval import COCOeval


@dataclass
class PRCurve:
    """Interpolated precision at COCO's 101 recall points, for one class at one IoU threshold."""

    iou: float
    category_id: int
    recall: np.ndarray  # (101,) 0, 0.01, ..., 1
    precision: np.ndarray  # (101,); 0 where the recall is never reached

    @property
    def ap(self) -> float:
        """COCO's AP for this class and threshold: the mean precision over the 101 recall points."""
        return float(self.precision.mean())


def pr_curves(ev: COCOeval, iou_thresholds: tuple[float, ...] = (0.5, 0.75), area: str = "all",
              max_dets: int | None = None) -> list[PRCurve]:
    """Precision against recall per class from an evaluated ``COCOeval`` (``evaluate`` + ``accumulate``).

    ``ev.eval['precision']`` has shape (T IoU thresholds, R=101 recall points, K classes, A area ranges,
    M max-detection settings). For each threshold in ``iou_thresholds`` and each class with ground
    truth it returns one ``PRCurve``; ``area`` is 'all', 'small', 'medium' or 'large', and ``max_dets``
    defaults to the largest setting (100). The precision is COCO's interpolated one: at recall r, the
    best precision reached at any recall >= r. A class without ground truth (precision -1) is left out.
    """
    if not getattr(ev, "eval", None):
        raise ValueError("this COCOeval has no accumulated results: run evaluate() and accumulate() first "
                         "(coco_eval does both)")
    p = ev.params
    a = p.areaRngLbl.index(area)
    m = p.maxDets.index(max_dets) if max_dets is not None else len(p.maxDets) - 1
    curves = []
    for iou in iou_thresholds:
        t = int(np.argmin(np.abs(np.asarray(p.iouThrs) - iou)))
        if abs(p.iouThrs[t] - iou) > 1e-6:
            raise ValueError(f"IoU {iou} is not one of COCOeval's thresholds {list(np.round(p.iouThrs, 2))}")
        for k, cat in enumerate(p.catIds):
            prec = np.asarray(ev.eval["precision"][t, :, k, a, m], dtype=np.float64)
            if (prec < 0).all():
                continue
            curves.append(PRCurve(float(p.iouThrs[t]), int(cat), np.asarray(p.recThrs, dtype=np.float64),
                                  np.clip(prec, 0, None)))
    return curves
