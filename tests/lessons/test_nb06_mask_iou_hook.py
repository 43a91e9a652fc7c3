"""Notebook 06 passes the learner's mask_iou to the error analysis: the hook must be used."""

import torch

from course_lib.training.error_analysis import image_errors


def _one_object():
    mask = torch.zeros(1, 20, 20, dtype=torch.bool)
    mask[0, 5:15, 5:15] = True
    target = {"image_id": 1, "boxes": torch.tensor([[5.0, 5, 15, 15]]), "labels": torch.tensor([1]), "masks": mask}
    output = {"boxes": torch.tensor([[5.0, 5, 15, 15]]), "labels": torch.tensor([1]), "scores": torch.tensor([0.9]),
              "masks": mask[:, None].float()}
    return output, target


def test_the_default_mask_iou_finds_a_perfect_mask():
    output, target = _one_object()
    errors = image_errors(output, target)
    assert len(errors.matches) == 1 and errors.poor_masks == []


def test_a_given_mask_iou_fn_decides_the_poor_masks():
    output, target = _one_object()
    calls = []

    def zero_iou(a, b):
        calls.append((tuple(a.shape), tuple(b.shape)))
        return torch.zeros(len(a), len(b))

    errors = image_errors(output, target, mask_iou_fn=zero_iou)
    assert calls == [((1, 20, 20), (1, 20, 20))]
    assert len(errors.poor_masks) == 1
