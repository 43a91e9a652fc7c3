"""Looking inside the backbone, the FPN and the RPN: small computations and their pictures.
Used in: 01_backbone_fpn, 02_anchors_rpn.

* 01: the features of every level (``backbone_levels``), a table of their shapes for any input
  size, the FPN merge as a diagram, the most varying channels and an outline-vs-inside measure (trained
  vs untrained), the theoretical receptive field computed from a ResNet's layer list and the effective
  one measured by a gradient.
* 02: anchors drawn per level, IoU pictures, labelled and sampled anchors, box coding, the RPN's
  objectness per level, proposals before and after NMS, proposal recall, and an ipywidgets
  explorer for the NMS threshold and the number of proposals.

Every picture is a matplotlib figure; every function that draws returns it. Images are (3, H, W)
float tensors in [0, 1]; boxes are (x1, y1, x2, y2) pixels.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Rectangle
from torch import Tensor

from .boxes import BoxCoder, box_iou
from .draw import to_uint8
from .fpn import feature_shapes
from .rpn import concat_box_prediction_layers, filter_proposals
from .ui import headless

__all__ = [
    "STRIDES", "normalize", "backbone_levels", "shape_table", "fpn_diagram", "stride_grid_figure",
    "top_channels", "channel_gallery", "edge_interior_ratio", "zero_fraction", "resnet_main_path", "receptive_field",
    "receptive_fields", "effective_receptive_field", "outside_share", "receptive_field_figure",
    "anchor_figure", "iou_figure", "anchor_label_counts", "anchor_labels_figure", "sampling_figure",
    "box_coding_figure", "RPNOutput", "rpn_forward", "proposals", "objectness_figure", "proposals_figure",
    "recall_curve", "recall_figure", "proposal_explorer",
]

# Stride (pixels per cell) of each level of a ResNet + FPN backbone.
STRIDES = {"C2": 4, "C3": 8, "C4": 16, "C5": 32, "P2": 4, "P3": 8, "P4": 16, "P5": 32, "P6": 64}
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


# ----------------------------------------------------------------------------------------------------
# 01: the backbone, its levels and their shapes
# ----------------------------------------------------------------------------------------------------

def normalize(model, image: Tensor) -> Tensor:
    """(3, H, W) in [0, 1] -> (1, 3, H, W) normalised as the model's ``transform`` does (no resizing)."""
    return model.transform.normalize(image)[None]


def backbone_levels(backbone, x: Tensor) -> dict[str, Tensor]:
    """Run a torchvision ``BackboneWithFPN`` on a batch ``x``: ``{"C2".."C5", "P2".."P6"}``.

    ``backbone.body`` (an ``IntermediateLayerGetter`` around the ResNet) gives C2..C5 under the keys
    '0'..'3'; ``backbone.fpn`` turns them into P2..P5 and adds 'pool' (P6).
    """
    c = backbone.body(x)
    p = backbone.fpn(c)
    levels = {f"C{k + 2}": v for k, v in enumerate(c.values())}
    levels.update({f"P{k + 2}": v for k, v in enumerate(p.values())})
    return levels


def shape_table(backbone, image_sizes: list[tuple[int, int]]) -> str:
    """A table: for each level, its stride, channels and (H, W) per input size, as ``feature_shapes``
    predicts it; a real forward pass checks every entry ('ok', or the real shape when it differs)."""
    header = f"{'level':6s}{'stride':>7s}{'channels':>10s}" + "".join(f"{f'{h}x{w} input':>16s}"
                                                                   for h, w in image_sizes)
    real, predicted = [], []
    device = next(backbone.parameters()).device
    with torch.no_grad():
        for h, w in image_sizes:
            levels = backbone_levels(backbone, torch.zeros(1, 3, h, w, device=device))
            real.append({k: (tuple(v.shape[-2:]), v.shape[1]) for k, v in levels.items()})
            predicted.append(feature_shapes((h, w)))
    lines = [header]
    for level, stride in STRIDES.items():
        row = f"{level:6s}{stride:>7d}{real[0][level][1]:>10d}"
        for pred, got in zip(predicted, real):
            ph, pw = pred[level]
            gh, gw = got[level][0]
            cell = f"{ph}x{pw} ok" if (ph, pw) == (gh, gw) else f"{ph}x{pw}!={gh}x{gw}"
            row += f"{cell:>16s}"
        lines.append(row)
    return "\n".join(lines)


