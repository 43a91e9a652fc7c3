"""The Feature Pyramid Network merge from scratch (torchvision's ``ops/feature_pyramid_network.py``).
Taught in: 01_backbone_fpn

A ResNet gives C2..C5 (strides 4, 8, 16, 32). ``fpn_merge`` turns them into P2..P5 with the same number of
channels each: a lateral 1x1 conv per level, a top-down path that upsamples the coarser merged map (nearest
neighbour, to the exact size of the finer one) and adds it, then a 3x3 conv per level.
``last_level_max_pool`` makes P6 from P5 (``LastLevelMaxPool``).
"""

import torch.nn.functional as F
from torch import Tensor


def fpn_merge(features: list[Tensor], inner_blocks, layer_blocks) -> list[Tensor]:
    """C2..C5 -> P2..P5.

    ``features``: (B, C_l, H_l, W_l) per level, finest first. ``inner_blocks[l]``: the lateral 1x1
    conv C_l -> D; ``layer_blocks[l]``: the 3x3 output conv D -> D (any callables; torchvision's
    ``FeaturePyramidNetwork.inner_blocks`` / ``.layer_blocks`` work). Returns (B, D, H_l, W_l) per
    level, finest first.
    """
    last_inner = inner_blocks[-1](features[-1])  # the top (coarsest) level has nothing above it
    results = [layer_blocks[-1](last_inner)]
    for idx in range(len(features) - 2, -1, -1):  # then down the pyramid, coarse to fine
        lateral = inner_blocks[idx](features[idx])
        # size=, not scale_factor=2: an odd-sized finer map is not exactly twice the coarser one.
        top_down = F.interpolate(last_inner, size=lateral.shape[-2:], mode="nearest")
        last_inner = lateral + top_down
        results.insert(0, layer_blocks[idx](last_inner))
    return results


def last_level_max_pool(p5: Tensor) -> Tensor:
    """P6 from P5: max pooling with kernel 1, stride 2 (every other pixel)."""
    return F.max_pool2d(p5, kernel_size=1, stride=2, padding=0)
