"""Error analysis: every ground-truth object and detection of an image sorted into one kind of error
(misses, duplicates, wrong class, poor boxes, poor masks, background). Taught in: 06_fine_tuning
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torchvision.ops import box_iou

from course_lib.ops.boxes import box_iou as course_box_iou


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


def greedy_match(ious: torch.Tensor, iou_threshold: float = 0.5, allowed: torch.Tensor | None = None) -> torch.Tensor:
    """Greedy matching of detections to ground-truth objects, as COCO evaluation does it.

    Args:
        ious: (N, M) IoU of each detection (rows, sorted best first) with each ground-truth object.
        iou_threshold: the least IoU of a match.
        allowed: optional (N, M) bool, the pairs that may match (``error_analysis``: the same class).

    Returns:
        (N,) int64: the column each detection takes, or -1. Each detection in turn takes the not-yet-taken
        allowed object it overlaps most (the first one on a tie), if that IoU is at least ``iou_threshold``;
        a later detection of a taken object gets -1.
    """
    matched = torch.full((ious.shape[0],), -1, dtype=torch.int64)
    if ious.numel() == 0:
        return matched
    taken = torch.zeros(ious.shape[1], dtype=torch.bool, device=ious.device)
    for i in range(ious.shape[0]):
        blocked = taken if allowed is None else taken | ~allowed[i]
        row = ious[i].masked_fill(blocked, -1.0)
        best = int(row.argmax())
        if row[best] >= iou_threshold:
            matched[i] = best
            taken[best] = True
    return matched


def match_detections(pred_boxes: torch.Tensor, gt_boxes: torch.Tensor, iou_threshold: float = 0.5) -> torch.Tensor:
    """For detections sorted best first, the index of the ground-truth box each one hits, or -1 (a miss).

    ``greedy_match`` on the boxes' IoU: each detection in turn takes the not-yet-taken ground-truth box it
    overlaps most, if that IoU is at least ``iou_threshold``; a second detection of a taken box is a miss.
    ``pred_boxes`` (N, 4) and ``gt_boxes`` (M, 4) are xyxy; the result is (N,) int64. The reference of
    notebook 00's exercise.
    """
    if len(pred_boxes) == 0 or len(gt_boxes) == 0:
        return torch.full((len(pred_boxes),), -1, dtype=torch.int64)
    return greedy_match(course_box_iou(pred_boxes, gt_boxes), iou_threshold)


def as_binary_masks(masks: torch.Tensor | None, threshold: float) -> torch.Tensor | None:
    """Masks as (N, H, W) bool: (N, 1, H, W) or (N, H, W) probabilities above ``threshold``, or bool / 0-1
    masks as they are; None stays None."""
    if masks is None:
        return None
    if masks.ndim == 4:  # (N, 1, H, W) probabilities, as the model returns them
        masks = masks[:, 0]
    return masks > threshold if masks.is_floating_point() else masks.bool()


def image_errors(output: dict, target: dict, score_threshold: float = 0.5, iou_threshold: float = 0.5,
                 mask_iou_threshold: float = 0.5, mask_threshold: float = 0.5,
                 background_iou: float = 0.1, mask_iou_fn=None) -> ImageErrors:
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
    (N, H, W) bool), ``target`` a dataset target (boxes xyxy, labels, masks (M, H, W)). ``mask_iou_fn``
    replaces ``mask_iou`` (notebook 06 passes the learner's own).
    """
    keep = output["scores"] >= score_threshold
    order = torch.argsort(output["scores"][keep], descending=True, stable=True)
    idx = torch.nonzero(keep).flatten()[order]
    boxes, labels = output["boxes"][idx].float(), output["labels"][idx]
    masks = as_binary_masks(output.get("masks"), mask_threshold)
    masks = masks[idx] if masks is not None else None
    crowd = torch.as_tensor(target.get("iscrowd", torch.zeros(len(target["labels"]))), dtype=torch.bool)
    gt_keep = torch.nonzero(~crowd).flatten()
    gt_boxes = torch.as_tensor(target["boxes"]).float()[gt_keep]
    gt_labels = torch.as_tensor(target["labels"])[gt_keep]
    gt_masks = (as_binary_masks(torch.as_tensor(target["masks"])[gt_keep], 0) if target.get("masks") is not None
                else None)
    errors = ImageErrors(int(target["image_id"]), len(gt_keep), len(idx))
    ious = box_iou(boxes, gt_boxes) if len(idx) and len(gt_keep) else torch.zeros(len(idx), len(gt_keep))
    miou = ((mask_iou_fn or mask_iou)(masks, gt_masks) if masks is not None and gt_masks is not None
            else torch.full((len(idx), len(gt_keep)), float("nan")))
    same = labels[:, None] == gt_labels[None, :]
    takes = greedy_match(ious, iou_threshold, allowed=same)  # each detection's object of its class, or -1
    matched = torch.zeros(len(gt_keep), dtype=torch.bool)
    matched[takes[takes >= 0]] = True
    for d in range(len(idx)):
        if takes[d] >= 0:
            g = int(takes[d])
            errors.matches.append((int(idx[d]), int(gt_keep[g]), float(ious[d, g]), float(miou[d, g])))
            if float(miou[d, g]) < mask_iou_threshold:
                errors.poor_masks.append((int(idx[d]), int(gt_keep[g]), float(miou[d, g])))
            continue
        near = ious[d] >= iou_threshold  # not matched: an object of its class near it was taken before
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
