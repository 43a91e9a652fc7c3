"""course_lib.data.coco_validate: validate_coco reports every problem, naming its file, id and what is wrong."""

import numpy as np
import pytest
from PIL import Image

from course_lib.data.coco_validate import rle_string_counts, validate_coco
from course_lib.data.errors import CocoFormatError
from course_lib.data.masks import encode_mask
from course_lib.utils.files import write_json_atomic


def test_validate_report_on_a_good_file(shapes):
    report = validate_coco(shapes / "annotations.json", shapes / "images", strict=True)
    assert report.ok and report.problems == []
    assert report.summary.endswith(f"OK (10 images, {report.counts['annotations']} annotations, 3 categories)")
    assert report.raise_if_problems() is report


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


def test_validate_names_the_exif_tag_when_the_json_has_the_stored_size(tmp_path, photos):
    obj = photos.make(tmp_path / "p.jpg", 6)
    coco = {"images": [{"id": 1, "file_name": "p.jpg", "height": 64, "width": 48}],  # the stored size
            "categories": [{"id": 1, "name": "L"}], "annotations": []}
    report = validate_coco(write_json_atomic(coco, tmp_path / "a.json"), tmp_path)
    assert [p.what for p in report.problems] == [
        "the image is 64x48 (WxH, upright) but the JSON says 48x64: 48x64 is the photo's stored size, but its EXIF "
        "Orientation 6 (turned 90 degrees (shown turned clockwise)) turns it to 64x48: the course reads photos "
        "upright, as annotation tools show them; the annotations were made on the stored pixels: remove the "
        "photo's tag (exiftool -Orientation= <file>) if they fit them, or annotate the upright photo"]
    coco["images"][0].update(height=48, width=64)
    coco["annotations"] = [{"id": 1, "image_id": 1, "category_id": 1, "segmentation": encode_mask(obj),
                            "area": float(obj.sum()), "bbox": [8.0, 6.0, 32.0, 24.0], "iscrowd": 0}]
    assert validate_coco(write_json_atomic(coco, tmp_path / "b.json"), tmp_path).ok
