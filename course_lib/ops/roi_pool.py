"""RoIPool from scratch (torchvision's ``ops/roi_pool.py``). Taught in: 03_roi_align

``roi_pool`` (all boxes) and ``roi_pool_one_box`` (one box, bin by bin: the reference of notebook 03's
exercise) agree with ``torchvision.ops.roi_pool`` exactly; both round through ``quantise_rois``. The box
corners are rounded to whole feature cells, each bin's edges are floored and ceiled, and the bin takes the
maximum of its cells: the quantisation that RoIAlign removes.
"""

from __future__ import annotations

import torch
from torch import Tensor

from course_lib.ops._utils import BoxesArg, as_pair, to_rois


def _round_half_away(v: Tensor) -> Tensor:
    """C's ``round()``: halves go away from zero (``torch.round`` rounds halves to even)."""
    return torch.where((v - v.trunc()).abs() == 0.5, v.trunc() + v.sign(), v.round())


def roi_pool(input: Tensor, boxes: BoxesArg, output_size, spatial_scale: float = 1.0) -> Tensor:
    """RoIPool (Fast R-CNN): max over quantised bins. Equal to ``torchvision.ops.roi_pool``.

    Args:
        input: (N, C, H, W) feature maps.
        boxes: (K, 5) tensor ``(batch_index, x1, y1, x2, y2)`` or a list of (Ki, 4) tensors.
        output_size: int or (out_h, out_w).
        spatial_scale: box coordinates are multiplied by it to land on the feature map.

    Returns:
        (K, C, out_h, out_w) in the dtype of ``input``. A bin that covers no feature-map cell is 0.

    RoIPool quantises twice: the box corners are rounded to whole cells, and every bin edge is
    floored/ceiled to whole cells. Those roundings are what RoIAlign removes.
    """
    out_h, out_w = as_pair(output_size)
    rois = to_rois(boxes).detach()
    _, C, H, W = input.shape
    K = rois.size(0)

    _, (h0, h1), (w0, w1) = quantise_rois(rois, (out_h, out_w), spatial_scale, (H, W), _edge_dtype(input.dtype))
    out = input.new_zeros(K, C, out_h, out_w)
    for k, b in enumerate(rois[:, 0].long().tolist()):
        out[k] = _max_per_bin(input[b], h0[k], h1[k], w0[k], w1[k])
    return out


def roi_pool_one_box(feature: Tensor, box: Tensor, output_size, spatial_scale: float = 1.0) -> Tensor:
    """RoIPool of one box, bin by bin: the reference of notebook 03's RoIPool exercise.

    Args:
        feature: (C, H, W) feature map.
        box: (4,) ``(x1, y1, x2, y2)`` in image pixels.
        output_size: int or (out_h, out_w).
        spatial_scale: 1 / stride of the map.

    Returns:
        (C, out_h, out_w) in ``feature``'s dtype, equal to ``torchvision.ops.roi_pool`` for that box (its CPU
        kernel, ``roi_pool_kernel.cpp``) and to ``roi_pool``: the corners are rounded to whole cells (C's
        ``round``: halves away from zero), the snapped box spans ``x2 - x1 + 1`` cells (at least 1, both ends
        included), bin ``i`` covers cells ``floor(i * bin)`` to ``ceil((i + 1) * bin)`` past its start (bin size
        and products in float32 for a float32 map, as the kernel computes them), clipped to the map; a bin keeps
        the maximum of its cells, an empty bin 0. The roundings are ``quantise_rois``'s, as in ``roi_pool``.
    """
    out_h, out_w = as_pair(output_size)
    _, H, W = feature.shape
    box = box.detach().reshape(1, 4)
    rois = torch.cat([box.new_zeros(1, 1), box], dim=1)
    _, (h0, h1), (w0, w1) = quantise_rois(rois, (out_h, out_w), spatial_scale, (H, W), _edge_dtype(feature.dtype))
    return _max_per_bin(feature, h0[0], h1[0], w0[0], w1[0])


def _edge_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype of the bin edges: the input's, float32 for float16/bfloat16 input.

    In float16 a 29-cell box cut in 7 bins has bins of 4.145 cells and its last bin ends at
    ceil(7 * 4.145) = 30: one cell too many. torchvision's CPU kernel computes float16 edges in float16
    and has no bfloat16 kernel; the maxima themselves are exact in any dtype.
    """
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def _max_per_bin(feature: Tensor, h0: Tensor, h1: Tensor, w0: Tensor, w1: Tensor) -> Tensor:
    """(C, out_h, out_w): the maximum of ``feature`` (C, H, W) over each bin's cells; an empty bin is 0.

    ``h0, h1`` (out_h,) and ``w0, w1`` (out_w,) are one box's bin edges from ``quantise_rois``.
    """
    out = feature.new_zeros(feature.shape[0], len(h0), len(w0))
    for ph, (r0, r1) in enumerate(zip(h0.tolist(), h1.tolist(), strict=True)):
        for pw, (c0, c1) in enumerate(zip(w0.tolist(), w1.tolist(), strict=True)):
            if r1 > r0 and c1 > c0:  # an empty bin stays 0
                out[:, ph, pw] = feature[:, r0:r1, c0:c1].amax(dim=(1, 2))
    return out


def quantise_rois(rois: Tensor, output_size: tuple[int, int], spatial_scale: float, feature_size: tuple[int, int],
                  dtype=torch.float32):
    """RoIPool's two roundings for ``(K, 5)`` rois: ``(cells, (h0, h1), (w0, w1))``.

    ``cells`` is the box snapped to whole cells, ``(x1, y1, x2, y2)`` as (K,) integer tensors with both ends
    included; ``h0, h1`` (K, out_h) and ``w0, w1`` (K, out_w) are each bin's first and one-past-last cell,
    clipped to the map. Computed in ``dtype``: torchvision computes them in the input's dtype
    (``roi_pool`` passes float32 for float16/bfloat16 input).
    """
    (out_h, out_w), (H, W) = output_size, feature_size
    # Quantisation 1: box corners rounded to whole cells (C round: halves away from zero).
    x1, y1, x2, y2 = _round_half_away(rois[:, 1:].to(dtype) * spatial_scale).long().unbind(1)
    roi_w = (x2 - x1 + 1).clamp(min=1)  # malformed boxes become 1x1
    roi_h = (y2 - y1 + 1).clamp(min=1)
    # Quantisation 2: bin edges floored/ceiled to whole cells, then clipped to the map.
    return (x1, y1, x2, y2), _bin_edges(roi_h, out_h, y1, H, dtype), _bin_edges(roi_w, out_w, x1, W, dtype)


def _bin_edges(roi_len: Tensor, out_len: int, roi_start: Tensor, size: int, dtype) -> tuple[Tensor, Tensor]:
    """RoIPool's integer bin edges: (K, out_len) starts and ends, clipped to [0, size]."""
    bin_size = roi_len.to(dtype) / out_len
    bins = torch.arange(out_len + 1, dtype=dtype, device=roi_len.device)[None, :]
    start = torch.floor(bins[:, :-1] * bin_size[:, None]).long() + roi_start[:, None]
    end = torch.ceil(bins[:, 1:] * bin_size[:, None]).long() + roi_start[:, None]
    return start.clamp(0, size), end.clamp(0, size)
