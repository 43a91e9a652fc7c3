"""Drawing helpers every lesson shares: image grids, boxes on matplotlib axes, panels; alt text for figures; and
(re-exported from ``course_lib.training.overlays``) detections and targets drawn on images. Used in: every notebook.

Drawing on images uses ``torchvision.utils.draw_bounding_boxes`` / ``draw_segmentation_masks``; figures use
matplotlib. Images are (3, H, W) tensors, uint8 or float in [0, 1].

**Alt text.** Every figure a notebook shows says in words what it shows: ``with_alt(fig, text)`` stores the text on
the figure (lesson functions do it themselves, ``show_images(..., alt=...)`` takes it), and importing this module
registers IPython formatters (``register_alt_text``) that put it into the displayed output: as the ``alt`` metadata
of its ``image/png`` (what nbconvert, nbsphinx and Jupyter Book write into ``<img alt=...>``) and, in a live
kernel (not headless), also as a ``text/html`` ``<img alt=...>`` holding the same PNG, because JupyterLab (4.6)
ignores the metadata and renders a trusted output's HTML before its PNG (an untrusted one falls back to the PNG).
"""

from __future__ import annotations

import html

import matplotlib.pyplot as plt
import torch
from matplotlib.colors import to_hex
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from torch import Tensor

# Pictures drawn without matplotlib live in training.overlays (``./course predict`` draws them too); the
# notebooks and lessons reach them as draw.draw_target, draw.draw_detections, draw.draw_instances, draw.to_uint8.
from course_lib.training.overlays import draw_detections, draw_instances, draw_target, to_uint8  # noqa: F401
from course_lib.utils.colours import PALETTE, colour, text_colour_on  # noqa: F401  (lessons use draw.colour)
from course_lib.utils.ui import headless

# ---- alt text -----------------------------------------------------------------------------------------------

ALT_ATTRIBUTE = "course_alt_text"  # the Figure attribute that holds its alt text
IMAGE_MIMES = ("image/png", "image/jpeg", "image/svg+xml")


def with_alt(fig: Figure, text: str) -> Figure:
    """Give ``fig`` its alt text (what it shows, and what the lesson claims of it) and return ``fig``.

    Displayed in a notebook, the figure's output carries the text (see the module's docstring). Whitespace is
    collapsed; an empty text is refused.
    """
    if not isinstance(fig, Figure):
        raise TypeError(f"with_alt: expected a matplotlib Figure, got {type(fig).__name__}")
    text = " ".join(str(text).split())
    if not text:
        raise ValueError("with_alt: the alt text is empty; say what the figure shows")
    setattr(fig, ALT_ATTRIBUTE, text)
    return fig


def alt_text(fig) -> str | None:
    """The alt text stored on ``fig`` by ``with_alt``, or None."""
    return getattr(fig, ALT_ATTRIBUTE, None)


class _AltFormatter:
    """Wraps an IPython image formatter of Figures (matplotlib-inline's): its output carries the figure's alt
    text as metadata. The HTML formatter below renders the PNG first and leaves it here for the PNG formatter,
    which runs next in the same ``format()`` call, so that a figure is rendered once."""

    def __init__(self, inner):
        self.inner = inner
        self.rendered: tuple[Figure, object] | None = None

    def render(self, fig):
        self.rendered = None
        out = self.inner(fig)
        self.rendered = (fig, out)
        return out

    def __call__(self, fig):
        if self.rendered is not None and self.rendered[0] is fig:
            out = self.rendered[1]
        else:
            out = self.inner(fig)
        self.rendered = None
        text = alt_text(fig)
        if out is None or not text:
            return out
        data, md = out if isinstance(out, tuple) else (out, None)
        return data, {**(md or {}), "alt": text}


def _wrap_figure_formatters(shell) -> None:
    """(Re)wrap the shell's image formatters of Figures; matplotlib-inline replaces them whenever it configures
    its backend, so this runs before each figure is formatted."""
    formatters = shell.display_formatter.formatters
    for mime in IMAGE_MIMES:
        try:
            inner = formatters[mime].lookup_by_type(Figure)
        except KeyError:
            continue
        if not isinstance(inner, _AltFormatter):
            formatters[mime].for_type(Figure, _AltFormatter(inner))
    formatters["text/html"].for_type(Figure, lambda fig: _figure_html(shell, fig))


