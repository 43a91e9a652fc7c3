"""The RPN's and the heads' training helpers from scratch (torchvision's ``detection/_utils.py``).
Taught in: 02_anchors_rpn

``BoxCoder`` turns a box into offsets relative to a reference box and back; ``Matcher`` gives each anchor or
proposal its ground-truth box, or marks it background or ignored; ``BalancedPositiveNegativeSampler`` picks a
fixed number of them with a positive fraction. Each agrees with its torchvision namesake.
"""

import math

import torch
from torch import Tensor


class BoxCoder:
    """Turns a box into offsets relative to a reference box and back (Faster R-CNN's coding).

    With the reference box's centre (cx, cy) and size (w, h), a box (gx, gy, gw, gh) is coded as
    ``(wx*(gx-cx)/w, wy*(gy-cy)/h, ww*log(gw/w), wh*log(gh/h))``: shifts in units of the reference
    size and log-scales, so that one regressor fits boxes of every size.
    """

    def __init__(self, weights: tuple[float, float, float, float],
                 bbox_xform_clip: float = math.log(1000.0 / 16)):
        self.weights = weights
        # Largest log-scale decode accepts: exp() of a wild prediction must not overflow.
        self.bbox_xform_clip = bbox_xform_clip

    def encode(self, reference_boxes: list[Tensor], proposals: list[Tensor]) -> tuple[Tensor, ...]:
        """Per image: code ``reference_boxes[i]`` (Ni, 4) relative to ``proposals[i]`` (Ni, 4) -> one (Ni, 4) each.

        torchvision's ``encode``: all images are coded at once (``encode_single`` on the concatenation) and
        split back, so the result is a tuple with one tensor per image. An empty list raises, as torchvision's.
        """
        boxes_per_image = [len(b) for b in reference_boxes]
        targets = self.encode_single(torch.cat(reference_boxes, dim=0), torch.cat(proposals, dim=0))
        return targets.split(boxes_per_image, 0)

    def encode_single(self, reference_boxes: Tensor, proposals: Tensor) -> Tensor:
        """Code ``reference_boxes`` (N, 4), the targets, relative to ``proposals`` (N, 4): -> (N, 4).

        torchvision's ``encode_single``; ``proposals`` (anchors in the RPN) are the reference frame.
        """
        wx, wy, ww, wh = self.weights
        pw = proposals[:, 2:3] - proposals[:, 0:1]
        ph = proposals[:, 3:4] - proposals[:, 1:2]
        px = proposals[:, 0:1] + 0.5 * pw
        py = proposals[:, 1:2] + 0.5 * ph
        gw = reference_boxes[:, 2:3] - reference_boxes[:, 0:1]
        gh = reference_boxes[:, 3:4] - reference_boxes[:, 1:2]
        gx = reference_boxes[:, 0:1] + 0.5 * gw
        gy = reference_boxes[:, 1:2] + 0.5 * gh
        dx = wx * (gx - px) / pw
        dy = wy * (gy - py) / ph
        dw = ww * torch.log(gw / pw)
        dh = wh * torch.log(gh / ph)
        return torch.cat((dx, dy, dw, dh), dim=1)

    def decode(self, rel_codes: Tensor, boxes: list[Tensor]) -> Tensor:
        """Apply offsets ``rel_codes`` (N, 4*K) to the boxes of all images, ``boxes`` a list of (Ni, 4): -> (N, K, 4).

        torchvision's ``decode``: the list is concatenated (N = sum of the Ni) and decoded at once. With no
        box at all (N = 0) the result keeps ``decode_single``'s shape (0, 4*K), as torchvision's does.
        """
        if not isinstance(boxes, (list, tuple)):
            raise TypeError("This function expects boxes of type list or tuple.")
        if not isinstance(rel_codes, Tensor):
            raise TypeError("This function expects rel_codes of type torch.Tensor.")
        box_sum = sum(b.size(0) for b in boxes)
        if box_sum > 0:
            rel_codes = rel_codes.reshape(box_sum, -1)
        pred_boxes = self.decode_single(rel_codes, torch.cat(boxes, dim=0))
        if box_sum > 0:
            pred_boxes = pred_boxes.reshape(box_sum, -1, 4)
        return pred_boxes

    def decode_single(self, rel_codes: Tensor, boxes: Tensor) -> Tensor:
        """Apply offsets ``rel_codes`` (N, 4*K) to ``boxes`` (N, 4): -> (N, 4*K) boxes.

        torchvision's ``decode_single``; K > 1 when each box has one set of offsets per class.
        """
        boxes = boxes.to(rel_codes.dtype)
        widths = boxes[:, 2] - boxes[:, 0]
        heights = boxes[:, 3] - boxes[:, 1]
        ctr_x = boxes[:, 0] + 0.5 * widths
        ctr_y = boxes[:, 1] + 0.5 * heights

        wx, wy, ww, wh = self.weights
        dx = rel_codes[:, 0::4] / wx
        dy = rel_codes[:, 1::4] / wy
        dw = (rel_codes[:, 2::4] / ww).clamp(max=self.bbox_xform_clip)
        dh = (rel_codes[:, 3::4] / wh).clamp(max=self.bbox_xform_clip)

        pred_ctr_x = dx * widths[:, None] + ctr_x[:, None]
        pred_ctr_y = dy * heights[:, None] + ctr_y[:, None]
        half_w = 0.5 * (torch.exp(dw) * widths[:, None])
        half_h = 0.5 * (torch.exp(dh) * heights[:, None])
        pred = torch.stack((pred_ctr_x - half_w, pred_ctr_y - half_h,
                            pred_ctr_x + half_w, pred_ctr_y + half_h), dim=2)
        return pred.flatten(1)


