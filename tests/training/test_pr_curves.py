"""course_lib.training.pr_curves: per-class precision-recall curves read off a finished COCOeval, checked
against a hand computation on a tiny data set and against COCOeval's own precision array."""

import contextlib
import io

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from course_lib.training.pr_curves import PRCurve, pr_curves

A = [10, 10, 20, 20]  # class 1, small (area 400)
B = [50, 50, 120, 120]  # class 1, large (area 14400)
C = [0, 150, 30, 30]  # class 2, small (area 900)
D = [150, 0, 40, 40]  # class 4, medium (area 1600), never detected
# Class 1 in score order: TP (B), FP, FP, TP (A shifted by 2 px: IoU 360 / 440 = 0.82, a FP from IoU 0.85 on).
DETECTIONS = [(1, [50, 50, 120, 120], 0.9), (1, [100, 0, 20, 20], 0.8), (1, [150, 150, 20, 20], 0.75),
              (1, [12, 10, 20, 20], 0.7), (2, C, 0.6)]


def quiet(fn, *args):
    with contextlib.redirect_stdout(io.StringIO()):
        return fn(*args)


def make_gt():
    """One 200x200 image; categories 1, 2, 4 have ground truth, category 3 has none."""
    anns = [{"id": i + 1, "image_id": 1, "category_id": cat, "bbox": box, "area": box[2] * box[3], "iscrowd": 0}
            for i, (cat, box) in enumerate([(1, A), (1, B), (2, C), (4, D)])]
    gt = COCO()
    gt.dataset = {"images": [{"id": 1, "width": 200, "height": 200}], "annotations": anns,
                  "categories": [{"id": k, "name": f"c{k}"} for k in (1, 2, 3, 4)]}
    quiet(gt.createIndex)
    return gt


@pytest.fixture(scope="module")
def ev():
    gt = make_gt()
    dt = quiet(gt.loadRes, [{"image_id": 1, "category_id": c, "bbox": b, "score": s} for c, b, s in DETECTIONS])
    e = COCOeval(gt, dt, "bbox")
    quiet(e.evaluate)
    quiet(e.accumulate)
    return e


RECALL = np.linspace(0, 1, 101)
UP_TO_HALF = RECALL <= 0.5 + 1e-9


def by_key(curves):
    return {(round(c.iou, 2), c.category_id): c for c in curves}


def test_hand_computed_curves_at_iou_50_and_75(ev):
    curves = by_key(pr_curves(ev))
    # category 3 (no ground truth) is left out; 4 (ground truth, no detection) is kept with precision 0
    assert sorted(curves) == [(0.5, 1), (0.5, 2), (0.5, 4), (0.75, 1), (0.75, 2), (0.75, 4)]
    c = curves[0.5, 1]
    assert isinstance(c, PRCurve) and c.iou == pytest.approx(0.5) and c.category_id == 1
    np.testing.assert_allclose(c.recall, RECALL)
    # TP, FP, FP, TP over 2 objects: precision 1, 1/2, 1/3, 1/2 at recall 1/2, 1/2, 1/2, 1. COCO interpolates
    # (best precision at any recall >= r): 1 up to recall 0.5, then 1/2 (not the raw 1/3 of the third row).
    np.testing.assert_allclose(c.precision, np.where(UP_TO_HALF, 1.0, 0.5))
    assert c.ap == pytest.approx((51 + 50 * 0.5) / 101)
    np.testing.assert_allclose(curves[0.75, 1].precision, curves[0.5, 1].precision)  # IoU 0.82 passes 0.75 too
    np.testing.assert_allclose(curves[0.5, 2].precision, 1.0)
    np.testing.assert_array_equal(curves[0.5, 4].precision, 0.0)  # never found: 0, not -1
    # the mean over the classes with ground truth is COCOeval's own AP50
    quiet(ev.summarize)
    assert ev.stats[1] == pytest.approx(np.mean([curves[0.5, k].ap for k in (1, 2, 4)]))
    assert ev.stats[2] == pytest.approx(np.mean([curves[0.75, k].ap for k in (1, 2, 4)]))


