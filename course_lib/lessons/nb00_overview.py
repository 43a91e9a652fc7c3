"""Notebook 00's pictures and examples: the pipeline diagram and made-up detections for the
exercises. Taught in: 00_overview
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import torch
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch


def pipeline_figure(highlight_mask_branch: bool = True):
    """The Mask R-CNN pipeline as a block diagram; the mask branch (the addition over Faster R-CNN) in red."""
    fig, ax = plt.subplots(figsize=(12, 4.2))
    ax.set_xlim(0, 12)
    ax.set_ylim(0, 4.2)
    ax.axis("off")
    blocks = {  # name: (x, y, w, h, text, colour)
        "image": (0.1, 1.6, 1.2, 1.0, "image\n3 x H x W", "#dddddd"),
        "backbone": (1.7, 1.6, 1.5, 1.0, "backbone\nResNet C2-C5\n(01)", "#cfe2f3"),
        "fpn": (3.6, 1.6, 1.3, 1.0, "FPN\nP2-P6\n(01)", "#cfe2f3"),
        "rpn": (5.0, 3.0, 2.3, 0.95, "RPN: anchors,\nobjectness, NMS (02)", "#d9ead3"),
        "roi": (5.3, 1.6, 1.7, 1.0, "RoIAlign\n7x7 / 14x14\n(03)", "#fff2cc"),
        "box": (7.5, 2.5, 2.0, 1.0, "box head: class +\nbox refinement (04)", "#fce5cd"),
        "mask": (7.5, 0.5, 2.0, 1.0, "mask head: 28x28\nmask per class (04)", "#f4cccc"),
        "out": (10.0, 1.5, 1.9, 1.2, "boxes, labels,\nscores, masks\n(00, 06)", "#dddddd"),
    }
    for name, (x, y, w, h, text, col) in blocks.items():
        edge = "#cc0000" if (name == "mask" and highlight_mask_branch) else "#444444"
        ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.05", fc=col, ec=edge,
                                    lw=2.5 if edge == "#cc0000" else 1.2))
        ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=10)

    def arrow(a, b, dy_a=0.0, dy_b=0.0):
        xa, ya, wa, ha = blocks[a][:4]
        xb, yb, wb, hb = blocks[b][:4]
        ax.add_patch(FancyArrowPatch((xa + wa, ya + ha / 2 + dy_a), (xb, yb + hb / 2 + dy_b),
                                     arrowstyle="-|>", mutation_scale=12, color="#444444"))

    for a, b in [("image", "backbone"), ("backbone", "fpn"), ("fpn", "rpn"), ("fpn", "roi"), ("roi", "box"),
                 ("roi", "mask"), ("box", "out"), ("mask", "out")]:
        arrow(a, b)
    ax.add_patch(FancyArrowPatch((6.15, 3.0), (6.15, 2.65), arrowstyle="-|>", mutation_scale=12, color="#444444"))
    ax.text(6.25, 2.72, "proposals", fontsize=9)
    # At inference the mask head sees the box head's final detections (after NMS), not the proposals.
    ax.add_patch(FancyArrowPatch((8.5, 2.45), (8.5, 1.55), arrowstyle="-|>", mutation_scale=12, color="#cc0000",
                                 linestyle="--"))
    ax.text(8.58, 2.0, "inference:\nafter NMS", fontsize=9, color="#cc0000", va="center")
    if highlight_mask_branch:
        ax.text(6.0, 0.05, "new in Mask R-CNN (red). Training: in parallel with the box head, on the sampled "
                "proposals. Inference: on the final detections.", ha="center", fontsize=9.5, color="#cc0000")
    ax.set_title("Mask R-CNN = Faster R-CNN + a mask branch (numbers: the notebook that opens each stage)",
                 fontsize=12)
    return fig


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


def match_detections(pred_boxes: torch.Tensor, gt_boxes: torch.Tensor, iou_threshold: float = 0.5) -> torch.Tensor:
    """For detections sorted best first, the index of the ground-truth box each one hits, or -1 (a miss).

    Greedy, as COCO evaluation does it: each detection in turn takes the not-yet-taken ground-truth box it
    overlaps most, if that IoU is at least ``iou_threshold``; a second detection of a taken box is a miss.
    ``pred_boxes`` (N, 4) and ``gt_boxes`` (M, 4) are xyxy; the result is (N,) int64.
    """
    from course_lib.ops.boxes import box_iou

    matched = torch.full((len(pred_boxes),), -1, dtype=torch.int64)
    if len(pred_boxes) == 0 or len(gt_boxes) == 0:
        return matched
    iou = box_iou(pred_boxes, gt_boxes)
    taken = torch.zeros(len(gt_boxes), dtype=torch.bool)
    for i in range(len(pred_boxes)):
        row = iou[i].masked_fill(taken, -1.0)
        best = int(row.argmax())
        if row[best] >= iou_threshold:
            matched[i] = best
            taken[best] = True
    return matched


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


def soft_mask_figure(prob: torch.Tensor, threshold: float = 0.5):
    """A soft mask (H, W) of probabilities with a colour bar, next to the binary mask at ``threshold``."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(8, 3.6))
    im = a.imshow(prob.numpy(), cmap="viridis", vmin=0, vmax=1)
    fig.colorbar(im, ax=a, fraction=0.046, pad=0.04, label="probability")
    a.set_title("mask probabilities (detection 0)")
    b.imshow((prob > threshold).numpy(), cmap="gray")
    b.set_title(f"thresholded at {threshold}")
    for ax in (a, b):
        ax.axis("off")
    fig.tight_layout()
    return fig
