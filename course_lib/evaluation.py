"""COCO evaluation (bbox and segm AP with pycocotools' ``COCOeval``), PR curves and error analysis.
Taught in: 06_fine_tuning. Used from 00_overview on to report the course checkpoint's quality.

* ``predict`` -> ``to_coco_results`` -> ``coco_eval`` (or all three: ``evaluate``): COCO's AP, AP50,
  AP75, AP by object size and AR, for boxes and masks.
* ``pr_curves`` / ``plot_pr_curves``: precision against recall per class at IoU 0.5 and 0.75, read
  from a ``COCOeval``'s accumulated ``eval['precision']``.
* ``mask_iou``, ``image_errors``, ``error_analysis``, ``error_summary``, ``draw_error``: what went
  wrong, image by image: misses, duplicates, wrong classes, poor boxes, poor masks, detections on
  background.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass, field

import numpy as np
import torch
from pycocotools.cocoeval import COCOeval
from torchvision.ops import box_iou

from .coco import collate_fn, encode_mask
from .ui import progress_bar

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
        report[iou_type] = {name: float(v) for name, v in zip(STAT_NAMES, ev.stats)}
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


# ----------------------------------------------------------------------------------------------------
# Precision-recall curves
# ----------------------------------------------------------------------------------------------------

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


def plot_pr_curves(curves: list[PRCurve], class_names: list[str] | None = None, title: str = ""):
    """One panel per IoU threshold, one line per class (colours as in ``course_lib.draw``). Returns the figure."""
    import matplotlib.pyplot as plt

    from .draw import colour

    ious = sorted({c.iou for c in curves})
    fig, axes = plt.subplots(1, len(ious), figsize=(4 * len(ious), 3.6), squeeze=False)
    for ax, iou in zip(axes[0], ious):
        for c in (c for c in curves if c.iou == iou):
            name = class_names[c.category_id] if class_names else str(c.category_id)
            ax.plot(c.recall, c.precision, color=colour(c.category_id), lw=1.8, label=f"{name} (AP {c.ap:.3f})")
        ax.set_xlim(0, 1.02)
        ax.set_ylim(0, 1.05)
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.set_title(f"{title} IoU {iou:.2f}".strip(), fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------------------------------
# Error analysis
# ----------------------------------------------------------------------------------------------------

def mask_iou(masks1: torch.Tensor, masks2: torch.Tensor) -> torch.Tensor:
    """Pairwise IoU of two sets of binary masks, (N, H, W) and (M, H, W) -> (N, M) float32.

    IoU = |A and B| / |A or B| counted in pixels; two empty masks have IoU 0.
    """
    a = masks1.flatten(1).float()
    b = masks2.flatten(1).float()
    inter = a @ b.T
    union = a.sum(1)[:, None] + b.sum(1)[None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=1), torch.zeros_like(inter))


@dataclass
class ImageErrors:
    """What the detections of one image got right and wrong (indices into its detections / ground truth).

    Detections are those with ``score >= score_threshold``, indices into the output sorted by score.
    """

    image_id: int
    num_gt: int
    num_dets: int
    matches: list[tuple[int, int, float, float]] = field(default_factory=list)  # (det, gt, box IoU, mask IoU)
    misses: list[int] = field(default_factory=list)  # gt with no detection of its class at box IoU >= 0.5
    duplicates: list[tuple[int, int]] = field(default_factory=list)  # (det, gt matched already)
    wrong_class: list[tuple[int, int]] = field(default_factory=list)  # (det, gt of another class)
    poor_boxes: list[tuple[int, int, float]] = field(default_factory=list)  # (det, gt, box IoU in [0.1, 0.5))
    poor_masks: list[tuple[int, int, float]] = field(default_factory=list)  # (det, gt, mask IoU) of a match
    background: list[int] = field(default_factory=list)  # det overlapping no gt at IoU >= 0.1

    def counts(self) -> dict[str, int]:
        return {k: len(getattr(self, k)) for k in ERROR_KINDS}


ERROR_KINDS = ("misses", "duplicates", "wrong_class", "poor_boxes", "poor_masks", "background")


def _binary(masks: torch.Tensor | None, threshold: float) -> torch.Tensor | None:
    if masks is None:
        return None
    if masks.ndim == 4:  # (N, 1, H, W) probabilities, as the model returns them
        masks = masks[:, 0]
    return masks > threshold if masks.is_floating_point() else masks.bool()


def image_errors(output: dict, target: dict, score_threshold: float = 0.5, iou_threshold: float = 0.5,
                 mask_iou_threshold: float = 0.5, mask_threshold: float = 0.5,
                 background_iou: float = 0.1) -> ImageErrors:
    """Sort the detections of one image into matches and errors, by box IoU as COCO matches them.

    Detections with ``score >= score_threshold`` are visited from the highest score down. Each one
    takes the unmatched ground-truth object of its own class with the highest box IoU, if that IoU is
    at least ``iou_threshold``: a *match*; a match whose mask IoU is below ``mask_iou_threshold`` is a
    *poor mask*. A detection that finds no such object is a *duplicate* when an object of its class
    that it overlaps enough is already matched, else *wrong class* when it overlaps an object of
    another class enough, else a *poor box* when it overlaps some object with an IoU of at least
    ``background_iou`` (0.1), else *background*. Objects left unmatched are *misses* (the
    categories follow the TIDE toolbox, Bolya et al. 2020, in a simpler form). Crowd objects
    (``iscrowd``) are ignored. ``output`` is a model output (masks (N, 1, H, W) probabilities or
    (N, H, W) bool), ``target`` a dataset target (boxes xyxy, labels, masks (M, H, W)).
    """
    keep = output["scores"] >= score_threshold
    order = torch.argsort(output["scores"][keep], descending=True, stable=True)
    idx = torch.nonzero(keep).flatten()[order]
    boxes, labels = output["boxes"][idx].float(), output["labels"][idx]
    masks = _binary(output.get("masks"), mask_threshold)
    masks = masks[idx] if masks is not None else None
    crowd = torch.as_tensor(target.get("iscrowd", torch.zeros(len(target["labels"]))), dtype=torch.bool)
    gt_keep = torch.nonzero(~crowd).flatten()
    gt_boxes = torch.as_tensor(target["boxes"]).float()[gt_keep]
    gt_labels = torch.as_tensor(target["labels"])[gt_keep]
    gt_masks = _binary(torch.as_tensor(target["masks"])[gt_keep], 0) if target.get("masks") is not None else None
    errors = ImageErrors(int(target["image_id"]), len(gt_keep), len(idx))
    ious = box_iou(boxes, gt_boxes) if len(idx) and len(gt_keep) else torch.zeros(len(idx), len(gt_keep))
    miou = (mask_iou(masks, gt_masks) if masks is not None and gt_masks is not None
            else torch.full((len(idx), len(gt_keep)), float("nan")))
    same = labels[:, None] == gt_labels[None, :]
    matched = torch.zeros(len(gt_keep), dtype=torch.bool)
    for d in range(len(idx)):
        ok = same[d] & ~matched & (ious[d] >= iou_threshold)
        if ok.any():
            g = int(torch.where(ok, ious[d], torch.tensor(-1.0)).argmax())
            matched[g] = True
            errors.matches.append((int(idx[d]), int(gt_keep[g]), float(ious[d, g]), float(miou[d, g])))
            if float(miou[d, g]) < mask_iou_threshold:
                errors.poor_masks.append((int(idx[d]), int(gt_keep[g]), float(miou[d, g])))
            continue
        near = ious[d] >= iou_threshold
        if (near & same[d]).any():
            g = int(torch.where(near & same[d], ious[d], torch.tensor(-1.0)).argmax())
            errors.duplicates.append((int(idx[d]), int(gt_keep[g])))
        elif near.any():
            g = int(torch.where(near, ious[d], torch.tensor(-1.0)).argmax())
            errors.wrong_class.append((int(idx[d]), int(gt_keep[g])))
        elif len(gt_keep) and float(ious[d].max()) >= background_iou:
            g = int(ious[d].argmax())
            errors.poor_boxes.append((int(idx[d]), int(gt_keep[g]), float(ious[d, g])))
        else:
            errors.background.append(int(idx[d]))
    errors.misses = [int(gt_keep[g]) for g in range(len(gt_keep)) if not matched[g]]
    return errors


def error_analysis(outputs: dict[int, dict], dataset, **kwargs) -> list[ImageErrors]:
    """``image_errors`` for every image of ``dataset`` (a ``CocoInstanceDataset``) that ``outputs`` has.

    ``outputs`` is ``{image_id: output}`` as ``predict`` (or ``evaluate``'s report) returns it; the ground
    truth is read from the dataset's annotation file, without transforms. ``kwargs`` go to ``image_errors``.
    """
    errors = []
    for image_id in sorted(outputs):
        info = dataset.coco.imgs[image_id]
        target = dataset.load_target(image_id, (info["height"], info["width"]))
        errors.append(image_errors(outputs[image_id], target, **kwargs))
    return errors


def error_summary(errors: list[ImageErrors]) -> dict[str, int]:
    """Totals over images: objects, detections, matches and every kind of error."""
    totals = {"objects": sum(e.num_gt for e in errors), "detections": sum(e.num_dets for e in errors),
              "matches": sum(len(e.matches) for e in errors)}
    totals.update({k: sum(len(getattr(e, k)) for e in errors) for k in ERROR_KINDS})
    return totals


def error_examples(errors: list[ImageErrors], kind: str, n: int = 4) -> list[tuple[int, tuple]]:
    """Up to ``n`` examples of one kind of error: ``(image_id, entry)`` in image order."""
    if kind not in ERROR_KINDS:
        raise ValueError(f"kind must be one of {ERROR_KINDS}, got {kind!r}")
    found = [(e.image_id, entry) for e in errors for entry in getattr(e, kind)]
    return found[:n]


def draw_error(image: torch.Tensor, output: dict, target: dict, kind: str, entry, class_names: list[str],
               mask_threshold: float = 0.5) -> tuple[torch.Tensor, str]:
    """A picture of one error: the ground-truth object in green, the detection in red. Returns ``(picture, title)``.

    ``entry`` is one item of the ``ImageErrors`` list ``kind`` (a gt index for misses, a detection index
    for background, else a tuple that starts ``(det, gt, ...)``).
    """
    from torchvision.utils import draw_bounding_boxes, draw_segmentation_masks

    from .draw import to_uint8

    canvas = to_uint8(image)
    det, gt = (None, entry) if kind == "misses" else (entry, None) if kind == "background" else entry[:2]
    title = {"misses": "miss", "duplicates": "duplicate", "wrong_class": "wrong class", "poor_boxes": "poor box",
             "poor_masks": "poor mask", "background": "background"}[kind]
    if gt is not None:
        mask = torch.as_tensor(target["masks"][gt]).bool()[None]
        canvas = draw_segmentation_masks(canvas, mask, alpha=0.35, colors="#00e000")
        canvas = draw_bounding_boxes(canvas, torch.as_tensor(target["boxes"][gt])[None].float(), width=2,
                                     labels=[f"gt {class_names[int(target['labels'][gt])]}"], colors="#00e000")
    if det is not None:
        mask = _binary(output["masks"][det:det + 1], mask_threshold)
        canvas = draw_segmentation_masks(canvas, mask, alpha=0.35, colors="#ff1010")
        label = f"{class_names[int(output['labels'][det])]} {float(output['scores'][det]):.2f}"
        canvas = draw_bounding_boxes(canvas, output["boxes"][det][None], labels=[label], colors="#ff1010", width=2)
    if kind in ("poor_masks", "poor_boxes"):
        title += f", {'mask' if kind == 'poor_masks' else 'box'} IoU {entry[2]:.2f}"
    return canvas, f"image {int(target['image_id'])}: {title}"
