"""torchvision's own tests of the detection helpers, ported to ``course_lib.detection``.

Sources: ``test/test_models_detection_anchor_utils.py`` (class ``Tester``) and
``test/test_models_detection_utils.py`` (class ``TestModelsDetectionUtils``). Each test is named
``test_<Class>_<test>``, keeps the source's inputs and expected values, and also compares with
torchvision's class where that means something. Differences on purpose are said in the docstring.
"""

import pytest
import torch
from torchvision.models.detection import _utils as tv_utils
from torchvision.models.detection.anchor_utils import AnchorGenerator as TVAnchorGenerator
from torchvision.models.detection.image_list import ImageList

from course_lib.detection._utils import BalancedPositiveNegativeSampler, BoxCoder, Matcher
from course_lib.detection.anchor_utils import AnchorGenerator

pytestmark = pytest.mark.equality  # compared with torchvision: ./course test --cpu-variants runs it

# ------------------------------------------------------------------------------ AnchorGenerator


def test_Tester_incorrect_anchors():
    """Ported from torchvision test/test_models_detection_anchor_utils.py::Tester::test_incorrect_anchors.

    Two anchor levels, one feature map. torchvision raises AssertionError (``torch._assert``); ours raises
    ValueError naming both counts. Before the fix ours silently returned the anchors of the first level.
    """
    incorrect_sizes = ((2, 4, 8), (32, 8))
    incorrect_aspects = (0.5, 1.0)
    image_list = ImageList(torch.randn(3, 800, 800), [(800, 800)])
    feature_maps = [torch.randn(1, 50)]
    with pytest.raises(ValueError, match="got 1 feature maps for 2 anchor levels"):
        AnchorGenerator(incorrect_sizes, incorrect_aspects)(image_list, feature_maps)
    with pytest.raises(AssertionError):
        TVAnchorGenerator(incorrect_sizes, incorrect_aspects)(image_list, feature_maps)


def test_Tester_incorrect_anchors_more_feature_maps():
    """After torchvision test/test_models_detection_anchor_utils.py::Tester::test_incorrect_anchors,
    the other way round: one anchor level (the default), three FPN maps, as when a torchvision model
    gets ``AnchorGenerator()`` without one size tuple per level."""
    images = ImageList(torch.zeros(1, 3, 64, 64), [(64, 64)])
    features = [torch.zeros(1, 4, 16, 16), torch.zeros(1, 4, 8, 8), torch.zeros(1, 4, 4, 4)]
    with pytest.raises(ValueError, match="got 3 feature maps for 1 anchor levels"):
        AnchorGenerator()(images, features)
    with pytest.raises(AssertionError):
        TVAnchorGenerator()(images, features)


