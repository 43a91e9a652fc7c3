"""Notebook 00's pictures and examples: the pipeline diagram,
detections drawn with legible labels, and the model on real photographs. Taught in: 00_overview
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Rectangle
from torchvision.utils import draw_segmentation_masks

from course_lib.lessons.draw import colour, to_uint8, with_alt
from course_lib.training.overlays import place_labels
from course_lib.training.predict import binarize_masks, filter_detections, run_inference
from course_lib.utils.colours import text_colour_on
from course_lib.utils.ui import headless

# scikit-image's sample photographs: they ship inside its wheel, so nothing is downloaded.
PHOTOS = ("astronaut", "coffee", "chelsea")


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
    return with_alt(fig, "Block diagram of Mask R-CNN, left to right: image, ResNet backbone (notebook 01), FPN with "
                    "levels P2 to P6 (01), then the RPN (02) sends proposals to RoIAlign (03), which feeds a box head "
                    "(class and box refinement, 04) and a mask head (28 by 28 mask per class, 04); both lead to the "
                    "output of boxes, labels, scores and masks. "
                    + ("The mask head is outlined in red as the one addition over Faster R-CNN; a dashed arrow "
                       "says that at inference it works on the box head's detections after NMS."
                       if highlight_mask_branch else "At inference the mask head works on the box head's detections "
                       "after NMS."))


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
    inside = float((prob > threshold).float().mean()) * 100
    return with_alt(fig, f"Two panels. Left: one detection's mask probabilities, {prob.shape[-1]} by "
                         f"{prob.shape[-2]} pixels, on a colour scale from 0 (dark) to 1 (yellow): high inside the "
                         "object, low outside, intermediate only along its border. Right: the same mask thresholded "
                         f"at {threshold}, white inside ({inside:.0f} % of the pixels), black outside.")


# ---- detections drawn with matplotlib: labels in points, placed so that they do not overlap ------------------

def _place_labels(ax, boxes: list[list[float]], texts: list[str], colours: list[str], fontsize: float) -> list:
    """One label per box, at a corner of its box where it overlaps no other label and stays inside the picture
    (``training.overlays.place_labels``, here in display pixels); black or white text, whichever reads better on
    the label's colour."""
    canvas = ax.figure.canvas  # Agg (inline, headless) has get_renderer; other canvases: matplotlib's own
    renderer = canvas.get_renderer() if hasattr(canvas, "get_renderer") else ax.figure._get_renderer()
    frame = ax.get_window_extent(renderer)
    top = ax.figure.bbox.height  # display y grows upwards; place_labels' y grows downwards
    pad = 1.5
    artists, rects, sizes = [], [], []
    for (x1, y1, x2, y2), text, col in zip(boxes, texts, colours, strict=True):
        t = ax.text(0, 0, text, fontsize=fontsize, color=text_colour_on(col), ha="left", va="top", clip_on=True,
                    bbox=dict(fc=col, alpha=0.85, lw=0, pad=1.2))
        ext = t.get_window_extent(renderer).padded(pad)
        (ax1, ay1), (ax2, ay2) = ax.transData.transform([(x1, y1), (x2, y2)])
        rects.append((min(ax1, ax2), top - max(ay1, ay2), max(ax1, ax2), top - min(ay1, ay2)))
        sizes.append((ext.width, ext.height))
        artists.append(t)
    spots = place_labels(rects, sizes, (frame.x0, top - frame.y1, frame.x1, top - frame.y0))
    to_data = ax.transData.inverted()
    for t, (x, y) in zip(artists, spots, strict=True):
        t.set_position(to_data.transform((x + pad, top - (y + pad))))
    return artists


