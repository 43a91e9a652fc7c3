"""RoIPool, RoIAlign, FPN level assignment and multi-scale RoIAlign, written from scratch.

Taught in: 03_roi_align

Every function here agrees with its torchvision counterpart to 1e-5 (float32):

| course_lib                 | torchvision                                   |
|----------------------------|-----------------------------------------------|
| ``roi_pool``               | ``torchvision.ops.roi_pool``                  |
| ``roi_align``              | ``torchvision.ops.roi_align``                 |
| ``assign_fpn_levels``      | ``torchvision.ops.poolers.LevelMapper``       |
| ``multiscale_roi_align``   | ``torchvision.ops.MultiScaleRoIAlign``        |

Boxes are ``(x1, y1, x2, y2)`` in input-image pixels; ``spatial_scale`` maps them onto the
feature map (0.25 for a stride-4 map). They come either as one ``(K, 5)`` tensor whose first
column is the batch index, or as a list with one ``(Ki, 4)`` tensor per image.

The key idea of ``roi_align``: bilinear sampling and the average over the samples of a bin are
separable in y and x. For one box the ``(C, out_h, out_w)`` output is

    out[c] = Wy @ F[c] @ Wx.T

where ``F`` is the ``(C, H, W)`` feature map of the box's image and ``Wy`` (out_h, H) and
``Wx`` (out_w, W) are small interpolation-weight matrices: row ``i`` of ``Wy`` holds the
bilinear weights of the bin's sample rows, already divided by the number of samples
(``roi_align_weights`` returns them, to look at or to check with ``torch.einsum``).

Each row of Wy and Wx is non-zero only on a short band of consecutive cells, the ones the
bin's samples touch, so ``roi_align`` does not multiply the dense matrices (mostly zeros: ~25x
more work for 7x7 bins on a 50x50 map). It keeps each row's band (cells and weights) and sums,
per bin (i, j), the feature vectors of the cells ``(y, x)`` in band ``i`` of Wy times band
``j`` of Wx, with weights ``Wy[i, y] * Wx[j, x]``. ``torch.nn.functional.embedding_bag`` does
exactly this gather + weighted sum in one op, on the channels-last feature map; its autograd
gives the backward pass (equal to torchvision's).

For the notebook, RoIAlign one piece at a time: ``bilinear_interpolate`` (one point, the kernel's
edge rules), ``linear_weights`` (one axis of it), ``roi_align_one_box`` (``Wy @ F @ Wx.T``),
``roi_pool_bins`` and ``sample_points`` (which cells and points each method reads), and the
``plot_*`` pictures (matplotlib, imported only when drawing).
"""

from __future__ import annotations

import math
from typing import Sequence, Union

import torch
from torch import Tensor

BoxesArg = Union[Tensor, Sequence[Tensor]]

__all__ = ["roi_pool", "roi_align", "roi_align_weights", "assign_fpn_levels", "multiscale_roi_align",
           "bilinear_interpolate", "linear_weights", "roi_align_one_box", "roi_pool_bins", "sample_points",
           "level_thresholds", "features_to_rgb"]


# ----------------------------------------------------------------------------- helpers


def _pair(output_size: Union[int, Sequence[int]]) -> tuple[int, int]:
    if isinstance(output_size, int):
        return output_size, output_size
    out_h, out_w = output_size
    return int(out_h), int(out_w)


def _to_rois(boxes: BoxesArg) -> Tensor:
    """A (K, 5) tensor ``(batch_index, x1, y1, x2, y2)`` from either accepted box format."""
    if isinstance(boxes, Tensor):
        if boxes.dim() != 2 or boxes.size(1) != 5:
            raise ValueError(f"boxes tensor must have shape (K, 5), got {tuple(boxes.shape)}")
        return boxes
    boxes = list(boxes)
    for b in boxes:
        if b.dim() != 2 or b.size(1) != 4:
            raise ValueError(f"each tensor in the boxes list must have shape (Ki, 4), got {tuple(b.shape)}")
    if not boxes:
        raise ValueError("boxes list is empty: pass one (Ki, 4) tensor per image")
    batch_idx = torch.cat([torch.full_like(b[:, :1], i) for i, b in enumerate(boxes)])
    return torch.cat([batch_idx, torch.cat(boxes)], dim=1)


