"""course_lib.detection._utils: BoxCoder (and its function forms encode_boxes / decode_boxes) agrees with
torchvision's BoxCoder. Matcher and BalancedPositiveNegativeSampler are tested beside the RPN in test_rpn.py."""

import math

import pytest
import torch
from torchvision.models.detection._utils import BoxCoder as TVBoxCoder

from course_lib.detection._utils import BoxCoder, decode_boxes, encode_boxes
from shared_cases import rand_boxes

pytestmark = pytest.mark.equality  # compared with torchvision: ./course test --cpu-variants runs it

SEEDS = [0, 1, 2]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("weights", [(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0)])
def test_encode_single_matches_torchvision(seed, weights):
    ref, props = rand_boxes(60, seed), rand_boxes(60, seed + 7)
    ours = BoxCoder(weights).encode_single(ref, props)
    theirs = TVBoxCoder(weights).encode_single(ref, props)
    assert ours.shape == (60, 4)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("weights", [(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0)])
@pytest.mark.parametrize("k", [1, 3])
def test_decode_single_matches_torchvision(seed, weights, k):
    g = torch.Generator().manual_seed(seed)
    boxes = rand_boxes(60, seed)
    codes = torch.randn(60, 4 * k, generator=g) * 2
    codes[0, 2] = 50.0  # a huge log-scale: clamped to bbox_xform_clip
    codes[1, 3] = 1e4
    ours = BoxCoder(weights).decode_single(codes, boxes)
    theirs = TVBoxCoder(weights).decode_single(codes, boxes)
    assert ours.shape == (60, 4 * k)
    assert torch.isfinite(ours).all()
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


def test_decode_clamp_is_bbox_xform_clip():
    box = torch.tensor([[0.0, 0.0, 16.0, 16.0]])
    out = BoxCoder((1.0, 1.0, 1.0, 1.0)).decode_single(torch.tensor([[0.0, 0.0, 100.0, 100.0]]), box)
    torch.testing.assert_close(out, torch.tensor([[-492.0, -492.0, 508.0, 508.0]]))  # w = 1000
    coder = BoxCoder((1.0, 1.0, 1.0, 1.0), bbox_xform_clip=math.log(2.0))
    out = coder.decode_single(torch.tensor([[0.0, 0.0, 5.0, 5.0]]), box)
    torch.testing.assert_close(out, torch.tensor([[-8.0, -8.0, 24.0, 24.0]]))
    assert BoxCoder((1.0,) * 4).bbox_xform_clip == math.log(1000.0 / 16)


def test_box_coder_round_trip_and_empty():
    ref, props = rand_boxes(30, 3), rand_boxes(30, 4)
    coder = BoxCoder((10.0, 10.0, 5.0, 5.0))
    torch.testing.assert_close(coder.decode_single(coder.encode_single(ref, props), props), ref,
                               rtol=1e-4, atol=1e-3)
    e = torch.zeros(0, 4)
    assert coder.encode_single(e, e).shape == (0, 4)
    assert coder.decode_single(e, e).shape == (0, 4)


def test_decode_casts_boxes_to_codes_dtype():
    boxes = rand_boxes(10, 0, dtype=torch.float64)
    codes = torch.randn(10, 4, generator=torch.Generator().manual_seed(0))
    out = BoxCoder((1.0,) * 4).decode_single(codes, boxes)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, TVBoxCoder((1.0,) * 4).decode_single(codes, boxes))


# The list forms: one tensor of boxes per image. The sizes include images without a box, and no image at all.
IMAGE_SIZES = [[7], [5, 0, 9], [0], [0, 0], [3, 11, 1, 6]]


