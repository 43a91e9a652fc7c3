"""course_lib.detection.rpn agrees with torchvision.models.detection's RPN pieces."""

import pytest
import torch
import torchvision
from torchvision.models.detection import _utils as det_utils
from torchvision.models.detection import rpn as tv_rpn
from torchvision.models.detection.anchor_utils import (
    AnchorGenerator as TVAnchorGenerator,
)
from torchvision.models.detection.image_list import ImageList

from course_lib.detection._utils import (
    BalancedPositiveNegativeSampler,
    BoxCoder,
    Matcher,
)
from course_lib.detection.anchor_utils import anchors_for_image
from course_lib.detection.rpn import (
    RegionProposalNetwork,
    RPNHead,
    assign_targets_to_anchors,
    concat_box_prediction_layers,
    filter_proposals,
    proposal_recall,
    rpn_head_outputs,
)
from course_lib.ops.boxes import box_iou

pytestmark = pytest.mark.equality  # compared with torchvision: ./course test --cpu-variants runs it

SEEDS = [0, 1, 2]


def rand_boxes(n, seed, size=200.0, min_wh=4.0, max_wh=80.0):
    g = torch.Generator().manual_seed(seed)
    ctr = torch.rand(n, 2, generator=g) * size
    wh = torch.rand(n, 2, generator=g) * (max_wh - min_wh) + min_wh
    return torch.cat([ctr - wh / 2, ctr + wh / 2], dim=1)


def tv_rpn_module(pre=300, post=100, nms_thresh=0.7, score_thresh=0.0, fg=0.7, bg=0.3):
    return tv_rpn.RegionProposalNetwork(
        TVAnchorGenerator(), tv_rpn.RPNHead(8, 3), fg, bg, 256, 0.5,
        dict(training=pre, testing=pre), dict(training=post, testing=post), nms_thresh,
        score_thresh=score_thresh).eval()


ANCHORS = torch.cat(anchors_for_image((128, 160), [(32, 40), (16, 20), (8, 10)],
                                     ((16,), (32,), (64,)), (0.5, 1.0, 2.0)))


# ---------------------------------------------------------------- Matcher

@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("low_quality", [True, False])
@pytest.mark.parametrize("thresholds", [(0.7, 0.3), (0.5, 0.5), (0.6, 0.4)])
def test_matcher_matches_torchvision(seed, low_quality, thresholds):
    gt = rand_boxes(6, seed, size=128)
    iou = box_iou(gt, ANCHORS)
    ours = Matcher(*thresholds, allow_low_quality_matches=low_quality)(iou)
    theirs = det_utils.Matcher(*thresholds, allow_low_quality_matches=low_quality)(iou)
    assert ours.dtype == torch.int64
    assert torch.equal(ours, theirs)
    assert set(ours.unique().tolist()) <= set(range(-2, 6))
    assert (ours == -1).any() and (ours >= 0).any()


def test_matcher_semantics_and_ties():
    # 2 gt x 5 anchors; anchors 3 and 4 tie as gt 1's best (0.4): low-quality matches get both
    iou = torch.tensor([[0.9, 0.2, 0.5, 0.1, 0.1],
                        [0.1, 0.25, 0.3, 0.4, 0.4]])
    ours = Matcher(0.7, 0.3, allow_low_quality_matches=False)(iou.clone())
    assert ours.tolist() == [0, -1, -2, -2, -2]
    ours = Matcher(0.7, 0.3, allow_low_quality_matches=True)(iou.clone())
    assert ours.tolist() == [0, -1, -2, 1, 1]
    assert torch.equal(ours, det_utils.Matcher(0.7, 0.3, True)(iou.clone()))
    # exactly at a threshold: >= high is a match, >= low is "between"
    iou = torch.tensor([[0.7, 0.3, 0.2999]])
    assert Matcher(0.7, 0.3, False)(iou).tolist() == [0, -2, -1]


def test_matcher_duplicate_anchors_and_gt():
    anchors = torch.cat([ANCHORS[:50], ANCHORS[:50]])  # every anchor twice: tied best IoUs
    gt = torch.cat([rand_boxes(3, 5, size=60), rand_boxes(3, 5, size=60)])  # every gt twice
    iou = box_iou(gt, anchors)
    assert torch.equal(Matcher()(iou.clone()), det_utils.Matcher(0.7, 0.3, True)(iou.clone()))


