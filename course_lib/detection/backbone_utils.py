"""The course backbone (a small ResNet, C2-C5, with torchvision's FPN on top) and the feature-map shapes
for any image size (torchvision's ``detection/backbone_utils.py``). Taught in: 01_backbone_fpn
"""

from __future__ import annotations

import math

from torch import nn
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.resnet import BasicBlock, ResNet
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool


def feature_shapes(image_size: tuple[int, int], strides=(4, 8, 16, 32, 64)) -> dict:
    """Spatial shapes (H, W) of the feature maps of torchvision's ResNet + FPN(LastLevelMaxPool)
    for an input of ``image_size`` = (height, width).

    Every stride-2 step of a ResNet (7x7 conv, 3x3 max pool, the first conv of stages 3-5) and
    the P6 pooling turn n pixels into ceil(n / 2). Returns ``{"C2": (H, W), ..., "C5": ...,
    "P2": ..., "P6": ...}``: a level k = log2(stride) for each stride; C levels only up to C5.
    """
    shapes_c, shapes_p = {}, {}
    for stride in strides:
        k = int(math.log2(stride))
        if 2 ** k != stride:
            raise ValueError(f"strides must be powers of 2, got {stride}")
        h, w = image_size
        for _ in range(k):
            h, w = -(-h // 2), -(-w // 2)  # ceil(n / 2) in integers
        if k <= 5:
            shapes_c[f"C{k}"] = (h, w)
        shapes_p[f"P{k}"] = (h, w)
    return {**shapes_c, **shapes_p}


def build_backbone(fpn_channels: int = 64, *, blocks_per_stage=(1, 1, 1, 1)) -> BackboneWithFPN:
    """ResNet stages C2-C5 (64, 128, 256, 512 channels; strides 4, 8, 16, 32) + FPN -> P2-P6.

    Returns a module whose output is an ``OrderedDict`` with keys ``'0'..'3'`` (P2-P5) and
    ``'pool'`` (P6), each ``fpn_channels`` wide, as in torchvision. ``blocks_per_stage``: BasicBlocks in each
    of the four stages (the depth; the course model has one each).
    """
    # Real BatchNorm: torchvision's pretrained backbones freeze BN, which would do nothing here.
    body = ResNet(BasicBlock, list(blocks_per_stage), norm_layer=nn.BatchNorm2d)
    return BackboneWithFPN(body, return_layers={"layer1": "0", "layer2": "1", "layer3": "2", "layer4": "3"},
                           in_channels_list=[64, 128, 256, 512], out_channels=fpn_channels,
                           extra_blocks=LastLevelMaxPool())
