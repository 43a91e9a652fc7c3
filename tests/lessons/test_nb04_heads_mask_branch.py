"""course_lib.lessons.nb04_heads_mask_branch and notebook 04's checkers: the reference passes, a wrong answer fails, a stub says NOT YET."""

import matplotlib
import pytest
import torch
import torch.nn.functional as F

from course_lib.course.checkers import (
    check_assign_fpn_levels,
    check_maskrcnn_loss,
    check_paste_mask,
)
from course_lib.detection.course_model import load_course_model
from course_lib.detection.roi_heads import (
    maskrcnn_loss,
    paste_mask_in_image,
    project_masks_on_boxes,
)
from course_lib.lessons.nb04_heads_mask_branch import (
    box_panels,
    mask_branch_stages,
    mask_loss_gradients,
    plot_loss_gradients,
    plot_mask_branch,
    plot_mask_targets,
    positive_rois_of,
)
from shared_cases import panels, passes_fails_and_waits

matplotlib.use("Agg")


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
    (check_maskrcnn_loss, maskrcnn_loss, _loss_with_softmax, "one image"),
    (check_paste_mask, paste_mask_in_image, _paste_without_padding, "box inside the image"),
])
def test_checker_right_wrong_and_stub(capsys, check, right, wrong, failing_case):
    passes_fails_and_waits(capsys, check, right, wrong, failing_case)


def test_checker_cases_cover_the_edge_cases():
    names = " ".join(c.name for c in check_maskrcnn_loss.cases())
    assert "no proposals at all" in names
    assert check_maskrcnn_loss.reference(*check_maskrcnn_loss.cases()[-1].args).item() == 0.0
    assert any("outside" in c.name for c in check_paste_mask.cases())
    assert any(c.args[0].numel() == 0 for c in check_assign_fpn_levels.cases())


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
    boxed = box_panels(image, [dict(boxes=boxes, colours=["red", "blue"], texts=["a", ""], legend=["a", "b"],
                                    zoom=(0, 0, 30, 30))], alt="two boxes, zoomed")
    assert len(panels(boxed)) == 1 and len(boxed.axes[0].patches) >= len(boxes)
    targets = plot_mask_targets(image, boxes, torch.rand(2, 3, 56, 56), torch.rand(2, 28, 28))
    titles = [ax.get_title() for ax in panels(targets)]
    assert titles.count("target (28, 28)") == 2 and {"proposal 0", "proposal 1"} <= set(titles)
    grads = plot_loss_gradients(mask_loss_gradients(torch.randn(3, 28, 28), 1, torch.rand(28, 28)), ["bg", "a", "b"])
    assert len(panels(grads)) == 6  # two losses x three classes
    branch = plot_mask_branch(torch.rand(3, 56, 56), [(n, t.detach()) for n, t in stages], 0, 1, ["bg", "a", "b"])
    assert panels(branch)[0].get_title() == "the RoI in the image"
    assert any("mask_fcn_logits" in ax.get_title() for ax in panels(branch))
    plt.close("all")
