"""RoIAlign from scratch (torchvision's ``ops/roi_align.py``).

Taught in: 03_roi_align

``roi_align`` agrees with ``torchvision.ops.roi_align`` to 1e-5 (float32), forward and backward.

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

The one-box reference pieces for the notebook's exercises are here too: ``bilinear_interpolate`` (one
point, the kernel's edge rules), ``linear_weights`` (one axis of it) and ``roi_align_one_box``
(``Wy @ F @ Wx.T``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from course_lib.ops._utils import BoxesArg, as_pair, to_rois


def box_geometry(rois: Tensor, output_size, spatial_scale: float, sampling_ratio: int, aligned: bool):
    """Each box on the feature map, computed like torchvision's kernel (same float ops).

    Returns per axis (y, then x) a tuple ``(start, bin_size, grid)`` of (K,) tensors: where the
    box starts, the length of one bin, and the number of samples per bin along that axis
    (torchvision's ``roi_bin_grid_h`` / ``roi_bin_grid_w``). ``rois`` is (K, 5) as ``to_rois`` makes it,
    ``output_size`` is ``(out_h, out_w)``. Notebook 03's ``sample_points`` draws the samples from it.
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
        start, bin_size, grid: (K,) from ``box_geometry``.
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
    if length > cells.size(-1):
        # Wide bins with few samples (a fixed sampling_ratio on a long box): the band would be mostly
        # zeros, so keep the taps themselves, ordered sample by sample (low, high), unused ones last.
        K, S2 = cells.size(0), cells.size(-1)
        order = lambda t: t.view(K, out_len, 2, S2 // 2).transpose(-1, -2).reshape(K, out_len, S2)  # noqa: E731
        return order(cells), order(weights)
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
    out_h, out_w = as_pair(output_size)
    H, W = input_size
    rois = to_rois(boxes).detach()
    y_axis, x_axis = box_geometry(rois, (out_h, out_w), spatial_scale, sampling_ratio, aligned)
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
        (K, C, out_h, out_w) in the dtype of ``input``, differentiable with respect to ``input``
        (not the boxes).

    How: per box the result is ``Wy @ F @ Wx.T`` (see ``roi_align_weights``); bin (i, j) is
    the weighted sum of the feature vectors its samples touch, with weights
    ``Wy[i, y] * Wx[j, x]``, computed by ``embedding_bag`` (see the module docstring).

    float16/bfloat16 input (mixed precision, autocast) is computed in float32 and the result cast
    back, as torchvision's autocast kernel does: sample positions in bfloat16 are off by up to
    1/256 of their value, and so are the sums over a bin's samples.
    """
    if input.dim() != 4:
        raise ValueError(f"input must have shape (N, C, H, W), got {tuple(input.shape)}")
    out_dtype = input.dtype
    if out_dtype in (torch.float16, torch.bfloat16):
        input = input.float()
    out_h, out_w = as_pair(output_size)
    rois = to_rois(boxes).detach().to(input.dtype)  # like torchvision: no gradient for boxes
    return _roi_align(input, rois, out_h, out_w, spatial_scale, sampling_ratio, aligned).to(out_dtype)


def _roi_align(input: Tensor, rois: Tensor, out_h: int, out_w: int, spatial_scale: float, sampling_ratio: int,
               aligned: bool) -> Tensor:
    """``roi_align`` on (K, 5) ``rois`` of the dtype of ``input`` (float32 or float64)."""
    N, C, H, W = input.shape
    K = rois.size(0)

    y_axis, x_axis = box_geometry(rois, (out_h, out_w), spatial_scale, sampling_ratio, aligned)
    cy, wy = _axis_band(*y_axis, out_h, H)  # (K, out_h, Ly): the rows each bin reads
    cx, wx = _axis_band(*x_axis, out_w, W)  # (K, out_w, Lx): the columns each bin reads
    # Every cell of every image as one row of a table: (N*H*W, C), row (b*H + y)*W + x.
    # Why .contiguous() and not just reshape: for one image (N = 1, inference) the reshape is a view whose rows
    # are strided by H*W floats, and embedding_bag then gathers each of the C values of a row from a different
    # cache line: ~20x slower on an R50-FPN P2 map (256x200x256) than copying the table once.
    table = input.permute(0, 2, 3, 1).contiguous().view(N * H * W, C)
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
