"""COCO evaluation helpers: PR curves from COCOeval, mask IoU, and the error analysis, on hand-made predictions."""

import contextlib
import io

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from course_lib.data.coco_dataset import CocoInstanceDataset, get_transform
from course_lib.data.shapes import NEW_CLASSES, make_shapes_dataset
from course_lib.lessons.nb06_fine_tuning import draw_error, plot_pr_curves
from course_lib.training.error_analysis import (
    ERROR_KINDS,
    error_analysis,
    error_examples,
    error_summary,
    image_errors,
    mask_iou,
)
from course_lib.training.evaluation import coco_eval, to_coco_results
from course_lib.training.pr_curves import pr_curves


def make_gt(annotations):
    """An in-memory COCO ground truth: two 100x100 images, categories 1 ('a') and 2 ('b')."""
    anns = [{"id": i + 1, "image_id": img, "category_id": cat, "bbox": box, "area": box[2] * box[3],
             "iscrowd": 0} for i, (img, cat, box) in enumerate(annotations)]
    gt = COCO()
    gt.dataset = {"images": [{"id": 1, "width": 100, "height": 100}, {"id": 2, "width": 100, "height": 100}],
                  "annotations": anns, "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]}
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
    return gt


@pytest.fixture()
def evaluated():
    gt = make_gt([(1, 1, [10, 10, 20, 20]), (2, 1, [50, 50, 20, 20]), (1, 2, [60, 10, 30, 30])])
    dets = [{"image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20], "score": 0.9},  # TP, IoU 1
            {"image_id": 2, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.8},  # FP
            {"image_id": 2, "category_id": 1, "bbox": [54, 50, 20, 20], "score": 0.7},  # IoU 2/3: TP at 0.5 only
            {"image_id": 1, "category_id": 2, "bbox": [60, 10, 30, 30], "score": 0.6}]  # TP
    return coco_eval(gt, dets, "bbox")


def test_pr_curves_read_cocoeval_precision_per_class_and_threshold(evaluated):
    curves = {(c.iou, c.category_id): c for c in pr_curves(evaluated)}
    assert set(curves) == {(0.5, 1), (0.5, 2), (0.75, 1), (0.75, 2)}
    r = curves[0.5, 1].recall
    assert r.shape == (101,) and r[0] == 0 and r[-1] == 1
    # class 1 at IoU 0.5: TP, FP, TP -> precision 1 up to recall 0.5, then 2/3 (interpolated envelope)
    expected = np.where(r <= 0.5 + 1e-9, 1.0, 2 / 3)
    np.testing.assert_allclose(curves[0.5, 1].precision, expected)
    # at IoU 0.75 the third detection is a false positive: recall never passes 0.5
    np.testing.assert_allclose(curves[0.75, 1].precision, np.where(r <= 0.5 + 1e-9, 1.0, 0.0))
    assert curves[0.5, 2].ap == pytest.approx(1.0) and curves[0.75, 2].ap == pytest.approx(1.0)
    assert curves[0.5, 1].ap == pytest.approx((51 + 50 * 2 / 3) / 101)
    # the mean over classes is what COCOeval.summarize() reports as AP50 and AP75
    assert evaluated.stats[1] == pytest.approx((curves[0.5, 1].ap + curves[0.5, 2].ap) / 2)
    assert evaluated.stats[2] == pytest.approx((curves[0.75, 1].ap + curves[0.75, 2].ap) / 2)


def test_pr_curves_leave_out_classes_without_ground_truth_and_refuse_bad_input(evaluated):
    gt = make_gt([(1, 1, [10, 10, 20, 20])])
    ev = coco_eval(gt, [{"image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20], "score": 0.9}], "bbox")
    assert [(c.iou, c.category_id) for c in pr_curves(ev)] == [(0.5, 1), (0.75, 1)]
    with pytest.raises(ValueError, match="not one of COCOeval's thresholds"):
        pr_curves(evaluated, iou_thresholds=(0.6123,))
    unevaluated = coco_eval(gt, [], "bbox")  # no detections: nothing accumulated
    with pytest.raises(ValueError, match="accumulate"):
        pr_curves(unevaluated)


def test_plot_pr_curves_draws_one_panel_per_threshold(evaluated):
    fig = plot_pr_curves(pr_curves(evaluated), ["__background__", "a", "b"])
    assert len(fig.axes) == 2
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["a (AP 0.835)", "b (AP 1.000)"]


def box_mask(box, size=40):
    m = torch.zeros(size, size, dtype=torch.bool)
    x1, y1, x2, y2 = box
    m[y1:y2, x1:x2] = True
    return m


def test_mask_iou_agrees_with_pycocotools():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(5, 30, 40, generator=g) > 0.6
    b = torch.rand(4, 30, 40, generator=g) > 0.3
    a[3] = False  # an empty mask
    ours = mask_iou(a, b)
    enc = [[mask_utils.encode(np.asfortranarray(x.numpy().astype(np.uint8))) for x in m] for m in (a, b)]
    ref = mask_utils.iou(enc[0], enc[1], [0] * len(b))
    assert ours.dtype == torch.float32 and ours.shape == (5, 4)
    np.testing.assert_allclose(ours.numpy(), ref, atol=1e-6)
    assert mask_iou(a[:0], b).shape == (0, 4)
    assert mask_iou(a[3:4], a[3:4]).item() == 0  # two empty masks: 0, not NaN


def test_image_errors_sorts_hand_made_detections_into_each_kind():
    gt_boxes = [(0, 0, 10, 10), (20, 0, 30, 10), (0, 20, 10, 30), (20, 20, 30, 30)]
    target = {"image_id": 7, "boxes": torch.tensor(gt_boxes, dtype=torch.float32),
              "labels": torch.tensor([1, 2, 1, 1]), "masks": torch.stack([box_mask(b) for b in gt_boxes])}
    det = [  # (box, label, score, mask box); listed out of score order on purpose
        ((20, 20, 30, 30), 1, 0.80, (20, 20, 23, 23)),  # 0: matches gt 3, but the mask covers 9 of 100 pixels
        ((0, 0, 10, 10), 1, 0.95, (0, 0, 10, 10)),  # 1: matches gt 0
        ((32, 32, 38, 38), 2, 0.70, (32, 32, 38, 38)),  # 2: on background
        ((0, 0, 10, 11), 1, 0.90, (0, 0, 10, 11)),  # 3: a second detection of gt 0: duplicate
        ((0, 20, 10, 30), 1, 0.30, (0, 20, 10, 30)),  # 4: below the score threshold: ignored, gt 2 missed
        ((20, 0, 30, 10), 1, 0.85, (20, 0, 30, 10)),  # 5: on gt 1, which is class 2: wrong class
        ((0, 20, 4, 30), 1, 0.75, (0, 20, 4, 30)),  # 6: on gt 2, box IoU 0.4: poor box (gt 2 still missed)
    ]
    output = {"boxes": torch.tensor([d[0] for d in det], dtype=torch.float32),
              "labels": torch.tensor([d[1] for d in det]), "scores": torch.tensor([d[2] for d in det]),
              "masks": torch.stack([box_mask(d[3]) for d in det]).float()[:, None] * 0.9}
    e = image_errors(output, target)
    assert (e.image_id, e.num_gt, e.num_dets) == (7, 4, 6)
    assert [(d, g) for d, g, _, _ in e.matches] == [(1, 0), (0, 3)]
    assert e.matches[0][2:] == (pytest.approx(1.0), pytest.approx(1.0))
    assert e.duplicates == [(3, 0)]
    assert e.wrong_class == [(5, 1)]
    assert [(d, g) for d, g, _ in e.poor_masks] == [(0, 3)] and e.poor_masks[0][2] == pytest.approx(0.09)
    assert e.background == [2]
    assert [(d, g) for d, g, _ in e.poor_boxes] == [(6, 2)] and e.poor_boxes[0][2] == pytest.approx(0.4)
    assert e.misses == [1, 2]  # gt 1 only had a detection of the wrong class
    assert e.counts() == {"misses": 2, "duplicates": 1, "wrong_class": 1, "poor_boxes": 1, "poor_masks": 1,
                          "background": 1}
    # a lower score threshold lets detection 4 find gt 2; a laxer mask threshold forgives the poor mask
    e2 = image_errors(output, target, score_threshold=0.2, mask_iou_threshold=0.05)
    assert e2.misses == [1] and e2.poor_masks == []
    picture, title = draw_error(torch.rand(3, 40, 40), output, target, "poor_masks", e.poor_masks[0],
                                ["__background__", "a", "b"])
    assert picture.shape == (3, 40, 40) and picture.dtype == torch.uint8 and title == "image 7: poor mask, mask IoU 0.09"


def test_image_errors_with_no_detections_or_no_objects():
    target = {"image_id": 1, "boxes": torch.tensor([[0.0, 0, 10, 10]]), "labels": torch.tensor([1]),
              "masks": box_mask((0, 0, 10, 10))[None]}
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64), "scores": torch.zeros(0),
             "masks": torch.zeros(0, 1, 40, 40)}
    assert image_errors(empty, target).misses == [0]
    no_objects = {"image_id": 2, "boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64),
                  "masks": torch.zeros(0, 40, 40, dtype=torch.uint8)}
    one = {"boxes": torch.tensor([[0.0, 0, 10, 10]]), "labels": torch.tensor([1]), "scores": torch.tensor([0.9]),
           "masks": box_mask((0, 0, 10, 10))[None, None].float()}
    assert image_errors(one, no_objects).background == [0]


def test_error_analysis_on_a_dataset_with_perfect_and_damaged_predictions(tmp_path):
    ann = make_shapes_dataset(tmp_path, 4, seed=21, classes=NEW_CLASSES, progress=False)
    ds = CocoInstanceDataset(tmp_path / "images", ann, get_transform(train=False))
    outputs = {}
    for _, t in (ds[i] for i in range(len(ds))):
        n = len(t["labels"])
        outputs[t["image_id"]] = {"boxes": t["boxes"].as_subclass(torch.Tensor).clone(),
                                  "labels": t["labels"].clone(), "scores": torch.linspace(0.99, 0.9, n),
                                  "masks": t["masks"].as_subclass(torch.Tensor)[:, None].float()}
    perfect = error_summary(error_analysis(outputs, ds))
    assert perfect["objects"] == perfect["detections"] == perfect["matches"] > 0
    assert all(perfect[k] == 0 for k in ERROR_KINDS)
    for iou_type in ("bbox", "segm"):
        assert coco_eval(ds.coco, to_coco_results(outputs), iou_type).stats[0] == pytest.approx(1.0)
    first = min(outputs)
    outputs[first] = {k: v[1:] for k, v in outputs[first].items()}  # drop one detection: one miss
    errors = error_analysis(outputs, ds)
    assert error_summary(errors)["misses"] == 1
    assert error_examples(errors, "misses") == [(first, 0)]
    with pytest.raises(ValueError, match="kind must be one of"):
        error_examples(errors, "typos")
