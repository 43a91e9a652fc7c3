"""Importers into COCO (LabelMe, Pascal VOC, YOLO, flat per-instance names, CVAT and Label Studio COCO),
each round-tripped from files written the way the tool writes them; mask hygiene; and malformed input,
each a clear error naming its file and nothing written."""

import io
import json

import numpy as np
import pytest
from PIL import Image, ImageOps
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
    (lm([shape("cat", [[1, 1], [5, 5], [1, 5]], "ellipse")]), "a.json: shape 0 ('cat'): unknown shape_type 'ellipse'"),
    (lm([shape("cat", [[1, 1], [5, 5], [9, 9]])]), "a.json: shape 0 ('cat'): the polygon has no area (its points lie"),
    (lm([shape("cat", [[4, 4], [4, 4]], "circle")]), "a.json: shape 0 ('cat'): the circle has no area (radius 0)"),
    (lm([shape("cat", [[1.1, 1.1], [1.3, 1.1], [1.2, 1.3]])]), "a.json: shape 0 ('cat'): covers no whole pixel"),
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


# --- phone photos: EXIF Orientation in each of the 8 tags ---------------------------------------------------

def labelme_image_data(path):
    """``imageData`` as LabelMe 5.5 writes it: the photo turned upright and saved again (no EXIF), base64."""
    import base64

    with Image.open(path) as im:
        buf = io.BytesIO()
        ImageOps.exif_transpose(im).save(buf, format="JPEG")
    return base64.b64encode(buf.getvalue()).decode()


def labelme_photo(folder, photos, tag, image_data, h=48, w=64, points=None):
    """A LabelMe 5.5 file on a phone photo: its L drawn upright, ``imageHeight``/``imageWidth`` upright."""
    obj = photos.make(folder / "p.jpg", tag, h, w)
    doc = {"version": "5.5.0", "flags": {}, "shapes": [shape("L", points or photos.polygon)], "imagePath": "p.jpg",
           "imageData": labelme_image_data(folder / "p.jpg") if image_data else None,
           "imageHeight": h, "imageWidth": w}
    (folder / "p.json").write_text(json.dumps(doc, indent=2))
    return obj


def only_target(out):
    ds = CocoInstanceDataset(image_root_of(out), out)
    return ds[0]


@pytest.mark.parametrize("image_data", [False, True], ids=["no imageData", "imageData"])
@pytest.mark.parametrize("tag", range(1, 9))
def test_labelme_on_a_phone_photo_puts_the_mask_on_the_object(tmp_path, photos, tag, image_data):
    labelme_photo(tmp_path / "in", photos, tag, image_data)
    out = labelme_to_coco(tmp_path / "in", tmp_path / "out.json")
    im = json.loads(out.read_text())["images"][0]
    assert (im["width"], im["height"]) == (64, 48)  # the upright size, whatever the stored one
    image, target = only_target(out)
    on, covered = photos.on_object(image, target["masks"][0])
    assert on > 0.95 and covered > 0.95, (on, covered)


def test_labelme_on_a_square_photo_turned_anticlockwise(tmp_path, photos, capsys):
    labelme_photo(tmp_path / "in", photos, 8, False, 48, 48, points=[[8, 6], [16, 6], [16, 22], [40, 22],
                                                                     [40, 30], [8, 30]])
    image, target = only_target(labelme_to_coco(tmp_path / "in", tmp_path / "out.json"))
    assert min(photos.on_object(image, target["masks"][0])) > 0.95
    assert "1 photo(s) with an EXIF Orientation tag (in brackets)" in capsys.readouterr().out  # the size cannot tell


def test_labelme_drawn_on_the_stored_pixels_is_refused_naming_the_tag(tmp_path, photos):
    labelme_photo(tmp_path / "in", photos, 6, False)
    doc = json.loads((tmp_path / "in" / "p.json").read_text())
    doc.update(imageHeight=64, imageWidth=48)  # an old LabelMe: the stored size (and stored-frame points)
    (tmp_path / "in" / "p.json").write_text(json.dumps(doc))
    with pytest.raises(CocoFormatError) as e:
        labelme_to_coco(tmp_path / "in", tmp_path / "out.json")
    assert "p.json: imageWidth x imageHeight = 48x64 but the image p.jpg is 64x48 upright" in str(e.value)
    assert "EXIF Orientation 6 (turned 90 degrees" in str(e.value) and "drawn on the stored pixels" in str(e.value)
    assert nothing_written(tmp_path)


