"""course_lib.utils.colours: one colour per class label, the same everywhere."""

import re

import matplotlib.colors
import numpy as np
import pytest
import torch

from course_lib.utils.colours import PALETTE, colour


def test_palette_is_16_distinct_valid_colours_with_black_background():
    assert len(PALETTE) == 16
    assert all(re.fullmatch(r"#[0-9a-f]{6}", c) for c in PALETTE), PALETTE
    rgb = [matplotlib.colors.to_rgb(c) for c in PALETTE]
    assert len(set(rgb)) == len(PALETTE)  # distinct
    assert PALETTE[0] == "#000000"  # background is black
    assert all(c != "#000000" for c in PALETTE[1:])  # no class looks like background


@pytest.mark.parametrize("label, index", [(0, 0), (1, 1), (15, 15), (16, 0), (17, 1), (33, 1), (-1, 15)])
def test_colour_repeats_after_16_labels(label, index):
    assert colour(label) == PALETTE[index]


def test_colour_accepts_tensor_and_numpy_labels_and_refuses_non_numbers():
    assert colour(torch.tensor(3)) == colour(np.int64(3)) == colour(3.0) == PALETTE[3]
    with pytest.raises((TypeError, ValueError)):
        colour("cat")
