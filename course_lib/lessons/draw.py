"""Drawing helpers every lesson shares: image grids, boxes on matplotlib axes, panels; and (re-exported from
``course_lib.training.overlays``) detections and targets drawn on images. Used in: every notebook.

Drawing on images uses ``torchvision.utils.draw_bounding_boxes`` / ``draw_segmentation_masks``; figures use
matplotlib. Images are (3, H, W) tensors, uint8 or float in [0, 1].
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import torch
from matplotlib.patches import Rectangle
from torch import Tensor

# Pictures drawn without matplotlib live in training.overlays (``./course predict`` draws them too); the
# notebooks and lessons reach them as draw.draw_target, draw.draw_detections, draw.draw_instances, draw.to_uint8.
from course_lib.training.overlays import draw_detections, draw_instances, draw_target, to_uint8  # noqa: F401
from course_lib.utils.colours import PALETTE, colour  # noqa: F401  (lessons use draw.colour)


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


def show_image(ax, image: Tensor, grey: bool = False) -> None:
    """``image`` (3, H, W) on ``ax`` in pixel coordinates (x right, y down); ``grey``: pale grey, so that
    coloured boxes drawn on it stand out."""
    img = to_uint8(image).permute(1, 2, 0).float() / 255
    if grey:
        img = img.mean(dim=2, keepdim=True).expand(-1, -1, 3) * 0.8 + 0.1
    ax.imshow(img.numpy(), extent=(0, image.shape[-1], image.shape[-2], 0))


def add_box(ax, box, color, lw=1.5, ls="-", alpha=1.0, fill=False, **kw):
    """One box ``(x1, y1, x2, y2)`` as a rectangle on ``ax``, outlined (or filled) in ``color``; ``kw`` go to
    matplotlib's ``Rectangle`` (``label=...`` for a legend)."""
    x1, y1, x2, y2 = [float(v) for v in box]
    ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=fill, ec=color, fc=color if fill else "none",
                           lw=lw, ls=ls, alpha=alpha, **kw))


def panel_grid(n: int, size: float = 3.0, nrows: int = 1):
    """A figure of ``nrows`` x ``n`` square panels of ``size`` inches: ``(fig, axes)``, axes always 2-D."""
    fig, axes = plt.subplots(nrows, n, figsize=(size * n, size * nrows + 0.3), squeeze=False)
    return fig, axes
