"""Importers into COCO (LabelMe, Pascal VOC, YOLO, flat per-instance names, CVAT and Label Studio COCO),
each round-tripped from files written the way the tool writes them; mask hygiene; and malformed input,
each a clear error naming its file and nothing written."""

import io
import json

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from course_lib.data.coco_build import build_coco_dataset
from course_lib.data.coco_dataset import CocoInstanceDataset
from course_lib.data.coco_validate import category_differences, validate_coco
from course_lib.data.errors import CocoFormatError
from course_lib.data.importers import (
    image_root_of,
    labelme_to_coco,
    normalise_coco,
    split_coco,
    voc_to_coco,
    yolo_to_coco,
)
from course_lib.data.mask_files import ImageFileError, MaskFileError, image_size, read_mask_file


def save_image(path, h=32, w=40, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (h, w, 3)).astype(np.uint8)).save(path)


def masks_of(ann_file, root):
    ds = CocoInstanceDataset(root, ann_file)
    return {ds.coco.imgs[i]["file_name"]: ds.load_target(i, (ds.coco.imgs[i]["height"], ds.coco.imgs[i]["width"]))
            for i in ds.ids}


def nothing_written(folder):
    return not [p for p in folder.rglob("*") if p.name.startswith(("out.json", ".out.json"))]


# --- LabelMe ------------------------------------------------------------------------------------------------

def labelme(folder, shapes, name="a", h=32, w=40, **extra):
    save_image(folder / f"{name}.jpg", h, w)
    doc = {"version": "5.4.1", "flags": {}, "shapes": shapes, "imagePath": f"{name}.jpg", "imageData": None,
           "imageHeight": h, "imageWidth": w, **extra}
    (folder / f"{name}.json").write_text(json.dumps(doc, indent=2))


def shape(label, points, kind="polygon", group=None):
    return {"label": label, "points": points, "group_id": group, "description": "", "shape_type": kind,
            "flags": {}, "mask": None}


def test_labelme_round_trip_polygons_rectangles_circles_and_groups(tmp_path):
    labelme(tmp_path, [shape("cat", [[2, 2], [12, 2], [12, 10], [2, 10]]),
                       shape("dog", [[20, 4], [30, 14]], "rectangle"),
                       shape("dog", [[20, 20], [24, 20], [24, 24], [20, 24]], group=1),
                       shape("dog", [[30, 20], [34, 20], [34, 24], [30, 24]], group=1),
                       shape("cat", [[8, 24], [12, 24]], "circle")])
    out = labelme_to_coco(tmp_path, tmp_path / "out" / "coco.json")
    coco = json.loads(out.read_text())
    assert [c["name"] for c in coco["categories"]] == ["cat", "dog"]
    assert [(a["category_id"], a["area"]) for a in coco["annotations"]][:3] == [(1, 80.0), (2, 100.0), (2, 32.0)]
    assert abs(coco["annotations"][3]["area"] - np.pi * 16) < 6  # the circle, as a 32-gon
    target = masks_of(out, image_root_of(out))["a.jpg"]
    assert target["masks"].shape == (4, 32, 40) and int(target["masks"][0].sum()) == 80
    assert validate_coco(out, image_root_of(out)).ok


def test_labelme_imagepath_in_another_folder_and_given_categories(tmp_path):
    save_image(tmp_path / "images" / "b.png")
    (tmp_path / "ann").mkdir()
    (tmp_path / "ann" / "b.json").write_text(json.dumps({"shapes": [shape("dog", [[1, 1], [5, 1], [5, 5]])],
                                                         "imagePath": "..\\images\\b.png"}))
    labelme_to_coco(tmp_path / "ann", tmp_path / "out.json", categories=["cat", "dog"])
    coco = json.loads((tmp_path / "out.json").read_text())
    assert coco["images"][0]["file_name"] == "../images/b.png" and coco["annotations"][0]["category_id"] == 2


# --- Pascal VOC ---------------------------------------------------------------------------------------------

def voc_palette():
    pal = np.zeros((256, 3), np.uint8)
    pal[1:21] = np.random.default_rng(0).integers(0, 255, (20, 3))
    pal[255] = (224, 224, 192)  # VOC's void colour
    return pal.ravel().tolist()


