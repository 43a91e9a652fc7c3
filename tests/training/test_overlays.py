"""``training.overlays``: detections drawn on images without matplotlib, shared by the notebooks (through
``lessons.draw``) and ``./course predict``."""

import subprocess
import sys

import pytest
import torch
from torchvision.utils import draw_segmentation_masks

from course_lib.training.overlays import (
    draw_detections,
    draw_instances,
    draw_labels,
    draw_target,
    instance_colours,
    paint_masks,
    place_labels,
    to_uint8,
    touching,
)
from course_lib.training.predict_command import overlay
from course_lib.utils.colours import INSTANCE_PALETTE, colour, rgb


def output_of_two():
    masks = torch.zeros(2, 1, 40, 50)
    masks[0, 0, 5:15, 5:20] = 0.9
    masks[1, 0, 20:35, 25:45] = 0.8
    return {"boxes": torch.tensor([[5.0, 5, 20, 15], [25, 20, 45, 35]]), "labels": torch.tensor([1, 7]),
            "scores": torch.tensor([0.9, 0.6]), "masks": masks}


def test_predict_overlays_are_draw_instances_at_the_images_size():
    image = to_uint8(torch.rand(3, 40, 50, generator=torch.Generator().manual_seed(0)))
    out = output_of_two()
    picture = overlay(image, out, ["bg", "circle"])  # label 7 has no name: drawn as "7"
    assert picture.shape == (3, 40, 50) and picture.dtype == torch.uint8
    same = draw_instances(image, out["boxes"], out["labels"], out["masks"][:, 0] > 0.5, ["bg", "circle"],
                          out["scores"], alpha=0.5, upscale=1)
    assert torch.equal(picture, same)
    # one class: coloured by instance, the first instance in the instance palette's first colour
    assert torch.equal(picture[:, 5, 12], torch.tensor(rgb(INSTANCE_PALETTE[0]), dtype=torch.uint8))
    by_class = draw_instances(image, out["boxes"], out["labels"], None, ["bg", "circle"], colour_by="class",
                              upscale=1)
    assert torch.equal(by_class[:, 5, 12], torch.tensor(rgb(colour(1)), dtype=torch.uint8))  # top edge of box 1
    empty = {k: v[:0] for k, v in out.items()}
    assert torch.equal(overlay(image, empty, ["bg"]), image)


def test_draw_detections_and_draw_target_go_through_draw_instances():
    image = torch.rand(3, 40, 50)
    out = output_of_two()
    assert draw_detections(image, out, ["bg", "a"], 0.7, upscale=1).shape == (3, 40, 50)
    target = {"boxes": out["boxes"], "labels": out["labels"], "masks": out["masks"][:, 0] > 0.5}
    assert torch.equal(draw_target(image, target, ["bg", "a"], upscale=2),
                       draw_instances(image, target["boxes"], target["labels"], target["masks"], ["bg", "a"],
                                      upscale=2))