def _round_half_away(v: Tensor) -> Tensor:
    """C's ``round()``: halves go away from zero (``torch.round`` rounds halves to even)."""
    return torch.where((v - v.trunc()).abs() == 0.5, v.trunc() + v.sign(), v.round())


# ----------------------------------------------------------------------------- RoIPool


def roi_pool(input: Tensor, boxes: BoxesArg, output_size, spatial_scale: float = 1.0) -> Tensor:
    """RoIPool (Fast R-CNN): max over quantised bins. Equal to ``torchvision.ops.roi_pool``.

    Args:
        input: (N, C, H, W) feature maps.
        boxes: (K, 5) tensor ``(batch_index, x1, y1, x2, y2)`` or a list of (Ki, 4) tensors.
        output_size: int or (out_h, out_w).
        spatial_scale: box coordinates are multiplied by it to land on the feature map.

    Returns:
        (K, C, out_h, out_w). A bin that covers no feature-map cell is 0.

    RoIPool quantises twice: the box corners are rounded to whole cells, and every bin edge is
    floored/ceiled to whole cells. Those roundings are what RoIAlign removes.
    """
    out_h, out_w = _pair(output_size)
    rois = _to_rois(boxes).detach()
    _, C, H, W = input.shape
    K = rois.size(0)

    # Quantisation 1: box corners rounded to whole cells (C round: halves away from zero).
    x1, y1, x2, y2 = _round_half_away(rois[:, 1:].to(input.dtype) * spatial_scale).long().unbind(1)
    roi_w = (x2 - x1 + 1).clamp(min=1)  # malformed boxes become 1x1
    roi_h = (y2 - y1 + 1).clamp(min=1)
    # Quantisation 2: bin edges floored/ceiled to whole cells, then clipped to the map.
    # (K, out_h) and (K, out_w) edges, in the input dtype as torchvision computes them.
    h0, h1 = _bin_edges(roi_h, out_h, y1, H, input.dtype)
    w0, w1 = _bin_edges(roi_w, out_w, x1, W, input.dtype)

    out = input.new_zeros(K, C, out_h, out_w)
    batch_idx = rois[:, 0].long().tolist()
    h0, h1, w0, w1 = h0.tolist(), h1.tolist(), w0.tolist(), w1.tolist()
    for k, b in enumerate(batch_idx):
        for ph in range(out_h):
            for pw in range(out_w):
                rows = slice(h0[k][ph], h1[k][ph])
                cols = slice(w0[k][pw], w1[k][pw])
                if rows.stop > rows.start and cols.stop > cols.start:  # an empty bin stays 0
                    out[k, :, ph, pw] = input[b, :, rows, cols].amax(dim=(1, 2))
    return out


def _bin_edges(roi_len: Tensor, out_len: int, roi_start: Tensor, size: int, dtype) -> tuple[Tensor, Tensor]:
    """RoIPool's integer bin edges: (K, out_len) starts and ends, clipped to [0, size]."""
    bin_size = roi_len.to(dtype) / out_len
    bins = torch.arange(out_len + 1, dtype=dtype, device=roi_len.device)[None, :]
    start = torch.floor(bins[:, :-1] * bin_size[:, None]).long() + roi_start[:, None]
    end = torch.ceil(bins[:, 1:] * bin_size[:, None]).long() + roi_start[:, None]
    return start.clamp(0, size), end.clamp(0, size)


# ----------------------------------------------------------------------------- RoIAlign


def _box_geometry(rois: Tensor, output_size, spatial_scale: float, sampling_ratio: int, aligned: bool):
    """Each box on the feature map, computed like torchvision's kernel (same float ops).

    Returns per axis (y, then x) a tuple ``(start, bin_size, grid)`` of (K,) tensors: where the
    box starts, the length of one bin, and the number of samples per bin along that axis
    (torchvision's ``roi_bin_grid_h`` / ``roi_bin_grid_w``).
    """
    out_h, out_w = output_size
    offset = 0.5 if aligned else 0.0  # aligned=True: pixel (i, j) has its centre at (i, j)
    x1, y1, x2, y2 = (rois[:, i] * spatial_scale - offset for i in range(1, 5))
    roi_w, roi_h = x2 - x1, y2 - y1
    if not aligned:  # legacy behaviour: malformed boxes are stretched to 1x1 cell
        roi_w, roi_h = roi_w.clamp(min=1.0), roi_h.clamp(min=1.0)
    if sampling_ratio > 0:
        grid_h = grid_w = torch.full_like(roi_h, float(sampling_ratio))
    else:  # adaptive: about one sample per cell; a negative size gives no samples (output 0)
        grid_h = torch.ceil(roi_h / out_h).clamp(min=0)
        grid_w = torch.ceil(roi_w / out_w).clamp(min=0)
    return (y1, roi_h / out_h, grid_h), (x1, roi_w / out_w, grid_w)


