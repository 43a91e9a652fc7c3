"""The 08_real_images checker: the reference passes; rotating the wrong way or forgetting the boxes fails."""

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from course_lib.course.checkers import check_rot90_target
from course_lib.data.nuclei import rot90_target


def test_reference_passes(capsys):
    assert check_rot90_target(rot90_target) is rot90_target
    assert capsys.readouterr().out.startswith("PASS check_rot90_target")


def test_clockwise_and_unrotated_boxes_fail(capsys):
    def clockwise(image, target):
        w = image.shape[-1]
        x1, y1, x2, y2 = target["boxes"].unbind(-1)
        return torch.rot90(image, -1, dims=(-2, -1)), {**target, "boxes": torch.stack([w - y2, x1, w - y1, x2], -1),
                                                       "masks": torch.rot90(target["masks"], -1, dims=(-2, -1))}

    def boxes_unchanged(image, target):
        return torch.rot90(image, 1, dims=(-2, -1)), {**target, "masks": torch.rot90(target["masks"], 1, dims=(-2, -1))}

    for wrong in (clockwise, boxes_unchanged):
        assert check_rot90_target(wrong) is rot90_target
        assert "FAIL check_rot90_target" in capsys.readouterr().out


def test_reference_agrees_with_torchvision_and_the_hidden_cases_run():
    image = tv_tensors.Image(torch.rand(3, 24, 40))
    masks = torch.zeros(1, 24, 40, dtype=torch.uint8)
    masks[0, 2:9, 5:30] = 1
    boxes = torch.tensor([[5.0, 2, 30, 9]])
    img, target = rot90_target(image, {"boxes": boxes, "masks": masks})
    tv_img, tv_masks, tv_boxes = v2.RandomRotation((90, 90), expand=True)(
        image, tv_tensors.Mask(masks), tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=(24, 40)))
    assert torch.equal(img, tv_img) and torch.equal(target["masks"], tv_masks)
    assert torch.allclose(target["boxes"], tv_boxes)
    ys, xs = torch.nonzero(target["masks"][0], as_tuple=True)
    assert target["boxes"][0].tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
    assert len(check_rot90_target.hidden_cases(3)) == 7