def test_labelme_whose_image_data_shows_the_stored_pixels_is_refused(tmp_path, photos):
    import base64

    labelme_photo(tmp_path / "in", photos, 3, False)  # upside down: the sizes cannot tell
    doc = json.loads((tmp_path / "in" / "p.json").read_text())
    doc["imageData"] = base64.b64encode((tmp_path / "in" / "p.jpg").read_bytes()).decode()  # the raw file
    (tmp_path / "in" / "p.json").write_text(json.dumps(doc))
    with pytest.raises(CocoFormatError, match=r"p.json: its imageData shows the stored pixels of p.jpg, which "
                                              r"EXIF Orientation 3 \(upside down\) turns"):
        labelme_to_coco(tmp_path / "in", tmp_path / "out.json")
    assert nothing_written(tmp_path)


def test_labelme_without_image_data_on_an_upside_down_photo_is_read_upright_with_a_note(tmp_path, photos, capsys):
    labelme_photo(tmp_path / "in", photos, 3, False)
    labelme_photo(tmp_path / "proof", photos, 6, False)  # 6 on a 64x48 photo: the size proves the frame
    labelme_to_coco(tmp_path / "in", tmp_path / "a.json")
    assert "read upright, as LabelMe 4+ draws them: p.jpg (3)" in capsys.readouterr().out
    labelme_to_coco(tmp_path / "proof", tmp_path / "b.json")
    assert "EXIF" not in capsys.readouterr().out


@pytest.mark.parametrize("tag", range(1, 9))
def test_yolo_on_a_phone_photo_uses_the_upright_size(tmp_path, photos, capsys, tag):
    photos.make(tmp_path / "images" / "p.jpg", tag)
    (tmp_path / "labels").mkdir()
    coords = " ".join(f"{x / 64:.6f} {y / 48:.6f}" for x, y in photos.polygon)
    (tmp_path / "labels" / "p.txt").write_text(f"0 {coords}\n")
    (tmp_path / "classes.txt").write_text("L\n")
    out = yolo_to_coco(tmp_path / "images", tmp_path / "labels", tmp_path / "classes.txt", tmp_path / "out.json")
    image, target = only_target(out)
    assert min(photos.on_object(image, target["masks"][0])) > 0.95
    assert (f"p.jpg ({tag})" in capsys.readouterr().out) == (tag != 1)


# --- label spellings ----------------------------------------------------------------------------------------

def test_labelme_label_spellings_merge_with_a_note_naming_the_files(tmp_path, capsys):
    for name, label in (("a", "apple"), ("b", "Apple"), ("c", "apple "), ("d", "pear")):
        labelme(tmp_path, [shape(label, [[2, 2], [12, 2], [12, 10], [2, 10]])], name=name)
    out = labelme_to_coco(tmp_path, tmp_path / "out" / "coco.json")
    coco = json.loads(out.read_text())
    assert [c["name"] for c in coco["categories"]] == ["apple", "pear"]
    assert [a["category_id"] for a in coco["annotations"]] == [1, 1, 1, 2]
    text = capsys.readouterr().out
    assert ("note: labels 'Apple' in b.json; 'apple' in a.json; 'apple ' in c.json are one category, 'apple' "
            "(case and surrounding spaces are ignored)") in text


def test_labelme_given_categories_take_any_spelling_and_inner_spaces_stay_apart(tmp_path, capsys):
    for name, label in (("a", "Red apple"), ("b", "red  apple"), ("c", " PEAR")):
        labelme(tmp_path, [shape(label, [[2, 2], [12, 2], [12, 10], [2, 10]])], name=name)
    out = labelme_to_coco(tmp_path, tmp_path / "out.json", categories=["pear", "red apple", "red  apple"])
    assert [a["category_id"] for a in json.loads(out.read_text())["annotations"]] == [2, 3, 1]
    text = capsys.readouterr().out
    assert "labels ' PEAR' in c.json are one category, 'pear'" in text
    assert ("labels 'red  apple' in b.json; 'red apple' in a.json differ only in the spaces inside them and stay 2 "
            "categories") in text
    with pytest.raises(CocoFormatError, match="categories 'pear' and 'Pear' differ only in case"):
        labelme_to_coco(tmp_path, tmp_path / "out2.json", categories=["pear", "Pear"])


