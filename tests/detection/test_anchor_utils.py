"""course_lib.anchors agrees with torchvision's AnchorGenerator."""

import pytest
import torch
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.anchor_utils import (
    AnchorGenerator as TVAnchorGenerator,
)
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.image_list import ImageList
from torchvision.models.resnet import BasicBlock, ResNet
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from course_lib.detection.anchor_utils import (
    AnchorGenerator,
    anchors_for_image,
    generate_anchors,
    grid_anchors,
)
from course_lib.detection.backbone_utils import feature_shapes

pytestmark = pytest.mark.equality  # compared with torchvision: ./course test --cpu-variants runs it

FPN_SIZES = ((32,), (64,), (128,), (256,), (512,))
FPN_RATIOS = ((0.5, 1.0, 2.0),) * 5
CONFIGS = [
    (FPN_SIZES, FPN_RATIOS),
    (((128, 256, 512),), ((0.5, 1.0, 2.0),)),                       # one level, 9 per cell
    (((12, 24), (48, 96, 33)), ((0.25, 1.0, 3.0), (0.7, 1.3))),     # odd sizes and ratios
    ((12, 24, 48, 96, 192), (0.5, 1.0, 2.0)),                       # torchvision's shorthands
]


def fake_batch(image_size, feature_sizes, n_images=2, dtype=torch.float32):
    images = ImageList(torch.zeros(n_images, 3, *image_size, dtype=dtype),
                       [tuple(image_size)] * n_images)
    feats = [torch.zeros(n_images, 4, h, w, dtype=dtype) for h, w in feature_sizes]
    return images, feats


@pytest.mark.parametrize("sizes,ratios", CONFIGS)
def test_cell_anchors_match_torchvision(sizes, ratios):
    ours, theirs = AnchorGenerator(sizes, ratios), TVAnchorGenerator(sizes, ratios)
    assert len(ours.cell_anchors) == len(theirs.cell_anchors)
    for a, b in zip(ours.cell_anchors, theirs.cell_anchors, strict=True):
        assert torch.equal(a, b)
        assert torch.equal(a, a.round())  # whole pixels
    assert ours.num_anchors_per_location() == theirs.num_anchors_per_location()


def test_cell_anchors_values_and_order():
    cells = generate_anchors((32, 64), (0.5, 1.0, 2.0))
    assert cells.shape == (6, 4)
    # ratio-major: (r=0.5, s=32), (0.5, 64), (1, 32), (1, 64), (2, 32), (2, 64); ratio = h / w
    w = cells[:, 2] - cells[:, 0]
    h = cells[:, 3] - cells[:, 1]
    assert torch.equal(cells[2], torch.tensor([-16.0, -16.0, 16.0, 16.0]))
    assert torch.equal(cells[3], torch.tensor([-32.0, -32.0, 32.0, 32.0]))
    assert (w[:2] > h[:2]).all() and (w[4:] < h[4:]).all()
    torch.testing.assert_close(w * h, torch.tensor([32.0, 64, 32, 64, 32, 64]) ** 2, rtol=0.05, atol=0)
    # zero-centred (up to rounding)
    assert (cells[:, 0] + cells[:, 2]).abs().max() <= 1 and (cells[:, 1] + cells[:, 3]).abs().max() <= 1


@pytest.mark.parametrize("sizes,ratios", CONFIGS)
@pytest.mark.parametrize("image_size", [(128, 128), (97, 131), (200, 57), (1, 1)])
def test_forward_matches_torchvision(sizes, ratios, image_size):
    gen = AnchorGenerator(sizes, ratios)
    n_levels = len(gen.cell_anchors)
    shapes = feature_shapes(image_size)
    feature_sizes = [shapes[f"P{k}"] for k in range(2, 2 + n_levels)]
    images, feats = fake_batch(image_size, feature_sizes)
    ours = gen(images, feats)
    theirs = TVAnchorGenerator(sizes, ratios)(images, feats)
    assert len(ours) == len(theirs) == 2
    for a, b in zip(ours, theirs, strict=True):
        assert a.dtype == b.dtype == torch.float32
        assert torch.equal(a, b)
    total = sum(h * w * k for (h, w), k in zip(feature_sizes, gen.num_anchors_per_location(), strict=True))
    assert ours[0].shape == (total, 4)


