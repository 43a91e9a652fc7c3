"""course_lib.data.coco_build: masks_to_coco and build_coco_dataset round trips, and every problem of malformed input reported."""

import json
import os

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from course_lib.data.coco_build import build_coco_dataset, masks_to_coco
from course_lib.data.coco_dataset import load_coco
from course_lib.data.coco_validate import validate_coco
from course_lib.data.errors import CocoFormatError
from course_lib.data.shapes import CLASSES
from course_lib.utils.files import write_json_atomic
from shared_cases import hand_made_masks, write_hand_made_folder


@pytest.mark.parametrize("encoding", ["rle", "polygon"])
def test_masks_to_coco_round_trip_through_a_coco_file(tmp_path, encoding):
    masks = list(hand_made_masks().values())
    coco = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "thing"}]}
    for image_id, mask in enumerate(masks, start=1):
        h, w = mask.shape
        coco["images"].append({"id": image_id, "file_name": f"{image_id}.png", "height": h, "width": w})
        coco["annotations"] += masks_to_coco([mask], 1, image_id=image_id, first_id=image_id, encoding=encoding)
    ann_file = write_json_atomic(coco, tmp_path / "a.json")
    gt = load_coco(ann_file)
    for ann_id, mask in enumerate(masks, start=1):
        ann = gt.anns[ann_id]
        rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        assert isinstance(ann["segmentation"], list if encoding == "polygon" else dict)
        np.testing.assert_array_equal(gt.annToMask(ann), mask)
        assert ann["area"] == mask_utils.area(rle) == mask.sum()
        assert ann["bbox"] == pytest.approx(mask_utils.toBbox(rle).tolist())
        assert ann["iscrowd"] == 0
    assert validate_coco(ann_file, None).ok  # None: no image files to check


def test_masks_to_coco_ids_categories_and_crowd_as_rle():
    masks = np.zeros((3, 8, 8), bool)
    masks[0, :2] = masks[1, 3:5] = masks[2, 6:] = True
    anns = masks_to_coco(masks, [2, 3, 2], image_id=7, first_id=10, iscrowd=[0, 1, 0], encoding="polygon")
    assert [a["id"] for a in anns] == [10, 11, 12]
    assert [a["category_id"] for a in anns] == [2, 3, 2]
    assert {a["image_id"] for a in anns} == {7}
    assert [a["iscrowd"] for a in anns] == [0, 1, 0]
    assert isinstance(anns[0]["segmentation"], list) and isinstance(anns[1]["segmentation"], dict)


def instance_masks(shapes_root, stem):
    ids = np.asarray(Image.open(shapes_root / "masks" / f"{stem}.png"))
    names = json.loads((shapes_root / "masks" / f"{stem}.json").read_text())
    return [(ids == int(k), CLASSES.index(v) + 1) for k, v in sorted(names.items(), key=lambda kv: int(kv[0]))]


@pytest.mark.parametrize("encoding", ["rle", "polygon"])
def test_build_from_shapes_round_trips(shapes, tmp_path, encoding):
    out = build_coco_dataset(shapes / "images", shapes / "masks", tmp_path / "built.json", list(CLASSES),
                               encoding=encoding)
    assert validate_coco(out, shapes / "images").ok
    gt = load_coco(out)
    assert [gt.cats[i]["name"] for i in sorted(gt.cats)] == list(CLASSES)
    assert len(gt.imgs) == 10 and len(set(gt.anns)) == len(gt.dataset["annotations"])
    for image_id, info in gt.imgs.items():
        expected = instance_masks(shapes, info["file_name"][:-4])
        anns = gt.imgToAnns[image_id]
        assert len(anns) == len(expected)
        for ann, (mask, cat) in zip(anns, expected, strict=True):
            rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
            np.testing.assert_array_equal(gt.annToMask(ann), mask)
            assert ann["category_id"] == cat and ann["iscrowd"] == 0
            assert ann["area"] == mask_utils.area(rle)
            assert ann["bbox"] == mask_utils.toBbox(rle).tolist()
    if encoding == "rle":  # the builder reproduces the file that shapes.py writes
        shapes_file = json.loads((shapes / "annotations.json").read_text())
        assert json.loads(out.read_text())["annotations"] == shapes_file["annotations"]


@pytest.mark.parametrize("encoding", ["rle", "polygon"])
def test_build_hand_made_touching_holes_border_and_crowd(tmp_path, encoding):
    ids = write_hand_made_folder(tmp_path)
    out = build_coco_dataset(tmp_path / "images", tmp_path / "masks", tmp_path / "out.json", ["cat", "dog"],
                               encoding=encoding)
    assert validate_coco(out, tmp_path / "images").ok
    gt = load_coco(out)
    assert [im["file_name"] for im in gt.dataset["images"]] == ["a.png", "b.jpg"]
    assert gt.imgToAnns[2] == []
    anns = gt.imgToAnns[1]
    assert [a["category_id"] for a in anns] == [1, 2, 1, 2, 1]
    assert [a["iscrowd"] for a in anns] == [0, 0, 0, 0, 1]
    assert isinstance(anns[4]["segmentation"], dict)  # crowd regions are RLE even for encoding="polygon"
    for k, ann in enumerate(anns, start=1):
        np.testing.assert_array_equal(gt.annToMask(ann), ids == k)
    assert anns[3]["bbox"] == [11.0, 9.0, 1.0, 1.0] and anns[3]["area"] == 1.0