def _per_image(sizes, seed, dtype=torch.float32):
    return list(rand_boxes(sum(sizes), seed, dtype=dtype).split(sizes)) if sizes else []


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("weights", [(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0)])
@pytest.mark.parametrize("sizes", IMAGE_SIZES)
def test_encode_list_matches_torchvision(seed, weights, sizes):
    ref, props = _per_image(sizes, seed), _per_image(sizes, seed + 7)
    ours = BoxCoder(weights).encode(ref, props)
    theirs = TVBoxCoder(weights).encode(ref, props)
    assert isinstance(ours, tuple) and type(ours) is type(theirs)
    assert [t.shape for t in ours] == [t.shape for t in theirs] == [(n, 4) for n in sizes]
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("weights", [(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0)])
@pytest.mark.parametrize("sizes", IMAGE_SIZES)
@pytest.mark.parametrize("k", [1, 3])
def test_decode_list_matches_torchvision(seed, weights, sizes, k):
    boxes = _per_image(sizes, seed)
    n = sum(sizes)
    codes = torch.randn(n, 4 * k, generator=torch.Generator().manual_seed(seed)) * 2
    if n >= 2:
        codes[0, 2] = 50.0  # a huge log-scale: clamped to bbox_xform_clip
        codes[1, 3] = 1e4
    ours = BoxCoder(weights).decode(codes, boxes)
    theirs = TVBoxCoder(weights).decode(codes, boxes)
    assert ours.shape == theirs.shape == ((n, k, 4) if n else (0, 4 * k))  # torchvision keeps (0, 4K) when empty
    assert torch.isfinite(ours).all()
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
    tuple_boxes = BoxCoder(weights).decode(codes, tuple(boxes))  # a tuple is accepted too
    torch.testing.assert_close(tuple_boxes, ours, rtol=0, atol=0)


def test_decode_list_flattens_codes_and_clips_as_torchvision():
    boxes = [torch.tensor([[0.0, 0.0, 16.0, 16.0]]), torch.tensor([[10.0, 10.0, 26.0, 26.0]])]
    codes = torch.tensor([[0.0, 0.0, 100.0, 100.0], [0.0, 0.0, 5.0, 5.0]]).reshape(1, 2, 4)  # (1, 2, 4): reshaped
    clip = math.log(2.0)
    ours = BoxCoder((1.0,) * 4, bbox_xform_clip=clip).decode(codes, boxes)
    torch.testing.assert_close(ours, TVBoxCoder((1.0,) * 4, bbox_xform_clip=clip).decode(codes, boxes))
    torch.testing.assert_close(ours, torch.tensor([[[-8.0, -8.0, 24.0, 24.0]], [[2.0, 2.0, 34.0, 34.0]]]))
    ours = BoxCoder((10.0, 10.0, 5.0, 5.0)).decode(codes, boxes)  # default clip log(1000 / 16), head weights
    torch.testing.assert_close(ours, TVBoxCoder((10.0, 10.0, 5.0, 5.0)).decode(codes, boxes))


def test_list_forms_refuse_what_torchvision_refuses():
    boxes = rand_boxes(4, 0)
    codes = torch.zeros(4, 4)
    ours, theirs = BoxCoder((1.0,) * 4), TVBoxCoder((1.0,) * 4)
    for coder in (ours, theirs):  # ours raises TypeError, torchvision's torch._assert an AssertionError
        with pytest.raises((TypeError, AssertionError), match="expects boxes of type list or tuple"):
            coder.decode(codes, boxes)  # one tensor is decode_single's job
    for call in (lambda c: c.encode([], []), lambda c: c.decode(codes, [])):  # no image at all: torch.cat([])
        with pytest.raises(Exception) as tv_error:
            call(theirs)
        with pytest.raises(tv_error.type, match="non-empty list"):
            call(ours)


# ---------------------------------------------------------------- function forms

@pytest.mark.parametrize("weights", [(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0)])
def test_encode_and_decode_boxes_are_box_coder_single(weights):
    ref, props = rand_boxes(20, 5), rand_boxes(20, 6)
    codes = encode_boxes(ref, props, weights)
    torch.testing.assert_close(codes, TVBoxCoder(weights).encode_single(ref, props), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(decode_boxes(codes, props, weights), TVBoxCoder(weights).decode_single(codes, props),
                               rtol=1e-5, atol=1e-5)


def test_encode_and_decode_boxes_known_values_and_default_weights():
    ref = torch.tensor([[0.0, 0.0, 10.0, 20.0]])
    gt = torch.tensor([[5.0, 10.0, 25.0, 30.0]])  # centre (15, 20), size (20, 20); reference centre (5, 10)
    expected = torch.tensor([[1.0, 0.5, math.log(2.0), 0.0]])  # (10 / 10, 10 / 20, log(20 / 10), log(20 / 20))
    torch.testing.assert_close(encode_boxes(gt, ref), expected)  # default weights (1, 1, 1, 1): the RPN's
    torch.testing.assert_close(encode_boxes(gt, ref, (10.0, 10.0, 5.0, 5.0)), expected * torch.tensor([10, 10, 5, 5]))
    torch.testing.assert_close(decode_boxes(expected, ref), gt)
    assert encode_boxes(torch.zeros(0, 4), torch.zeros(0, 4)).shape == (0, 4)
