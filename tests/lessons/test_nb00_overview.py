"""Notebook 00's lesson module: the pipeline figure states where the mask head runs."""

import matplotlib

matplotlib.use("Agg")

from course_lib.lessons import nb00_overview as lesson  # noqa: E402


def test_pipeline_figure_shows_the_mask_head_on_detections_at_inference():
    import matplotlib.pyplot as plt

    fig = lesson.pipeline_figure()
    texts = " ".join(t.get_text() for t in fig.axes[0].texts)
    assert "after NMS" in texts and "in parallel with the box head" in texts
    assert "parallel mask branch" not in fig.axes[0].get_title()
    plain = lesson.pipeline_figure(highlight_mask_branch=False)
    assert "in parallel" not in " ".join(t.get_text() for t in plain.axes[0].texts)
    plt.close("all")


def test_check_match_detections_rejects_wrong_answers(capsys):
    import torch

    from course_lib.course.checkers import check_match_detections
    from course_lib.ops.boxes import box_iou
    from course_lib.training.error_analysis import match_detections

    def no_taken_set(pred_boxes, gt_boxes, iou_threshold=0.5):  # lets duplicates hit twice
        out = torch.full((len(pred_boxes),), -1, dtype=torch.int64)
        if len(pred_boxes) and len(gt_boxes):
            iou, idx = box_iou(pred_boxes, gt_boxes).max(1)
            out[iou >= iou_threshold] = idx[iou >= iou_threshold]
        return out

    check_match_detections(no_taken_set)
    assert "FAIL" in capsys.readouterr().out
    check_match_detections(match_detections)
    assert "PASS" in capsys.readouterr().out


def test_soft_mask_figure_has_a_colour_bar():
    import matplotlib.pyplot as plt
    import torch

    fig = lesson.soft_mask_figure(torch.rand(20, 30))
    assert len(fig.axes) == 3  # probabilities, colour bar, binary mask
    plt.close("all")


def test_small_images_are_enlarged_before_labels_are_drawn():
    import torch

    from course_lib.lessons import draw

    masks = torch.zeros(1, 128, 96, dtype=torch.bool)
    masks[0, 10:20, 10:30] = True
    target = {"boxes": torch.tensor([[10.0, 10, 30, 20]]), "labels": torch.tensor([1]), "masks": masks}
    big = draw.draw_target(torch.zeros(3, 128, 96), target, ["bg", "circle"])
    assert big.shape == (3, 384, 288) and big.dtype == torch.uint8
    assert big[:, 45, 45].any() and not big[:, 100, 200].any()  # the mask, scaled 3x, and empty elsewhere
    same = draw.draw_instances(torch.zeros(3, 128, 96), target["boxes"], target["labels"], masks, ["bg", "c"],
                               upscale=1)
    assert same.shape == (3, 128, 96)


def _label_extents(fig):
    renderer = fig.canvas.get_renderer()
    return [[t.get_window_extent(renderer) for t in ax.texts] for ax in fig.axes]


def _overlap(a, b) -> float:
    """Overlap area of two display-space boxes (matplotlib ``Bbox``)."""
    return max(min(a.x1, b.x1) - max(a.x0, b.x0), 0.0) * max(min(a.y1, b.y1) - max(a.y0, b.y0), 0.0)


def test_detection_labels_are_legible_and_do_not_overlap():
    import matplotlib.pyplot as plt
    import torch

    masks = torch.zeros(3, 128, 128, dtype=torch.bool)
    boxes = torch.tensor([[10.0, 10, 50, 50], [12, 12, 52, 52], [14, 14, 54, 54]])  # three boxes, one corner
    target = {"boxes": boxes, "labels": torch.tensor([1, 2, 3]), "masks": masks, "image_id": 1}
    out = {"boxes": boxes, "labels": torch.tensor([1, 2, 3]), "scores": torch.tensor([0.9, 0.8, 0.3]),
           "masks": masks[:, None].float()}
    fig = lesson.detections_figure([(torch.rand(3, 128, 128), target)], [out], ["bg", "circle", "square", "tri"])
    gt, pred = _label_extents(fig)[:2]
    assert len(gt) == 3 and len(pred) == 2  # the 0.3 detection is below the threshold
    for ax, extents in zip(fig.axes, (gt, pred), strict=False):
        assert all(_overlap(a, b) < 1 for i, a in enumerate(extents) for b in extents[i + 1:])
        frame = ax.get_window_extent()
        assert all(frame.x0 - 1 <= e.x0 and e.x1 <= frame.x1 + 1 and frame.y0 - 1 <= e.y0 and e.y1 <= frame.y1 + 1
                   for e in extents)  # inside the picture
    assert {t.get_fontsize() for t in fig.axes[1].texts} == {8}  # points, whatever the image's pixel size
    plt.close("all")


