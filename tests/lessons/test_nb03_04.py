"""Notebooks 03 and 04: their checkers, and the pieces of roi_align / mask_head the notebooks add.

Each checker: the reference passes and is handed back, a typical wrong answer fails (naming the case),
and the notebook's stub says NOT YET and hands back the reference.
"""

import math

import matplotlib
import pytest
import torch
import torch.nn.functional as F
import torchvision
from torchvision.models.detection import roi_heads as tv_roi_heads
from torchvision.ops.poolers import LevelMapper

from course_lib.course.checkers import (
    check_assign_fpn_levels,
    check_bilinear_interpolate,
    check_maskrcnn_loss,
    check_paste_mask,
    check_roi_align_one_box,
)
from course_lib.detection.course_model import load_course_model  # noqa: E402
from course_lib.detection.roi_heads import (
    expand_boxes,
    maskrcnn_loss,
    paste_mask_in_image,
    project_masks_on_boxes,
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
from course_lib.lessons.nb04_heads_mask_branch import (
    box_panels,
    candidate_detections,
    mask_branch_stages,
    mask_loss_gradients,
    plot_loss_gradients,
    plot_mask_branch,
    plot_mask_targets,
    positive_rois_of,
)
from course_lib.ops.poolers import assign_fpn_levels
from course_lib.ops.roi_align import (
    bilinear_interpolate,
    linear_weights,
    roi_align_one_box,
    roi_align_weights,
)
from course_lib.ops.roi_pool import roi_pool

matplotlib.use("Agg")
TOL = dict(atol=1e-5, rtol=1e-5)


def stub(*args, **kwargs):
    raise NotImplementedError("Exercise: replace this line with your code")


# ----------------------------------------------------------------------------- checkers: right, wrong, stub


def _roi_align_separable(feature, box, output_size, spatial_scale=1.0, sampling_ratio=-1, aligned=False):
    """The notebook's solution: Wy and Wx from linear_weights, then one einsum."""
    offset = 0.5 if aligned else 0.0
    x1, y1, x2, y2 = (float(v) * spatial_scale - offset for v in box)
    (out_h, out_w), (_, H, W) = output_size, feature.shape

    def axis_weights(start, end, bins, size):
        length = end - start if aligned else max(end - start, 1.0)
        n = sampling_ratio if sampling_ratio > 0 else math.ceil(length / bins)
        positions = start + (torch.arange(bins)[:, None] + (torch.arange(n) + 0.5) / n) * (length / bins)
        return linear_weights(positions.flatten(), size).view(bins, n, size).mean(1)

    return torch.einsum("ih,chw,jw->cij", axis_weights(y1, y2, out_h, H), feature, axis_weights(x1, x2, out_w, W))


def _bilinear_without_edge_rules(feature, y, x):
    y0, x0 = math.floor(y), math.floor(x)
    y1, x1 = min(y0 + 1, feature.shape[1] - 1), min(x0 + 1, feature.shape[2] - 1)
    ly, lx = y - y0, x - x0
    return ((1 - ly) * (1 - lx) * feature[:, y0, x0] + (1 - ly) * lx * feature[:, y0, x1]
            + ly * (1 - lx) * feature[:, y1, x0] + ly * lx * feature[:, y1, x1])


def _roi_align_always_aligned(feature, box, output_size, spatial_scale=1.0, sampling_ratio=-1, aligned=False):
    return _roi_align_separable(feature, box, output_size, spatial_scale, sampling_ratio, True)


def _levels_without_k_min(boxes, k_min=2, k_max=5, canonical_scale=224, canonical_level=4):
    s = torch.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))
    return torch.floor(canonical_level + torch.log2(s / canonical_scale) + 1e-6).clamp(k_min, k_max).long()


def _loss_with_softmax(mask_logits, proposals, gt_masks, gt_labels, mask_matched_idxs):
    M = mask_logits.shape[-1]
    labels = torch.cat([lab[i] for lab, i in zip(gt_labels, mask_matched_idxs, strict=True)])
    targets = torch.cat([project_masks_on_boxes(m, p, i, M)
                         for m, p, i in zip(gt_masks, proposals, mask_matched_idxs, strict=True)])
    classes = torch.where(targets >= 0.5, labels[:, None, None], 0)
    return F.cross_entropy(mask_logits, classes)