def test_matcher_empty_raises_like_torchvision():
    with pytest.raises(ValueError, match="No ground-truth"):
        Matcher()(torch.zeros(0, 10))
    with pytest.raises(ValueError, match="No proposal"):
        Matcher()(torch.zeros(3, 0))
    with pytest.raises(ValueError):
        Matcher(0.3, 0.7)


# ---------------------------------------------------------------- assign_targets_to_anchors

@pytest.mark.parametrize("seed", SEEDS)
def test_label_anchors_matches_torchvision(seed):
    gt = rand_boxes(5, seed, size=128)
    labels, matched = assign_targets_to_anchors(ANCHORS, gt, Matcher(0.7, 0.3, True))
    tl, tm = tv_rpn_module().assign_targets_to_anchors([ANCHORS], [{"boxes": gt}])
    assert labels.dtype == torch.float32 and matched.shape == ANCHORS.shape
    assert torch.equal(labels, tl[0]) and torch.equal(matched, tm[0])
    assert set(labels.unique().tolist()) == {-1.0, 0.0, 1.0}
    # low-quality matches: the anchor(s) that overlap a gt box most are positive, even < 0.7
    best = box_iou(gt, ANCHORS).argmax(dim=1)
    assert (labels[best] == 1).all()
    assert (labels == 1).sum() > (box_iou(gt, ANCHORS).max(dim=0).values >= 0.7).sum()


def test_label_anchors_no_gt_and_all_negative():
    labels, matched = assign_targets_to_anchors(ANCHORS, torch.zeros(0, 4), Matcher())
    assert (labels == 0).all() and (matched == 0).all() and matched.shape == ANCHORS.shape
    tl, tm = tv_rpn_module().assign_targets_to_anchors([ANCHORS], [{"boxes": torch.zeros(0, 4)}])
    assert torch.equal(labels, tl[0]) and torch.equal(matched, tm[0])
    # a gt box far outside the image: it overlaps no anchor, so without low-quality matches
    # every anchor is background
    far = torch.tensor([[1000.0, 1000.0, 1010.0, 1010.0]])
    labels, _ = assign_targets_to_anchors(ANCHORS, far, Matcher(0.7, 0.3, False))
    assert (labels == 0).all()
    # with them, torchvision's quirk: the "best" IoU is 0, so every anchor ties and matches it
    labels, matched = assign_targets_to_anchors(ANCHORS, far, Matcher(0.7, 0.3, True))
    tl, tm = tv_rpn_module().assign_targets_to_anchors([ANCHORS], [{"boxes": far}])
    assert torch.equal(labels, tl[0]) and torch.equal(matched, tm[0])
    # a tiny gt box partly outside the image
    gt = torch.tensor([[-5.0, -5.0, 3.0, 3.0], [150.0, 120.0, 170.0, 140.0]])
    labels, matched = assign_targets_to_anchors(ANCHORS, gt, Matcher())
    tl, tm = tv_rpn_module().assign_targets_to_anchors([ANCHORS], [{"boxes": gt}])
    assert torch.equal(labels, tl[0]) and torch.equal(matched, tm[0])
    assert (labels == 1).sum() >= 2


# ---------------------------------------------------------------- sampler

@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("batch,fraction", [(256, 0.5), (64, 0.25), (10, 1.0)])
def test_sampler_equals_torchvision_under_same_seed(seed, batch, fraction):
    g = torch.Generator().manual_seed(seed)
    labels = [torch.randint(-1, 2, (500,), generator=g).float(),
              (torch.rand(300, generator=g) < 0.02).float(),  # few positives
              torch.full((40,), -1.0)]                         # all ignored
    torch.manual_seed(seed)
    pos, neg = BalancedPositiveNegativeSampler(batch, fraction)(labels)
    torch.manual_seed(seed)
    tpos, tneg = det_utils.BalancedPositiveNegativeSampler(batch, fraction)(labels)
    for p, n, tp, tn, lab in zip(pos, neg, tpos, tneg, labels, strict=True):
        assert p.dtype == n.dtype == torch.uint8
        assert torch.equal(p, tp) and torch.equal(n, tn)
        # invariants: picks are real positives / negatives, never both, within the budget
        assert (lab[p.bool()] == 1).all() and (lab[n.bool()] == 0).all()
        assert not (p.bool() & n.bool()).any()
        n_pos, n_neg = int(p.sum()), int(n.sum())
        assert n_pos <= int(batch * fraction) and n_pos + n_neg <= batch
        assert n_pos == min(int((lab == 1).sum()), int(batch * fraction))
        assert n_neg == min(int((lab == 0).sum()), batch - n_pos)  # negatives fill the gap


