"""``training.overlays``: detections drawn on images without matplotlib, shared by the notebooks (through
``lessons.draw``) and ``./course predict``."""

import subprocess
import sys

import torch

from course_lib.training.overlays import draw_detections, draw_instances, draw_target, to_uint8
from course_lib.training.predict_command import overlay
from course_lib.utils.colours import colour


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
    red = torch.tensor([int(colour(1)[i:i + 2], 16) for i in (1, 3, 5)], dtype=torch.uint8)
    assert torch.equal(picture[:, 5, 12], red)  # the top edge of box 1, in its class's colour
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
