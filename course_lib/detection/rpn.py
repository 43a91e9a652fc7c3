"""The Region Proposal Network from scratch: matching, sampling, the head, proposals, recall.
Taught in: 02_anchors_rpn

Boxes are ``(x1, y1, x2, y2)`` in pixels. Each piece gives the same result as its torchvision
namesake in ``torchvision.models.detection``: ``_utils.Matcher``,
``_utils.BalancedPositiveNegativeSampler``, ``rpn.RPNHead``, ``rpn.concat_box_prediction_layers``,
``RegionProposalNetwork.assign_targets_to_anchors`` (here ``assign_targets_to_anchors``) and
``RegionProposalNetwork.filter_proposals``. ``rpn_head_outputs`` is the first half of
``RegionProposalNetwork.forward`` (head, anchors, anchor order); ``proposal_recall`` is the course's own measure.
"""

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from course_lib.detection._utils import BalancedPositiveNegativeSampler, Matcher, decode_boxes, encode_boxes
from course_lib.ops.boxes import (
    batched_nms,
    box_iou,
    clip_boxes_to_image,
    nms,
    remove_small_boxes,
)


class RPNHead(nn.Module):
    """The RPN head: a shared 3x3 conv + ReLU, then two 1x1 convs per cell.

    For each level's features (B, C, H, W) it gives objectness logits (B, A, H, W) and box
    deltas (B, 4A, H, W), A = ``num_anchors`` per cell. Parameter names and initialisation (normal,
    std 0.01, bias 0, drawn in the same order) are torchvision's, so state_dicts are interchangeable
    and the same seed gives the same weights.
    """

    def __init__(self, in_channels: int, num_anchors: int, conv_depth: int = 1):
        super().__init__()
        # Nested Sequential only to get torchvision's parameter names: conv.0.0.weight, ...
        self.conv = nn.Sequential(*[
            nn.Sequential(nn.Conv2d(in_channels, in_channels, 3, padding=1), nn.ReLU(inplace=True))
            for _ in range(conv_depth)])
        self.cls_logits = nn.Conv2d(in_channels, num_anchors, kernel_size=1)
        self.bbox_pred = nn.Conv2d(in_channels, num_anchors * 4, kernel_size=1)
        for layer in self.modules():
            if isinstance(layer, nn.Conv2d):
                nn.init.normal_(layer.weight, std=0.01)
                nn.init.constant_(layer.bias, 0)

    def forward(self, x: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        logits, bbox_reg = [], []
        for feature in x:
            t = self.conv(feature)
            logits.append(self.cls_logits(t))
            bbox_reg.append(self.bbox_pred(t))
        return logits, bbox_reg


def permute_and_flatten(layer: Tensor, N: int, A: int, C: int, H: int, W: int) -> Tensor:
    """(N, A*C, H, W) -> (N, H*W*A, C): the order of the anchors (cell by cell, A per cell)."""
    return layer.view(N, -1, C, H, W).permute(0, 3, 4, 1, 2).reshape(N, -1, C)


def concat_box_prediction_layers(box_cls: list[Tensor], box_regression: list[Tensor]):
    """Head outputs of all levels -> objectness ``(N * total_anchors, 1)`` and deltas
    ``(N * total_anchors, 4)``, image-major, in the same order as the anchors."""
    cls_flat, reg_flat = [], []
    for cls, reg in zip(box_cls, box_regression, strict=True):
        N, AxC, H, W = cls.shape
        A = reg.shape[1] // 4
        cls_flat.append(permute_and_flatten(cls, N, A, AxC // A, H, W))
        reg_flat.append(permute_and_flatten(reg, N, A, 4, H, W))
    return torch.cat(cls_flat, dim=1).flatten(0, -2), torch.cat(reg_flat, dim=1).reshape(-1, 4)


class RPNHeadOutputs(NamedTuple):
    """What ``rpn_head_outputs`` returns. B images, L levels, A anchors per cell, N = sum of A * H_l * W_l."""

    objectness: Tensor  #: (B * N, 1) logits, anchor order, image-major (``concat_box_prediction_layers``)
    pred_bbox_deltas: Tensor  #: (B * N, 4) box deltas, same order
    anchors: list[Tensor]  #: per image, (N, 4) anchors (x1, y1, x2, y2) in the batched image's pixels
    num_anchors_per_level: list[int]  #: A * H_l * W_l per level (sums to N)
    objectness_maps: list[Tensor]  #: per level, (B, A, H_l, W_l) logits as the head gives them
    deltas_maps: list[Tensor]  #: per level, (B, 4A, H_l, W_l)


def rpn_head_outputs(*, head: nn.Module, anchor_generator: nn.Module, images, features) -> RPNHeadOutputs:
    """The RPN before any filtering: the head on every level, the anchors, both in the same (anchor) order.

    Args:
        head: an ``RPNHead`` (ours or torchvision's): L feature maps -> L objectness and L delta maps.
        anchor_generator: an ``AnchorGenerator`` (ours or torchvision's): ``(images, features)`` -> anchors.
        images: the ``ImageList`` the features were computed from (``tensors`` (B, 3, H, W), ``image_sizes``).
        features: the backbone's L maps (B, C, H_l, W_l), a list or the backbone's dict (its order is kept).

    Returns:
        ``RPNHeadOutputs``: objectness (B * N, 1), pred_bbox_deltas (B * N, 4), anchors (per image (N, 4)),
        num_anchors_per_level, and the per-level maps (B, A, H_l, W_l) and (B, 4A, H_l, W_l). Row i of
        ``objectness`` and ``pred_bbox_deltas`` belongs to anchor ``i % N`` of image ``i // N``. The same
        steps, in the same order, as torchvision's ``RegionProposalNetwork.forward`` before ``decode``.
    """
    features = list(features.values()) if isinstance(features, dict) else list(features)
    objectness_maps, deltas_maps = head(features)
    anchors = anchor_generator(images, features)
    num_anchors_per_level = [o[0].numel() for o in objectness_maps]  # A * H * W per level
    objectness, pred_bbox_deltas = concat_box_prediction_layers(objectness_maps, deltas_maps)
    return RPNHeadOutputs(objectness, pred_bbox_deltas, anchors, num_anchors_per_level, objectness_maps,
                          deltas_maps)


def assign_targets_to_anchors(anchors: Tensor, gt_boxes: Tensor, matcher: Matcher,
                              box_iou=box_iou) -> tuple[Tensor, Tensor]:
    """RPN training labels for one image: anchors (N, 4), gt_boxes (M, 4) ->
    labels (N,) float32 (1 object, 0 background, -1 ignored) and matched gt boxes (N, 4).

    torchvision's ``assign_targets_to_anchors``. With no gt box every anchor is background; an
    anchor that is not positive gets gt box 0 as a placeholder (never used: no box loss there).
    """
    if gt_boxes.numel() == 0:
        return (torch.zeros((anchors.shape[0],), dtype=torch.float32, device=anchors.device),
                torch.zeros(anchors.shape, dtype=torch.float32, device=anchors.device))
    matched_idxs = matcher(box_iou(gt_boxes, anchors))
    # clamp: -1 / -2 are not valid indices
    matched_gt_boxes = gt_boxes[matched_idxs.clamp(min=0)]
    labels = (matched_idxs >= 0).to(dtype=torch.float32)
    labels[matched_idxs == Matcher.BELOW_LOW_THRESHOLD] = 0.0
    labels[matched_idxs == Matcher.BETWEEN_THRESHOLDS] = -1.0
    return labels, matched_gt_boxes


def filter_proposals(proposals: Tensor, objectness: Tensor, image_shapes: list[tuple[int, int]],
                     num_anchors_per_level: list[int], pre_nms_top_n: int, post_nms_top_n: int,
                     nms_thresh: float, score_thresh: float = 0.0, min_size: float = 1e-3, nms=nms):
    """From decoded anchors to proposals, per image (torchvision's ``filter_proposals``).

    ``proposals`` (B, N, 4) and ``objectness`` logits (B, N) (any shape with B*N elements), N =
    anchors of all levels in anchor order; ``image_shapes``: (height, width) of each image before
    padding. Steps: the ``pre_nms_top_n`` best anchors of each level; sigmoid; clip to the image;
    drop boxes with a side < ``min_size``; drop scores < ``score_thresh``; NMS per level; the
    ``post_nms_top_n`` best (``nms``: the NMS function to use). Returns lists (one per image) of boxes (K, 4) and scores (K,).
    """
    num_images = proposals.shape[0]
    device = proposals.device
    objectness = objectness.detach().reshape(num_images, -1)
    levels = torch.cat([torch.full((n,), idx, dtype=torch.int64, device=device)
                        for idx, n in enumerate(num_anchors_per_level)])
    levels = levels.reshape(1, -1).expand_as(objectness)

    # Top-k per level, not overall: the many small-anchor levels would crowd out the big ones.
    top_n_idx, offset = [], 0
    for ob in objectness.split(num_anchors_per_level, 1):
        top_n_idx.append(ob.topk(min(pre_nms_top_n, ob.shape[1]), dim=1)[1] + offset)
        offset += ob.shape[1]
    top_n_idx = torch.cat(top_n_idx, dim=1)
    batch_idx = torch.arange(num_images, device=device)[:, None]
    objectness = objectness[batch_idx, top_n_idx]
    levels = levels[batch_idx, top_n_idx]
    proposals = proposals[batch_idx, top_n_idx]
    objectness_prob = torch.sigmoid(objectness)

    final_boxes, final_scores = [], []
    for boxes, scores, lvl, img_shape in zip(proposals, objectness_prob, levels, image_shapes, strict=True):
        boxes = clip_boxes_to_image(boxes, img_shape)
        keep = remove_small_boxes(boxes, min_size)
        boxes, scores, lvl = boxes[keep], scores[keep], lvl[keep]
        keep = torch.where(scores >= score_thresh)[0]
        boxes, scores, lvl = boxes[keep], scores[keep], lvl[keep]
        keep = batched_nms(boxes, scores, lvl, nms_thresh, nms=nms)[:post_nms_top_n]
        final_boxes.append(boxes[keep])
        final_scores.append(scores[keep])
    return final_boxes, final_scores


def proposal_recall(proposals, gt_boxes, iou_thresholds=(0.5, 0.7), counts=(10, 100, 1000)) -> Tensor:
    """Recall of the best ``count`` proposals: the fraction of gt boxes that some proposal among
    the first ``count`` covers with IoU >= ``threshold``.

    ``proposals``: (P, 4), sorted by decreasing score (as ``filter_proposals`` returns them);
    ``gt_boxes``: (M, 4); or lists of those, one per image (recall over all gt boxes).
    Returns ``(len(counts), len(iou_thresholds))`` float32; nan when there is no gt box.
    """
    if isinstance(proposals, Tensor):
        proposals, gt_boxes = [proposals], [gt_boxes]
    thresholds = torch.as_tensor(iou_thresholds, dtype=torch.float32)
    found = torch.zeros(len(counts), len(thresholds))
    total = 0
    for props, gt in zip(proposals, gt_boxes, strict=True):
        total += len(gt)
        if len(gt) == 0 or len(props) == 0:
            continue
        # best[g, j]: best IoU of gt box g among the first j+1 proposals.
        best = box_iou(gt.float(), props[:max(counts)].float()).cummax(dim=1).values
        for i, count in enumerate(counts):
            if count > 0:
                best_at_count = best[:, min(count, best.shape[1]) - 1]
                found[i] += (best_at_count[:, None] >= thresholds[None, :]).sum(dim=0)
    return found / total if total else torch.full_like(found, float("nan"))


def rpn_loss(objectness: Tensor, pred_bbox_deltas: Tensor, labels: list[Tensor], regression_targets: list[Tensor],
             sampled_pos_inds: Tensor, sampled_neg_inds: Tensor) -> tuple[Tensor, Tensor]:
    """The RPN's two losses on the sampled anchors (the body of torchvision's ``compute_loss``).

    Args:
        objectness: (N * A_total, 1) logits, ``concat_box_prediction_layers`` order (image-major).
        pred_bbox_deltas: (N * A_total, 4) predicted deltas, same order.
        labels: per image, (A_total,) float labels 1 / 0 / -1 (``assign_targets_to_anchors``).
        regression_targets: per image, (A_total, 4) encoded matched gt boxes (weights 1, 1, 1, 1).
        sampled_pos_inds, sampled_neg_inds: (P,), (Q,) int64 indices into the concatenated anchors.

    Returns:
        ``(objectness_loss, box_loss)``: the mean binary cross-entropy over the P + Q sampled anchors, and
        the smooth L1 (beta 1/9) summed over the P positives' deltas and divided by P + Q (not by P: a batch
        with few positives is not given large box gradients).
    """
    sampled_inds = torch.cat([sampled_pos_inds, sampled_neg_inds], dim=0)
    labels = torch.cat(labels, dim=0)
    regression_targets = torch.cat(regression_targets, dim=0)
    box_loss = F.smooth_l1_loss(pred_bbox_deltas[sampled_pos_inds], regression_targets[sampled_pos_inds],
                                beta=1 / 9, reduction="sum") / sampled_inds.numel()
    objectness_loss = F.binary_cross_entropy_with_logits(objectness.flatten()[sampled_inds], labels[sampled_inds])
    return objectness_loss, box_loss


def compute_loss(objectness: Tensor, pred_bbox_deltas: Tensor, labels: list[Tensor],
                 regression_targets: list[Tensor], fg_bg_sampler: BalancedPositiveNegativeSampler,
                 loss=rpn_loss) -> tuple[Tensor, Tensor]:
    """torchvision's ``RegionProposalNetwork.compute_loss``: sample anchors per image, then ``loss``.

    ``fg_bg_sampler`` draws ``batch_size_per_image`` anchors per image with at most ``positive_fraction``
    positives (``torch.randperm``, so the same seed samples the same anchors as torchvision).
    """
    pos, neg = fg_bg_sampler(labels)
    sampled_pos_inds = torch.where(torch.cat(pos, dim=0))[0]
    sampled_neg_inds = torch.where(torch.cat(neg, dim=0))[0]
    return loss(objectness, pred_bbox_deltas, labels, regression_targets, sampled_pos_inds, sampled_neg_inds)


class RegionProposalNetwork(nn.Module):
    """The RPN as one module, built from the functions above (torchvision's ``RegionProposalNetwork``).

    Same arguments and attribute names as torchvision's (``anchor_generator``, ``head``: the only one with
    parameters, so state dicts are interchangeable). ``forward(images, features, targets)`` returns
    ``(boxes, losses)``: per image (K, 4) proposals in the resized image's pixels, and in training
    ``{"loss_objectness", "loss_rpn_box_reg"}``.

    The functions it calls are attributes (``box_iou``, ``nms``, ``encode_boxes``, ``decode_boxes``,
    ``rpn_loss``) so a learner's own can be plugged in (``course_lib.detection.mask_rcnn.plug_in``).
    ``filter_proposals`` is a method with torchvision's signature (the settings are the module's).
    """

    def __init__(self, anchor_generator: nn.Module, head: nn.Module, fg_iou_thresh: float, bg_iou_thresh: float,
                 batch_size_per_image: int, positive_fraction: float, pre_nms_top_n: dict[str, int],
                 post_nms_top_n: dict[str, int], nms_thresh: float, score_thresh: float = 0.0):
        super().__init__()
        self.anchor_generator = anchor_generator
        self.head = head
        self.box_coder_weights = (1.0, 1.0, 1.0, 1.0)
        self.proposal_matcher = Matcher(fg_iou_thresh, bg_iou_thresh, allow_low_quality_matches=True)
        self.fg_bg_sampler = BalancedPositiveNegativeSampler(batch_size_per_image, positive_fraction)
        self._pre_nms_top_n, self._post_nms_top_n = pre_nms_top_n, post_nms_top_n
        self.nms_thresh, self.score_thresh, self.min_size = nms_thresh, score_thresh, 1e-3
        # Pluggable pieces (library defaults).
        self.box_iou, self.nms, self.rpn_loss = box_iou, nms, rpn_loss
        self.encode_boxes, self.decode_boxes = encode_boxes, decode_boxes

    def pre_nms_top_n(self) -> int:
        return self._pre_nms_top_n["training" if self.training else "testing"]

    def post_nms_top_n(self) -> int:
        return self._post_nms_top_n["training" if self.training else "testing"]

    def filter_proposals(self, proposals: Tensor, objectness: Tensor, image_shapes: list[tuple[int, int]],
                         num_anchors_per_level: list[int]) -> tuple[list[Tensor], list[Tensor]]:
        """``filter_proposals`` (the function above) with this module's settings and ``nms``."""
        return filter_proposals(proposals, objectness, image_shapes, num_anchors_per_level, self.pre_nms_top_n(),
                                self.post_nms_top_n(), self.nms_thresh, self.score_thresh, self.min_size,
                                nms=self.nms)

    def forward(self, images, features: dict[str, Tensor], targets: list[dict[str, Tensor]] | None = None):
        objectness, pred_bbox_deltas, anchors, num_anchors_per_level, *_ = rpn_head_outputs(
            head=self.head, anchor_generator=self.anchor_generator, images=images, features=features)
        num_images = len(anchors)
        # Proposals are not differentiated through (Faster R-CNN's "approximate joint training").
        proposals = self.decode_boxes(pred_bbox_deltas.detach(), torch.cat(anchors), self.box_coder_weights)
        proposals = proposals.view(num_images, -1, 4)
        boxes, _ = self.filter_proposals(proposals, objectness, images.image_sizes, num_anchors_per_level)
        losses = {}
        if self.training:
            if targets is None:
                raise ValueError("targets should not be None")
            labels, matched_gt_boxes = [], []
            for anchors_per_image, target in zip(anchors, targets, strict=True):
                lbl, gt = assign_targets_to_anchors(anchors_per_image, target["boxes"], self.proposal_matcher,
                                                    box_iou=self.box_iou)
                labels.append(lbl)
                matched_gt_boxes.append(gt)
            regression_targets = [self.encode_boxes(gt, a, self.box_coder_weights)
                                  for gt, a in zip(matched_gt_boxes, anchors, strict=True)]
            loss_objectness, loss_rpn_box_reg = compute_loss(objectness, pred_bbox_deltas, labels,
                                                             regression_targets, self.fg_bg_sampler, self.rpn_loss)
            losses = {"loss_objectness": loss_objectness, "loss_rpn_box_reg": loss_rpn_box_reg}
        return boxes, losses