def palette_png(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(arr.astype(np.uint8), mode="P")
    im.putpalette(voc_palette())
    im.save(path)


def voc(tmp_path, cls_of_obj2=15):
    objects, classes = np.zeros((30, 40), np.uint8), np.zeros((30, 40), np.uint8)
    objects[2:12, 2:12], classes[2:12, 2:12] = 1, 8  # a cat
    objects[15:25, 20:35], classes[15:25, 20:35] = 2, cls_of_obj2  # a person
    for m in (objects, classes):  # VOC's void outline round each object
        m[1, 1:13] = m[12, 1:13] = 255
    save_image(tmp_path / "JPEGImages" / "2007_000001.jpg", 30, 40)
    palette_png(tmp_path / "SegmentationObject" / "2007_000001.png", objects)
    palette_png(tmp_path / "SegmentationClass" / "2007_000001.png", classes)
    return tmp_path


def test_voc_round_trip_ignores_void_and_says_so(tmp_path):
    out, message = voc_to_coco(voc(tmp_path), tmp_path / "out.json")
    coco = json.loads(out.read_text())
    assert [(a["category_id"], a["area"]) for a in coco["annotations"]] == [(8, 100.0), (15, 150.0)]
    assert coco["categories"][7]["name"] == "cat" and coco["categories"][14]["name"] == "person"
    assert message.startswith("ignored 24 void pixel(s) (value 255) in 1 of 1")
    assert masks_of(out, image_root_of(out))["2007_000001.jpg"]["masks"].shape == (2, 30, 40)


def test_voc_image_set(tmp_path):
    voc(tmp_path)
    (tmp_path / "ImageSets" / "Segmentation").mkdir(parents=True)
    (tmp_path / "ImageSets" / "Segmentation" / "val.txt").write_text("2007_000001\n")
    out, _ = voc_to_coco(tmp_path, tmp_path / "out.json", image_set="val")
    assert len(json.loads(out.read_text())["images"]) == 1


# --- YOLO ---------------------------------------------------------------------------------------------------

def test_yolo_round_trip_with_data_yaml(tmp_path):
    save_image(tmp_path / "images" / "a.jpg", 50, 100)
    save_image(tmp_path / "images" / "empty.jpg", 50, 100)
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "a.txt").write_text("1 0.1 0.2 0.3 0.2 0.3 0.6 0.1 0.6\n0 0.5 0.5 0.7 0.5 0.6 0.9\n")
    (tmp_path / "data.yaml").write_text("path: .\ntrain: images\nnames:\n  0: cat\n  1: dog\n")
    out = yolo_to_coco(tmp_path / "images", tmp_path / "labels", tmp_path / "data.yaml", tmp_path / "out.json")
    coco = json.loads(out.read_text())
    a = coco["annotations"][0]
    assert (a["category_id"], a["bbox"], a["area"]) == (2, [10.0, 10.0, 20.0, 20.0], 400.0)
    assert [im["file_name"] for im in coco["images"]] == ["a.jpg", "empty.jpg"]
    assert [c["name"] for c in coco["categories"]] == ["cat", "dog"]


# --- flat per-instance names --------------------------------------------------------------------------------

def test_flat_names_round_trip(tmp_path):
    save_image(tmp_path / "images" / "img_1.png")
    save_image(tmp_path / "images" / "img_2.png")
    (tmp_path / "masks").mkdir()
    m = np.zeros((32, 40), np.uint8)
    m[3:9, 4:10] = 255
    Image.fromarray(m).save(tmp_path / "masks" / "img_1_hot_dog_1.png")  # a category with "_" in its name
    Image.fromarray(np.roll(m, 10, 1)).save(tmp_path / "masks" / "img_1_cat_2.png")
    out = build_coco_dataset(tmp_path / "images", tmp_path / "masks", tmp_path / "out.json", ["cat", "hot_dog"],
                             layout="flat")
    coco = json.loads(out.read_text())
    assert [(a["image_id"], a["category_id"], a["area"]) for a in coco["annotations"]] == [(1, 2, 36.0), (1, 1, 36.0)]  # in k order
    assert len(coco["images"]) == 2


# --- COCO from other tools ----------------------------------------------------------------------------------

