"""course_lib.ops.roi_align (roi_align, roi_align_one_box, bilinear_interpolate, linear_weights) agrees with torchvision.ops.roi_align."""


import pytest
import torch
import torchvision

import course_lib.ops.roi_align
from course_lib.ops.roi_align import (
    bilinear_interpolate,
    linear_weights,
    roi_align,
    roi_align_one_box,
    roi_align_weights,
)
from shared_cases import grads, random_rois, roi_align_separable

pytestmark = pytest.mark.equality  # compared with torchvision: ./course test --cpu-variants runs it

TOL = dict(atol=1e-5, rtol=1e-5)


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


def torchvision_at_point(feature, y, x):
    """torchvision's bilinear_interpolate at (y, x): a 1x1 bin of size 1 centred there, one sample."""
    box = torch.tensor([[0.0, x - 0.5, y - 0.5, x + 0.5, y + 0.5]], dtype=torch.float64)
    return torchvision.ops.roi_align(feature[None].double(), box, 1, 1.0, 1, False)[0, :, 0, 0]


POINTS = [(2.3, 4.7), (0.0, 0.0), (-0.5, 3.2), (-1.0, 2.0), (5.5, 8.7), (6.0, 9.0), (6.2, 1.0), (-1.3, 2.0),
          (5.0, 8.0), (3.0, 8.4), (4.99, -0.99), (1.5, 9.5)]


@pytest.mark.parametrize("y, x", POINTS)
def test_bilinear_interpolate_matches_torchvision(y, x):
    feature = torch.randn(3, 6, 9, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    torch.testing.assert_close(bilinear_interpolate(feature, y, x), torchvision_at_point(feature, y, x), **TOL)


def test_linear_weights_are_one_axis_of_bilinear():
    feature = torch.randn(3, 6, 9, generator=torch.Generator().manual_seed(1))
    for y, x in POINTS:
        wy, wx = linear_weights(torch.tensor([y]), 6)[0], linear_weights(torch.tensor([x]), 9)[0]
        torch.testing.assert_close(torch.einsum("h,chw,w->c", wy, feature, wx), bilinear_interpolate(feature, y, x),
                                   **TOL)
    w = linear_weights(torch.tensor([-2.0, -1.0, 0.5, 8.0, 8.5, 9.0, 9.5]), 9)
    assert w.shape == (7, 9)
    torch.testing.assert_close(w.sum(1), torch.tensor([0.0, 1, 1, 1, 1, 1, 0]))
    assert w[4, 8] == 1.0  # past the last cell: the last cell alone


@pytest.mark.parametrize("sampling_ratio, aligned", [(2, False), (-1, False), (1, True), (-1, True)])
def test_roi_align_one_box_matches_torchvision(sampling_ratio, aligned):
    g = torch.Generator().manual_seed(2)
    feature = torch.randn(5, 11, 13, generator=g)
    for _ in range(6):
        xy = torch.rand(2, generator=g) * 60 - 8
        box = torch.cat([xy, xy + torch.rand(2, generator=g) * 40 + 0.2])
        ref = torchvision.ops.roi_align(feature[None], [box[None]], (4, 6), 0.25, sampling_ratio, aligned)[0]
        args = (feature, box, (4, 6), 0.25, sampling_ratio, aligned)
        torch.testing.assert_close(roi_align_one_box(*args), ref, **TOL)
        torch.testing.assert_close(roi_align_separable(*args), ref, **TOL)
