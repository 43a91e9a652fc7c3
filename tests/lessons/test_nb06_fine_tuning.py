"""course_lib.lessons.nb06_fine_tuning: the error pictures (whole image or zoomed)."""

import torch

from course_lib.lessons.nb06_fine_tuning import DET_COLOUR, ERROR_TITLES, GT_COLOUR, draw_error


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


def test_draw_error_whole_image_keeps_its_size_and_colours_the_masks():
    image, output, target = _case()
    picture, title = draw_error(image, output, target, "poor_masks", (0, 0, 0.52), ["bg", "star", "hexagon"])
    assert picture.shape == (3, 128, 128) and title == "image 9: poor mask, mask IoU 0.52"
    # both masks: yellow-ish; gt only: green-ish; outside: grey
    both, gt_only, outside = picture[:, 42, 114], picture[:, 48, 102], picture[:, 100, 10]  # [:, y, x]
    assert both[0] > 150 and both[1] > 150 and both[2] < 100
    assert gt_only[1] > gt_only[0] and gt_only[1] > gt_only[2]
    assert outside[0] == outside[1] == outside[2]


def test_draw_error_zoom_puts_the_names_in_the_title_and_enlarges():
    image, output, target = _case()
    picture, title = draw_error(image, output, target, "wrong_class", (0, 0), ["bg", "star", "hexagon"], zoom=True)
    assert title == "image 9: wrong class\ngt hexagon (green), star 0.90 (red)"
    assert min(picture.shape[-2:]) >= 160  # a 40-pixel window enlarged to about 192
    _, title = draw_error(image, output, target, "background", 0, ["bg", "star", "hexagon"], zoom=True)
    assert title == "image 9: mislocalised\nstar 0.90 (red)" and ERROR_TITLES["background"] == "mislocalised"
    _, title = draw_error(image, output, target, "misses", 0, ["bg", "star", "hexagon"], zoom=True)
    assert title == "image 9: miss\ngt hexagon (green)"
    assert GT_COLOUR != DET_COLOUR
