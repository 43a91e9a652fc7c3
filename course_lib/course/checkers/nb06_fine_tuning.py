"""Checkers for 06_fine_tuning's exercises.
"""

import torch

from course_lib.course.checkers.core import Case, checker
from course_lib.course.checkers.nb06_heads import summarised
from course_lib.detection.course_model import (
    build_course_model,
    get_instance_segmentation_model,
)
from course_lib.training.error_analysis import mask_iou

__all__ = ["check_get_instance_segmentation_model", "check_mask_iou"]

NOTEBOOK = "06_fine_tuning"


def _head_cases() -> list[Case]:
    return [Case("course model, 4 classes (3 new shapes + background)", (build_course_model, 4)),
            Case("course model, 2 classes (one class + background)", (build_course_model, 2)),
            Case("course model, 11 classes", (build_course_model, 11)),
            Case("torchvision maskrcnn_resnet50_fpn, 4 classes", ("maskrcnn_resnet50_fpn", 4))]


def _grading_cases() -> list[Case]:
    """The notebook's cases on models the grader's sandbox can build (no course package there)."""
    return [Case("a ResNet-18 FPN Mask R-CNN, 4 classes", ("maskrcnn_resnet18_fpn", 4)),
            Case("a ResNet-18 FPN Mask R-CNN, 2 classes", ("maskrcnn_resnet18_fpn", 2)),
            Case("torchvision maskrcnn_resnet50_fpn, 4 classes", ("maskrcnn_resnet50_fpn", 4))]


def _hidden_head_cases(seed: int) -> list[Case]:
    """Numbers of classes the notebook never tries."""
    return [Case(f"a ResNet-18 FPN Mask R-CNN, {n} classes", ("maskrcnn_resnet18_fpn", n))
            for n in (int(v) for v in torch.randint(3, 40, (2,), generator=torch.Generator().manual_seed(seed)))]


check_get_instance_segmentation_model = checker(
    "check_get_instance_segmentation_model", get_instance_segmentation_model, _head_cases, notebook=NOTEBOOK,
    hidden_cases=_hidden_head_cases, grading_cases=_grading_cases, adapter=summarised,
    prelude="course_lib.course.checkers.nb06_heads", allow=("torchvision",),
    hint=["Only the two predictors depend on the number of classes: replace them, keep every other layer, and "
          "return the model (num_classes already counts the background).",
          "Read the widths off the old layers: in_features of model.roi_heads.box_predictor.cls_score for "
          "FastRCNNPredictor(in_features, num_classes); in_channels and out_channels of "
          "model.roi_heads.mask_predictor.conv5_mask for MaskRCNNPredictor(in_channels, hidden, num_classes)."])


def _random_masks(n: int, seed: int, p: float = 0.5, size=(24, 32)) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, *size, generator=g) < p


def _mask_cases() -> list[Case]:
    a, b = _random_masks(5, 0, 0.4), _random_masks(3, 1, 0.6)
    with_empty = _random_masks(4, 2)
    with_empty[1] = False
    left = torch.zeros(1, 24, 32, dtype=torch.bool)
    left[:, :, :16] = True
    return [Case("random masks, 5 x 3", (a, b)),
            Case("a set against itself (diagonal = 1)", (b, b)),
            Case("no masks on one side", (a[:0], b)),
            Case("an empty mask (IoU 0, not NaN)", (with_empty, with_empty)),
            Case("disjoint halves", (left, ~left))]


def _hidden_mask_cases(seed: int) -> list[Case]:
    """Never shown in the notebook: other sizes and densities, masks given as transposed (non-contiguous) views,
    uint8 masks, nested masks (IoU = area ratio) and no masks on either side."""
    g = torch.Generator().manual_seed(seed)
    n, m = (int(v) for v in torch.randint(1, 7, (2,), generator=g))
    h, w = (int(v) for v in torch.randint(5, 30, (2,), generator=g))
    a = torch.rand(n, h, w, generator=g) < float(torch.rand(1, generator=g)) * 0.8 + 0.1
    b = torch.rand(m, h, w, generator=g) < 0.3
    nested = torch.zeros(2, 12, 12, dtype=torch.bool)
    nested[0, 2:10, 2:10] = True
    nested[1, 4:8, 4:8] = True
    return [Case(f"random masks, {n} x {m}, {h}x{w}", (a, b)),
            Case("transposed views (not contiguous)", (a.transpose(1, 2), b.transpose(1, 2))),
            Case("uint8 masks of 0 and 1", (a.to(torch.uint8), b.to(torch.uint8))),
            Case("a mask inside another", (nested, nested)),
            Case("no masks on either side", (a[:0], b[:0]))]


check_mask_iou = checker(
    "check_mask_iou", mask_iou, _mask_cases, notebook=NOTEBOOK,
    hidden_cases=_hidden_mask_cases,
    hint=["Treat each mask as a vector of 0s and 1s: flatten to (N, H*W) and (M, H*W) floats.",
          "All intersections at once are one matrix product (a @ b.T); union = area_a[:, None] + area_b[None, :] - "
          "intersection.",
          "Where the union is 0 (two empty masks) return 0, not NaN. The result is (N, M) float32."])
