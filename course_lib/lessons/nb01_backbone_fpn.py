"""Notebook 01's computations and pictures: inside the backbone and the FPN. Taught in: 01_backbone_fpn

The features of every level (``backbone_levels``), a table of their shapes for any input size, the FPN merge
as a diagram, the most varying channels and an outline-vs-inside measure (trained vs untrained), the
theoretical receptive field computed from a ResNet's layers and the effective one measured by gradients.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Rectangle
from torch import Tensor

from course_lib.detection.backbone_utils import feature_shapes
from course_lib.lessons.draw import add_box, panel_grid, show_image, with_alt

# Stride (pixels per cell) of each level of a ResNet + FPN backbone.
STRIDES = {"C2": 4, "C3": 8, "C4": 16, "C5": 32, "P2": 4, "P3": 8, "P4": 16, "P5": 32, "P6": 64}


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
        for pred, got in zip(predicted, real, strict=True):
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
    for k, (y, s, ch) in enumerate(zip(ys, sides, channels, strict=True)):
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
    return with_alt(fig, "Diagram of the FPN merge. Left column, bottom to top: ResNet levels C2 to C5 with 64, 128, "
                         "256 and 512 channels at strides 4 to 32. Each goes through a lateral 1 by 1 convolution into "
                         "a sum; a red top-down path upsamples each sum by 2 (nearest) and adds it to the level "
                         "below (C5's sum has nothing from above). A 3 by 3 convolution turns each sum into the "
                         "output P2 to P5, 64 channels each, and P6 is P5 max-pooled with stride 2.")


def stride_grid_figure(image: Tensor, levels: list[str], cell: tuple[int, int] | None = None, size: float = 3.0):
    """One panel per level: the image with the level's cells drawn on it (one highlighted).

    The grid has ceil(H / stride) x ceil(W / stride) cells, so for a size that the stride does not
    divide, the last row / column of cells hangs over the image's edge. The dot is the cell's
    position in image pixels, (x * stride, y * stride): where its anchors are centred.
    """
    h, w = image.shape[-2:]
    fig, axes = panel_grid(len(levels), size)
    for ax, level in zip(axes.flat, levels, strict=True):
        s = STRIDES[level]
        gh, gw = feature_shapes((h, w))[level]
        ax.set_facecolor("#eeeeee")
        show_image(ax, image)
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
    h, w = image.shape[-2:]
    grids = "; ".join(f"{lv} stride {STRIDES[lv]}, {feature_shapes((h, w))[lv][0]} by "
                      f"{feature_shapes((h, w))[lv][1]} cells" for lv in levels)
    return with_alt(fig, f"One panel per level over a {h} by {w} pixel image, each with that level's grid of "
                         f"feature-map cells: {grids}. One cell near the centre is filled red, with a yellow dot at "
                         "its top-left pixel, (x times stride, y times stride), where its receptive field is "
                         "centred. Where the stride does not divide the image size, the last row and column of "
                         "cells hang over the edge, drawn in grey.")


def top_channels(feature: Tensor, k: int) -> Tensor:
    """Indices of the ``k`` channels of a (C, H, W) feature map that vary most across the image."""
    return feature.flatten(1).std(dim=1).argsort(descending=True)[:k]


def channel_gallery(image: Tensor, rows: dict[str, Tensor], k: int = 6, size: float = 1.75):
    """One row per ``name: (C, H, W) feature map``: the image, then its ``k`` most varying channels
    (grey: dark = 0, white = the channel's maximum)."""
    fig, axes = panel_grid(k + 1, size, nrows=len(rows))
    h, w = image.shape[-2:]
    for r, (name, feature) in enumerate(rows.items()):
        feature = feature.detach().cpu()
        show_image(axes[r, 0], image)
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
    return with_alt(fig, f"A grid with one row per feature map ({', '.join(rows)}): the image, then the {k} channels "
                         "that vary most across it, in grey (white = the channel's maximum). The trained C2 "
                         "channels are thin bright lines along the shapes' outlines, each for its own edge "
                         "directions; the untrained ones are blurred copies of the colours; trained C3 fires on "
                         "a few spots such as corners, untrained C3 shows coarse blurs.")


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
    fig, axes = panel_grid(ncols, size, nrows)
    h, w = image.shape[-2:]
    for ax in axes.flat:
        ax.axis("off")
    for ax, (level, (g, (cx, cy))) in zip(axes.flat, erf.items(), strict=False):
        show_image(ax, image, grey=True)
        ax.imshow(g.numpy(), cmap="hot", alpha=0.75, extent=(0, w, h, 0), vmin=0, vmax=1)
        ax.plot([cx + 0.5], [cy + 0.5], "o", color="cyan", ms=4, mec="black", mew=0.6)  # pixel centre
        title = f"{level}: centre cell"
        lo_x, lo_y, hi_x, hi_y = -2, -2, w + 2, h + 2
        if theoretical and level in theoretical:
            r = theoretical[level]  # pixels cx - (r-1)/2 .. cx + (r-1)/2, i.e. edges cx - r/2 + 0.5 ...
            add_box(ax, (cx - r / 2 + 0.5, cy - r / 2 + 0.5, cx + r / 2 + 0.5, cy + r / 2 + 0.5), "cyan", lw=1.2,
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
    return with_alt(fig, f"{n} panels, one per level ({', '.join(erf)}): the gradient of the level's centre cell "
                         "with respect to the input, on a heat scale over the greyed image, with a dashed square "
                         "for the theoretical receptive field. Outside a C level's square the gradient is zero; "
                         "inside, C2 to C4 concentrate their weight near the centre, far inside the square; C5's "
                         "square is larger than the image. P2 and P3 reach beyond the square of the C level they "
                         "come from: the top-down path brings in context.")
