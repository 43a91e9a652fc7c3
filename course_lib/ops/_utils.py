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

from typing import Sequence, Union

import torch
from torch import Tensor

BoxesArg = Union[Tensor, Sequence[Tensor]]


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
