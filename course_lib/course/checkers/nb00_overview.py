"""Checkers for 00_overview's exercises.
"""

import torch

from course_lib.course.checkers.core import Case, checker
from course_lib.ops.boxes import box_iou
from course_lib.training.error_analysis import match_detections
from course_lib.training.predict import binarize_masks, filter_detections

__all__ = ["check_binarize_masks", "check_filter_detections", "check_match_detections"]


def fake_detections(n: int, seed: int, size: tuple[int, int] = (32, 40), max_score: float = 1.0,
                    exact: float | None = None) -> dict:
    """A made-up output dict with ``n`` detections, for exercise checkers (sorted scores, soft masks)."""
    g = torch.Generator().manual_seed(seed)
    h, w = size
    xy = torch.rand(n, 2, generator=g) * torch.tensor([w / 2, h / 2])
    wh = torch.rand(n, 2, generator=g) * torch.tensor([w / 2, h / 2]) + 1
    scores = (torch.rand(n, generator=g) * max_score).sort(descending=True).values
    if exact is not None and n:
        scores[n // 2] = exact  # a score exactly at the threshold
        scores = scores.sort(descending=True).values
    return {"boxes": torch.cat([xy, xy + wh], 1), "labels": torch.randint(1, 4, (n,), generator=g),
            "scores": scores, "masks": torch.rand(n, 1, h, w, generator=g)}


def match_cases_boxes(seed: int, n_pred: int, n_gt: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Ground-truth boxes and detections near some of them (jittered copies and duplicates), for the checker."""
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n_gt, 2, generator=g) * 80
    gt = torch.cat([xy, xy + 20 + torch.rand(n_gt, 2, generator=g) * 30], 1)
    if n_gt == 0:
        return torch.rand(n_pred, 2, generator=g).repeat(1, 2) * 100 + torch.tensor([0, 0, 12, 12]), gt
    pick = torch.arange(n_pred) % n_gt
    pred = gt[pick] + (torch.rand(n_pred, 4, generator=g) - 0.5) * 8
    return pred, gt


def _detection_cases() -> list[Case]:
    return [Case("typical output, threshold 0.5", (fake_detections(8, seed=0), 0.5)),
            Case("threshold 0.9 keeps few", (fake_detections(8, seed=1), 0.9)),
            Case("no detections at all", (fake_detections(0, seed=2), 0.5)),
            Case("nothing above the threshold", (fake_detections(5, seed=3, max_score=0.3), 0.5)),
            Case("score exactly at the threshold is kept", (fake_detections(4, seed=4, exact=0.7), 0.7))]


def _masks_cases() -> list[Case]:
    return [Case("typical soft masks", (fake_detections(6, seed=5)["masks"], 0.5)),
            Case("no masks", (fake_detections(0, seed=6)["masks"], 0.5)),
            Case("other threshold", (fake_detections(3, seed=7)["masks"], 0.25))]


check_filter_detections = checker(
    "check_filter_detections", filter_detections, _detection_cases, notebook="00_overview",
    hidden_cases=lambda seed: [Case("10 detections, threshold 0.4", (fake_detections(10, seed=seed), 0.4)),
                               Case("7 detections, threshold 0.6", (fake_detections(7, seed=seed + 1), 0.6))],
    hint=["Every tensor in the output dict has one row per detection: decide once which rows to keep.",
          "Build one boolean index from output['scores'] >= score_threshold and apply it to every tensor in the "
          "dict (boxes, labels, scores, masks alike)."])


check_binarize_masks = checker(
    "check_binarize_masks", binarize_masks, _masks_cases, notebook="00_overview",
    hidden_cases=lambda seed: [Case("soft masks, threshold 0.6", (fake_detections(5, seed=seed)["masks"], 0.6))],
    hint=["Look at the shape first: the masks arrive as (N, 1, H, W) probabilities, the answer is (N, H, W).",
          "Drop the channel dimension (masks[:, 0]) and compare with the threshold to get bool."])


def _match_cases() -> list[Case]:
    pred, gt = match_cases_boxes(0, 8, 5)
    dup = gt[[1, 1, 2]] + torch.tensor([[0.0, 0, 0, 0], [1, 1, 1, 1], [30, 30, 30, 30]])  # a duplicate, a miss
    far = torch.tensor([[0.0, 0, 10, 10]])
    return [Case("jittered detections of 5 objects", (pred, gt, 0.5)),
            Case("a duplicate detection and one that hits nothing", (dup, gt, 0.5)),
            Case("stricter threshold 0.75", (pred, gt, 0.75)),
            Case("no detections", (pred[:0], gt, 0.5)),
            Case("no ground truth", (far, gt[:0], 0.5)),
            Case("a taken box must not block a detection's second-best box",
                 (torch.tensor([[0.0, 0, 10, 10], [1, 0, 11, 10]]),
                  torch.tensor([[0.0, 0, 10, 10], [1.5, 0, 11.5, 10]]), 0.5))]


check_match_detections = checker(
    "check_match_detections", match_detections, _match_cases, notebook="00_overview",
    forbidden=("course_lib.training.error_analysis.greedy_match",), given={"box_iou": box_iou},
    hint=["box_iou(pred_boxes, gt_boxes) gives an (N, M) matrix; go through its rows in order (best "
          "detection first) and keep a (M,) bool tensor of the ground-truth boxes already taken.",
          "in row i, ignore the taken columns (set them to -1 with masked_fill), take the argmax, and "
          "accept it only if that IoU >= iou_threshold; then mark the column taken.",
          "start from torch.full((N,), -1, dtype=torch.int64) and return it unchanged when N or M is 0."])
