"""course_lib.ops.boxes agrees with torchvision.ops (the BoxCoder tests are in tests/detection/test_detection_utils.py)."""

import math

import pytest
import torch
import torchvision

from course_lib.ops.boxes import (
    batched_nms,
    box_area,
    box_iou,
    clip_boxes_to_image,
    nms,
    remove_small_boxes,
)
from shared_cases import rand_boxes

pytestmark = pytest.mark.equality  # compared with torchvision: ./course test --cpu-variants runs it

SEEDS = [0, 1, 2]


def clustered_boxes(n, seed, k=20):
    """Boxes jittered around k objects: the heavy overlaps NMS sees in a detector."""
    g = torch.Generator().manual_seed(seed)
    ctr, wh = torch.rand(k, 2, generator=g) * 400, torch.rand(k, 2, generator=g) * 100 + 10
    i = torch.randint(0, k, (n,), generator=g)
    c = ctr[i] + torch.randn(n, 2, generator=g) * wh[i] * 0.2
    s = wh[i] * torch.exp(torch.randn(n, 2, generator=g) * 0.2)
    return torch.cat([c - s / 2, c + s / 2], dim=1), torch.rand(n, generator=g)


def zero_size_boxes():
    return torch.tensor([[5.0, 5.0, 5.0, 5.0], [0.0, 0.0, 10.0, 0.0], [1.0, 2.0, 1.0, 9.0],
                         [0.0, 0.0, 10.0, 10.0], [2.0, 2.0, 8.0, 8.0]])


# ---------------------------------------------------------------- area and IoU

@pytest.mark.parametrize("seed", SEEDS)
def test_box_area_matches_torchvision(seed):
    b = rand_boxes(50, seed)
    torch.testing.assert_close(box_area(b), torchvision.ops.box_area(b), rtol=1e-5, atol=1e-5)


def test_box_area_edge_cases():
    assert box_area(torch.zeros(0, 4)).shape == (0,)
    z = zero_size_boxes()
    assert torch.equal(box_area(z), torchvision.ops.box_area(z))
    assert box_area(z)[:3].tolist() == [0.0, 0.0, 0.0]


@pytest.mark.parametrize("seed", SEEDS)
def test_box_iou_matches_torchvision(seed):
    b1, b2 = rand_boxes(40, seed), rand_boxes(70, seed + 100)
    ours, ref = box_iou(b1, b2), torchvision.ops.box_iou(b1, b2)
    assert ours.shape == (40, 70)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)
    assert (ours >= 0).all() and (ours <= 1).all()
    assert (ours > 0).any() and (ours == 0).any()  # the data has overlaps and misses


def test_box_iou_float64_and_known_values():
    a = torch.tensor([[0.0, 0.0, 10.0, 10.0]], dtype=torch.float64)
    b = torch.tensor([[0.0, 0.0, 10.0, 10.0], [5.0, 0.0, 15.0, 10.0], [20.0, 20.0, 30.0, 30.0],
                      [0.0, 0.0, 5.0, 5.0]], dtype=torch.float64)
    iou = box_iou(a, b)
    assert iou.dtype == torch.float64
    torch.testing.assert_close(iou, torch.tensor([[1.0, 50 / 150, 0.0, 0.25]], dtype=torch.float64))
    torch.testing.assert_close(iou, torchvision.ops.box_iou(a, b))


def test_box_iou_gradient_matches_torchvision():
    b1 = rand_boxes(15, 0).requires_grad_()
    b2 = rand_boxes(25, 1)
    box_iou(b1, b2).square().sum().backward()
    ours, b1.grad = b1.grad, None
    torchvision.ops.box_iou(b1, b2).square().sum().backward()
    torch.testing.assert_close(ours, b1.grad, rtol=1e-5, atol=1e-6)