def _axis_taps(
    start: Tensor, bin_size: Tensor, grid: Tensor, out_len: int, size: int, num_samples: int
) -> tuple[Tensor, Tensor]:
    """Bilinear taps of the sample points of every bin, along one axis.

    Args:
        start, bin_size, grid: (K,) from ``_box_geometry``.
        out_len: number of bins (out_h or out_w); size: feature-map length (H or W).
        num_samples: samples per bin to lay out (>= grid.max(); extra ones get weight 0).

    Returns:
        cells (K, out_len, 2 * num_samples) int64 and weights of the same shape: bin ``i`` of
        box ``k`` reads ``cells[k, i]`` with ``weights[k, i]``. Each sample reads its two
        neighbouring cells (low, high); the weights include the 1/grid of the bin average.
    """
    dtype, device = start.dtype, start.device
    bins = torch.arange(out_len, dtype=dtype, device=device)[None, :, None]  # (1, out_len, 1)
    s = torch.arange(num_samples, dtype=dtype, device=device)[None, None, :]  # (1, 1, S)
    start, bin_size, grid = start[:, None, None], bin_size[:, None, None], grid[:, None, None]

    # Sample positions, in the same float order as torchvision's kernel (bit-identical).
    pos = start + bins * bin_size + (s + 0.5) * bin_size / grid  # (K, out_len, S)

    # Unused samples (adaptive sampling) and samples more than one cell outside the map
    # contribute nothing (`not (-1 <= pos <= size)` is also true for NaN).
    keep = (s < grid) & (pos >= -1.0) & (pos <= size)
    pos = torch.where(keep, pos, 0.0).clamp(min=0.0)  # -1 <= pos < 0 reads cell 0
    low = pos.long()  # (int) truncation as in torchvision's kernel; = floor since pos >= 0
    at_edge = low >= size - 1  # at (or past) the last cell: read it alone, with weight 1
    low = low.clamp(max=size - 1)
    high = torch.where(at_edge, low, low + 1)
    frac = torch.where(at_edge, 0.0, pos - low)

    scale = keep / grid.clamp(min=1)  # 1/samples for kept samples, 0 otherwise
    cells = torch.cat([low, high], dim=-1)
    weights = torch.cat([(1.0 - frac) * scale, frac * scale], dim=-1)
    return cells, weights


def _axis_band(start: Tensor, bin_size: Tensor, grid: Tensor, out_len: int, size: int) -> tuple[Tensor, Tensor]:
    """The non-zero band of each row of Wy (or Wx): consecutive cells and their weights.

    Same arguments as ``_axis_taps``. Returns cells (K, out_len, L) int64 and weights of the
    same shape, where L is the longest band (about bin size + 1 cells: fewer entries than the
    2 taps per sample, whose cells repeat). Slots past a row's band have weight 0.
    """
    cells, weights = _axis_taps(start, bin_size, grid, out_len, size, _max_samples(grid))
    used = weights > 0
    first = torch.where(used, cells, size).amin(dim=-1, keepdim=True).clamp(max=size - 1)
    last = torch.where(used, cells, -1).amax(dim=-1, keepdim=True)
    length = max(int((last - first).max()) + 1, 1) if cells.numel() else 1
    # Sum the taps into their slot of the band (taps on a shared cell add up).
    band = weights.new_zeros(*cells.shape[:2], length)
    band.scatter_add_(2, torch.where(used, cells - first, 0), weights)
    band_cells = (first + torch.arange(length, device=cells.device)).clamp(max=size - 1)
    return band_cells, band