def fpn_diagram():
    """The FPN merge: lateral 1x1 convs, the top-down path (2x nearest upsampling, add), 3x3 output
    convs, and P6 by max pooling."""
    fig, ax = plt.subplots(figsize=(10, 5.4))
    ax.set_xlim(0.1, 9.8)
    ax.set_ylim(0.2, 6.3)
    ax.axis("off")
    ys = [0.9, 2.4, 3.6, 4.6]  # C2..C5 / P2..P5, finest at the bottom
    sides = [1.1, 0.8, 0.6, 0.45]
    channels = [64, 128, 256, 512]
    x_c, x_add, x_p = 1.4, 5.2, 8.6
    arrow = dict(arrowstyle="-|>", mutation_scale=12, color="#444444", lw=1.2)
    for k, (y, s, ch) in enumerate(zip(ys, sides, channels)):
        lvl, stride = k + 2, 4 * 2 ** k
        ax.add_patch(FancyBboxPatch((x_c - s / 2, y - s / 2), s, s, boxstyle="round,pad=0.02", fc="#cfe2f3",
                                    ec="#444444"))
        ax.text(x_c - s / 2 - 0.15, y, f"C{lvl}\n{ch} ch\n1/{stride}", ha="right", va="center", fontsize=9)
        ax.add_patch(FancyBboxPatch((x_p - s / 2, y - s / 2), s, s, boxstyle="round,pad=0.02", fc="#d9ead3",
                                    ec="#444444"))
        ax.text(x_p + s / 2 + 0.15, y, f"P{lvl}\n64 ch\n1/{stride}", ha="left", va="center", fontsize=9)
        # lateral 1x1 conv into the sum, 3x3 conv out of it
        ax.add_patch(FancyArrowPatch((x_c + s / 2, y), (x_add - 0.22, y), **arrow))
        ax.text((x_c + x_add) / 2 + 0.2, y + 0.1, "lateral 1x1 conv", ha="center", fontsize=8, color="#1f4e79")
        ax.add_patch(plt.Circle((x_add, y), 0.2, fc="white", ec="#444444"))
        ax.text(x_add, y, "+", ha="center", va="center", fontsize=13)
        ax.add_patch(FancyArrowPatch((x_add + 0.22, y), (x_p - s / 2, y), **arrow))
        ax.text((x_add + x_p) / 2 - 0.2, y + 0.1, "3x3 conv", ha="center", fontsize=8, color="#38761d")
    for k in range(3, 0, -1):  # top-down: from the sum above to the sum below
        ax.add_patch(FancyArrowPatch((x_add, ys[k] - 0.22), (x_add, ys[k - 1] + 0.22),
                                     **{**arrow, "color": "#cc0000"}))
        ax.text(x_add + 0.12, (ys[k] + ys[k - 1]) / 2, "upsample 2x\n(nearest)", fontsize=8, color="#cc0000",
                va="center")
    ax.text(x_add, ys[3] + 0.32, "(nothing from above)", ha="center", fontsize=8, color="#777777")
    # P6 from P5
    y6, s6 = 5.4, 0.32
    ax.add_patch(FancyBboxPatch((x_p - s6 / 2, y6 - s6 / 2), s6, s6, boxstyle="round,pad=0.02", fc="#d9ead3",
                                ec="#444444"))
    ax.text(x_p + s6 / 2 + 0.15, y6, "P6  64 ch  1/64", ha="left", va="center", fontsize=9)
    ax.add_patch(FancyArrowPatch((x_p, ys[3] + sides[3] / 2), (x_p, y6 - s6 / 2), **arrow))
    ax.text(x_p - 0.12, (ys[3] + y6) / 2 + 0.05, "max pool, stride 2", ha="right", va="center", fontsize=8)
    ax.text(x_c, 6.0, "ResNet (bottom-up)", ha="center", fontsize=10, weight="bold")
    ax.text(x_add, 6.0, "merge (top-down)", ha="center", fontsize=10, weight="bold", color="#cc0000")
    ax.text(x_p, 6.0, "FPN outputs", ha="center", fontsize=10, weight="bold")
    ax.set_title("The FPN merge: every P level = 3x3 conv( lateral 1x1 conv of C + upsampled merge from above )",
                 fontsize=10)
    return fig


