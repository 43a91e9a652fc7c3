"""course_lib.lessons.nb01_backbone_fpn and notebook 01's checker: receptive fields, shapes, channels, check_fpn_merge."""

import matplotlib

from shared_cases import stub

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import torchvision  # noqa: E402
from torch import nn  # noqa: E402
from torchvision.models.detection.backbone_utils import BackboneWithFPN  # noqa: E402
from torchvision.models.resnet import BasicBlock, ResNet  # noqa: E402
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool  # noqa: E402

from course_lib.course.checkers import check_fpn_merge  # noqa: E402
from course_lib.lessons.nb01_backbone_fpn import (  # noqa: E402
    backbone_levels,
    channel_gallery,
    edge_interior_ratio,
    effective_receptive_field,
    outside_share,
    receptive_field,
    receptive_fields,
    shape_table,
    top_channels,
)
from course_lib.ops.feature_pyramid_network import fpn_merge  # noqa: E402


def fpn_merge_scale_factor(features, inner_blocks, layer_blocks):  # the classic bug: fails on odd sizes
    last = inner_blocks[-1](features[-1])
    results = [layer_blocks[-1](last)]
    for i in range(len(features) - 2, -1, -1):
        last = inner_blocks[i](features[i]) + F.interpolate(last, scale_factor=2, mode="nearest")
        results.insert(0, layer_blocks[i](last))
    return results


def fpn_merge_no_top_down(features, inner_blocks, layer_blocks):
    return [layer(inner(f)) for f, inner, layer in zip(features, inner_blocks, layer_blocks, strict=True)]


def test_fpn_merge_checker(capsys):
    assert check_fpn_merge(fpn_merge) is fpn_merge
    assert capsys.readouterr().out.startswith("PASS check_fpn_merge: all 4 cases")
    assert check_fpn_merge(fpn_merge_no_top_down) is fpn_merge
    out = capsys.readouterr().out
    assert "FAIL check_fpn_merge, case '4 levels from a 128x128 image'" in out and "Hint 1/3:" in out
    assert check_fpn_merge(fpn_merge_scale_factor) is fpn_merge
    assert "odd image size 97x131" in capsys.readouterr().out
    assert check_fpn_merge(stub) is fpn_merge
    assert "NOT YET check_fpn_merge" in capsys.readouterr().out


def test_checkers_leave_the_global_random_state_alone():
    torch.manual_seed(123)
    before = torch.get_rng_state()
    check_fpn_merge(fpn_merge)
    assert torch.equal(torch.get_rng_state(), before)


def tiny_backbone(layers=(1, 1, 1, 1), seed=0):
    torch.manual_seed(seed)
    body = ResNet(BasicBlock, list(layers), norm_layer=nn.BatchNorm2d)
    return BackboneWithFPN(body, {"layer1": "0", "layer2": "1", "layer3": "2", "layer4": "3"},
                           [64, 128, 256, 512], 16, extra_blocks=LastLevelMaxPool()).eval()


def test_backbone_levels_and_shape_table_agree_with_feature_shapes():
    backbone = tiny_backbone()
    levels = backbone_levels(backbone, torch.zeros(1, 3, 33, 70))
    assert list(levels) == ["C2", "C3", "C4", "C5", "P2", "P3", "P4", "P5", "P6"]
    assert tuple(levels["P6"].shape) == (1, 16, 1, 2)
    table = shape_table(backbone, [(128, 128), (97, 131), (33, 70)])
    assert table.count(" ok") == 27 and "!=" not in table


def test_receptive_fields_of_known_resnets():
    course = receptive_fields(tiny_backbone().body)
    assert course == {"C2": (4, 27), "C3": (8, 51), "C4": (16, 99), "C5": (32, 195)}
    resnet18 = torchvision.models.resnet18(weights=None)
    assert receptive_fields(resnet18)["C5"] == (32, 435)  # the published value for ResNet-18
    walk = receptive_field([("a", 3, 1), ("b", 3, 2), ("c", 3, 1)])
    assert walk == [("a", 3, 1), ("b", 5, 2), ("c", 9, 2)]


def test_effective_receptive_field_stays_inside_the_theoretical_one():
    backbone = tiny_backbone(seed=1)
    x = torch.randn(1, 3, 96, 96)
    rf = receptive_fields(backbone.body)
    for level in ("C2", "C3"):
        grad, centre = effective_receptive_field(backbone, x, level)
        assert grad.shape == (96, 96) and grad.max() == 1
        assert outside_share(grad, centre, rf[level][1]) == 0.0
        assert outside_share(grad, centre, rf[level][1] - 2) > 0  # the border ring is used
    grad, centre = effective_receptive_field(backbone, x, "P2")
    assert outside_share(grad, centre, rf["C2"][1]) > 0  # the top-down path reaches further


def test_edge_interior_ratio_and_top_channels():
    masks = torch.zeros(1, 64, 64, dtype=torch.bool)
    masks[0, 16:48, 16:48] = True
    grown = F.max_pool2d(masks.float()[None], 5, 1, 2)[0] > 0
    shrunk = -F.max_pool2d(-masks.float()[None], 5, 1, 2)[0] > 0
    outline = grown & ~shrunk
    feature = torch.stack([outline[0].float() + 0.1, torch.ones(64, 64)])
    assert edge_interior_ratio(feature[:1], masks) > 5
    assert edge_interior_ratio(feature[1:], masks) == pytest.approx(1.0)
    assert top_channels(feature, 1).tolist() == [0]
    assert channel_gallery(masks[0].float()[None].expand(3, -1, -1), {"x": feature}, k=2) is not None
