"""course_lib.ops.poolers (assign_fpn_levels, multiscale_roi_align) agrees with torchvision's LevelMapper and MultiScaleRoIAlign."""

from collections import OrderedDict

import pytest
import torch
import torchvision
from torchvision.ops.poolers import LevelMapper

from course_lib.ops.poolers import assign_fpn_levels, multiscale_roi_align

pytestmark = pytest.mark.equality  # compared with torchvision: ./course test --cpu-variants runs it

TOL = dict(atol=1e-5, rtol=1e-5)


def test_assign_fpn_levels_matches_level_mapper():
    g = torch.Generator().manual_seed(8)
    xy = torch.rand(200, 2, generator=g) * 500
    wh = torch.rand(200, 2, generator=g) ** 3 * 1000
    boxes = torch.cat([xy, xy + wh], dim=1)
    # Exact level boundaries (the 1e-6 eps decides them), tiny and zero-area boxes.
    sides = torch.tensor([224.0, 112.0, 448.0, 56.0, 896.0, 0.0, 1e-3, 5000.0])
    boxes = torch.cat([boxes, torch.stack([0 * sides, 0 * sides, sides, sides], dim=1)])
    for k_min, k_max in ((2, 5), (3, 6)):
        for canonical_scale, canonical_level in ((224, 4), (160, 3)):
            mapper = LevelMapper(k_min, k_max, canonical_scale, canonical_level)
            ref = mapper([boxes[:100], boxes[100:]])
            out = assign_fpn_levels(boxes, k_min, k_max, canonical_scale, canonical_level)
            assert out.dtype == torch.int64
            assert torch.equal(out, ref)
            as_list = assign_fpn_levels([boxes[:100], boxes[100:]], k_min, k_max, canonical_scale, canonical_level)
            assert torch.equal(as_list, ref)
    assert assign_fpn_levels(torch.tensor([[0.0, 0.0, 224.0, 224.0]])).tolist() == [2]  # P4, index from P2


@pytest.mark.parametrize("sampling_ratio", [2, -1])
def test_multiscale_roi_align_matches_torchvision(sampling_ratio):
    torch.manual_seed(9)
    image_shapes = [(256, 320), (240, 300)]
    feats = OrderedDict(
        (name, torch.randn(2, 4, 256 // s, 320 // s))
        for name, s in (("p2", 4), ("p3", 8), ("p4", 16), ("p5", 32), ("pool", 64))
    )
    boxes = []
    for seed, n in ((0, 40), (1, 0), (2, 25)):
        g = torch.Generator().manual_seed(seed)
        xy = torch.rand(n, 2, generator=g) * 250
        wh = torch.rand(n, 2, generator=g) ** 2 * 300 + 1
        boxes.append(torch.cat([xy, xy + wh], dim=1))
    boxes = [boxes[0], boxes[2]]
    names = ["p2", "p3", "p4", "p5"]
    pooler = torchvision.ops.MultiScaleRoIAlign(names, (7, 5), sampling_ratio)
    ref = pooler(feats, boxes, image_shapes)
    out = multiscale_roi_align(feats, boxes, image_shapes, (7, 5), sampling_ratio, featmap_names=names)
    torch.testing.assert_close(out, ref, **TOL)
    out = multiscale_roi_align([feats[n] for n in names], boxes, image_shapes, (7, 5), sampling_ratio)
    torch.testing.assert_close(out, ref, **TOL)
    # One level only: plain roi_align at that level's scale.
    ref1 = torchvision.ops.MultiScaleRoIAlign(["p3"], 3, sampling_ratio)(feats, boxes, image_shapes)
    out1 = multiscale_roi_align({"p3": feats["p3"]}, boxes, image_shapes, 3, sampling_ratio)
    torch.testing.assert_close(out1, ref1, **TOL)


def test_multiscale_roi_align_gradient_and_empty():
    torch.manual_seed(10)
    feats = [torch.randn(1, 3, 32, 32, requires_grad=True), torch.randn(1, 3, 16, 16, requires_grad=True)]
    boxes = [torch.tensor([[0.0, 0.0, 20.0, 20.0], [4.0, 4.0, 120.0, 100.0], [10.0, 30.0, 11.0, 31.0]])]
    out = multiscale_roi_align(feats, boxes, [(128, 128)], 4, 2, canonical_scale=64, canonical_level=3)
    ref = torchvision.ops.MultiScaleRoIAlign(["a", "b"], 4, 2, canonical_scale=64, canonical_level=3)(
        dict(a=feats[0], b=feats[1]), boxes, [(128, 128)]
    )
    torch.testing.assert_close(out, ref, **TOL)
    g = torch.randn_like(out)
    got = torch.autograd.grad(out, feats, g)
    want = torch.autograd.grad(ref, feats, g)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, **TOL)
    empty = multiscale_roi_align(feats, [torch.empty(0, 4)], [(128, 128)], 4, 2)
    assert empty.shape == (0, 3, 4, 4)