def test_a_stricter_threshold_turns_the_shifted_box_into_a_false_positive(ev):
    curves = by_key(pr_curves(ev, iou_thresholds=(0.85, 0.95)))
    assert sorted(curves) == [(0.85, 1), (0.85, 2), (0.85, 4), (0.95, 1), (0.95, 2), (0.95, 4)]
    for t in (0.85, 0.95):  # 0.85 is 0.8500000000000001 in COCOeval's thresholds: still found
        np.testing.assert_allclose(curves[t, 1].precision, np.where(UP_TO_HALF, 1.0, 0.0))  # recall stops at 1/2
        assert curves[t, 2].ap == pytest.approx(1.0)


def test_area_ranges_and_max_dets(ev):
    # small: A is the only object; B's detection matches an ignored object, the other two are FPs before A's TP
    small = by_key(pr_curves(ev, iou_thresholds=(0.5,), area="small"))
    assert sorted(small) == [(0.5, 1), (0.5, 2)]  # category 4's object is medium: no ground truth here
    np.testing.assert_allclose(small[0.5, 1].precision, np.full(101, 1 / 3))
    # large: B only, found first; the small detections are ignored. Category 2 has no large object: left out
    large = by_key(pr_curves(ev, iou_thresholds=(0.5,), area="large"))
    assert sorted(large) == [(0.5, 1)] and large[0.5, 1].ap == pytest.approx(1.0)
    medium = by_key(pr_curves(ev, iou_thresholds=(0.5,), area="medium"))
    assert sorted(medium) == [(0.5, 4)] and medium[0.5, 4].ap == pytest.approx(0.0)
    # one detection per image and class: only B's, recall stops at 1/2
    one = by_key(pr_curves(ev, iou_thresholds=(0.5,), max_dets=1))
    np.testing.assert_allclose(one[0.5, 1].precision, np.where(UP_TO_HALF, 1.0, 0.0))
    assert one[0.5, 2].ap == pytest.approx(1.0)


@pytest.mark.parametrize("area", ["all", "small", "medium", "large"])
@pytest.mark.parametrize("max_dets", [None, 1, 10, 100])
def test_curves_are_cocoevals_precision_array(ev, area, max_dets):
    p = ev.params
    curves = pr_curves(ev, iou_thresholds=tuple(np.round(p.iouThrs, 2)), area=area, max_dets=max_dets)
    a, m = p.areaRngLbl.index(area), p.maxDets.index(max_dets if max_dets is not None else 100)
    expected = [(float(p.iouThrs[t]), cat, ev.eval["precision"][t, :, k, a, m])
                for t in range(len(p.iouThrs)) for k, cat in enumerate(p.catIds)
                if (ev.eval["precision"][t, :, k, a, m] >= 0).any()]
    assert len(curves) == len(expected) > 0
    for c, (iou, cat, prec) in zip(curves, expected, strict=True):
        assert (c.iou, c.category_id) == (iou, cat)
        assert c.precision.dtype == np.float64 and c.precision.shape == (101,)
        np.testing.assert_array_equal(c.precision, prec)
        assert c.ap == pytest.approx(float(prec.mean()))


def test_ap_is_the_mean_precision():
    c = PRCurve(0.5, 1, RECALL, np.r_[np.ones(51), np.zeros(50)])
    assert c.ap == pytest.approx(51 / 101)


def test_refuses_an_unfinished_cocoeval_and_unknown_settings(ev):
    gt = make_gt()
    dt = quiet(gt.loadRes, [{"image_id": 1, "category_id": 1, "bbox": A, "score": 0.9}])
    fresh = COCOeval(gt, dt, "bbox")
    with pytest.raises(ValueError, match=r"run evaluate\(\) and accumulate\(\) first"):
        pr_curves(fresh)
    quiet(fresh.evaluate)  # evaluated but not accumulated: still no precision array
    with pytest.raises(ValueError, match="accumulate"):
        pr_curves(fresh)
    with pytest.raises(ValueError, match=r"IoU 0.52 is not one of COCOeval's thresholds"):
        pr_curves(ev, iou_thresholds=(0.5, 0.52))
    with pytest.raises(ValueError):
        pr_curves(ev, area="tiny")
    with pytest.raises(ValueError):
        pr_curves(ev, max_dets=7)
    assert pr_curves(ev, iou_thresholds=()) == []