def test_cvat_coco_with_uncompressed_rle_and_float_polygons(tmp_path):
    save_image(tmp_path / "images" / "a.jpg", 20, 30)
    m = np.zeros((20, 30), np.uint8)
    m[5:10, 3:13] = 1
    flat = m.ravel(order="F")
    change = np.flatnonzero(np.diff(flat)) + 1
    counts = np.diff(np.concatenate([[0], change, [flat.size]])).tolist()  # CVAT's column-major runs
    cvat = {"licenses": [{"name": "", "id": 0, "url": ""}], "info": {"contributor": "", "description": ""},
            "categories": [{"id": 1, "name": "cat", "supercategory": ""}],
            "images": [{"id": 1, "width": 30, "height": 20, "file_name": "a.jpg", "license": 0}],
            "annotations": [
                {"id": 1, "image_id": 1, "category_id": 1, "segmentation": {"counts": counts, "size": [20, 30]},
                 "area": 50.0, "bbox": [3.0, 5.0, 10.0, 5.0], "iscrowd": 1, "attributes": {"occluded": False}},
                {"id": 2, "image_id": 1, "category_id": 1, "segmentation": [[15.5, 2.25, 25.5, 2.25, 25.5, 12.75]],
                 "area": 52.5, "bbox": [15.5, 2.25, 10.0, 10.5], "iscrowd": 0, "attributes": {}}]}
    (tmp_path / "cvat.json").write_text(json.dumps(cvat))
    out, message = normalise_coco(tmp_path / "cvat.json", tmp_path / "out.json", tmp_path / "images")
    coco = json.loads(out.read_text())
    rle = coco["annotations"][0]["segmentation"]
    assert isinstance(rle["counts"], str) and np.array_equal(mask_utils.decode({**rle, "counts": rle["counts"].encode()}), m)
    assert "1 uncompressed RLE mask(s) compressed" in message


def test_label_studio_coco_with_category_ids_from_zero(tmp_path):
    save_image(tmp_path / "images" / "x.png", 20, 30)
    ls = {"images": [{"width": 30, "height": 20, "id": 0, "file_name": "images/x.png"}],
          "categories": [{"id": 0, "name": "cat"}, {"id": 1, "name": "dog"}],
          "annotations": [{"id": 0, "image_id": 0, "category_id": 1, "segmentation": [[2.0, 2.0, 12.0, 2.0, 12.0, 12.0]],
                           "bbox": [2.0, 2.0, 10.0, 10.0], "ignore": 0, "iscrowd": 0, "area": 50.0}],
          "info": {"year": 2024, "version": "1.0", "contributor": "Label Studio"}}
    (tmp_path / "result.json").write_text(json.dumps(ls))
    out, message = normalise_coco(tmp_path / "result.json", tmp_path / "out.json", tmp_path)
    coco = json.loads(out.read_text())
    assert [c["id"] for c in coco["categories"]] == [1, 2] and coco["annotations"][0]["category_id"] == 2
    assert "shifted" in message


def test_split_keeps_the_image_root_and_the_categories(tmp_path):
    for i in range(4):
        labelme(tmp_path / "photos", [shape("cat", [[2, 2], [12, 2], [12, 10]])], name=f"p{i}")
    out = labelme_to_coco(tmp_path / "photos", tmp_path / "data" / "all.json")
    train, val = split_coco(out, 0.25, seed=3)
    t, v = json.loads(train.read_text()), json.loads(val.read_text())
    assert (len(t["images"]), len(v["images"])) == (3, 1)
    assert {im["id"] for im in t["images"]}.isdisjoint(im["id"] for im in v["images"])
    assert image_root_of(val) == tmp_path / "data" / "../photos" and category_differences(train, val) == []
    assert split_coco(out, 0.25, seed=3) == (train, val) and json.loads(val.read_text()) == v  # same seed, same split


# --- mask hygiene -------------------------------------------------------------------------------------------

def jpeg_bytes(arr):
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=75)
    return buf.getvalue()


def square_mask(value=255):
    m = np.zeros((32, 40), np.uint8)
    m[4:20, 6:30] = value
    return m


def per_instance(tmp_path, write):
    save_image(tmp_path / "images" / "a.png")
    (tmp_path / "masks" / "a").mkdir(parents=True)
    write(tmp_path / "masks" / "a")
    with pytest.raises(CocoFormatError) as e:
        build_coco_dataset(tmp_path / "images", tmp_path / "masks", tmp_path / "out.json", ["cat"], layout="per_instance")
    assert not (tmp_path / "out.json").exists()
    return str(e.value)


