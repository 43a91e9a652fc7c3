"""Fixtures shared by the tests of course_lib.data: the shapes data set and small good COCO folders."""

import json

import numpy as np
import pytest
from PIL import Image

from course_lib.data.coco_build import build_coco_dataset
from course_lib.data.shapes import make_shapes_dataset


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes")
    make_shapes_dataset(root, 10, seed=3, progress=False)
    return root


@pytest.fixture
def folder(tmp_path):
    """A small good data set: 3 images (12x10) with instance-id masks and sidecars."""
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    for i in range(3):
        ids = np.zeros((10, 12), np.uint8)
        ids[1:4, 1:5], ids[5:9, 6:11] = 1, 2
        Image.fromarray(np.full((10, 12, 3), 40 * i, np.uint8)).save(tmp_path / "images" / f"im{i}.png")
        Image.fromarray(ids).save(tmp_path / "masks" / f"im{i}.png")
        (tmp_path / "masks" / f"im{i}.json").write_text('{"1": "cat", "2": "dog"}')
    return tmp_path


def _build(folder, **kw):
    return build_coco_dataset(folder / "images", folder / "masks", folder / "out.json", ["cat", "dog"], **kw)


@pytest.fixture
def good(folder):
    """(folder, COCO dict) of a good file; annotation ids 1-6, image ids 1-3, two RLE and one polygon image."""
    coco = json.loads(_build(folder).read_text())
    polygons = json.loads(_build(folder, encoding="polygon").read_text())
    coco["annotations"][4:] = polygons["annotations"][4:]  # image 3 has polygons
    return folder, coco
