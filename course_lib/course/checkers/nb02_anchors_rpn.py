"""Checkers for 02_anchors_rpn's exercises.

* ``check_box_iou``: IoU of every pair of boxes, against ``course_lib.boxes.box_iou`` (= torchvision's).
* ``check_encode_boxes`` / ``check_decode_boxes``: Faster R-CNN's box coding, against
  ``course_lib.detection._utils.BoxCoder.encode_single`` / ``decode_single`` (= torchvision's ``_utils.BoxCoder``).
* ``check_nms``: greedy non-maximum suppression, kept indices against ``torchvision.ops.nms``.
* ``check_rpn_loss``: the RPN's two losses on sampled anchors, against ``course_lib.detection.rpn.rpn_loss``
  (= the body of torchvision's ``RegionProposalNetwork.compute_loss``).
"""

from __future__ import annotations

import torch
import torchvision

from course_lib.course.checkers.core import Case, checker
from course_lib.detection._utils import decode_boxes, encode_boxes
from course_lib.detection.rpn import rpn_loss
from course_lib.ops.boxes import box_iou

__all__ = ["check_box_iou", "check_decode_boxes", "check_encode_boxes", "check_nms", "check_rpn_loss"]

NOTEBOOK = "02_anchors_rpn"


RPN_WEIGHTS = (1.0, 1.0, 1.0, 1.0)


HEAD_WEIGHTS = (10.0, 10.0, 5.0, 5.0)  # the box head's weights (notebook 04)


def _random_boxes(n: int, g: torch.Generator, lo: float = 1.0, hi: float = 40.0) -> torch.Tensor:
    xy = torch.rand(n, 2, generator=g) * 60
    wh = lo + torch.rand(n, 2, generator=g) * (hi - lo)
    return torch.cat([xy, xy + wh], dim=1)


def _iou_cases() -> list[Case]:
    g = torch.Generator().manual_seed(20)
    t = torch.tensor
    return [Case("3 random boxes against 5", (_random_boxes(3, g), _random_boxes(5, g))),
            Case("identical boxes: IoU 1", (t([[10., 10., 30., 20.]]), t([[10., 10., 30., 20.]]))),
            Case("far apart: IoU 0, not a product of two negative overlaps",
                 (t([[0., 0., 10., 10.]]), t([[20., 20., 30., 30.], [20., -15., 30., -5.]]))),
            Case("touching edges: IoU 0", (t([[0., 0., 10., 10.]]), t([[10., 0., 20., 10.], [0., 10., 10., 20.]]))),
            Case("one box inside the other", (t([[0., 0., 40., 40.]]), t([[10., 10., 20., 30.]]))),
            Case("no boxes on one side: (0, 4) vs (3, 4) gives (0, 3)", (torch.zeros(0, 4), _random_boxes(3, g)))]


def _encode_cases() -> list[Case]:
    g = torch.Generator().manual_seed(21)
    anchors, anchors2 = _random_boxes(6, g, 8, 40), _random_boxes(4, g, 8, 40)
    return [Case("6 random pairs, RPN weights (1, 1, 1, 1)", (_random_boxes(6, g, 8, 40), anchors)),
            Case("a box equal to its anchor codes to zeros", (anchors[:3], anchors[:3])),
            Case("box head weights (10, 10, 5, 5)", (_random_boxes(4, g, 8, 40), anchors2), {"weights": HEAD_WEIGHTS}),
            Case("no boxes: (0, 4)", (torch.zeros(0, 4), torch.zeros(0, 4)))]


def _decode_cases() -> list[Case]:
    g = torch.Generator().manual_seed(22)
    anchors = _random_boxes(6, g, 8, 40)
    return [Case("6 anchors moved by random deltas, RPN weights", (torch.randn(6, 4, generator=g) * 0.5, anchors)),
            Case("zero deltas give the anchors back", (torch.zeros(4, 4), anchors[:4])),
            Case("box head weights (10, 10, 5, 5)", (torch.randn(5, 4, generator=g), anchors[:5]),
                 {"weights": HEAD_WEIGHTS}),
            Case("no boxes: (0, 4)", (torch.zeros(0, 4), torch.zeros(0, 4)))]