def _figure_html(shell, fig) -> str | None:
    """In a live kernel, a figure with alt text as ``<img src="data:image/png..." alt="...">``."""
    text = alt_text(fig)
    if not text or headless():
        return None
    try:
        png = shell.display_formatter.formatters["image/png"].lookup_by_type(Figure)
    except KeyError:
        return None
    out = png.render(fig) if isinstance(png, _AltFormatter) else png(fig)
    if out is None:
        return None
    data, md = out if isinstance(out, tuple) else (out, None)
    size = "".join(f' {k}="{int(md[k])}"' for k in ("width", "height") if md and md.get(k))
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(text)}"{size}>'


def register_alt_text(shell=None) -> bool:
    """Make the figures displayed in IPython ``shell`` (by default the running one) carry their alt text;
    False where there is no IPython. Done when this module is imported; safe to repeat."""
    if shell is None:
        try:
            from IPython import get_ipython
        except ImportError:
            return False
        shell = get_ipython()
    if shell is None or not hasattr(shell, "display_formatter"):
        return False

    def before_formatting(fig):  # the mime-bundle formatter runs first in every format() call of a Figure
        _wrap_figure_formatters(shell)
        return None

    shell.display_formatter.mimebundle_formatter.for_type(Figure, before_formatting)
    _wrap_figure_formatters(shell)
    return True


register_alt_text()


# ---- figures -------------------------------------------------------------------------------------------------


def show_images(images: list[torch.Tensor], titles: list[str] | None = None, ncols: int = 4,
                size: float = 3.0, suptitle: str | None = None, value_range: tuple[float, float] | None = None,
                alt: str | None = None, colorbars: bool = False):
    """A grid of (3, H, W) or (H, W) tensors; returns the matplotlib figure.

    (H, W) tensors are value maps: viridis, or, for a map with negative values, a blue-white-red scale centred on
    0. With ``value_range`` = (vmin, vmax) they share that scale and one colour bar, so that panels can be
    compared; without it each map is scaled to its own range, and ``colorbars=True`` gives each its own bar.
    ``alt`` is the figure's alt text (``with_alt``): what the pictures show and what to see in them.
    """
    n = len(images)
    if n == 0:
        raise ValueError("show_images: no images to show")
    if titles is not None and len(titles) != n:
        raise ValueError(f"show_images: {n} images but {len(titles)} titles")
    ncols = min(ncols, n)
    nrows = (n + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    maps = []
    for i, img in enumerate(images):
        ax = axes.flat[i]
        img = img.detach().cpu()
        if img.ndim == 3:
            ax.imshow(to_uint8(img).permute(1, 2, 0).numpy())
        else:
            values = img.float()
            if value_range:
                vmin, vmax, cmap = *value_range, "viridis"
            elif values.numel() and values.min() < 0:
                vmax = max(float(values.abs().max()), 1e-12)
                vmin, cmap = -vmax, "RdBu_r"
            else:
                vmin = vmax = None
                cmap = "viridis"
            maps.append((ax, ax.imshow(values.numpy(), cmap=cmap, vmin=vmin, vmax=vmax)))
        if titles:
            ax.set_title(titles[i], fontsize=9)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    if value_range and maps:
        fig.colorbar(maps[-1][1], ax=axes.ravel().tolist(), fraction=0.015, pad=0.01)
    elif colorbars:
        for ax, mappable in maps:
            fig.colorbar(mappable, ax=ax, fraction=0.046, pad=0.03)
    if alt is not None:
        with_alt(fig, alt)
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
            ax.text(x1 + 0.5, y1 + 0.5, texts[i], fontsize=7, color=text_colour_on(to_hex(colours[i])), va="top",
                    ha="left", bbox=dict(fc=colours[i], alpha=0.9, lw=0, pad=1))
    if zoom is not None:
        ax.set_xlim(zoom[0], zoom[2])
        ax.set_ylim(zoom[3], zoom[1])
    if legend:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    ax.set_title(title, fontsize=9)
    ax.axis("off")


# Anchors and samples: positive (bluish green), neutral (sky blue), negative (vermillion), ground truth (white);
# Okabe-Ito colours, apart for every colour vision (tests/lessons/test_draw.py measures it).
POS, NEU, NEG, GT = "#009e73", "#56b4e9", "#d55e00", "#ffffff"


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