def test_overlays_load_no_matplotlib():
    code = ("import sys, course_lib.training.overlays, course_lib.training.predict_command; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'matplotlib'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


def test_place_labels_takes_the_first_free_corner_and_stays_in_the_frame():
    boxes = [(10, 10, 50, 50), (12, 12, 52, 52), (14, 14, 54, 54)]  # three boxes sharing a corner
    spots = place_labels(boxes, [(20, 8)] * 3, (0, 0, 100, 100))
    assert spots[0] == (10, 2)  # above the first box's top-left corner
    rects = [(x, y, x + 20, y + 8) for x, y in spots]
    for i, a in enumerate(rects):
        assert 0 <= a[0] and 0 <= a[1] and a[2] <= 100 and a[3] <= 100
        for b in rects[i + 1:]:
            assert min(a[2], b[2]) <= max(a[0], b[0]) or min(a[3], b[3]) <= max(a[1], b[1])  # no overlap
    assert place_labels([(0, 0, 10, 10)], [(4, 4)], (0, 0, 10, 10)) == [(0, 0)]  # no room above: inside
    assert place_labels([], [], (0, 0, 1, 1)) == []
    with pytest.raises(ValueError, match="2 boxes but 1 label sizes"):
        place_labels([(0, 0, 1, 1), (0, 0, 1, 1)], [(1, 1)], (0, 0, 1, 1))


def test_touching_instances_get_different_colours():
    boxes = torch.tensor([[0.0, 0, 10, 10], [11, 0, 20, 10], [40, 40, 50, 50], [0, 12, 8, 20]])
    assert touching(boxes) == [{1, 3}, {0}, set(), {0}]  # 1 and 2 px apart count; 3 px (boxes 1 and 3) do not
    colours = instance_colours(boxes)
    assert colours[0] != colours[1] and colours[0] != colours[3]
    assert len(set(colours)) == 4  # colours vary over the picture even where nothing touches
    crowd = torch.tensor([[0.0, 0, 10, 10]] * 8)  # eight instances on top of each other, six colours
    assert len(set(instance_colours(crowd))) == len(INSTANCE_PALETTE)
    assert instance_colours(torch.zeros(0, 4)) == []
    with pytest.raises(ValueError, match="palette is empty"):
        instance_colours(boxes, palette=[])


def test_one_class_draws_scores_only_and_outlines_each_mask():
    image = torch.zeros(3, 40, 50, dtype=torch.uint8)
    out = output_of_two()
    masks = torch.zeros(2, 40, 50, dtype=torch.bool)
    masks[0, 7:13, 8:17] = True  # inside box 0 (5, 5, 20, 15), clear of its edges
    masks[1, 22:33, 27:43] = True
    scores_only = draw_instances(image, out["boxes"], out["labels"], masks, ["bg", "nucleus"], out["scores"],
                                 upscale=1)
    named = draw_instances(image, out["boxes"], out["labels"], masks, ["bg", "nucleus"], out["scores"], upscale=1,
                           show_class=True)
    assert not torch.equal(scores_only, named)  # "0.90" is shorter than "nucleus 0.90"
    plain = draw_instances(image, out["boxes"], out["labels"], masks, ["bg", "nucleus"], upscale=1)
    no_labels = draw_instances(image, out["boxes"], out["labels"], masks, ["bg", "nucleus"], upscale=1,
                               show_class=False)
    assert torch.equal(plain, no_labels)  # a target of one class: no labels at all
    # the mask's edge in full colour, its inside half transparent
    edge, inside = plain[:, 7, 12], plain[:, 10, 12]
    assert torch.equal(edge, torch.tensor(rgb(INSTANCE_PALETTE[0]), dtype=torch.uint8))
    assert (inside < edge).any()
    unoutlined = draw_instances(image, out["boxes"], out["labels"], masks, ["bg", "nucleus"], upscale=1,
                                outlines=False)
    assert torch.equal(unoutlined[:, 7, 12], inside)


def test_draw_instances_refuses_mismatched_inputs():
    image, out = torch.zeros(3, 40, 50), output_of_two()
    with pytest.raises(ValueError, match="colour_by must be one of"):
        draw_instances(image, out["boxes"], out["labels"], None, ["bg", "a"], colour_by="score")
    with pytest.raises(ValueError, match="2 boxes but 1 labels"):
        draw_instances(image, out["boxes"], out["labels"][:1], None, ["bg", "a"])
    with pytest.raises(ValueError, match="2 boxes but 1 masks"):
        draw_instances(image, out["boxes"], out["labels"], out["masks"][:1, 0] > 0.5, ["bg", "a"])
    with pytest.raises(ValueError, match="2 boxes but 3 scores"):
        draw_instances(image, out["boxes"], out["labels"], None, ["bg", "a"], torch.ones(3))
    with pytest.raises(ValueError, match="2 boxes, 1 texts and 2 colours"):
        draw_labels(to_uint8(image), out["boxes"], ["a"], ["#000000", "#ffffff"], 10)


def test_labels_are_black_on_light_colours_and_white_on_dark_ones():
    canvas = torch.zeros(3, 60, 80, dtype=torch.uint8)
    boxes = torch.tensor([[10.0, 30, 30, 50], [50, 30, 70, 50]])
    drawn = draw_labels(canvas, boxes, ["AB", "AB"], ["#f0e442", "#0072b2"], 12)
    light, dark = drawn[:, 14:30, 10:30], drawn[:, 14:30, 50:70]  # the labels, above their boxes
    assert (light.sum(0) == 0).any() and (light == torch.tensor(rgb("#f0e442"))[:, None, None]).all(0).any()
    assert (dark == 255).all(0).any() and (dark == torch.tensor(rgb("#0072b2"))[:, None, None]).all(0).any()
    assert torch.equal(draw_labels(canvas, boxes, ["", ""], ["#000000"] * 2, 12), canvas)


def test_painting_masks_one_at_a_time_is_torchvisions_painting():
    g = torch.Generator().manual_seed(1)
    image = torch.randint(0, 256, (3, 30, 40), generator=g, dtype=torch.uint8)
    masks = torch.rand(6, 30, 40, generator=g) > 0.6  # many pixels under two masks or more: black
    colours = [colour(k) for k in range(6)]
    for alpha in (0.45, 0.5, 0.8):
        assert torch.equal(paint_masks(image, iter(masks), colours, alpha),
                           draw_segmentation_masks(image, masks, alpha=alpha, colors=colours))
    assert torch.equal(paint_masks(image, [], colours, 0.45), image)
