"""course_lib.lessons.draw: the larger detection pictures (upscale, font size, filled labels)."""

import torch

from course_lib.lessons import draw


def _square(x1, y1, x2, y2, size=128):
    m = torch.zeros(size, size, dtype=torch.bool)
    m[y1:y2, x1:x2] = True
    return m


def _case():
    image = torch.full((3, 128, 128), 0.5)
    target = {"image_id": 9, "boxes": torch.tensor([[100.0, 20.0, 128.0, 50.0]]), "labels": torch.tensor([2]),
              "masks": _square(100, 20, 128, 50)[None].to(torch.uint8)}
    output = {"boxes": torch.tensor([[104.0, 24.0, 124.0, 46.0]]), "labels": torch.tensor([1]),
              "scores": torch.tensor([0.9]), "masks": _square(104, 24, 124, 46)[None, None].float()}
    return image, output, target


def test_draw_instances_font_size_and_filled_labels_are_optional():
    image, output, target = _case()
    default = draw.draw_target(image, target, ["bg", "star", "hexagon"])
    big = draw.draw_target(image, target, ["bg", "star", "hexagon"], upscale=6, font_size=20, fill_labels=True)
    assert default.shape == (3, 384, 384) and big.shape == (3, 768, 768)
    assert draw.draw_detections(image, output, ["bg", "star", "hexagon"], 0.5, upscale=2).shape == (3, 256, 256)