# ---------------------------------------------------------------- head

@pytest.mark.parametrize("seed", SEEDS)
def test_rpn_head_same_init_and_state_dict(seed):
    torch.manual_seed(seed)
    ours = RPNHead(16, 3)
    torch.manual_seed(seed)
    theirs = tv_rpn.RPNHead(16, 3)
    sd_ours, sd_theirs = ours.state_dict(), theirs.state_dict()
    assert list(sd_ours) == list(sd_theirs)
    for k in sd_ours:
        assert torch.equal(sd_ours[k], sd_theirs[k]), k
    assert float(sd_ours["cls_logits.weight"].std()) == pytest.approx(0.01, rel=0.3)
    assert (sd_ours["bbox_pred.bias"] == 0).all()
    # interchangeable both ways, and the same outputs
    other = RPNHead(16, 3)
    other.load_state_dict(theirs.state_dict())
    theirs.load_state_dict(ours.state_dict())
    feats = [torch.randn(2, 16, h, w, generator=torch.Generator().manual_seed(seed))
             for h, w in [(25, 33), (13, 17), (7, 9)]]
    (lo, bo), (lt, bt) = other(feats), theirs(feats)
    for a, b, (h, w) in zip(lo, lt, [(25, 33), (13, 17), (7, 9)], strict=True):
        assert a.shape == (2, 3, h, w)
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    for a, b in zip(bo, bt, strict=True):
        assert a.shape[1] == 12
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_concat_box_prediction_layers_matches_torchvision():
    g = torch.Generator().manual_seed(0)
    cls = [torch.randn(2, 3, h, w, generator=g) for h, w in [(5, 7), (3, 4)]]
    reg = [torch.randn(2, 12, h, w, generator=g) for h, w in [(5, 7), (3, 4)]]
    o, d = concat_box_prediction_layers(cls, reg)
    to, td = tv_rpn.concat_box_prediction_layers(cls, reg)
    assert o.shape == (2 * (35 + 12) * 3, 1) and d.shape == (2 * (35 + 12) * 3, 4)
    assert torch.equal(o, to) and torch.equal(d, td)
    # anchor order: image 0, level 0, cell (0, 1), anchor 2 -> (0*7 + 1)*3 + 2
    assert o[5, 0] == cls[0][0, 2, 0, 1]
    assert torch.equal(d[5], reg[0][0, 8:12, 0, 1])


# ---------------------------------------------------------------- filter_proposals

def make_proposals(seed, n_per_level=(1200, 300, 80), num_images=2, tied=False):
    g = torch.Generator().manual_seed(seed)
    n = sum(n_per_level)
    ctr = torch.rand(num_images, n, 2, generator=g) * 180 - 10   # some centres outside the image
    wh = torch.rand(num_images, n, 2, generator=g) * 60
    wh[:, ::17] = 1e-4                                           # tiny boxes, removed
    proposals = torch.cat([ctr - wh / 2, ctr + wh / 2], dim=2)
    objectness = torch.randn(num_images, n, generator=g) * 3
    if tied:
        objectness = objectness.round()
    return proposals, objectness, list(n_per_level)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("pre,post,nms_thresh,score_thresh", [
    (300, 100, 0.7, 0.0), (2000, 2000, 0.7, 0.0), (50, 20, 0.5, 0.3), (500, 1000, 0.3, 0.9)])
