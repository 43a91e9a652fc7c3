"""07's assembly checkers in the notebook's kernel: the solutions pass on the course model, the grader's torchvision
model passes the same references, and the usual mistakes fail with their case's hint."""

import pytest
import torch

from course_lib.course.checkers import check_mask_rcnn_forward, check_train_step
from course_lib.course.checkers.core import run_checks
from course_lib.course.checkers.nb07_models import forward_output, training_run, whole_forward_refused
from course_lib.detection.mask_rcnn import forward_from_stages, load_course_mask_rcnn
from course_lib.training.engine import train_step

pytestmark = pytest.mark.training  # a few training steps of two models per test


def test_the_references_pass_and_come_back(capsys):
    assert check_mask_rcnn_forward(forward_from_stages) is forward_from_stages
    assert check_train_step(train_step) is train_step
    out = capsys.readouterr().out
    assert "PASS check_mask_rcnn_forward" in out and "PASS check_train_step" in out


@pytest.mark.parametrize("cases", ["grading_cases", "hidden_cases"])
def test_the_graders_torchvision_model_gives_detections_and_losses_the_references_match(cases):
    for check in (check_mask_rcnn_forward, check_train_step):
        made = check.grading_cases() if cases == "grading_cases" else check.hidden_cases(7)
        result = run_checks(check.name, check.adapted(check.reference), check.adapted(check.reference), made,
                            verbose=False)
        assert result.status == "pass", result.message
    detections = forward_output(forward_from_stages, "small_maskrcnn", 1, False)
    assert all(len(d["scores"]) > 0 for d in detections)  # the eval cases compare real detections
    assert set(forward_output(forward_from_stages, "small_maskrcnn", 2, True)) == {
        "loss_classifier", "loss_box_reg", "loss_mask", "loss_objectness", "loss_rpn_box_reg"}


def test_the_models_own_forward_is_refused_inside_and_restored_after():
    model = load_course_mask_rcnn().eval()
    image = torch.rand(3, 128, 128)
    with whole_forward_refused(model), pytest.raises(RuntimeError, match="call its stages"):
        model([image])
    with torch.no_grad():
        assert len(model([image])) == 1


def _forward_without_postprocess(model, images, targets=None):
    images, targets = model.transform(images, targets)
    features = model.backbone(images.tensors)
    proposals, proposal_losses = model.rpn(images, features, targets)
    detections, detector_losses = model.roi_heads(features, proposals, images.image_sizes, targets)
    return {**detector_losses, **proposal_losses} if model.training else detections


def _forward_dropping_targets(model, images, targets=None):
    sizes = [tuple(im.shape[-2:]) for im in images]
    batch, _ = model.transform(images, targets)
    features = model.backbone(batch.tensors)
    proposals, proposal_losses = model.rpn(batch, features, targets)
    detections, detector_losses = model.roi_heads(features, proposals, batch.image_sizes, targets)
    return {**detector_losses, **proposal_losses} if model.training else \
        model.transform.postprocess(detections, batch.image_sizes, sizes)


@pytest.mark.parametrize("wrong, case", [
    (lambda model, images, targets=None: model(images, targets), "evaluation: two images"),
    (_forward_without_postprocess, "evaluation: two images"),
    (_forward_dropping_targets, "training: the five losses"),
])
def test_forward_mistakes_fail_on_their_case(wrong, case, capsys):
    assert check_mask_rcnn_forward(wrong) is forward_from_stages
    out = capsys.readouterr().out
    assert "FAIL check_mask_rcnn_forward" in out and case in out and "Hint" in out


def _no_zero_grad(model, images, targets, optimizer):
    losses = model(images, targets)
    loss = sum(losses.values())
    loss.backward()
    optimizer.step()
    return {**{k: v.item() for k, v in losses.items()}, "loss": loss.item()}


def _tensors_returned(model, images, targets, optimizer):
    losses = model(images, targets)
    loss = sum(losses.values())
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return {**losses, "loss": loss}


def _no_step(model, images, targets, optimizer):
    losses = model(images, targets)
    loss = sum(losses.values())
    optimizer.zero_grad()
    loss.backward()
    return {**{k: v.item() for k, v in losses.items()}, "loss": loss.item()}


@pytest.mark.parametrize("wrong, case", [(_no_zero_grad, "how far the weights moved"),
                                         (_tensors_returned, "as floats"),
                                         (_no_step, "")])
def test_training_step_mistakes_fail(wrong, case, capsys):
    assert check_train_step(wrong) is train_step
    out = capsys.readouterr().out
    assert "FAIL check_train_step" in out and case in out and "Hint" in out


def test_weights_moved_is_zero_without_a_step_and_larger_without_zeroed_gradients():
    moved = training_run(train_step, "small_maskrcnn", 4, what="moved")
    assert training_run(_no_step, "small_maskrcnn", 4, what="moved") == 0.0
    assert abs(training_run(_no_zero_grad, "small_maskrcnn", 4, what="moved") - moved) > 1e-3 * moved