def roi_align_weights(
    input_size: Sequence[int],
    boxes: BoxesArg,
    output_size,
    spatial_scale: float = 1.0,
    sampling_ratio: int = -1,
    aligned: bool = False,
) -> tuple[Tensor, Tensor]:
    """The interpolation matrices of RoIAlign: ``roi_align = Wy @ F @ Wx.T`` per box.

    Args:
        input_size: (H, W) of the feature map.
        boxes, output_size, spatial_scale, sampling_ratio, aligned: as in ``roi_align``.

    Returns:
        Wy (K, out_h, H) and Wx (K, out_w, W). Row ``i`` of ``Wy[k]`` is the average, over the
        samples of bin row ``i``, of their bilinear weights on the feature-map rows; so for box
        ``k`` on image ``b`` and every channel ``c``:
        ``roi_align(...)[k, c] == Wy[k] @ input[b, c] @ Wx[k].T``.
    """
    out_h, out_w = _pair(output_size)
    H, W = input_size
    rois = _to_rois(boxes).detach()
    y_axis, x_axis = _box_geometry(rois, (out_h, out_w), spatial_scale, sampling_ratio, aligned)
    matrices = []
    for (start, bin_size, grid), out_len, size in ((y_axis, out_h, H), (x_axis, out_w, W)):
        cells, weights = _axis_taps(start, bin_size, grid, out_len, size, _max_samples(grid))
        m = torch.zeros(rois.size(0), out_len, size, dtype=rois.dtype, device=rois.device)
        matrices.append(m.scatter_add_(2, cells, weights))
    return matrices[0], matrices[1]


def roi_align(
    input: Tensor,
    boxes: BoxesArg,
    output_size,
    spatial_scale: float = 1.0,
    sampling_ratio: int = -1,
    aligned: bool = False,
) -> Tensor:
    """RoIAlign (Mask R-CNN): average of bilinear samples per bin. Equal to ``torchvision.ops.roi_align``.

    Args:
        input: (N, C, H, W) feature maps.
        boxes: (K, 5) tensor ``(batch_index, x1, y1, x2, y2)`` or a list of (Ki, 4) tensors,
            in image coordinates.
        output_size: int or (out_h, out_w).
        spatial_scale: maps box coordinates onto the feature map (1 / stride).
        sampling_ratio: samples per bin along each axis; <= 0 means adaptive,
            ``ceil(box_size / output_size)`` per box.
        aligned: shift boxes by -0.5 cell so that pixel centres line up (Detectron2); if False
            (the legacy behaviour) boxes smaller than 1 cell are stretched to 1 cell.

    Returns:
        (K, C, out_h, out_w), differentiable with respect to ``input`` (not the boxes).

    How: per box the result is ``Wy @ F @ Wx.T`` (see ``roi_align_weights``); bin (i, j) is
    the weighted sum of the feature vectors its samples touch, with weights
    ``Wy[i, y] * Wx[j, x]``, computed by ``embedding_bag`` (see the module docstring).
    """
    out_h, out_w = _pair(output_size)
    rois = _to_rois(boxes).detach().to(input.dtype)  # like torchvision: no gradient for boxes
    N, C, H, W = input.shape
    K = rois.size(0)

    y_axis, x_axis = _box_geometry(rois, (out_h, out_w), spatial_scale, sampling_ratio, aligned)
    cy, wy = _axis_band(*y_axis, out_h, H)  # (K, out_h, Ly): the rows each bin reads
    cx, wx = _axis_band(*x_axis, out_w, W)  # (K, out_w, Lx): the columns each bin reads
    # Every cell of every image as one row of a table: (N*H*W, C), row (b*H + y)*W + x.
    table = input.permute(0, 2, 3, 1).reshape(N * H * W, C)
    cells_y = rois[:, 0].long()[:, None, None] * H + cy  # (K, out_h, Ly): table row of (b, y, 0)

    chunks = _box_chunks(wy, wx, adaptive=sampling_ratio <= 0)
    if len(chunks) == 1:  # all boxes at once (the usual case)
        _, ly, lx = chunks[0]
        return _pool_bins(table, W, cells_y[..., :ly], wy[..., :ly], cx[..., :lx], wx[..., :lx])
    out = input.new_zeros(K, C, out_h, out_w)
    for idx, ly, lx in chunks:
        pooled = _pool_bins(table, W, cells_y[idx, :, :ly], wy[idx, :, :ly], cx[idx, :, :lx], wx[idx, :, :lx])
        out = out.index_copy(0, idx, pooled)
    return out


