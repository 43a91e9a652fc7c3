"""Mask branch helpers: mask targets, the mask loss, and pasting masks into the image.

Taught in: 04_heads_mask_branch

| course_lib                 | torchvision.models.detection.roi_heads |
|----------------------------|----------------------------------------|
| ``project_masks_on_boxes`` | ``project_masks_on_boxes``             |
| ``maskrcnn_loss``          | ``maskrcnn_loss``                      |
| ``paste_masks_in_image``   | ``paste_masks_in_image``               |

Boxes are ``(x1, y1, x2, y2)`` in image pixels. The mask head predicts, for every positive
proposal, one ``M x M`` (28x28) logit map per class; only the map of the ground-truth class is
trained, and at inference the map of the predicted class is resized into its box.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from course_lib.roi_align import roi_align

__all__ = ["project_masks_on_boxes", "maskrcnn_loss", "paste_masks_in_image"]


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