def test_a_jpeg_named_png_is_refused_by_its_content(tmp_path):
    text = per_instance(tmp_path, lambda d: (d / "1_cat.png").write_bytes(jpeg_bytes(square_mask())))
    assert "1_cat.png: is a JPEG file (by its content, despite its extension)" in text


def test_a_binary_mask_that_went_through_jpeg_is_not_binary(tmp_path):
    noisy = np.asarray(Image.open(io.BytesIO(jpeg_bytes(square_mask()))))
    text = per_instance(tmp_path, lambda d: Image.fromarray(noisy).save(d / "1_cat.png"))
    assert "1_cat.png: not a binary mask" in text and "saved with lossy compression?" in text


def test_a_jpg_mask_among_png_masks_is_an_error_not_skipped(tmp_path):
    def write(d):
        Image.fromarray(square_mask()).save(d / "1_cat.png")
        (d / "2_cat.jpg").write_bytes(jpeg_bytes(square_mask()))
    assert "2_cat.jpg: not a .png mask" in per_instance(tmp_path, write)


def id_mask_build(tmp_path, ids, **kw):
    save_image(tmp_path / "images" / "a.png")
    (tmp_path / "masks").mkdir(exist_ok=True)
    Image.fromarray(ids).save(tmp_path / "masks" / "a.png")
    return build_coco_dataset(tmp_path / "images", tmp_path / "masks", tmp_path / "out.json", ["cat"], **kw)


def phantom_ids():
    ids = np.zeros((32, 40), np.uint8)
    ids[2:14, 2:14], ids[16:30, 20:38] = 1, 2
    ids[14, 2:9] = 3  # a 7-pixel speck along an edge, as JPEG leaves them
    ids[30, 30] = 4
    return ids


def test_an_id_mask_with_compression_noise_is_refused_unless_allowed(tmp_path):
    with pytest.raises(CocoFormatError, match=r"a.png: instance id\(s\) 3, 4 have only 7, 1 pixel\(s\).*noise"):
        id_mask_build(tmp_path, phantom_ids())
    assert not (tmp_path / "out.json").exists()
    out = id_mask_build(tmp_path, phantom_ids(), allow_tiny=True)
    assert len(json.loads(out.read_text())["annotations"]) == 4


def test_a_jpg_id_mask_beside_the_images_is_an_error(tmp_path):
    save_image(tmp_path / "images" / "a.png")
    (tmp_path / "masks").mkdir()
    (tmp_path / "masks" / "a.jpg").write_bytes(jpeg_bytes(square_mask(1)))
    with pytest.raises(CocoFormatError) as e:
        build_coco_dataset(tmp_path / "images", tmp_path / "masks", tmp_path / "out.json", ["cat"])
    assert "a.png: missing" in str(e.value) and "a.jpg: matches no image" in str(e.value)


def test_read_mask_file_rules(tmp_path):
    Image.fromarray(square_mask(1)).save(tmp_path / "ok.png")
    assert read_mask_file(tmp_path / "ok.png").sum() == 16 * 24
    Image.fromarray(np.stack([square_mask()] * 3, 2)).save(tmp_path / "rgb.png")
    with pytest.raises(MaskFileError, match="rgb.png: the mask is RGB with 3 channels"):
        read_mask_file(tmp_path / "rgb.png")
    with pytest.raises(MaskFileError, match="ok.png: is a L image; a VOC mask is a palette"):
        read_mask_file(tmp_path / "ok.png", "palette")


# --- validation of what other tools write -------------------------------------------------------------------

def coco_file(tmp_path, **changes):
    save_image(tmp_path / "images" / "a.png", 20, 30)
    data = {"images": [{"id": 1, "file_name": "a.png", "height": 20, "width": 30}],
            "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "segmentation": [[2, 2, 12, 2, 12, 12, 2, 12]],
                             "area": 100.0, "bbox": [2.0, 2.0, 10.0, 10.0], "iscrowd": 0}]}
    for k, v in changes.items():
        data[k] = v(data[k])
    path = tmp_path / f"coco_{len(list(tmp_path.glob('coco_*')))}.json"
    path.write_text(json.dumps(data))
    return path