def _pool_bins(table: Tensor, W: int, cells_y: Tensor, wy: Tensor, cx: Tensor, wx: Tensor) -> Tensor:
    """Every bin as a weighted sum of feature vectors: ``sum Wy[i, y] * Wx[j, x] * F[b, :, y, x]``.

    Args:
        table: (N*H*W, C) channels-last feature map, row ``(b*H + y)*W + x``.
        W: feature-map width.
        cells_y: (K, out_h, Ly) table row ``b*H + y`` of each band cell of Wy; wy: its weights.
        cx: (K, out_w, Lx) column ``x`` of each band cell of Wx; wx: its weights.

    Returns:
        (K, C, out_h, out_w), contiguous.
    """
    (K, out_h, _), out_w = cells_y.shape, cx.size(1)
    # (K, i, j, y, x) over the bands: the table row of each cell, and its weight Wy[i, y] * Wx[j, x].
    cells = cells_y[:, :, None, :, None] * W + cx[:, None, :, None, :]
    weights = wy[:, :, None, :, None] * wx[:, None, :, None, :]
    taps_per_bin = cells.size(3) * cells.size(4)
    pooled = torch.nn.functional.embedding_bag(
        cells.reshape(K * out_h * out_w, taps_per_bin),
        table,
        per_sample_weights=weights.reshape(K * out_h * out_w, taps_per_bin),
        mode="sum",
    )  # (K*out_h*out_w, C): one weighted sum per bin
    return pooled.view(K, out_h, out_w, table.size(1)).permute(0, 3, 1, 2).contiguous()


def _max_samples(grid: Tensor) -> int:
    """Samples per bin to lay out for a set of boxes (at least 1, so that shapes stay simple)."""
    return max(int(grid.max()), 1) if grid.numel() else 1


_MAX_TAPS = 1 << 22  # (cell, weight) pairs evaluated at once: bounds the memory they take


