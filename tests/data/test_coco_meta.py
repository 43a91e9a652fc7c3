"""COCO metadata read in one place: categories -> class names (background at 0, gaps named), image folders."""

import json

import pytest

from course_lib.data.coco_meta import categories_of, class_names, image_root_of, read_categories


def coco_file(path, categories, info=None):
    data = {"images": [], "annotations": [], "categories": [{"id": i, "name": n} for i, n in categories]}
    if info is not None:
        data["info"] = info
    path.write_text(json.dumps(data))
    return path


def test_class_names_put_the_background_at_0_and_name_the_gaps(tmp_path):
    ann = coco_file(tmp_path / "a.json", [(3, "cat"), (1, "dog")])
    assert read_categories(ann) == {3: "cat", 1: "dog"}
    assert categories_of(ann) == ["__background__", "dog", "__unused_2__", "cat"]
    assert class_names({1: "x"}) == ["__background__", "x"]


@pytest.mark.parametrize("categories", [[(0, "x")], []])
def test_category_ids_start_at_1(tmp_path, categories):
    ann = coco_file(tmp_path / "bad.json", categories)
    with pytest.raises(ValueError, match=r"bad.json: categories need ids 1, 2, ... \(0 is background\)"):
        categories_of(ann)


def test_image_root_of_fits_the_usual_export_layouts(tmp_path):
    (tmp_path / "annotations").mkdir()
    ann = coco_file(tmp_path / "annotations" / "instances.json", [(1, "a")])
    assert image_root_of(ann) == tmp_path / "annotations"  # nothing else there: its own folder
    (tmp_path / "images").mkdir()
    assert image_root_of(ann) == tmp_path / "images"  # annotations/ + images/
    (tmp_path / "annotations" / "images").mkdir()
    assert image_root_of(ann) == tmp_path / "annotations" / "images"  # the shapes layout
    coco_file(ann, [(1, "a")], info={"image_root": "../photos"})
    assert image_root_of(ann) == tmp_path / "annotations" / "../photos"  # what coco build records
    bad = tmp_path / "broken.json"
    bad.write_text("{not json")
    assert image_root_of(bad) == tmp_path / "images"  # unreadable info: the layouts still apply


def test_every_reader_of_categories_uses_coco_meta():
    """finetune, the data checks, coco validate and the lessons read categories here, not on their own."""
    from course_lib.data import coco_validate, importers
    from course_lib.training import data_checks, finetune

    assert finetune.categories_of is categories_of
    assert data_checks.image_root_of is image_root_of and importers.image_root_of is image_root_of
    assert coco_validate.read_categories is read_categories and data_checks.read_categories is read_categories
