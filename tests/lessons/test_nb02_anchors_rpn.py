"""course_lib.lessons.nb02_anchors_rpn and notebook 02's checkers: box IoU, box coding, NMS, the RPN pieces, the figures."""

import matplotlib

from shared_cases import stub

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import torchvision  # noqa: E402

from course_lib.course.checkers import (  # noqa: E402
    check_box_iou,
    check_decode_boxes,
    check_encode_boxes,
    check_nms,
)
from course_lib.course.checkers.nb02_anchors_rpn import decode_boxes, encode_boxes  # noqa: E402
from course_lib.lessons.nb01_backbone_fpn import fpn_diagram, stride_grid_figure  # noqa: E402
from course_lib.lessons.nb02_anchors_rpn import (  # noqa: E402
    anchor_figure,
    anchor_label_counts,
    anchor_labels_figure,
    box_coding_figure,
    iou_figure,
    objectness_figure,
    proposal_explorer,
    proposals,
    proposals_figure,
    recall_curve,
    recall_figure,
    rpn_forward,
    rpn_loss_inputs,
    sampling_figure,
    torchvision_rpn_losses,
)
from course_lib.ops.boxes import box_iou as reference_iou  # noqa: E402


def iou_broadcast(b1, b2, clamp=True):
    area1 = (b1[:, 2] - b1[:, 0]) * (b1[:, 3] - b1[:, 1])
    area2 = (b2[:, 2] - b2[:, 0]) * (b2[:, 3] - b2[:, 1])
    wh = torch.min(b1[:, None, 2:], b2[None, :, 2:]) - torch.max(b1[:, None, :2], b2[None, :, :2])
    if clamp:
        wh = wh.clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    return inter / (area1[:, None] + area2[None, :] - inter)


def test_box_iou_checker(capsys):
    assert check_box_iou(iou_broadcast) is iou_broadcast
    assert "PASS check_box_iou" in capsys.readouterr().out
    assert check_box_iou(lambda a, b: iou_broadcast(a, b, clamp=False)) is reference_iou
    assert "FAIL check_box_iou, case " in capsys.readouterr().out
    assert check_box_iou(stub) is reference_iou
    assert "NOT YET check_box_iou" in capsys.readouterr().out


def encode_unweighted(gt, anchors, weights=(1.0, 1.0, 1.0, 1.0)):
    aw, ah = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
    gw, gh = gt[:, 2] - gt[:, 0], gt[:, 3] - gt[:, 1]
    ax, ay = anchors[:, 0] + aw / 2, anchors[:, 1] + ah / 2
    gx, gy = gt[:, 0] + gw / 2, gt[:, 1] + gh / 2
    return torch.stack([(gx - ax) / aw, (gy - ay) / ah, torch.log(gw / aw), torch.log(gh / ah)], dim=1)


def encode_weighted(gt, anchors, weights=(1.0, 1.0, 1.0, 1.0)):
    return encode_unweighted(gt, anchors) * torch.tensor(weights)


def decode_weighted(deltas, anchors, weights=(1.0, 1.0, 1.0, 1.0)):
    d = deltas / torch.tensor(weights)
    aw, ah = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
    cx, cy = anchors[:, 0] + aw / 2 + d[:, 0] * aw, anchors[:, 1] + ah / 2 + d[:, 1] * ah
    w, h = aw * torch.exp(d[:, 2]), ah * torch.exp(d[:, 3])
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=1)


def test_box_coding_checkers(capsys):
    assert check_encode_boxes(encode_weighted) is encode_weighted
    assert check_decode_boxes(decode_weighted) is decode_weighted
    assert capsys.readouterr().out.count("PASS") == 2
    assert check_encode_boxes(encode_unweighted) is encode_boxes
    assert "FAIL check_encode_boxes, case 'box head weights (10, 10, 5, 5)'" in capsys.readouterr().out
    corner_based = lambda d, a, weights=(1.0, 1.0, 1.0, 1.0): a + d  # noqa: E731
    assert check_decode_boxes(corner_based) is decode_boxes
    assert "FAIL check_decode_boxes, case '6 anchors moved by random deltas" in capsys.readouterr().out
    assert check_encode_boxes(stub) is encode_boxes and check_decode_boxes(stub) is decode_boxes
    assert capsys.readouterr().out.count("NOT YET") == 2


def greedy_nms(boxes, scores, thr, at_threshold=False):
    order = torch.sort(scores, descending=True, stable=True).indices.tolist()
    iou = reference_iou(boxes, boxes)
    keep = []
    for i in order:
        if not any((iou[k, i] >= thr) if at_threshold else (iou[k, i] > thr) for k in keep):
            keep.append(i)
    return torch.tensor(keep, dtype=torch.int64)


