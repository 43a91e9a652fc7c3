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


def test_fake_detections_have_sorted_scores_and_the_exact_threshold():
    out = lesson.fake_detections(6, seed=0, exact=0.7)
    assert (out["scores"][:-1] >= out["scores"][1:]).all()
    assert (out["scores"] == 0.7).sum() == 1
    assert out["masks"].shape == (6, 1, 32, 40)


def test_match_detections_is_greedy_and_takes_each_object_once():
    import torch

    gt = torch.tensor([[0.0, 0, 10, 10], [20, 20, 40, 40]])
    pred = torch.tensor([[0.0, 0, 10, 10], [0.5, 0, 10.5, 10], [21, 21, 40, 40], [60, 60, 70, 70]])
    assert lesson.match_detections(pred, gt).tolist() == [0, -1, 1, -1]
    assert lesson.match_detections(pred, gt[:0]).tolist() == [-1, -1, -1, -1]
    assert lesson.match_detections(pred[:0], gt).shape == (0,)


def test_check_match_detections_rejects_wrong_answers(capsys):
    import torch

    from course_lib.course.checkers import check_match_detections
    from course_lib.ops.boxes import box_iou

    def no_taken_set(pred_boxes, gt_boxes, iou_threshold=0.5):  # lets duplicates hit twice
        out = torch.full((len(pred_boxes),), -1, dtype=torch.int64)
        if len(pred_boxes) and len(gt_boxes):
            iou, idx = box_iou(pred_boxes, gt_boxes).max(1)
            out[iou >= iou_threshold] = idx[iou >= iou_threshold]
        return out

    check_match_detections(no_taken_set)
    assert "FAIL" in capsys.readouterr().out
    check_match_detections(lesson.match_detections)
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