def test_filter_proposals_matches_torchvision(seed, pre, post, nms_thresh, score_thresh):
    proposals, objectness, per_level = make_proposals(seed)
    shapes = [(128, 160), (97, 131)]
    boxes, scores = filter_proposals(proposals, objectness, shapes, per_level, pre, post,
                                       nms_thresh, score_thresh)
    tb, ts = tv_rpn_module(pre, post, nms_thresh, score_thresh).filter_proposals(
        proposals, objectness, shapes, per_level)
    for b, s, b2, s2, (h, w) in zip(boxes, scores, tb, ts, shapes, strict=True):
        assert torch.equal(b, b2) and torch.equal(s, s2)
        assert 0 < len(b) <= post
        assert (b[:, 0::2] <= w).all() and (b[:, 1::2] <= h).all() and (b >= 0).all()
        assert ((b[:, 2:] - b[:, :2]) >= 1e-3).all() and (s >= score_thresh).all()


def test_filter_proposals_tied_scores_and_objectness_shape():
    proposals, objectness, per_level = make_proposals(7, tied=True)
    shapes = [(150, 150), (150, 150)]
    # objectness as the head gives it: (B * N, 1)
    boxes, scores = filter_proposals(proposals, objectness.reshape(-1, 1), shapes, per_level,
                                       1000, 300, 0.7)
    tb, ts = tv_rpn_module(1000, 300).filter_proposals(proposals, objectness.reshape(-1, 1),
                                                       shapes, per_level)
    for b, s, b2, s2 in zip(boxes, scores, tb, ts, strict=True):
        assert torch.equal(b, b2) and torch.equal(s, s2)


def test_filter_proposals_everything_filtered():
    proposals, objectness, per_level = make_proposals(3, num_images=1)
    boxes, scores = filter_proposals(proposals, objectness, [(128, 128)], per_level,
                                       100, 50, 0.7, score_thresh=1.01)
    assert boxes[0].shape == (0, 4) and scores[0].shape == (0,)
    # boxes entirely outside the image clip to zero size and are removed
    outside = torch.tensor([[[200.0, 200.0, 250.0, 260.0], [-50.0, 10.0, -5.0, 40.0]]])
    boxes, _ = filter_proposals(outside, torch.zeros(1, 2), [(128, 128)], [2], 10, 10, 0.7)
    assert boxes[0].shape == (0, 4)


def test_full_rpn_equals_torchvision_region_proposal_network():
    # head -> anchors -> decode -> filter, all from course_lib, equals torchvision's RPN forward
    torch.manual_seed(0)
    tv = tv_rpn.RegionProposalNetwork(
        TVAnchorGenerator(((16,), (32,), (64,)), ((0.5, 1.0, 2.0),) * 3), tv_rpn.RPNHead(8, 3),
        0.7, 0.3, 256, 0.5, dict(training=200, testing=200), dict(training=60, testing=60),
        0.7).eval()
    head = RPNHead(8, 3)
    head.load_state_dict(tv.head.state_dict())
    g = torch.Generator().manual_seed(0)
    feats = [torch.randn(2, 8, h, w, generator=g) * 5 for h, w in [(25, 33), (13, 17), (7, 9)]]
    images = ImageList(torch.zeros(2, 3, 100, 131), [(100, 131), (90, 120)])
    with torch.no_grad():
        expected, _ = tv(images, {str(i): f for i, f in enumerate(feats)})
        logits, deltas = head(feats)
    anchors = torch.cat(anchors_for_image((100, 131), [f.shape[-2:] for f in feats],
                                         ((16,), (32,), (64,)), (0.5, 1.0, 2.0)))
    objectness, deltas = concat_box_prediction_layers(logits, deltas)
    proposals = BoxCoder((1.0, 1.0, 1.0, 1.0)).decode_single(deltas, anchors.repeat(2, 1)).view(2, -1, 4)
    per_level = [3 * h * w for h, w in [(25, 33), (13, 17), (7, 9)]]
    boxes, _ = filter_proposals(proposals, objectness, images.image_sizes, per_level, 200, 60, 0.7)
    for b, e in zip(boxes, expected, strict=True):
        assert len(b) == 60
        assert torch.equal(b, e)


# ---------------------------------------------------------------- rpn_head_outputs and the module