def test_per_instance_layout_gives_the_same_file(tmp_path):
    ids = write_hand_made_folder(tmp_path)
    per = tmp_path / "per_instance"
    (per / "a").mkdir(parents=True)
    (per / "b").mkdir()
    names = {1: "1_cat", 2: "2_dog", 3: "3_cat", 4: "4_dog", 5: "5_cat_crowd"}
    for k, name in names.items():
        Image.fromarray(((ids == k) * 255).astype(np.uint8)).save(per / "a" / f"{name}.png")
    a = build_coco_dataset(tmp_path / "images", tmp_path / "masks", tmp_path / "a.json", ["cat", "dog"])
    b = build_coco_dataset(tmp_path / "images", per, tmp_path / "b.json", ["cat", "dog"], layout="per_instance")
    assert json.loads(a.read_text()) == json.loads(b.read_text())


def test_single_category_needs_no_sidecars(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    ids = np.zeros((8, 8), np.uint8)
    ids[1:3, 1:3], ids[5:7, 4:8] = 1, 7
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "images" / "x.png")
    Image.fromarray(ids).save(tmp_path / "masks" / "x.png")
    out = build_coco_dataset(tmp_path / "images", tmp_path / "masks", tmp_path / "o.json", "cell")
    coco = json.loads(out.read_text())
    assert coco["categories"] == [{"id": 1, "name": "cell", "supercategory": "cell"}]
    assert [a["area"] for a in coco["annotations"]] == [4.0, 8.0]


def test_sixteen_bit_instance_ids(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    ids = np.zeros((4, 4), np.uint16)
    ids[0, 0], ids[3, 3] = 300, 1000
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "images" / "x.png")
    Image.fromarray(ids).save(tmp_path / "masks" / "x.png")
    (tmp_path / "masks" / "x.json").write_text('{"300": "a", "1000": "b"}')
    out = build_coco_dataset(tmp_path / "images", tmp_path / "masks", tmp_path / "o.json", ["a", "b"])
    assert [a["bbox"] for a in json.loads(out.read_text())["annotations"]] == [[0, 0, 1, 1], [3, 3, 1, 1]]


CATEGORIES = ["cat", "dog"]


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


def test_masks_to_coco_names_the_bad_mask():
    masks = np.zeros((3, 4, 4), bool)
    masks[0, 0, 0] = masks[2, 1, 1] = True
    with pytest.raises(ValueError, match=r"mask 1 \(image 5\) is empty"):
        masks_to_coco(masks, 1, image_id=5)
    with pytest.raises(ValueError, match=r"mask 1 has shape \(4, 5\)"):
        masks_to_coco([masks[0], np.ones((4, 5))], 1)
    with pytest.raises(ValueError, match="3 masks but 2 category ids"):
        masks_to_coco(masks, [1, 2])


# --- phone photos: masks in the upright frame ---------------------------------------------------------------

def photo_and_id_mask(tmp_path, photos, tag, h=48, w=64, mask_frame="upright"):
    """A phone photo with EXIF Orientation ``tag`` and its id mask (the L as instance 1), drawn upright or on
    the stored pixels."""
    obj = photos.make(tmp_path / "images" / "p.jpg", tag, h, w)
    ids = obj.astype(np.uint8)
    if mask_frame == "stored":
        ids = np.ascontiguousarray(photos.l_shape(h, w).astype(np.uint8)[::-1].T)  # any turn of the L that swaps
    (tmp_path / "masks").mkdir(exist_ok=True)
    Image.fromarray(ids).save(tmp_path / "masks" / "p.png")
    return obj


@pytest.mark.parametrize("tag", range(1, 9))
def test_an_id_mask_of_a_phone_photo_is_read_in_the_upright_frame(tmp_path, photos, tag):
    from course_lib.data.coco_dataset import CocoInstanceDataset

    photo_and_id_mask(tmp_path, photos, tag)
    out = build_coco_dataset(tmp_path / "images", tmp_path / "masks", tmp_path / "out.json", ["L"])
    im = json.loads(out.read_text())["images"][0]
    assert (im["width"], im["height"]) == (64, 48)
    image, target = CocoInstanceDataset(tmp_path / "images", out)[0]
    assert min(photos.on_object(image, target["masks"][0])) > 0.95


def test_a_mask_with_the_stored_size_of_a_turned_photo_is_refused_naming_the_tag(tmp_path, photos):
    photo_and_id_mask(tmp_path, photos, 6, mask_frame="stored")
    with pytest.raises(CocoFormatError) as e:
        build_coco_dataset(tmp_path / "images", tmp_path / "masks", tmp_path / "out.json", ["L"])
    assert "p.png: the mask is 48x64 (WxH) but its image p.jpg is 64x48: 48x64 is the photo's stored size, but " \
           "its EXIF Orientation 6 (turned 90 degrees (shown turned clockwise)) turns it to 64x48" in str(e.value)
    assert not (tmp_path / "out.json").exists()


def test_masks_of_photos_whose_size_cannot_tell_the_frame_are_read_upright_with_a_note(tmp_path, photos, capsys):
    photo_and_id_mask(tmp_path, photos, 3)
    build_coco_dataset(tmp_path / "images", tmp_path / "masks", tmp_path / "out.json", ["L"])
    assert "note: 1 photo(s) with an EXIF Orientation tag (in brackets) were read upright and their masks taken " \
           "as drawn on the upright photo (the sizes look alike either way): p.jpg (3)" in capsys.readouterr().out


def test_categories_that_differ_only_in_case_are_refused(folder):
    with pytest.raises(ValueError, match=r"category names \['cat', 'Cat '\] differ only in case or surrounding"):
        build_coco_dataset(folder / "images", folder / "masks", folder / "out.json", ["cat", "Cat "])
