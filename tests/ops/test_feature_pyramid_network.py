"""course_lib.fpn agrees with torchvision's FeaturePyramidNetwork and ResNet + FPN backbone."""

import pytest
import torch
from torch import nn
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.resnet import BasicBlock, ResNet
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from course_lib.detection.backbone_utils import feature_shapes
from course_lib.ops.feature_pyramid_network import fpn_merge, last_level_max_pool

pytestmark = pytest.mark.equality  # compared with torchvision: ./course test --cpu-variants runs it

IN_CHANNELS = [64, 128, 256, 512]
ODD_SIZES = [(97, 131), (64, 64), (33, 65), (200, 57), (1, 1)]


def tiny_backbone(seed=0, out_channels=16):
    torch.manual_seed(seed)
    body = ResNet(BasicBlock, [1, 1, 1, 1])
    return BackboneWithFPN(body, {"layer1": "0", "layer2": "1", "layer3": "2", "layer4": "3"},
                           IN_CHANNELS, out_channels, extra_blocks=LastLevelMaxPool()).eval()


def pyramid_features(seed, top=(4, 5), channels=(8, 16, 32, 64)):
    """C2..C5-like maps whose sizes halve with ceil, from an odd top size."""
    g = torch.Generator().manual_seed(seed)
    shapes = feature_shapes((top[0] * 32 - 5, top[1] * 32 - 19))
    return [torch.randn(2, c, *shapes[f"C{k}"], generator=g) for k, c in zip(range(2, 6), channels, strict=True)]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fpn_merge_matches_torchvision_fpn(seed):
    feats = pyramid_features(seed)
    torch.manual_seed(seed)
    fpn = FeaturePyramidNetwork([8, 16, 32, 64], 12).eval()
    with torch.no_grad():
        expected = list(fpn({str(i): f for i, f in enumerate(feats)}).values())
        ours = fpn_merge(feats, fpn.inner_blocks, fpn.layer_blocks)
    assert len(ours) == 4
    for o, e, f in zip(ours, expected, feats, strict=True):
        assert o.shape == (2, 12, *f.shape[-2:])
        torch.testing.assert_close(o, e, rtol=1e-5, atol=1e-5)


def test_fpn_merge_with_plain_convs_and_copied_weights():
    feats = pyramid_features(3, top=(3, 7))
    torch.manual_seed(3)
    fpn = FeaturePyramidNetwork([8, 16, 32, 64], 12).eval()
    inner = nn.ModuleList(nn.Conv2d(c, 12, 1) for c in [8, 16, 32, 64])
    layer = nn.ModuleList(nn.Conv2d(12, 12, 3, padding=1) for _ in range(4))
    for mine, theirs in zip(list(inner) + list(layer), list(fpn.inner_blocks) + list(fpn.layer_blocks), strict=True):
        mine.load_state_dict(theirs[0].state_dict())  # torchvision wraps each conv in a Sequential
    with torch.no_grad():
        expected = list(fpn({str(i): f for i, f in enumerate(feats)}).values())
        ours = fpn_merge(feats, inner, layer)
    for o, e in zip(ours, expected, strict=True):
        torch.testing.assert_close(o, e, rtol=1e-5, atol=1e-5)


def test_fpn_merge_top_down_really_flows_down():
    # identity-like blocks: P_l = C_l + upsampled P_{l+1}; a change in C5 reaches P2
    feats = [torch.zeros(1, 1, 7, 9), torch.zeros(1, 1, 4, 5), torch.zeros(1, 1, 2, 3),
             torch.ones(1, 1, 1, 2)]
    ident = [nn.Identity()] * 4
    out = fpn_merge(feats, ident, ident)
    assert [o.shape[-2:] for o in out] == [f.shape[-2:] for f in feats]
    assert all((o == 1).all() for o in out)


@pytest.mark.parametrize("image_size", ODD_SIZES)
def test_against_real_resnet_fpn_backbone(image_size):
    backbone = tiny_backbone()
    x = torch.randn(1, 3, *image_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = backbone(x)
        c = list(backbone.body(x).values())  # C2..C5
        p = fpn_merge(c, backbone.fpn.inner_blocks, backbone.fpn.layer_blocks)
        p.append(last_level_max_pool(p[-1]))
    shapes = feature_shapes(image_size)
    assert list(expected) == ["0", "1", "2", "3", "pool"]
    for k, (_name, e) in enumerate(expected.items(), start=2):
        assert e.shape[-2:] == shapes[f"P{k}"]
        torch.testing.assert_close(p[k - 2], e, rtol=1e-5, atol=1e-5)
    for k, ck in enumerate(c, start=2):
        assert ck.shape[-2:] == shapes[f"C{k}"]
        assert ck.shape[1] == IN_CHANNELS[k - 2]


def test_feature_shapes_values():
    s = feature_shapes((97, 131))
    assert list(s) == ["C2", "C3", "C4", "C5", "P2", "P3", "P4", "P5", "P6"]
    assert s["C2"] == s["P2"] == (25, 33)   # ceil(ceil(97 / 2) / 2), ...
    assert s["P3"] == (13, 17) and s["P4"] == (7, 9) and s["P5"] == (4, 5) and s["P6"] == (2, 3)
    assert feature_shapes((128, 128))["P6"] == (2, 2)
    assert feature_shapes((800, 1216), strides=(8, 128)) == {"C3": (100, 152), "P3": (100, 152),
                                                             "P7": (7, 10)}
    with pytest.raises(ValueError):
        feature_shapes((64, 64), strides=(12,))


def test_feature_shapes_many_sizes_against_conv_arithmetic():
    # the ResNet stem and stages, layer by layer, with real (empty-channel-cheap) convs
    conv = nn.Conv2d(1, 1, 3, stride=2, padding=1, bias=False)
    stem = nn.Conv2d(1, 1, 7, stride=2, padding=3, bias=False)
    pool = nn.MaxPool2d(3, stride=2, padding=1)
    for h, w in [(31, 33), (50, 1), (63, 64), (65, 95), (129, 7)]:
        with torch.no_grad():
            x = pool(stem(torch.zeros(1, 1, h, w)))
            sizes = [x.shape[-2:]]
            for _ in range(3):
                x = conv(x)
                sizes.append(x.shape[-2:])
            sizes.append(last_level_max_pool(x).shape[-2:])
        s = feature_shapes((h, w))
        assert [tuple(z) for z in sizes] == [s[f"P{k}"] for k in range(2, 7)]