def test_rpn_head_outputs_equal_what_torchvisions_rpn_computes(monkeypatch):
    # The course model (torchvision's MaskRCNN) on two images: record what torchvision's RPN.forward computes
    # inside (its concat_box_prediction_layers and its anchor generator), then compare.
    from course_lib.data.shapes import shapes_sample
    from course_lib.detection.course_model import load_course_model

    model = load_course_model()
    images = [shapes_sample(1, 0)[0], shapes_sample(1, 1)[0][:, :100, :]]  # the second one smaller: padded
    seen = {}
    real_concat = tv_rpn.concat_box_prediction_layers

    def recording_concat(box_cls, box_regression):
        seen["maps"] = (box_cls, box_regression)
        seen["flat"] = real_concat(box_cls, box_regression)
        return seen["flat"]

    monkeypatch.setattr(tv_rpn, "concat_box_prediction_layers", recording_concat)
    handle = model.rpn.anchor_generator.register_forward_hook(lambda m, args, out: seen.setdefault("anchors", out))
    try:
        with torch.no_grad():
            image_list, _ = model.transform(images)
            features = model.backbone(image_list.tensors)
            expected, _ = model.rpn(image_list, features)
            out = rpn_head_outputs(head=model.rpn.head, anchor_generator=model.rpn.anchor_generator,
                                   images=image_list, features=features)
            from_list = rpn_head_outputs(head=model.rpn.head, anchor_generator=model.rpn.anchor_generator,
                                         images=image_list, features=list(features.values()))
    finally:
        handle.remove()
    assert out.num_anchors_per_level == [3072, 768, 192, 48, 12]
    assert out.objectness.shape == (2 * 4092, 1) and out.pred_bbox_deltas.shape == (2 * 4092, 4)
    assert torch.equal(out.objectness, seen["flat"][0]) and torch.equal(out.pred_bbox_deltas, seen["flat"][1])
    assert len(out.anchors) == 2 and all(torch.equal(a, b) for a, b in zip(out.anchors, seen["anchors"], strict=True))
    for ours, theirs in zip(out.objectness_maps + out.deltas_maps, seen["maps"][0] + seen["maps"][1], strict=True):
        assert torch.equal(ours, theirs)
    assert [tuple(m.shape) for m in out.objectness_maps][0] == (2, 3, 32, 32)
    assert all(torch.equal(a, b) for a, b in zip(out[:2], from_list[:2], strict=True))  # a dict or a list
    # the anchor order is not a plain flatten of the maps (A before H, W): a wrong order would be caught
    plain = torch.cat([m.flatten(1) for m in out.objectness_maps], 1).flatten()
    assert not torch.equal(out.objectness.flatten(), plain)
    # decoded and filtered as torchvision does, they give torchvision's proposals
    decoded = model.rpn.box_coder.decode(out.pred_bbox_deltas, out.anchors).view(2, -1, 4)
    boxes, _ = filter_proposals(decoded, out.objectness, image_list.image_sizes, out.num_anchors_per_level,
                                500, 250, 0.7)
    assert all(torch.equal(b, e) for b, e in zip(boxes, expected, strict=True))


def _rpn_pair():
    torch.manual_seed(0)
    tv = tv_rpn.RegionProposalNetwork(
        TVAnchorGenerator(((16,), (32,), (64,)), ((0.5, 1.0, 2.0),) * 3), tv_rpn.RPNHead(8, 3),
        0.7, 0.3, 64, 0.5, dict(training=300, testing=200), dict(training=100, testing=60), 0.7)
    from course_lib.detection.anchor_utils import AnchorGenerator

    ours = RegionProposalNetwork(AnchorGenerator(((16,), (32,), (64,)), ((0.5, 1.0, 2.0),) * 3), RPNHead(8, 3),
                                 0.7, 0.3, 64, 0.5, dict(training=300, testing=200), dict(training=100, testing=60),
                                 0.7)
    ours.load_state_dict(tv.state_dict())
    g = torch.Generator().manual_seed(0)
    feats = {str(i): torch.randn(2, 8, h, w, generator=g) * 5
             for i, (h, w) in enumerate([(25, 33), (13, 17), (7, 9)])}
    images = ImageList(torch.zeros(2, 3, 100, 131), [(100, 131), (90, 120)])
    targets = [{"boxes": torch.tensor([[10.0, 12.0, 60.0, 50.0], [70.0, 20.0, 120.0, 90.0]])},
               {"boxes": torch.tensor([[5.0, 5.0, 40.0, 80.0]])}]
    return tv, ours, feats, images, targets


