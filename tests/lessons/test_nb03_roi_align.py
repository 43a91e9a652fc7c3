"""course_lib.lessons.nb03_roi_align and notebook 03's checkers: the reference passes, a wrong answer fails, a stub says NOT YET."""

import math

import matplotlib
import pytest
import torch
from torchvision.ops.poolers import LevelMapper

from course_lib.course.checkers import (
    check_assign_fpn_levels,
    check_bilinear_interpolate,
    check_roi_align_one_box,
)
from course_lib.lessons.nb03_roi_align import (
    features_to_rgb,
    level_thresholds,
    plot_bilinear,
    plot_fpn_levels,
    plot_roi_pool_quantisation,
    plot_sampling_points,
    plot_shift_response,
    plot_weight_matrices,
    roi_pool_bins,
    sample_points,
)
from course_lib.ops.poolers import assign_fpn_levels
from course_lib.ops.roi_align import (
    bilinear_interpolate,
    linear_weights,
    roi_align_weights,
)
from course_lib.ops.roi_pool import roi_pool
from shared_cases import panels, passes_fails_and_waits, roi_align_separable

matplotlib.use("Agg")
TOL = dict(atol=1e-5, rtol=1e-5)


def _bilinear_without_edge_rules(feature, y, x):
    y0, x0 = math.floor(y), math.floor(x)
    y1, x1 = min(y0 + 1, feature.shape[1] - 1), min(x0 + 1, feature.shape[2] - 1)
    ly, lx = y - y0, x - x0
    return ((1 - ly) * (1 - lx) * feature[:, y0, x0] + (1 - ly) * lx * feature[:, y0, x1]
            + ly * (1 - lx) * feature[:, y1, x0] + ly * lx * feature[:, y1, x1])


def _roi_align_always_aligned(feature, box, output_size, spatial_scale=1.0, sampling_ratio=-1, aligned=False):
    return roi_align_separable(feature, box, output_size, spatial_scale, sampling_ratio, True)


def _levels_without_k_min(boxes, k_min=2, k_max=5, canonical_scale=224, canonical_level=4):
    s = torch.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))
    return torch.floor(canonical_level + torch.log2(s / canonical_scale) + 1e-6).clamp(k_min, k_max).long()


@pytest.mark.parametrize("check, right, wrong, failing_case", [
    (check_bilinear_interpolate, bilinear_interpolate, _bilinear_without_edge_rules, "y in [-1, 0)"),
    (check_roi_align_one_box, roi_align_separable, _roi_align_always_aligned, "box inside the map"),
    (check_assign_fpn_levels, assign_fpn_levels, _levels_without_k_min, "COCO-sized boxes"),
])
def test_checker_right_wrong_and_stub(capsys, check, right, wrong, failing_case):
    passes_fails_and_waits(capsys, check, right, wrong, failing_case)


def test_the_notebook_solution_of_roi_align_one_box_passes(capsys):
    # The separable solution above passes the checker: it agrees with torchvision on every case.
    for case in check_roi_align_one_box.cases():
        torch.testing.assert_close(roi_align_separable(*case.args), check_roi_align_one_box.reference(*case.args),
                                   **TOL)


@pytest.mark.parametrize("box", [(21.0, 35.0, 135.0, 118.0), (-20.0, 3.0, 40.0, 170.0), (50.0, 50.0, 52.0, 51.0)])
def test_roi_pool_bins_are_what_roi_pool_maxes_over(box):
    feature = torch.randn(1, 2, 10, 10, generator=torch.Generator().manual_seed(3))
    q = roi_pool_bins(box, 3, 1 / 16, (10, 10))
    expected = roi_pool(feature, [torch.tensor([box])], 3, 1 / 16)[0]
    for i, (r0, r1) in enumerate(q["rows"]):
        for j, (c0, c1) in enumerate(q["cols"]):
            cells = feature[0, :, r0:r1, c0:c1]
            got = cells.amax((1, 2)) if cells.numel() else torch.zeros(2)
            torch.testing.assert_close(got, expected[:, i, j])
    assert roi_pool_bins((21.0, 35.0, 135.0, 118.0), 3, 1 / 16, (10, 10))["cells"] == (1, 2, 8, 7)