class Matcher:
    """Match each prediction (anchor) to its best ground-truth box, or to nothing.

    Called with an IoU matrix ``(M gt, N anchors)``, returns ``(N,)`` int64: the index of the
    matched gt box when the best IoU >= ``high_threshold``; ``-1`` (BELOW_LOW_THRESHOLD) when it is
    < ``low_threshold``; ``-2`` (BETWEEN_THRESHOLDS) otherwise. With
    ``allow_low_quality_matches``, every gt box also gets the anchor(s) that overlap it most, even
    below the threshold, so that no object goes without a positive anchor.
    """

    BELOW_LOW_THRESHOLD = -1
    BETWEEN_THRESHOLDS = -2

    def __init__(self, high_threshold: float = 0.7, low_threshold: float = 0.3,
                 allow_low_quality_matches: bool = True):
        if low_threshold > high_threshold:
            raise ValueError("low_threshold should be <= high_threshold")
        self.high_threshold = high_threshold
        self.low_threshold = low_threshold
        self.allow_low_quality_matches = allow_low_quality_matches

    def __call__(self, match_quality_matrix: Tensor) -> Tensor:
        if match_quality_matrix.numel() == 0:  # as torchvision: training needs both
            if match_quality_matrix.shape[0] == 0:
                raise ValueError("No ground-truth boxes available for one of the images during training")
            raise ValueError("No proposal boxes available for one of the images during training")
        matched_vals, matches = match_quality_matrix.max(dim=0)  # best gt for each anchor
        all_matches = matches.clone()
        below = matched_vals < self.low_threshold
        between = (matched_vals >= self.low_threshold) & (matched_vals < self.high_threshold)
        matches[below] = self.BELOW_LOW_THRESHOLD
        matches[between] = self.BETWEEN_THRESHOLDS
        if self.allow_low_quality_matches:
            # For each gt, the anchors with its highest IoU (ties included) get their best gt back.
            highest_per_gt = match_quality_matrix.max(dim=1).values
            best_anchors = torch.where(match_quality_matrix == highest_per_gt[:, None])[1]
            matches[best_anchors] = all_matches[best_anchors]
        return matches


class BalancedPositiveNegativeSampler:
    """Pick ``batch_size_per_image`` anchors per image, at most ``positive_fraction`` positives.

    Called with a list of per-image label tensors (>= 1 positive, 0 negative, -1 ignored),
    returns two lists of uint8 masks (the sampled positives, the sampled negatives). Random picks
    use ``torch.randperm`` in torchvision's order: same seed, same samples.
    """

    def __init__(self, batch_size_per_image: int, positive_fraction: float):
        self.batch_size_per_image = batch_size_per_image
        self.positive_fraction = positive_fraction

    def __call__(self, matched_idxs: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        pos_masks, neg_masks = [], []
        for labels in matched_idxs:
            positive = torch.where(labels >= 1)[0]
            negative = torch.where(labels == 0)[0]
            # Too few positives: fill the batch with negatives instead.
            num_pos = min(positive.numel(), int(self.batch_size_per_image * self.positive_fraction))
            num_neg = min(negative.numel(), self.batch_size_per_image - num_pos)
            pos = positive[torch.randperm(positive.numel(), device=positive.device)[:num_pos]]
            neg = negative[torch.randperm(negative.numel(), device=negative.device)[:num_neg]]
            pos_mask = torch.zeros_like(labels, dtype=torch.uint8)
            neg_mask = torch.zeros_like(labels, dtype=torch.uint8)
            pos_mask[pos] = 1
            neg_mask[neg] = 1
            pos_masks.append(pos_mask)
            neg_masks.append(neg_mask)
        return pos_masks, neg_masks


def encode_boxes(gt_boxes: Tensor, reference_boxes: Tensor, weights=(1.0, 1.0, 1.0, 1.0)) -> Tensor:
    """``gt_boxes`` (N, 4) coded relative to ``reference_boxes`` (N, 4) -> (N, 4) ``(dx, dy, dw, dh)``.

    ``BoxCoder(weights).encode_single`` as a function: the form of notebook 02's exercise and of the model's
    pluggable ``encode_boxes``. Weights (1, 1, 1, 1) in the RPN, (10, 10, 5, 5) in the box head.
    """
    return BoxCoder(weights).encode_single(gt_boxes, reference_boxes)


def decode_boxes(deltas: Tensor, reference_boxes: Tensor, weights=(1.0, 1.0, 1.0, 1.0)) -> Tensor:
    """``deltas`` (N, 4) applied to ``reference_boxes`` (N, 4) -> boxes (N, 4) (``BoxCoder.decode_single``)."""
    return BoxCoder(weights).decode_single(deltas, reference_boxes)
