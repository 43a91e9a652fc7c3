"""Checkers for 02_anchors_rpn's exercises.

* ``check_box_iou``: IoU of every pair of boxes, against ``course_lib.boxes.box_iou`` (= torchvision's).
* ``check_encode_boxes`` / ``check_decode_boxes``: Faster R-CNN's box coding, against
  ``course_lib.boxes.BoxCoder`` (= torchvision's ``_utils.BoxCoder``).
* ``check_nms``: greedy non-maximum suppression, kept indices against ``torchvision.ops.nms``.
"""

from __future__ import annotations

import torch
import torchvision

from course_lib.course.checkers.core import Case, checker
from course_lib.detection._utils import BoxCoder
from course_lib.ops.boxes import box_iou

__all__ = ["check_box_iou", "check_decode_boxes", "check_encode_boxes", "check_nms"]

NOTEBOOK = "02_anchors_rpn"


RPN_WEIGHTS = (1.0, 1.0, 1.0, 1.0)


HEAD_WEIGHTS = (10.0, 10.0, 5.0, 5.0)  # the box head's weights (notebook 04)


def encode_boxes(gt_boxes: torch.Tensor, anchors: torch.Tensor, weights=RPN_WEIGHTS) -> torch.Tensor:
    """The reference: ``gt_boxes`` (N, 4) coded relative to ``anchors`` (N, 4) -> (N, 4) (dx, dy, dw, dh)."""
    return BoxCoder(weights).encode(gt_boxes, anchors)


def decode_boxes(deltas: torch.Tensor, anchors: torch.Tensor, weights=RPN_WEIGHTS) -> torch.Tensor:
    """The reference: ``deltas`` (N, 4) applied to ``anchors`` (N, 4) -> boxes (N, 4)."""
    return BoxCoder(weights).decode(deltas, anchors)


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
    hint="Hint: with boxes1[:, None, :] against boxes2[None, :, :], the overlap is max of the x1/y1 and min of the "
         "x2/y2; clamp its width and height at 0 before multiplying; union = area1 + area2 - intersection.")


check_encode_boxes = checker(
    "check_encode_boxes", encode_boxes, _encode_cases, notebook=NOTEBOOK,
    hidden_cases=lambda seed: (lambda g: [Case("5 random pairs, RPN weights", (_random_boxes(5, g, 8, 40), _random_boxes(5, g, 8, 40))),
                                          Case("3 random pairs, box head weights", (_random_boxes(3, g, 8, 40), _random_boxes(3, g, 8, 40)),
                                               {"weights": HEAD_WEIGHTS})])(torch.Generator().manual_seed(seed)),
    forbidden=("course_lib.detection._utils.BoxCoder.encode",
               "torchvision.models.detection._utils.BoxCoder.encode",
               "torchvision.models.detection._utils.BoxCoder.encode_single"),
    hint="Hint: centres and sizes first (cx = x1 + 0.5 * w); dx = wx * (gt_cx - a_cx) / a_w, dw = ww * log(gt_w / a_w); "
         "return torch.stack([dx, dy, dw, dh], dim=1).")


check_decode_boxes = checker(
    "check_decode_boxes", decode_boxes, _decode_cases, notebook=NOTEBOOK,
    hidden_cases=lambda seed: (lambda g: [Case("5 anchors moved by random deltas", (torch.randn(5, 4, generator=g) * 0.5, _random_boxes(5, g, 8, 40))),
                                          Case("3 anchors, box head weights", (torch.randn(3, 4, generator=g), _random_boxes(3, g, 8, 40)),
                                               {"weights": HEAD_WEIGHTS})])(torch.Generator().manual_seed(seed)),
    forbidden=("course_lib.detection._utils.BoxCoder.decode",
               "torchvision.models.detection._utils.BoxCoder.decode",
               "torchvision.models.detection._utils.BoxCoder.decode_single"),
    hint="Hint: undo the weights first (dx = deltas[:, 0] / wx ...); cx = dx * a_w + a_cx, w = exp(dw) * a_w; "
         "then corners cx -/+ 0.5 * w.")


check_nms = checker(
    "check_nms", torchvision.ops.nms, _nms_cases, notebook=NOTEBOOK,
    hidden_cases=lambda seed: (lambda g: [Case("15 random boxes, threshold 0.4", (_random_boxes(15, g, 10, 40), torch.rand(15, generator=g), 0.4)),
                                          Case("20 random boxes, threshold 0.6", (_random_boxes(20, g, 10, 40), torch.rand(20, generator=g), 0.6))])(torch.Generator().manual_seed(seed)),
    forbidden=("torchvision.ops.nms", "torchvision.ops.batched_nms", "course_lib.ops.boxes.nms",
               "torch.ops.torchvision.nms"),
    hint="Hint: order = torch.sort(scores, descending=True, stable=True).indices; walk it, keep a box unless a box "
         "kept before has IoU > iou_threshold with it; return the kept input indices as an int64 tensor.")