def test_box_iou_edge_cases():
    e = torch.zeros(0, 4)
    b = rand_boxes(5, 0)
    assert box_iou(e, b).shape == (0, 5)
    assert box_iou(b, e).shape == (5, 0)
    assert box_iou(e, e).shape == (0, 0)
    z = zero_size_boxes()
    # 0 / 0 = nan between two zero-size boxes, exactly as torchvision
    torch.testing.assert_close(box_iou(z, z), torchvision.ops.box_iou(z, z), equal_nan=True)
    assert torch.isnan(box_iou(z, z)[0, 0])
    assert box_iou(z, z)[0, 3] == 0.0  # a point inside a box: no area, IoU 0


# ---------------------------------------------------------------- NMS

@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n", [1, 7, 300, 700])
@pytest.mark.parametrize("thr", [0.0, 0.3, 0.5, 0.7, 1.0])
def test_nms_matches_torchvision_random(seed, n, thr):
    b = rand_boxes(n, seed)
    s = torch.rand(n, generator=torch.Generator().manual_seed(seed + 50))
    keep = nms(b, s, thr)
    assert keep.dtype == torch.int64
    assert torch.equal(keep, torchvision.ops.nms(b, s, thr))


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("thr", [0.3, 0.5, 0.7])
def test_nms_matches_torchvision_clustered(seed, thr):
    b, s = clustered_boxes(800, seed)
    keep = nms(b, s, thr)
    assert torch.equal(keep, torchvision.ops.nms(b, s, thr))
    assert 20 <= len(keep) < 800
    # kept boxes never overlap each other above the threshold
    iou = box_iou(b[keep], b[keep]).fill_diagonal_(0)
    assert (iou <= thr).all()


@pytest.mark.parametrize("block_size", [1, 3, 64, 10_000])
def test_nms_block_size_does_not_change_result(block_size):
    b, s = clustered_boxes(150, 9)
    assert torch.equal(nms(b, s, 0.5, block_size=block_size), torchvision.ops.nms(b, s, 0.5))


@pytest.mark.parametrize("seed", SEEDS)
def test_nms_tied_scores(seed):
    # torchvision visits equal scores in index order (stable sort); so must we.
    b, _ = clustered_boxes(400, seed)
    g = torch.Generator().manual_seed(seed)
    for s in [torch.full((400,), 0.5),                                   # all tied
              torch.randint(0, 5, (400,), generator=g).float() / 4,      # 5 values
              torch.cat([torch.ones(200), torch.rand(200, generator=g)])]:  # half tied at top
        for thr in (0.3, 0.5, 0.7):
            assert torch.equal(nms(b, s, thr), torchvision.ops.nms(b, s, thr))
    # two identical boxes with identical scores: the lower index wins
    two = torch.tensor([[0.0, 0.0, 10.0, 10.0]] * 2)
    assert nms(two, torch.tensor([0.9, 0.9]), 0.5).tolist() == [0]


def test_nms_threshold_compared_like_torchvision():
    # torchvision compares a float32 IoU with a float64 threshold: a threshold a hair below the
    # IoU suppresses, even though it rounds to the same float32.
    b = torch.tensor([[0.0, 0.0, 10.0, 10.0], [3.0, 1.0, 13.0, 11.0]])
    s = torch.tensor([0.9, 0.8])
    v = box_iou(b, b)[0, 1].item()  # exactly the float32 IoU, as a Python float
    for thr in (v, v - 1e-12, v + 1e-12, math.nextafter(v, 0), math.nextafter(v, 1)):
        ref = torchvision.ops.nms(b, s, thr)
        assert torch.equal(nms(b, s, thr), ref), thr
    assert nms(b, s, v - 1e-12).tolist() == [0]
    assert nms(b, s, v).tolist() == [0, 1]
    # and on many boxes, thresholds right at the IoU values that occur
    bb, ss = clustered_boxes(200, 5)
    ious = box_iou(bb, bb).flatten()
    for v in ious[(ious > 0.2) & (ious < 0.8)][:4].tolist():
        for thr in (v, v - 1e-12):
            assert torch.equal(nms(bb, ss, thr), torchvision.ops.nms(bb, ss, thr))


