"""course_lib.detection.roi_heads agrees with torchvision.models.detection.roi_heads: detection_candidates,
postprocess_detections, project_masks_on_boxes, maskrcnn_loss, paste_masks_in_image, paste_mask_in_image, expand_boxes."""

import pytest
import torch
from torchvision.models.detection import roi_heads as tv
from torchvision.models.detection._utils import BoxCoder
from torchvision.models.detection.roi_heads import RoIHeads

from course_lib.detection.roi_heads import (
    detection_candidates,
    expand_boxes,
    maskrcnn_loss,
    paste_mask_in_image,
    paste_masks_in_image,
    postprocess_detections,
    project_masks_on_boxes,
)
from course_lib.ops.boxes import clip_boxes_to_image

pytestmark = pytest.mark.equality  # compared with torchvision: ./course test --cpu-variants runs it

TOL = dict(atol=1e-5, rtol=1e-5)


def head_outputs(seed: int, n: int = 30, num_classes: int = 4):
    g = torch.Generator().manual_seed(seed)
    logits, deltas = torch.randn(n, num_classes, generator=g) * 2, torch.randn(n, 4 * num_classes, generator=g) * 0.2
    xy = torch.rand(n, 2, generator=g) * 80
    proposals = torch.cat([xy, xy + torch.rand(n, 2, generator=g) * 40 + 2], 1)
    return logits, deltas, proposals


def test_candidates_are_postprocess_before_nms():
    logits, deltas, proposals = head_outputs(7)
    (boxes,), (scores,), (labels,) = detection_candidates(logits, deltas, [proposals], [(100, 120)], score_thresh=0.1)
    # With NMS that suppresses nothing and no top-k, post-processing keeps exactly the candidates, best first.
    b, s, lab = postprocess_detections(logits, deltas, [proposals], [(100, 120)], score_thresh=0.1, nms_thresh=1.01,
                                       detections_per_img=1000)
    order = scores.argsort(descending=True, stable=True)
    assert len(s[0]) == len(scores) > 0
    torch.testing.assert_close(s[0], scores[order])
    torch.testing.assert_close(b[0], boxes[order])
    assert torch.equal(lab[0], labels[order])


def test_candidates_are_torchvisions_decoded_clipped_and_thresholded_pairs():
    """The steps written out with torchvision's BoxCoder, per image of a batch of two."""
    (la, da, pa), (lb, db, pb) = head_outputs(1), head_outputs(2, n=12)
    shapes = [(100, 120), (60, 70)]
    got = detection_candidates(torch.cat([la, lb]), torch.cat([da, db]), [pa, pb], shapes, score_thresh=0.2)
    for i, (logits, deltas, proposals) in enumerate([(la, da, pa), (lb, db, pb)]):
        decoded = BoxCoder((10.0, 10.0, 5.0, 5.0)).decode(deltas, [proposals])  # (P, num_classes, 4)
        boxes = clip_boxes_to_image(decoded, shapes[i])[:, 1:].reshape(-1, 4)
        scores = logits.softmax(-1)[:, 1:].reshape(-1)
        labels = torch.arange(1, logits.shape[1]).repeat(len(proposals))
        keep = (scores > 0.2) & ((boxes[:, 2] - boxes[:, 0]) >= 1e-2) & ((boxes[:, 3] - boxes[:, 1]) >= 1e-2)
        torch.testing.assert_close(got[0][i], boxes[keep])
        assert torch.equal(got[1][i], scores[keep]) and torch.equal(got[2][i], labels[keep])


def test_degenerate_boxes_after_clipping_are_no_candidates():
    logits = torch.tensor([[0.0, 5.0]])
    proposals = torch.tensor([[200.0, 10.0, 220.0, 30.0]])  # wholly right of a 100-pixel-wide image
    boxes, scores, _ = detection_candidates(logits, torch.zeros(1, 8), [proposals], [(50, 100)])
    assert len(boxes[0]) == len(scores[0]) == 0


