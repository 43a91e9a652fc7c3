"""Box operations from scratch (torchvision's ``ops/boxes.py``): area, IoU, non-maximum suppression,
clipping, small-box removal. Taught in: 02_anchors_rpn

Every box is ``(x1, y1, x2, y2)`` in pixels, ``x1 <= x2`` and ``y1 <= y2``; a set of N boxes is an
``(N, 4)`` tensor. Each function gives the same numbers as its torchvision namesake.
"""

import math

import numpy as np
import torch
from torch import Tensor


def _upcast(t: Tensor) -> Tensor:
    """``t`` in a dtype wide enough for products of coordinates (torchvision's ``_upcast``).

    Why: an area is a product of two lengths; 300 x 300 already overflows int16 and a 400 x 400
    area (160000) is ``inf`` in float16. int8/int16/uint8 become int32, float16/bfloat16 become
    float32; int32, int64, float32 and float64 are returned as they are (no copy).
    """
    if t.is_floating_point():
        return t if t.dtype in (torch.float32, torch.float64) else t.float()
    return t if t.dtype in (torch.int32, torch.int64) else t.int()


def box_area(boxes: Tensor) -> Tensor:
    """Area of each box: ``(N, 4) -> (N,)`` (or ``(..., 4) -> (...)``). A zero-size box has area 0.

    Computed and returned in the upcast dtype, as torchvision: int32 for int8/int16/uint8 boxes,
    float32 for float16/bfloat16 boxes (see ``_upcast``).
    """
    boxes = _upcast(boxes)
    return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])