def _draw_panel(ax, image: torch.Tensor, boxes, labels, masks, class_names: list[str], scores=None,
                title: str = "") -> None:
    """A picture with its masks (painted into the pixels) and boxes (drawn by matplotlib, crisp at any size)."""
    canvas = to_uint8(image)
    colours = [colour(lab) for lab in labels.tolist()]
    if masks is not None and len(masks):
        canvas = draw_segmentation_masks(canvas, masks.bool().cpu(), alpha=0.45, colors=colours)
    h, w = canvas.shape[-2:]
    ax.imshow(canvas.permute(1, 2, 0).numpy(), interpolation="nearest", extent=(0, w, h, 0))
    for (x1, y1, x2, y2), col in zip(torch.as_tensor(boxes).tolist(), colours, strict=True):
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, ec=col, lw=1.5))
    ax.set_xlim(0, w)
    ax.set_ylim(h, 0)
    ax.set_title(title, fontsize=9)
    ax.axis("off")
    names = [class_names[lab] if lab < len(class_names) else str(lab) for lab in labels.tolist()]
    if scores is not None:
        names = [f"{n} {s:.2f}" for n, s in zip(names, scores.tolist(), strict=True)]
    ax._course_labels = (torch.as_tensor(boxes).tolist(), names, colours)  # placed once the layout is final


def _finish(fig, fontsize: float = 8):
    fig.tight_layout()
    for ax in fig.axes:
        if hasattr(ax, "_course_labels"):
            _place_labels(ax, *ax._course_labels, fontsize=fontsize)
            del ax._course_labels
    return fig


def _names(kept: dict, class_names: list[str], top: int = 6) -> str:
    """"2 circles, 1 square" for the labels of a detections or target dict ("nothing" for none)."""
    counts: dict[str, int] = {}
    for lab in torch.as_tensor(kept["labels"]).tolist():
        name = class_names[lab] if lab < len(class_names) else str(lab)
        counts[name] = counts.get(name, 0) + 1
    if not counts:
        return "nothing"

    def plural(name: str, n: int) -> str:
        return name if n == 1 else name + ("es" if name.endswith(("s", "x", "sh", "ch")) else "s")

    return ", ".join(f"{n} {plural(name, n)}" for name, n in list(counts.items())[:top])


def _describe_pair(target: dict, output: dict, class_names: list[str], score_threshold: float) -> str:
    kept = filter_detections(output, score_threshold)
    return (f"Image {int(target['image_id'])}: ground truth {_names(target, class_names)}; "
            f"detected {_names(kept, class_names)}.")


def detections_figure(samples: list, outputs: list[dict], class_names: list[str], score_threshold: float = 0.5,
                      ncols: int = 4, size: float = 3.0):
    """Ground truth and prediction side by side for each ``(image, target)`` in ``samples``.

    The labels are matplotlib text in points, so they stay legible on a 128-pixel image, and each one goes to
    a corner of its box where it covers no other label.
    """
    n = 2 * len(samples)
    nrows = (n + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows + 0.2), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    panels = iter(axes.flat)
    for (image, target), out in zip(samples, outputs, strict=True):
        _draw_panel(next(panels), image, target["boxes"], target["labels"], target.get("masks"), class_names,
                    title=f"image {target['image_id']}: ground truth")
        kept = filter_detections(out, score_threshold)
        _draw_panel(next(panels), image, kept["boxes"], kept["labels"], binarize_masks(kept["masks"]),
                    class_names, kept["scores"], title=f"prediction (score >= {score_threshold})")
    return with_alt(_finish(fig), f"{len(samples)} validation images, each twice: the ground truth, then the "
                                  f"model's detections with a score of at least {score_threshold}. "
                                  + " ".join(_describe_pair(t, o, class_names, score_threshold)
                                             for (_, t), o in zip(samples, outputs, strict=True))
                                  + " Masks are painted in each class's colour and every label sits at a corner "
                                  "of its box where it covers no other label.")


# ---- real photographs --------------------------------------------------------------------------------------

def load_photos() -> dict[str, torch.Tensor]:
    """scikit-image's astronaut, coffee and cat photographs as (3, H, W) float tensors in [0, 1]."""
    from skimage import data

    return {name: torch.from_numpy(getattr(data, name)()).permute(2, 0, 1).float() / 255 for name in PHOTOS}