def stride_grid_figure(image: Tensor, levels: list[str], cell: tuple[int, int] | None = None, size: float = 3.0):
    """One panel per level: the image with the level's cells drawn on it (one highlighted).

    The grid has ceil(H / stride) x ceil(W / stride) cells, so for a size that the stride does not
    divide, the last row / column of cells hangs over the image's edge. The dot is the cell's
    position in image pixels, (x * stride, y * stride): where its anchors are centred.
    """
    h, w = image.shape[-2:]
    fig, axes = _axes(len(levels), size)
    for ax, level in zip(axes.flat, levels):
        s = STRIDES[level]
        gh, gw = feature_shapes((h, w))[level]
        ax.set_facecolor("#eeeeee")
        _show(ax, image)
        frame = Rectangle((0, 0), w, h, fill=False, ec="black", lw=1)
        ax.add_patch(frame)
        segments = [([0, gw * s], [i * s, i * s]) for i in range(gh + 1)]
        segments += [([j * s, j * s], [0, gh * s]) for j in range(gw + 1)]
        for xs, ys in segments:  # grey where cells hang over the edge, white on the image
            ax.plot(xs, ys, color="#999999", lw=0.6)
            ax.plot(xs, ys, color="white", lw=0.5, alpha=0.8)[0].set_clip_path(frame)
        ci, cj = cell if cell is not None else (gh // 2, gw // 2)
        ax.add_patch(Rectangle((cj * s, ci * s), s, s, fc="#cc0000", ec="#cc0000", alpha=0.55))
        ax.plot([cj * s], [ci * s], "o", color="yellow", ms=4, mec="black", mew=0.6)
        ax.set_xlim(-2, max(w, gw * s) + 2)
        ax.set_ylim(max(h, gh * s) + 2, -2)
        ax.set_title(f"{level}: stride {s}, {gh}x{gw} cells", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return fig


def top_channels(feature: Tensor, k: int) -> Tensor:
    """Indices of the ``k`` channels of a (C, H, W) feature map that vary most across the image."""
    return feature.flatten(1).std(dim=1).argsort(descending=True)[:k]


def channel_gallery(image: Tensor, rows: dict[str, Tensor], k: int = 6, size: float = 1.75):
    """One row per ``name: (C, H, W) feature map``: the image, then its ``k`` most varying channels
    (grey: dark = 0, white = the channel's maximum)."""
    fig, axes = _axes(k + 1, size, nrows=len(rows))
    h, w = image.shape[-2:]
    for r, (name, feature) in enumerate(rows.items()):
        feature = feature.detach().cpu()
        _show(axes[r, 0], image)
        axes[r, 0].set_title(name, fontsize=9, loc="left")
        for c, ch in enumerate(top_channels(feature, k).tolist(), start=1):
            m = feature[ch].float()
            axes[r, c].imshow(m.numpy(), cmap="gray", vmin=min(0.0, m.min().item()), extent=(0, w, h, 0),
                              interpolation="nearest")
            axes[r, c].set_title(f"channel {ch}", fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return fig


def _dilate(mask: Tensor, r: int) -> Tensor:
    return F.max_pool2d(mask[None, None].float(), 2 * r + 1, stride=1, padding=r)[0, 0].bool()


def edge_interior_ratio(feature: Tensor, masks: Tensor, band: int = 2, inset: int = 6) -> float:
    """mean |activation| on the objects' outlines / mean |activation| deep inside them.

    ``feature``: (C, h, w) for an (H, W) image, upsampled (nearest) to the image; ``masks``: (N, H, W).
    Outline: pixels within ``band`` of an object's border; inside: more than ``inset`` pixels in.
    Above 1: the map responds to edges more than to colour; about 1: it does not care.
    """
    masks = masks.bool().cpu()
    a = F.interpolate(feature.detach().cpu().abs().mean(dim=0)[None, None].float(), size=masks.shape[-2:],
                      mode="nearest")[0, 0]
    outline = torch.zeros(masks.shape[-2:], dtype=torch.bool)
    inside = torch.zeros_like(outline)
    for m in masks:
        eroded = ~_dilate(~m, band)
        outline |= _dilate(m, band) & ~eroded
        inside |= ~_dilate(~m, inset)
    return (a[outline].mean() / a[inside].mean()).item()


def zero_fraction(feature: Tensor) -> float:
    """Fraction of exactly-zero entries (a ResNet stage ends in a ReLU: zero = switched off)."""
    return (feature == 0).float().mean().item()


def resnet_main_path(body) -> list[tuple[str, int, int]]:
    """The layers an input pixel passes on the longest path through a torchvision ResNet (or its
    ``IntermediateLayerGetter``): ``(name, kernel, stride)`` each, stem first.

    The 1x1 shortcut convs see less than the 3x3 path beside them, so they are left out.
    """
    def ks(module):
        k = module.kernel_size if isinstance(module.kernel_size, int) else module.kernel_size[0]
        s = module.stride if isinstance(module.stride, int) else module.stride[0]
        return k, s

    path = [("conv1", *ks(body.conv1)), ("maxpool", *ks(body.maxpool))]
    for stage in ("layer1", "layer2", "layer3", "layer4"):
        for b, block in enumerate(getattr(body, stage)):
            for conv in ("conv1", "conv2", "conv3"):
                if hasattr(block, conv):
                    path.append((f"{stage}.{b}.{conv}", *ks(getattr(block, conv))))
    return path


def receptive_field(layers: list[tuple[str, int, int]]) -> list[tuple[str, int, int]]:
    """Walk a chain of (name, kernel, stride) layers: after each, ``(name, receptive field, stride)``.

    A k x k layer whose inputs are ``jump`` pixels apart widens the receptive field by
    (k - 1) * jump; its stride multiplies the jump.
    """
    rf, jump, out = 1, 1, []
    for name, k, s in layers:
        rf += (k - 1) * jump
        jump *= s
        out.append((name, rf, jump))
    return out


def receptive_fields(body) -> dict[str, tuple[int, int]]:
    """``{"C2": (stride, receptive field), ..., "C5": ...}`` of a torchvision ResNet body."""
    walk = receptive_field(resnet_main_path(body))
    result = {}
    for k, stage in enumerate(("layer1", "layer2", "layer3", "layer4")):
        name, rf, jump = [row for row in walk if row[0].startswith(stage)][-1]
        result[f"C{k + 2}"] = (jump, rf)
    return result


def effective_receptive_field(backbone, x: Tensor, level: str, cell: tuple[int, int] | None = None):
    """How much each input pixel moves the centre cell of ``level``: |d(sum of channels) / d(input)|
    summed over colours, scaled to max 1. Returns ``(map (H, W), (x, y) of the cell in pixels)``."""
    x = x.detach().clone().requires_grad_(True)
    out = backbone_levels(backbone, x)[level]
    gh, gw = out.shape[-2:]
    i, j = cell if cell is not None else (gh // 2, gw // 2)
    out[0, :, i, j].sum().backward()
    g = x.grad[0].abs().sum(dim=0).cpu()
    s = STRIDES[level]
    return g / g.max().clamp(min=1e-12), (j * s, i * s)


def outside_share(erf_map: Tensor, centre: tuple[int, int], rf: int) -> float:
    """Share of an effective-receptive-field map that lies outside the ``rf`` x ``rf`` square
    centred on ``centre`` = (x, y): 0 when nothing outside the theoretical field matters."""
    cx, cy = centre
    h, w = erf_map.shape
    ys, xs = torch.arange(h)[:, None], torch.arange(w)[None, :]
    # pixel p is inside when its distance to the centre is at most (rf - 1) / 2
    inside = ((xs - cx).abs() <= (rf - 1) / 2) & ((ys - cy).abs() <= (rf - 1) / 2)
    return (erf_map[~inside].sum() / erf_map.sum()).item()


def receptive_field_figure(image: Tensor, erf: dict[str, tuple[Tensor, tuple[int, int]]],
                           theoretical: dict[str, int] | None = None, ncols: int = 4, size: float = 2.8):
    """One panel per level: the effective receptive field of its centre cell over the (grey) image,
    and the theoretical receptive field as a dashed square when given."""
    n = len(erf)
    nrows = (n + ncols - 1) // ncols
    fig, axes = _axes(ncols, size, nrows)
    h, w = image.shape[-2:]
    for ax in axes.flat:
        ax.axis("off")
    for ax, (level, (g, (cx, cy))) in zip(axes.flat, erf.items()):
        _show(ax, image, grey=True)
        ax.imshow(g.numpy(), cmap="hot", alpha=0.75, extent=(0, w, h, 0), vmin=0, vmax=1)
        ax.plot([cx + 0.5], [cy + 0.5], "o", color="cyan", ms=4, mec="black", mew=0.6)  # pixel centre
        title = f"{level}: centre cell"
        lo_x, lo_y, hi_x, hi_y = -2, -2, w + 2, h + 2
        if theoretical and level in theoretical:
            r = theoretical[level]  # pixels cx - (r-1)/2 .. cx + (r-1)/2, i.e. edges cx - r/2 + 0.5 ...
            _box(ax, (cx - r / 2 + 0.5, cy - r / 2 + 0.5, cx + r / 2 + 0.5, cy + r / 2 + 0.5), "cyan", lw=1.2,
                 ls="--")
            title += f", RF {r} px" if level.startswith("C") else f" (square: C{level[1:]}'s RF)"
            lo_x, lo_y = min(lo_x, cx - r / 2 - 2), min(lo_y, cy - r / 2 - 2)
            hi_x, hi_y = max(hi_x, cx + r / 2 + 2), max(hi_y, cy + r / 2 + 2)
        ax.add_patch(Rectangle((0, 0), w, h, fill=False, ec="black", lw=0.8))
        ax.set_facecolor("#eeeeee")
        ax.set_xlim(lo_x, hi_x)
        ax.set_ylim(hi_y, lo_y)
        ax.set_title(title, fontsize=9)
        ax.axis("on")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------------------------------
# 02: anchors, IoU, matching, sampling, box coding
# ----------------------------------------------------------------------------------------------------

RATIO_COLOURS = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#46f0f0"]


def anchor_figure(image: Tensor, anchors: list[Tensor], feature_sizes: list[tuple[int, int]],
                  anchors_per_cell: int, sizes: list[int] | None = None, ratios: list[float] | None = None,
                  size: float = 3.0):
    """One panel per level: every anchor centre (dots) and the anchors of the centre cell.
    ``sizes`` (one per level) and ``ratios`` only label the picture."""
    h, w = image.shape[-2:]
    fig, axes = _axes(len(anchors), size)
    for k, (ax, a, (gh, gw)) in enumerate(zip(axes.flat, anchors, feature_sizes)):
        stride = h // gh
        a = a.view(gh, gw, anchors_per_cell, 4)
        centre = a[gh // 2, gw // 2]
        centres = (a[:, :, 0, :2] + a[:, :, 0, 2:]) / 2
        ax.set_facecolor("#eeeeee")
        _show(ax, image)
        ax.add_patch(Rectangle((0, 0), w, h, fill=False, ec="black", lw=1))
        ax.plot(centres[..., 0].flatten().numpy(), centres[..., 1].flatten().numpy(), ".", color="white",
                ms=max(1.5, min(5.0, 60 / gw)), mec="black", mew=0.3)
        for r, box in enumerate(centre):
            label = f"ratio {ratios[r % len(ratios)]}" if ratios else None
            _box(ax, box, RATIO_COLOURS[r % len(RATIO_COLOURS)], lw=1.6, label=label)
        x1, y1 = min(0.0, centre[:, 0].min().item()), min(0.0, centre[:, 1].min().item())
        x2, y2 = max(float(w), centre[:, 2].max().item()), max(float(h), centre[:, 3].max().item())
        pad = 0.04 * max(x2 - x1, y2 - y1)
        ax.set_xlim(x1 - pad, x2 + pad)
        ax.set_ylim(y2 + pad, y1 - pad)
        ax.set_aspect("equal")
        what = f"size {sizes[k]} anchors" if sizes else "anchors"
        ax.set_title(f"P{k + 2}: stride {stride}, {gh}x{gw} centres\n{what} of the centre cell", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    if ratios:
        axes.flat[-1].legend(fontsize=7, loc="lower right", framealpha=0.8, title="height/width",
                             title_fontsize=7)
    fig.tight_layout()
    return fig


def iou_figure(pairs: list[tuple[Tensor, Tensor]], ious: list[float], size: float = 2.6):
    """One panel per pair of boxes: both boxes, their overlap filled, and the IoU."""
    fig, axes = _axes(len(pairs), size)
    for ax, (a, b), iou in zip(axes.flat, pairs, ious):
        _box(ax, a, "#4363d8", lw=2)
        _box(ax, b, "#e6194b", lw=2)
        ix1, iy1 = max(a[0], b[0]), max(a[1], b[1])
        ix2, iy2 = min(a[2], b[2]), min(a[3], b[3])
        if ix2 > ix1 and iy2 > iy1:
            _box(ax, (ix1, iy1, ix2, iy2), "#911eb4", fill=True, alpha=0.35, lw=0)
        both = torch.stack([torch.as_tensor(a), torch.as_tensor(b)]).float()
        lo, hi = both[:, :2].min().item(), both[:, 2:].max().item()
        ax.set_xlim(lo - 3, hi + 3)
        ax.set_ylim(hi + 3, lo - 3)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"IoU = {iou:.2f}", fontsize=10)
    fig.suptitle("IoU = overlap (purple) / union (everything inside either box)", fontsize=10)
    fig.tight_layout()
    return fig


def anchor_label_counts(labels: Tensor, best_iou: Tensor, num_anchors_per_level: list[int],
                        high: float = 0.7) -> str:
    """A table per level: anchors, positives (and how many of them are low-quality matches,
    best IoU < ``high``), neutral and negative anchors."""
    lines = [f"{'level':6s}{'anchors':>9s}{'positive':>10s}{'(low-quality)':>15s}{'neutral':>9s}{'negative':>10s}"]
    totals = [0, 0, 0, 0, 0]
    for k, (lab, iou) in enumerate(zip(labels.split(num_anchors_per_level), best_iou.split(num_anchors_per_level))):
        row = [len(lab), int((lab == 1).sum()), int(((lab == 1) & (iou < high)).sum()), int((lab == -1).sum()),
               int((lab == 0).sum())]
        totals = [t + r for t, r in zip(totals, row)]
        lines.append(f"{'P' + str(k + 2):6s}{row[0]:>9d}{row[1]:>10d}{row[2]:>15d}{row[3]:>9d}{row[4]:>10d}")
    lines.append(f"{'all':6s}{totals[0]:>9d}{totals[1]:>10d}{totals[2]:>15d}{totals[3]:>9d}{totals[4]:>10d}")
    return "\n".join(lines)


def anchor_labels_figure(image: Tensor, gt_boxes: Tensor, anchors: Tensor, labels: Tensor, best_iou: Tensor,
                         high: float = 0.7, size: float = 3.6):
    """Left: the positive anchors (solid: IoU >= ``high``; dashed: low-quality matches). Middle: the
    neutral anchors (ignored in training). Right: negative anchor centres, which are everywhere else."""
    fig, axes = _axes(3, size)
    h, w = image.shape[-2:]
    pos, neu, neg = labels == 1, labels == -1, labels == 0
    titles = [f"{int(pos.sum())} positive anchors\n(dashed: low-quality match, IoU < {high})",
              f"{int(neu.sum())} neutral anchors\n(IoU in [0.3, 0.7): ignored)",
              f"{int(neg.sum())} negative anchors (centres)\n(IoU < 0.3 with every object)"]
    for ax, title in zip(axes.flat, titles):
        _show(ax, image, grey=True)
        for g in gt_boxes:
            _box(ax, g, GT, lw=1.0, ls=":")
        ax.set_title(title, fontsize=9)
    for a, iou in zip(anchors[pos], best_iou[pos]):
        _box(axes[0, 0], a, POS, lw=2.0, ls="-" if iou >= high else "--")
    for a in anchors[neu]:
        _box(axes[0, 1], a, NEU, lw=0.8, alpha=0.8)
    c = (anchors[neg, :2] + anchors[neg, 2:]) / 2
    axes[0, 2].plot(c[:, 0].numpy(), c[:, 1].numpy(), ".", color=NEG, ms=1.5, alpha=0.5)
    for ax in axes.flat:
        ax.set_xlim(0, w)
        ax.set_ylim(h, 0)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return fig


def sampling_figure(image: Tensor, gt_boxes: Tensor, anchors: Tensor, labels: Tensor, pos_mask: Tensor,
                    neg_mask: Tensor, size: float = 3.6):
    """Left: the sampled anchors (positive boxes, negative centres). Right: counts before and after."""
    fig, axes = plt.subplots(1, 2, figsize=(2.3 * size, size + 0.3), gridspec_kw={"width_ratios": [1, 1.2]})
    ax = axes[0]
    h, w = image.shape[-2:]
    _show(ax, image, grey=True)
    for g in gt_boxes:
        _box(ax, g, GT, lw=1.0, ls=":")
    neg = anchors[neg_mask.bool()]
    c = (neg[:, :2] + neg[:, 2:]) / 2
    ax.plot(c[:, 0].numpy(), c[:, 1].numpy(), "o", color=NEG, ms=3, mec="white", mew=0.4,
            label=f"{len(neg)} negatives (centres)")
    for i, a in enumerate(anchors[pos_mask.bool()]):
        _box(ax, a, POS, lw=2, label=f"{int(pos_mask.sum())} positives" if i == 0 else None)
    ax.set_xlim(0, w)
    ax.set_ylim(h, 0)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(fontsize=7, loc="lower right", framealpha=0.85)
    ax.set_title("the anchors one training step uses", fontsize=9)
    ax = axes[1]
    avail = [int((labels == 1).sum()), int((labels == 0).sum()), int((labels == -1).sum())]
    taken = [int(pos_mask.sum()), int(neg_mask.sum()), 0]
    xs = torch.arange(3).float()
    ax.bar((xs - 0.2).numpy(), avail, width=0.4, color="#bbbbbb", label="available")
    ax.bar((xs + 0.2).numpy(), taken, width=0.4, color=[POS, NEG, NEU], label="sampled")
    for x, a, t in zip(xs.tolist(), avail, taken):
        ax.text(x - 0.2, a, str(a), ha="center", va="bottom", fontsize=8)
        ax.text(x + 0.2, max(t, 1), str(t), ha="center", va="bottom", fontsize=8)
    ax.set_yscale("log")
    ax.set_ylim(0.8, max(avail) * 3)
    ax.set_xticks(xs.numpy(), ["positive", "negative", "neutral"])
    ax.set_ylabel("anchors (log scale)")
    ax.legend(fontsize=8)
    ax.set_title("available vs sampled", fontsize=9)
    fig.tight_layout()
    return fig


def box_coding_figure(anchor: Tensor, gt: Tensor, codes: Tensor, size: float = 4.0):
    """An anchor, a ground-truth box, the shift between their centres and the four numbers that code it."""
    fig, ax = plt.subplots(figsize=(size * 1.7, size))
    a, g = anchor.tolist(), gt.tolist()
    _box(ax, a, "#4363d8", lw=2, ls="--", label="anchor (the reference)")
    _box(ax, g, POS, lw=2, label="ground truth (the target)")
    ac = ((a[0] + a[2]) / 2, (a[1] + a[3]) / 2)
    gc = ((g[0] + g[2]) / 2, (g[1] + g[3]) / 2)
    ax.plot(*ac, "o", color="#4363d8")
    ax.plot(*gc, "o", color=POS)
    ax.add_patch(FancyArrowPatch(ac, gc, arrowstyle="-|>", mutation_scale=12, color="black"))
    x1, y1 = min(a[0], g[0]), min(a[1], g[1])
    x2, y2 = max(a[2], g[2]), max(a[3], g[3])
    half = max(x2 - x1, y2 - y1) / 2 + 6
    mx, my = (x1 + x2) / 2, (y1 + y2) / 2
    ax.set_xlim(mx - half, mx + half)
    ax.set_ylim(my + half, my - half)
    ax.set_aspect("equal")
    dx, dy, dw, dh = codes.tolist()
    aw, ah = a[2] - a[0], a[3] - a[1]
    gw, gh = g[2] - g[0], g[3] - g[1]
    text = (f"anchor: centre ({ac[0]:g}, {ac[1]:g}), size {aw:g} x {ah:g}\n"
            f"target: centre ({gc[0]:g}, {gc[1]:g}), size {gw:g} x {gh:g}\n\n"
            f"dx = ({gc[0]:g} - {ac[0]:g}) / {aw:g} = {dx:+.3f}\n"
            f"dy = ({gc[1]:g} - {ac[1]:g}) / {ah:g} = {dy:+.3f}\n"
            f"dw = log({gw:g} / {aw:g}) = {dw:+.3f}\n"
            f"dh = log({gh:g} / {ah:g}) = {dh:+.3f}")
    ax.text(1.04, 0.5, text, transform=ax.transAxes, fontsize=9, family="monospace", va="center")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    ax.set_title("box coding (weights 1, 1, 1, 1, as in the RPN)", fontsize=10)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------------------------------
# 02: the RPN of the course model: objectness, proposals, recall
# ----------------------------------------------------------------------------------------------------

@dataclass
class RPNOutput:
    """Everything the RPN computes for a batch before it filters: one row per anchor, anchor order.

    ``anchors``, ``deltas`` and ``decoded``: (B, N, 4); ``objectness``: (B, N) logits;
    ``maps``: per level, (B, A, H_l, W_l) objectness probabilities; ``image_sizes``: (h, w) each.
    """

    anchors: Tensor
    deltas: Tensor
    decoded: Tensor
    objectness: Tensor
    maps: list[Tensor]
    num_anchors_per_level: list[int]
    image_sizes: list[tuple[int, int]]


def rpn_forward(model, images: list[Tensor]) -> RPNOutput:
    """Run a torchvision detection model's transform, backbone and RPN head (no filtering) on images.

    The same steps as ``RegionProposalNetwork.forward`` up to ``filter_proposals``: objectness and
    deltas for every anchor, and the anchors moved by their deltas (``decoded``). Coordinates are
    those of the transformed images (the same as the inputs for the course model's 128x128 images).
    """
    with torch.no_grad():
        image_list, _ = model.transform(images)
        features = list(model.backbone(image_list.tensors).values())
        logits, deltas = model.rpn.head(features)
        anchors = torch.stack(model.rpn.anchor_generator(image_list, features))
        num_per_level = [lg[0].numel() for lg in logits]
        obj, reg = concat_box_prediction_layers(logits, deltas)
        b = len(images)
        decoded = BoxCoder((1.0, 1.0, 1.0, 1.0)).decode(reg, anchors.reshape(-1, 4))
    return RPNOutput(anchors, reg.view(b, -1, 4), decoded.view(b, -1, 4), obj.view(b, -1),
                     [torch.sigmoid(lg) for lg in logits], num_per_level, list(image_list.image_sizes))


def proposals(out: RPNOutput, pre_nms_top_n: int = 500, post_nms_top_n: int = 250, nms_thresh: float = 0.7,
              min_size: float = 1e-3, moved: bool = True, rpn=None) -> tuple[list[Tensor], list[Tensor]]:
    """``filter_proposals`` on an ``RPNOutput``: per image, proposals (K, 4) and scores (K,), best first.

    ``nms_thresh=1.0`` switches NMS off (no IoU is above 1). ``moved=False`` keeps the anchors where they
    are (same objectness, box codes ignored), to see what the box codes add. With ``rpn`` (a torchvision
    ``RegionProposalNetwork``, e.g. ``model.rpn``) the same steps run through its own ``filter_proposals``,
    with these settings: the same boxes, faster on a CPU (C++ NMS).
    """
    boxes = out.decoded if moved else out.anchors
    if rpn is None:
        return filter_proposals(boxes, out.objectness, out.image_sizes, out.num_anchors_per_level,
                                pre_nms_top_n, post_nms_top_n, nms_thresh, 0.0, min_size)
    rpn = copy.copy(rpn)  # a shallow copy with other settings; the model's RPN is left as it is
    rpn.training = False
    rpn._pre_nms_top_n = {"training": pre_nms_top_n, "testing": pre_nms_top_n}
    rpn._post_nms_top_n = {"training": post_nms_top_n, "testing": post_nms_top_n}
    rpn.nms_thresh, rpn.score_thresh, rpn.min_size = nms_thresh, 0.0, min_size
    with torch.no_grad():
        return rpn.filter_proposals(boxes, out.objectness, out.image_sizes, out.num_anchors_per_level)


def objectness_figure(image: Tensor, maps: list[Tensor], gt_boxes: Tensor | None = None,
                      anchor_sizes: list[int] | None = None, size: float = 2.5):
    """The image, then per level the RPN's objectness (max over the anchors of a cell), 0 to 1.

    Cell (y, x) of a stride-s map is drawn centred on (x * s, y * s), where its anchors are centred.
    """
    h, w = image.shape[-2:]
    fig, axes = _axes(len(maps) + 1, size)
    _show(axes[0, 0], image)
    axes[0, 0].set_title("image", fontsize=9)
    for k, (ax, m) in enumerate(zip(axes.flat[1:], maps)):
        m = (m[0].max(dim=0).values if m.dim() == 4 else m).cpu()  # (B, A, H, W) -> max over anchors
        s = h / m.shape[-2]
        im = ax.imshow(m.numpy(), cmap="viridis", vmin=0, vmax=1, interpolation="nearest",
                       extent=(-s / 2, m.shape[-1] * s - s / 2, m.shape[-2] * s - s / 2, -s / 2))
        if gt_boxes is not None:
            for g in gt_boxes:
                _box(ax, g, GT, lw=0.8, ls=":")
        ax.set_xlim(-s / 2, w - s / 2)
        ax.set_ylim(h - s / 2, -s / 2)
        name = f"P{k + 2}" + (f", anchors {anchor_sizes[k]} px" if anchor_sizes else "")
        ax.set_title(f"{name}\nmax {m.max().item():.2f}", fontsize=9)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(im, ax=axes.ravel().tolist(), fraction=0.012, pad=0.01)
    return fig


def _draw_proposals(ax, image, boxes, scores, gt_boxes, title):
    h, w = image.shape[-2:]
    _show(ax, image, grey=True)
    if gt_boxes is not None:
        for g in gt_boxes:
            _box(ax, g, GT, lw=1.2, ls=":")
    cmap = plt.get_cmap("plasma")
    for b, s in list(zip(boxes.cpu(), scores.cpu()))[::-1]:  # best drawn last, on top
        _box(ax, b, cmap(float(s)), lw=1.2)
    ax.set_xlim(-1, w + 1)
    ax.set_ylim(h + 1, -1)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=9)


def proposals_figure(image: Tensor, panels: list[tuple[Tensor, Tensor, str]], gt_boxes: Tensor | None = None,
                     size: float = 3.6):
    """One panel per ``(boxes, scores, title)``: proposals coloured by objectness (yellow = high),
    ground truth dotted white."""
    fig, axes = _axes(len(panels), size)
    for ax, (boxes, scores, title) in zip(axes.flat, panels):
        _draw_proposals(ax, image, boxes, scores, gt_boxes, title)
    sm = plt.cm.ScalarMappable(cmap="plasma", norm=plt.Normalize(0, 1))
    fig.colorbar(sm, ax=axes.ravel().tolist(), fraction=0.02, pad=0.01, label="objectness")
    return fig


def recall_curve(out: RPNOutput, gt_boxes: list[Tensor], counts: list[int], iou_thresholds=(0.5, 0.7),
                 nms_thresh: float = 0.7, pre_nms_top_n: int = 500, moved: bool = True, rpn=None) -> Tensor:
    """Proposal recall over all images of ``out``: ``(len(counts), len(iou_thresholds))``.
    ``moved`` and ``rpn`` as for ``proposals``."""
    from .rpn import proposal_recall

    boxes, _ = proposals(out, pre_nms_top_n, max(counts), nms_thresh, moved=moved, rpn=rpn)
    return proposal_recall([b.cpu() for b in boxes], [g.float().cpu() for g in gt_boxes], iou_thresholds, counts)


def recall_figure(counts: list[int], curves: dict[str, Tensor], iou_thresholds=(0.5, 0.7), size: float = 3.6):
    """Recall against the number of proposals kept, one panel per IoU threshold, one line per curve."""
    fig, axes = _axes(len(iou_thresholds), size * 1.2)
    for t, (ax, thr) in enumerate(zip(axes.flat, iou_thresholds)):
        for (label, curve), style in zip(curves.items(), ["o-", "s--", "^:", "d-."]):
            ax.plot(counts, curve[:, t].numpy(), style, label=label, ms=4)
        ax.set_xscale("log")
        ax.set_xticks(counts, [str(c) for c in counts], fontsize=7)
        ax.minorticks_off()
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.set_xlabel("proposals kept per image (best first)")
        ax.set_ylabel(f"recall at IoU {thr}")
        ax.set_title(f"objects found with IoU >= {thr}", fontsize=10)
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def proposal_explorer(out: RPNOutput, image: Tensor, gt_boxes: Tensor | None = None, nms_thresh: float = 0.7,
                      top_k: int = 20, index: int = 0, rpn=None):
    """Sliders for the NMS IoU threshold and the number of proposals shown; the picture follows.

    In JupyterLab: an ``ipywidgets.interactive`` (returned; the notebook displays it). Headless (or
    without a widget front end): draws once with the given values and returns ``None``. ``rpn`` as for
    ``proposals`` (faster redraws).
    """
    def draw(nms_thresh=nms_thresh, top_k=top_k):
        boxes, scores = proposals(out, nms_thresh=nms_thresh, post_nms_top_n=1000, rpn=rpn)
        boxes, scores = boxes[index], scores[index]
        fig, ax = plt.subplots(figsize=(4.2, 4.2))
        nms_note = "NMS off" if nms_thresh >= 1 else f"NMS at IoU {nms_thresh:.2f}"
        _draw_proposals(ax, image, boxes[:top_k], scores[:top_k], gt_boxes,
                        f"best {min(top_k, len(boxes))} of {len(boxes)} proposals ({nms_note})")
        plt.show()
        return len(boxes)

    if headless():
        draw()
        return None
    import ipywidgets as W

    return W.interactive(
        draw,
        nms_thresh=W.FloatSlider(value=nms_thresh, min=0.1, max=1.0, step=0.05, description="NMS IoU",
                                 continuous_update=False),
        top_k=W.IntSlider(value=top_k, min=1, max=100, step=1, description="top k", continuous_update=False))
