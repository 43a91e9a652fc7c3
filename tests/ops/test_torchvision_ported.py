"""torchvision's own tests of the ops (``test/test_ops.py``), ported to ``course_lib.ops``.

Each test is named after its source, ``test_<Class>_<test>``, keeps the source's inputs and expected
values, runs our op and, where it means something, also compares with torchvision's op on the same
input. Inputs are kept small (fewer channels, boxes and seeds than the source) so the file runs in a
few seconds; the reduction is said in each docstring. Where our behaviour differs from torchvision's
on purpose, the docstring says how.
"""

import math

import numpy as np
import pytest
import torch
from torch.autograd import gradcheck
from torchvision import ops
from torchvision.ops.poolers import LevelMapper

from course_lib.ops.boxes import batched_nms, box_area, box_iou, nms
from course_lib.ops.poolers import assign_fpn_levels, multiscale_roi_align
from course_lib.ops.roi_align import roi_align
from course_lib.ops.roi_pool import quantise_rois, roi_pool

pytestmark = pytest.mark.equality  # compared with torchvision: ./course test --cpu-variants runs it

INT_BOXES = [[0, 0, 100, 100], [0, 0, 50, 50], [200, 200, 300, 300], [0, 0, 25, 25]]
INT_BOXES2 = [[0, 0, 100, 100], [0, 0, 50, 50], [200, 200, 300, 300]]
FLOAT_BOXES = [
    [285.3538, 185.5758, 1193.5110, 851.4551],
    [285.1472, 188.7374, 1192.4984, 851.0669],
    [279.2440, 197.9812, 1189.4746, 849.2019],
]
# The rois of RoIOpTester.test_forward, (batch_index, x1, y1, x2, y2).
FORWARD_ROIS = [[0, 0, 0, 9, 9], [0, 0, 5, 4, 9], [0, 5, 5, 9, 9], [1, 0, 0, 9, 9]]
BACKWARD_ROIS = [[0, 0, 0, 4, 4], [0, 0, 2, 3, 4], [0, 2, 2, 4, 4]]


def cpu_autocast():
    """``torch.cpu.amp.autocast()`` of the source tests (deprecated spelling): bfloat16 on CPU."""
    return torch.autocast("cpu", dtype=torch.bfloat16)


# ----------------------------------------------------------------------------------------- box_area


@pytest.mark.parametrize("dtype", [torch.int8, torch.int16, torch.int32, torch.int64])
def test_TestBoxArea_int_boxes(dtype):
    """Ported from torchvision test/test_ops.py::TestBoxArea::test_int_boxes, plus torchvision's dtype."""
    box_tensor = torch.tensor([[0, 0, 100, 100], [0, 0, 0, 0]], dtype=dtype)
    expected = torch.tensor([10000, 0], dtype=torch.int32)
    out = box_area(box_tensor)
    torch.testing.assert_close(out, expected, rtol=0.0, atol=1e-4, check_dtype=False)
    ref = ops.box_area(box_tensor)
    assert out.dtype == ref.dtype  # int32 for int8/int16 (upcast), int32/int64 kept
    torch.testing.assert_close(out, ref, rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int16])