def box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Intersection over union of every pair: ``(N, 4), (M, 4) -> (N, M)``.

    IoU = area of the overlap / area of the union. Two zero-size boxes give 0 / 0 = nan, as in
    torchvision. The result is float32 for integer, float16 and bfloat16 boxes (float64 stays
    float64), as torchvision's.

    Low-precision boxes are upcast first (``_upcast``): areas over 65504 are ``inf`` in float16.
    torchvision upcasts only after subtracting the corners, so its uint8 overlaps wrap around and
    its float16 overlaps are rounded to float16; ours are exact (equal up to that rounding).
    """
    boxes1, boxes2 = _upcast(boxes1), _upcast(boxes2)
    area1, area2 = box_area(boxes1), box_area(boxes2)
    # Columns as contiguous rows: x1 of boxes1 is (N, 1), x1 of boxes2 is (1, M), and so on.
    x1, y1, x2, y2 = boxes1.t().contiguous()[:, :, None]
    X1, Y1, X2, Y2 = boxes2.t().contiguous()[:, None, :]
    # The overlap of two boxes is a box too: the larger left/top edge, the smaller right/bottom
    # edge; clamp at 0 when they do not overlap. (In-place ops: fewer (N, M) temporaries, faster.)
    w = torch.min(x2, X2).sub_(torch.max(x1, X1)).clamp_(min=0)
    h = torch.min(y2, Y2).sub_(torch.max(y1, Y1)).clamp_(min=0)
    inter = w.mul_(h)
    union = (area1[:, None] + area2[None, :]).sub_(inter)
    return inter / union


def _largest_below(threshold: float, dtype: torch.dtype) -> Tensor:
    """The largest number of ``dtype`` that is <= ``threshold``, as a 0-dim tensor.

    Why: torchvision's C++ compares a float32 IoU with a float64 threshold; ``iou > t32`` with t32
    rounded *down* gives the same answer for every float32 iou (rounding to nearest would not).
    """
    t = torch.tensor(threshold, dtype=dtype)
    if t.item() > threshold:
        t = torch.nextafter(t, torch.tensor(-math.inf, dtype=dtype))
    return t


def _to_float(boxes: Tensor) -> Tensor:
    """float32 for boxes that are not float32/float64 (what torchvision's autocast NMS does)."""
    return boxes if boxes.dtype in (torch.float32, torch.float64) else boxes.float()


def _check_nms_inputs(boxes: Tensor, scores: Tensor) -> None:
    """torchvision's C++ shape checks, same messages: boxes (N, 4), scores (N,)."""
    if boxes.dim() != 2:
        raise RuntimeError(f"boxes should be a 2d tensor, got {boxes.dim()}D (shape {tuple(boxes.shape)}, "
                           "expected (N, 4))")
    if boxes.size(1) != 4:
        raise RuntimeError(f"boxes should have 4 elements in dimension 1, got {boxes.size(1)} "
                           f"(shape {tuple(boxes.shape)}, expected (N, 4))")
    if scores.dim() != 1:
        raise RuntimeError(f"scores should be a 1d tensor, got {scores.dim()}D (shape {tuple(scores.shape)}, "
                           "expected (N,))")
    if boxes.size(0) != scores.size(0):
        raise RuntimeError("boxes and scores should have same number of elements in dimension 0, "
                           f"got {boxes.size(0)} and {scores.size(0)}")


def nms(boxes: Tensor, scores: Tensor, iou_threshold: float, block_size: int = 256) -> Tensor:
    """Non-maximum suppression: ``boxes`` (N, 4), ``scores`` (N,) -> kept indices (K,) int64.

    Greedy: visit boxes by decreasing score; keep a box unless a box kept before it overlaps it
    with IoU > ``iou_threshold``. Equal scores are visited in index order (a stable sort), as in
    torchvision's CPU kernel, so the kept indices are exactly torchvision's, in the same order.

    Two steps, as torchvision's CUDA kernel: first the IoUs, vectorised, then one sequential sweep over
    the sorted boxes that reads them (``_greedy_sweep``). The sorted boxes go in blocks of ``block_size``:
    a block first drops the boxes that boxes kept in earlier blocks suppress (one IoU matrix), then
    sweeps the IoU matrix of the rest. Why blocks: a suppressed box needs no IoU with later boxes, and a
    256 x 256 matrix stays in cache (one 1000 x 1000 matrix, measured, was slower).

    Boxes that are not float32/float64 (float16, bfloat16, integers) are compared in float32:
    a float16 IoU near the threshold is rounded by ~1e-3 and flips keep/suppress decisions.
    torchvision's autocast kernel casts to float32 likewise (its CPU kernel alone refuses them).
    """
    _check_nms_inputs(boxes, scores)
    if boxes.numel() == 0:
        return torch.empty((0,), dtype=torch.int64, device=boxes.device)
    order = torch.sort(scores, descending=True, stable=True)[1]
    boxes = _to_float(boxes.detach())[order]  # indices out, so no autograd graph
    thr = _largest_below(iou_threshold, boxes.dtype).to(boxes.device)
    kept = []  # positions (in score order) of the kept boxes, one tensor per block
    for start in range(0, len(boxes), block_size):
        # Candidates: the block's boxes that no box kept in an earlier block suppresses.
        cand = torch.arange(start, min(start + block_size, len(boxes)), device=boxes.device)
        if kept:
            earlier = boxes[torch.cat(kept)]
            cand = cand[~(box_iou(earlier, boxes[cand]) > thr).any(dim=0)]
        block = boxes[cand]
        kept.append(cand[_greedy_sweep(box_iou(block, block) > thr)])
    return order[torch.cat(kept)]


def _greedy_sweep(overlaps: Tensor) -> Tensor:
    """The greedy pass of NMS over boxes in score order: ``overlaps`` (n, n) bool -> kept positions (K,).

    ``overlaps[k, i]``: box k overlaps box i too much, so k suppresses i if k comes first and is kept.

    Why a Python loop over Python integers: the pass is sequential (whether box i is kept depends on
    the boxes kept before it), and one tensor operation per box costs microseconds of dispatch, while
    a bit operation on a Python int costs ~0.1 microsecond. Row k of the matrix becomes one n-bit
    integer (bit i set: k overlaps i); ``removed`` is the OR of the rows of the boxes kept so far. This
    is the sweep of torchvision's CUDA kernel, which packs the rows into 64-bit words the same way.
    The diagonal and the lower triangle need no masking: at step i only bit i is read, and rows k < i
    have been OR-ed in by then, while a row's own bits for earlier boxes are never read again.
    """
    n = overlaps.size(0)
    packed = np.packbits(overlaps.cpu().numpy(), axis=1, bitorder="little")  # (n, ceil(n / 8)) uint8
    width, rows = packed.shape[1], packed.tobytes()
    removed, keep = 0, []
    for i in range(n):
        if not (removed >> i) & 1:
            keep.append(i)
            removed |= int.from_bytes(rows[i * width:(i + 1) * width], "little")  # only kept rows are read
    return torch.tensor(keep, dtype=torch.int64, device=overlaps.device)


def batched_nms(boxes: Tensor, scores: Tensor, idxs: Tensor, iou_threshold: float, nms=nms) -> Tensor:
    """NMS within each category: boxes with different ``idxs`` (N,) never suppress each other.

    ``nms``: the single-category NMS to run (default this module's; a learner's own can be passed).

    Returns kept indices (K,) int64 sorted by decreasing score. Like torchvision: up to 1000 boxes
    on CPU, shift each category by its own offset so that categories cannot overlap and run one
    NMS (the "coordinate trick"); above that, one NMS per category is faster.

    Low-precision boxes go to float32 first (``_to_float``): the shifted coordinates are large
    (category x (max + 1)), and bfloat16 keeps 8 significant bits: past 2048 it rounds to multiples
    of 16, moving boxes by pixels. (torchvision shifts in the input dtype: under autocast its
    bfloat16 answer can differ from that of the same boxes in float32.)
    """
    if boxes.numel() == 0:
        return torch.empty((0,), dtype=torch.int64, device=boxes.device)
    _check_nms_inputs(boxes, scores)
    if idxs.shape != scores.shape:
        raise RuntimeError(f"idxs should have the shape of scores {tuple(scores.shape)}, got {tuple(idxs.shape)}")
    boxes = _to_float(boxes)
    if boxes.numel() > (4000 if boxes.device.type == "cpu" else 100_000):
        keep_mask = torch.zeros_like(scores, dtype=torch.bool)
        for class_id in torch.unique(idxs):
            curr = torch.where(idxs == class_id)[0]
            keep_mask[curr[nms(boxes[curr], scores[curr], iou_threshold)]] = True
        keep = torch.where(keep_mask)[0]
        return keep[scores[keep].sort(descending=True)[1]]
    offsets = idxs.to(boxes) * (boxes.max() + torch.tensor(1).to(boxes))
    return nms(boxes + offsets[:, None], scores, iou_threshold)


def clip_boxes_to_image(boxes: Tensor, size: tuple[int, int]) -> Tensor:
    """Clamp boxes (..., 4) inside an image of ``size`` = (height, width)."""
    height, width = size
    x = boxes[..., 0::2].clamp(min=0, max=width)
    y = boxes[..., 1::2].clamp(min=0, max=height)
    return torch.stack((x, y), dim=boxes.dim()).reshape(boxes.shape)


def remove_small_boxes(boxes: Tensor, min_size: float) -> Tensor:
    """Indices (K,) of the boxes (N, 4) whose width and height are both >= ``min_size``."""
    ws, hs = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    return torch.where((ws >= min_size) & (hs >= min_size))[0]