def test_yolo_names_that_differ_only_in_case_are_refused_and_spaces_trimmed(tmp_path, capsys):
    yolo_case("0 0.1 0.1 0.5 0.1 0.5 0.5\n", names="cat\ndog\nCat\n")(tmp_path)
    with pytest.raises(CocoFormatError, match=r"classes.txt: classes 0 \('cat'\) and 2 \('Cat'\) differ only in case"):
        yolo_to_coco(tmp_path / "images", tmp_path / "labels", tmp_path / "classes.txt", tmp_path / "out.json")
    (tmp_path / "data.yaml").write_text("names:\n  0: 'cat '\n  1: dog\n")
    out = yolo_to_coco(tmp_path / "images", tmp_path / "labels", tmp_path / "data.yaml", tmp_path / "out.json")
    assert [c["name"] for c in json.loads(out.read_text())["categories"]] == ["cat", "dog"]
    assert "surrounding spaces removed from class name(s) 'cat '" in capsys.readouterr().out


# --- LabelMe shapes: lines and points skipped, masks read ---------------------------------------------------

def b64_png(arr):
    """A mask as LabelMe 5 stores it (``utils.img_arr_to_b64``): a PNG, ``base64.encodebytes`` (with newlines)."""
    import base64

    buf = io.BytesIO()
    Image.fromarray(arr.astype(np.uint8)).save(buf, format="PNG")
    return base64.encodebytes(buf.getvalue()).decode()


def mask_shape(label, x0, y0, arr, group=None):
    """A LabelMe 5 mask shape: its two points are the corners of its box, inclusive, its mask a 0/1 PNG."""
    h, w = arr.shape
    return {**shape(label, [[float(x0), float(y0)], [float(x0 + w - 1), float(y0 + h - 1)]], "mask", group),
            "mask": b64_png(arr)}


