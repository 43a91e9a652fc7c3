"""The training half from scratch against torchvision, piece by piece, under the same random state:
the RPN loss (``compute_loss``), RoI sampling (``select_training_samples``), ``fastrcnn_loss`` and the mask
loss on the sampled positive RoIs. Each comparison is also shown failing on a deliberately wrong input."""

from __future__ import annotations

import pytest
import torch
from torchvision.models.detection import _utils as tv_utils
from torchvision.models.detection import roi_heads as tv_roi_heads
from torchvision.models.detection.rpn import RegionProposalNetwork as TVRegionProposalNetwork

from course_lib.detection._utils import BalancedPositiveNegativeSampler, Matcher
from course_lib.detection.roi_heads import (
    assign_targets_to_proposals,
    fastrcnn_loss,
    maskrcnn_loss,
    select_training_samples,
)
from course_lib.detection.rpn import compute_loss, rpn_loss

pytestmark = pytest.mark.equality  # compared with torchvision: ./course test --cpu-variants runs it


def random_boxes(n: int, g: torch.Generator, extent: float = 100.0) -> torch.Tensor:
    xy = torch.rand(n, 2, generator=g) * extent
    return torch.cat([xy, xy + 4 + torch.rand(n, 2, generator=g) * 40], dim=1)


def rpn_inputs(seed: int, anchors=(300, 250)):
    g = torch.Generator().manual_seed(seed)
    total = sum(anchors)
    labels = [torch.randint(-1, 2, (n,), generator=g).float() for n in anchors]
    labels[1][:] = torch.where(labels[1] == 1, 0.0, labels[1])  # the second image has no positive anchor
    targets = [torch.randn(n, 4, generator=g) for n in anchors]
    return torch.randn(total, 1, generator=g), torch.randn(total, 4, generator=g), labels, targets


def torchvision_rpn(batch_size_per_image=64, positive_fraction=0.5) -> TVRegionProposalNetwork:
    return TVRegionProposalNetwork(None, None, 0.7, 0.3, batch_size_per_image, positive_fraction,
                                   dict(training=10, testing=10), dict(training=10, testing=10), 0.7)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rpn_compute_loss_equals_torchvisions(seed):
    objectness, deltas, labels, targets = rpn_inputs(seed)
    torch.manual_seed(seed)
    expected = torchvision_rpn().compute_loss(objectness, deltas, labels, targets)
    torch.manual_seed(seed)
    got = compute_loss(objectness, deltas, labels, targets, BalancedPositiveNegativeSampler(64, 0.5))
    for g, e in zip(got, expected, strict=True):
        torch.testing.assert_close(g, e, rtol=0, atol=1e-7)


def test_rpn_loss_divides_the_box_loss_by_all_sampled_anchors():
    objectness, deltas, labels, targets = rpn_inputs(0)
    pos, neg = torch.tensor([0, 1]), torch.tensor([2, 3, 4, 5])
    _, box = rpn_loss(objectness, deltas, labels, targets, pos, neg)
    summed = torch.nn.functional.smooth_l1_loss(deltas[pos], torch.cat(targets)[pos], beta=1 / 9, reduction="sum")
    torch.testing.assert_close(box, summed / 6)
    with pytest.raises(AssertionError):  # the tempting mistake: the mean over the positives
        torch.testing.assert_close(box, summed / 2)


def heads_inputs(seed: int):
    g = torch.Generator().manual_seed(seed)
    proposals, targets = [], []
    for n_gt in (3, 0, 2):  # the middle image has no objects
        gt = random_boxes(n_gt, g)
        near = gt.repeat(6, 1) + torch.randn(6 * n_gt, 4, generator=g) * 3 if n_gt else torch.zeros(0, 4)
        near[:, 2:] = torch.maximum(near[:, 2:], near[:, :2] + 1)  # no degenerate proposal
        proposals.append(torch.cat([near, random_boxes(40, g)]))
        masks = torch.zeros(n_gt, 160, 160, dtype=torch.uint8)
        for k, (x1, y1, x2, y2) in enumerate(gt.int().tolist()):
            masks[k, y1:y2, x1:x2] = 1
        targets.append({"boxes": gt, "labels": torch.randint(1, 5, (n_gt,), generator=g), "masks": masks})
    return proposals, targets


def torchvision_roi_heads(batch_size_per_image=32, positive_fraction=0.25):
    return tv_roi_heads.RoIHeads(None, None, None, 0.5, 0.5, batch_size_per_image, positive_fraction, None,
                                 0.05, 0.5, 100, mask_roi_pool=object(), mask_head=object(),
                                 mask_predictor=object())