def test_category_id_0_and_string_image_ids_are_problems_with_their_reason(tmp_path):
    bad = coco_file(tmp_path, categories=lambda c: [{"id": 0, "name": "cat"}, c[1]])
    assert "category id 0 (name 'cat'): ids must be 1, 2, ...; 0 is the background label" in str(validate_coco(bad, None))
    bad = coco_file(tmp_path, images=lambda ims: [{**ims[0], "id": "1"}])
    assert "Results do not correspond to current coco set" in str(validate_coco(bad, None))


def test_bboxes_that_disagree_with_the_segmentation_are_reported(tmp_path):
    bad = coco_file(tmp_path, annotations=lambda a: [{**a[0], "bbox": [12.0, 2.0, 10.0, 10.0]}])
    assert "does not match the segmentation's box" in str(validate_coco(bad, tmp_path / "images"))


def test_category_differences_name_swapped_ids(tmp_path):
    train = coco_file(tmp_path)
    val = coco_file(tmp_path, categories=lambda c: [{"id": 1, "name": "dog"}, {"id": 2, "name": "cat"}])
    assert category_differences(train, val) == [f"category id 1 is 'cat' in {train} but 'dog' in {val}",
                                                f"category id 2 is 'dog' in {train} but 'cat' in {val}"]
    assert category_differences(train, train) == []


# --- malformed input: each names its file (and shape / line / instance); nothing written ---------------------

def lm(shapes, **extra):
    return lambda d: labelme(d, shapes, **extra)


def write(name, text):
    def go(d):
        save_image(d / "a.jpg")
        (d / name).write_text(text)
    return go


LABELME_CASES = [
    (lm([shape("cat", [[1, 1], [5, 5]])]), "a.json: shape 0 ('cat'): a polygon needs at least 3 points, got 2"),
    (lm([shape("cat", [[1, 1], [5, 5], [1, 5]], "line")]), "a.json: shape 0 ('cat'): shape_type 'line' has no area"),
    (lm([shape("cat", [[1, 1], [1, 1]], "rectangle")]), "a.json: shape 0 ('cat'): the rectangle has no area"),
    (lm([shape("cat", [[1, 1], [5, 5], [9, 9]], "rectangle")]), "needs 2 points (two corners), got 3"),
    (lm([shape("cat", [[1, 1], [50, 5], [1, 9]])]), "a.json: shape 0 ('cat'): points outside the 40x32 image"),
    (lm([shape("cat", [[1, "x"], [5, 5], [1, 9]])]), "a.json: shape 0 ('cat'): points must be a list of [x, y]"),
    (lm([shape("cat", [[1, 1], [5, 5], [1, 9]])], imageHeight=64), "imageHeight x imageWidth = 64x40 but the image"),
    (write("a.json", '{"shapes": [], "imagePath": "gone.jpg"}'), "a.json: imagePath 'gone.jpg': image file"),
    (write("a.json", '{"shapes": [], "imagePath": '), "a.json: "),
    (lambda d: (labelme(d, []), (d / "a.jpg").write_bytes(b"not a jpeg")),
     "a.json: imagePath 'a.jpg': " + "{d}" + "/a.jpg: cannot read the image: not an image file PIL can open"),
    (write("a.json", '{"objects": []}'), "a.json: not a LabelMe file"),
    (lambda d: None, "no LabelMe .json files"),
]


@pytest.mark.parametrize("make, expected", LABELME_CASES)
def test_labelme_malformed(tmp_path, make, expected):
    (tmp_path / "in").mkdir()
    make(tmp_path / "in")
    with pytest.raises(CocoFormatError) as e:
        labelme_to_coco(tmp_path / "in", tmp_path / "out.json", categories=["cat"])
    assert expected.format(d=tmp_path / "in") in str(e.value), str(e.value)
    assert nothing_written(tmp_path)


def test_labelme_unknown_label_when_categories_are_given(tmp_path):
    labelme(tmp_path, [shape("bird", [[1, 1], [5, 1], [5, 5]])])
    with pytest.raises(CocoFormatError, match=r"a.json: shape 0 \('bird'\): unknown label; categories: \['cat'\]"):
        labelme_to_coco(tmp_path, tmp_path / "out.json", categories=["cat"])
    assert nothing_written(tmp_path)


