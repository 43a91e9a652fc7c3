"""course_lib.box_head.postprocess_detections agrees with a real torchvision RoIHeads."""

import pytest
import torch
from torchvision.models.detection.roi_heads import RoIHeads

from course_lib.detection.roi_heads import postprocess_detections
from course_lib.ops.boxes import clip_boxes_to_image, remove_small_boxes

pytestmark = pytest.mark.equality  # compared with torchvision: ./course test --cpu-variants runs it


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


def test_clip_and_small_boxes():
    from torchvision.ops import boxes as box_ops

    g = torch.Generator().manual_seed(4)
    boxes = torch.randn(50, 3, 4, generator=g) * 100
    torch.testing.assert_close(clip_boxes_to_image(boxes, (60, 80)), box_ops.clip_boxes_to_image(boxes, (60, 80)))
    flat = clip_boxes_to_image(boxes, (60, 80)).reshape(-1, 4)
    assert torch.equal(remove_small_boxes(flat, 1.0), box_ops.remove_small_boxes(flat, 1.0))