@pytest.mark.parametrize("seed", [0, 1])
def test_select_training_samples_equals_torchvisions(seed):
    proposals, targets = heads_inputs(seed)
    torch.manual_seed(seed)
    expected = torchvision_roi_heads().select_training_samples([p.clone() for p in proposals], targets)
    torch.manual_seed(seed)
    got = select_training_samples(proposals, targets, Matcher(0.5, 0.5, False),
                                  BalancedPositiveNegativeSampler(32, 0.25))
    for ours, theirs, what in zip(got, expected, ("proposals", "matched_idxs", "labels", "regression_targets"),
                                  strict=True):
        for i, (a, b) in enumerate(zip(ours, theirs, strict=True)):
            # Exact, except the targets' log: vectorised and scalar tails round it 1 ulp apart, and
            # torchvision encodes all images at once, so the same box can fall on either.
            tol = 1e-6 if what == "regression_targets" else 0
            torch.testing.assert_close(a, b, rtol=tol, atol=tol, msg=f"{what}, image {i}")
    assert (got[2][0] > 0).any() and (got[2][1] == 0).all()


def test_select_training_samples_appends_the_gt_boxes():
    """With no proposal at all, the sampled positives are exactly the ground-truth boxes."""
    _, targets = heads_inputs(3)
    torch.manual_seed(0)
    rois, matched, labels, regression = select_training_samples(
        [torch.zeros(0, 4)], targets[:1], Matcher(0.5, 0.5, False), BalancedPositiveNegativeSampler(32, 0.25))
    assert torch.equal(rois[0], targets[0]["boxes"][matched[0]])
    assert torch.equal(labels[0], targets[0]["labels"][matched[0]])
    torch.testing.assert_close(regression[0], torch.zeros_like(regression[0]), rtol=0, atol=1e-6)


def test_assign_targets_to_proposals_equals_torchvisions():
    proposals, targets = heads_inputs(4)
    tv = torchvision_roi_heads()
    for p, t in zip(proposals, targets, strict=True):
        expected = tv.assign_targets_to_proposals([p], [t["boxes"]], [t["labels"]])
        got = assign_targets_to_proposals(p, t["boxes"], t["labels"])
        assert torch.equal(got[0], expected[0][0]) and torch.equal(got[1], expected[1][0])


@pytest.mark.parametrize("seed", [0, 1])
def test_fastrcnn_loss_equals_torchvisions(seed):
    g = torch.Generator().manual_seed(seed)
    labels = [torch.randint(0, 5, (n,), generator=g) for n in (20, 12)]
    targets = [torch.randn(n, 4, generator=g) for n in (20, 12)]
    logits, deltas = torch.randn(32, 5, generator=g), torch.randn(32, 20, generator=g)
    expected = tv_roi_heads.fastrcnn_loss(logits, deltas, labels, targets)
    got = fastrcnn_loss(logits, deltas, labels, targets)
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-7)
    # Mutation: the deltas of the predicted class instead of the ground-truth class give another loss.
    predicted = [logits[:20].argmax(1), logits[20:].argmax(1)]
    with pytest.raises(AssertionError):
        torch.testing.assert_close(fastrcnn_loss(logits, deltas, predicted, targets)[1], expected[1])


def test_mask_loss_on_the_sampled_positive_rois_equals_torchvisions():
    """Mask targets come from the sampled positive proposals (not from jittered ground-truth boxes)."""
    proposals, targets = heads_inputs(5)
    torch.manual_seed(0)
    rois, matched, labels, _ = select_training_samples(proposals, targets, Matcher(0.5, 0.5, False),
                                                       BalancedPositiveNegativeSampler(32, 0.25))
    positive = [torch.where(lbl > 0)[0] for lbl in labels]
    mask_rois = [r[p] for r, p in zip(rois, positive, strict=True)]
    mask_idxs = [m[p] for m, p in zip(matched, positive, strict=True)]
    logits = torch.randn(sum(len(p) for p in positive), 5, 28, 28, generator=torch.Generator().manual_seed(1))
    args = (logits, mask_rois, [t["masks"] for t in targets], [t["labels"] for t in targets], mask_idxs)
    torch.testing.assert_close(maskrcnn_loss(*args), tv_roi_heads.maskrcnn_loss(*args), rtol=1e-6, atol=1e-6)


def test_sampler_draws_like_torchvisions():
    labels = [torch.randint(-1, 2, (500,), generator=torch.Generator().manual_seed(s)) for s in range(3)]
    torch.manual_seed(0)
    expected = tv_utils.BalancedPositiveNegativeSampler(64, 0.25)(labels)
    torch.manual_seed(0)
    got = BalancedPositiveNegativeSampler(64, 0.25)(labels)
    for a, b in zip(got, expected, strict=True):
        assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
