"""Notebook 06's figures: loss curves, precision-recall curves, one picture per detection error.
Taught in: 06_fine_tuning
"""

from __future__ import annotations

import numpy as np
import torch

from course_lib.training.error_analysis import as_binary_masks
from course_lib.training.pr_curves import PRCurve
from course_lib.utils.colours import rgb as hex_rgb


def plot_loss_curves(history: list[dict], smooth: int = 5, terms: list[str] | None = None):
    """One panel per loss term: every iteration (faint) and a running mean over ``smooth`` iterations;
    dotted lines mark the epoch boundaries. ``history`` is what ``fit`` returns. Returns the figure."""
    import matplotlib.pyplot as plt

    terms = terms or [k for k in history[0]["iters"] if k != "loss"] + ["loss"]
    fig, axes = plt.subplots(1, len(terms), figsize=(2.6 * len(terms), 2.6), squeeze=False)
    for ax, term in zip(axes[0], terms, strict=True):
        values = np.concatenate([h["iters"][term] for h in history])
        x = np.arange(1, len(values) + 1)
        ax.plot(x, values, color="#0072b2", alpha=0.3, lw=0.8)
        k = max(1, min(smooth, len(values)))
        ax.plot(x[k - 1:], np.convolve(values, np.ones(k) / k, mode="valid"), color="#0072b2", lw=1.6)
        for n in np.cumsum([len(h["iters"][term]) for h in history])[:-1]:
            ax.axvline(n + 0.5, color="#999999", ls=":", lw=0.8)
        ax.set_title(term, fontsize=9)
        ax.set_xlabel("iteration", fontsize=8)
        ax.set_yscale("log")
        ax.tick_params(which="both", labelsize=7)
    fig.tight_layout()
    from course_lib.lessons.draw import with_alt

    def first_last(term: str) -> str:
        values = np.concatenate([h["iters"][term] for h in history])
        k = max(1, min(smooth, len(values)))
        means = np.convolve(values, np.ones(k) / k, mode="valid")
        return f"{term} {means[0]:.3g} to {means[-1]:.3g}"

    return with_alt(fig, f"{len(terms)} line charts, one per loss term, of the loss at every training iteration "
                         f"(faint) and its running mean over {smooth} (solid), on a log scale, over "
                         f"{len(history)} epochs (dotted lines at their boundaries). Running mean from the first "
                         "to the last iteration: " + "; ".join(first_last(t) for t in terms) + ".")


def plot_pr_curves(curves: list[PRCurve], class_names: list[str] | None = None, title: str = ""):
    """One panel per IoU threshold, one line per class (colours as in ``course_lib.draw``). Returns the figure."""
    import matplotlib.pyplot as plt

    from course_lib.lessons.draw import colour

    ious = sorted({c.iou for c in curves})
    fig, axes = plt.subplots(1, len(ious), figsize=(4 * len(ious), 3.6), squeeze=False)
    for ax, iou in zip(axes[0], ious, strict=True):
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
    from course_lib.lessons.draw import with_alt

    aps = "; ".join(f"IoU {c.iou:.2f} {class_names[c.category_id] if class_names else c.category_id} AP {c.ap:.3f}"
                    for c in curves)
    return with_alt(fig, f"Precision (0 to 1) against recall (0 to 1), one panel per IoU threshold "
                         f"({', '.join(f'{i:.2f}' for i in ious)}), one line per class in its course colour. Each "
                         "curve stays near 1 while the detections above a score are right, drops as false "
                         f"positives come in and ends at the highest recall reached. {aps}.")


ERROR_TITLES = {"misses": "miss", "duplicates": "duplicate", "wrong_class": "wrong class", "poor_boxes": "poor box",
                "poor_masks": "poor mask", "background": "mislocalised"}
"""How ``draw_error`` names each kind. ``background`` (box IoU < 0.1 with every object) is named "mislocalised":
such a box is often not on empty background at all but a small box inside, or a large one around, an object."""

# Okabe-Ito sky blue, vermillion and yellow: apart for every colour vision (red and green are not).
GT_COLOUR, DET_COLOUR, BOTH_COLOUR = "#56b4e9", "#d55e00", "#f0e442"
COLOUR_NAMES = {GT_COLOUR: "blue", DET_COLOUR: "orange-red", BOTH_COLOUR: "yellow"}


