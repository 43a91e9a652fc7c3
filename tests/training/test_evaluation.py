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
from course_lib.training.evaluation import (
    ap_difference,
    ap_of_draws,
    bootstrap_ap,
    coco_eval,
    to_coco_results,
)
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


# ------------------------------------------------------------------------------ bootstrap intervals of AP

def random_coco(n_images=10, seed=0, with_masks=False):
    """A ground truth of ``n_images`` 64x64 images with 1-4 boxes of categories 1-2 each, and noisy detections:
    every object found with a jittered box and a random score, plus one false positive per image."""
    rng = np.random.default_rng(seed)
    images, anns, dets = [], [], []
    for img in range(1, n_images + 1):
        images.append({"id": img, "width": 64, "height": 64})
        for _ in range(rng.integers(1, 5)):
            x, y = rng.integers(0, 40, size=2)
            w, h = rng.integers(8, 24, size=2)
            cat = int(rng.integers(1, 3))
            box = [float(x), float(y), float(w), float(h)]
            anns.append({"id": len(anns) + 1, "image_id": img, "category_id": cat, "bbox": box,
                         "area": float(w * h), "iscrowd": 0})
            jitter = (rng.normal(0, 2.0, size=4)).round(1)
            dets.append({"image_id": img, "category_id": cat, "score": float(rng.uniform(0.3, 1.0)),
                         "bbox": [box[0] + jitter[0], box[1] + jitter[1], max(box[2] + jitter[2], 2.0),
                                  max(box[3] + jitter[3], 2.0)]})
        dets.append({"image_id": img, "category_id": int(rng.integers(1, 3)), "score": float(rng.uniform(0.3, 1.0)),
                     "bbox": [float(v) for v in rng.integers(0, 48, size=2)] + [10.0, 10.0]})
    if with_masks:  # box-shaped masks, as RLE, for segm
        for a in anns + dets:
            x, y, w, h = (int(round(v)) for v in a["bbox"])
            m = np.zeros((64, 64), dtype=np.uint8, order="F")
            m[max(y, 0):y + h, max(x, 0):x + w] = 1
            rle = mask_utils.encode(m)
            rle["counts"] = rle["counts"].decode()
            a["segmentation"] = rle
    gt = COCO()
    gt.dataset = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]}
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
    return gt, dets


def evaluated_cocoeval(gt, dets, iou_type="bbox", img_ids=None):
    ev = coco_eval(gt, dets, iou_type, img_ids=img_ids)
    return ev, dict(zip(("AP", "AP50", "AP75"), ev.stats[:3], strict=True))


def rebuilt_with_duplicates(gt, dets, positions):
    """The direct way: a new data set holding the drawn images, a repeat under a new id, and their detections."""
    ids = sorted(gt.getImgIds())
    images, anns, new_dets = [], [], []
    for new_id, pos in enumerate(positions, start=1):
        old = ids[pos]
        images.append({**gt.imgs[old], "id": new_id})
        for a in gt.imgToAnns[old]:
            anns.append({**a, "id": len(anns) + 1, "image_id": new_id})
        new_dets += [{**d, "image_id": new_id} for d in dets if d["image_id"] == old]
    rebuilt = COCO()
    rebuilt.dataset = {"images": images, "annotations": anns, "categories": gt.dataset["categories"]}
    with contextlib.redirect_stdout(io.StringIO()):
        rebuilt.createIndex()
    return rebuilt, new_dets


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_ap_of_draws_equals_cocoeval_on_the_drawn_images(iou_type):
    gt, dets = random_coco(10, seed=1, with_masks=iou_type == "segm")
    ev, _ = evaluated_cocoeval(gt, dets, iou_type)
    # the identity draw is COCOeval's own figure on every image
    whole = ap_of_draws(ev, np.arange(10)[None])
    for i, name in enumerate(("AP", "AP50", "AP75")):
        assert whole[name][0] == pytest.approx(ev.stats[i], abs=1e-12)
    # a draw without repeats is COCOeval with imgIds = those images
    subset = [0, 2, 3, 7]
    _, direct = evaluated_cocoeval(gt, dets, iou_type, img_ids=[sorted(gt.getImgIds())[i] for i in subset])
    drawn = ap_of_draws(ev, np.array([subset]))
    assert {k: v[0] for k, v in drawn.items()} == pytest.approx(direct, abs=1e-12)
    # with repeats: a data set rebuilt with the repeated images under new ids
    positions = [4, 4, 1, 9, 9, 9, 0]
    rebuilt, new_dets = rebuilt_with_duplicates(gt, dets, positions)
    _, direct = evaluated_cocoeval(rebuilt, new_dets, iou_type)
    drawn = ap_of_draws(ev, np.array([positions]))
    assert {k: v[0] for k, v in drawn.items()} == pytest.approx(direct, abs=1e-9)
    # and a draw is not the figure on the distinct images it holds, when images repeat (the test can fail)
    _, distinct = evaluated_cocoeval(gt, dets, iou_type, img_ids=[sorted(gt.getImgIds())[i] for i in {4, 1, 9, 0}])
    assert drawn["AP"][0] != pytest.approx(distinct["AP"], abs=1e-6)