def _box_chunks(wy: Tensor, wx: Tensor, adaptive: bool) -> list[tuple[Tensor, int, int]]:
    """Boxes to evaluate together, as (box indices, band length in y, band length in x).

    All boxes of a chunk use the chunk's longest bands (slots past a box's own band weigh 0).
    With a fixed sampling_ratio the bands differ little. With adaptive sampling they follow the
    box size, so boxes are grouped by (ceil(log2 Ly), ceil(log2 Lx)): the padding stays under
    2x per axis. Groups are split to keep at most ``_MAX_TAPS`` (cell, weight) pairs at once.
    """
    K, bins = wy.size(0), wy.size(1) * wx.size(1)
    ly, lx = _band_lengths(wy), _band_lengths(wx)  # (K,)
    if adaptive and K:
        key = torch.log2(ly).ceil() * 64 + torch.log2(lx).ceil()
        groups = [torch.where(key == v)[0] for v in key.unique()]
    else:
        groups = [torch.arange(K, device=wy.device)]
    chunks = []
    for idx in groups:
        max_ly = int(ly[idx].max()) if len(idx) else 1
        max_lx = int(lx[idx].max()) if len(idx) else 1
        per_chunk = max(1, _MAX_TAPS // (bins * max_ly * max_lx))
        chunks.extend((part, max_ly, max_lx) for part in idx.split(per_chunk))
    return chunks


def _band_lengths(band: Tensor) -> Tensor:
    """(K,) length of each box's longest band (at least 1): last non-zero slot + 1."""
    slots = torch.arange(1, band.size(-1) + 1, dtype=band.dtype, device=band.device)
    return ((band > 0) * slots).amax(dim=(1, 2)).clamp(min=1) if band.size(0) else band.new_ones(0)


# ----------------------------------------------------------------------------- FPN levels


def assign_fpn_levels(
    boxes: BoxesArg,
    k_min: int = 2,
    k_max: int = 5,
    canonical_scale: int = 224,
    canonical_level: int = 4,
) -> Tensor:
    """FPN level for each box (FPN paper, eq. 1). Equal to ``torchvision.ops.poolers.LevelMapper``.

    ``k = floor(canonical_level + log2(sqrt(area) / canonical_scale) + 1e-6)``, clamped to
    ``[k_min, k_max]``: a 224x224 box goes to P4, one half as wide to P3, and so on.

    Args:
        boxes: (K, 4) boxes ``(x1, y1, x2, y2)`` or a list of them (concatenated in order).

    Returns:
        (K,) int64 level **indices counted from k_min** (0 means P{k_min}), as LevelMapper
        returns them: index ``i`` selects the i-th feature map passed to the pooler.
    """
    if not isinstance(boxes, Tensor):
        boxes = torch.cat(list(boxes))
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    s = torch.sqrt(area)
    eps = torch.tensor(1e-6, dtype=s.dtype)  # keeps exact powers of two on the upper level
    levels = torch.floor(canonical_level + torch.log2(s / canonical_scale) + eps)
    levels = torch.clamp(levels, min=k_min, max=k_max)
    return levels.to(torch.int64) - k_min


def _infer_scale(feature: Tensor, image_size: Sequence[int]) -> float:
    """Feature-map scale as a power of two: 2 ** round(log2(feature height / image height))."""
    approx = float(feature.shape[-2]) / float(image_size[0])
    return 2 ** float(torch.tensor(approx).log2().round())


def multiscale_roi_align(
    features,
    boxes: Sequence[Tensor],
    image_shapes: Sequence[Sequence[int]],
    output_size,
    sampling_ratio: int,
    featmap_names: Sequence[str] | None = None,
    canonical_scale: int = 224,
    canonical_level: int = 4,
) -> Tensor:
    """RoIAlign over an FPN: each box is pooled from the level its size picks.

    Equal to ``torchvision.ops.MultiScaleRoIAlign(featmap_names, output_size, sampling_ratio)``
    called as ``pooler(features, boxes, image_shapes)``.

    Args:
        features: dict name -> (N, C, Hl, Wl) (filtered by ``featmap_names`` if given) or a
            list, finest level first.
        boxes: list with one (Ki, 4) tensor ``(x1, y1, x2, y2)`` per image, in image pixels.
        image_shapes: (height, width) of each image as fed to the backbone.
        output_size: int or (out_h, out_w).
        sampling_ratio: as in ``roi_align``.

    Returns:
        (sum Ki, C, out_h, out_w), boxes in the order given.
    """
    if isinstance(features, dict):
        names = featmap_names if featmap_names is not None else list(features)
        features = [v for k, v in features.items() if k in names]
    features = list(features)
    out_h, out_w = _pair(output_size)
    if not image_shapes:
        raise ValueError("image_shapes should not be empty")

    # Scales from the largest image: 1/4, 1/8, ... (torchvision uses the height ratio).
    max_size = (max(s[0] for s in image_shapes), max(s[1] for s in image_shapes))
    scales = [_infer_scale(f, max_size) for f in features]
    rois = _to_rois(boxes)
    if len(features) == 1:
        return roi_align(features[0], rois, (out_h, out_w), scales[0], sampling_ratio)

    k_min = int(-math.log2(scales[0]))
    k_max = int(-math.log2(scales[-1]))
    levels = assign_fpn_levels(list(boxes), k_min, k_max, canonical_scale, canonical_level)

    first = features[0]
    result = first.new_zeros(rois.size(0), first.size(1), out_h, out_w)
    for level, (feature, scale) in enumerate(zip(features, scales)):
        idx = torch.where(levels == level)[0]
        pooled = roi_align(feature, rois[idx], (out_h, out_w), scale, sampling_ratio)
        result = result.index_copy(0, idx, pooled.to(result.dtype))
    return result


# ----------------------------------------------------------------------------- 03_roi_align, one piece at a time
# The pieces the notebook builds RoIAlign from (one point, one axis, one box), and its pictures.


def bilinear_interpolate(feature: Tensor, y: float, x: float) -> Tensor:
    """The value of a (C, H, W) feature map at one real-valued point, with RoIAlign's edge rules.

    Feature cell ``(i, j)`` holds the value at the point ``(y, x) = (i, j)``; in between, the four
    surrounding cells are mixed with bilinear weights. The edge rules of torchvision's kernel
    (``bilinear_interpolate`` in ``roi_align_kernel.cpp``):

    * a point more than one cell outside the map (``y < -1``, ``y > H``, ``x < -1`` or ``x > W``)
      reads 0;
    * a coordinate in ``[-1, 0)`` is clamped to 0;
    * a coordinate at or past the last cell (``>= H - 1``) reads the last row (column) alone.

    Returns:
        (C,) tensor.
    """
    C, H, W = feature.shape
    y, x = float(y), float(x)
    if y < -1.0 or y > H or x < -1.0 or x > W:
        return feature.new_zeros(C)
    y, x = max(y, 0.0), max(x, 0.0)
    y0, x0 = int(y), int(x)
    if y0 >= H - 1:
        y0 = y1 = H - 1
        y = float(y0)
    else:
        y1 = y0 + 1
    if x0 >= W - 1:
        x0 = x1 = W - 1
        x = float(x0)
    else:
        x1 = x0 + 1
    ly, lx = y - y0, x - x0
    hy, hx = 1.0 - ly, 1.0 - lx
    return (hy * hx * feature[:, y0, x0] + hy * lx * feature[:, y0, x1]
            + ly * hx * feature[:, y1, x0] + ly * lx * feature[:, y1, x1])


def linear_weights(positions: Tensor, size: int) -> Tensor:
    """One axis of ``bilinear_interpolate``: the weights of every cell for points along a line.

    Args:
        positions: (P,) coordinates along one axis of a map with ``size`` cells.
        size: number of cells along that axis (H or W).

    Returns:
        (P, size): row ``p`` holds the (at most two) linear-interpolation weights of position
        ``p``, with the same edge rules as ``bilinear_interpolate``. Bilinear weights are the
        product of two of these rows: ``w(y, x) = linear_weights(y)[i] * linear_weights(x)[j]``.
    """
    pos = torch.as_tensor(positions)
    pos = pos.to(torch.float32) if not pos.is_floating_point() else pos
    pos = pos.reshape(-1)
    inside = (pos >= -1.0) & (pos <= size)
    pos = torch.where(inside, pos, 0.0).clamp(min=0.0)
    low = pos.long()
    at_edge = low >= size - 1
    low = low.clamp(max=size - 1)
    high = torch.where(at_edge, low, low + 1)
    frac = torch.where(at_edge, 0.0, pos - low)
    w = pos.new_zeros(pos.numel(), size)
    w.scatter_add_(1, low[:, None], ((1.0 - frac) * inside)[:, None])
    w.scatter_add_(1, high[:, None], (frac * inside)[:, None])
    return w


def roi_align_one_box(
    feature: Tensor,
    box: Tensor,
    output_size,
    spatial_scale: float = 1.0,
    sampling_ratio: int = -1,
    aligned: bool = False,
) -> Tensor:
    """RoIAlign of one box as two matrix products: ``Wy @ F[c] @ Wx.T`` for every channel ``c``.

    Args:
        feature: (C, H, W) feature map of one image.
        box: (4,) ``(x1, y1, x2, y2)`` in image pixels.
        output_size, spatial_scale, sampling_ratio, aligned: as in ``roi_align``.

    Returns:
        (C, out_h, out_w), equal to ``torchvision.ops.roi_align(feature[None], [box[None]], ...)[0]``.
    """
    wy, wx = roi_align_weights(feature.shape[-2:], [box.reshape(1, 4).to(feature.dtype)], output_size,
                               spatial_scale, sampling_ratio, aligned)
    return torch.einsum("ih,chw,jw->cij", wy[0], feature, wx[0])


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
    out_h, out_w = _pair(output_size)
    H, W = feature_size
    rois = torch.tensor([[0.0, *map(float, box)]])
    x1, y1, x2, y2 = _round_half_away(rois[:, 1:] * spatial_scale).long().unbind(1)
    roi_w = (x2 - x1 + 1).clamp(min=1)
    roi_h = (y2 - y1 + 1).clamp(min=1)
    h0, h1 = _bin_edges(roi_h, out_h, y1, H, torch.float32)
    w0, w1 = _bin_edges(roi_w, out_w, x1, W, torch.float32)
    return {"cells": (int(x1), int(y1), int(x2), int(y2)),
            "rows": list(zip(h0[0].tolist(), h1[0].tolist())),
            "cols": list(zip(w0[0].tolist(), w1[0].tolist()))}


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
    out_h, out_w = _pair(output_size)
    rois = torch.tensor([[0.0, *map(float, box)]], dtype=torch.float64)
    axes = _box_geometry(rois, (out_h, out_w), spatial_scale, sampling_ratio, aligned)
    result = []
    for (start, bin_size, grid), out_len in zip(axes, (out_h, out_w)):
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


# ----------------------------------------------------------------------------- 03_roi_align, pictures
# matplotlib is imported inside each function: the pooling code above does not need it.


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

    out_h, out_w = _pair(output_size)
    q = roi_pool_bins(box, output_size, 1.0 / stride, feature_size)
    cx1, cy1, cx2, cy2 = q["cells"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 5))
    _grid_axes(axes[0], feature_size, stride, "the box (red) and the cells RoIPool snaps it to (blue)")
    _rect(axes[0], cx1 * stride, cy1 * stride, (cx2 + 1) * stride, (cy2 + 1) * stride, fc="#4363d8", alpha=0.25,
          ec="#4363d8", lw=2)
    _grid_axes(axes[1], feature_size, stride, f"{out_h}x{out_w} bins: RoIPool (coloured cells) vs RoIAlign (red)")
    colours = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#46f0f0", "#f032e6", "#9a6324", "#808000"]
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
    return fig