@pytest.mark.parametrize("sampling_ratio, aligned", [(2, False), (-1, True), (3, True)])
def test_sample_points_are_where_roi_align_reads(sampling_ratio, aligned):
    box = (21.0, 35.0, 135.0, 118.0)
    ys, xs = sample_points(box, (3, 4), 1 / 16, sampling_ratio, aligned)
    wy, wx = roi_align_weights((10, 10), [torch.tensor([box])], (3, 4), 1 / 16, sampling_ratio, aligned)
    # The kernel interpolates at (point - 0.5): the average of those rows is Wy / Wx.
    rows = linear_weights(ys.flatten() - 0.5, 10).view(*ys.shape, 10).mean(1)
    cols = linear_weights(xs.flatten() - 0.5, 10).view(*xs.shape, 10).mean(1)
    torch.testing.assert_close(rows.float(), wy[0], **TOL)
    torch.testing.assert_close(cols.float(), wx[0], **TOL)


def test_level_thresholds_are_where_the_level_changes():
    mapper = LevelMapper(2, 5)
    for k, t in enumerate(level_thresholds(), start=1):
        below, at = torch.tensor([[0.0, 0.0, t - 0.5, t - 0.5]]), torch.tensor([[0.0, 0.0, t, t]])
        assert mapper([below]).item() == k - 1 and mapper([at]).item() == k
    assert level_thresholds(3, 6, 64, 3) == [128.0, 256.0, 512.0]  # P4, P5, P6


def test_features_to_rgb():
    g = torch.Generator().manual_seed(4)
    maps = [torch.randn(16, 7, 7, generator=g), torch.randn(16, 14, 14, generator=g)]
    rgb = features_to_rgb(maps)
    assert [tuple(r.shape) for r in rgb] == [(3, 7, 7), (3, 14, 14)]
    assert all(r.min() >= 0 and r.max() <= 1 for r in rgb)


def test_roi_align_pictures_draw():
    import matplotlib.pyplot as plt

    box = (21.0, 35.0, 135.0, 118.0)
    quantised = plot_roi_pool_quantisation(box, 3, 16, (10, 10))
    assert len(panels(quantised)) == 2 and "3x3 bins" in quantised.axes[1].get_title()
    shift = plot_shift_response(torch.arange(5.0), {"roi_pool": torch.zeros(5), "roi_align": torch.ones(5)}, 16)
    assert [line.get_ydata().tolist() for line in panels(shift)[0].lines[:2]] == [[0.0] * 5, [1.0] * 5]
    assert "(1.3, 2.6) reads 4 cells" in panels(plot_bilinear(torch.rand(4, 5), 1.3, 2.6))[0].get_title()
    sampling = plot_sampling_points(box, 3, 16, (10, 10), [(2, True), (-1, False)])
    assert [ax.get_title().split(",")[0] for ax in panels(sampling)] == ["sampling_ratio=2", "sampling_ratio=-1"]
    weights = plot_weight_matrices(torch.rand(3, 10), torch.rand(3, 10))
    assert [ax.images[0].get_array().shape for ax in panels(weights)] == [(3, 10), (3, 10)]
    assert len(panels(plot_fpn_levels(torch.rand(20) * 100 + 10))) == 2
    plt.close("all")


def test_cell_centres_table_puts_each_setting_against_the_measured_centre():
    from torch import nn

    from course_lib.detection.backbone_utils import build_backbone
    from course_lib.lessons.nb03_roi_align import cell_centres_table

    torch.manual_seed(0)
    lines = cell_centres_table(build_backbone().body).splitlines()
    assert [line.split()[:3] for line in lines[1:5]] == [["C2", "4", "32"], ["C3", "8", "16"], ["C4", "16", "8"],
                                                         ["C5", "32", "4"]]
    for line, r, off_true in zip(lines[1:5], (13, 25, 49, 97), ("1.5", "3.5", "7.5", "15.5"), strict=True):
        assert f"{128 - r}..{128 + r}" in line and "128 (x=128.5)" in line
        assert "x=128 (0.5 px off)" in line and f"({off_true} px off)" in line
    assert lines[-1] == "rows: the same as the columns: True"
    # a network whose field is not centred on cell * stride, and one cut by the border, say so
    shifted = cell_centres_table(nn.Conv2d(3, 2, 2, stride=2), prefix="S", image_size=16).splitlines()
    assert shifted[1].split()[:6] == ["S1", "2", "4", "8..9", "8.5", "(x=9)"] and "x=8 (1 px off)" in shifted[1]
    cut = cell_centres_table(nn.Conv2d(3, 2, 9, padding=4), image_size=8).splitlines()
    assert cut[1].endswith("(field cut by the input's border)")
