"""The box and mask heads' pieces from scratch (torchvision's ``detection/roi_heads.py``).
Taught in: 04_heads_mask_branch

| course_lib                 | torchvision.models.detection.roi_heads        |
|----------------------------|-----------------------------------------------|
| ``postprocess_detections`` | ``RoIHeads.postprocess_detections``           |
| ``project_masks_on_boxes`` | ``project_masks_on_boxes``                    |
| ``maskrcnn_loss``          | ``maskrcnn_loss``                             |
| ``paste_masks_in_image``   | ``paste_masks_in_image``                      |
| ``paste_mask_in_image``    | ``paste_mask_in_image`` (one mask)            |
| ``expand_boxes``           | ``expand_boxes``                              |

Boxes are ``(x1, y1, x2, y2)`` in image pixels. The box head gives, for every proposal, one score per class
(background is class 0) and one box regression per class; post-processing turns them into detections (decode,
clip, drop background and low scores, remove tiny boxes, NMS per class, keep the best). The mask head predicts
one ``M x M`` logit map per class for every positive proposal; only the ground-truth class's map is trained,
and at inference the predicted class's map is pasted into its box.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

# Decoding and batched NMS come from torchvision for now; the course's own versions are in
# course_lib.boxes (BoxCoder, nms), taught in 02_anchors_rpn.
from torchvision.models.detection._utils import BoxCoder
from torchvision.ops import batched_nms

from course_lib.ops.boxes import clip_boxes_to_image, remove_small_boxes
from course_lib.ops.roi_align import roi_align


def postprocess_detections(
    class_logits: Tensor,
    box_regression: Tensor,
    proposals: list[Tensor],
    image_shapes: list[tuple[int, int]],
    box_coder_weights: tuple[float, float, float, float] = (10.0, 10.0, 5.0, 5.0),
    score_thresh: float = 0.05,
    nms_thresh: float = 0.5,
    detections_per_img: int = 100,
) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
    """Final detections of the box head, per image.

    Args:
        class_logits: (P, num_classes) over the proposals of all images (class 0 = background).
        box_regression: (P, num_classes * 4) deltas ``(dx, dy, dw, dh)`` per class.
        proposals: per image, (Pi, 4) proposals ``(x1, y1, x2, y2)``; sum Pi = P.
        image_shapes: per image, (height, width).
        box_coder_weights: the (wx, wy, ww, wh) the deltas were encoded with.
        score_thresh, nms_thresh, detections_per_img: as in torchvision's ``RoIHeads``.

    Returns:
        boxes (Di, 4), scores (Di,), labels (Di,) int64: three lists with one tensor per image,
        sorted by decreasing score.
    """
    num_classes = class_logits.shape[-1]
    boxes_per_image = [len(p) for p in proposals]
    # (P, num_classes, 4): one decoded box per class for every proposal.
    pred_boxes = BoxCoder(box_coder_weights).decode(box_regression, proposals)
    pred_scores = F.softmax(class_logits, -1)

    all_boxes, all_scores, all_labels = [], [], []
    for boxes, scores, image_shape in zip(
        pred_boxes.split(boxes_per_image), pred_scores.split(boxes_per_image), image_shapes
    ):
        boxes = clip_boxes_to_image(boxes, image_shape)
        labels = torch.arange(num_classes, device=boxes.device).expand_as(scores)

        # Drop the background class, then treat each (proposal, class) pair as a candidate.
        boxes = boxes[:, 1:].reshape(-1, 4)
        scores = scores[:, 1:].reshape(-1)
        labels = labels[:, 1:].reshape(-1)

        keep = torch.where(scores > score_thresh)[0]
        boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
        keep = remove_small_boxes(boxes, min_size=1e-2)  # degenerate boxes after clipping
        boxes, scores, labels = boxes[keep], scores[keep], labels[keep]

        # NMS within each class only (a cat box never suppresses a dog box), best first.
        keep = batched_nms(boxes, scores, labels, nms_thresh)[:detections_per_img]
        all_boxes.append(boxes[keep])
        all_scores.append(scores[keep])
        all_labels.append(labels[keep])
    return all_boxes, all_scores, all_labels


def project_masks_on_boxes(gt_masks: Tensor, boxes: Tensor, matched_idxs: Tensor, M: int) -> Tensor:
    """Mask targets: crop each proposal's matched ground-truth mask to the proposal, resized to M x M.

    Args:
        gt_masks: (G, H, W) ground-truth masks of one image (0/1, any dtype).
        boxes: (P, 4) proposals ``(x1, y1, x2, y2)`` in image pixels.
        matched_idxs: (P,) index of the ground truth matched to each proposal.
        M: output size (the mask head's resolution, 28 in Mask R-CNN).

    Returns:
        (P, M, M) float targets in [0, 1] (fractional on the mask's edges).

    This is RoIAlign again: the masks are a G-"image" batch with one channel, and the matched
    index is the batch index of each box (torchvision's settings: aligned=False, adaptive
    sampling).
    """
    rois = torch.cat([matched_idxs.to(boxes)[:, None], boxes], dim=1)  # (P, 5)
    masks = gt_masks[:, None].to(rois)  # (G, 1, H, W)
    return roi_align(masks, rois, (M, M), spatial_scale=1.0)[:, 0]


def maskrcnn_loss(
    mask_logits: Tensor,
    proposals: list[Tensor],
    gt_masks: list[Tensor],
    gt_labels: list[Tensor],
    mask_matched_idxs: list[Tensor],
) -> Tensor:
    """Binary cross-entropy between the ground-truth class's mask logits and the mask targets.

    Args:
        mask_logits: (P, num_classes, M, M) over the positive proposals of all images.
        proposals: per image, (Pi, 4) positive proposals ``(x1, y1, x2, y2)``.
        gt_masks: per image, (Gi, H, W) ground-truth masks.
        gt_labels: per image, (Gi,) class labels.
        mask_matched_idxs: per image, (Pi,) matched ground-truth index of each proposal.

    Returns:
        Scalar loss: mean over P * M * M pixels. With no proposals, ``mask_logits.sum() * 0``
        (a finite 0 that keeps the graph connected), as torchvision returns.
    """
    M = mask_logits.shape[-1]
    labels = torch.cat([lbl[idx] for lbl, idx in zip(gt_labels, mask_matched_idxs)])
    targets = torch.cat(
        [project_masks_on_boxes(m, p, i, M) for m, p, i in zip(gt_masks, proposals, mask_matched_idxs)]
    )
    if targets.numel() == 0:  # the mean of nothing would be NaN
        return mask_logits.sum() * 0

    # Only the ground-truth class's map is trained: the classes don't compete for pixels.
    logits = mask_logits[torch.arange(labels.shape[0], device=labels.device), labels]  # (P, M, M)
    return F.binary_cross_entropy_with_logits(logits, targets)


def paste_masks_in_image(masks: Tensor, boxes: Tensor, img_shape: tuple[int, int], padding: int = 1) -> Tensor:
    """Resize each M x M mask into its box and place it in an empty image.

    Args:
        masks: (N, 1, M, M) mask probabilities.
        boxes: (N, 4) detected boxes ``(x1, y1, x2, y2)`` in image pixels.
        img_shape: (height, width) of the image.
        padding: cells of zeros added around each mask before resizing (see below).

    Returns:
        (N, 1, height, width) masks in image coordinates (0 outside the box).

    Why the padding: the mask's border cells would otherwise be stretched to the box edge. A
    ring of zeros (and a box grown by the same factor) lets the resized mask fade out at the
    edge. Box corners are truncated to whole pixels, as torchvision does.
    """
    M = masks.shape[-1]
    scale = float(M + 2 * padding) / M
    masks = F.pad(masks, (padding,) * 4)
    boxes = _expand_boxes(boxes, scale).to(torch.int64)
    im_h, im_w = img_shape

    out = masks.new_zeros(masks.shape[0], 1, im_h, im_w)
    for i, (x1, y1, x2, y2) in enumerate(boxes.tolist()):
        w, h = max(x2 - x1 + 1, 1), max(y2 - y1 + 1, 1)  # the box's pixels, both ends included
        resized = F.interpolate(masks[i : i + 1], size=(h, w), mode="bilinear", align_corners=False)[0, 0]
        # The part of the box inside the image.
        ix0, ix1 = max(x1, 0), min(x2 + 1, im_w)
        iy0, iy1 = max(y1, 0), min(y2 + 1, im_h)
        if ix1 > ix0 and iy1 > iy0:
            out[i, 0, iy0:iy1, ix0:ix1] = resized[iy0 - y1 : iy1 - y1, ix0 - x1 : ix1 - x1]
    return out


def _expand_boxes(boxes: Tensor, scale: float) -> Tensor:
    """Boxes grown about their centres by ``scale`` (torchvision's ``expand_boxes``)."""
    w_half = (boxes[:, 2] - boxes[:, 0]) * 0.5 * scale
    h_half = (boxes[:, 3] - boxes[:, 1]) * 0.5 * scale
    x_c = (boxes[:, 2] + boxes[:, 0]) * 0.5
    y_c = (boxes[:, 3] + boxes[:, 1]) * 0.5
    return torch.stack([x_c - w_half, y_c - h_half, x_c + w_half, y_c + h_half], dim=1)


# Public name: boxes grown about their centres (torchvision's ``expand_boxes``).
expand_boxes = _expand_boxes


def paste_mask_in_image(mask: Tensor, box: Tensor, img_shape: tuple[int, int], padding: int = 1) -> Tensor:
    """``paste_masks_in_image`` for one mask: an (M, M) mask and a (4,) box -> an (H, W) image mask."""
    return paste_masks_in_image(mask[None, None], box.reshape(1, 4), img_shape, padding)[0, 0]