def make_roi_heads(score_thresh, nms_thresh, detections_per_img, weights=None):
    # postprocess_detections only uses the box coder and the three thresholds.
    return RoIHeads(
        box_roi_pool=None,
        box_head=None,
        box_predictor=None,
        fg_iou_thresh=0.5,
        bg_iou_thresh=0.5,
        batch_size_per_image=512,
        positive_fraction=0.25,
        bbox_reg_weights=weights,
        score_thresh=score_thresh,
        nms_thresh=nms_thresh,
        detections_per_img=detections_per_img,
    )


def random_inputs(seed, counts, num_classes, image_shapes):
    g = torch.Generator().manual_seed(seed)
    proposals = []
    for n, (h, w) in zip(counts, image_shapes, strict=True):
        xy = torch.rand(n, 2, generator=g) * torch.tensor([w, h]) * 1.1 - 5
        wh = torch.rand(n, 2, generator=g) * torch.tensor([w, h]) * 0.5
        wh[: n // 10] = 0  # empty proposals become tiny boxes, removed as small
        proposals.append(torch.cat([xy, xy + wh], dim=1))
    P = sum(counts)
    class_logits = torch.randn(P, num_classes, generator=g) * 3
    box_regression = torch.randn(P, num_classes * 4, generator=g) * 0.5
    box_regression[:5] *= 100  # huge deltas: clamped by bbox_xform_clip, then clipped to the image
    return class_logits, box_regression, proposals


def assert_same(out, ref):
    for got, want in zip(out, ref, strict=True):  # boxes, scores, labels
        assert len(got) == len(want)
        for a, b in zip(got, want, strict=True):
            assert a.dtype == b.dtype and a.shape == b.shape
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_postprocess_matches_roi_heads(seed):
    image_shapes = [(300, 400), (256, 256), (120, 500)]
    counts = [200, 150, 0]  # the last image has no proposals
    settings = [(0.05, 0.5, 100), (0.2, 0.3, 10), (0.0, 0.7, 300)][seed]
    num_classes = [4, 11, 2][seed]
    inputs = random_inputs(seed, counts, num_classes, image_shapes)
    ref = make_roi_heads(*settings).postprocess_detections(*inputs, image_shapes)
    out = postprocess_detections(*inputs, image_shapes, (10.0, 10.0, 5.0, 5.0), *settings)
    assert_same(out, ref)
    assert sum(len(b) for b in out[0]) > 0


def test_postprocess_custom_weights_and_single_image():
    image_shapes = [(200, 300)]
    inputs = random_inputs(3, [80], 6, image_shapes)
    weights = (1.0, 1.0, 1.0, 1.0)
    ref = make_roi_heads(0.05, 0.5, 100, weights).postprocess_detections(*inputs, image_shapes)
    out = postprocess_detections(*inputs, image_shapes, box_coder_weights=weights)
    assert_same(out, ref)
    boxes, scores, labels = out
    assert labels[0].dtype == torch.int64 and (labels[0] >= 1).all()
    assert (scores[0][:-1] >= scores[0][1:]).all()  # best first


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


@pytest.mark.parametrize("padding", [0, 1, 2])
def test_paste_mask_is_torchvision_for_one_mask(padding):
    g = torch.Generator().manual_seed(5)
    for _ in range(5):
        mask = torch.rand(28, 28, generator=g)
        xy = torch.rand(2, generator=g) * 60 - 5  # overlapping the image: torchvision fails on boxes wholly above it
        box = torch.cat([xy, xy + torch.rand(2, generator=g) * 40 + 6])
        ref = tv.paste_masks_in_image(mask[None, None], box[None], (60, 70), padding)[0, 0]
        torch.testing.assert_close(paste_mask_in_image(mask, box, (60, 70), padding), ref)


def test_expand_boxes_is_torchvision():
    boxes = torch.tensor([[1.0, 2.0, 30.0, 40.0], [-5.0, 3.0, 7.5, 9.0]])
    torch.testing.assert_close(expand_boxes(boxes, 30 / 28), tv.expand_boxes(boxes, 30 / 28))