def test_forward_float64_and_odd_feature_sizes():
    # sides that are not multiples of 32 and strides that are not powers of 2
    images, feats = fake_batch((101, 77), [(26, 20), (13, 10), (7, 5)], n_images=1,
                               dtype=torch.float64)
    sizes, ratios = ((16,), (32,), (64,)), ((0.5, 1.0, 2.0),) * 3
    ours = AnchorGenerator(sizes, ratios)(images, feats)
    theirs = TVAnchorGenerator(sizes, ratios)(images, feats)
    assert ours[0].dtype == torch.float64
    assert torch.equal(ours[0], theirs[0])


@pytest.mark.parametrize("image_size", [(97, 131), (64, 96), (300, 45)])
def test_generate_anchors_matches_torchvision(image_size):
    shapes = feature_shapes(image_size)
    feature_sizes = [shapes[f"P{k}"] for k in range(2, 7)]
    levels = anchors_for_image(image_size, feature_sizes, FPN_SIZES, FPN_RATIOS)
    images, feats = fake_batch(image_size, feature_sizes, n_images=1)
    theirs = TVAnchorGenerator(FPN_SIZES, FPN_RATIOS)(images, feats)[0]
    assert len(levels) == 5
    for (h, w), lvl in zip(feature_sizes, levels, strict=True):
        assert lvl.shape == (h * w * 3, 4)
    assert torch.equal(torch.cat(levels), theirs)
    # shorthand arguments give the same
    short = anchors_for_image(image_size, feature_sizes, (32, 64, 128, 256, 512), (0.5, 1.0, 2.0))
    assert all(torch.equal(a, b) for a, b in zip(short, levels, strict=True))


def test_anchor_order_is_row_major_then_cell_anchor():
    image_size, feature_sizes = (97, 131), [(25, 33), (13, 17)]
    sizes, ratios = ((8, 16), (32,)), ((0.5, 1.0, 2.0), (1.0,))
    levels = anchors_for_image(image_size, feature_sizes, sizes, ratios)
    cells = [generate_anchors(s, r) for s, r in zip(sizes, ratios, strict=True)]
    for (h, w), lvl, cell in zip(feature_sizes, levels, cells, strict=True):
        sy, sx = image_size[0] // h, image_size[1] // w  # 3 and 3, then 7 and 7
        A = len(cell)
        for y, x, a in [(0, 0, 0), (0, 1, A - 1), (1, 0, 0), (h - 1, w - 1, A - 1), (h // 2, 3, A // 2)]:
            shift = torch.tensor([x * sx, y * sy, x * sx, y * sy], dtype=torch.float32)
            assert torch.equal(lvl[(y * w + x) * A + a], cell[a] + shift)


def test_grid_anchors_empty_grid():
    out = grid_anchors([(0, 5)], [(4, 4)], [generate_anchors((32,), (1.0,))])
    assert out[0].shape == (0, 4)


def _tiny_maskrcnn():
    torch.manual_seed(0)
    body = ResNet(BasicBlock, [1, 1, 1, 1])
    backbone = BackboneWithFPN(body, {"layer1": "0", "layer2": "1", "layer3": "2", "layer4": "3"},
                               [64, 128, 256, 512], 16, extra_blocks=LastLevelMaxPool())
    return MaskRCNN(backbone, num_classes=3, rpn_anchor_generator=TVAnchorGenerator(*TINY_ANCHORS),
                    min_size=96, max_size=160, rpn_post_nms_top_n_test=50,
                    box_detections_per_img=10, box_score_thresh=0.0).eval()


TINY_ANCHORS = (((16,), (32,), (64,), (128,), (256,)), ((0.5, 1.0, 2.0),) * 5)


def test_drop_in_for_torchvision_maskrcnn():
    theirs = _tiny_maskrcnn()
    ours = _tiny_maskrcnn()
    # MaskRCNN's constructor insists on torchvision's class, so swap ours in afterwards.
    ours.rpn.anchor_generator = AnchorGenerator(*TINY_ANCHORS)
    assert isinstance(ours.rpn.anchor_generator, AnchorGenerator)
    images = [torch.rand(3, 97, 131, generator=torch.Generator().manual_seed(1))]
    with torch.no_grad():
        out_ours, out_theirs = ours(images)[0], theirs(images)[0]
        # the RPN's proposals themselves
        il, _ = ours.transform(images)
        feats = ours.backbone(il.tensors)
        props_ours = ours.rpn(il, feats)[0][0]
        props_theirs = theirs.rpn(il, feats)[0][0]
    assert len(props_ours) == 50
    assert torch.equal(props_ours, props_theirs)
    assert out_ours.keys() == out_theirs.keys()
    assert len(out_ours["boxes"]) > 0
    for k in out_ours:
        assert torch.equal(out_ours[k], out_theirs[k]), k