def _nms_cases() -> list[Case]:
    g = torch.Generator().manual_seed(23)
    centres = torch.tensor([[20., 20.], [60., 30.], [40., 70.]])
    jitter = torch.randn(12, 4, generator=g) * 3
    boxes = torch.cat([centres.repeat(4, 1) - 12, centres.repeat(4, 1) + 12], dim=1) + jitter
    scores = torch.rand(12, generator=g)
    t = torch.tensor
    chain = t([[0., 0., 10., 10.], [4., 0., 14., 10.], [8., 0., 18., 10.]])  # A~B, B~C, A and C apart
    return [Case("12 boxes around 3 objects, threshold 0.5", (boxes, scores, 0.5)),
            Case("the same boxes, threshold 0.2", (boxes, scores, 0.2)),
            Case("no boxes at all", (torch.zeros(0, 4), torch.zeros(0), 0.5)),
            Case("a single box", (t([[1., 2., 3., 4.]]), t([0.3]), 0.5)),
            Case("equal scores: the lower index comes first", (t([[0., 0., 10., 10.]] * 3), t([0.5, 0.5, 0.5]), 0.5)),
            Case("a suppressed box suppresses nothing (chain A-B-C)", (chain, t([0.9, 0.8, 0.7]), 0.3)),
            Case("IoU exactly at the threshold is kept (suppress only IoU > threshold)",
                 (t([[0., 0., 3., 1.], [1., 0., 4., 1.]]), t([0.9, 0.8]), 0.5)),
            Case("kept indices refer to the input order, best score first",
                 (t([[50., 50., 60., 60.], [0., 0., 10., 10.], [1., 0., 11., 10.]]), t([0.1, 0.6, 0.9]), 0.5))]


check_box_iou = checker(
    "check_box_iou", box_iou, _iou_cases, notebook=NOTEBOOK,
    hidden_cases=lambda seed: (lambda g: [Case("7 random boxes against 4", (_random_boxes(7, g), _random_boxes(4, g))),
                                          Case("small boxes", (_random_boxes(5, g, 0.1, 3), _random_boxes(6, g, 0.1, 3)))])(torch.Generator().manual_seed(seed)),
    forbidden=("torchvision.ops.box_iou", "torchvision.ops.boxes.box_iou", "course_lib.ops.boxes.box_iou"),
    hint=["compare every box of boxes1 with every box of boxes2 at once by broadcasting: boxes1[:, None, :] "
          "against boxes2[None, :, :] gives (N, M) pairs.",
          "the overlap of two boxes is a box: the larger x1 / y1 and the smaller x2 / y2. Its width and "
          "height can come out negative when the boxes do not meet: clamp them at 0 before multiplying.",
          "union = area1[:, None] + area2[None, :] - intersection; return intersection / union."])


check_encode_boxes = checker(
    "check_encode_boxes", encode_boxes, _encode_cases, notebook=NOTEBOOK,
    hidden_cases=lambda seed: (lambda g: [Case("5 random pairs, RPN weights", (_random_boxes(5, g, 8, 40), _random_boxes(5, g, 8, 40))),
                                          Case("3 random pairs, box head weights", (_random_boxes(3, g, 8, 40), _random_boxes(3, g, 8, 40)),
                                               {"weights": HEAD_WEIGHTS})])(torch.Generator().manual_seed(seed)),
    forbidden=("course_lib.detection._utils.BoxCoder.encode",
               "course_lib.detection._utils.BoxCoder.encode_single",
               "torchvision.models.detection._utils.BoxCoder.encode",
               "torchvision.models.detection._utils.BoxCoder.encode_single"),
    hint=["work with centres and sizes, not corners: w = x2 - x1, cx = x1 + 0.5 * w, for both the "
          "boxes and the anchors.",
          "shifts are in units of the anchor's size, scales are logarithms: dx = wx * (gt_cx - a_cx) / a_w, "
          "dw = ww * log(gt_w / a_w); return torch.stack([dx, dy, dw, dh], dim=1)."])


check_decode_boxes = checker(
    "check_decode_boxes", decode_boxes, _decode_cases, notebook=NOTEBOOK,
    hidden_cases=lambda seed: (lambda g: [Case("5 anchors moved by random deltas", (torch.randn(5, 4, generator=g) * 0.5, _random_boxes(5, g, 8, 40))),
                                          Case("3 anchors, box head weights", (torch.randn(3, 4, generator=g), _random_boxes(3, g, 8, 40)),
                                               {"weights": HEAD_WEIGHTS})])(torch.Generator().manual_seed(seed)),
    forbidden=("course_lib.detection._utils.BoxCoder.decode",
               "course_lib.detection._utils.BoxCoder.decode_single",
               "torchvision.models.detection._utils.BoxCoder.decode",
               "torchvision.models.detection._utils.BoxCoder.decode_single"),
    hint=["decoding undoes encoding step by step: divide the deltas by the weights first.",
          "from the anchor's centre and size: cx = dx * a_w + a_cx, w = exp(dw) * a_w (clamp dw at "
          "log(1000 / 16) before exp, as torchvision does); then corners cx -/+ 0.5 * w."])