def test_photos_are_shrunk_to_the_models_input_size_and_never_enlarged():
    import torch

    from course_lib.detection.course_model import build_course_model

    photos = lesson.load_photos()
    assert list(photos) == ["astronaut", "coffee", "chelsea"]
    assert photos["coffee"].shape == (3, 400, 600) and 0 <= photos["coffee"].min() and photos["coffee"].max() <= 1
    model = build_course_model()  # max_size 128
    assert lesson.fit_to_model(photos["coffee"], model).shape == (3, 85, 128)
    small = torch.rand(3, 60, 90)
    assert lesson.fit_to_model(small, model) is small


def test_offline_photos_show_the_course_checkpoint_and_say_how_to_get_coco(monkeypatch, tmp_path, capsys):
    import matplotlib.pyplot as plt

    from course_lib.detection.course_model import coco_weights_file, load_inference_model

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("COURSE_HEADLESS", "1")
    model, source, names = load_inference_model(verbose=False)
    assert source == "course"
    note = lesson.photo_note(source, coco_weights_file())
    assert note.count(". ") == 0 and note.endswith(".") and str(coco_weights_file()) in note
    assert "weights='DEFAULT'" in note and "astronaut" in note
    photo = lesson.load_photos()["chelsea"]
    seen, out = lesson.detect_on_photo(model, photo)
    assert seen.shape == (3, 85, 128) and out["masks"].shape[-2:] == (85, 128)
    assert set(out["labels"].tolist()) <= {1, 2, 3}  # only shapes: the checkpoint knows nothing else
    assert lesson.photo_explorer({"chelsea": (seen, out)}, names, 0.5) is None  # headless: no widget
    printed = capsys.readouterr().out
    assert printed.startswith("chelsea   seen at 128x85: ") and "with score >= 0.50" in printed
    plt.close("all")


def test_cached_coco_weights_run_on_the_photos_with_coco_names(monkeypatch, tmp_path, capsys):
    """A stand-in weights file in the torch cache (random weights, 'person' made certain): the COCO path."""
    import matplotlib.pyplot as plt
    import torch
    from torchvision.models.detection import maskrcnn_resnet50_fpn

    from course_lib.detection.course_model import coco_weights_file, load_inference_model

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("COURSE_HEADLESS", "1")
    torch.manual_seed(0)
    fake = maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=91)
    with torch.no_grad():
        fake.roi_heads.box_predictor.cls_score.bias.zero_()
        fake.roi_heads.box_predictor.cls_score.bias[1] = 20.0  # every box: 'person'
    coco_weights_file().parent.mkdir(parents=True)
    torch.save(fake.state_dict(), coco_weights_file())
    model, source, names = load_inference_model()
    assert source == "coco" and capsys.readouterr().out == ""  # nothing to say when the weights are there
    assert "80 everyday classes" in lesson.photo_note(source, coco_weights_file())
    model.transform.min_size, model.transform.max_size = (96,), 96  # small and quick; the rule is the same
    photo = lesson.load_photos()["astronaut"]
    results = {"astronaut": lesson.detect_on_photo(model, photo)}
    seen, out = results["astronaut"]
    assert seen.shape == (3, 96, 96) and len(out["scores"]) > 0 and set(out["labels"].tolist()) == {1}
    lesson.photo_explorer(results, names, 0.5)
    assert "person" in capsys.readouterr().out
    fig = lesson.photo_figure(results, names, 0.5)
    assert fig.axes[0].texts and all(t.get_text().startswith("person") for t in fig.axes[0].texts)
    plt.close("all")