def test_bootstrap_ap_estimate_is_cocoevals_figure_and_the_interval_holds_it():
    gt, dets = random_coco(12, seed=2)
    _, direct = evaluated_cocoeval(gt, dets)
    ap = bootstrap_ap(gt, dets, "bbox", n_resamples=300)
    assert list(ap) == ["AP", "AP50", "AP75"]
    for name, iv in ap.items():
        assert iv.estimate == pytest.approx(direct[name], abs=1e-12)
        assert iv.low <= iv.estimate <= iv.high and 0 < iv.width < 0.6
        assert iv.samples.shape == (300,) and iv.draws.shape == (300, 12) and iv.undefined == 0
        assert str(iv) == f"{iv.estimate:.3f} [{iv.low:.3f}, {iv.high:.3f}]"
    assert np.percentile(ap["AP"].samples, 2.5) == pytest.approx(ap["AP"].low)
    again = bootstrap_ap(gt, dets, "bbox", stats="AP50", n_resamples=300)
    assert list(again) == ["AP50"] and np.array_equal(again["AP50"].samples, ap["AP50"].samples)  # seeded
    other = bootstrap_ap(gt, dets, "bbox", stats="AP50", n_resamples=300, seed=1)["AP50"]
    assert not np.array_equal(other.draws, ap["AP50"].draws)
    narrow = bootstrap_ap(gt, dets, "bbox", stats="AP", n_resamples=300, confidence=0.5)["AP"]
    assert narrow.width < ap["AP"].width


def perfect_detections(gt, images=None):
    return [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 0.9}
            for a in gt.dataset["annotations"] if images is None or a["image_id"] in images]


def test_identical_predictions_give_no_width_and_a_model_right_on_half_the_images_a_wide_one():
    gt, _ = random_coco(10, seed=3)
    perfect = bootstrap_ap(gt, perfect_detections(gt), "bbox", n_resamples=200)
    for iv in perfect.values():
        assert iv.estimate == iv.low == iv.high == pytest.approx(1.0) and iv.width == 0
    half = bootstrap_ap(gt, perfect_detections(gt, images=range(1, 6)), "bbox", n_resamples=200)
    assert 0.25 < half["AP"].estimate < 0.75
    assert half["AP"].width > 0.25  # which images a draw holds decides its AP
    same = ap_difference(perfect["AP"], perfect["AP"])
    assert same.estimate == same.low == same.high == 0
    gap = ap_difference(perfect["AP"], half["AP"])
    assert gap.low > 0 and gap.estimate == pytest.approx(1 - half["AP"].estimate)
    np.testing.assert_allclose(gap.samples, perfect["AP"].samples - half["AP"].samples)


def test_no_detections_and_draws_without_objects():
    gt = make_gt([(1, 1, [10, 10, 20, 20])])  # image 2 has no object
    none = bootstrap_ap(gt, [], "bbox", stats="AP", n_resamples=200)["AP"]
    assert none.estimate == none.low == none.high == 0
    assert 0 < none.undefined < 200 and np.isnan(none.samples).sum() == none.undefined  # draws of image 2 only
    found = bootstrap_ap(gt, perfect_detections(gt), "bbox", stats="AP", n_resamples=200)["AP"]
    assert found.undefined == none.undefined and found.low == pytest.approx(1.0)
    with pytest.raises(ValueError, match="no resample holds a ground-truth object"):
        bootstrap_ap(gt, [], "bbox", img_ids=[2])


def test_wrong_arguments_are_refused():
    gt, dets = random_coco(4, seed=4)
    with pytest.raises(ValueError, match=r"stats must be some of \['AP', 'AP50', 'AP75'\], got \['AP90'\]"):
        bootstrap_ap(gt, dets, "bbox", stats="AP90")
    with pytest.raises(ValueError, match="n_resamples must be at least 1"):
        bootstrap_ap(gt, dets, "bbox", n_resamples=0)
    with pytest.raises(ValueError, match="confidence must be between 0 and 1"):
        bootstrap_ap(gt, dets, "bbox", confidence=95)
    with pytest.raises(ValueError, match=r"image ids \[99\] are not in the ground truth"):
        bootstrap_ap(gt, dets, "bbox", img_ids=[1, 99])
    with pytest.raises(ValueError, match="holds an id twice"):
        bootstrap_ap(gt, dets, "bbox", img_ids=[1, 1])
    ev, _ = evaluated_cocoeval(gt, dets)
    with pytest.raises(ValueError, match="positions 0..3 of the evaluated images, got 0..4"):
        ap_of_draws(ev, np.array([[0, 4]]))
    with pytest.raises(ValueError, match="2-D integer array"):
        ap_of_draws(ev, np.array([0.0, 1.0]))
    a = bootstrap_ap(gt, dets, "bbox", n_resamples=50)
    b = bootstrap_ap(gt, dets, "bbox", n_resamples=50, seed=1)
    with pytest.raises(ValueError, match="different resamples"):
        ap_difference(a["AP"], b["AP"])
    with pytest.raises(ValueError, match="cannot subtract bbox AP50 from bbox AP"):
        ap_difference(a["AP"], a["AP50"])