def fit_to_model(photo: torch.Tensor, model) -> torch.Tensor:
    """The photo shrunk (never enlarged) so that its longer side is at most the model's largest input side
    (``model.transform.max_size``: 128 for the course model, 1333 for torchvision's COCO model)."""
    longest = max(photo.shape[-2:])
    limit = int(model.transform.max_size)
    if longest <= limit:
        return photo
    h, w = (round(s * limit / longest) for s in photo.shape[-2:])
    return F.interpolate(photo[None], size=(h, w), mode="bilinear", antialias=True, align_corners=False)[0].clamp(0, 1)


def detect_on_photo(model, photo: torch.Tensor, device: torch.device | str = "cpu") -> tuple[torch.Tensor, dict]:
    """Run ``model`` on one photo at the size it works at: ``(the photo it saw, its output dict)``."""
    seen = fit_to_model(photo, model)
    return seen, run_inference(model, [seen], device)[0]


def photo_note(source: str, weights_file) -> str:
    """One sentence for the learner: with COCO weights what the photos show, without them how to get them."""
    from course_lib.detection.course_model import GET_COCO_WEIGHTS
    from course_lib.utils.paths import shown

    if source == "coco":
        return ("torchvision's COCO model on three photographs: it knows 80 everyday classes, "
                "so people, cups and cats are what it was trained to find.")
    return ("With torchvision's COCO weights you would see the astronaut, the cup and the cat found and named "
            "here; to get them, " + GET_COCO_WEIGHTS.format(path=shown(weights_file)) + ".")


def describe_photo_results(results: dict, class_names: list[str], score_threshold: float = 0.5,
                           top: int = 5) -> str:
    """One line per photo: its size as the model saw it and its best detections at ``score_threshold``."""
    lines = []
    for name, (seen, out) in results.items():
        kept = filter_detections(out, score_threshold)
        found = ", ".join(f"{class_names[lab]} {score:.2f}" for lab, score in
                          zip(kept["labels"][:top].tolist(), kept["scores"][:top].tolist(), strict=True))
        more = f" and {len(kept['scores']) - top} more" if len(kept["scores"]) > top else ""
        lines.append(f"{name:9s} seen at {seen.shape[-1]}x{seen.shape[-2]}: {len(kept['scores'])} detection(s) "
                     f"with score >= {score_threshold:.2f}" + (f": {found}{more}" if found else ""))
    return "\n".join(lines)


def photo_figure(results: dict, class_names: list[str], score_threshold: float = 0.5, size: float = 4.0):
    """Each photo as the model saw it, with its detections at ``score_threshold`` (one panel per photo)."""
    fig, axes = plt.subplots(1, len(results), figsize=(size * len(results), size * 0.85), squeeze=False)
    for ax, (name, (seen, out)) in zip(axes.flat, results.items(), strict=True):
        kept = filter_detections(out, score_threshold)
        _draw_panel(ax, seen, kept["boxes"], kept["labels"], binarize_masks(kept["masks"]), class_names,
                    kept["scores"], title=f"{name} ({seen.shape[-1]}x{seen.shape[-2]} px): "
                                          f"{len(kept['scores'])} with score >= {score_threshold:.2f}")
    return with_alt(_finish(fig), "The photographs as the model saw them, with its detections at a score of at "
                                  f"least {score_threshold:.2f}: " + "; ".join(
                                      f"{name}: {_names(filter_detections(out, score_threshold), class_names)}"
                                      for name, (seen, out) in results.items()) + ".")


def photo_explorer(results: dict, class_names: list[str], score_threshold: float = 0.5):
    """A score-threshold slider over the photos' detections; the model does not run again when it moves.

    In JupyterLab: an ``ipywidgets.interactive`` (returned; the notebook displays it). Headless: prints the
    detections and draws the figure once at ``score_threshold``, and returns ``None``.
    """
    def show(score_threshold=score_threshold):
        print(describe_photo_results(results, class_names, score_threshold))
        photo_figure(results, class_names, score_threshold)
        plt.show()

    if headless():
        show()
        return None
    import ipywidgets as W

    return W.interactive(show, score_threshold=W.FloatSlider(value=score_threshold, min=0.05, max=1.0, step=0.05,
                                                             description="score >=", continuous_update=False))
