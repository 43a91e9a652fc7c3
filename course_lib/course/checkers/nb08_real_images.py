"""Checkers for 08_real_images's exercise: rotating an image and its target together.
Reference: ``course_lib.data.nuclei.rot90_target``.
"""

from __future__ import annotations

import torch

from course_lib.course.checkers.core import Case, checker
from course_lib.data.nuclei import rot90_target

__all__ = ["check_rot90_target"]

NOTEBOOK = "08_real_images"


def _target(h: int, w: int, boxes: list[list[int]]) -> dict:
    """Rectangular instances that fill their boxes, as uint8 masks, float32 boxes and int64 labels."""
    masks = torch.zeros((len(boxes), h, w), dtype=torch.uint8)
    for i, (x1, y1, x2, y2) in enumerate(boxes):
        masks[i, y1:y2, x1:x2] = 1
    return {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4), "masks": masks,
            "labels": torch.ones(len(boxes), dtype=torch.int64)}


def _cases(seed: int | None = None) -> list[Case]:
    g = torch.Generator().manual_seed(0 if seed is None else seed)
    image = torch.rand((3, 24, 40), generator=g)
    square = torch.rand((3, 16, 16), generator=g)
    cases = [Case("one box in a square image", (square, _target(16, 16, [[2, 3, 7, 12]]))),
             Case("a wide image (40 x 24): width and height swap", (image, _target(24, 40, [[5, 2, 30, 9]]))),
             Case("boxes touching the corners", (image, _target(24, 40, [[0, 0, 4, 3], [33, 20, 40, 24]]))),
             Case("no instances at all", (image, _target(24, 40, [])))]
    if seed is not None:  # hidden cases (course grade): never shown in the notebook
        x1, y1 = (int(v) for v in torch.randint(0, 20, (2,), generator=g))
        cases.append(Case(f"hidden box at ({x1}, {y1})", (image, _target(24, 40, [[x1, y1, x1 + 15, y1 + 4]]))))
        tall = torch.rand((1, 30, 12), generator=g)  # taller than wide, one channel
        cases.append(Case("a tall one-channel image (12 x 30)", (tall, _target(30, 12, [[1, 2, 5, 20], [8, 25, 12, 30]]))))
        # An annotated box need not hug its mask (boxes drawn by hand, or kept through a crop): the boxes
        # rotate as boxes; recomputing them from the rotated masks is wrong here.
        loose = _target(24, 40, [[6, 3, 20, 11]])
        loose["boxes"] = loose["boxes"] + torch.tensor([[-1.5, -2.0, 2.5, 1.0]])
        cases.append(Case("a box larger than its mask", (image, loose)))
    return cases


check_rot90_target = checker(
    "check_rot90_target", rot90_target, _cases, notebook=NOTEBOOK,
    hidden_cases=_cases,
    hint=[("The image and the masks rotate the same way: torch.rot90(x, 1, dims=(-2, -1)) on both "
           "(k=1 turns anticlockwise, k=-1 clockwise)."),
          ("A box's corners move with their pixels: the pixel at column x and row y lands at column y and row "
           "W - 1 - x, so the new x-range is the old y-range, and the new y-range is W minus the old x-range, "
           "reversed."),
          ("x1, y1, x2, y2 = target['boxes'].unbind(-1); boxes = torch.stack([y1, W - x2, y2, W - x1], -1) with "
           "W = image.shape[-1]; return the rotated image and {**target, 'boxes': boxes, 'masks': rotated masks}.")])
