"""course_lib.ops (roi_pool, roi_align, poolers) agrees with torchvision.ops (roi_pool, roi_align, LevelMapper, MultiScaleRoIAlign)."""

from collections import OrderedDict

import pytest
import torch
import torchvision
from torchvision.ops.poolers import LevelMapper

import course_lib.ops.roi_align
from course_lib.ops.poolers import assign_fpn_levels, multiscale_roi_align
from course_lib.ops.roi_align import roi_align, roi_align_weights
from course_lib.ops.roi_pool import roi_pool

pytestmark = pytest.mark.equality  # compared with torchvision: ./course test --cpu-variants runs it

TOL = dict(atol=1e-5, rtol=1e-5)


def random_rois(n, n_images, height, width, scale, seed):
    """(n, 5) rois in image pixels: inside, partly outside, wholly outside, zero-size and inverted boxes."""
    g = torch.Generator().manual_seed(seed)
    img_h, img_w = height / scale, width / scale
    xy = torch.rand(n, 2, generator=g) * torch.tensor([img_w, img_h]) * 1.4 - torch.tensor([img_w, img_h]) * 0.2
    wh = torch.rand(n, 2, generator=g) * torch.tensor([img_w, img_h]) * 0.7
    wh[: n // 8] = 0  # zero-size boxes
    wh[n // 8 : n // 6, 0] *= 0.01  # thinner than a cell
    boxes = torch.cat([xy, xy + wh], dim=1)
    boxes[n // 6 : n // 5] = boxes[n // 6 : n // 5][:, [2, 3, 0, 1]] - 1  # x2 < x1, y2 < y1
    boxes[n // 5 : n // 4] += torch.tensor([img_w, img_h, img_w, img_h]) * 1.5  # wholly outside
    batch = torch.randint(0, n_images, (n, 1), generator=g).float()
    return torch.cat([batch, boxes], dim=1)


def grads(fn, x, rois, g, *args):
    x = x.clone().requires_grad_(True)
    out = fn(x, rois, *args)
    out.backward(g)
    return out.detach(), x.grad


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sampling_ratio", [-1, 1, 2])
def test_roi_align_matches_torchvision(seed, aligned, sampling_ratio):
    torch.manual_seed(seed)
    N, C, H, W = 3, 5, 11, 17  # non-square map, batch of 3
    scale = [1.0, 0.5, 0.25][seed]
    x = torch.randn(N, C, H, W)
    rois = random_rois(60, N, H, W, scale, seed)
    output_size = [(7, 7), (4, 6), 3][seed]
    g = torch.randn(60, C, *((output_size,) * 2 if isinstance(output_size, int) else output_size))
    args = (output_size, scale, sampling_ratio, aligned)
    out, grad = grads(roi_align, x, rois, g, *args)
    ref, ref_grad = grads(torchvision.ops.roi_align, x, rois, g, *args)
    torch.testing.assert_close(out, ref, **TOL)
    torch.testing.assert_close(grad, ref_grad, **TOL)


@pytest.mark.parametrize("aligned", [False, True])
def test_roi_align_box_list_and_empty_images(aligned):
    torch.manual_seed(3)
    x = torch.randn(3, 4, 20, 14)
    boxes = [torch.empty(0, 4), torch.tensor([[1.0, 2.0, 30.0, 50.0], [10.0, 0.0, 12.0, 3.0]]), torch.rand(5, 4) * 40]
    boxes[2][:, 2:] += boxes[2][:, :2]
    for sr in (-1, 2):
        out = roi_align(x, boxes, 5, 0.5, sr, aligned)
        ref = torchvision.ops.roi_align(x, boxes, 5, 0.5, sr, aligned)
        assert out.shape == (7, 4, 5, 5)
        torch.testing.assert_close(out, ref, **TOL)


def test_roi_align_no_boxes():
    x = torch.randn(2, 4, 8, 8, requires_grad=True)
    for boxes in (torch.empty(0, 5), [torch.empty(0, 4), torch.empty(0, 4)]):
        out = roi_align(x, boxes, (3, 2), 1.0, 2, True)
        assert out.shape == (0, 4, 3, 2)
        out.sum().backward()
        assert torch.equal(x.grad, torch.zeros_like(x))


def test_roi_align_edge_boxes():
    """Boxes at and beyond the map's edges, zero-size boxes, exact cell corners, a 1-cell-wide map."""
    torch.manual_seed(4)
    for H, W in ((9, 13), (1, 6), (5, 1)):
        x = torch.randn(2, 3, H, W)
        rois = torch.tensor(
            [
                [0, 0.0, 0.0, W, H],
                [1, -1.0, -1.0, W + 1.0, H + 1.0],
                [1, W - 1.0, H - 1.0, W + 4.0, H + 4.0],
                [0, -5.0, -5.0, -1.5, -1.5],
                [1, 2.0, 2.0, 2.0, 2.0],
                [0, W + 0.5, 0.0, W + 3.0, H],
                [1, 0.5, 0.5, 1.5, 1.5],
            ]
        )
        for aligned in (False, True):
            for sr in (-1, 1, 2, 3):
                out = roi_align(x, rois, (2, 3), 1.0, sr, aligned)
                ref = torchvision.ops.roi_align(x, rois, (2, 3), 1.0, sr, aligned)
                torch.testing.assert_close(out, ref, **TOL)


def test_roi_align_adaptive_mixed_sizes_and_double():
    """Adaptive sampling with tiny and huge boxes together (several sample-count groups); float64."""
    torch.manual_seed(5)
    x = torch.randn(2, 3, 40, 30, dtype=torch.float64)
    rois = random_rois(40, 2, 40, 30, 1.0, 5).double()
    rois[:5, 3:] = rois[:5, 1:3] + torch.tensor([120.0, 160.0], dtype=torch.float64)  # ~17-23 samples per bin
    g = torch.randn(40, 3, 7, 7, dtype=torch.float64)
    out, grad = grads(roi_align, x, rois, g, 7, 1.0, -1, False)
    ref, ref_grad = grads(torchvision.ops.roi_align, x, rois, g, 7, 1.0, -1, False)
    torch.testing.assert_close(out, ref, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(grad, ref_grad, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("sampling_ratio", [-1, 2])
def test_roi_align_in_chunks(monkeypatch, sampling_ratio):
    """Many boxes (or huge adaptive ones) are evaluated a chunk at a time; same result."""
    monkeypatch.setattr(course_lib.ops.roi_align, "_MAX_TAPS", 1000)
    torch.manual_seed(11)
    x = torch.randn(2, 3, 16, 12)
    rois = random_rois(30, 2, 16, 12, 0.5, 11)
    g = torch.randn(30, 3, 3, 4)
    out, grad = grads(roi_align, x, rois, g, (3, 4), 0.5, sampling_ratio, True)
    ref, ref_grad = grads(torchvision.ops.roi_align, x, rois, g, (3, 4), 0.5, sampling_ratio, True)
    torch.testing.assert_close(out, ref, **TOL)
    torch.testing.assert_close(grad, ref_grad, **TOL)


@pytest.mark.parametrize("sampling_ratio", [-1, 2])
def test_roi_align_weights_are_the_separable_matrices(sampling_ratio):
    """roi_align[k, c] == Wy[k] @ F[b, c] @ Wx[k].T."""
    torch.manual_seed(6)
    x = torch.randn(2, 3, 12, 9)
    rois = random_rois(20, 2, 12, 9, 0.5, 6)
    wy, wx = roi_align_weights((12, 9), rois, (4, 5), 0.5, sampling_ratio, True)
    assert wy.shape == (20, 4, 12) and wx.shape == (20, 5, 9)
    dense = torch.einsum("kiy,kcyx,kjx->kcij", wy, x[rois[:, 0].long()], wx)
    ref = torchvision.ops.roi_align(x, rois, (4, 5), 0.5, sampling_ratio, True)
    torch.testing.assert_close(dense, ref, **TOL)


def test_roi_pool_matches_torchvision():
    for seed, scale in ((0, 1.0), (1, 0.5), (2, 0.25)):
        torch.manual_seed(seed)
        x = torch.randn(2, 4, 10, 15)
        rois = random_rois(30, 2, 10, 15, scale, seed)
        rois[:3, 1:] = torch.tensor([[2.5, 3.5, 4.5, 6.5], [-0.5, 1.5, 7.5, 2.5], [1.0, 1.0, 1.0, 1.0]]) / scale
        for output_size in ((3, 4), 2):
            out = roi_pool(x, rois, output_size, scale)
            ref = torchvision.ops.roi_pool(x, rois, output_size, scale)
            torch.testing.assert_close(out, ref, atol=0, rtol=0)
    boxes = [torch.tensor([[0.0, 0.0, 5.0, 5.0]]), torch.empty(0, 4)]
    torch.testing.assert_close(roi_pool(x, boxes, 2), torchvision.ops.roi_pool(x, boxes, 2))
    assert roi_pool(x, torch.empty(0, 5), 2).shape == (0, 4, 2, 2)


def test_roi_pool_gradient():
    torch.manual_seed(7)
    x = torch.randn(2, 3, 9, 9)
    rois = random_rois(12, 2, 9, 9, 1.0, 7)
    g = torch.randn(12, 3, 3, 3)
    _, grad = grads(roi_pool, x, rois, g, 3, 1.0)
    _, ref_grad = grads(torchvision.ops.roi_pool, x, rois, g, 3, 1.0)
    torch.testing.assert_close(grad, ref_grad, **TOL)


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