def nms_everyone_suppresses(boxes, scores, thr):  # wrong: suppressed boxes still suppress
    order = torch.sort(scores, descending=True, stable=True).indices.tolist()
    iou = reference_iou(boxes, boxes)
    keep = [i for n, i in enumerate(order) if not any(iou[k, i] > thr for k in order[:n])]
    return torch.tensor(keep, dtype=torch.int64)


def test_nms_checker(capsys):
    mine = lambda b, s, t: greedy_nms(b, s, t)  # noqa: E731
    assert check_nms(mine) is mine
    assert "PASS check_nms: all 8 cases" in capsys.readouterr().out
    assert check_nms(lambda b, s, t: greedy_nms(b, s, t, at_threshold=True)) is torchvision.ops.nms
    assert "case 'IoU exactly at the threshold is kept" in capsys.readouterr().out
    assert check_nms(nms_everyone_suppresses) is torchvision.ops.nms
    assert "FAIL check_nms" in capsys.readouterr().out
    assert check_nms(lambda b, s, t: greedy_nms(b, s, t).tolist()) is torchvision.ops.nms
    assert "a tensor was expected" in capsys.readouterr().out
    assert check_nms(stub) is torchvision.ops.nms
    assert "NOT YET check_nms" in capsys.readouterr().out