def _paste_without_padding(mask, box, img_shape, padding=1):
    return paste_mask_in_image(mask, box, img_shape, padding=0)


@pytest.mark.parametrize("check, right, wrong, failing_case", [
    (check_bilinear_interpolate, bilinear_interpolate, _bilinear_without_edge_rules, "y in [-1, 0)"),
    (check_roi_align_one_box, _roi_align_separable, _roi_align_always_aligned, "box inside the map"),
    (check_assign_fpn_levels, assign_fpn_levels, _levels_without_k_min, "COCO-sized boxes"),
    (check_maskrcnn_loss, maskrcnn_loss, _loss_with_softmax, "one image"),
    (check_paste_mask, paste_mask_in_image, _paste_without_padding, "box inside the image"),
])
def test_checker_right_wrong_and_stub(capsys, check, right, wrong, failing_case):
    assert check(right) is right
    assert capsys.readouterr().out.startswith(f"PASS {check.__name__}")

    assert check(wrong) is check.reference
    out = capsys.readouterr().out
    assert out.startswith(f"FAIL {check.__name__}, case '{failing_case}") and "Hint" in out

    assert check(stub) is check.reference
    assert capsys.readouterr().out.startswith(f"NOT YET {check.__name__}")


def test_the_notebook_solution_of_roi_align_one_box_passes(capsys):
    # The separable solution above passes the checker: it agrees with torchvision on every case.
    for case in check_roi_align_one_box.cases():
        torch.testing.assert_close(_roi_align_separable(*case.args), check_roi_align_one_box.reference(*case.args),
                                   **TOL)


def test_checker_cases_cover_the_edge_cases():
    names = " ".join(c.name for c in check_maskrcnn_loss.cases())
    assert "no proposals at all" in names
    assert check_maskrcnn_loss.reference(*check_maskrcnn_loss.cases()[-1].args).item() == 0.0
    assert any("outside" in c.name for c in check_paste_mask.cases())
    assert any(c.args[0].numel() == 0 for c in check_assign_fpn_levels.cases())


# ----------------------------------------------------------------------------- roi_align: one point, one box


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
        torch.testing.assert_close(_roi_align_separable(*args), ref, **TOL)


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
    figs = [plot_roi_pool_quantisation(box, 3, 16, (10, 10)),
            plot_shift_response(torch.arange(5.0), {"roi_pool": torch.zeros(5), "roi_align": torch.ones(5)}, 16),
            plot_bilinear(torch.rand(4, 5), 1.3, 2.6),
            plot_sampling_points(box, 3, 16, (10, 10), [(2, True), (-1, False)]),
            plot_weight_matrices(torch.rand(3, 10), torch.rand(3, 10)),
            plot_fpn_levels(torch.rand(20) * 100 + 10)]
    for fig in figs:
        plt.close(fig)


# ----------------------------------------------------------------------------- mask_head: pieces for notebook 04


@pytest.mark.parametrize("padding", [0, 1, 2])
def test_paste_mask_is_torchvision_for_one_mask(padding):
    g = torch.Generator().manual_seed(5)
    for _ in range(5):
        mask = torch.rand(28, 28, generator=g)
        xy = torch.rand(2, generator=g) * 60 - 5  # overlapping the image: torchvision fails on boxes wholly above it
        box = torch.cat([xy, xy + torch.rand(2, generator=g) * 40 + 6])
        ref = tv_roi_heads.paste_masks_in_image(mask[None, None], box[None], (60, 70), padding)[0, 0]
        torch.testing.assert_close(paste_mask_in_image(mask, box, (60, 70), padding), ref)


def test_expand_boxes_is_torchvision():
    boxes = torch.tensor([[1.0, 2.0, 30.0, 40.0], [-5.0, 3.0, 7.5, 9.0]])
    torch.testing.assert_close(expand_boxes(boxes, 30 / 28), tv_roi_heads.expand_boxes(boxes, 30 / 28))