def test_Tester_anchor_generator():
    """Ported from torchvision test/test_models_detection_anchor_utils.py::Tester::test_anchor_generator."""
    images = torch.randn(2, 3, 15, 15)
    features = [torch.rand(2, 8, 15 // 5, 15 // 5)]
    image_shapes = [i.shape[-2:] for i in images]
    images = ImageList(images, image_shapes)

    model = AnchorGenerator(((10,),), ((1,),))
    model.eval()
    anchors = model(images, features)

    # Estimate the number of target anchors
    grid_sizes = [f.shape[-2:] for f in features]
    num_anchors_estimated = 0
    for sizes, num_anchors_per_loc in zip(grid_sizes, model.num_anchors_per_location(), strict=True):
        num_anchors_estimated += sizes[0] * sizes[1] * num_anchors_per_loc

    anchors_output = torch.tensor(
        [
            [-5.0, -5.0, 5.0, 5.0],
            [0.0, -5.0, 10.0, 5.0],
            [5.0, -5.0, 15.0, 5.0],
            [-5.0, 0.0, 5.0, 10.0],
            [0.0, 0.0, 10.0, 10.0],
            [5.0, 0.0, 15.0, 10.0],
            [-5.0, 5.0, 5.0, 15.0],
            [0.0, 5.0, 10.0, 15.0],
            [5.0, 5.0, 15.0, 15.0],
        ]
    )

    assert num_anchors_estimated == 9
    assert len(anchors) == 2
    assert tuple(anchors[0].shape) == (9, 4)
    assert tuple(anchors[1].shape) == (9, 4)
    torch.testing.assert_close(anchors[0], anchors_output, rtol=0, atol=0)
    torch.testing.assert_close(anchors[1], anchors_output, rtol=0, atol=0)
    for ours, theirs in zip(anchors, TVAnchorGenerator(((10,),), ((1,),))(images, features), strict=True):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_Tester_anchor_generator_dtypes(dtype):
    """After torchvision test/test_models_detection_anchor_utils.py::Tester::test_anchor_generator,
    with feature maps of other dtypes: the anchors take the feature maps' dtype, equal to torchvision's."""
    images = ImageList(torch.zeros(1, 3, 64, 48), [(64, 48)])
    features = [torch.zeros(1, 4, 16, 12, dtype=dtype), torch.zeros(1, 4, 8, 6, dtype=dtype)]
    sizes, ratios = ((16, 24), (48,)), ((0.5, 1.0, 2.0), (1.0,))
    ours = AnchorGenerator(sizes, ratios)(images, features)[0]
    theirs = TVAnchorGenerator(sizes, ratios)(images, features)[0]
    assert ours.dtype == theirs.dtype == dtype
    torch.testing.assert_close(ours, theirs, rtol=0, atol=0)


# ------------------------------------------------------- BalancedPositiveNegativeSampler, BoxCoder


def test_TestModelsDetectionUtils_balanced_positive_negative_sampler():
    """Ported from torchvision test/test_models_detection_utils.py::TestModelsDetectionUtils::
    test_balanced_positive_negative_sampler. Also: under the same seed, the same picks as torchvision's."""
    sampler = BalancedPositiveNegativeSampler(4, 0.25)
    # keep all 6 negatives first, then add 3 positives, last two are ignore
    matched_idxs = [torch.tensor([0, 0, 0, 0, 0, 0, 1, 1, 1, -1, -1])]
    torch.manual_seed(0)
    pos, neg = sampler(matched_idxs)
    # we know the number of elements that should be sampled for the positive (1)
    # and the negative (3), and their location. Let's make sure that they are there
    assert pos[0].sum() == 1
    assert pos[0][6:9].sum() == 1
    assert neg[0].sum() == 3
    assert neg[0][0:6].sum() == 3

    torch.manual_seed(0)
    tv_pos, tv_neg = tv_utils.BalancedPositiveNegativeSampler(4, 0.25)(matched_idxs)
    assert pos[0].dtype == tv_pos[0].dtype == torch.uint8
    torch.testing.assert_close(pos[0], tv_pos[0], rtol=0, atol=0)
    torch.testing.assert_close(neg[0], tv_neg[0], rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
def test_TestModelsDetectionUtils_box_linear_coder(dtype):
    """Adapted from torchvision test/test_models_detection_utils.py::TestModelsDetectionUtils::test_box_linear_coder.

    The source tests ``BoxLinearCoder`` (FCOS), which the course does not have; the same inputs go
    through ``BoxCoder`` here: encode then decode gives the boxes back (the source's ``torch.allclose``
    is not asserted, and decodes against the wrong boxes; here the round trip is asserted), and the
    codes and boxes equal torchvision's ``BoxCoder.encode_single`` / ``decode_single`` (float16 added).
    """
    torch.manual_seed(0)
    # Generate a random 10x4 boxes tensor, with coordinates < 50.
    boxes = torch.rand(10, 4) * 50
    boxes.clamp_(min=1.0)  # tiny boxes cause numerical instability in box regression
    boxes[:, 2:] += boxes[:, :2]
    proposals = torch.tensor([0, 0, 101, 101] * 10).reshape(10, 4).float()
    boxes, proposals = boxes.to(dtype), proposals.to(dtype)

    box_coder = BoxCoder((10.0, 10.0, 5.0, 5.0))
    rel_codes = box_coder.encode_single(boxes, proposals)
    pred_boxes = box_coder.decode_single(rel_codes, proposals)
    tol = dict(rtol=2e-3, atol=0.01) if dtype == torch.float16 else dict(rtol=0, atol=1e-4)
    torch.testing.assert_close(pred_boxes, boxes, **tol)

    tv_coder = tv_utils.BoxCoder((10.0, 10.0, 5.0, 5.0))
    tv_codes = tv_coder.encode_single(boxes, proposals)
    torch.testing.assert_close(rel_codes, tv_codes, rtol=0, atol=0)
    torch.testing.assert_close(pred_boxes, tv_coder.decode_single(tv_codes, proposals), rtol=0, atol=0)


def test_TestModelsDetectionUtils_matcher_low_quality():
    """Not a torchvision test (its test files have none for ``Matcher``): the three outcomes and the
    low-quality rule on a small IoU matrix, equal to torchvision's ``Matcher``."""
    iou = torch.tensor([[0.9, 0.5, 0.1, 0.2], [0.1, 0.2, 0.25, 0.75]])
    for low_quality in (False, True):
        ours = Matcher(0.7, 0.3, low_quality)(iou)
        theirs = tv_utils.Matcher(0.7, 0.3, low_quality)(iou)
        torch.testing.assert_close(ours, theirs, rtol=0, atol=0)
    assert Matcher(0.7, 0.3, False)(iou).tolist() == [0, -2, -1, 1]