def test_nms_chain_case_catches_suppressed_boxes_that_suppress():
    chain = torch.tensor([[0., 0., 10., 10.], [4., 0., 14., 10.], [8., 0., 18., 10.]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    assert torchvision.ops.nms(chain, scores, 0.3).tolist() == [0, 2]
    assert nms_everyone_suppresses(chain, scores, 0.3).tolist() == [0]


@pytest.fixture(scope="module")
def course():
    from course_lib.data.shapes import render_sample
    from course_lib.detection.course_model import load_course_model

    model = load_course_model()
    samples = [render_sample(1, i) for i in range(3)]
    images = [torch.from_numpy(s.image).permute(2, 0, 1).float() / 255 for s in samples]
    gts = []
    for s in samples:
        boxes = []
        for m in torch.from_numpy(s.masks):
            ys, xs = torch.where(m)
            boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
        gts.append(torch.tensor(boxes, dtype=torch.float32))
    return model, images, gts, rpn_forward(model, images)


def test_rpn_forward_and_proposals_match_the_models_rpn(course):
    model, images, _, out = course
    assert out.decoded.shape == out.anchors.shape == (3, 4092, 4)
    assert out.objectness.shape == (3, 4092) and out.num_anchors_per_level == [3072, 768, 192, 48, 12]
    assert [tuple(m.shape) for m in out.maps][-1] == (3, 3, 2, 2)
    with torch.no_grad():
        image_list, _ = model.transform(images)
        expected, _ = model.rpn(image_list, model.backbone(image_list.tensors))
    boxes, scores = proposals(out)
    for b, s, e in zip(boxes, scores, expected, strict=True):
        assert torch.equal(b, e)
        assert bool((s[:-1] >= s[1:]).all())
    before = dict(vars(model.rpn))
    for kw in (dict(post_nms_top_n=1000, nms_thresh=0.6), dict(pre_nms_top_n=100, post_nms_top_n=1000, min_size=6.0)):
        ours = proposals(out, **kw)
        theirs = proposals(out, rpn=model.rpn, **kw)  # torchvision's filter_proposals, in a new RPN
        assert all(torch.equal(a, b) for a, b in zip(ours[0] + ours[1], theirs[0] + theirs[1], strict=True))
    any_size, _ = proposals(out, pre_nms_top_n=100, post_nms_top_n=1000, rpn=model.rpn)
    assert len(theirs[0][0]) < len(any_size[0])  # min_size 6 drops boxes: the setting reached the new RPN
    # the model's RPN is untouched: no attribute written (settings, modes, the private _pre/_post_nms_top_n)
    assert vars(model.rpn) == before and not model.rpn.training and not model.rpn.head.training
    assert model.rpn.nms_thresh == 0.7 and model.rpn.post_nms_top_n() == 250
    unmoved, _ = proposals(out, nms_thresh=1.0, moved=False)
    anchors = {tuple(a) for a in out.anchors[0].clamp(0, 128).tolist()}
    assert all(tuple(b) in anchors for b in unmoved[0][:50].tolist())


def test_rpn_forward_is_the_head_in_anchor_order(course):
    from course_lib.detection.rpn import rpn_head_outputs

    model, images, _, out = course
    with torch.no_grad():
        image_list, _ = model.transform(images)
        head = rpn_head_outputs(head=model.rpn.head, anchor_generator=model.rpn.anchor_generator, images=image_list,
                                features=model.backbone(image_list.tensors))
        decoded = model.rpn.box_coder.decode(head.pred_bbox_deltas, head.anchors)  # torchvision's BoxCoder
    assert torch.equal(out.objectness, head.objectness.view(3, -1))
    assert torch.equal(out.deltas, head.pred_bbox_deltas.view(3, -1, 4))
    assert torch.equal(out.anchors, torch.stack(head.anchors))
    assert torch.equal(out.decoded, decoded.view(3, -1, 4))
    assert all(torch.equal(m, torch.sigmoid(lg)) for m, lg in zip(out.maps, head.objectness_maps, strict=True))


def test_rpn_loss_inputs_give_torchvisions_rpn_losses(course):
    from course_lib.detection.rpn import rpn_loss

    model, images, gts, _ = course
    inputs = rpn_loss_inputs(model, images[0], gts[0], seed=0)
    assert inputs["objectness"].shape == (4092, 1) and inputs["pred_bbox_deltas"].shape == (4092, 4)
    assert 0 < len(inputs["sampled_pos_inds"]) and len(inputs["sampled_pos_inds"]) + len(
        inputs["sampled_neg_inds"]) == 256
    objectness_loss, box_loss = rpn_loss(**inputs)
    reference = torchvision_rpn_losses(model, images[0], gts[0], seed=0)
    assert objectness_loss.item() == pytest.approx(reference["loss_objectness"], rel=1e-5)
    assert box_loss.item() == pytest.approx(reference["loss_rpn_box_reg"], rel=1e-5)
    other_seed = rpn_loss(**rpn_loss_inputs(model, images[0], gts[0], seed=1))
    assert other_seed[0].item() != objectness_loss.item()  # the seed picks the sampled anchors


def test_recall_curve(course):
    _, _, gts, out = course
    counts = [1, 5, 50, 250]
    curve = recall_curve(out, gts, counts)
    assert curve.shape == (4, 2)
    assert bool((curve[1:] >= curve[:-1]).all()) and bool((curve[:, 1] <= curve[:, 0]).all())
    assert curve[-1, 0] > 0.9  # the trained RPN finds the shapes
    assert torch.equal(recall_curve(out, gts, counts, rpn=course[0].rpn), curve)
    unmoved = recall_curve(out, gts, counts, moved=False)
    assert unmoved[-1, 1] < curve[-1, 1]  # the box codes matter at IoU 0.7


def test_proposal_explorer_headless_draws_once(course, monkeypatch):
    _, images, gts, out = course
    monkeypatch.setenv("COURSE_HEADLESS", "1")
    assert proposal_explorer(out, images[0], gts[0]) is None


def test_proposal_explorer_widget_redraws(course, monkeypatch):
    import ipywidgets

    _, images, gts, out = course
    monkeypatch.setenv("COURSE_HEADLESS", "0")
    w = proposal_explorer(out, images[0], gts[0], nms_thresh=0.5, top_k=10, rpn=course[0].rpn)
    assert isinstance(w, ipywidgets.interactive)
    slider = next(c for c in w.children if getattr(c, "description", "") == "NMS IoU")
    kept_at_half = w.result
    slider.value = 1.0  # NMS off: every candidate stays
    assert w.result > kept_at_half


def test_figures_draw(course):
    from course_lib.detection._utils import Matcher
    from course_lib.detection.anchor_utils import anchors_for_image
    from course_lib.detection.rpn import assign_targets_to_anchors

    _, images, gts, out = course
    image, gt = images[0], gts[0]
    sizes = [(32, 32), (16, 16), (8, 8), (4, 4), (2, 2)]
    anchors = anchors_for_image((128, 128), sizes, [12, 24, 48, 96, 192], [0.5, 1.0, 2.0])
    all_anchors = torch.cat(anchors)
    labels, matched = assign_targets_to_anchors(all_anchors, gt, Matcher(0.7, 0.3, True))
    best = reference_iou(gt, all_anchors).max(dim=0).values
    table = anchor_label_counts(labels, best, [len(a) for a in anchors])
    assert table.splitlines()[-1].split()[1] == "4092"
    figures = [
        fpn_diagram(),
        stride_grid_figure(image[:, :97], ["P2", "P6"]),
        anchor_figure(image, anchors, sizes, 3, [12, 24, 48, 96, 192], [0.5, 1.0, 2.0]),
        iou_figure([(torch.tensor([0., 0., 4., 4.]), torch.tensor([2., 2., 6., 6.]))], [1 / 7]),
        anchor_labels_figure(image, gt, all_anchors, labels, best),
        sampling_figure(image, gt, all_anchors, labels, labels == 1, labels == 0),
        box_coding_figure(all_anchors[0], gt[0], encode_boxes(gt[:1], all_anchors[:1])[0]),
        objectness_figure(image, out.maps, gt, [12, 24, 48, 96, 192]),
        proposals_figure(image, [(b[:5], s[:5], "t") for b, s in zip(*proposals(out), strict=True)][:1], gt),
        recall_figure([1, 10], {"a": torch.rand(2, 2)}),
    ]
    assert all(isinstance(f, plt.Figure) for f in figures)