def plot_shift_response(shifts: Sequence[float], pooled: dict, stride: int, what: str = "one output value"):
    """One output value (``what``) of each pooling method against the box's shift in pixels."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.2))
    styles = {"roi_pool": dict(color="#4363d8", drawstyle="steps-post"), "roi_align": dict(color="#cc0000")}
    for name, values in pooled.items():
        ax.plot(list(shifts), list(values), lw=2, label=name, **styles.get(name, {}))
    for k in range(int(max(shifts) // stride) + 1):
        ax.axvline(k * stride, color="#bbbbbb", lw=0.6, zorder=0)
    ax.set_xlabel(f"box shifted right by ... image pixels (grid lines: one stride, {stride} px)")
    ax.set_ylabel(what)
    ax.legend(fontsize=9)
    ax.set_title("moving the box moves RoIAlign's output smoothly; RoIPool's jumps", fontsize=10)
    fig.tight_layout()
    return fig


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
    return fig


def plot_sampling_points(box: Sequence[float], output_size, stride: int, feature_size: Sequence[int],
                         settings: Sequence[tuple[int, bool]], titles: Sequence[str] | None = None):
    """One panel per ``(sampling_ratio, aligned)``: the box, its bins, and where the samples read the map.

    Samples are drawn where they read (see ``sample_points``), so with ``aligned=False`` they sit
    half a cell down and right of where the box says.
    """
    import matplotlib.pyplot as plt

    out_h, out_w = _pair(output_size)
    H, W = feature_size
    x1, y1, x2, y2 = map(float, box)
    fig, axes = plt.subplots(1, len(settings), figsize=(5 * len(settings), 5), squeeze=False)
    for k, (ax, (ratio, aligned)) in enumerate(zip(axes[0], settings)):
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
        ax.plot(px.flatten() * stride, py.flatten() * stride, "o", color="#4363d8", ms=4)
    fig.tight_layout()
    return fig


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
    return fig


def plot_fpn_levels(sizes: Tensor, k_min: int = 2, k_max: int = 5, canonical_scale: int = 224,
                    canonical_level: int = 4, label: str = "boxes"):
    """Level against box size ``sqrt(w * h)``, with the sizes of some boxes as a histogram below it."""
    import matplotlib.pyplot as plt

    s = torch.logspace(3, 10, 400, base=2)  # 8 .. 1024 pixels
    boxes = torch.stack([torch.zeros_like(s), torch.zeros_like(s), s, s], 1)
    levels = assign_fpn_levels(boxes, k_min, k_max, canonical_scale, canonical_level) + k_min
    fig, (ax, hx) = plt.subplots(2, 1, figsize=(7, 4.2), sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    ax.step(s.numpy(), levels.numpy(), where="post", color="#4363d8", lw=2)
    for t in level_thresholds(k_min, k_max, canonical_scale, canonical_level):
        ax.axvline(t, color="#bbbbbb", lw=0.8, ls="--")
        ax.text(t, k_min + 0.1, f" {t:g}", fontsize=8, color="#666666")
    ax.set_xscale("log", base=2)
    ax.set_yticks(range(k_min, k_max + 1), [f"P{k}" for k in range(k_min, k_max + 1)])
    ax.set_ylabel("pooled from")
    ax.set_title(f"FPN level of a box: floor({canonical_level} + log2(sqrt(w*h) / {canonical_scale})), "
                 f"clamped to P{k_min}-P{k_max}", fontsize=10)
    hx.hist(sizes.numpy(), bins=torch.logspace(3, 10, 57, base=2).numpy(), color="#f58231")
    hx.set_xlabel("box size sqrt(w * h) in pixels")
    hx.set_ylabel(label, fontsize=9)
    fig.tight_layout()
    return fig
