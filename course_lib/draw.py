"""Pictures: detections, targets, image grids and the pipeline diagram. Used in: every notebook.

Drawing on images uses ``torchvision.utils.draw_bounding_boxes`` / ``draw_segmentation_masks``;
figures use matplotlib. Images are (3, H, W) tensors, uint8 or float in [0, 1].
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import torch
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch
from torchvision.utils import draw_bounding_boxes, draw_segmentation_masks

# One colour per class index, reused across notebooks so a class looks the same everywhere.
PALETTE = ["#000000", "#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#46f0f0", "#f032e6",
           "#bcf60c", "#fabebe", "#008080", "#e6beff", "#9a6324", "#800000", "#808000", "#000075"]


def to_uint8(image: torch.Tensor) -> torch.Tensor:
    """(3, H, W) float in [0, 1] or uint8 -> uint8 on the CPU."""
    image = image.detach().cpu()
    return image if image.dtype == torch.uint8 else (image.clamp(0, 1) * 255).round().to(torch.uint8)


def colour(label: int) -> str:
    return PALETTE[int(label) % len(PALETTE)]


def draw_instances(image: torch.Tensor, boxes: torch.Tensor, labels: torch.Tensor, masks: torch.Tensor | None,
                   class_names: list[str], scores: torch.Tensor | None = None, alpha: float = 0.45,
                   width: int = 1) -> torch.Tensor:
    """Boxes (N, 4) xyxy, labels (N,), masks (N, H, W) bool or None -> a uint8 (3, H, W) picture."""
    canvas = to_uint8(image)
    colours = [colour(lab) for lab in labels.tolist()]
    if masks is not None and len(masks):
        canvas = draw_segmentation_masks(canvas, masks.bool().cpu(), alpha=alpha, colors=colours)
    names = [class_names[lab] if lab < len(class_names) else str(lab) for lab in labels.tolist()]
    if scores is not None:
        names = [f"{n} {s:.2f}" for n, s in zip(names, scores.tolist())]
    if len(boxes):
        canvas = draw_bounding_boxes(canvas, boxes.cpu(), labels=names, colors=colours, width=width)
    return canvas


def draw_detections(image: torch.Tensor, output: dict, class_names: list[str], score_threshold: float = 0.5,
                    mask_threshold: float = 0.5) -> torch.Tensor:
    """A model's output dict drawn on its image (detections below ``score_threshold`` left out)."""
    keep = output["scores"] >= score_threshold
    masks = output["masks"][keep, 0] > mask_threshold if "masks" in output else None
    return draw_instances(image, output["boxes"][keep], output["labels"][keep], masks, class_names,
                          output["scores"][keep])


def draw_target(image: torch.Tensor, target: dict, class_names: list[str]) -> torch.Tensor:
    """A ground-truth target dict (boxes, labels, masks) drawn on its image."""
    return draw_instances(image, torch.as_tensor(target["boxes"]), target["labels"], target.get("masks"),
                          class_names)


def show_images(images: list[torch.Tensor], titles: list[str] | None = None, ncols: int = 4,
                size: float = 3.0, suptitle: str | None = None):
    """A grid of (3, H, W) or (H, W) tensors; returns the matplotlib figure."""
    n = len(images)
    ncols = min(ncols, n)
    nrows = (n + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, img in enumerate(images):
        ax = axes.flat[i]
        img = img.detach().cpu()
        if img.ndim == 3:
            ax.imshow(to_uint8(img).permute(1, 2, 0).numpy())
        else:
            ax.imshow(img.float().numpy(), cmap="viridis")
        if titles:
            ax.set_title(titles[i], fontsize=9)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


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
