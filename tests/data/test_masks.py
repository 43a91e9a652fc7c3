"""course_lib.data.masks: mask_to_polygons decodes (through pycocotools) to the same mask."""

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from course_lib.data.masks import mask_to_polygons
from shared_cases import hand_made_masks


def decode_polygons(polygons, h, w):
    return mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(polygons, h, w))).astype(bool)


@pytest.mark.parametrize("name", list(hand_made_masks()))
def test_polygons_decode_to_the_same_mask(name):
    mask = hand_made_masks()[name]
    polygons = mask_to_polygons(mask)
    assert all(len(p) >= 6 and len(p) % 2 == 0 for p in polygons)
    np.testing.assert_array_equal(decode_polygons(polygons, *mask.shape), mask)


def test_polygons_of_random_masks_round_trip():
    rng = np.random.default_rng(0)
    for _ in range(120):
        h, w = rng.integers(1, 16, size=2)
        mask = rng.random((h, w)) < rng.uniform(0.1, 0.9)
        if mask.any():
            polygons = mask_to_polygons(mask)
            np.testing.assert_array_equal(decode_polygons(polygons, h, w), mask)
            # each polygon is one part: inside the mask on its own
            for rle in mask_utils.frPyObjects(polygons, h, w):
                assert not (mask_utils.decode(rle).astype(bool) & ~mask).any()


def test_a_square_is_four_corners_and_a_single_pixel_is_its_square():
    m = np.zeros((6, 6), bool)
    m[1:4, 2:5] = True
    assert mask_to_polygons(m) == [[2, 1, 5, 1, 5, 4, 2, 4]]
    m = np.zeros((3, 3), bool)
    m[1, 2] = True
    assert mask_to_polygons(m) == [[2, 1, 3, 1, 3, 2, 2, 2]]
