"""Box head post-processing: from class scores and box deltas to final detections.

Taught in: 04_heads_mask_branch

``postprocess_detections`` equals ``torchvision.models.detection.roi_heads.RoIHeads.postprocess_detections``.
The box head gives, for every proposal, one score per class (background is class 0) and one box
regression per class ("class-specific regression"). Post-processing turns them into at most
``detections_per_img`` boxes per image:

1. softmax over classes; decode each class's deltas against the proposal,
2. clip the boxes to the image,
3. drop the background class; every (proposal, class) pair becomes a candidate,
4. drop candidates scoring <= ``score_thresh``, and boxes thinner than 0.01 pixel,
5. non-maximum suppression per class,
6. keep the ``detections_per_img`` best.

Boxes are ``(x1, y1, x2, y2)`` in image pixels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

# Decoding and batched NMS come from torchvision for now; the course's own versions are in
# course_lib.boxes (BoxCoder, nms), taught in 02_anchors_rpn.
from torchvision.models.detection._utils import BoxCoder
from torchvision.ops import batched_nms

__all__ = ["postprocess_detections", "clip_boxes_to_image", "remove_small_boxes"]


def clip_boxes_to_image(boxes: Tensor, size: tuple[int, int]) -> Tensor:
    """Clamp (..., 4) boxes to an image of ``size`` = (height, width); x to [0, W], y to [0, H]."""
    height, width = size
    x = boxes[..., 0::2].clamp(min=0, max=width)
    y = boxes[..., 1::2].clamp(min=0, max=height)
    return torch.stack((x, y), dim=-1).reshape(boxes.shape)


def remove_small_boxes(boxes: Tensor, min_size: float) -> Tensor:
    """Indices of the (N, 4) boxes whose width and height are both >= ``min_size``."""
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    return torch.where((w >= min_size) & (h >= min_size))[0]


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