def test_region_proposal_network_module_equals_torchvisions():
    tv, ours, feats, images, targets = _rpn_pair()
    with torch.no_grad():
        (expected, _), (boxes, _) = tv.eval()(images, feats), ours.eval()(images, feats)
        assert all(len(b) == 60 and torch.equal(b, e) for b, e in zip(boxes, expected, strict=True))
        # the filter_proposals method has torchvision's signature and the module's settings
        out = rpn_head_outputs(head=ours.head, anchor_generator=ours.anchor_generator, images=images, features=feats)
        decoded = tv.box_coder.decode(out.pred_bbox_deltas, out.anchors).view(2, -1, 4)
        args = (decoded, out.objectness, images.image_sizes, out.num_anchors_per_level)
        for (b, s), (eb, es) in zip(zip(*ours.filter_proposals(*args), strict=True),
                                    zip(*tv.filter_proposals(*args), strict=True), strict=True):
            assert torch.equal(b, eb) and torch.equal(s, es)
        torch.manual_seed(1)
        expected, tv_losses = tv.train()(images, feats, targets)
        torch.manual_seed(1)
        boxes, losses = ours.train()(images, feats, targets)
    assert all(len(b) == 100 and torch.equal(b, e) for b, e in zip(boxes, expected, strict=True))
    assert set(losses) == set(tv_losses) == {"loss_objectness", "loss_rpn_box_reg"}
    for k in losses:
        torch.testing.assert_close(losses[k], tv_losses[k], rtol=1e-6, atol=1e-7)
    assert float(losses["loss_rpn_box_reg"]) > 0


# ---------------------------------------------------------------- recall

def brute_force_recall(proposals, gt, thresholds, counts):
    iou = torchvision.ops.box_iou(gt, proposals).tolist()  # plain Python from here on
    out = torch.zeros(len(counts), len(thresholds))
    for i, c in enumerate(counts):
        for j, t in enumerate(thresholds):
            hits = sum(max(row[:c], default=0.0) >= t for row in iou)
            out[i, j] = hits / len(gt)
    return out


def test_proposal_recall_known_values():
    gt = torch.tensor([[0.0, 0.0, 10.0, 10.0], [50.0, 50.0, 70.0, 70.0]])
    props = torch.tensor([[0.0, 0.0, 10.0, 10.0],     # gt 0, IoU 1
                          [100.0, 100.0, 110.0, 110.0],
                          [50.0, 50.0, 70.0, 65.0]])  # gt 1, IoU 0.75
    r = proposal_recall(props, gt, iou_thresholds=(0.5, 0.8), counts=(0, 1, 2, 3, 10))
    assert r.shape == (5, 2)
    assert r.tolist() == [[0.0, 0.0], [0.5, 0.5], [0.5, 0.5], [1.0, 0.5], [1.0, 0.5]]


@pytest.mark.parametrize("seed", SEEDS)
def test_proposal_recall_brute_force_and_lists(seed):
    gt = rand_boxes(6, seed)
    props = rand_boxes(40, seed + 10)
    thresholds, counts = (0.3, 0.5, 0.7), (1, 5, 20, 40, 100)
    r = proposal_recall(props, gt, thresholds, counts)
    torch.testing.assert_close(r, brute_force_recall(props, gt, thresholds, counts))
    assert (r[1:] >= r[:-1]).all() and (r[:, 1:] <= r[:, :-1]).all()  # monotone
    # two images: recall over all gt boxes, an image without proposals counts as misses
    r2 = proposal_recall([props, torch.zeros(0, 4)], [gt, gt], thresholds, counts)
    torch.testing.assert_close(r2, r / 2)


def test_proposal_recall_no_gt_is_nan():
    r = proposal_recall(rand_boxes(5, 0), torch.zeros(0, 4), (0.5,), (10,))
    assert r.shape == (1, 1) and torch.isnan(r).all()
