"""Checkers for 01_backbone_fpn's exercise.

* ``check_fpn_merge``: C2..C5 and the FPN's lateral / output convs -> P2..P5, against
  ``course_lib.fpn.fpn_merge`` (which gives the numbers of ``torchvision.ops.FeaturePyramidNetwork``).
"""

from __future__ import annotations

import torch
from torchvision.ops import FeaturePyramidNetwork

from course_lib.course.checkers.core import Case, checker
from course_lib.course.checkers.nb01_blocks import as_spec, fpn_call
from course_lib.detection.backbone_utils import feature_shapes
from course_lib.ops.feature_pyramid_network import fpn_merge

__all__ = ["check_fpn_merge"]

NOTEBOOK = "01_backbone_fpn"


def _fpn_case(name: str, seed: int, image_size: tuple[int, int], channels: tuple[int, ...], out: int,
              batch: int = 1) -> Case:
    """Random C maps of the sizes a ResNet gives for ``image_size`` and a seeded torchvision FPN.
    The global random state is left as it was, so a checker run does not change the notebook's numbers."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        fpn = FeaturePyramidNetwork(list(channels), out).eval()
        for p in fpn.parameters():
            p.requires_grad_(False)
        shapes = feature_shapes(image_size)
        features = [torch.randn(batch, c, *shapes[f"C{k + 2}"]) for k, c in enumerate(channels)]
    return Case(name, (features, fpn.inner_blocks, fpn.layer_blocks))


def _cases() -> list[Case]:
    return [_fpn_case("4 levels from a 128x128 image", 0, (128, 128), (8, 16, 32, 64), 12),
            _fpn_case("odd image size 97x131 (a finer map is not exactly twice the coarser one)", 1, (97, 131),
                      (8, 16, 32, 64), 12),
            _fpn_case("a batch of 2 images, 64x96", 2, (64, 96), (4, 8, 16, 32), 6, batch=2),
            _fpn_case("only 2 levels", 3, (64, 64), (8, 16), 5)]


def _plain(cases: list[Case]) -> list[Case]:
    """The cases with their blocks as plain data, for the grader's sandbox."""
    return [Case(c.name, (c.args[0], as_spec(c.args[1]), as_spec(c.args[2]))) for c in cases]


def _hidden_cases(seed: int) -> list[Case]:
    """Never shown in the notebook: 3 levels and 1 level (the notebook has 4 and 2), random sizes and widths,
    a batch of 3, and an image so small that the top map is 1x1."""
    g = torch.Generator().manual_seed(seed)

    def pick(lo: int, hi: int) -> int:
        return int(torch.randint(lo, hi + 1, (1,), generator=g))

    size = (pick(40, 160), pick(40, 160))
    channels = tuple(pick(2, 12) * 2 ** k for k in range(3))
    return [_fpn_case(f"3 levels from a {size[0]}x{size[1]} image", seed, size, channels, pick(3, 10)),
            _fpn_case("a batch of 3 images, 4 levels", seed + 1, (pick(33, 99), pick(33, 99)), (3, 6, 9, 12), 4,
                      batch=3),
            _fpn_case("a 20x32 image: the top map is 1x1", seed + 2, (20, 32), (4, 8, 16, 32), 5),
            _fpn_case("a single level: no top-down path", seed + 3, (pick(20, 60), pick(20, 60)), (pick(2, 9),),
                      pick(2, 6))]


check_fpn_merge = checker(
    "check_fpn_merge", fpn_merge, _cases, notebook=NOTEBOOK, hidden_cases=lambda seed: _plain(_hidden_cases(seed)),
    grading_cases=lambda: _plain(_cases()), adapter=fpn_call, prelude="course_lib.course.checkers.nb01_blocks",
    hint=["The merge runs top-down: start from the coarsest level's lateral (1x1) map and walk to the finest.",
          "Going down, upsample the running map to the next level's size with F.interpolate(..., size=lateral."
          "shape[-2:], mode='nearest') (size=, not scale_factor=2: odd sizes) and add that level's lateral map.",
          "Apply layer_blocks[i] (the 3x3 conv) to each merged map and return them finest first."])