def test_nms_edge_cases():
    e = torch.zeros(0, 4)
    assert nms(e, torch.zeros(0), 0.5).shape == (0,)
    assert nms(e, torch.zeros(0), 0.5).dtype == torch.int64
    one = torch.tensor([[1.0, 1.0, 5.0, 5.0]])
    assert nms(one, torch.tensor([0.3]), 0.5).tolist() == [0]
    # zero-size boxes: IoU is 0 or nan, never > threshold, so nothing is suppressed by them
    z = zero_size_boxes()
    s = torch.tensor([0.9, 0.8, 0.7, 0.6, 0.5])
    assert torch.equal(nms(z, s, 0.5), torchvision.ops.nms(z, s, 0.5))
    # a negative threshold: every IoU 0 is above it, only nan escapes
    b, s = rand_boxes(50, 1), torch.rand(50, generator=torch.Generator().manual_seed(1))
    assert torch.equal(nms(b, s, -0.1), torchvision.ops.nms(b, s, -0.1))
    assert len(nms(b, s, -0.1)) == 1


def test_nms_float64():
    b = rand_boxes(500, 4, dtype=torch.float64)
    s = torch.rand(500, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    for thr in (0.3, 0.7):
        assert torch.equal(nms(b, s, thr), torchvision.ops.nms(b, s, thr))


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n", [50, 900, 1100])  # <= 1000 boxes: offset trick; above: per class
def test_batched_nms_matches_torchvision(seed, n):
    b, s = clustered_boxes(n, seed)
    idxs = torch.randint(0, 4, (n,), generator=torch.Generator().manual_seed(seed))
    keep = batched_nms(b, s, idxs, 0.5)
    assert torch.equal(keep, torchvision.ops.batched_nms(b, s, idxs, 0.5))
    assert (s[keep][1:] <= s[keep][:-1]).all()  # sorted by decreasing score
    # different categories never suppress each other: more kept than plain NMS
    assert len(keep) > len(nms(b, s, 0.5))


def test_batched_nms_edge_cases():
    e = torch.zeros(0, 4)
    assert batched_nms(e, torch.zeros(0), torch.zeros(0, dtype=torch.int64), 0.5).shape == (0,)
    two = torch.tensor([[0.0, 0.0, 10.0, 10.0]] * 2)
    s = torch.tensor([0.9, 0.8])
    assert batched_nms(two, s, torch.tensor([0, 1]), 0.5).tolist() == [0, 1]
    assert batched_nms(two, s, torch.tensor([1, 1]), 0.5).tolist() == [0]


# ---------------------------------------------------------------- clip and small boxes

@pytest.mark.parametrize("size", [(100, 150), (97, 131), (1, 1)])
def test_clip_boxes_to_image(size):
    b = rand_boxes(60, 2, size=160.0)
    ours = clip_boxes_to_image(b, size)
    assert torch.equal(ours, torchvision.ops.clip_boxes_to_image(b, size))
    assert (ours[:, 0::2] <= size[1]).all() and (ours[:, 1::2] <= size[0]).all() and (ours >= 0).all()
    batch = b.reshape(2, 30, 4)  # (B, N, 4) works too
    assert torch.equal(clip_boxes_to_image(batch, size), ours.reshape(2, 30, 4))


def test_remove_small_boxes():
    b = torch.cat([rand_boxes(60, 3, min_wh=0.0, max_wh=4.0), zero_size_boxes()])
    for min_size in (1e-3, 1.0, 2.5):
        assert torch.equal(remove_small_boxes(b, min_size),
                           torchvision.ops.remove_small_boxes(b, min_size))
    assert remove_small_boxes(torch.zeros(0, 4), 1.0).shape == (0,)


def test_clip_and_small_boxes():
    from torchvision.ops import boxes as box_ops

    g = torch.Generator().manual_seed(4)
    boxes = torch.randn(50, 3, 4, generator=g) * 100
    torch.testing.assert_close(clip_boxes_to_image(boxes, (60, 80)), box_ops.clip_boxes_to_image(boxes, (60, 80)))
    flat = clip_boxes_to_image(boxes, (60, 80)).reshape(-1, 4)
    assert torch.equal(remove_small_boxes(flat, 1.0), box_ops.remove_small_boxes(flat, 1.0))