def test_positive_rois_of_takes_positives_of_the_chosen_objects_in_order():
    rois = torch.arange(24.0).reshape(6, 4)
    matched = torch.tensor([0, 1, 1, 0, 1, 2])
    labels = torch.tensor([2, 3, 0, 2, 3, 1])  # RoI 2 is a negative matched (placeholder) to object 1
    boxes, idx = positive_rois_of(rois, matched, labels, objects=[1, 0], per_object=1)
    assert idx.tolist() == [1, 0] and torch.equal(boxes, rois[[1, 0]])
    boxes, idx = positive_rois_of(rois, matched, labels, objects=[1], per_object=5)
    assert idx.tolist() == [1, 1] and torch.equal(boxes, rois[[1, 4]])


def test_sample_rois_equals_torchvisions_select_training_samples():
    from course_lib.lessons.nb04_heads_mask_branch import sample_rois, torchvision_sample_rois

    model = load_course_model()
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(80, 2, generator=g) * 90
    proposals = torch.cat([xy, xy + 8 + torch.rand(80, 2, generator=g) * 30], 1)
    masks = torch.zeros(2, 128, 128, dtype=torch.uint8)
    masks[0, 10:40, 20:60] = 1
    masks[1, 60:100, 50:90] = 1
    target = {"boxes": torch.tensor([[20.0, 10.0, 60.0, 40.0], [50.0, 60.0, 90.0, 100.0]]),
              "labels": torch.tensor([1, 3]), "masks": masks}
    ours = sample_rois(model.roi_heads, proposals, target, seed=3)
    theirs = torchvision_sample_rois(model.roi_heads, proposals, target, seed=3)
    assert all(torch.equal(a, b) for a, b in zip(ours, theirs, strict=True))
    assert (ours[2] > 0).any() and (ours[2] == 0).any()

def test_mask_loss_gradients_reach_one_map_or_all():
    g = torch.Generator().manual_seed(6)
    logits = torch.randn(4, 14, 14, generator=g)
    target = torch.zeros(14, 14)
    target[3:10, 4:12] = 1.0
    grads = mask_loss_gradients(logits, 2, target)
    sigmoid, softmax = grads["sigmoid, ground-truth class only"], grads["softmax over classes"]
    assert (sigmoid[[0, 1, 3]] == 0).all() and sigmoid[2].abs().sum() > 0
    assert all(softmax[c].abs().sum() > 0 for c in range(4))
    # The sigmoid gradient is that of the BCE on map 2: (sigmoid(x) - t) / pixels.
    torch.testing.assert_close(sigmoid[2], (logits[2].sigmoid() - target) / target.numel())


def test_candidate_detections_are_postprocess_before_nms():
    from course_lib.detection.roi_heads import postprocess_detections

    g = torch.Generator().manual_seed(7)
    logits, deltas = torch.randn(30, 4, generator=g) * 2, torch.randn(30, 16, generator=g) * 0.2
    xy = torch.rand(30, 2, generator=g) * 80
    proposals = torch.cat([xy, xy + torch.rand(30, 2, generator=g) * 40 + 2], 1)
    boxes, scores, labels = candidate_detections(logits, deltas, proposals, (100, 120), 0.1)
    # With NMS that suppresses nothing and no top-k, post-processing keeps exactly the candidates.
    b, s, lab = postprocess_detections(logits, deltas, [proposals], [(100, 120)], score_thresh=0.1, nms_thresh=1.01,
                                       detections_per_img=1000)
    order = scores.argsort(descending=True, stable=True)
    assert len(s[0]) == len(scores)
    torch.testing.assert_close(s[0], scores[order])
    torch.testing.assert_close(b[0], boxes[order])
    assert torch.equal(lab[0], labels[order])


def test_mask_branch_stages_is_the_mask_branch():
    from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor

    torch.manual_seed(8)
    head, predictor = MaskRCNNHeads(8, [8, 8], 1), MaskRCNNPredictor(8, 8, 3)
    x = torch.randn(2, 8, 14, 14)
    stages = mask_branch_stages(head, predictor, x)
    assert [tuple(t.shape) for _, t in stages] == [(2, 8, 14, 14)] * 3 + [(2, 8, 28, 28), (2, 3, 28, 28)]
    with torch.no_grad():
        torch.testing.assert_close(stages[-1][1], predictor(head(x)))


