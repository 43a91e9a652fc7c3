"""``training.predict``: ``detect`` gives the model's own detections and mask pixels without pasting full-size
float masks, ``predict`` (and so ``evaluate``) keeps its results, and ``Detections`` turns crops into masks."""

import pytest
import torch
import torch.nn.functional as F
from torchvision.models.detection.roi_heads import paste_masks_in_image

from course_lib.data.coco_dataset import CocoInstanceDataset, collate_fn, get_transform
from course_lib.data.shapes import shapes_sample, shapes_split
from course_lib.detection.course_model import load_course_model
from course_lib.detection.mask_rcnn import plug_in
from course_lib.detection.roi_heads import paste_mask_in_image
from course_lib.training.evaluation import STAT_NAMES, coco_eval, evaluate, to_coco_results
from course_lib.training.predict import (
    Detections,
    binarize_masks,
    crop_to_content,
    detect,
    filter_detections,
    model_score_threshold,
    paste_mask_crops,
    pastes_like_torchvision,
    predict,
    run_inference,
    score_threshold_applied,
)


@pytest.fixture(scope="module")
def model():
    return load_course_model()


def images_of_other_sizes(n=4):
    """Shapes images resized to 300 x 217, so that boxes are scaled back from the model's 128 pixels."""
    return [F.interpolate(shapes_sample(1, i)[0][None], size=(300, 217), mode="bilinear")[0] for i in range(n)]


def assert_same_detections(reference: dict, found: Detections):
    out = found.to_output()
    assert torch.equal(reference["boxes"], out["boxes"]) and torch.equal(reference["labels"], out["labels"])
    assert torch.equal(reference["scores"], out["scores"])
    assert out["masks"].dtype == torch.bool and out["masks"].shape == reference["masks"].shape
    assert torch.equal(binarize_masks(reference["masks"]), out["masks"][:, 0])


def test_detect_gives_the_models_detections_and_mask_pixels(model):
    images = images_of_other_sizes(3)
    reference = run_inference(model, images, "cpu")
    for threshold in (None, 0.3, 0.5, 0.9):
        found = detect(model, images, "cpu", threshold)
        for ref, got in zip(reference, found, strict=True):
            assert got.size == (300, 217)
            assert_same_detections(ref if threshold is None else filter_detections(ref, threshold), got)
        assert model.roi_heads.score_thresh == 0.05  # raised for the run, restored after it
    assert sum(len(r["scores"]) for r in reference) > sum(len(f) for f in found) > 0


def test_the_score_threshold_is_applied_in_the_roi_heads_and_restored_after_an_error(model):
    with score_threshold_applied(model, 0.5):
        assert 0.4999 < model.roi_heads.score_thresh < 0.5  # keeps score >= 0.5 (the heads keep score > thresh)
    with score_threshold_applied(model, 0.01):
        assert model.roi_heads.score_thresh == 0.05  # never below the model's own
    with pytest.raises(RuntimeError), score_threshold_applied(model, 0.7):
        raise RuntimeError("boom")
    assert model.roi_heads.score_thresh == 0.05 and model_score_threshold(model) == 0.05


def test_paste_mask_crops_match_torchvisions_paste_also_for_boxes_past_the_border():
    g = torch.Generator().manual_seed(0)
    masks = torch.rand(6, 1, 28, 28, generator=g)
    boxes = torch.tensor([[10.3, 5.7, 60.2, 40.9], [-20.0, -8.0, 30.0, 25.0], [50.0, 30.0, 140.0, 90.0],
                          [3.0, 3.0, 3.4, 3.2], [200.0, 10.0, 260.0, 40.0], [0.0, 0.0, 99.9, 79.9]])
    full = paste_masks_in_image(masks, boxes, (80, 100)) > 0.5
    found = Detections(boxes, torch.ones(6, dtype=torch.int64), torch.ones(6), (80, 100),
                       paste_mask_crops(masks, boxes, (80, 100)))
    for i in range(6):
        assert torch.equal(found.mask(i), full[i, 0]), i
    assert found.crops[4][2].numel() == 0  # the box outside the image has no pixel
    assert torch.equal(found.to_output()["masks"], full)
    assert not torch.equal(found.mask(0), full[1, 0])  # the comparison can fail


