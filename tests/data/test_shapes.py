import hashlib
import json

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from course_lib.data.coco_dataset import load_coco
from course_lib.data.shapes import (
    ALL_SHAPES,
    CLASSES,
    NEW_CLASSES,
    make_shapes_dataset,
    render_sample,
    shape_mask,
)


def digest(root):
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(root).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def test_same_seed_writes_identical_files_and_other_seed_differs(tmp_path):
    a = make_shapes_dataset(tmp_path / "a", 6, seed=7, progress=False).parent
    b = make_shapes_dataset(tmp_path / "b", 6, seed=7, progress=False).parent
    c = make_shapes_dataset(tmp_path / "c", 6, seed=8, progress=False).parent
    assert digest(a) == digest(b)
    assert digest(a) != digest(c)


def test_image_i_does_not_depend_on_how_many_images_are_made():
    assert np.array_equal(render_sample(3, 5).image, render_sample(3, 5).image)
    assert not np.array_equal(render_sample(3, 5).image, render_sample(3, 6).image)


def test_files_masks_sidecars_and_coco_agree(tmp_path):
    ann_file = make_shapes_dataset(tmp_path, 8, seed=1, progress=False)
    coco = load_coco(ann_file)
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == list(CLASSES)
    assert len(coco.imgs) == 8
    for image_id, info in coco.imgs.items():
        image = np.array(Image.open(tmp_path / "images" / info["file_name"]))
        inst = np.array(Image.open(tmp_path / "masks" / info["file_name"]))
        sidecar = json.loads((tmp_path / "masks" / info["file_name"].replace(".png", ".json")).read_text())
        assert image.shape == (128, 128, 3) and image.dtype == np.uint8
        anns = coco.imgToAnns[image_id]
        assert 1 <= len(anns) <= 5
        assert sorted(int(k) for k in sidecar) == list(range(1, len(anns) + 1))
        assert set(np.unique(inst)) - {0} == set(range(1, len(anns) + 1))
        for k, ann in enumerate(anns, start=1):
            assert np.array_equal(coco.annToMask(ann).astype(bool), inst == k)
            assert coco.cats[ann["category_id"]]["name"] == sidecar[str(k)]
            assert ann["area"] == float(mask_utils.area(ann["segmentation"])) == float((inst == k).sum())
            assert ann["iscrowd"] == 0


def test_every_shape_is_mostly_visible_and_inside_the_image():
    for i in range(40):
        s = render_sample(11, i)
        for m in s.masks:
            assert m.sum() >= 60  # smallest shapes are ~10 px in radius, at most a quarter hidden


def test_new_classes_render_and_unknown_names_fail(tmp_path):
    ann_file = make_shapes_dataset(tmp_path, 4, seed=2, classes=NEW_CLASSES, progress=False)
    assert [c["name"] for c in json.loads(ann_file.read_text())["categories"]] == list(NEW_CLASSES)
    for name in ALL_SHAPES:
        assert shape_mask(name, (64, 64), 32, 32, 20, 0.3).sum() > 100
    with pytest.raises(ValueError, match="unknown shape 'blob'"):
        shape_mask("blob", (64, 64), 32, 32, 20, 0.0)


def test_other_image_sizes_scale_the_shapes():
    s = render_sample(0, 0, size=(96, 160))
    assert s.image.shape == (96, 160, 3) and s.instance_map.shape == (96, 160)