def yolo_case(label_text, names="cat\ndog\n"):
    def go(d):
        save_image(d / "images" / "a.jpg")
        (d / "labels").mkdir()
        (d / "labels" / "a.txt").write_text(label_text)
        (d / "classes.txt").write_text(names)
    return go


YOLO_CASES = [
    (yolo_case("2 0.1 0.1 0.5 0.1 0.5 0.5\n"), "a.txt: line 1: class 2 is not in 0..1 (2 names)"),
    (yolo_case("0 0.5 0.5 0.2 0.2\n"), "a.txt: line 1: 4 numbers is a YOLO box"),
    (yolo_case("0 10 10 50 10 50 50\n"), "a.txt: line 1: coordinates must be normalised to 0..1"),
    (yolo_case("0 0.1 0.1 0.5\n"), "a.txt: line 1: a polygon needs an even number of coordinates"),
    (yolo_case("0 0.1 0.1 0.5 0.1 0.5 0.5\ncat 0.1 0.1 0.5 0.1 0.5 0.5\n"), "a.txt: line 2: not numbers"),
]


@pytest.mark.parametrize("make, expected", YOLO_CASES)
def test_yolo_malformed(tmp_path, make, expected):
    make(tmp_path)
    with pytest.raises(CocoFormatError) as e:
        yolo_to_coco(tmp_path / "images", tmp_path / "labels", tmp_path / "classes.txt", tmp_path / "out.json")
    assert expected in str(e.value), str(e.value)
    assert nothing_written(tmp_path)


def test_yolo_label_without_image(tmp_path):
    yolo_case("0 0.1 0.1 0.5 0.1 0.5 0.5\n")(tmp_path)
    (tmp_path / "labels" / "b.txt").write_text("0 0.1 0.1 0.5 0.1 0.5 0.5\n")
    with pytest.raises(CocoFormatError, match=r"b.txt: no image b.\* in"):
        yolo_to_coco(tmp_path / "images", tmp_path / "labels", tmp_path / "classes.txt", tmp_path / "out.json")


def test_voc_object_with_two_classes_and_rgb_masks(tmp_path):
    voc(tmp_path)
    cls = np.asarray(Image.open(tmp_path / "SegmentationClass" / "2007_000001.png")).copy()
    cls[20, 25] = 12
    palette_png(tmp_path / "SegmentationClass" / "2007_000001.png", cls)
    with pytest.raises(CocoFormatError, match=r"2007_000001.png: object 2: its pixels in 2007_000001.png have "
                                              r"class\(es\) \[12, 15\]"):
        voc_to_coco(tmp_path, tmp_path / "out.json")
    Image.fromarray(np.zeros((30, 40, 3), np.uint8)).save(tmp_path / "SegmentationObject" / "2007_000001.png")
    with pytest.raises(CocoFormatError, match="SegmentationObject/2007_000001.png: is a RGB image"):
        voc_to_coco(tmp_path, tmp_path / "out.json")
    assert nothing_written(tmp_path)


def test_voc_missing_class_png(tmp_path):
    voc(tmp_path)
    (tmp_path / "SegmentationClass" / "2007_000001.png").unlink()
    with pytest.raises(CocoFormatError, match="SegmentationClass/2007_000001.png: missing"):
        voc_to_coco(tmp_path, tmp_path / "out.json")


def test_other_tools_box_only_annotation_and_bad_rle(tmp_path):
    path = coco_file(tmp_path, annotations=lambda a: [{**a[0], "segmentation": []},
                                                      {**a[0], "id": 2, "segmentation": {"counts": [5, 3], "size": [20, 30]}}])
    with pytest.raises(CocoFormatError) as e:
        normalise_coco(path, tmp_path / "out.json", tmp_path / "images")
    assert "annotation id=1: no segmentation (a box-only annotation)" in str(e.value)
    assert "annotation id=2: RLE counts add up to 8 pixels" in str(e.value)
    assert nothing_written(tmp_path)


def test_an_import_that_fails_validation_writes_nothing(tmp_path):
    path = coco_file(tmp_path, images=lambda ims: [{**ims[0], "file_name": "missing.png"}])
    with pytest.raises(CocoFormatError, match="missing.png: image id=1: image file does not exist"):
        normalise_coco(path, tmp_path / "out.json", tmp_path / "images")
    assert nothing_written(tmp_path)