def _overlay(canvas: torch.Tensor, gt_mask: torch.Tensor | None, det_mask: torch.Tensor | None,
             alpha: float = 0.6) -> torch.Tensor:
    """Grey the image, then colour the pixels of the ground-truth mask only (blue), of the detection's mask only
    (orange-red) and of both (yellow), so that the masks stand out from the shapes' own colours."""
    out = (canvas.float().mean(0, keepdim=True) * 0.7 + 40).expand(3, -1, -1).clone()
    h, w = canvas.shape[-2:]
    none = torch.zeros(h, w, dtype=torch.bool)
    g = gt_mask if gt_mask is not None else none
    d = det_mask if det_mask is not None else none
    for region, rgb in ((g & ~d, GT_COLOUR), (d & ~g, DET_COLOUR), (g & d, BOTH_COLOUR)):
        colour = torch.tensor(hex_rgb(rgb), dtype=torch.float32)[:, None]
        out[:, region] = (1 - alpha) * out[:, region] + alpha * colour
    return out.round().to(torch.uint8)


def _crop_box(boxes: list[torch.Tensor], h: int, w: int, margin: float = 0.5, min_size: int = 40) -> list[int]:
    """A square-ish window around ``boxes`` (xyxy) with ``margin`` times their size on each side, in the image."""
    b = torch.stack([torch.as_tensor(x, dtype=torch.float32) for x in boxes])
    x1, y1 = float(b[:, 0].min()), float(b[:, 1].min())
    x2, y2 = float(b[:, 2].max()), float(b[:, 3].max())
    side = min(max(w, h), max(min_size, (1 + 2 * margin) * max(x2 - x1, y2 - y1)))
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    left = int(round(min(max(0.0, cx - side / 2), max(0.0, w - side))))
    top = int(round(min(max(0.0, cy - side / 2), max(0.0, h - side))))
    return [left, top, min(w, left + int(round(side))), min(h, top + int(round(side)))]


def draw_error(image: torch.Tensor, output: dict, target: dict, kind: str, entry, class_names: list[str],
               mask_threshold: float = 0.5, zoom: bool = False, size: int = 192) -> tuple[torch.Tensor, str]:
    """A picture of one error: the ground-truth object's box and mask in blue, the detection's in orange-red, the
    pixels of both masks in yellow. Returns ``(picture, title)``.

    ``entry`` is one item of the ``ImageErrors`` list ``kind`` (a gt index for misses, a detection index
    for background, else a tuple that starts ``(det, gt, ...)``). By default the picture is the whole image with
    the names on the boxes (placed where they cover no other; with one class, "truth" and the score). With
    ``zoom=True`` it is the window around the two boxes, enlarged to about ``size`` pixels (nearest neighbour), and
    the names go into the title's second line, where they cannot be cut off.
    """
    from torchvision.utils import draw_bounding_boxes

    from course_lib.lessons.draw import to_uint8
    from course_lib.training.overlays import draw_labels

    canvas = to_uint8(image)
    h, w = canvas.shape[-2:]
    one_class = len(class_names) <= 2
    det, gt = (None, entry) if kind == "misses" else (entry, None) if kind == "background" else entry[:2]
    title = ERROR_TITLES[kind]
    if kind in ("poor_masks", "poor_boxes"):
        title += f", {'mask' if kind == 'poor_masks' else 'box'} IoU {entry[2]:.2f}"
    boxes, colours, names = [], [], []
    gt_mask = det_mask = None
    if gt is not None:
        gt_mask = torch.as_tensor(target["masks"][gt]).bool()
        boxes.append(torch.as_tensor(target["boxes"][gt]).float())
        colours.append(GT_COLOUR)
        names.append("truth" if one_class else f"truth {class_names[int(target['labels'][gt])]}")
    if det is not None:
        det_mask = as_binary_masks(output["masks"][det:det + 1], mask_threshold)[0].cpu()
        boxes.append(output["boxes"][det].detach().cpu().float())
        colours.append(DET_COLOUR)
        score = f"{float(output['scores'][det]):.2f}"
        names.append(score if one_class else f"{class_names[int(output['labels'][det])]} {score}")
    canvas = _overlay(canvas, gt_mask, det_mask)
    box_tensor = torch.stack(boxes)
    if zoom:
        x1, y1, x2, y2 = _crop_box(boxes, h, w)
        canvas = canvas[:, y1:y2, x1:x2]
        s = max(1, -(-size // max(canvas.shape[-2:])))  # ceil
        canvas = canvas.repeat_interleave(s, -2).repeat_interleave(s, -1)
        box_tensor = ((box_tensor - torch.tensor([x1, y1, x1, y1])) * s).clamp(min=0)
        box_tensor = torch.minimum(box_tensor, torch.tensor([canvas.shape[-1] - 1, canvas.shape[-2] - 1] * 2))
        canvas = draw_bounding_boxes(canvas, box_tensor, colors=colours, width=max(2, s))
        title += "\n" + ", ".join(f"{n} ({COLOUR_NAMES[c]})" for n, c in zip(names, colours, strict=True))
    else:
        canvas = draw_bounding_boxes(canvas, box_tensor, colors=colours, width=2)
        canvas = draw_labels(canvas, box_tensor, names, colours, font_size=10)
    return canvas, f"image {int(target['image_id'])}: {title}"
