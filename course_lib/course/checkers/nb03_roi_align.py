"""Checkers for 03_roi_align's exercises.

* ``check_roi_pool_one_box``: RoIPool of one box (C's rounding of the corners, float32 bin edges, max per bin),
  against ``course_lib.ops.roi_pool.roi_pool_one_box`` (equal to ``torchvision.ops.roi_pool``).
* ``check_bilinear_interpolate``, ``check_roi_align_one_box``, ``check_assign_fpn_levels``: RoIAlign's parts.
"""

import torch
import torchvision

from course_lib.course.checkers.core import Case, checker
from course_lib.ops.poolers import assign_fpn_levels
from course_lib.ops.roi_align import bilinear_interpolate, linear_weights
from course_lib.ops.roi_pool import roi_pool_one_box

__all__ = ["check_assign_fpn_levels", "check_bilinear_interpolate", "check_roi_align_one_box",
           "check_roi_pool_one_box"]


def _feature(shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _bilinear_cases() -> list[Case]:
    f = _feature((3, 5, 7), 0)  # H = 5 rows, W = 7 columns
    points = [("a point between four cells", 2.3, 4.6),
              ("a point exactly on a cell", 3.0, 2.0),
              ("y in [-1, 0) is clamped to row 0", -0.4, 3.5),
              ("x past the last column reads the last column alone", 1.5, 6.6),
              ("the last cell itself", 4.0, 6.0),
              ("x more than one cell right of the map reads 0", 2.0, 7.5),
              ("y more than one cell above the map reads 0", -1.5, 2.0)]
    return [Case(name, (f, y, x)) for name, y, x in points]


def _hidden_bilinear_cases(seed: int) -> list[Case]:
    """Never shown in the notebook: another map size, points exactly on the edges of the rules, random points."""
    g = torch.Generator().manual_seed(seed)
    H, W = (int(v) for v in torch.randint(3, 10, (2,), generator=g))
    f = torch.randn(2, H, W, generator=g)
    points = [("y exactly -1 is clamped to row 0", -1.0, W / 2),
              ("x exactly W reads the last column", H / 3, float(W)),
              ("y exactly H reads the last row", float(H), 0.5),
              ("x just below -1 reads 0", 1.0, -1.001)]
    yx = torch.rand(4, 2, generator=g) * torch.tensor([H + 1.6, W + 1.6]) - 1.3
    points += [(f"random point {i}", float(y), float(x)) for i, (y, x) in enumerate(yx.tolist())]
    return [Case(name, (f, y, x)) for name, y, x in points]


def torchvision_roi_align_one_box(feature, box, output_size, spatial_scale=1.0, sampling_ratio=-1, aligned=False):
    """The reference: ``torchvision.ops.roi_align`` on a batch of one image and one box."""
    return torchvision.ops.roi_align(feature[None], [box.reshape(1, 4).to(feature.dtype)], output_size,
                                     spatial_scale, sampling_ratio, aligned)[0]


def _roi_align_cases() -> list[Case]:
    f = _feature((4, 12, 16), 1)  # a stride-4 map of a 48 x 64 image
    t = torch.tensor
    return [Case("box inside the map, 7x7 bins, 2x2 samples", (f, t([6.5, 5.2, 41.3, 30.8]), (7, 7), 0.25, 2, False)),
            Case("non-square output (3, 5)", (f, t([2.0, 9.5, 60.2, 40.1]), (3, 5), 0.25, 2, False)),
            Case("adaptive sampling (sampling_ratio=-1)", (f, t([1.2, 0.7, 62.9, 46.3]), (3, 4), 0.25, -1, False)),
            Case("aligned=True", (f, t([10.3, 6.1, 35.8, 29.4]), (7, 7), 0.25, 2, True)),
            Case("aligned=True with adaptive sampling", (f, t([4.4, 3.3, 55.5, 44.4]), (5, 5), 0.25, -1, True)),
            Case("box partly outside the map", (f, t([-14.5, -9.3, 30.2, 20.6]), (7, 7), 0.25, 2, False)),
            Case("box smaller than one cell (stretched to one cell)", (f, t([20.2, 20.6, 21.5, 22.1]), (2, 2), 0.25,
                                                                       2, False)),
            Case("spatial_scale 1 (a stride-1 map)", (f, t([2.6, 1.4, 13.1, 9.9]), (4, 4), 1.0, 2, False))]


def _hidden_roi_align_cases(seed: int) -> list[Case]:
    """Never shown in the notebook: other strides, sample counts and output sizes; a tiny box with aligned=True
    (no stretching to one cell then), boxes over the far edges and wholly outside the map."""
    g = torch.Generator().manual_seed(seed)
    H, W = (int(v) for v in torch.randint(6, 16, (2,), generator=g))
    f = torch.randn(3, H, W, generator=g)

    def box(scale: float, lo: float = 0.0, hi: float = 1.0) -> torch.Tensor:  # a random box in image pixels
        xy = (lo + torch.rand(2, 2, generator=g) * (hi - lo)) * torch.tensor([W, H]) / scale
        return torch.cat([xy.min(0).values, xy.max(0).values + 0.5])

    def size() -> tuple[int, int]:
        return tuple(int(v) for v in torch.randint(1, 8, (2,), generator=g))

    aligned = bool(torch.rand(1, generator=g) < 0.5)
    tiny = box(0.5, 0.2, 0.8)
    tiny[2:] = tiny[:2] + torch.tensor([0.6, 0.9])  # 0.3 x 0.45 cells at scale 0.5
    return [Case("stride 8 (scale 0.125), 3x3 samples", (f, box(0.125), size(), 0.125, 3, aligned)),
            Case("stride 2 (scale 0.5), 1 sample per bin", (f, box(0.5), size(), 0.5, 1, not aligned)),
            Case("adaptive sampling, output 1x1", (f, box(0.25), (1, 1), 0.25, -1, aligned)),
            Case("a box smaller than a cell with aligned=True is not stretched", (f, tiny, (2, 2), 0.5, 2, True)),
            Case("a box over the right and bottom edges", (f, box(0.25, 0.6, 1.4), size(), 0.25, 2, False)),
            Case("a box wholly outside the map reads 0",
                 (f, torch.tensor([W * 4 + 20.0, H * 4 + 8.0, W * 4 + 60.0, H * 4 + 40.0]), (3, 3), 0.25, 2, False))]


def _level_cases() -> list[Case]:
    def squares(sizes):
        s = torch.tensor(sizes, dtype=torch.float32)
        return torch.stack([torch.full_like(s, 10.0), torch.full_like(s, 20.0), 10.0 + s, 20.0 + s], 1)

    return [Case("COCO-sized boxes", (squares([40.0, 100.0, 150.0, 300.0, 600.0]),)),
            Case("sizes exactly on the thresholds 112, 224, 448", (squares([112.0, 224.0, 448.0]),)),
            Case("tiny and huge boxes are clamped to P2 and P5", (squares([2.0, 9.0, 2000.0, 5000.0]),)),
            Case("non-square boxes use sqrt(w * h)",
                 (torch.tensor([[0.0, 0.0, 448.0, 112.0], [5.0, 5.0, 55.0, 405.0]]),)),
            Case("other levels: k_min=3, k_max=6", (squares([20.0, 150.0, 250.0, 900.0, 3000.0]),),
                 dict(k_min=3, k_max=6)),
            Case("other canonical scale and level", (squares([30.0, 64.0, 128.0, 500.0]),),
                 dict(canonical_scale=64, canonical_level=3)),
            Case("no boxes at all", (torch.zeros(0, 4),))]


def _hidden_level_cases(seed: int) -> list[Case]:
    """Never shown in the notebook: random sizes and shapes over every level, other level ranges, a box of
    zero width (log2(0) = -inf: level k_min), and sizes a hair either side of a threshold."""
    g = torch.Generator().manual_seed(seed)
    n = 12
    side = 2 ** (2 + torch.rand(n, generator=g) * 9)  # sqrt(area) from 4 to 2048
    aspect = 2 ** (torch.rand(n, generator=g) * 4 - 2)
    xy = torch.rand(n, 2, generator=g) * 100
    wh = torch.stack([side * aspect.sqrt(), side / aspect.sqrt()], 1)
    boxes = torch.cat([xy, xy + wh], 1)
    k_min = int(torch.randint(1, 4, (1,), generator=g))
    flat = torch.tensor([[10.0, 10.0, 10.0, 200.0], [0.0, 5.0, 300.0, 5.0]])
    near = torch.tensor([[0.0, 0.0, 111.9, 111.9], [0.0, 0.0, 112.1, 112.1], [0.0, 0.0, 447.9, 447.9]])
    return [Case("12 random boxes of every size and shape", (boxes,)),
            Case(f"the same boxes, levels {k_min} to {k_min + 2}", (boxes,), dict(k_min=k_min, k_max=k_min + 2)),
            Case("boxes of zero width or height go to the lowest level", (flat,)),
            Case("sizes a hair either side of the thresholds", (near,)),
            Case("canonical scale 100 at level 3, levels 1 to 6", (boxes,),
                 dict(k_min=1, k_max=6, canonical_scale=100, canonical_level=3))]


check_bilinear_interpolate = checker(
    "check_bilinear_interpolate", bilinear_interpolate, _bilinear_cases, notebook="03_roi_align",
    hidden_cases=_hidden_bilinear_cases,
    hint=["Points far outside the map read 0: y < -1, y > H, x < -1 or x > W. Points in [-1, 0) are clamped to 0.",
          "y_low = int(y); at or past the last row (y_low >= H - 1) use the last row for both y_low and y_high "
          "(the same for x).",
          "Mix the four cells with weights (1-ly)(1-lx), (1-ly)lx, ly(1-lx), ly*lx, where ly = y - y_low."])


check_roi_align_one_box = checker(
    "check_roi_align_one_box", torchvision_roi_align_one_box, _roi_align_cases, notebook="03_roi_align",
    hidden_cases=_hidden_roi_align_cases,
    given={"linear_weights": linear_weights},
    forbidden=("course_lib.ops.roi_align.roi_align", "course_lib.ops.roi_align.roi_align_one_box",
               "torchvision.ops.roi_align.roi_align"),
    hint=["Work one axis at a time: build Wy (out_h, H) and Wx (out_w, W), then out = Wy @ F @ Wx.T per channel.",
          "Per axis: start = coordinate * spatial_scale - (0.5 if aligned else 0); length = end - start, at least 1 "
          "when aligned is False; bin = length / bins; samples per bin = sampling_ratio, or ceil(length / bins) "
          "when it is <= 0.",
          "Sample s of bin i sits at start + i * bin + (s + 0.5) * bin / samples; average the linear_weights rows of "
          "a bin's samples, then torch.einsum('ih,chw,jw->cij', Wy, feature, Wx)."])


check_assign_fpn_levels = checker(
    "check_assign_fpn_levels", assign_fpn_levels, _level_cases, notebook="03_roi_align",
    hidden_cases=_hidden_level_cases,
    hint=["The level depends on the box's scale s = sqrt(area), compared with canonical_scale on a log2 scale.",
          "k = floor(canonical_level + log2(s / canonical_scale) + 1e-6), clamped to [k_min, k_max]; return "
          "k - k_min as int64 (an index into the list of feature maps)."])


def _roi_pool_cases() -> list[Case]:
    f16 = _feature((3, 10, 10), 4)  # the notebook's stride-16 map of a 160 x 160 image
    f4 = _feature((4, 12, 16), 5)  # a stride-4 map of a 48 x 64 image
    ramp = _feature((2, 31, 31), 6) + torch.arange(31.0) + torch.arange(31.0)[:, None]  # the max is a bin's last cell
    t = torch.tensor
    return [Case("the notebook's box on the stride-16 map, 3x3 bins", (f16, t([21.0, 35.0, 135.0, 118.0]), (3, 3),
                                                                       1 / 16)),
            Case("7x7 bins on a stride-4 map", (f4, t([6.5, 5.2, 41.3, 30.8]), (7, 7), 0.25)),
            Case("non-square output (2, 5)", (f4, t([2.8, 9.5, 60.2, 40.1]), (2, 5), 0.25)),
            Case("corners exactly half-way between cells round up (2.5 -> 3, 4.5 -> 5)",
                 (f4, t([10.0, 18.0, 50.0, 38.0]), (3, 3), 0.25),
                 hint="Python's round(2.5) and torch.round give 2 (the even neighbour); the kernel's C round gives 3. "
                      "Round half away from zero: math.floor(v + 0.5) for v >= 0, -math.floor(-v + 0.5) below."),
            Case("more bins than cells: neighbouring bins share cells", (f4, t([8.0, 8.0, 17.0, 14.0]), (7, 7), 0.25)),
            Case("a box smaller than a cell is one cell", (f4, t([20.6, 21.1, 21.4, 21.9]), (2, 2), 0.25)),
            Case("partly outside the map: bins off the map are 0", (f16, t([-90.0, -44.0, 60.0, 90.0]), (4, 4),
                                                                     1 / 16)),
            Case("a 29-cell box in 7 bins: float32 edges (in float64, 7 * (29 / 7) rounds up to 30)",
                 (ramp, t([0.0, 0.0, 28.0, 28.0]), (7, 7), 1.0),
                 hint="Look at how a bin edge is computed: i * (L / n) in float64 rounds twice. Multiply first, "
                      "math.floor(i * L / n) and math.ceil((i + 1) * L / n), or do it in float32 as the kernel does.")]


def _hidden_roi_pool_cases(seed: int) -> list[Case]:
    """Never shown in the notebook: negative corners exactly half-way (-1.5 rounds to -2, not -1), boxes over the
    right and bottom edges and wholly outside, a box given back to front (one cell), another map and random boxes."""
    g = torch.Generator().manual_seed(seed)
    H, W = (int(v) for v in torch.randint(6, 16, (2,), generator=g))
    f = torch.randn(3, H, W, generator=g)
    scale = [0.5, 0.25, 0.125][int(torch.randint(0, 3, (1,), generator=g))]

    def size() -> tuple[int, int]:
        return tuple(int(v) for v in torch.randint(1, 8, (2,), generator=g))

    def box(lo: float = -0.2, hi: float = 1.2) -> torch.Tensor:  # a random box in image pixels
        xy = (lo + torch.rand(2, 2, generator=g) * (hi - lo)) * torch.tensor([W, H]) / scale
        return torch.cat([xy.min(0).values, xy.max(0).values])

    half = torch.tensor([-1.5, -2.5, 3.5, 4.5]) / scale  # cells -1.5, -2.5: C rounds them to -2, -3
    k = int(torch.randint(0, 3, (1,), generator=g))
    half[2:] += k / scale
    return [Case("negative corners exactly half-way round away from zero (-1.5 -> -2)", (f, half, (5, 5), scale),
                 hint="Half-way corners round away from zero on both sides: -1.5 becomes -2, so below zero use "
                      "-math.floor(-v + 0.5); math.floor(v + 0.5) alone gives -1."),
            Case(f"a random box at scale {scale}", (f, box(), size(), scale)),
            Case("another random box, 1 bin", (f, box(), (1, 1), scale)),
            Case("a box over the right and bottom edges", (f, box(0.6, 1.5), size(), scale)),
            Case("a box wholly outside the map reads 0",
                 (f, torch.tensor([W + 3.0, H + 2.0, W + 9.0, H + 7.0]) / scale, (3, 3), scale)),
            Case("a box given back to front (x2 < x1) pools one cell",
                 (f, torch.tensor([3.0, 2.0, 1.0, 0.5]) / scale, (2, 3), scale))]


check_roi_pool_one_box = checker(
    "check_roi_pool_one_box", roi_pool_one_box, _roi_pool_cases, notebook="03_roi_align",
    hidden_cases=_hidden_roi_pool_cases, atol=0.0,
    forbidden=("course_lib.ops.roi_pool.roi_pool", "torchvision.ops.roi_pool.roi_pool"),
    hint=["Work one axis at a time: the snapped box's first cell and its length in cells, then the (start, end) "
          "cell range of each bin; the output is a loop over bin rows and bin columns.",
          "C's round is floor(abs(v) + 0.5) with the sign of v. For the edges, bin = torch.tensor(length, "
          "dtype=torch.float32) / bins; with i = torch.arange(bins + 1, dtype=torch.float32) * bin, bin b starts "
          "at floor(i[b]) and ends at ceil(i[b + 1]) (end excluded), both plus the first cell, clamped to [0, size].",
          "out = feature.new_zeros(C, out_h, out_w); out[:, i, j] = feature[:, r0:r1, c0:c1].amax(dim=(1, 2)) "
          "when r1 > r0 and c1 > c0, else it stays 0."])
