"""Checkers for 04_heads_mask_branch's exercises.
"""

import torch

from course_lib.course.checkers.core import Case, checker
from course_lib.detection.roi_heads import (
    assign_targets_to_proposals,
    expand_boxes,
    fastrcnn_loss,
    maskrcnn_loss,
    paste_mask_in_image,
    project_masks_on_boxes,
)
from course_lib.ops.boxes import box_iou

__all__ = ["check_assign_targets_to_proposals", "check_fastrcnn_loss", "check_maskrcnn_loss", "check_paste_mask"]


def _blob_masks(n, size, g):
    """``n`` random rectangles as (n, H, W) uint8 ground-truth masks."""
    h, w = size
    masks = torch.zeros(n, h, w, dtype=torch.uint8)
    for i in range(n):
        y0, x0 = int(torch.randint(0, h // 2, (1,), generator=g)), int(torch.randint(0, w // 2, (1,), generator=g))
        y1 = y0 + int(torch.randint(4, h // 2, (1,), generator=g))
        x1 = x0 + int(torch.randint(4, w // 2, (1,), generator=g))
        masks[i, y0:y1, x0:x1] = 1
    return masks


def _loss_inputs(seed, props_per_image, num_classes=4, M=14, size=(32, 40), labels=None):
    """Inputs of ``maskrcnn_loss`` for len(props_per_image) images with that many positive proposals each."""
    g = torch.Generator().manual_seed(seed)
    proposals, gt_masks, gt_labels, matched = [], [], [], []
    for i, p in enumerate(props_per_image):
        n_gt = 3
        gt_masks.append(_blob_masks(n_gt, size, g))
        gt_labels.append(torch.tensor(labels[i]) if labels else torch.randint(1, num_classes, (n_gt,), generator=g))
        xy = torch.rand(p, 2, generator=g) * torch.tensor([size[1] * 0.6, size[0] * 0.6])
        proposals.append(torch.cat([xy, xy + 4 + torch.rand(p, 2, generator=g) * 14], 1))
        matched.append(torch.randint(0, n_gt, (p,), generator=g))
    logits = torch.randn(sum(props_per_image), num_classes, M, M, generator=g)
    return logits, proposals, gt_masks, gt_labels, matched


def _loss_cases() -> list[Case]:
    return [Case("one image, 5 positive proposals", _loss_inputs(0, [5])),
            Case("two images", _loss_inputs(1, [4, 3])),
            Case("labels not in channel order", _loss_inputs(2, [6], labels=[[3, 1, 2]])),
            Case("28x28 masks, 2 classes", _loss_inputs(3, [3], num_classes=2, M=28)),
            Case("one image without proposals", _loss_inputs(4, [0, 4])),
            Case("no proposals at all (loss 0, not NaN)", _loss_inputs(5, [0]))]


def _paste_cases() -> list[Case]:
    g = torch.Generator().manual_seed(0)
    m28 = torch.rand(28, 28, generator=g)
    m14 = torch.rand(14, 14, generator=g)
    t = torch.tensor
    return [Case("box inside the image", (m28, t([10.3, 12.7, 50.2, 40.9]), (64, 80))),
            Case("box over the left and top edges", (m28, t([-8.5, -5.2, 30.1, 25.3]), (64, 80))),
            Case("box over the right and bottom edges", (m28, t([60.0, 40.5, 95.2, 70.4]), (64, 80))),
            Case("a small box (3 x 2 pixels)", (m28, t([20.2, 30.4, 23.1, 32.3]), (64, 80))),
            Case("padding=0", (m28, t([10.3, 12.7, 50.2, 40.9]), (64, 80)), dict(padding=0)),
            Case("a 14x14 mask, padding=2", (m14, t([5.5, 6.5, 30.5, 20.5]), (40, 48)), dict(padding=2)),
            Case("box wholly outside the image", (m28, t([90.0, 70.0, 120.0, 99.0]), (64, 80)))]


def _hidden_loss_cases(seed: int) -> list[Case]:
    """Never shown in the notebook: three images of unequal counts, 7x7 masks and more classes, and confident
    logits (|logit| up to ~40), where a cross-entropy written with log(sigmoid(x)) and log(1 - sigmoid(x))
    gives inf or NaN (binary_cross_entropy_with_logits stays exact)."""
    g = torch.Generator().manual_seed(seed)
    counts = [int(v) for v in torch.randint(1, 6, (3,), generator=g)]
    confident = _loss_inputs(seed + 2, [4, 2], num_classes=3, M=14)
    return [Case(f"three images with {counts} proposals", _loss_inputs(seed, counts)),
            Case("7x7 masks, 6 classes, the middle image without proposals",
                 _loss_inputs(seed + 1, [3, 0, 2], num_classes=6, M=7, size=(24, 56))),
            Case("confident logits (x 12)", (confident[0] * 12, *confident[1:]))]


def _hidden_paste_cases(seed: int) -> list[Case]:
    """Never shown in the notebook: a tall image, random boxes and sizes, a box ending on the last pixel,
    a box less than a pixel wide, and padding 3."""
    g = torch.Generator().manual_seed(seed)
    H, W = (int(v) for v in torch.randint(30, 90, (2,), generator=g))
    m28, m7 = torch.rand(28, 28, generator=g), torch.rand(7, 7, generator=g)
    xy = torch.rand(2, generator=g) * torch.tensor([W * 0.7, H * 0.7])
    rand = torch.cat([xy, xy + 3 + torch.rand(2, generator=g) * 30])
    t = torch.tensor
    return [Case(f"a random box in a {H}x{W} image", (m28, rand, (H, W))),
            Case("a tall image (100 x 36)", (m28, t([4.6, 20.2, 30.8, 90.3]), (100, 36))),
            Case("a box ending on the last pixel", (m28, t([W - 20.0, H - 15.0, W - 1.0, H - 1.0]), (H, W))),
            Case("a box less than a pixel wide", (m7, t([10.2, 5.5, 10.6, 18.5]), (H, W))),
            Case("a 7x7 mask, padding 3", (m7, rand, (H, W)), dict(padding=3))]


check_maskrcnn_loss = checker(
    "check_maskrcnn_loss", maskrcnn_loss, _loss_cases, notebook="04_heads_mask_branch",
    hidden_cases=_hidden_loss_cases, given={"project_masks_on_boxes": project_masks_on_boxes},
    hint=["Each positive proposal is trained on one map only: the map of its ground-truth class. Find that class "
          "for every proposal of every image first.",
          "The target of a proposal is its matched gt mask cut out by the proposal and resized to M x M: "
          "project_masks_on_boxes does it for one image.",
          "With no proposals at all return mask_logits.sum() * 0 (a mean over nothing is NaN); otherwise "
          "F.binary_cross_entropy_with_logits(mask_logits[torch.arange(P), labels], targets)."])


check_paste_mask = checker(
    "check_paste_mask", paste_mask_in_image, _paste_cases, notebook="04_heads_mask_branch",
    hidden_cases=_hidden_paste_cases, given={"expand_boxes": expand_boxes},
    hint=["Pad the mask with `padding` zeros on every side and grow the box by the same factor, (M + 2 * padding) "
          "/ M, with expand_boxes; truncate the grown box to whole pixels with .to(torch.int64).",
          "Resize the padded mask to the box's pixels, both ends included: (y2 - y1 + 1, x2 - x1 + 1), at least 1, "
          "with F.interpolate(..., mode='bilinear', align_corners=False).",
          "Copy into an image of zeros only the part of the resized mask that lies inside the image."])


def _boxes(n, g, lo=6.0, hi=40.0, extent=80.0):
    xy = torch.rand(n, 2, generator=g) * extent
    return torch.cat([xy, xy + lo + torch.rand(n, 2, generator=g) * (hi - lo)], dim=1)


def _assign_inputs(g, n_props, n_gt, num_classes=4, near=0.6):
    """Proposals around some gt boxes (so that both labels occur) and elsewhere."""
    gt = _boxes(n_gt, g)
    labels = torch.randint(1, num_classes, (n_gt,), generator=g)
    if n_gt:
        around = gt[torch.randint(0, n_gt, (int(n_props * near),), generator=g)]
        around = around + torch.randn(around.shape, generator=g) * 4
        around[:, 2:] = torch.maximum(around[:, 2:], around[:, :2] + 1)
    else:
        around = torch.zeros(0, 4)
    props = torch.cat([around, _boxes(n_props - len(around), g)])
    return props, gt, labels


def _assign_cases() -> list[Case]:
    g = torch.Generator().manual_seed(40)
    t = torch.tensor
    return [Case("20 proposals, 3 objects", _assign_inputs(g, 20, 3)),
            Case("an image without objects: all background, matched index 0",
                 (_boxes(5, g), torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64))),
            Case("IoU exactly 0.5 is positive (>= the threshold)",
                 (t([[0., 0., 20., 10.], [0., 0., 10., 10.]]), t([[0., 0., 20., 10.]]), t([2]))),
            Case("each proposal takes the class of its best box, not the first above 0.5",
                 (t([[0., 0., 10., 10.]]), t([[0., 0., 12., 10.], [0., 0., 10., 11.]]), t([1, 3]))),
            Case("a proposal overlapping nothing is background", (t([[50., 50., 60., 60.]]),
                                                                 t([[0., 0., 10., 10.]]), t([2]))),
            Case("background RoIs get the placeholder index 0, whatever box they touch most",
                 (t([[0., 0., 10., 10.], [28., 0., 40., 10.]]), t([[0., 0., 10., 10.], [30., 0., 60., 10.]]),
                  t([1, 2])))]


def _fastrcnn_inputs(g, rois_per_image, num_classes=4, pos_fraction=0.3, scale=1.0):
    labels, targets = [], []
    for n in rois_per_image:
        lbl = torch.randint(1, num_classes, (n,), generator=g)
        lbl[torch.rand(n, generator=g) > pos_fraction] = 0
        labels.append(lbl)
        targets.append(torch.randn(n, 4, generator=g) * 0.5)
    total = sum(rois_per_image)
    return (torch.randn(total, num_classes, generator=g) * scale, torch.randn(total, num_classes * 4, generator=g) * scale,
            labels, targets)


def _fastrcnn_cases() -> list[Case]:
    g = torch.Generator().manual_seed(41)
    return [Case("one image, 16 RoIs, 4 classes", _fastrcnn_inputs(g, [16])),
            Case("two images", _fastrcnn_inputs(g, [10, 12])),
            Case("only background RoIs: box loss 0", _fastrcnn_inputs(g, [8], pos_fraction=0.0)),
            Case("91 classes (COCO)", _fastrcnn_inputs(g, [12], num_classes=91)),
            Case("large deltas: smooth L1 is linear beyond beta = 1/9", _fastrcnn_inputs(g, [10], scale=6.0))]


check_assign_targets_to_proposals = checker(
    "check_assign_targets_to_proposals", assign_targets_to_proposals, _assign_cases, notebook="04_heads_mask_branch",
    hidden_cases=lambda seed: (lambda g: [
        Case("40 proposals, 5 objects", _assign_inputs(g, 40, 5)),
        Case("one object, many proposals near it", _assign_inputs(g, 15, 1, near=0.9)),
        Case("10 classes", _assign_inputs(g, 25, 4, num_classes=10))])(torch.Generator().manual_seed(seed)),
    given={"box_iou": box_iou},
    forbidden=("course_lib.detection.roi_heads.assign_targets_to_proposals",
               "torchvision.models.detection.roi_heads.RoIHeads.assign_targets_to_proposals",
               "course_lib.detection._utils.Matcher", "torchvision.models.detection._utils.Matcher"),
    hint=["Compute the IoU of every gt box with every proposal (your box_iou from notebook 02, or the library's) "
          "and take, for each proposal, the best gt box and its IoU.",
          "Labels are the best box's class where that IoU >= 0.5, else 0 (background). Return two int64 tensors: "
          "the best box's index for every proposal (0 for background RoIs), and the labels.",
          "Without gt boxes (gt_boxes.numel() == 0) there is nothing to take a maximum over: return zeros for "
          "both."])


check_fastrcnn_loss = checker(
    "check_fastrcnn_loss", fastrcnn_loss, _fastrcnn_cases, notebook="04_heads_mask_branch",
    hidden_cases=lambda seed: (lambda g: [
        Case("three images", _fastrcnn_inputs(g, [6, 9, 4])),
        Case("all RoIs positive", _fastrcnn_inputs(g, [10], pos_fraction=1.1)),
        Case("confident logits (x15)", _fastrcnn_inputs(g, [12], scale=15.0))])(torch.Generator().manual_seed(seed)),
    forbidden=("course_lib.detection.roi_heads.fastrcnn_loss", "torchvision.models.detection.roi_heads.fastrcnn_loss"),
    hint=["Concatenate labels and regression_targets over the images. The classification loss is the "
          "cross-entropy of class_logits against all labels.",
          "For the box loss, reshape box_regression to (R, num_classes, 4) and take, for each positive RoI "
          "(label > 0), the 4 deltas of its own class.",
          "Smooth L1 with beta = 1/9 and reduction='sum' between those deltas and the positives' targets, divided "
          "by the number of all RoIs (labels.numel()), not of the positives."])