check_nms = checker(
    "check_nms", torchvision.ops.nms, _nms_cases, notebook=NOTEBOOK,
    hidden_cases=lambda seed: (lambda g: [Case("15 random boxes, threshold 0.4", (_random_boxes(15, g, 10, 40), torch.rand(15, generator=g), 0.4)),
                                          Case("20 random boxes, threshold 0.6", (_random_boxes(20, g, 10, 40), torch.rand(20, generator=g), 0.6))])(torch.Generator().manual_seed(seed)),
    forbidden=("torchvision.ops.nms", "torchvision.ops.batched_nms", "course_lib.ops.boxes.nms",
               "torch.ops.torchvision.nms"),
    hint=["visit the boxes from the best score down (torch.sort(scores, descending=True, stable=True): "
          "equal scores keep their input order).",
          "a box is kept unless a box kept *before it* overlaps it with IoU > iou_threshold; a suppressed "
          "box suppresses nothing.",
          "return the kept boxes' indices into the input, best first, as an int64 tensor (empty input: "
          "an empty int64 tensor)."])


def _rpn_loss_inputs(g: torch.Generator, anchors_per_image: list[int], num_pos: list[int], num_neg: list[int],
                     scale: float = 1.0):
    """Random ``rpn_loss`` inputs: per image, labels with some positives / negatives / ignored, and
    sampled indices into the concatenation of all images' anchors."""
    total = sum(anchors_per_image)
    objectness = torch.randn(total, 1, generator=g) * scale
    deltas = torch.randn(total, 4, generator=g) * 0.3 * scale
    labels, targets, pos, neg, offset = [], [], [], [], 0
    for n, p, q in zip(anchors_per_image, num_pos, num_neg, strict=True):
        lbl = torch.full((n,), -1.0)
        perm = torch.randperm(n, generator=g)
        lbl[perm[:p]] = 1.0
        lbl[perm[p:p + q + 3]] = 0.0  # a few more negatives than are sampled
        labels.append(lbl)
        targets.append(torch.randn(n, 4, generator=g) * 0.2)
        pos.append(perm[:p] + offset)
        neg.append(perm[p:p + q] + offset)
        offset += n
    return (objectness, deltas, labels, targets, torch.cat(pos).long(), torch.cat(neg).long())


def _rpn_loss_cases() -> list[Case]:
    g = torch.Generator().manual_seed(24)
    return [Case("one image, 6 positive and 10 negative anchors sampled", _rpn_loss_inputs(g, [40], [6], [10])),
            Case("two images (indices into both images' anchors together)",
                 _rpn_loss_inputs(g, [30, 30], [3, 5], [9, 7])),
            Case("no positive sampled (an image without objects): box loss 0", _rpn_loss_inputs(g, [25], [0], [12])),
            Case("few positives: the box loss is divided by all sampled anchors, not the positives",
                 _rpn_loss_inputs(g, [50], [1], [30])),
            Case("large deltas: smooth L1 is linear beyond beta = 1/9", _rpn_loss_inputs(g, [20], [5], [5], 8.0))]


check_rpn_loss = checker(
    "check_rpn_loss", rpn_loss, _rpn_loss_cases, notebook=NOTEBOOK,
    hidden_cases=lambda seed: (lambda g: [
        Case("three images", _rpn_loss_inputs(g, [20, 35, 15], [2, 4, 0], [6, 9, 5])),
        Case("only positives sampled", _rpn_loss_inputs(g, [16], [8], [0])),
        Case("confident logits (x20)", _rpn_loss_inputs(g, [30], [4], [12], 20.0))])(torch.Generator().manual_seed(seed)),
    forbidden=("course_lib.detection.rpn.rpn_loss", "course_lib.detection.rpn.compute_loss",
               "torchvision.models.detection.rpn.RegionProposalNetwork.compute_loss"),
    hint=["both losses look only at the sampled anchors: concatenate labels and regression_targets over "
          "the images, and join the positive and negative indices into one index of sampled anchors.",
          "objectness: F.binary_cross_entropy_with_logits on the sampled anchors' logits (flattened) "
          "against their labels (a mean). Boxes: F.smooth_l1_loss(..., beta=1 / 9, reduction='sum') on the "
          "positives' deltas and targets only.",
          "divide the summed box loss by the number of sampled anchors (positives + negatives), then "
          "return (objectness_loss, box_loss)."])
