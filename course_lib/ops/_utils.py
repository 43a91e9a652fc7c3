"""Box formats shared by RoIPool and RoIAlign (torchvision's ``ops/_utils.py``). Taught in: 03_roi_align

Boxes are ``(x1, y1, x2, y2)`` in input-image pixels and come either as one ``(K, 5)`` tensor whose first
column is the batch index, or as a list with one ``(Ki, 4)`` tensor per image; ``to_rois`` turns both into
the ``(K, 5)`` form.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

BoxesArg = Tensor | Sequence[Tensor]


def as_pair(output_size: int | Sequence[int]) -> tuple[int, int]:
    """``output_size`` as ``(out_h, out_w)``: an int ``n`` means ``(n, n)`` (torch's ``_pair``)."""
    if isinstance(output_size, int):
        return output_size, output_size
    out_h, out_w = output_size
    return int(out_h), int(out_w)


def to_rois(boxes: BoxesArg) -> Tensor:
    """A (K, 5) tensor ``(batch_index, x1, y1, x2, y2)`` from either accepted box format.

    torchvision's ``check_roi_boxes_shape`` and ``convert_boxes_to_roi_format`` in one: a malformed
    tensor or list raises ``ValueError``.
    """
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
