"""Notebook 06's "When training goes wrong": each pitfall still raises the message the notebook explains.

If a torchvision (or pycocotools) release rewords a message, the test that fails names the pitfall: update the
expected text here and the explanation in solutions/06_fine_tuning.ipynb.
"""

import pytest
import torch

from course_lib.lessons import training_pitfalls as P


def test_catch_returns_the_type_and_first_line_or_none():
    def boom():
        raise ValueError("first line\nsecond line")

    assert P.catch(boom) == "ValueError: first line"
    assert P.catch(lambda: 1) is None


def test_toy_sample_is_shaped_as_torchvision_wants():
    image, target = P.toy_sample()
    assert image.shape == (3, 128, 128) and image.dtype == torch.float32 and 0 <= image.min() <= image.max() <= 1
    assert target["boxes"].shape == (1, 4) and target["labels"].dtype == torch.int64
    assert target["masks"].shape == (1, 128, 128) and target["masks"].dtype == torch.uint8
    assert int(target["masks"].sum()) == 48 * 56  # the box (32, 40, 80, 96) filled
    losses = P.train_losses(P.toy_model(), [image], [target])
    assert set(losses) == {"loss_classifier", "loss_box_reg", "loss_mask", "loss_objectness", "loss_rpn_box_reg"}


def test_label_too_large_is_an_index_error_in_the_loss():
    assert P.label_too_large(label=7, num_classes=4) == "IndexError: Target 7 is out of bounds."
    assert P.label_too_large(label=3, num_classes=4) is None  # the largest valid label
    assert P.num_classes_for([7]) == 8 and P.num_classes_for([1, 3, 4]) == 5


def test_degenerate_box_message_and_fix():
    assert P.degenerate_box() == ("AssertionError: All bounding boxes should have positive height and width. "
                                  "Found invalid box [40.0, 40.0, 40.0, 90.0] for target at index 0.")
    _, target = P.toy_sample()
    two = {**target, "boxes": torch.tensor([[40.0, 40.0, 40.0, 90.0], [1.0, 2.0, 3.0, 4.0]]),
           "labels": torch.tensor([1, 2]), "masks": torch.zeros(2, 128, 128, dtype=torch.uint8)}
    kept = P.drop_degenerate(two)
    assert kept["boxes"].tolist() == [[1.0, 2.0, 3.0, 4.0]] and kept["labels"].tolist() == [2]
    assert kept["masks"].shape == (1, 128, 128)


def test_empty_target_trains_and_the_wrong_shape_is_named():
    assert P.empty_target_wrong_shape() == ("AssertionError: Expected target boxes to be a tensor of shape [N, 4], "
                                            "got torch.Size([0]).")
    image, _ = P.toy_sample()
    losses = P.train_losses(P.toy_model(), [image], [P.empty_target()])
    assert losses["loss_box_reg"] == 0 and losses["loss_mask"] == 0 and losses["loss_classifier"] > 0


def test_masks_with_a_channel_axis_give_an_empty_mask_target():
    fill = P.masks_with_channel_axis()
    assert fill["(N, H, W)"] > 0.95  # the box is the object: its target is (nearly) all foreground
    assert fill["(N, 1, H, W)"] == 0.0


def test_uint8_image_is_refused():
    assert P.uint8_image() == ("TypeError: Expected input images to be of floating type (in range [0, 1]), "
                               "but found type torch.uint8 instead")


def test_unscaled_images_change_the_predictions(course_model):
    from course_lib import CocoInstanceDataset, get_transform, shapes_split

    ann = shapes_split("val")
    ds = CocoInstanceDataset(ann.parent / "images", ann, get_transform(train=False))
    images = [ds[i][0] for i in range(2)]
    preds = P.unscaled_images(course_model, images)
    assert set(preds) == {"0..1", "0..255"}
    right = [int((o["scores"] >= 0.5).sum()) for o in preds["0..1"]]
    wrong = [int((o["scores"] >= 0.5).sum()) for o in preds["0..255"]]
    assert right == [len(ds[i][1]["labels"]) for i in range(2)]  # the checkpoint finds every shape
    assert wrong != right


def test_label_0_is_background_and_categories_of_refuses_id_0():
    losses = P.real_class_as_label_0()
    assert losses["label 1"]["loss_box_reg"] > 0 and losses["label 1"]["loss_mask"] > 0
    assert losses["label 0"]["loss_box_reg"] == 0 and losses["label 0"]["loss_mask"] == 0
    assert P.categories_with_id_0() == ("ValueError: annotations.json: categories need ids 1, 2, ... "
                                        "(0 is background); got [0, 1]")
    assert P.category_names([1, 3, 4]) == ["__background__", "class1", "__unused_2__", "class3", "class4"]


def test_forgot_eval_asks_for_targets():
    assert P.forgot_eval() == "AssertionError: targets should not be none when in training mode"


def test_coco_string_ids_do_not_correspond():
    from course_lib import coco_eval

    assert P.coco_ids_as_strings() == "AssertionError: Results do not correspond to current coco set"
    result = {"image_id": 1, "category_id": 1, "bbox": [32, 40, 48, 56], "score": 0.9}
    assert coco_eval(P.tiny_coco(), [result], "bbox").stats[0] == pytest.approx(1.0)


def test_flip_when_evaluating_costs_ap(course_model):
    from course_lib import shapes_split

    r = P.flip_when_evaluating(course_model, shapes_split("val"), n_images=8)
    assert r["eval transform"]["AP"] > 0.7
    assert r["random flip"]["AP"] < 0.75 * r["eval transform"]["AP"]


def test_activation_memory_grows_with_batch_and_image_size():
    one = P.activation_memory()
    assert 1 < one < 100
    assert P.activation_memory(batch_size=2) == pytest.approx(2 * one, rel=0.25)
    assert P.activation_memory(image_size=256) > 2.5 * one
    assert P.activation_memory(rpn_post_nms_top_n=100, box_batch_size_per_image=16) < one


@pytest.fixture(scope="module")
def course_model():
    from course_lib import load_course_model

    return load_course_model()
