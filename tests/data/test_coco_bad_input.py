"""course_lib.data (COCO build and validation) on malformed input: every problem is reported, naming its file, id and what is wrong."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from course_lib.data.coco_build import build_coco_dataset, masks_to_coco
from course_lib.data.coco_dataset import CocoInstanceDataset
from course_lib.data.coco_validate import rle_string_counts, validate_coco
from course_lib.data.errors import CocoFormatError
from course_lib.data.masks import encode_mask
from course_lib.utils.files import write_json_atomic

CATEGORIES = ["cat", "dog"]


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


def build(folder, **kw):
    return build_coco_dataset(folder / "images", folder / "masks", folder / "out.json", CATEGORIES, **kw)


def build_error(folder, *expected, **kw):
    """Building fails with one error listing every problem; nothing is written."""
    with pytest.raises(CocoFormatError) as e:
        build(folder, **kw)
    for text in expected:
        assert text in str(e.value), f"{text!r} not in:\n{e.value}"
    assert not (folder / "out.json").exists()
    assert [p.name for p in folder.iterdir() if p.name.startswith(".out.json")] == []  # no temp file left
    return e.value


# ---- the builder ---------------------------------------------------------------------------------

def test_builder_reports_an_instance_listed_in_the_sidecar_but_empty(folder):
    (folder / "masks" / "im1.json").write_text('{"1": "cat", "2": "dog", "3": "cat"}')
    build_error(folder, "im1.png: instance 3 is listed in im1.json but has no pixels")


def test_builder_reports_an_instance_without_sidecar_entry(folder):
    (folder / "masks" / "im2.json").write_text('{"1": "cat"}')
    build_error(folder, "im2.png: instance 2 (20 pixels) has no entry in im2.json")


def test_builder_reports_a_mask_whose_size_differs_from_its_image(folder):
    Image.fromarray(np.ones((10, 13), np.uint8)).save(folder / "masks" / "im0.png")
    build_error(folder, "im0.png: the mask is 13x10 (WxH) but its image im0.png is 12x10")


def test_builder_reports_an_unknown_category(folder):
    (folder / "masks" / "im0.json").write_text('{"1": "cat", "2": "bird"}')
    build_error(folder, "im0.json: instance 2: unknown category 'bird'; known: ['cat', 'dog']")


def test_builder_reports_a_missing_mask_and_a_mask_without_image(folder):
    (folder / "masks" / "im1.png").rename(folder / "masks" / "im9.png")
    err = build_error(folder, "im1.png: missing; every image needs its instance mask", "im9.png: matches no image")
    assert len(err.problems) == 2


def test_builder_reports_a_missing_sidecar_with_several_categories(folder):
    (folder / "masks" / "im0.json").unlink()
    build_error(folder, "im0.json: missing; with 2 categories each mask needs a sidecar")


def test_builder_reports_an_rgb_instance_mask(folder):
    Image.fromarray(np.zeros((10, 12, 3), np.uint8)).save(folder / "masks" / "im0.png")
    build_error(folder, "im0.png: the mask is RGB with 3 channels; a mask must be single-channel")


def test_builder_reports_corrupt_masks_images_and_sidecars(folder):
    (folder / "masks" / "im0.png").write_bytes(b"\x89PNG\r\n\x1a\n not a png")
    (folder / "images" / "im1.png").write_bytes(b"garbage")
    (folder / "masks" / "im2.json").write_text('{"1": "cat",')
    err = build_error(folder, "im0.png: cannot read the mask", "im1.png: cannot read the image: not an image file PIL can open",
                      "im2.json: invalid sidecar")
    assert len(err.problems) == 3  # every problem, not only the first


def test_builder_reports_a_non_utf8_file_name(folder):
    os.rename(folder / "images" / "im2.png", os.fsencode(folder / "images") + b"/im\xff.png")
    err = build_error(folder, r"im\xff.png'", "not valid UTF-8; rename the file", "im2.png: matches no image")
    str(err).encode("utf-8")  # the message itself is printable


def test_builder_reports_a_zero_sidecar_key_and_bad_iscrowd(folder):
    (folder / "masks" / "im0.json").write_text('{"0": "cat", "1": "cat", "2": {"category": "dog", "iscrowd": 2}}')
    build_error(folder, "key '0' is not an instance id", "instance 2: iscrowd must be 0 or 1, got 2")


def test_per_instance_layout_reports_empty_masks_bad_names_and_missing_folders(folder):
    per = folder / "per"
    for i in range(3):
        (per / f"im{i}").mkdir(parents=True)
    Image.fromarray(np.zeros((10, 12), np.uint8)).save(per / "im0" / "1_cat.png")
    Image.fromarray(np.ones((10, 12), np.uint8)).save(per / "im1" / "cat.png")
    Image.fromarray(np.ones((10, 12), np.uint8)).save(per / "im1" / "2_horse.png")
    (per / "im2").rmdir()
    with pytest.raises(CocoFormatError) as e:
        build_coco_dataset(folder / "images", per, folder / "out.json", CATEGORIES, layout="per_instance")
    message = str(e.value)
    assert "1_cat.png: instance 1 has no pixels (an empty mask)" in message
    assert "cat.png: the name should be <k>_<category>.png" in message
    assert "2_horse.png: unknown category 'horse'" in message
    assert "im2/: missing; every image needs a mask folder" in message


def test_builder_rejects_bad_arguments(folder):
    with pytest.raises(ValueError, match="layout must be one of"):
        build(folder, layout="coco")
    with pytest.raises(ValueError, match="encoding must be 'rle' or 'polygon'"):
        build(folder, encoding="bitmap")
    with pytest.raises(ValueError, match="categories is empty"):
        build_coco_dataset(folder / "images", folder / "masks", folder / "o.json", [])
    with pytest.raises(ValueError, match="duplicate category names"):
        build_coco_dataset(folder / "images", folder / "masks", folder / "o.json", ["cat", "cat"])
    with pytest.raises(CocoFormatError, match="nowhere/: not a folder"):
        build_coco_dataset(folder / "nowhere", folder / "masks", folder / "o.json", ["cat"])


def test_a_failed_build_leaves_the_previous_file_untouched(folder):
    build(folder)
    before = (folder / "out.json").read_bytes()
    Image.fromarray(np.full((10, 12), 7, np.uint8)).save(folder / "masks" / "im2.png")  # the last image fails
    with pytest.raises(CocoFormatError, match="instance 7 .* has no entry"):
        build(folder, encoding="polygon")
    assert (folder / "out.json").read_bytes() == before
    assert sorted(p.name for p in folder.iterdir()) == ["images", "masks", "out.json"]


def test_write_json_atomic_leaves_nothing_when_serialising_fails(tmp_path):
    with pytest.raises(TypeError):
        write_json_atomic({"ok": 1, "bad": object()}, tmp_path / "x.json")
    assert list(tmp_path.iterdir()) == []


def test_masks_to_coco_names_the_bad_mask():
    masks = np.zeros((3, 4, 4), bool)
    masks[0, 0, 0] = masks[2, 1, 1] = True
    with pytest.raises(ValueError, match=r"mask 1 \(image 5\) is empty"):
        masks_to_coco(masks, 1, image_id=5)
    with pytest.raises(ValueError, match=r"mask 1 has shape \(4, 5\)"):
        masks_to_coco([masks[0], np.ones((4, 5))], 1)
    with pytest.raises(ValueError, match="3 masks but 2 category ids"):
        masks_to_coco(masks, [1, 2])


# ---- validate_coco --------------------------------------------------------------------------------

@pytest.fixture
def good(folder):
    """(folder, COCO dict) of a good file; annotation ids 1-6, image ids 1-3, two RLE and one polygon image."""
    coco = json.loads(build(folder).read_text())
    polygons = json.loads(build(folder, encoding="polygon").read_text())
    coco["annotations"][4:] = polygons["annotations"][4:]  # image 3 has polygons
    return folder, coco


def validate(folder, coco, check_images=True):
    path = write_json_atomic(coco, folder / "check.json")
    return validate_coco(path, folder / "images", check_images=check_images)


def set_key(entries, index, key, value):
    def mutate(coco):
        coco[entries][index][key] = value
    return mutate


def del_key(entries, index, key):
    def mutate(coco):
        del coco[entries][index][key]
    return mutate


def ann(index, key, value):
    return set_key("annotations", index, key, value)


def img(index, key, value):
    return set_key("images", index, key, value)


def rle(**changes):  # changes to annotation 1's RLE
    return lambda coco: coco["annotations"][0]["segmentation"].update(changes)


def empty_rle(coco):
    coco["annotations"][0]["segmentation"] = encode_mask(np.zeros((10, 12), bool))


def shift_bbox(coco):
    coco["annotations"][1]["bbox"][0] += 3


# case: (mutation, expected text, annotation id, image id); each must produce a problem naming them.
CASES = {
    "missing top-level key": (lambda c: c.pop("annotations"), "missing top-level key 'annotations'", None, None),
    "top-level key not a list": (lambda c: c.update(images={}), "top-level 'images' must be a list", None, None),
    "annotation not an object": (lambda c: c["annotations"].append(3), "annotations[6] must be an object", None, None),
    "missing annotation key": (del_key("annotations", 2, "bbox"), "missing key(s) 'bbox'", 3, 2),
    "missing annotation id": (del_key("annotations", 2, "id"), "annotation #2: missing key(s) 'id'", None, 2),
    "missing image key": (del_key("images", 1, "height"), "missing key(s) 'height'", None, 2),
    "missing category name": (del_key("categories", 1, "name"), "category id=2: missing key(s) 'name'", None, None),
    "duplicate annotation id": (ann(3, "id", 1), "duplicate annotation id 1", 1, 2),
    "duplicate image id": (img(2, "id", 1), "duplicate image id 1", None, 1),
    "duplicate category id": (set_key("categories", 1, "id", 1), "duplicate category id 1", None, None),
    "duplicate category name": (set_key("categories", 1, "name", "cat"), "duplicate category name 'cat'", None, None),
    "empty categories": (lambda c: c.update(categories=[]), "no categories: 'categories' is empty", None, None),
    "unknown image id": (ann(0, "image_id", 42), "unknown image_id 42", 1, 42),
    "unknown category id": (ann(0, "category_id", 9), "unknown category_id 9; known: [1, 2]", 1, 1),
    "string annotation id": (ann(1, "id", "2"), "annotation id must be an integer, got str '2'", "2", 1),
    "float image id": (img(0, "id", 1.0), "image id must be an integer, got float 1.0", None, 1.0),
    "float category_id": (ann(1, "category_id", 2.0), "category_id must be an integer, got float 2.0", 2, 1),
    "string height": (img(0, "height", "10"), "height and width must be positive integers", None, 1),
    "iscrowd not 0/1": (ann(0, "iscrowd", 2), "iscrowd must be 0 or 1, got int 2", 1, 1),
    "iscrowd bool": (ann(0, "iscrowd", True), "iscrowd must be 0 or 1, got bool True", 1, 1),
    "bbox outside the image": (ann(1, "bbox", [6.0, 5.0, 7.0, 4.0]), "is outside the 12x10 image", 2, 1),
    "bbox with zero width": (ann(1, "bbox", [6.0, 5.0, 0.0, 4.0]), "non-positive width or height", 2, 1),
    "bbox not 4 numbers": (ann(1, "bbox", [6, 5, 5]), "bbox must be [x, y, width, height]", 2, 1),
    "bbox inconsistent with the mask": (shift_bbox, "does not match the segmentation's box [6.0, 5.0, 5.0, 4.0]", 2, 1),
    "area inconsistent": (ann(0, "area", 99.0), "area 99.0 does not match the segmentation's 12 pixels", 1, 1),
    "area NaN": (ann(0, "area", float("nan")), "area must be a finite number", 1, 1),
    "zero-area mask": (empty_rle, "the mask is empty (0 pixels)", 1, 1),
    "polygon with 2 points": (ann(4, "segmentation", [[1, 1, 5, 1]]), "polygon 0 has 4 coordinates", 5, 3),
    "polygon with odd count": (ann(4, "segmentation", [[1, 1, 5, 1, 5, 4, 1]]), "polygon 0 has 7 coordinates", 5, 3),
    "polygon outside the image": (ann(4, "segmentation", [[1, 1, 50, 1, 50, 4]]), "points outside the 12x10 image", 5, 3),
    "polygon of strings": (ann(4, "segmentation", [["1", "1", "5", "1", "5", "4"]]), "not a list of finite numbers", 5, 3),
    "empty polygon list": (ann(4, "segmentation", []), "empty polygon list", 5, 3),
    "RLE size differs from image": (rle(size=[10, 13]), "RLE size [10, 13] differs from the image's [height, width]", 1, 1),
    "corrupt RLE string": (rle(counts="a~~"), "RLE counts are corrupt: invalid character '~'", 1, 1),
    "RLE counts too short": (rle(counts=[10, 5]), "RLE counts add up to 15 pixels, not height*width = 120", 1, 1),
    "segmentation of the wrong type": (ann(0, "segmentation", "mask.png"), "segmentation must be polygons", 1, 1),
    "duplicate file name": (img(1, "file_name", "im0.png"), "file_name 'im0.png' is also used by image id=1", None, 2),
    "non-UTF-8 file name": (img(1, "file_name", "im\udcff.png"), r"file_name 'im\udcff.png' is not valid UTF-8", None, 2),
    "missing image file": (img(1, "file_name", "gone.png"), "image file does not exist", None, 2),
}


@pytest.mark.parametrize("case", list(CASES))
def test_validate_reports(good, case):
    folder, coco = good
    mutate, text, ann_id, image_id = CASES[case]
    mutate(coco)
    report = validate(folder, coco)
    matching = [p for p in report.problems if text in p.what]
    assert matching, f"{text!r} not reported; got:\n{report}"
    assert (matching[0].ann_id, matching[0].image_id) == (ann_id, image_id)
    assert text in str(report) and report.summary.startswith(str(folder / "check.json"))
    assert not report.ok


def test_validate_good_file_has_no_problems(good):
    folder, coco = good
    assert validate(folder, coco).ok


def test_validate_reports_every_problem_and_strict_raises_them_all(good):
    folder, coco = good
    for mutate, *_ in (CASES["unknown category id"], CASES["bbox outside the image"], CASES["zero-area mask"],
                       CASES["missing image file"], CASES["polygon with 2 points"]):
        mutate(coco)
    report = validate(folder, coco)
    assert len(report.problems) >= 5
    assert report.summary.endswith(f"{len(report.problems)} problem(s) (3 images, 6 annotations, 2 categories)")
    with pytest.raises(CocoFormatError) as e:
        report.raise_if_problems()
    assert len(e.value.problems) == len(report.problems)
    assert all(str(p) in str(e.value) for p in report.problems)
    with pytest.raises(CocoFormatError, match="unknown category_id 9"):
        validate_coco(folder / "check.json", folder / "images", strict=True)


def test_problem_text_names_file_ids_and_what(good):
    folder, coco = good
    CASES["bbox outside the image"][0](coco)
    (problem,) = [p for p in validate(folder, coco).problems if "outside" in p.what]
    assert str(problem) == (f"{folder / 'check.json'}: annotation id=2, image id=1: "
                            "bbox [6.0, 5.0, 7.0, 4.0] (x, y, w, h) is outside the 12x10 image")


def test_validate_corrupt_and_resized_image_files(good):
    folder, coco = good
    noise = np.random.default_rng(0).integers(0, 256, (10, 12, 3), dtype=np.uint8)
    Image.fromarray(noise).save(folder / "images" / "im0.png")
    (folder / "images" / "im0.png").write_bytes((folder / "images" / "im0.png").read_bytes()[:200])  # truncated
    Image.fromarray(np.zeros((11, 12, 3), np.uint8)).save(folder / "images" / "im1.png")
    problems = {p.file: p for p in validate(folder, coco).problems}
    assert "corrupt image file" in problems[str(folder / "images" / "im0.png")].what
    resized = problems[str(folder / "images" / "im1.png")]
    assert (resized.image_id, resized.what) == (2, "the image is 12x11 (WxH) but the JSON says 12x10")
    assert validate(folder, coco, check_images=False).ok


@pytest.mark.parametrize("content, text", [
    (b'{"images": [], "annotations": [', "the file ends early: truncated?"),
    (b'{"images": [1, 2,, 3]}', "invalid JSON at line 1 column 18"),
    (b"", "the file ends early"),
    ('{"images": [{"file_name": "caf\u00e9.png"}]}'.encode("latin-1"), "not valid UTF-8 at byte 30"),
    (b"[1, 2, 3]", "the top level must be an object"),
])
def test_validate_unreadable_json(tmp_path, content, text):
    (tmp_path / "a.json").write_bytes(content)
    report = validate_coco(tmp_path / "a.json", tmp_path)
    assert [text in p.what for p in report.problems] == [True], str(report)
    assert report.problems[0].file == str(tmp_path / "a.json")


def test_validate_missing_annotation_file(tmp_path):
    report = validate_coco(tmp_path / "nope.json", tmp_path)
    assert str(report.problems[0]) == f"{tmp_path / 'nope.json'}: the annotation file does not exist"


def test_rle_string_decoder_agrees_with_pycocotools_and_rejects_corrupt_strings():
    from pycocotools import mask as mask_utils

    rng = np.random.default_rng(0)
    mask = rng.random((37, 23)) < 0.3
    rle = encode_mask(mask)
    counts = rle_string_counts(rle["counts"])
    assert sum(counts) == 37 * 23 and sum(counts[1::2]) == mask_utils.area(rle) == mask.sum()
    with pytest.raises(ValueError, match="ends in the middle of a number"):
        rle_string_counts("0o")  # 'o' sets the continuation bit


# ---- the Dataset ---------------------------------------------------------------------------------

def test_dataset_names_a_missing_or_corrupt_image(good):
    folder, coco = good
    ds = CocoInstanceDataset(folder / "images", build(folder))
    (folder / "images" / "im1.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"im1.png: image file not found \(image id 2 of out.json"):
        ds[1]
    (folder / "images" / "im2.png").write_bytes(b"not an image")
    with pytest.raises(OSError, match=r"im2.png: cannot read the image \(image id 3 of out.json\)"):
        ds[2]
    Image.fromarray(np.zeros((9, 12, 3), np.uint8)).save(folder / "images" / "im0.png")
    with pytest.raises(ValueError, match=r"im0.png: the image is 12x9 \(WxH\) but image id 1 of out.json says 12x10"):
        ds[0]