def test_a_flat_mask_that_matches_no_image_or_category_is_an_error(tmp_path):
    save_image(tmp_path / "images" / "img_1.png")
    (tmp_path / "masks").mkdir()
    Image.fromarray(square_mask()).save(tmp_path / "masks" / "img_1_bird_1.png")
    Image.fromarray(square_mask()).save(tmp_path / "masks" / "img_9_cat_1.png")
    with pytest.raises(CocoFormatError) as e:
        build_coco_dataset(tmp_path / "images", tmp_path / "masks", tmp_path / "out.json", ["cat"], layout="flat")
    assert "img_1_bird_1.png: matches no image" in str(e.value) and "img_9_cat_1.png: matches no image" in str(e.value)
    assert nothing_written(tmp_path)


def test_image_root_of_fits_the_usual_export_layouts(tmp_path):
    (tmp_path / "annotations").mkdir()
    (tmp_path / "images").mkdir()
    ann = tmp_path / "annotations" / "instances.json"
    ann.write_text("{}")
    assert image_root_of(ann) == tmp_path / "images"  # annotations/ + images/
    (tmp_path / "annotations" / "images").mkdir()
    assert image_root_of(ann) == tmp_path / "annotations" / "images"  # the shapes layout
    ann.write_text(json.dumps({"info": {"image_root": "../photos"}}))
    assert image_root_of(ann) == tmp_path / "annotations" / "../photos"  # what coco build records


def test_coco_command_builds_voc_and_validate_fails_with_the_report(tmp_path, capsys):
    from course_lib.course.cli import main as cli

    voc(tmp_path / "voc")
    assert cli(["coco", "build", "voc", str(tmp_path / "voc"), "--out", str(tmp_path / "d" / "voc.json")]) == 0
    assert "ignored 24 void pixel(s)" in capsys.readouterr().out
    assert cli(["coco", "validate", str(tmp_path / "d" / "voc.json")]) == 0
    bad = coco_file(tmp_path, annotations=lambda a: [{**a[0], "category_id": 7}])
    assert cli(["coco", "validate", str(bad), "--images", str(tmp_path / "images")]) == 1
    out, err = capsys.readouterr()
    assert "unknown category_id 7" in out and "1 problem(s), listed above" in err and err.count("\n") == 1
    Image.fromarray(np.zeros((30, 40, 3), np.uint8)).save(tmp_path / "voc" / "SegmentationClass" / "2007_000001.png")
    assert cli(["coco", "build", "voc", str(tmp_path / "voc"), "--out", str(tmp_path / "e.json")]) == 1
    out, err = capsys.readouterr()
    assert "SegmentationClass/2007_000001.png: is a RGB image" in out and "nothing written" in err
    assert not (tmp_path / "e.json").exists()


# --- one way to read an image's size, one message ----------------------------------------------------------

def test_image_size_reads_the_header_and_names_a_bad_file(tmp_path):
    save_image(tmp_path / "a.png", 30, 40)
    assert image_size(tmp_path / "a.png") == (30, 40)
    with pytest.raises(ImageFileError, match=r"gone.png: cannot read the image: no such file"):
        image_size(tmp_path / "gone.png")
    (tmp_path / "bad.png").write_bytes(b"garbage")
    with pytest.raises(ImageFileError, match=r"bad.png: cannot read the image: not an image file PIL can open "
                                             r"\(UnidentifiedImageError"):
        image_size(tmp_path / "bad.png")


def test_voc_and_yolo_name_an_unreadable_image(tmp_path):
    voc(tmp_path / "voc")
    (tmp_path / "voc" / "JPEGImages" / "2007_000001.jpg").write_bytes(b"garbage")
    with pytest.raises(CocoFormatError, match=r"2007_000001.jpg: cannot read the image: not an image file"):
        voc_to_coco(tmp_path / "voc", tmp_path / "out.json")
    yolo_case("0 0.1 0.1 0.5 0.1 0.5 0.5\n")(tmp_path / "yolo")
    (tmp_path / "yolo" / "images" / "a.jpg").write_bytes(b"garbage")
    with pytest.raises(CocoFormatError, match=r"a.jpg: cannot read the image: not an image file"):
        yolo_to_coco(tmp_path / "yolo" / "images", tmp_path / "yolo" / "labels", tmp_path / "yolo" / "classes.txt",
                     tmp_path / "out.json")
    assert nothing_written(tmp_path)
