"""``roi_pool`` and ``roi_pool_one_box`` (03's exercise reference): equal to ``torchvision.ops.roi_pool`` and to
each other, on random boxes and on the rounding edges (and in the gradient); both round through ``quantise_rois``."""

import pytest
import torch
import torchvision

from course_lib.ops.roi_pool import quantise_rois, roi_pool, roi_pool_one_box
from shared_cases import grads, random_rois

pytestmark = pytest.mark.equality

TOL = dict(atol=1e-5, rtol=1e-5)


def random_cases(n: int, seed: int):
    """(feature (C, H, W), box (4,), output size, scale): boxes partly off the map, back to front, on half cells."""
    g = torch.Generator().manual_seed(seed)
    for t in range(n):
        H, W = (int(v) for v in torch.randint(1, 14, (2,), generator=g))
        feature = torch.randn(2, H, W, generator=g)
        scale = (1.0, 0.5, 0.25, 1 / 16)[t % 4]
        xy = (torch.rand(2, generator=g) * 1.6 - 0.3) * torch.tensor([W, H]) / scale
        wh = torch.rand(2, generator=g) * torch.tensor([W, H]) / scale * (-0.1 if t % 7 == 0 else 1.2)
        box = torch.cat([xy, xy + wh])
        if t % 3 == 0:
            box = (box * 2 * scale).round() / (2 * scale)  # corners exactly on half cells
        size = tuple(int(v) for v in torch.randint(1, 8, (2,), generator=g))
        yield t, feature, box, size, scale


def test_roi_pool_one_box_and_roi_pool_equal_torchvision_on_random_boxes():
    for t, feature, box, size, scale in random_cases(300, seed=11):
        expected = torchvision.ops.roi_pool(feature[None], [box[None]], size, scale)[0]
        assert torch.equal(roi_pool_one_box(feature, box, size, scale), expected), (t, box.tolist(), size, scale)
        assert torch.equal(roi_pool(feature[None], [box[None]], size, scale)[0], expected), (t, box.tolist())


def test_roi_pool_of_many_boxes_is_roi_pool_one_box_of_each():
    g = torch.Generator().manual_seed(5)
    x = torch.randn(2, 3, 12, 15, generator=g)
    xy = torch.rand(20, 2, generator=g) * 200 - 20
    boxes = torch.cat([xy, xy + torch.rand(20, 2, generator=g) * 120], 1)
    rois = torch.cat([torch.randint(0, 2, (20, 1), generator=g).float(), boxes], 1)
    out = roi_pool(x, rois, (3, 5), 1 / 8)
    assert torch.equal(out, torchvision.ops.roi_pool(x, rois, (3, 5), 1 / 8))
    for k, (b, *box) in enumerate(rois.tolist()):
        assert torch.equal(out[k], roi_pool_one_box(x[int(b)], torch.tensor(box), (3, 5), 1 / 8))


def test_roi_pool_one_box_rounds_halves_away_from_zero_and_bins_in_float32():
    ramp = torch.arange(31.0).expand(1, 31, 31).contiguous()  # cell (i, j) holds j: a bin's max is its last column
    # 29 cells in 7 bins: in float32 the last bin ends at cell 29 (value 28); float64's 7 * (29 / 7) would reach 30.
    assert roi_pool_one_box(ramp, torch.tensor([0.0, 0.0, 28.0, 28.0]), (1, 7), 1.0)[0, 0, -1] == 28
    feature = torch.arange(16.0).reshape(1, 4, 4)
    assert roi_pool_one_box(feature, torch.tensor([2.5, 0.0, 2.5, 0.0]), (1, 1), 1.0).item() == 3.0  # 2.5 -> 3
    # x1 = -0.5 rounds to -1 (torch.round would give 0): three cells -1, 0, 1, the first off the map, so 0.
    out = roi_pool_one_box(feature + 1, torch.tensor([-0.5, 0.0, 1.0, 0.0]), (1, 3), 1.0)
    assert out.flatten().tolist() == [0.0, 1.0, 2.0]
    assert roi_pool_one_box(feature, torch.tensor([40.0, 40.0, 50.0, 50.0]), (2, 2), 1.0).abs().sum() == 0


@pytest.mark.parametrize("box, size", [
    ([-1.5, -2.5, 3.5, 4.5], (5, 5)),     # negative halves: -1.5 -> -2, not -1
    ([3.0, 2.0, 1.0, 0.5], (2, 3)),       # back to front: one cell
    ([-9.0, -9.0, -4.0, -4.0], (2, 2)),   # wholly off the map, top left: 0
    ([0.0, 0.0, 0.0, 0.0], (3, 3)),       # a point: one cell, most bins empty
    ([0.0, 0.0, 5.0, 4.0], (7, 7)),       # more bins than cells: bins overlap
])
def test_edge_cases_equal_torchvision(box, size):
    feature = torch.randn(3, 5, 6, generator=torch.Generator().manual_seed(1))
    expected = torchvision.ops.roi_pool(feature[None], [torch.tensor([box])], size, 1.0)[0]
    assert torch.equal(roi_pool_one_box(feature, torch.tensor(box), size, 1.0), expected)
    assert torch.equal(roi_pool(feature[None], [torch.tensor([box])], size, 1.0)[0], expected)


def test_float64_maps_bin_in_float64_as_torchvision_does():
    ramp = torch.arange(31.0, dtype=torch.float64).expand(1, 31, 31).contiguous()
    box = torch.tensor([0.0, 0.0, 28.0, 28.0], dtype=torch.float64)
    expected = torchvision.ops.roi_pool(ramp[None], [box[None]], (1, 7), 1.0)[0]
    assert torch.equal(roi_pool_one_box(ramp, box, (1, 7), 1.0), expected)


def test_the_roundings_live_in_quantise_rois():
    """Both functions read their cells from ``quantise_rois``: a wrong answer there shows in both."""
    rois = torch.tensor([[0.0, -0.5, 2.5, 3.5, 6.5]])
    (x1, y1, x2, y2), (h0, h1), (w0, w1) = quantise_rois(rois, (2, 2), 1.0, (8, 8))
    assert (int(x1), int(y1), int(x2), int(y2)) == (-1, 3, 4, 7)  # halves away from zero
    assert h0.tolist() == [[3, 5]] and h1.tolist() == [[6, 8]]  # 5 cells in 2 bins: bins overlap
    assert w0.tolist() == [[0, 2]] and w1.tolist() == [[2, 5]]  # the first bin starts off the map: clipped to 0


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
