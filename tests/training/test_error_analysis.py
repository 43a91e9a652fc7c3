"""The one greedy matcher (``greedy_match``): notebook 00's ``match_detections`` and ``image_errors`` use it."""

import torch

from course_lib.training.error_analysis import greedy_match, image_errors, match_detections


def test_match_detections_is_greedy_and_takes_each_object_once():
    gt = torch.tensor([[0.0, 0, 10, 10], [20, 20, 40, 40]])
    pred = torch.tensor([[0.0, 0, 10, 10], [0.5, 0, 10.5, 10], [21, 21, 40, 40], [60, 60, 70, 70]])
    assert match_detections(pred, gt).tolist() == [0, -1, 1, -1]
    assert match_detections(pred, gt[:0]).tolist() == [-1, -1, -1, -1]
    assert match_detections(pred[:0], gt).shape == (0,)


def test_a_taken_object_does_not_block_a_detections_second_best():
    ious = torch.tensor([[0.9, 0.8], [0.85, 0.7]])
    assert greedy_match(ious, 0.5).tolist() == [0, 1]
    assert greedy_match(ious, 0.75).tolist() == [0, -1]  # its second best is below the threshold
    assert greedy_match(torch.tensor([[0.5, 0.5]]), 0.5).tolist() == [0]  # at the threshold; a tie: the first


def test_allowed_pairs_restrict_the_matching():
    ious = torch.tensor([[0.9, 0.6], [0.8, 0.1]])
    same_class = torch.tensor([[False, True], [True, False]])
    assert greedy_match(ious, 0.5, same_class).tolist() == [1, 0]
    assert greedy_match(ious, 0.7, same_class).tolist() == [-1, 0]
    assert greedy_match(torch.zeros(3, 0), 0.5).tolist() == [-1, -1, -1]


def test_image_errors_matches_are_greedy_match_per_class():
    """On random detections of two classes, the matches are ``greedy_match`` with ``allowed`` = same class."""
    from torchvision.ops import box_iou

    g = torch.Generator().manual_seed(3)
    for _ in range(20):
        xy = torch.rand(6, 2, generator=g) * 60
        gt_boxes = torch.cat([xy, xy + 10 + torch.rand(6, 2, generator=g) * 20], 1)
        pick = torch.randint(0, 6, (12,), generator=g)
        boxes = gt_boxes[pick] + (torch.rand(12, 4, generator=g) - 0.5) * 10
        target = {"boxes": gt_boxes, "labels": torch.randint(1, 3, (6,), generator=g), "image_id": 1}
        output = {"boxes": boxes, "labels": torch.randint(1, 3, (12,), generator=g),
                  "scores": torch.rand(12, generator=g).sort(descending=True).values}
        errors = image_errors(output, target, score_threshold=0.0)
        same = output["labels"][:, None] == target["labels"][None, :]
        expected = greedy_match(box_iou(boxes, gt_boxes), 0.5, same)
        assert [(d, gt) for d, gt, _, _ in errors.matches] == [(d, int(t)) for d, t in enumerate(expected) if t >= 0]
        assert sorted(errors.misses) == sorted(set(range(6)) - set(expected.tolist()))


# Notebook 06 passes the learner's mask_iou to the error analysis: the hook must be used.
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