def test_labelme_lines_and_points_beside_polygons_are_skipped_with_a_warning_each(tmp_path, capsys):
    labelme(tmp_path, [shape("cat", [[2, 2], [12, 2], [12, 10], [2, 10]]),
                       shape("tail", [[12, 10], [20, 14]], "line"),
                       shape("whisker", [[2, 2], [5, 3], [8, 2]], "linestrip"),
                       shape("eye", [[5, 5]], "point")])
    out = labelme_to_coco(tmp_path, tmp_path / "out.json")
    coco = json.loads(out.read_text())
    assert [c["name"] for c in coco["categories"]] == ["cat"] and len(coco["annotations"]) == 1
    warnings = [line for line in capsys.readouterr().out.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 3
    assert warnings[0].endswith("a.json: shape 1 ('tail'): line skipped: a line has no area; only shapes with area "
                                "become instances")
    assert "shape 2 ('whisker'): linestrip skipped" in warnings[1] and "shape 3 ('eye'): point skipped" in warnings[2]


def test_labelme_mask_shapes_are_read_as_masks_and_join_their_group(tmp_path):
    blob = np.zeros((6, 9), np.uint8)
    blob[1:5, 2:8] = 1
    blob[2:4, 4:6] = 0  # a hole: only a mask can hold it
    labelme(tmp_path, [mask_shape("cat", 10, 4, blob),
                       mask_shape("dog", 20, 20, np.ones((3, 4), np.uint8), group=7),
                       shape("dog", [[30, 20], [34, 20], [34, 24], [30, 24]], group=7)])
    out = labelme_to_coco(tmp_path, tmp_path / "out.json")
    coco = json.loads(out.read_text())
    cat, dog = coco["annotations"]
    assert (cat["area"], cat["bbox"], isinstance(cat["segmentation"], dict)) == (20.0, [12.0, 5.0, 6.0, 4.0], True)
    assert dog["area"] == 12.0 + 16.0 and dog["bbox"] == [20.0, 20.0, 14.0, 4.0]  # the mask and the polygon
    expected = np.zeros((32, 40), bool)
    expected[4:10, 10:19] = blob.astype(bool)
    np.testing.assert_array_equal(masks_of(out, image_root_of(out))["a.jpg"]["masks"][0].numpy().astype(bool),
                                  expected)


MASK_CASES = [
    ({"mask": None}, "a mask shape needs its 'mask' (a base64 PNG), got NoneType"),
    ({"mask": "bm90IGEgcG5n"}, "its 'mask' is not a base64 PNG"),
    ({"points": [[10.0, 4.0], [20.0, 4.0]]}, "its 'mask' is 3x3 (WxH) but its points span 11x1 pixels"),
    ({"points": [[38.0, 4.0], [40.0, 6.0]]}, "the mask reaches outside the 40x32 image"),
    ({"mask": b64_png(np.zeros((3, 3)))}, "the mask has no area (no pixel set)"),
    ({"mask": b64_png(np.ones((3, 3, 3)))}, "its 'mask' has 3 channels"),
]


@pytest.mark.parametrize("change, expected", MASK_CASES)
def test_labelme_broken_mask_shapes_say_what_is_wrong(tmp_path, change, expected):
    labelme(tmp_path, [{**mask_shape("cat", 10, 4, np.ones((3, 3), np.uint8)), **change}])
    with pytest.raises(CocoFormatError) as e:
        labelme_to_coco(tmp_path, tmp_path / "out.json")
    assert f"a.json: shape 0 ('cat'): {expected}" in str(e.value), str(e.value)
    assert nothing_written(tmp_path)


# --- crowd regions and VOC's difficult objects --------------------------------------------------------------

def cvat_crowd_file(tmp_path, crowd=1):
    save_image(tmp_path / "images" / "a.jpg", 20, 30)
    m = np.zeros((20, 30), np.uint8)
    m[5:10, 3:13] = 1
    flat = m.ravel(order="F")
    change = np.flatnonzero(np.diff(flat)) + 1
    counts = np.diff(np.concatenate([[0], change, [flat.size]])).tolist()
    cvat = {"categories": [{"id": 1, "name": "cat", "supercategory": ""}],
            "images": [{"id": 1, "width": 30, "height": 20, "file_name": "a.jpg"}],
            "annotations": [
                {"id": 1, "image_id": 1, "category_id": 1, "segmentation": {"counts": counts, "size": [20, 30]},
                 "area": 50.0, "bbox": [3.0, 5.0, 10.0, 5.0], "iscrowd": crowd, "attributes": {"occluded": False}},
                {"id": 2, "image_id": 1, "category_id": 1, "segmentation": [[15.0, 2.0, 25.0, 2.0, 25.0, 12.0]],
                 "area": 50.0, "bbox": [15.0, 2.0, 10.0, 10.0], "iscrowd": 0, "attributes": {}}]}
    (tmp_path / "cvat.json").write_text(json.dumps(cvat))
    return tmp_path / "cvat.json"


def test_cvat_crowd_regions_are_kept_as_ignore_regions_and_counted(tmp_path):
    out, message = normalise_coco(cvat_crowd_file(tmp_path), tmp_path / "out.json", tmp_path / "images")
    assert [a["iscrowd"] for a in json.loads(out.read_text())["annotations"]] == [1, 0]
    assert "kept 1 crowd region(s) (iscrowd=1) as ignore regions" in message and "--crowd-as-objects" in message
    target = CocoInstanceDataset(tmp_path / "images", out, drop_crowd=True)[0][1]
    assert target["iscrowd"].tolist() == [0] and target["masks"].shape[0] == 1  # training sets the crowd aside
    out, message = normalise_coco(tmp_path / "cvat.json", tmp_path / "out.json", tmp_path / "images",
                                  crowd_as_objects=True)
    assert [a["iscrowd"] for a in json.loads(out.read_text())["annotations"]] == [0, 0]
    assert "1 crowd region(s) (iscrowd=1) made objects (iscrowd=0)" in message


def voc_difficult(tmp_path, difficult="1", name="dog", box=(30, 3, 38, 10)):
    """The VOC folder of ``voc`` plus its Annotations XML: the cat, the person, and a third object whose pixels
    are void in both masks (VOC paints difficult objects void), marked ``<difficult>``."""
    voc(tmp_path)
    for folder in ("SegmentationObject", "SegmentationClass"):
        path = tmp_path / folder / "2007_000001.png"
        arr = np.asarray(Image.open(path)).copy()
        arr[box[1] - 1:box[3], box[0] - 1:box[2]] = 255
        palette_png(path, arr)
    objects = [("cat", "0", (3, 3, 12, 12)), ("person", "0", (21, 16, 35, 25)), (name, difficult, box)]
    xml = "".join(f"<object><name>{n}</name><pose>Unspecified</pose><truncated>0</truncated>"
                  f"<difficult>{d}</difficult><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin><xmax>{b[2]}</xmax>"
                  f"<ymax>{b[3]}</ymax></bndbox></object>" for n, d, b in objects)
    (tmp_path / "Annotations").mkdir()
    (tmp_path / "Annotations" / "2007_000001.xml").write_text(
        f"<annotation><folder>VOC2012</folder><filename>2007_000001.jpg</filename><size><width>40</width>"
        f"<height>30</height><depth>3</depth></size><segmented>1</segmented>{xml}</annotation>")
    return tmp_path


def test_voc_difficult_objects_are_ignore_regions_over_their_boxes(tmp_path):
    out, message = voc_to_coco(voc_difficult(tmp_path / "voc"), tmp_path / "out.json")
    anns = json.loads(out.read_text())["annotations"]
    assert [(a["category_id"], a["iscrowd"], a["area"]) for a in anns] == [(8, 0, 100.0), (15, 0, 150.0),
                                                                          (12, 1, 72.0)]
    assert anns[2]["bbox"] == [29.0, 2.0, 9.0, 8.0]  # VOC's boxes count from 1, both ends included
    assert "kept 1 difficult object(s) as ignore regions (iscrowd=1, their boxes)" in message
    assert 255 not in {a["category_id"] for a in anns}  # the void outline is never an instance


def test_voc_without_annotations_says_difficult_objects_are_unknown_and_bad_xml_is_named(tmp_path):
    _, message = voc_to_coco(voc(tmp_path / "plain"), tmp_path / "a.json")
    assert "no Annotations/ folder, so no difficult objects are known" in message
    voc_difficult(tmp_path / "bad", name="unicorn")
    with pytest.raises(CocoFormatError, match=r"2007_000001.xml: object 3 \('unicorn', difficult\): unknown class"):
        voc_to_coco(tmp_path / "bad", tmp_path / "b.json")
    (tmp_path / "bad" / "Annotations" / "2007_000001.xml").write_text("<annotation><object>")
    with pytest.raises(CocoFormatError, match=r"2007_000001.xml: not a readable VOC annotation \(ParseError"):
        voc_to_coco(tmp_path / "bad", tmp_path / "b.json")
    _, message = voc_to_coco(voc_difficult(tmp_path / "easy", difficult="0"), tmp_path / "c.json")
    assert "kept 0 difficult object(s)" in message


def test_a_voc_palette_mask_given_as_an_id_mask_points_to_coco_build_voc(tmp_path):
    voc(tmp_path / "voc")
    (tmp_path / "masks").mkdir()
    (tmp_path / "masks" / "2007_000001.png").write_bytes(
        (tmp_path / "voc" / "SegmentationObject" / "2007_000001.png").read_bytes())
    with pytest.raises(CocoFormatError) as e:
        build_coco_dataset(tmp_path / "voc" / "JPEGImages", tmp_path / "masks", tmp_path / "out.json", ["cat"])
    assert "2007_000001.png: a palette PNG holding index 255, Pascal VOC's void outline" in str(e.value)
    assert "./course coco build voc" in str(e.value) and nothing_written(tmp_path)


def test_coco_command_counts_objects_and_ignore_regions(tmp_path, capsys):
    from course_lib.course.cli import main as cli

    assert cli(["coco", "build", "voc", str(voc_difficult(tmp_path / "voc")), "--out", str(tmp_path / "v.json")]) == 0
    assert f"wrote {tmp_path / 'v.json'}: 1 images, 2 objects, 1 ignore region(s) (iscrowd=1)" in capsys.readouterr().out
    cvat = cvat_crowd_file(tmp_path)
    assert cli(["coco", "build", "coco", str(cvat), "--images", str(tmp_path / "images"),
                "--out", str(tmp_path / "c.json")]) == 0
    assert "1 images, 1 objects, 1 ignore region(s)" in capsys.readouterr().out
    assert cli(["coco", "build", "coco", str(cvat), "--images", str(tmp_path / "images"),
                "--out", str(tmp_path / "c.json"), "--crowd-as-objects"]) == 0
    assert "1 images, 2 objects, 0 ignore region(s)" in capsys.readouterr().out
    assert cli(["coco", "build", "voc", str(tmp_path / "voc"), "--out", str(tmp_path / "x.json"),
                "--crowd-as-objects"]) == 1
    assert "--crowd-as-objects is for coco files" in capsys.readouterr().err
