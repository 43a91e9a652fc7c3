"""Notebook 03's figures and helpers: RoIPool's quantisation, bilinear sampling, sampling points,
the weight matrices, FPN level histograms. Taught in: 03_roi_align

``roi_pool_bins`` and ``sample_points`` say which cells and points each method reads; the ``plot_*``
functions draw them (matplotlib).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from course_lib.detection.receptive_field import receptive_fields
from course_lib.ops._utils import as_pair
from course_lib.ops.poolers import assign_fpn_levels
from course_lib.ops.roi_align import box_geometry
from course_lib.ops.roi_pool import quantise_rois
from course_lib.utils.colours import PALETTE

BLUE, ORANGE = PALETTE[3], PALETTE[4]  # the course palette's blue and orange (apart for every colour vision)


def roi_pool_bins(box: Sequence[float], output_size, spatial_scale: float, feature_size: Sequence[int]) -> dict:
    """The feature-map cells RoIPool reads for one box, for pictures and printing.

    Args:
        box: ``(x1, y1, x2, y2)`` in image pixels.
        output_size: int or (out_h, out_w).
        spatial_scale: 1 / stride of the feature map.
        feature_size: (H, W) of the feature map.

    Returns:
        dict with ``cells``: the snapped box ``(x1, y1, x2, y2)`` as whole cells, both ends
        included; ``rows`` and ``cols``: one ``(start, end)`` range of cells per bin (end
        excluded, clipped to the map). ``roi_pool``'s bin ``(i, j)`` is the max over
        ``rows[i]`` x ``cols[j]``.
    """
    out_h, out_w = as_pair(output_size)
    rois = torch.tensor([[0.0, *map(float, box)]])
    (x1, y1, x2, y2), (h0, h1), (w0, w1) = quantise_rois(rois, (out_h, out_w), spatial_scale, tuple(feature_size))
    return {"cells": (int(x1), int(y1), int(x2), int(y2)),
            "rows": list(zip(h0[0].tolist(), h1[0].tolist(), strict=True)),
            "cols": list(zip(w0[0].tolist(), w1[0].tolist(), strict=True))}


def sample_points(box: Sequence[float], output_size, spatial_scale: float = 1.0, sampling_ratio: int = -1,
                  aligned: bool = False) -> tuple[Tensor, Tensor]:
    """Where RoIAlign's samples of one box read the feature map.

    Returns:
        ys (out_h, grid_h) and xs (out_w, grid_w): the sample coordinates of each bin row and
        column, **in cell units with cell (i, j) covering [j, j+1) x [i, i+1)** (its centre at
        ``j + 0.5``), the convention pictures use. The kernel's own coordinate (the one it
        interpolates at, cell centres at whole numbers) is 0.5 less. Sample ``(a, b)`` of bin
        ``(i, j)`` is the point ``(ys[i, a], xs[j, b])``.
    """
    out_h, out_w = as_pair(output_size)
    rois = torch.tensor([[0.0, *map(float, box)]], dtype=torch.float64)
    axes = box_geometry(rois, (out_h, out_w), spatial_scale, sampling_ratio, aligned)
    result = []
    for (start, bin_size, grid), out_len in zip(axes, (out_h, out_w), strict=True):
        g = int(grid[0])
        bins = torch.arange(out_len, dtype=torch.float64)[:, None]
        s = torch.arange(g, dtype=torch.float64)[None, :]
        result.append(start[0] + bins * bin_size[0] + (s + 0.5) * bin_size[0] / max(g, 1) + 0.5)
    return result[0], result[1]


def level_thresholds(k_min: int = 2, k_max: int = 5, canonical_scale: int = 224,
                     canonical_level: int = 4) -> list[float]:
    """Box sizes ``sqrt(w * h)`` at which ``assign_fpn_levels`` moves up a level (k_max - k_min of them)."""
    return [canonical_scale * 2.0 ** (k - canonical_level) for k in range(k_min + 1, k_max + 1)]


def features_to_rgb(maps: Sequence[Tensor]) -> list[Tensor]:
    """Feature maps (C, h, w) of any sizes as (3, h, w) pictures in [0, 1], for looking at them.

    The three colours are the three main directions (principal components) of the feature
    vectors of all maps together, so that one colour means the same feature in every picture.
    """
    flat = torch.cat([m.detach().float().flatten(1).T for m in maps])  # (sum h*w, C)
    mean = flat.mean(0)
    _, _, v = torch.linalg.svd(flat - mean, full_matrices=False)
    basis = v[:3].T  # (C, 3)
    basis = basis * torch.where(basis.sum(0) < 0, -1.0, 1.0)  # fix the sign: SVD's is arbitrary
    proj = (flat - mean) @ basis
    lo, hi = proj.quantile(0.01, dim=0), proj.quantile(0.99, dim=0)
    out, start = [], 0
    for m in maps:
        n = m.shape[-2] * m.shape[-1]
        rgb = ((proj[start:start + n] - lo) / (hi - lo).clamp(min=1e-6)).clamp(0, 1)
        out.append(rgb.T.reshape(3, *m.shape[-2:]))
        start += n
    return out


def _grid_axes(ax, feature_size: Sequence[int], stride: float, title: str):
    H, W = feature_size
    for i in range(H + 1):
        ax.axhline(i * stride, color="#bbbbbb", lw=0.6, zorder=0)
    for j in range(W + 1):
        ax.axvline(j * stride, color="#bbbbbb", lw=0.6, zorder=0)
    ax.set_xlim(0, W * stride)
    ax.set_ylim(H * stride, 0)
    ax.set_aspect("equal")
    ticks_x = [j * stride for j in range(0, W + 1, max(1, W // 5))]
    ticks_y = [i * stride for i in range(0, H + 1, max(1, H // 5))]
    ax.set_xticks(ticks_x)
    ax.set_yticks(ticks_y)
    ax.tick_params(labelsize=8)
    ax.set_title(title, fontsize=10)


def _rect(ax, x1, y1, x2, y2, **kw):
    from matplotlib.patches import Rectangle

    ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, **kw))


def plot_roi_pool_quantisation(box: Sequence[float], output_size, stride: int, feature_size: Sequence[int]):
    """Two panels: the box and the cells RoIPool snaps it to; RoIPool's bins next to RoIAlign's."""
    import matplotlib.pyplot as plt

    out_h, out_w = as_pair(output_size)
    q = roi_pool_bins(box, output_size, 1.0 / stride, feature_size)
    cx1, cy1, cx2, cy2 = q["cells"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 5))
    _grid_axes(axes[0], feature_size, stride, "the box (red) and the cells RoIPool snaps it to (blue)")
    _rect(axes[0], cx1 * stride, cy1 * stride, (cx2 + 1) * stride, (cy2 + 1) * stride, fc=BLUE, alpha=0.25,
          ec=BLUE, lw=2)
    _grid_axes(axes[1], feature_size, stride, f"{out_h}x{out_w} bins: RoIPool (coloured cells) vs RoIAlign (red)")
    colours = PALETTE[1:10]  # neighbouring bins in colours that stay apart for every colour vision
    for i, (r0, r1) in enumerate(q["rows"]):
        for j, (c0, c1) in enumerate(q["cols"]):
            col = colours[(i * out_w + j) % len(colours)]
            inset = 1.5 + 1.5 * ((i + j) % 2)  # overlapping bins stay visible
            _rect(axes[1], c0 * stride + inset, r0 * stride + inset, c1 * stride - inset, r1 * stride - inset,
                  fc=col, alpha=0.18, ec=col, lw=1.5)
    x1, y1, x2, y2 = map(float, box)
    for ax in axes:
        _rect(ax, x1, y1, x2, y2, fc="none", ec="#cc0000", lw=2.5)
    for k in range(1, out_w):
        axes[1].plot([x1 + k * (x2 - x1) / out_w] * 2, [y1, y2], color="#cc0000", lw=1.2, ls="--")
    for k in range(1, out_h):
        axes[1].plot([x1, x2], [y1 + k * (y2 - y1) / out_h] * 2, color="#cc0000", lw=1.2, ls="--")
    for ax in axes:
        ax.set_xlabel("image pixels (grid: one feature-map cell)", fontsize=8)
    fig.tight_layout()
    from course_lib.lessons.draw import with_alt

    x1, y1, x2, y2 = map(float, box)
    return with_alt(fig, f"Two panels on a grid of feature-map cells of {stride} pixels. Left: the box from "
                         f"({x1:g}, {y1:g}) to ({x2:g}, {y2:g}) in red, and in blue the cells RoIPool snaps it to, "
                         f"from ({cx1 * stride}, {cy1 * stride}) to ({(cx2 + 1) * stride}, {(cy2 + 1) * stride}): a "
                         f"region that does not match the box. Right: RoIPool's {out_h} by {out_w} bins as "
                         "coloured groups of whole cells, some sharing a row or column, next to RoIAlign's exact "
                         "division of the box into equal parts, dashed red.")


def plot_shift_response(shifts: Sequence[float], pooled: dict, stride: int, what: str = "one output value"):
    """One output value (``what``) of each pooling method against the box's shift in pixels."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.2))
    styles = {"roi_pool": dict(color=BLUE, drawstyle="steps-post"), "roi_align": dict(color="#cc0000")}
    for name, values in pooled.items():
        ax.plot(list(shifts), list(values), lw=2, label=name, **styles.get(name, {}))
    for k in range(int(max(shifts) // stride) + 1):
        ax.axvline(k * stride, color="#bbbbbb", lw=0.6, zorder=0)
    ax.set_xlabel(f"box shifted right by ... image pixels (grid lines: one stride, {stride} px)")
    ax.set_ylabel(what)
    ax.legend(fontsize=9)
    ax.set_title("moving the box moves RoIAlign's output smoothly; RoIPool's jumps", fontsize=10)
    fig.tight_layout()
    from course_lib.lessons.draw import with_alt

    return with_alt(fig, f"Line chart of {what} against the box's shift to the right, 0 to {max(shifts):g} pixels, "
                         f"with grid lines every {stride} pixels: RoIPool's value (blue) is a staircase that stays "
                         "flat and then jumps when a rounding flips; RoIAlign's value (red) changes smoothly with "
                         "the shift.")


def plot_bilinear(feature: Tensor, y: float, x: float):
    """A small (H, W) map with one point, its four neighbouring cells and their weights."""
    import matplotlib.pyplot as plt

    H, W = feature.shape
    fig, ax = plt.subplots(figsize=(5, 4.2))
    im = ax.imshow(feature.numpy(), cmap="viridis")  # cell (i, j) centred at (j, i): the kernel's coordinates
    fig.colorbar(im, ax=ax, fraction=0.046)
    y0, x0 = min(max(int(max(y, 0.0)), 0), H - 1), min(max(int(max(x, 0.0)), 0), W - 1)
    y1, x1 = min(y0 + 1, H - 1), min(x0 + 1, W - 1)
    ly, lx = y - y0, x - x0
    for (cy, cx), w in {(y0, x0): (1 - ly) * (1 - lx), (y0, x1): (1 - ly) * lx,
                        (y1, x0): ly * (1 - lx), (y1, x1): ly * lx}.items():
        ax.plot([x, cx], [y, cy], color="white", lw=0.5 + 4 * w)
        ax.text(cx, cy, f"{feature[cy, cx]:.1f}\nw={w:.2f}", ha="center", va="center", fontsize=8, color="white",
                bbox=dict(fc="black", alpha=0.5, lw=0))
    ax.plot([x], [y], "o", color="#cc0000", ms=9)
    ax.set_xticks(range(W))
    ax.set_yticks(range(H))
    ax.set_title(f"the point (y, x) = ({y}, {x}) reads 4 cells", fontsize=10)
    fig.tight_layout()
    from course_lib.lessons.draw import with_alt

    return with_alt(fig, f"A {H} by {W} feature map as a colour grid, a red point at (y, x) = ({y}, {x}), and "
                         "lines to the four cells around it, thicker for a larger weight. Each of the four cells "
                         "is labelled with its value and weight: "
                         + "; ".join(f"cell ({cy}, {cx}) value {feature[cy, cx]:.1f} weight {w:.2f}" for (cy, cx), w in
                                     {(y0, x0): (1 - ly) * (1 - lx), (y0, x1): (1 - ly) * lx,
                                      (y1, x0): ly * (1 - lx), (y1, x1): ly * lx}.items())
                         + ". The weights sum to 1; the nearest cell weighs most.")


def plot_sampling_points(box: Sequence[float], output_size, stride: int, feature_size: Sequence[int],
                         settings: Sequence[tuple[int, bool]], titles: Sequence[str] | None = None):
    """One panel per ``(sampling_ratio, aligned)``: the box, its bins, and where the samples read the map.

    Samples are drawn where they read (see ``sample_points``), so with ``aligned=False`` they sit
    half a cell down and right of where the box says.
    """
    import matplotlib.pyplot as plt

    out_h, out_w = as_pair(output_size)
    H, W = feature_size
    x1, y1, x2, y2 = map(float, box)
    fig, axes = plt.subplots(1, len(settings), figsize=(5 * len(settings), 5), squeeze=False)
    for k, (ax, (ratio, aligned)) in enumerate(zip(axes[0], settings, strict=True)):
        ys, xs = sample_points(box, output_size, 1.0 / stride, ratio, aligned)
        per_bin = ys.shape[1] * xs.shape[1]
        title = titles[k] if titles else f"sampling_ratio={ratio}, aligned={aligned}"
        _grid_axes(ax, feature_size, stride, f"{title}: {ys.shape[1]}x{xs.shape[1]} = {per_bin} samples per bin")
        cy, cx = torch.meshgrid(torch.arange(H) + 0.5, torch.arange(W) + 0.5, indexing="ij")
        ax.plot(cx.flatten() * stride, cy.flatten() * stride, ".", color="#999999", ms=3)  # cell centres
        _rect(ax, x1, y1, x2, y2, fc="none", ec="#cc0000", lw=2.5)
        for b in range(1, out_w):
            ax.plot([x1 + b * (x2 - x1) / out_w] * 2, [y1, y2], color="#cc0000", lw=1, ls="--")
        for b in range(1, out_h):
            ax.plot([x1, x2], [y1 + b * (y2 - y1) / out_h] * 2, color="#cc0000", lw=1, ls="--")
        py, px = torch.meshgrid(ys.flatten(), xs.flatten(), indexing="ij")
        ax.plot(px.flatten() * stride, py.flatten() * stride, "o", color=BLUE, ms=4)
    fig.tight_layout()
    from course_lib.lessons.draw import with_alt

    described = []
    for k, (ratio, aligned) in enumerate(settings):
        ys, xs = sample_points(box, output_size, 1.0 / stride, ratio, aligned)
        title = titles[k] if titles else f"sampling_ratio {ratio}, aligned {aligned}"
        described.append(f"{title}: {ys.shape[1]} by {xs.shape[1]} samples per bin"
                         + ("" if aligned else ", all half a cell right of and below where the box says"))
    return with_alt(fig, f"{len(settings)} panels on a grid of feature-map cells (grey dots: cell centres), each "
                         f"with the box from ({x1:g}, {y1:g}) to ({x2:g}, {y2:g}) in red, its {out_h} by {out_w} "
                         "bins dashed, and blue dots where RoIAlign's samples read the map. " + "; ".join(described)
                         + ".")


def plot_weight_matrices(wy: Tensor, wx: Tensor, stride: int | None = None):
    """Heat maps of Wy (out_h, H) and Wx (out_w, W): one row per bin, one column per feature-map cell."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 2.8))
    for ax, m, name, axis in ((axes[0], wy, "Wy", "row"), (axes[1], wx, "Wx", "column")):
        im = ax.imshow(m.numpy(), cmap="Blues", vmin=0, aspect="auto")
        ax.set_xlabel(f"feature-map {axis}")
        ax.set_ylabel("bin")
        ax.set_xticks(range(m.shape[1]))
        ax.set_yticks(range(m.shape[0]))
        ax.tick_params(labelsize=7)
        ax.set_title(f"{name} {tuple(m.shape)}: each row sums to {float(m.sum(1).max()):.2f}", fontsize=10)
        fig.colorbar(im, ax=ax, fraction=0.03)
    fig.tight_layout()
    from course_lib.lessons.draw import with_alt

    return with_alt(fig, f"Two heat maps in blue. Wy, {wy.shape[0]} bins by {wy.shape[1]} feature-map rows, and "
                         f"Wx, {wx.shape[0]} bins by {wx.shape[1]} columns: each bin's row holds the weights of the "
                         "few cells its samples read, zero elsewhere, so every row is a small band that moves "
                         "along the diagonal, and each row sums to 1.")


def plot_fpn_levels(sizes: Tensor, k_min: int = 2, k_max: int = 5, canonical_scale: int = 224,
                    canonical_level: int = 4, label: str = "boxes"):
    """Level against box size ``sqrt(w * h)``, with the sizes of some boxes as a histogram below it."""
    import matplotlib.pyplot as plt

    s = torch.logspace(3, 10, 400, base=2)  # 8 .. 1024 pixels
    boxes = torch.stack([torch.zeros_like(s), torch.zeros_like(s), s, s], 1)
    levels = assign_fpn_levels(boxes, k_min, k_max, canonical_scale, canonical_level) + k_min
    fig, (ax, hx) = plt.subplots(2, 1, figsize=(7, 4.2), sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    ax.step(s.numpy(), levels.numpy(), where="post", color=BLUE, lw=2)
    for t in level_thresholds(k_min, k_max, canonical_scale, canonical_level):
        ax.axvline(t, color="#bbbbbb", lw=0.8, ls="--")
        ax.text(t, k_min + 0.1, f" {t:g}", fontsize=8, color="#666666")
    ax.set_xscale("log", base=2)
    ax.set_yticks(range(k_min, k_max + 1), [f"P{k}" for k in range(k_min, k_max + 1)])
    ax.set_ylabel("pooled from")
    ax.set_title(f"FPN level of a box: floor({canonical_level} + log2(sqrt(w*h) / {canonical_scale})), "
                 f"clamped to P{k_min}-P{k_max}", fontsize=10)
    hx.hist(sizes.numpy(), bins=torch.logspace(3, 10, 57, base=2).numpy(), color=ORANGE)
    hx.set_xlabel("box size sqrt(w * h) in pixels")
    hx.set_ylabel(label, fontsize=9)
    fig.tight_layout()
    from course_lib.lessons.draw import with_alt

    box_levels = assign_fpn_levels(torch.stack([torch.zeros_like(sizes), torch.zeros_like(sizes), sizes, sizes], 1)
                                   .float(), k_min, k_max, canonical_scale, canonical_level) + k_min
    counts = ", ".join(f"P{k}: {int((box_levels == k).sum())}" for k in range(k_min, k_max + 1))
    return with_alt(fig, f"Top: a staircase of the FPN level a box is pooled from against its size "
                         f"(square root of width times height, 8 to 1024 pixels, log scale), P{k_min} to P{k_max}, "
                         f"with canonical scale {canonical_scale} at level {canonical_level}; thresholds at "
                         + ", ".join(f"{t:g}" for t in level_thresholds(k_min, k_max, canonical_scale,
                                                                       canonical_level))
                         + f" pixels. Bottom: a histogram of the sizes of {len(sizes)} {label}"
                         + (f", between {float(sizes.min()):.0f} and {float(sizes.max()):.0f} pixels"
                            if len(sizes) else "") + f". Boxes per level: {counts}.")


def cell_centres_table(net, prefix: str = "C", image_size: int = 256) -> str:
    """Where each output map's centre cell looks, measured (``receptive_fields``), and where RoIAlign reads it.

    One row per map of ``net`` (a ResNet body: C2-C5): the cell's column ``i``, the input columns its gradient
    reaches, the pixel in their middle and its centre ``x`` (pixel ``j`` covers ``[j, j + 1)``), and the ``x`` at
    which ``roi_align`` puts the cell's value: ``i * stride`` with ``aligned=False``, ``(i + 0.5) * stride`` with
    ``aligned=True``, each with its distance from the measured centre. Rows and columns agree (square fields);
    the last line says so.
    """
    fields = receptive_fields(net, image_size)
    lines = [f"{'level':5s} {'stride':>6s} {'cell i':>6s}  {'pixels reaching it':>18s}  {'centre pixel':>12s}  "
             f"{'aligned=False puts it at':>24s}  {'aligned=True at':>21s}"]
    for f in fields:
        i = f.cell[1]
        centre_x = f.centre[1] + 0.5
        at_false, at_true = i * f.stride, (i + 0.5) * f.stride
        level = f"{prefix}{f.stride.bit_length() - 1}"
        lines.append(f"{level:5s} {f.stride:6d} {i:6d}  {f'{f.first[1]}..{f.last[1]}':>18s}  "
                     f"{f'{f.centre[1]:g} (x={centre_x:g})':>12s}  "
                     f"{f'x={at_false:g} ({abs(at_false - centre_x):g} px off)':>24s}  "
                     f"{f'x={at_true:g} ({abs(at_true - centre_x):g} px off)':>21s}"
                     + ("  (field cut by the input's border)" if f.clipped else ""))
    square = all(f.first[0] == f.first[1] and f.last[0] == f.last[1] for f in fields)
    lines.append(f"rows: the same as the columns: {square}")
    return "\n".join(lines)