def test_TestBoxArea_int_boxes_do_not_overflow(dtype):
    """After torchvision test/test_ops.py::TestBoxArea::test_int_boxes, with areas past the dtype's range.

    100 x 250 = 25000 does not fit uint8, 300 x 300 = 90000 does not fit int16: torchvision upcasts
    to int32 (``_upcast``) and so do we (before the fix, ours wrapped around in the input dtype).
    """
    boxes = torch.tensor([[0, 0, 100, 250], [0, 0, 200, 200]] if dtype == torch.uint8
                         else [[0, 0, 300, 300], [10, 20, 30000, 40]], dtype=dtype)
    out = box_area(boxes)
    assert out.dtype == torch.int32
    expected = torch.tensor([25000, 40000] if dtype == torch.uint8 else [90000, 599800], dtype=torch.int32)
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
    torch.testing.assert_close(out, ops.box_area(boxes), rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_TestBoxArea_float_boxes(dtype):
    """Ported from torchvision test/test_ops.py::TestBoxArea::test_float_boxes."""
    box_tensor = torch.tensor(FLOAT_BOXES, dtype=dtype)
    expected = torch.tensor([604723.0806, 600965.4666, 592761.0085], dtype=dtype)
    out = box_area(box_tensor)
    torch.testing.assert_close(out, expected, rtol=0.0, atol=1e-4)
    torch.testing.assert_close(out, ops.box_area(box_tensor), rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_TestBoxArea_float16_box(dtype):
    """Ported from torchvision test/test_ops.py::TestBoxArea::test_float16_box (bfloat16 added).

    The result is float32, as torchvision's; the FLOAT_BOXES areas (~600000) would be inf in float16.
    """
    box_tensor = torch.tensor(
        [[2.825, 1.8625, 3.90, 4.85], [2.825, 4.875, 19.20, 5.10], [2.925, 1.80, 8.90, 4.90]], dtype=dtype
    )
    expected = torch.tensor([3.2170, 3.7108, 18.5071], dtype=torch.float16)
    out = box_area(box_tensor)
    atol = 0.01 if dtype == torch.float16 else 0.2  # bfloat16 corners are rounded to 1/32 here
    torch.testing.assert_close(out, expected, rtol=0.0, atol=atol, check_dtype=False)
    ref = ops.box_area(box_tensor)
    assert out.dtype == ref.dtype == torch.float32
    torch.testing.assert_close(out, ref, rtol=0, atol=0)
    big = box_area(torch.tensor(FLOAT_BOXES, dtype=dtype))
    assert torch.isfinite(big).all() and big.dtype == torch.float32


# ------------------------------------------------------------------------------------------ box_iou

INT_EXPECTED = [[1.0, 0.25, 0.0], [0.25, 1.0, 0.0], [0.0, 0.0, 1.0], [0.0625, 0.25, 0.0]]
FLOAT_EXPECTED = [[1.0, 0.9933, 0.9673], [0.9933, 1.0, 0.9737], [0.9673, 0.9737, 1.0]]


@pytest.mark.parametrize(
    "actual_box1, actual_box2, dtypes, atol, expected",
    [
        pytest.param(INT_BOXES, INT_BOXES2, [torch.int16, torch.int32, torch.int64], 1e-4, INT_EXPECTED, id="int"),
        pytest.param(FLOAT_BOXES, FLOAT_BOXES, [torch.float16], 0.002, FLOAT_EXPECTED, id="float16"),
        pytest.param(FLOAT_BOXES, FLOAT_BOXES, [torch.float32, torch.float64], 1e-3, FLOAT_EXPECTED, id="float"),
    ],
)
def test_TestBoxIou_iou(actual_box1, actual_box2, dtypes, atol, expected):
    """Ported from torchvision test/test_ops.py::TestBoxIou::test_iou, plus torchvision's dtype and values.

    Before the fix our float16 IoU of FLOAT_BOXES was nan (areas of ~600000 are inf in float16), and
    int boxes kept their dtype through the areas. Integer and float16 boxes give float32, as torchvision's.
    torchvision rounds float16 overlaps to float16 before upcasting; we upcast first: equal to ~1e-3.
    """
    for dtype in dtypes:
        box1 = torch.tensor(actual_box1, dtype=dtype)
        box2 = torch.tensor(actual_box2, dtype=dtype)
        out = box_iou(box1, box2)
        torch.testing.assert_close(out, torch.tensor(expected), rtol=0.0, atol=atol, check_dtype=False)
        ref = ops.box_iou(box1, box2)
        assert out.dtype == ref.dtype
        tol = dict(rtol=0, atol=1e-3) if dtype == torch.float16 else {}
        torch.testing.assert_close(out, ref, **tol)


def test_TestBoxIou_iou_uint8():
    """After torchvision test/test_ops.py::TestBoxIou::test_iou, with uint8 boxes (not in the source).

    Disjoint boxes have IoU 0. torchvision subtracts the corners in uint8 before upcasting, so the
    negative overlap wraps around (it returns -1.2 here); ours upcasts first. Only our values are checked.
    """
    boxes = torch.tensor([[0, 0, 100, 100], [0, 0, 50, 50], [110, 110, 120, 120]], dtype=torch.uint8)
    out = box_iou(boxes, boxes)
    assert out.dtype == torch.float32
    expected = torch.tensor([[1.0, 0.25, 0.0], [0.25, 1.0, 0.0], [0.0, 0.0, 1.0]])
    torch.testing.assert_close(out, expected)


def gen_box(size, dtype=torch.float):
    xy1 = torch.rand((size, 2), dtype=dtype)
    xy2 = xy1 + torch.rand((size, 2), dtype=dtype)
    return torch.cat([xy1, xy2], axis=-1)


def test_TestBoxIou_iou_cartesian():
    """Ported from torchvision test/test_ops.py::TestBoxIou::test_iou_cartesian (TestIouBase._run_cartesian_test)."""
    torch.manual_seed(0)
    boxes1, boxes2 = gen_box(5), gen_box(7)
    a = torch.zeros((5, 7))
    for i in range(5):
        for j in range(7):
            a[i, j] = box_iou(boxes1[i].unsqueeze(0), boxes2[j].unsqueeze(0))
    b = box_iou(boxes1, boxes2)
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(b, ops.box_iou(boxes1, boxes2))


# ---------------------------------------------------------------------------------------------- NMS


def _reference_nms(boxes, scores, iou_threshold):
    """TestNMS._reference_nms: one box at a time, with torchvision's box_iou."""
    picked = []
    _, indexes = scores.sort(descending=True)
    while len(indexes) > 0:
        current = indexes[0]
        picked.append(current.item())
        if len(indexes) == 1:
            break
        current_box = boxes[current, :]
        indexes = indexes[1:]
        rest_boxes = boxes[indexes, :]
        iou = ops.box_iou(rest_boxes, current_box.unsqueeze(0)).squeeze(1)
        indexes = indexes[iou <= iou_threshold]
    return torch.as_tensor(picked)


def _create_tensors_with_iou(N, iou_thresh):
    """TestNMS._create_tensors_with_iou: the last box barely exceeds ``iou_thresh`` with the first."""
    boxes = torch.rand(N, 4) * 100
    boxes[:, 2:] += boxes[:, :2]
    boxes[-1, :] = boxes[0, :]
    x0, y0, x1, y1 = boxes[-1].tolist()
    iou_thresh += 1e-5
    boxes[-1, 2] += (x1 - x0) * (1 - iou_thresh) / iou_thresh
    scores = torch.rand(N)
    return boxes, scores


@pytest.mark.parametrize("iou", (0.2, 0.5, 0.8))
@pytest.mark.parametrize("seed", range(2))
def test_TestNMS_nms_ref(iou, seed):
    """Ported from torchvision test/test_ops.py::TestNMS::test_nms_ref (2 seeds of 10, 150 boxes of 1000)."""
    torch.random.manual_seed(seed)
    boxes, scores = _create_tensors_with_iou(150, iou)
    keep_ref = _reference_nms(boxes, scores, iou)
    keep = nms(boxes, scores, iou)
    torch.testing.assert_close(keep, keep_ref, msg=f"NMS incompatible with the reference for IoU={iou}")
    torch.testing.assert_close(keep, ops.nms(boxes, scores, iou))


@pytest.mark.parametrize("fn", [nms, lambda b, s, t: batched_nms(b, s, torch.zeros(len(s)), t)],
                         ids=["nms", "batched_nms"])
def test_TestNMS_nms_input_errors(fn):
    """Ported from torchvision test/test_ops.py::TestNMS::test_nms_input_errors, with torchvision's messages.

    Before the fix ours failed with "too many values to unpack", an IndexError, or (batched_nms with
    boxes (4,)) returned a result. batched_nms is checked too (torchvision's Python part has no checks
    of its own; its nms raises).
    """
    cases = [
        ((4,), (3,), "boxes should be a 2d tensor, got 1D"),
        ((3, 5), (3,), "boxes should have 4 elements in dimension 1, got 5"),
        ((3, 4), (3, 2), "scores should be a 1d tensor, got 2D"),
        ((3, 4), (4,), "boxes and scores should have same number of elements in dimension 0, got 3 and 4"),
        ((3, 4, 1), (3,), "boxes should be a 2d tensor, got 3D"),
    ]
    for boxes_shape, scores_shape, message in cases:
        with pytest.raises(RuntimeError, match=message):
            fn(torch.rand(boxes_shape), torch.rand(scores_shape), 0.5)
        with pytest.raises(RuntimeError, match=message):
            ops.nms(torch.rand(boxes_shape), torch.rand(scores_shape), 0.5)


def test_TestNMS_batched_nms_idxs_shape_error():
    """After torchvision test/test_ops.py::TestNMS::test_nms_input_errors: ``idxs`` must be (N,) like scores."""
    with pytest.raises(RuntimeError, match=r"idxs should have the shape of scores \(3,\), got \(4,\)"):
        batched_nms(torch.rand(3, 4), torch.rand(3), torch.zeros(4), 0.5)


@pytest.mark.parametrize("iou", (0.2, 0.5, 0.8))
@pytest.mark.parametrize("dtype", (torch.float, torch.bfloat16, torch.float16))
def test_TestNMS_autocast_cpu(iou, dtype):
    """Ported from torchvision test/test_ops.py::TestNMS::test_autocast_cpu (float16 added; 150 boxes of 1000).

    Under CPU autocast, low-precision boxes give the same kept boxes as the same boxes cast to float32,
    as torchvision's autocast kernel does. Before the fix ours computed the IoUs in bfloat16.
    """
    torch.manual_seed(0)
    boxes, scores = _create_tensors_with_iou(150, iou)
    with cpu_autocast():
        keep_ref_float = nms(boxes.to(dtype).float(), scores.to(dtype).float(), iou)
        keep_dtype = nms(boxes.to(dtype), scores.to(dtype), iou)
        keep_tv = ops.nms(boxes.to(dtype), scores.to(dtype), iou)
    torch.testing.assert_close(keep_ref_float, keep_dtype)
    torch.testing.assert_close(keep_dtype, keep_tv)


@pytest.mark.parametrize("dtype", (torch.float16, torch.bfloat16))
def test_TestNMS_nms_float16(dtype):
    """Ported from torchvision test/test_ops.py::TestNMS::test_nms_float16 (CUDA/MPS there, CPU here; bfloat16 added).

    Three near-identical boxes, IoU threshold 0.2: float16 keeps what float32 keeps (box 1 alone).
    Outside autocast torchvision's CPU kernel has no float16 kernel, so its answer is taken under autocast.
    """
    boxes = torch.tensor(FLOAT_BOXES)
    scores = torch.tensor([0.6370, 0.7569, 0.3966])
    keep32 = nms(boxes, scores, 0.2)
    keep16 = nms(boxes.to(dtype), scores.to(dtype), 0.2)
    torch.testing.assert_close(keep32, keep16, rtol=0, atol=0)
    assert keep32.tolist() == [1]
    with cpu_autocast():
        torch.testing.assert_close(keep16, ops.nms(boxes.to(dtype), scores.to(dtype), 0.2))


def test_TestNMS_nms_close_boxes_in_low_precision():
    """After torchvision test/test_ops.py::TestNMS::test_nms_float16: an IoU just above the threshold.

    The two boxes (whole numbers, exact in bfloat16) have IoU 0.50013 > 0.5, so box 1 is suppressed.
    Computed in bfloat16 the IoU came out 0.498 and box 1 was kept (ours, before the fix); computed
    in float32, as torchvision's autocast kernel does, it is suppressed.
    """
    boxes = torch.tensor([[4.0, 18.0, 50.0, 81.0], [12.0, 14.0, 65.0, 69.0]])
    scores = torch.tensor([0.9, 0.8])
    assert box_iou(boxes[:1], boxes[1:]).item() == pytest.approx(0.50013, abs=1e-5)
    assert nms(boxes, scores, 0.5).tolist() == [0]
    assert nms(boxes.bfloat16(), scores.bfloat16(), 0.5).tolist() == [0]
    with cpu_autocast():
        assert nms(boxes.bfloat16(), scores.bfloat16(), 0.5).tolist() == [0]
        assert ops.nms(boxes.bfloat16(), scores.bfloat16(), 0.5).tolist() == [0]


@pytest.mark.parametrize("seed", range(2))
@pytest.mark.parametrize("num_boxes", [1000, 1200])
def test_TestNMS_batched_nms_implementations(seed, num_boxes):
    """Ported from torchvision test/test_ops.py::TestNMS::test_batched_nms_implementations (2 seeds of 10).

    Our batched_nms picks the coordinate trick up to 1000 boxes on CPU and one NMS per class above
    (torchvision's rule); 1000 and 1200 boxes run both. Each must equal both torchvision implementations.
    """
    torch.random.manual_seed(seed)
    iou_threshold = 0.9
    boxes = torch.cat((torch.rand(num_boxes, 2), torch.rand(num_boxes, 2) + 10), dim=1)
    assert max(boxes[:, 0]) < min(boxes[:, 2])  # x1 < x2
    assert max(boxes[:, 1]) < min(boxes[:, 3])  # y1 < y2
    scores = torch.rand(num_boxes)
    idxs = torch.randint(0, 4, size=(num_boxes,))
    keep_vanilla = ops.boxes._batched_nms_vanilla(boxes, scores, idxs, iou_threshold)
    keep_trick = ops.boxes._batched_nms_coordinate_trick(boxes, scores, idxs, iou_threshold)
    keep = batched_nms(boxes, scores, idxs, iou_threshold)
    torch.testing.assert_close(keep_vanilla, keep_trick)
    torch.testing.assert_close(keep, keep_vanilla)

    # Also make sure an empty tensor is returned if boxes is empty
    empty = torch.empty((0,), dtype=torch.int64)
    torch.testing.assert_close(empty, batched_nms(empty, None, None, None))


def test_TestNMS_batched_nms_bfloat16():
    """After torchvision test/test_ops.py::TestNMS::test_batched_nms_implementations, with bfloat16 boxes.

    Not a torchvision test: the coordinate trick shifts each class by class x (max + 1), here up to
    3 x 1001; bfloat16 rounds 3000 to a multiple of 16, which moves boxes by pixels. Ours shifts in
    float32, so its answer is that of the float32-cast boxes (torchvision's under autocast is not).
    """
    torch.manual_seed(0)
    xy = torch.rand(200, 2) * 900
    boxes = torch.cat([xy, xy + 20 + torch.rand(200, 2) * 80], dim=1).bfloat16()
    scores = torch.rand(200)
    idxs = torch.randint(0, 4, (200,))
    expected = ops.batched_nms(boxes.float(), scores, idxs, 0.5)
    torch.testing.assert_close(batched_nms(boxes, scores, idxs, 0.5), expected)
    with cpu_autocast():
        torch.testing.assert_close(batched_nms(boxes, scores, idxs, 0.5), expected)
    # Why: the same shift done in bfloat16 gives another answer.
    shifted = (boxes + (idxs.to(boxes) * (boxes.max() + 1))[:, None]).float()
    assert not torch.equal(nms(shifted, scores, 0.5), expected)


# --------------------------------------------------------------------------------- RoIAlign, RoIPool


def _bilinear_interpolate(data, y, x, snap_border=False):
    """test_ops.py's bilinear_interpolate (the reference of RoIAlign's expected_fn)."""
    height, width = data.shape
    if snap_border:
        if -1 < y <= 0:
            y = 0
        elif height - 1 <= y < height:
            y = height - 1
        if -1 < x <= 0:
            x = 0
        elif width - 1 <= x < width:
            x = width - 1
    y_low, x_low = int(math.floor(y)), int(math.floor(x))
    y_high, x_high = y_low + 1, x_low + 1
    wy_h, wx_h = y - y_low, x - x_low
    wy_l, wx_l = 1 - wy_h, 1 - wx_h
    val = 0
    for wx, xp in zip((wx_l, wx_h), (x_low, x_high), strict=True):
        for wy, yp in zip((wy_l, wy_h), (y_low, y_high), strict=True):
            if 0 <= yp < height and 0 <= xp < width:
                val += wx * wy * data[yp, xp]
    return val


def _roi_align_expected(in_data, rois, pool_h, pool_w, spatial_scale=1, sampling_ratio=-1, aligned=False,
                        dtype=torch.float64):
    """TestRoIAlign.expected_fn: sample by sample, in Python floats (on a float64 copy of the input)."""
    data = in_data.double().numpy()
    n_channels = in_data.size(1)
    out_data = torch.zeros(rois.size(0), n_channels, pool_h, pool_w, dtype=dtype)
    offset = 0.5 if aligned else 0.0
    for r, roi in enumerate(rois):
        batch_idx = int(roi[0])
        j_begin, i_begin, j_end, i_end = (x.item() * spatial_scale - offset for x in roi[1:])
        roi_h, roi_w = i_end - i_begin, j_end - j_begin
        bin_h, bin_w = roi_h / pool_h, roi_w / pool_w
        for i in range(0, pool_h):
            start_h = i_begin + i * bin_h
            grid_h = sampling_ratio if sampling_ratio > 0 else int(np.ceil(bin_h))
            for j in range(0, pool_w):
                start_w = j_begin + j * bin_w
                grid_w = sampling_ratio if sampling_ratio > 0 else int(np.ceil(bin_w))
                for channel in range(0, n_channels):
                    val = 0
                    for iy in range(0, grid_h):
                        y = start_h + (iy + 0.5) * bin_h / grid_h
                        for ix in range(0, grid_w):
                            x = start_w + (ix + 0.5) * bin_w / grid_w
                            val += _bilinear_interpolate(data[batch_idx, channel], y, x, snap_border=True)
                    val /= grid_h * grid_w
                    out_data[r, channel, i, j] = val
    return out_data


def _roi_pool_expected(x, rois, pool_h, pool_w, spatial_scale=1, dtype=torch.float64):
    """TestRoiPool.expected_fn: the max over np.floor/np.ceil bins."""
    n_channels = x.size(1)
    y = torch.zeros(rois.size(0), n_channels, pool_h, pool_w, dtype=dtype)

    def get_slice(k, block):
        return slice(int(np.floor(k * block)), int(np.ceil((k + 1) * block)))

    for roi_idx, roi in enumerate(rois):
        batch_idx = int(roi[0])
        j_begin, i_begin, j_end, i_end = (int(round(v.item() * spatial_scale)) for v in roi[1:])
        roi_x = x[batch_idx, :, i_begin : i_end + 1, j_begin : j_end + 1]
        roi_h, roi_w = roi_x.shape[-2:]
        bin_h, bin_w = roi_h / pool_h, roi_w / pool_w
        for i in range(0, pool_h):
            for j in range(0, pool_w):
                bin_x = roi_x[:, get_slice(i, bin_h), get_slice(j, bin_w)]
                if bin_x.numel() > 0:
                    y[roi_idx, :, i, j] = bin_x.reshape(n_channels, -1).max(dim=1)[0]
    return y


def _forward_inputs(x_dtype, rois_dtype, contiguous, n_channels):
    """RoIOpTester.test_forward's input: (2, C, 10, 10) and FORWARD_ROIS (C reduced from 50)."""
    x = torch.rand(2, n_channels, 10, 10, dtype=torch.float64).to(x_dtype)
    if not contiguous:
        x = x.permute(0, 1, 3, 2)
    return x, torch.tensor(FORWARD_ROIS, dtype=rois_dtype)


def _forward_tol(x_dtype):
    """RoIOpTester.test_forward's tolerance: 4e-3 for float16, 5e-3 for bfloat16, 1e-5 otherwise."""
    return {torch.float16: 4e-3, torch.bfloat16: 5e-3}.get(x_dtype, 1e-5)


@pytest.mark.parametrize("x_dtype", (torch.float16, torch.float32, torch.float64), ids=str)
@pytest.mark.parametrize("contiguous", (True, False))
@pytest.mark.parametrize("aligned", (True, False))
def test_TestRoIAlign_forward(x_dtype, contiguous, aligned):
    """Ported from torchvision test/test_ops.py::TestRoIAlign::test_forward (2 channels instead of 50).

    Our float16 result is computed in float32 and rounded once; torchvision's CPU kernel computes in
    float16, so the two differ by float16 rounding (its own 4e-3 tolerance is used).
    """
    torch.manual_seed(0)
    x, rois = _forward_inputs(x_dtype, x_dtype, contiguous, n_channels=2)
    y = roi_align(x, rois, (5, 5), spatial_scale=1, sampling_ratio=-1, aligned=aligned)
    assert y.dtype == x.dtype
    tol = _forward_tol(x_dtype)
    gt_y = _roi_align_expected(x, rois, 5, 5, spatial_scale=1, sampling_ratio=-1, aligned=aligned)
    torch.testing.assert_close(gt_y.to(y), y, rtol=tol, atol=tol)
    ref = ops.roi_align(x, rois, (5, 5), spatial_scale=1, sampling_ratio=-1, aligned=aligned)
    torch.testing.assert_close(y, ref, rtol=tol, atol=tol)


@pytest.mark.parametrize("aligned", (True, False))
@pytest.mark.parametrize("x_dtype", (torch.float, torch.bfloat16))
@pytest.mark.parametrize("rois_dtype", (torch.float, torch.bfloat16))
def test_TestRoIAlign_autocast_cpu(aligned, x_dtype, rois_dtype):
    """Ported from torchvision test/test_ops.py::TestRoIAlign::test_autocast_cpu (2 channels instead of 50).

    Under CPU autocast the output has the input's dtype and is computed in float32 (torchvision's
    autocast kernel casts input and rois to float32 and the result back). Ours is equal to
    torchvision's up to one bfloat16 rounding.
    """
    torch.manual_seed(0)
    x, rois = _forward_inputs(x_dtype, rois_dtype, contiguous=False, n_channels=2)
    with cpu_autocast():
        y = roi_align(x, rois, (5, 5), spatial_scale=1, sampling_ratio=-1, aligned=aligned)
        ref = ops.roi_align(x, rois, (5, 5), spatial_scale=1, sampling_ratio=-1, aligned=aligned)
    assert y.dtype == x.dtype == ref.dtype
    tol = _forward_tol(x_dtype)
    gt_y = _roi_align_expected(x, rois, 5, 5, spatial_scale=1, sampling_ratio=-1, aligned=aligned)
    torch.testing.assert_close(gt_y.to(y), y, rtol=tol, atol=tol)
    torch.testing.assert_close(y, ref, rtol=tol, atol=tol)


def test_TestRoIAlign_bfloat16_is_computed_in_float32():
    """After torchvision test/test_ops.py::TestRoIAlign::test_autocast_cpu, outside autocast.

    torchvision's CPU kernel has no bfloat16 kernel (it raises); ours computes bfloat16 input in float32
    and rounds the result once, so it is the float32 result rounded to bfloat16. Before the fix ours
    computed in bfloat16: sample positions past 32 cells were rounded to quarter cells.
    """
    torch.manual_seed(0)
    x = torch.rand(1, 3, 50, 50)
    rois = torch.tensor([[0, 3.3, 7.1, 45.7, 38.9], [0, 20.2, 1.9, 49.5, 30.3]])
    expected = roi_align(x.bfloat16().float(), rois.bfloat16().float(), 7, 0.9, 2, True)
    y = roi_align(x.bfloat16(), rois.bfloat16(), 7, 0.9, 2, True)
    assert y.dtype == torch.bfloat16
    torch.testing.assert_close(y, expected.bfloat16(), rtol=0, atol=0)
    with cpu_autocast():
        ref = ops.roi_align(x.bfloat16(), rois.bfloat16(), 7, 0.9, 2, True)
    torch.testing.assert_close(y, ref, rtol=0, atol=4e-3)


@pytest.mark.parametrize("seed", range(2))
@pytest.mark.parametrize("contiguous", (True, False))
def test_TestRoIAlign_backward(seed, contiguous):
    """Ported from torchvision test/test_ops.py::TestRoIAlign::test_backward (gradcheck in float64;
    2 seeds of 10, 2 channels instead of 8, no TorchScript part). The gradient also equals torchvision's."""
    torch.random.manual_seed(seed)
    x = torch.rand(1, 2, 5, 5, dtype=torch.float64, requires_grad=True)
    if not contiguous:
        x = x.permute(0, 1, 3, 2)
    rois = torch.tensor(BACKWARD_ROIS, dtype=torch.float64)

    def func(z):
        return roi_align(z, rois, 2, spatial_scale=1, sampling_ratio=1)

    gradcheck(func, (x,), atol=1e-05)
    g = torch.rand(3, 2, 2, 2, dtype=torch.float64)
    ours = torch.autograd.grad(func(x), x, g)[0]
    theirs = torch.autograd.grad(ops.roi_align(x, rois, 2, spatial_scale=1, sampling_ratio=1), x, g)[0]
    torch.testing.assert_close(ours, theirs)


def test_TestRoIAlign_boxes_shape():
    """Ported from torchvision test/test_ops.py::TestRoIAlign::test_boxes_shape (_helper_boxes_shape).

    torchvision raises AssertionError; ours raises ValueError naming the shape given and the one expected.
    """
    a = torch.linspace(1, 8 * 8, 8 * 8).reshape(1, 1, 8, 8)
    with pytest.raises(ValueError, match=r"must have shape \(K, 5\), got \(1, 4\)"):
        roi_align(a, torch.tensor([[0, 0, 3, 3]], dtype=a.dtype), output_size=(2, 2))
    with pytest.raises(ValueError, match=r"must have shape \(Ki, 4\), got \(1, 3\)"):
        roi_align(a, [torch.tensor([[0, 0, 3]], dtype=a.dtype)], output_size=(2, 2))
    with pytest.raises(ValueError, match=r"input must have shape \(N, C, H, W\), got \(8, 8\)"):
        roi_align(a[0, 0], torch.tensor([[0, 0, 0, 3, 3]], dtype=a.dtype), output_size=(2, 2))
    with pytest.raises(AssertionError):
        ops.roi_align(a, torch.tensor([[0, 0, 3, 3]], dtype=a.dtype), output_size=(2, 2))


@pytest.mark.parametrize("x_dtype", (torch.float16, torch.float32, torch.float64, torch.bfloat16), ids=str)
@pytest.mark.parametrize("contiguous", (True, False))
def test_TestRoiPool_forward(x_dtype, contiguous):
    """Ported from torchvision test/test_ops.py::TestRoiPool::test_forward (bfloat16 added; 2 channels of 50).

    Maxima are exact in every dtype, so ours equals the reference exactly; torchvision is compared for
    the dtypes its CPU kernel has (no bfloat16).
    """
    torch.manual_seed(0)
    x, rois = _forward_inputs(x_dtype, x_dtype, contiguous, n_channels=2)
    y = roi_pool(x, rois, (5, 5), spatial_scale=1)
    assert y.dtype == x.dtype
    gt_y = _roi_pool_expected(x, rois, 5, 5, spatial_scale=1)
    torch.testing.assert_close(gt_y.to(y), y, rtol=_forward_tol(x_dtype), atol=_forward_tol(x_dtype))
    if x_dtype != torch.bfloat16:
        torch.testing.assert_close(y, ops.roi_pool(x, rois, (5, 5), spatial_scale=1), rtol=0, atol=0)


def test_TestRoiPool_backward():
    """Ported from torchvision test/test_ops.py::TestRoiPool::test_backward (gradcheck in float64; 1 seed
    of 10, 2 channels instead of 8). The gradient also equals torchvision's."""
    torch.random.manual_seed(0)
    x = torch.rand(1, 2, 5, 5, dtype=torch.float64, requires_grad=True)
    rois = torch.tensor(BACKWARD_ROIS, dtype=torch.float64)

    def func(z):
        return roi_pool(z, rois, 2, spatial_scale=1)

    gradcheck(func, (x,), atol=1e-05)
    g = torch.rand(3, 2, 2, 2, dtype=torch.float64)
    ours = torch.autograd.grad(func(x), x, g)[0]
    theirs = torch.autograd.grad(ops.roi_pool(x, rois, 2, spatial_scale=1), x, g)[0]
    torch.testing.assert_close(ours, theirs)


def test_TestRoiPool_boxes_shape():
    """Ported from torchvision test/test_ops.py::TestRoiPool::test_boxes_shape (ValueError here, AssertionError there)."""
    a = torch.linspace(1, 8 * 8, 8 * 8).reshape(1, 1, 8, 8)
    with pytest.raises(ValueError, match=r"\(K, 5\)"):
        roi_pool(a, torch.tensor([[0, 0, 3, 3]], dtype=a.dtype), output_size=(2, 2))
    with pytest.raises(ValueError, match=r"\(Ki, 4\)"):
        roi_pool(a, [torch.tensor([[0, 0, 3]], dtype=a.dtype)], output_size=(2, 2))


def test_TestRoiPool_float16_bin_edges():
    """After torchvision test/test_ops.py::TestRoiPool::test_forward, on a box whose float16 bins round up.

    A 29-cell box cut in 7 bins: in float16 the last bin ends at ceil(7 * 4.145) = 30, one cell too far.
    torchvision's CPU kernel does that (it then differs from its own float32 result); ours computes the
    edges in float32, so its float16 result is the float32 one rounded to float16.
    """
    torch.manual_seed(0)
    x = torch.rand(1, 2, 40, 40)
    rois = torch.tensor([[0, 0, 0, 28, 28.0]])
    expected = ops.roi_pool(x, rois, 7)
    torch.testing.assert_close(roi_pool(x.half(), rois.half(), 7), expected.half(), rtol=0, atol=0)
    # Why: float16 edges end the last bin one cell further.
    (_, _, (_, w1_16)), (_, _, (_, w1_32)) = (quantise_rois(rois, (7, 7), 1.0, (40, 40), dtype)
                                              for dtype in (torch.float16, torch.float32))
    assert w1_16[0, -1] == 30 and w1_32[0, -1] == 29


# ------------------------------------------------------------------------------ MultiScaleRoIAlign


@pytest.mark.parametrize("dtype", (torch.float32, torch.bfloat16))
def test_TestMultiScaleRoIAlign_autocast_cpu(dtype):
    """After torchvision test/test_ops.py::TestMultiScaleRoIAlign (its tests check repr and FX tracing only).

    ``MultiScaleRoIAlign`` under CPU autocast, as a mixed-precision model calls it: ours returns the
    features' dtype and equals torchvision's (whose roi_align autocast kernel computes in float32).
    """
    torch.manual_seed(0)
    features = {name: torch.rand(2, 3, 64 // 2**i, 48 // 2**i).to(dtype) for i, name in enumerate("0123")}
    image_shapes = [(256, 192), (250, 190)]
    boxes = [torch.tensor([[3.0, 4.0, 60.0, 90.0], [10.0, 10.0, 180.0, 240.0], [5.0, 5.0, 14.0, 13.0]]),
             torch.tensor([[0.0, 0.0, 112.0, 112.0]])]
    boxes = [b.to(dtype) for b in boxes]
    pooler = ops.MultiScaleRoIAlign(["0", "1", "2", "3"], 7, 2)
    with cpu_autocast():
        ours = multiscale_roi_align(features, boxes, image_shapes, 7, 2)
        theirs = pooler(features, boxes, image_shapes)
    assert ours.dtype == theirs.dtype == dtype
    torch.testing.assert_close(ours, theirs, rtol=0, atol=4e-3 if dtype == torch.bfloat16 else 1e-5)


@pytest.mark.parametrize("dtype", (torch.float32, torch.float16, torch.bfloat16))
def test_TestMultiScaleRoIAlign_levels_low_precision(dtype):
    """Not a torchvision test (none covers ``LevelMapper``): FPN levels of boxes just below a level's size.

    Boxes of 223 and 111 pixels belong one level below 224 and 112. Computed in bfloat16,
    4 + log2(223 / 224) = 3.994 rounded to 4.0 and moved them up (ours, before the fix); like
    LevelMapper (whose box_area upcasts), ours now computes in float32.
    """
    boxes = torch.tensor([[0, 0, 223, 223.0], [0, 0, 111, 111.0], [0, 0, 224, 224.0], [5, 5, 60, 40.0]]).to(dtype)
    levels = assign_fpn_levels(boxes)
    assert levels.tolist() == [1, 0, 2, 0]
    torch.testing.assert_close(levels, LevelMapper(2, 5)([boxes]), rtol=0, atol=0)
