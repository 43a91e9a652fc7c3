"""Drawing helpers every lesson shares: detections and targets on images, image grids, box outlines.
Used in: every notebook.

Drawing on images uses ``torchvision.utils.draw_bounding_boxes`` / ``draw_segmentation_masks``; figures use
matplotlib. Images are (3, H, W) tensors, uint8 or float in [0, 1].
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import torch
from matplotlib.patches import Rectangle
from torch import Tensor
from torchvision.utils import draw_bounding_boxes, draw_segmentation_masks

from course_lib.training.predict import binarize_masks, filter_detections
from course_lib.utils.colours import PALETTE, colour  # noqa: F401  (lessons use draw.colour)

_FONT = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"  # a scalable font for labels


def to_uint8(image: torch.Tensor) -> torch.Tensor:
    """(3, H, W) float in [0, 1] or uint8 -> uint8 on the CPU."""
    image = image.detach().cpu()
    return image if image.dtype == torch.uint8 else (image.clamp(0, 1) * 255).round().to(torch.uint8)


def draw_instances(image: torch.Tensor, boxes: torch.Tensor, labels: torch.Tensor, masks: torch.Tensor | None,
                   class_names: list[str], scores: torch.Tensor | None = None, alpha: float = 0.45,
                   width: int = 1, upscale: int | None = None, font_size: int | None = None,
                   fill_labels: bool = False) -> torch.Tensor:
    """Boxes (N, 4) xyxy, labels (N,), masks (N, H, W) bool or None -> a uint8 (3, sH, sW) picture.

    Small images are enlarged ``upscale`` times first (by default enough to reach about 384 pixels, nearest
    neighbour), so that the labels, drawn in a fixed-size font, stay legible and overlap less. ``font_size``
    (pixels of the enlarged picture) defaults to ``5 * upscale + 1``: for crowded images, enlarge more
    (``upscale=6``) with a smaller font (``font_size=18``) and show the picture larger. ``fill_labels``
    writes each label in white on a box of its colour, legible on any background.
    """
    canvas = to_uint8(image)
    s = max(1, 384 // max(canvas.shape[-2:])) if upscale is None else max(1, int(upscale))
    if s > 1:
        canvas = canvas.repeat_interleave(s, -2).repeat_interleave(s, -1)
        boxes = torch.as_tensor(boxes).float() * s
        if masks is not None and len(masks):
            masks = masks.bool().repeat_interleave(s, -2).repeat_interleave(s, -1)
        width = width * s
    colours = [colour(lab) for lab in labels.tolist()]
    if masks is not None and len(masks):
        canvas = draw_segmentation_masks(canvas, masks.bool().cpu(), alpha=alpha, colors=colours)
    names = [class_names[lab] if lab < len(class_names) else str(lab) for lab in labels.tolist()]
    if scores is not None:
        names = [f"{n} {s:.2f}" for n, s in zip(names, scores.tolist(), strict=True)]
    if len(boxes):
        canvas = draw_bounding_boxes(canvas, boxes.cpu(), labels=names, colors=colours, width=width,
                                     font=_FONT if _FONT.exists() else None,
                                     font_size=font_size or max(10, 5 * s + 1),
                                     **(dict(fill_labels=True, label_colors="white") if fill_labels else {}))
    return canvas


def draw_detections(image: torch.Tensor, output: dict, class_names: list[str], score_threshold: float = 0.5,
                    mask_threshold: float = 0.5, **kwargs) -> torch.Tensor:
    """A model's output dict drawn on its image (detections below ``score_threshold`` left out).
    ``kwargs`` go to ``draw_instances`` (``upscale``, ``font_size``, ...)."""
    kept = filter_detections(output, score_threshold)
    masks = binarize_masks(kept["masks"], mask_threshold) if "masks" in kept else None
    return draw_instances(image, kept["boxes"], kept["labels"], masks, class_names, kept["scores"], **kwargs)


def draw_target(image: torch.Tensor, target: dict, class_names: list[str], **kwargs) -> torch.Tensor:
    """A ground-truth target dict (boxes, labels, masks) drawn on its image; ``kwargs`` as in ``draw_detections``."""
    return draw_instances(image, torch.as_tensor(target["boxes"]), target["labels"], target.get("masks"),
                          class_names, **kwargs)


def show_images(images: list[torch.Tensor], titles: list[str] | None = None, ncols: int = 4,
                size: float = 3.0, suptitle: str | None = None, value_range: tuple[float, float] | None = None):
    """A grid of (3, H, W) or (H, W) tensors; returns the matplotlib figure.

    (H, W) tensors are value maps (viridis). With ``value_range`` = (vmin, vmax) they share that scale and one
    colour bar, so that panels can be compared; without it each map is scaled to its own range.
    """
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
            vmin, vmax = value_range if value_range else (None, None)
            mappable = ax.imshow(img.float().numpy(), cmap="viridis", vmin=vmin, vmax=vmax)
        if titles:
            ax.set_title(titles[i], fontsize=9)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    if value_range and any(img.ndim == 2 for img in images):
        fig.colorbar(mappable, ax=axes.ravel().tolist(), fraction=0.015, pad=0.01)
    return fig


def plot_boxes(ax, image: Tensor, boxes: Tensor, colours: list[str], texts: list[str] | None = None,
               legend: list[str] | None = None, styles: list[str] | None = None, lw: float = 1.5,
               alpha: float = 1.0, zoom: tuple[float, float, float, float] | None = None, title: str = ""):
    """Draw an image and boxes on a matplotlib axis (crisper than drawing on a small image's pixels).

    ``texts`` go on the boxes, ``legend`` into a legend beside the picture; ``zoom`` = (x1, y1, x2, y2)
    shows only that part of the image.
    """
    from matplotlib.patches import Rectangle

    from course_lib.lessons.draw import to_uint8

    ax.imshow(to_uint8(image).permute(1, 2, 0).numpy())
    for i, (x1, y1, x2, y2) in enumerate(torch.as_tensor(boxes).tolist()):
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, ec=colours[i], lw=lw, alpha=alpha,
                               ls=styles[i] if styles else "-", label=legend[i] if legend else None))
        if texts and texts[i]:
            ax.text(x1 + 0.5, y1 + 0.5, texts[i], fontsize=7, color="white", va="top", ha="left",
                    bbox=dict(fc=colours[i], alpha=0.8, lw=0, pad=1))
    if zoom is not None:
        ax.set_xlim(zoom[0], zoom[2])
        ax.set_ylim(zoom[3], zoom[1])
    if legend:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    ax.set_title(title, fontsize=9)
    ax.axis("off")


POS, NEU, NEG, GT = "#2ca02c", "#ffbf00", "#d62728", "#ffffff"  # colours: positive, neutral, negative, gt


def _show(ax, image: Tensor, grey: bool = False) -> None:
    img = to_uint8(image).permute(1, 2, 0).float() / 255
    if grey:
        img = img.mean(dim=2, keepdim=True).expand(-1, -1, 3) * 0.8 + 0.1
    ax.imshow(img.numpy(), extent=(0, image.shape[-1], image.shape[-2], 0))


def _box(ax, box, colour, lw=1.5, ls="-", alpha=1.0, fill=False, **kw):
    x1, y1, x2, y2 = [float(v) for v in box]
    ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=fill, ec=colour, fc=colour if fill else "none",
                           lw=lw, ls=ls, alpha=alpha, **kw))


def _axes(n: int, size: float = 3.0, nrows: int = 1):
    fig, axes = plt.subplots(nrows, n, figsize=(size * n, size * nrows + 0.3), squeeze=False)
    return fig, axes
