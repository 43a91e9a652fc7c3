"""Notebook 06's figures: loss curves, precision-recall curves, one picture per detection error.
Taught in: 06_fine_tuning
"""

from __future__ import annotations

import numpy as np
import torch

from course_lib.training.error_analysis import _binary
from course_lib.training.pr_curves import PRCurve


def plot_loss_curves(history: list[dict], smooth: int = 5, terms: list[str] | None = None):
    """One panel per loss term: every iteration (faint) and a running mean over ``smooth`` iterations;
    dotted lines mark the epoch boundaries. ``history`` is what ``fit`` returns. Returns the figure."""
    import matplotlib.pyplot as plt

    terms = terms or [k for k in history[0]["iters"] if k != "loss"] + ["loss"]
    fig, axes = plt.subplots(1, len(terms), figsize=(2.6 * len(terms), 2.6), squeeze=False)
    for ax, term in zip(axes[0], terms):
        values = np.concatenate([h["iters"][term] for h in history])
        x = np.arange(1, len(values) + 1)
        ax.plot(x, values, color="#4363d8", alpha=0.3, lw=0.8)
        k = max(1, min(smooth, len(values)))
        ax.plot(x[k - 1:], np.convolve(values, np.ones(k) / k, mode="valid"), color="#4363d8", lw=1.6)
        for n in np.cumsum([len(h["iters"][term]) for h in history])[:-1]:
            ax.axvline(n + 0.5, color="#999999", ls=":", lw=0.8)
        ax.set_title(term, fontsize=9)
        ax.set_xlabel("iteration", fontsize=8)
        ax.set_yscale("log")
        ax.tick_params(which="both", labelsize=7)
    fig.tight_layout()
    return fig


def plot_pr_curves(curves: list[PRCurve], class_names: list[str] | None = None, title: str = ""):
    """One panel per IoU threshold, one line per class (colours as in ``course_lib.draw``). Returns the figure."""
    import matplotlib.pyplot as plt

    from course_lib.lessons.draw import colour

    ious = sorted({c.iou for c in curves})
    fig, axes = plt.subplots(1, len(ious), figsize=(4 * len(ious), 3.6), squeeze=False)
    for ax, iou in zip(axes[0], ious):
        for c in (c for c in curves if c.iou == iou):
            name = class_names[c.category_id] if class_names else str(c.category_id)
            ax.plot(c.recall, c.precision, color=colour(c.category_id), lw=1.8, label=f"{name} (AP {c.ap:.3f})")
        ax.set_xlim(0, 1.02)
        ax.set_ylim(0, 1.05)
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.set_title(f"{title} IoU {iou:.2f}".strip(), fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    return fig


def draw_error(image: torch.Tensor, output: dict, target: dict, kind: str, entry, class_names: list[str],
               mask_threshold: float = 0.5) -> tuple[torch.Tensor, str]:
    """A picture of one error: the ground-truth object in green, the detection in red. Returns ``(picture, title)``.

    ``entry`` is one item of the ``ImageErrors`` list ``kind`` (a gt index for misses, a detection index
    for background, else a tuple that starts ``(det, gt, ...)``).
    """
    from torchvision.utils import draw_bounding_boxes, draw_segmentation_masks

    from course_lib.lessons.draw import to_uint8

    canvas = to_uint8(image)
    det, gt = (None, entry) if kind == "misses" else (entry, None) if kind == "background" else entry[:2]
    title = {"misses": "miss", "duplicates": "duplicate", "wrong_class": "wrong class", "poor_boxes": "poor box",
             "poor_masks": "poor mask", "background": "background"}[kind]
    if gt is not None:
        mask = torch.as_tensor(target["masks"][gt]).bool()[None]
        canvas = draw_segmentation_masks(canvas, mask, alpha=0.35, colors="#00e000")
        canvas = draw_bounding_boxes(canvas, torch.as_tensor(target["boxes"][gt])[None].float(), width=2,
                                     labels=[f"gt {class_names[int(target['labels'][gt])]}"], colors="#00e000")
    if det is not None:
        mask = _binary(output["masks"][det:det + 1], mask_threshold)
        canvas = draw_segmentation_masks(canvas, mask, alpha=0.35, colors="#ff1010")
        label = f"{class_names[int(output['labels'][det])]} {float(output['scores'][det]):.2f}"
        canvas = draw_bounding_boxes(canvas, output["boxes"][det][None], labels=[label], colors="#ff1010", width=2)
    if kind in ("poor_masks", "poor_boxes"):
        title += f", {'mask' if kind == 'poor_masks' else 'box'} IoU {entry[2]:.2f}"
    return canvas, f"image {int(target['image_id'])}: {title}"
