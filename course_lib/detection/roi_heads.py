"""The box and mask heads' pieces from scratch (torchvision's ``detection/roi_heads.py``).
Taught in: 04_heads_mask_branch

| course_lib                 | torchvision.models.detection.roi_heads        |
|----------------------------|-----------------------------------------------|
| ``RoIHeads``               | ``RoIHeads`` (the module: sampling, heads, losses, post-processing) |
| ``assign_targets_to_proposals`` | ``RoIHeads.assign_targets_to_proposals`` |
| ``select_training_samples`` | ``RoIHeads.select_training_samples``        |
| ``fastrcnn_loss``          | ``fastrcnn_loss``                             |
| ``postprocess_detections`` | ``RoIHeads.postprocess_detections``           |
| ``detection_candidates``   | its first steps, before NMS                   |
| ``maskrcnn_inference``     | ``maskrcnn_inference``                        |
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
from torch import Tensor, nn

from course_lib.detection._utils import BalancedPositiveNegativeSampler, Matcher, decode_boxes, encode_boxes
from course_lib.ops.boxes import batched_nms, box_iou, clip_boxes_to_image, nms, remove_small_boxes
from course_lib.ops.roi_align import roi_align


def fastrcnn_loss(class_logits: Tensor, box_regression: Tensor, labels: list[Tensor],
                  regression_targets: list[Tensor]) -> tuple[Tensor, Tensor]:
    """The box head's two losses (torchvision's ``fastrcnn_loss``).

    Args:
        class_logits: (R, num_classes) over the sampled RoIs of all images.
        box_regression: (R, num_classes * 4) deltas, one set per class.
        labels: per image, (Ri,) int64 class of each sampled RoI (0 = background).
        regression_targets: per image, (Ri, 4) encoded matched gt boxes (weights 10, 10, 5, 5).

    Returns:
        ``(classification_loss, box_loss)``: cross-entropy averaged over the R RoIs; smooth L1 (beta 1/9)
        of the *ground-truth class's* deltas on the positive RoIs only, summed and divided by R.
    """
    labels = torch.cat(labels, dim=0)
    regression_targets = torch.cat(regression_targets, dim=0)
    classification_loss = F.cross_entropy(class_logits, labels)
    positive = torch.where(labels > 0)[0]
    # Only the true class's box is trained: the other classes' regressors say nothing about this object.
    box_regression = box_regression.reshape(class_logits.shape[0], -1, 4)
    box_loss = F.smooth_l1_loss(box_regression[positive, labels[positive]], regression_targets[positive],
                                beta=1 / 9, reduction="sum") / labels.numel()
    return classification_loss, box_loss


def assign_targets_to_proposals(proposals: Tensor, gt_boxes: Tensor, gt_labels: Tensor, matcher: Matcher | None = None,
                                box_iou=box_iou) -> tuple[Tensor, Tensor]:
    """Each proposal of one image gets its ground truth: -> matched index (P,) int64 and label (P,) int64.

    ``proposals`` (P, 4), ``gt_boxes`` (G, 4), ``gt_labels`` (G,). Label: the class of the gt box with the
    highest IoU when that IoU >= the matcher's high threshold, 0 (background) below its low threshold, -1
    (ignored by the sampler) between; ``matcher`` defaults to torchvision's ``Matcher(0.5, 0.5,
    allow_low_quality_matches=False)``, so nothing is ignored. Without gt boxes every proposal is background
    and its matched index a placeholder 0. As torchvision's ``assign_targets_to_proposals``.
    """
    matcher = matcher or Matcher(0.5, 0.5, allow_low_quality_matches=False)
    if gt_boxes.numel() == 0:
        zeros = torch.zeros((proposals.shape[0],), dtype=torch.int64, device=proposals.device)
        return zeros, zeros.clone()
    matched_idxs = matcher(box_iou(gt_boxes, proposals))
    clamped = matched_idxs.clamp(min=0)
    labels = gt_labels[clamped].to(dtype=torch.int64)
    labels[matched_idxs == Matcher.BELOW_LOW_THRESHOLD] = 0
    labels[matched_idxs == Matcher.BETWEEN_THRESHOLDS] = -1
    return clamped, labels


def select_training_samples(proposals: list[Tensor], targets: list[dict[str, Tensor]], matcher: Matcher,
                            fg_bg_sampler: BalancedPositiveNegativeSampler,
                            box_coder_weights=(10.0, 10.0, 5.0, 5.0), box_iou=box_iou, encode_boxes=encode_boxes):
    """The RoIs the box head trains on, per image (torchvision's ``RoIHeads.select_training_samples``).

    1. The ground-truth boxes are appended to the proposals: early in training the RPN proposes little of
       use, and the heads still see perfect positives.
    2. Each proposal is matched (``assign_targets_to_proposals``).
    3. ``fg_bg_sampler`` keeps ``batch_size_per_image`` of them, at most ``positive_fraction`` positive.
    4. The regression targets: each sampled proposal's matched gt box, encoded relative to it.

    Returns four lists (one tensor per image): sampled proposals (Ri, 4), their matched gt index (Ri,),
    labels (Ri,) int64 and regression targets (Ri, 4).
    """
    dtype, device = proposals[0].dtype, proposals[0].device
    gt_boxes = [t["boxes"].to(dtype) for t in targets]
    proposals = [torch.cat((p, gt)) for p, gt in zip(proposals, gt_boxes, strict=True)]
    matched = [assign_targets_to_proposals(p, gt, t["labels"], matcher, box_iou)
               for p, gt, t in zip(proposals, gt_boxes, targets, strict=True)]
    matched_idxs, labels = [m for m, _ in matched], [lbl for _, lbl in matched]
    pos, neg = fg_bg_sampler(labels)
    sampled_proposals, sampled_idxs, sampled_labels, regression_targets = [], [], [], []
    for i, (p_mask, n_mask) in enumerate(zip(pos, neg, strict=True)):
        keep = torch.where(p_mask | n_mask)[0]
        gt = gt_boxes[i] if gt_boxes[i].numel() else torch.zeros((1, 4), dtype=dtype, device=device)
        sampled_proposals.append(proposals[i][keep])
        sampled_idxs.append(matched_idxs[i][keep])
        sampled_labels.append(labels[i][keep])
        regression_targets.append(encode_boxes(gt[sampled_idxs[-1]], sampled_proposals[-1], box_coder_weights))
    return sampled_proposals, sampled_idxs, sampled_labels, regression_targets


def detection_candidates(
    class_logits: Tensor,
    box_regression: Tensor,
    proposals: list[Tensor],
    image_shapes: list[tuple[int, int]],
    box_coder_weights: tuple[float, float, float, float] = (10.0, 10.0, 5.0, 5.0),
    score_thresh: float = 0.05,
    decode_boxes=decode_boxes,
) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
    """The box head's candidates per image: the first steps of ``postprocess_detections``, before NMS.

    Decode one box per class for every proposal, softmax the class scores, clip the boxes to the image,
    drop the background class, then keep the (proposal, class) pairs that score above ``score_thresh`` and
    whose clipped box is not degenerate (``remove_small_boxes`` with ``min_size=1e-2``).

    Args: as ``postprocess_detections``'s.

    Returns:
        boxes (Ci, 4), scores (Ci,), labels (Ci,) int64: three lists with one tensor per image, in the order
        proposal by proposal, class by class (not sorted by score).
    """
    num_classes = class_logits.shape[-1]
    boxes_per_image = [len(p) for p in proposals]
    # (P, num_classes, 4): one decoded box per class for every proposal (each proposal repeated per class).
    concat = torch.cat(proposals).to(box_regression.dtype)
    pred_boxes = decode_boxes(box_regression.reshape(-1, 4), concat.repeat_interleave(num_classes, dim=0),
                              box_coder_weights).reshape(-1, num_classes, 4)
    pred_scores = F.softmax(class_logits, -1)

    all_boxes, all_scores, all_labels = [], [], []
    for boxes, scores, image_shape in zip(
        pred_boxes.split(boxes_per_image), pred_scores.split(boxes_per_image), image_shapes, strict=True
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
        all_boxes.append(boxes[keep])
        all_scores.append(scores[keep])
        all_labels.append(labels[keep])
    return all_boxes, all_scores, all_labels


def postprocess_detections(
    class_logits: Tensor,
    box_regression: Tensor,
    proposals: list[Tensor],
    image_shapes: list[tuple[int, int]],
    box_coder_weights: tuple[float, float, float, float] = (10.0, 10.0, 5.0, 5.0),
    score_thresh: float = 0.05,
    nms_thresh: float = 0.5,
    detections_per_img: int = 100,
    decode_boxes=decode_boxes,
    nms=nms,
) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
    """Final detections of the box head, per image: ``detection_candidates``, then NMS per class and top-k.

    Args:
        class_logits: (P, num_classes) over the proposals of all images (class 0 = background).
        box_regression: (P, num_classes * 4) deltas ``(dx, dy, dw, dh)`` per class.
        proposals: per image, (Pi, 4) proposals ``(x1, y1, x2, y2)``; sum Pi = P.
        image_shapes: per image, (height, width).
        box_coder_weights: the (wx, wy, ww, wh) the deltas were encoded with.
        score_thresh, nms_thresh, detections_per_img: as in torchvision's ``RoIHeads``.
        decode_boxes, nms: the functions to use (a learner's own can be passed).

    Returns:
        boxes (Di, 4), scores (Di,), labels (Di,) int64: three lists with one tensor per image,
        sorted by decreasing score.
    """
    candidates = detection_candidates(class_logits, box_regression, proposals, image_shapes,
                                      box_coder_weights=box_coder_weights, score_thresh=score_thresh,
                                      decode_boxes=decode_boxes)
    all_boxes, all_scores, all_labels = [], [], []
    for boxes, scores, labels in zip(*candidates, strict=True):
        # NMS within each class only (a cat box never suppresses a dog box), best first.
        keep = batched_nms(boxes, scores, labels, nms_thresh, nms=nms)[:detections_per_img]
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
    labels = torch.cat([lbl[idx] for lbl, idx in zip(gt_labels, mask_matched_idxs, strict=True)])
    targets = torch.cat(
        [project_masks_on_boxes(m, p, i, M) for m, p, i in zip(gt_masks, proposals, mask_matched_idxs, strict=True)]
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


def maskrcnn_inference(mask_logits: Tensor, labels: list[Tensor]) -> list[Tensor]:
    """Mask probabilities of the predicted class: (D, num_classes, M, M) logits -> per image (Di, 1, M, M)."""
    mask_prob = mask_logits.sigmoid()
    labels_all = torch.cat(labels)
    mask_prob = mask_prob[torch.arange(mask_prob.shape[0], device=labels_all.device), labels_all][:, None]
    return list(mask_prob.split([len(lbl) for lbl in labels], dim=0))


class RoIHeads(nn.Module):
    """The box and mask branches as one module (torchvision's ``RoIHeads``, without keypoints).

    Same arguments and attribute names as torchvision's, so a torchvision state dict loads unchanged. In
    training: ``select_training_samples``, the box head on the sampled RoIs, ``fastrcnn_loss``, the mask
    head on the positive ones, ``maskrcnn_loss``. In eval: the box head on all proposals,
    ``postprocess_detections``, then the mask head on the detections (not in parallel: at inference the
    masks are computed only for the boxes that survived NMS), ``maskrcnn_inference``.

    Pluggable functions (attributes): ``box_iou``, ``nms``, ``encode_boxes``, ``decode_boxes``,
    ``fastrcnn_loss``, ``maskrcnn_loss``.
    """

    def __init__(self, box_roi_pool, box_head, box_predictor, fg_iou_thresh, bg_iou_thresh, batch_size_per_image,
                 positive_fraction, bbox_reg_weights, score_thresh, nms_thresh, detections_per_img,
                 mask_roi_pool=None, mask_head=None, mask_predictor=None):
        super().__init__()
        self.proposal_matcher = Matcher(fg_iou_thresh, bg_iou_thresh, allow_low_quality_matches=False)
        self.fg_bg_sampler = BalancedPositiveNegativeSampler(batch_size_per_image, positive_fraction)
        self.bbox_reg_weights = tuple(bbox_reg_weights or (10.0, 10.0, 5.0, 5.0))
        self.box_roi_pool, self.box_head, self.box_predictor = box_roi_pool, box_head, box_predictor
        self.score_thresh, self.nms_thresh, self.detections_per_img = score_thresh, nms_thresh, detections_per_img
        self.mask_roi_pool, self.mask_head, self.mask_predictor = mask_roi_pool, mask_head, mask_predictor
        self.box_iou, self.nms = box_iou, nms
        self.encode_boxes, self.decode_boxes = encode_boxes, decode_boxes
        self.fastrcnn_loss, self.maskrcnn_loss = fastrcnn_loss, maskrcnn_loss
        # Eval stages called through attributes too, so they can be wrapped (mask_rcnn.wrapped_stage_functions).
        self.postprocess_detections, self.maskrcnn_inference = postprocess_detections, maskrcnn_inference

    def has_mask(self) -> bool:
        return self.mask_roi_pool is not None and self.mask_head is not None and self.mask_predictor is not None

    def check_targets(self, targets) -> None:
        if targets is None:
            raise ValueError("targets should not be None")
        for i, t in enumerate(targets):
            for key in ("boxes", "labels") + (("masks",) if self.has_mask() else ()):
                if key not in t:
                    raise ValueError(f"target {i} has no {key!r} key: every element of targets needs it")
            if t["boxes"].dtype not in (torch.float, torch.double, torch.half):
                raise TypeError(f"target boxes must of float type, instead got {t['boxes'].dtype}")
            if t["labels"].dtype != torch.int64:
                raise TypeError(f"target labels must of int64 type, instead got {t['labels'].dtype}")

    def forward(self, features: dict[str, Tensor], proposals: list[Tensor], image_shapes: list[tuple[int, int]],
                targets: list[dict[str, Tensor]] | None = None):
        if self.training:
            self.check_targets(targets)
            proposals, matched_idxs, labels, regression_targets = select_training_samples(
                proposals, targets, self.proposal_matcher, self.fg_bg_sampler, self.bbox_reg_weights,
                self.box_iou, self.encode_boxes)
        box_features = self.box_head(self.box_roi_pool(features, proposals, image_shapes))
        class_logits, box_regression = self.box_predictor(box_features)

        result, losses = [], {}
        if self.training:
            loss_classifier, loss_box_reg = self.fastrcnn_loss(class_logits, box_regression, labels,
                                                               regression_targets)
            losses = {"loss_classifier": loss_classifier, "loss_box_reg": loss_box_reg}
        else:
            boxes, scores, labels = self.postprocess_detections(
                class_logits, box_regression, proposals, image_shapes, self.bbox_reg_weights, self.score_thresh,
                self.nms_thresh, self.detections_per_img, self.decode_boxes, self.nms)
            result = [{"boxes": b, "labels": lbl, "scores": s} for b, s, lbl in zip(boxes, scores, labels, strict=True)]

        if self.has_mask():
            if self.training:
                # Masks are learnt on the positive sampled proposals only (their matched gt's mask).
                positive = [torch.where(lbl > 0)[0] for lbl in labels]
                mask_proposals = [p[pos] for p, pos in zip(proposals, positive, strict=True)]
                pos_matched_idxs = [m[pos] for m, pos in zip(matched_idxs, positive, strict=True)]
            else:
                mask_proposals = [r["boxes"] for r in result]
            mask_logits = self.mask_predictor(self.mask_head(self.mask_roi_pool(features, mask_proposals,
                                                                                image_shapes)))
            if self.training:
                losses["loss_mask"] = self.maskrcnn_loss(mask_logits, mask_proposals, [t["masks"] for t in targets],
                                                         [t["labels"] for t in targets], pos_matched_idxs)
            else:
                for mask_prob, r in zip(self.maskrcnn_inference(mask_logits, [r["labels"] for r in result]), result,
                                        strict=True):
                    r["masks"] = mask_prob
        return result, losses
