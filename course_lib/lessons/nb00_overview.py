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
        "rpn": (5.15, 3.0, 2.0, 0.95, "RPN: anchors,\nobjectness, NMS (02)", "#d9ead3"),
        "roi": (5.3, 1.6, 1.7, 1.0, "RoIAlign\n7x7 / 14x14\n(03)", "#fff2cc"),
        "box": (7.5, 2.5, 2.0, 1.0, "box head: class +\nbox refinement (04)", "#fce5cd"),
        "mask": (7.5, 0.5, 2.0, 1.0, "mask head: 28x28\nmask per class (04)", "#f4cccc"),
        "out": (10.0, 1.5, 1.9, 1.2, "boxes, labels,\nscores, masks\n(00, 06)", "#dddddd"),
    }
    for name, (x, y, w, h, text, col) in blocks.items():
        edge = "#cc0000" if (name == "mask" and highlight_mask_branch) else "#444444"
        ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.05", fc=col, ec=edge,
                                    lw=2.5 if edge == "#cc0000" else 1.2))
        ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=9)

    def arrow(a, b, dy_a=0.0, dy_b=0.0):
        xa, ya, wa, ha = blocks[a][:4]
        xb, yb, wb, hb = blocks[b][:4]
        ax.add_patch(FancyArrowPatch((xa + wa, ya + ha / 2 + dy_a), (xb, yb + hb / 2 + dy_b),
                                     arrowstyle="-|>", mutation_scale=12, color="#444444"))

    for a, b in [("image", "backbone"), ("backbone", "fpn"), ("fpn", "rpn"), ("fpn", "roi"), ("roi", "box"),
                 ("roi", "mask"), ("box", "out"), ("mask", "out")]:
        arrow(a, b)
    ax.add_patch(FancyArrowPatch((6.15, 3.0), (6.15, 2.65), arrowstyle="-|>", mutation_scale=12, color="#444444"))
    ax.text(6.25, 2.72, "proposals", fontsize=8)
    if highlight_mask_branch:
        ax.text(8.5, 0.15, "new in Mask R-CNN (red): runs in parallel with the box head",
                ha="center", fontsize=9, color="#cc0000")
    ax.set_title("Mask R-CNN = Faster R-CNN + a parallel mask branch (numbers: the notebook that opens each stage)")
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
