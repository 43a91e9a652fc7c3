"""FPN level assignment and multi-scale RoIAlign from scratch (torchvision's ``ops/poolers.py``).
Taught in: 03_roi_align

``assign_fpn_levels`` is ``LevelMapper``: a box of size ``s`` goes to level
``floor(k0 + log2(s / canonical_scale))`` clamped to ``[k_min, k_max]``. ``multiscale_roi_align`` is
``MultiScaleRoIAlign``: each box is pooled by ``roi_align`` from the level it was assigned to. Both agree with
torchvision to 1e-5 (float32).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from course_lib.ops._utils import BoxesArg, as_pair, to_rois
from course_lib.ops.boxes import box_area
from course_lib.ops.roi_align import roi_align


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
    # box_area upcasts float16/bfloat16 boxes to float32 (as LevelMapper's box_area): in bfloat16,
    # 4 + log2(223 / 224) = 3.994 rounds to 4.0 and a 223-pixel box would go one level up.
    s = torch.sqrt(box_area(boxes))
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
    roi_align=roi_align,
    assign_fpn_levels=assign_fpn_levels,
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
        roi_align, assign_fpn_levels: the functions to use (a learner's own can be passed).

    Returns:
        (sum Ki, C, out_h, out_w), boxes in the order given.
    """
    if isinstance(features, dict):
        names = featmap_names if featmap_names is not None else list(features)
        features = [v for k, v in features.items() if k in names]
    features = list(features)
    out_h, out_w = as_pair(output_size)
    if not image_shapes:
        raise ValueError("image_shapes should not be empty")

    # Scales from the largest image: 1/4, 1/8, ... (torchvision uses the height ratio).
    max_size = (max(s[0] for s in image_shapes), max(s[1] for s in image_shapes))
    scales = [_infer_scale(f, max_size) for f in features]
    rois = to_rois(boxes)
    if len(features) == 1:
        return roi_align(features[0], rois, (out_h, out_w), scales[0], sampling_ratio)

    k_min = int(-math.log2(scales[0]))
    k_max = int(-math.log2(scales[-1]))
    levels = assign_fpn_levels(list(boxes), k_min, k_max, canonical_scale, canonical_level)

    first = features[0]
    result = first.new_zeros(rois.size(0), first.size(1), out_h, out_w)
    for level, (feature, scale) in enumerate(zip(features, scales, strict=True)):
        idx = torch.where(levels == level)[0]
        pooled = roi_align(feature, rois[idx], (out_h, out_w), scale, sampling_ratio)
        result = result.index_copy(0, idx, pooled.to(result.dtype))
    return result


class MultiScaleRoIAlign(torch.nn.Module):
    """``multiscale_roi_align`` as a module, a drop-in for ``torchvision.ops.MultiScaleRoIAlign``.

    ``forward(x, boxes, image_shapes)``: ``x`` a dict of FPN maps, ``boxes`` one (Ki, 4) tensor per image
    -> (sum Ki, C, out_h, out_w). ``roi_align`` and ``assign_fpn_levels`` are attributes, so a
    learner's own can be plugged in. No parameters (nothing in a state dict).
    """

    def __init__(self, featmap_names: Sequence[str], output_size, sampling_ratio: int, *,
                 canonical_scale: int = 224, canonical_level: int = 4):
        super().__init__()
        self.featmap_names = list(featmap_names)
        self.output_size = as_pair(output_size)
        self.sampling_ratio = sampling_ratio
        self.canonical_scale, self.canonical_level = canonical_scale, canonical_level
        self.roi_align, self.assign_fpn_levels = roi_align, assign_fpn_levels

    def forward(self, x: dict, boxes: Sequence[Tensor], image_shapes: Sequence[Sequence[int]]) -> Tensor:
        return multiscale_roi_align(x, boxes, image_shapes, self.output_size, self.sampling_ratio,
                                    self.featmap_names, self.canonical_scale, self.canonical_level,
                                    roi_align=self.roi_align, assign_fpn_levels=self.assign_fpn_levels)