def test_mask_head_pictures_draw():
    import matplotlib.pyplot as plt
    from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor

    image = torch.rand(3, 40, 50)
    boxes = torch.tensor([[2.0, 3.0, 20.0, 30.0], [10.0, 5.0, 45.0, 35.0]])
    stages = mask_branch_stages(MaskRCNNHeads(8, [8, 8], 1), MaskRCNNPredictor(8, 8, 3), torch.randn(1, 8, 14, 14))
    figs = [box_panels(image, [dict(boxes=boxes, colours=["red", "blue"], texts=["a", ""], legend=["a", "b"],
                                       zoom=(0, 0, 30, 30))]),
            plot_mask_targets(image, boxes, torch.rand(2, 3, 56, 56), torch.rand(2, 28, 28)),
            plot_loss_gradients(mask_loss_gradients(torch.randn(3, 28, 28), 1, torch.rand(28, 28)),
                                   ["bg", "a", "b"]),
            plot_mask_branch(torch.rand(3, 56, 56), [(n, t.detach()) for n, t in stages], 0, 1, ["bg", "a", "b"])]
    for fig in figs:
        plt.close(fig)


def test_roi_pool_one_box_equals_torchvision_roi_pool():
    """The reference of 03's RoIPool exercise: halves, boxes off the map, back-to-front boxes, other scales."""
    from course_lib.lessons.nb03_roi_align import roi_pool_one_box

    g = torch.Generator().manual_seed(11)
    for t in range(300):
        H, W = (int(v) for v in torch.randint(1, 14, (2,), generator=g))
        feature = torch.randn(2, H, W, generator=g)
        scale = (1.0, 0.5, 0.25, 1 / 16)[t % 4]
        xy = (torch.rand(2, generator=g) * 1.6 - 0.3) * torch.tensor([W, H]) / scale
        wh = torch.rand(2, generator=g) * torch.tensor([W, H]) / scale * (-0.1 if t % 7 == 0 else 1.2)
        box = torch.cat([xy, xy + wh])
        if t % 3 == 0:
            box = (box * 2 * scale).round() / (2 * scale)  # corners exactly on half cells
        size = tuple(int(v) for v in torch.randint(1, 8, (2,), generator=g))
        expected = torchvision.ops.roi_pool(feature[None], [box[None]], size, scale)[0]
        assert torch.equal(roi_pool_one_box(feature, box, size, scale), expected), (t, box.tolist(), size, scale)


def test_roi_pool_one_box_rounds_halves_away_from_zero_and_bins_in_float32():
    from course_lib.lessons.nb03_roi_align import roi_pool_one_box

    ramp = torch.arange(31.0).expand(1, 31, 31).contiguous()  # cell (i, j) holds j: a bin's max is its last column
    # 29 cells in 7 bins: in float32 the last bin ends at cell 29 (value 28); float64's 7 * (29 / 7) would reach 30.
    assert roi_pool_one_box(ramp, torch.tensor([0.0, 0.0, 28.0, 28.0]), (1, 7), 1.0)[0, 0, -1] == 28
    feature = torch.arange(16.0).reshape(1, 4, 4)
    assert roi_pool_one_box(feature, torch.tensor([2.5, 0.0, 2.5, 0.0]), (1, 1), 1.0).item() == 3.0  # 2.5 -> 3
    # x1 = -0.5 rounds to -1 (torch.round would give 0): three cells -1, 0, 1, the first off the map, so 0.
    out = roi_pool_one_box(feature + 1, torch.tensor([-0.5, 0.0, 1.0, 0.0]), (1, 3), 1.0)
    assert out.flatten().tolist() == [0.0, 1.0, 2.0]
    assert roi_pool_one_box(feature, torch.tensor([40.0, 40.0, 50.0, 50.0]), (2, 2), 1.0).abs().sum() == 0
