"""RoIPool from scratch (torchvision's ``ops/roi_pool.py``). Taught in: 03_roi_align

Agrees with ``torchvision.ops.roi_pool`` to 1e-5 (float32). The box corners are rounded to whole feature
cells, each bin's edges are floored and ceiled, and the bin takes the maximum of its cells: the quantisation
that RoIAlign removes.
"""

from __future__ import annotations

import torch
from torch import Tensor

from course_lib.ops._utils import BoxesArg, _pair, _to_rois


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
    out_h, out_w = _pair(output_size)
    rois = _to_rois(boxes).detach()
    _, C, H, W = input.shape
    K = rois.size(0)

    # Bin edges in float32 for float16/bfloat16 input (in float16 a 29-cell box cut in 7 bins has
    # bins of 4.145 cells and its last bin ends at ceil(7 * 4.145) = 30: one cell too many); the
    # maxima themselves are exact in any dtype.
    # torchvision's CPU kernel computes float16 edges in float16 and has no bfloat16 kernel.
    dtype = torch.float32 if input.dtype in (torch.float16, torch.bfloat16) else input.dtype
    _, (h0, h1), (w0, w1) = quantise_rois(rois, (out_h, out_w), spatial_scale, (H, W), dtype)

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
