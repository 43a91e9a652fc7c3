"""course_lib.mask_head agrees with torchvision.models.detection.roi_heads."""

import pytest
import torch
from torchvision.models.detection import roi_heads as tv

from course_lib.detection.roi_heads import (
    maskrcnn_loss,
    paste_masks_in_image,
    project_masks_on_boxes,
)

pytestmark = pytest.mark.equality  # compared with torchvision: ./course test --cpu-variants runs it

TOL = dict(atol=1e-5, rtol=1e-5)


def random_masks(n, h, w, g):
    """n blob-like 0/1 masks (uint8): random rectangles and ellipses."""
    yy, xx = torch.meshgrid(torch.arange(h).float(), torch.arange(w).float(), indexing="ij")
    masks = []
    for _ in range(n):
        cy, cx = torch.rand(2, generator=g) * torch.tensor([h, w])
        ry, rx = torch.rand(2, generator=g) * torch.tensor([h, w]) * 0.4 + 2
        masks.append(((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1)
    return torch.stack(masks).to(torch.uint8) if masks else torch.zeros(0, h, w, dtype=torch.uint8)


def random_boxes(n, h, w, g, spill=0.1):
    xy = torch.rand(n, 2, generator=g) * torch.tensor([w, h]) * (1 + 2 * spill) - torch.tensor([w, h]) * spill
    wh = torch.rand(n, 2, generator=g) * torch.tensor([w, h]) * 0.6 + 1
    return torch.cat([xy, xy + wh], dim=1)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_project_masks_on_boxes(seed):
    g = torch.Generator().manual_seed(seed)
    h, w = [(60, 80), (64, 64), (37, 90)][seed]
    gt_masks = random_masks(4, h, w, g)
    boxes = random_boxes(30, h, w, g)
    boxes[:3, 2:] = boxes[:3, :2]  # zero-size proposals
    matched = torch.randint(0, 4, (30,), generator=g)
    for M in (28, 14):
        out = project_masks_on_boxes(gt_masks, boxes, matched, M)
        ref = tv.project_masks_on_boxes(gt_masks, boxes, matched, M)
        assert out.shape == (30, M, M)
        torch.testing.assert_close(out, ref, **TOL)


@pytest.mark.parametrize("seed", [0, 1])
def test_maskrcnn_loss(seed):
    g = torch.Generator().manual_seed(seed)
    num_classes, M = 5, 14
    gt_masks, gt_labels, proposals, matched = [], [], [], []
    for n_gt, n_prop, (h, w) in ((3, 12, (50, 70)), (2, 0, (40, 40)), (1, 7, (64, 48))):
        gt_masks.append(random_masks(n_gt, h, w, g))
        gt_labels.append(torch.randint(1, num_classes, (n_gt,), generator=g))
        proposals.append(random_boxes(n_prop, h, w, g))
        matched.append(torch.randint(0, n_gt, (n_prop,), generator=g))
    logits = torch.randn(19, num_classes, M, M, generator=g, requires_grad=True)
    loss = maskrcnn_loss(logits, proposals, gt_masks, gt_labels, matched)
    ref = tv.maskrcnn_loss(logits, proposals, gt_masks, gt_labels, matched)
    torch.testing.assert_close(loss, ref, **TOL)
    (grad,) = torch.autograd.grad(loss, logits)
    (ref_grad,) = torch.autograd.grad(ref, logits)
    torch.testing.assert_close(grad, ref_grad, **TOL)
    # Only the ground-truth class's map gets a gradient.
    labels = torch.cat([lbl[i] for lbl, i in zip(gt_labels, matched, strict=True)])
    other = torch.ones(19, num_classes, dtype=torch.bool)
    other[torch.arange(19), labels] = False
    assert grad[other].abs().max() == 0


def test_maskrcnn_loss_no_proposals_is_finite_zero():
    logits = torch.randn(0, 3, 28, 28, requires_grad=True)
    proposals, matched = [torch.zeros(0, 4)], [torch.zeros(0, dtype=torch.int64)]
    args = (proposals, [torch.zeros(2, 30, 30, dtype=torch.uint8)], [torch.tensor([1, 2])], matched)
    loss = maskrcnn_loss(logits, *args)
    ref = tv.maskrcnn_loss(logits, *args)
    assert torch.isfinite(loss) and loss.item() == 0 and loss.item() == ref.item()
    loss.backward()  # still connected to the graph
    assert logits.grad.shape == logits.shape


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("padding", [1, 0, 2])
def test_paste_masks_in_image(seed, padding):
    g = torch.Generator().manual_seed(seed)
    im_h, im_w = [(60, 80), (45, 45), (100, 33)][seed]
    masks = torch.rand(12, 1, 28, 28, generator=g)
    boxes = random_boxes(12, im_h, im_w, g, spill=0.3)  # some boxes hang over the image edges
    # torchvision raises on a box wholly outside the image; keep every box overlapping it.
    boxes[:, 0::2] = boxes[:, 0::2].clamp(max=im_w * 0.9)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(max=im_h * 0.9)
    boxes[:, 2:] = torch.maximum(boxes[:, 2:], torch.tensor([im_w * 0.1, im_h * 0.1]))
    boxes[0] = torch.tensor([-10.0, -5.0, im_w + 10.0, im_h + 3.0])  # larger than the image
    boxes[1] = torch.tensor([3.0, 4.0, 3.2, 4.1])  # under one pixel
    out = paste_masks_in_image(masks, boxes, (im_h, im_w), padding=padding)
    ref = tv.paste_masks_in_image(masks, boxes, (im_h, im_w), padding=padding)
    assert out.shape == (12, 1, im_h, im_w)
    torch.testing.assert_close(out, ref, **TOL)


def test_paste_masks_box_outside_image_is_empty():
    # (torchvision raises here; the course version returns an empty mask.)
    masks = torch.ones(2, 1, 28, 28)
    boxes = torch.tensor([[50.0, 5.0, 70.0, 15.0], [-30.0, -30.0, -10.0, -12.0]])
    assert paste_masks_in_image(masks, boxes, (20, 30)).abs().sum() == 0


def test_paste_masks_in_image_empty():
    out = paste_masks_in_image(torch.zeros(0, 1, 28, 28), torch.zeros(0, 4), (20, 30))
    ref = tv.paste_masks_in_image(torch.zeros(0, 1, 28, 28), torch.zeros(0, 4), (20, 30))
    assert out.shape == ref.shape == (0, 1, 20, 30)