def test_detections_select_above_and_from_output():
    masks = torch.zeros(3, 1, 20, 30)
    masks[0, 0, 2:5, 3:9] = 0.9
    masks[1, 0, 10:20, 0:4] = 0.6
    masks[2, 0, 0, 0] = 0.4  # below 0.5: an empty mask
    output = {"boxes": torch.tensor([[3.0, 2, 9, 5], [0, 10, 4, 20], [0, 0, 1, 1]]),
              "labels": torch.tensor([1, 2, 1]), "scores": torch.tensor([0.9, 0.6, 0.3]), "masks": masks}
    found = Detections.from_output(output, (20, 30))
    assert found.crops[0][:2] == (2, 3) and found.crops[0][2].shape == (3, 6)
    assert found.crops[2][2].numel() == 0 and crop_to_content(torch.zeros(4, 4, dtype=torch.bool))[2].numel() == 0
    assert torch.equal(found.to_output()["masks"], masks > 0.5)
    kept = found.above(0.5)
    assert len(kept) == 2 and kept.labels.tolist() == [1, 2]
    assert torch.equal(kept.mask(1), masks[1, 0] > 0.5)
    assert found.select(torch.tensor([2, 0])).scores.tolist() == pytest.approx([0.3, 0.9])
    assert [m.sum().item() for m in found.masks()] == [18, 40, 0]
    sequence = found.mask_sequence()
    assert len(sequence) == 3 and torch.equal(sequence[-2], masks[1, 0] > 0.5)
    with pytest.raises(IndexError):
        sequence[3]
    assert torch.equal(binarize_masks(found.to_output()["masks"]), binarize_masks(masks))  # bool stays bool
    no_masks = Detections.from_output({k: v for k, v in output.items() if k != "masks"}, (20, 30))
    assert "masks" not in no_masks.to_output()
    with pytest.raises(ValueError, match="no masks"):
        no_masks.mask(0)


class BoxesOnly(torch.nn.Module):
    """Not a Mask R-CNN: one fixed detection per image, with a full-size mask (``detect`` runs it as it is)."""

    def forward(self, images):
        outs = []
        for img in images:
            m = torch.zeros(2, 1, *img.shape[-2:])
            m[0, 0, 1:3, 2:4] = 1.0
            m[1, 0, 0:1, 0:1] = 1.0
            outs.append({"boxes": torch.tensor([[2.0, 1, 4, 3], [0, 0, 1, 1]]), "labels": torch.tensor([1, 1]),
                         "scores": torch.tensor([0.8, 0.2]), "masks": m})
        return outs


def test_detect_runs_any_model_returning_torchvisions_dicts():
    found = detect(BoxesOnly(), [torch.zeros(3, 6, 7)], "cpu", 0.5)[0]
    assert len(found) == 1 and found.crops[0][:2] == (1, 2) and found.mask(0).sum() == 4


def test_a_learners_paste_mask_is_used(model):
    from course_lib.detection.mask_rcnn import load_course_mask_rcnn

    course = load_course_mask_rcnn()
    assert pastes_like_torchvision(course) and pastes_like_torchvision(model)
    plug_in(course, paste_mask=lambda mask, box, shape: torch.ones(shape))  # a wrong paste: every pixel on
    assert not pastes_like_torchvision(course)
    found = detect(course, images_of_other_sizes(1), "cpu")[0]
    assert len(found) and all(found.mask(i).all() for i in range(len(found)))
    assert paste_mask_in_image is not course.paste_mask


def test_predict_keeps_bool_masks_and_evaluate_keeps_its_figures(tmp_path, model):
    ann = shapes_split("predict_test", num_images=6, seed=11, root=tmp_path / "shapes", progress=False)
    dataset = CocoInstanceDataset(ann.parent / "images", ann, get_transform(train=False))
    outputs = predict(model, dataset, "cpu", batch_size=4, progress=False)
    assert all(o["masks"].dtype == torch.bool and o["masks"].shape[1] == 1 for o in outputs.values())
    report = evaluate(model, dataset, "cpu", batch_size=4, progress=False)
    # The float masks of model(images) in the same batches, as evaluate read them before: the same COCO figures,
    # to the last digit.
    old = {}
    loader = torch.utils.data.DataLoader(dataset, batch_size=4, collate_fn=collate_fn)
    for images, targets in loader:
        for t, out in zip(targets, run_inference(model, images, "cpu"), strict=True):
            old[int(t["image_id"])] = out
    old_results = to_coco_results(old)
    assert old_results == to_coco_results(outputs)
    for iou_type in ("bbox", "segm"):
        stats = coco_eval(dataset.coco, old_results, iou_type).stats
        assert [report[iou_type][n] for n in STAT_NAMES] == [float(v) for v in stats]
    assert report["segm"]["AP"] > 0.3  # the course model finds the shapes: the comparison is not of empty lists
