"""course_lib.data: masks -> COCO -> pycocotools round trips, builders, validation and the Dataset."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_utils
from torchvision import tv_tensors
from torchvision.transforms import v2

from course_lib.data.coco_build import build_coco_dataset, masks_to_coco
from course_lib.data.coco_dataset import (
    CocoInstanceDataset,
    collate_fn,
    get_transform,
    load_coco,
    to_rgb_uint8,
)
from course_lib.data.coco_validate import validate_coco
from course_lib.data.masks import mask_to_polygons
from course_lib.data.shapes import CLASSES, make_shapes_dataset
from course_lib.utils.files import write_json_atomic


def decode_polygons(polygons, h, w):
    return mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(polygons, h, w))).astype(bool)


def hand_made_masks():
    """Named (H, W) masks covering the awkward cases."""
    cases = {}
    m = np.zeros((7, 9), bool)
    m[3, 4] = True
    cases["single pixel"] = m
    for y, x in [(0, 0), (0, 8), (6, 0), (6, 8)]:
        m = np.zeros((7, 9), bool)
        m[y, x] = True
        cases[f"corner pixel {y, x}"] = m
    cases["full image"] = np.ones((5, 6), bool)
    cases["1x1 image"] = np.ones((1, 1), bool)
    m = np.zeros((12, 12), bool)
    m[1:11, 1:11] = True
    m[3:9, 3:9] = False
    cases["ring (hole)"] = m
    m = m.copy()
    m[5:7, 5:7] = True
    cases["part inside a hole"] = m
    m = np.zeros((10, 10), bool)
    m[0:10, 0:4] = True
    m[2:5, 1:3] = False
    m[6:8, 1:3] = False
    cases["two holes, touching the border"] = m
    cases["checkerboard (corner contacts)"] = (np.indices((6, 7)).sum(0) % 2).astype(bool)
    m = np.zeros((8, 8), bool)
    m[np.arange(8), np.arange(8)] = True
    cases["diagonal line"] = m
    m = np.zeros((9, 9), bool)
    m[4, :] = m[:, 4] = True
    cases["one-pixel-wide cross"] = m
    cases["hole touching at a corner"] = np.array([[1, 1, 1, 0], [1, 0, 1, 0], [1, 1, 0, 1], [0, 0, 1, 1]], bool)
    return cases


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


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes")
    make_shapes_dataset(root, 10, seed=3, progress=False)
    return root


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


def write_hand_made_folder(root):
    """Two images: touching instances, a ring, border pixels, a single pixel and a crowd region."""
    (root / "images").mkdir()
    (root / "masks").mkdir()
    ids = np.zeros((10, 12), np.uint8)
    ids[0:4, 0:5] = 1  # touches the border and instance 2
    ids[0:4, 5:9] = 2
    ids[5:10, 0:6] = 3
    ids[6:9, 1:5] = 0  # a hole
    ids[9, 11] = 4  # single pixel in the corner
    ids[5:8, 8:12] = 5  # crowd
    Image.fromarray(np.full((10, 12, 3), 90, np.uint8)).save(root / "images" / "a.png")
    Image.fromarray(ids).save(root / "masks" / "a.png")
    sidecar = {"1": "cat", "2": "dog", "3": "cat", "4": "dog", "5": {"category": "cat", "iscrowd": 1}}
    (root / "masks" / "a.json").write_text(json.dumps(sidecar))
    Image.fromarray(np.full((6, 5), 200, np.uint8)).save(root / "images" / "b.jpg")  # no instances
    Image.fromarray(np.zeros((6, 5), np.uint8)).save(root / "masks" / "b.png")
    (root / "masks" / "b.json").write_text("{}")
    return ids


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


# ---- the Dataset --------------------------------------------------------------------------------

def test_dataset_targets_and_joint_flip(shapes):
    ds = CocoInstanceDataset(shapes / "images", shapes / "annotations.json")
    image, target = ds[0]
    n = len(target["labels"])
    assert isinstance(image, tv_tensors.Image) and image.dtype == torch.uint8 and image.shape == (3, 128, 128)
    assert isinstance(target["boxes"], tv_tensors.BoundingBoxes) and target["boxes"].shape == (n, 4)
    assert isinstance(target["masks"], tv_tensors.Mask) and target["masks"].shape == (n, 128, 128)
    assert target["labels"].dtype == torch.int64 and target["iscrowd"].tolist() == [0] * n
    flipped_image, flipped = v2.RandomHorizontalFlip(p=1.0)(image, target)
    torch.testing.assert_close(flipped_image, image.flip(-1))
    torch.testing.assert_close(flipped["masks"], target["masks"].flip(-1))
    for box, mask in zip(flipped["boxes"], flipped["masks"], strict=True):  # boxes moved with the masks
        ys, xs = torch.nonzero(mask, as_tuple=True)
        assert box.tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
    images, targets = collate_fn([ds[0], ds[1]])
    assert len(images) == len(targets) == 2


def test_dataset_image_without_instances_and_crowd_flag(tmp_path):
    write_hand_made_folder(tmp_path)
    out = build_coco_dataset(tmp_path / "images", tmp_path / "masks", tmp_path / "o.json", ["cat", "dog"])
    ds = CocoInstanceDataset(tmp_path / "images", out, transforms=get_transform(train=True))
    image, target = ds[1]
    assert image.shape == (3, 6, 5) and image.dtype == torch.float32
    assert target["boxes"].shape == (0, 4) and target["masks"].shape == (0, 6, 5) and target["labels"].shape == (0,)
    assert CocoInstanceDataset(tmp_path / "images", out)[0][1]["iscrowd"].tolist() == [0, 0, 0, 0, 1]
    kept = CocoInstanceDataset(tmp_path / "images", out, drop_crowd=True)[0][1]
    assert kept["iscrowd"].tolist() == [0, 0, 0, 0] and kept["masks"].shape[0] == 4


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "I;16", "1", "LA"])
def test_dataset_converts_image_modes_to_rgb_uint8(tmp_path, mode):
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 256, (6, 7), dtype=np.uint8)
    if mode == "I;16":
        im, expected = Image.fromarray(gray.astype(np.uint16) * 257), gray  # 16-bit is scaled, not clipped
    elif mode == "RGBA":
        rgba = np.dstack([gray, 255 - gray, gray // 2, np.zeros_like(gray)])
        im, expected = Image.fromarray(rgba, "RGBA"), rgba[..., :3]
    elif mode == "P":
        im = Image.fromarray(gray % 4).convert("P")
        im.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * 756)
        expected = np.array([[0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255]], np.uint8)[gray % 4]
    elif mode == "1":
        im, expected = Image.fromarray(gray > 127), np.where(gray > 127, 255, 0).astype(np.uint8)
    else:
        im, expected = Image.fromarray(gray).convert(mode), gray
    im.save(tmp_path / "x.png")
    assert Image.open(tmp_path / "x.png").mode == mode
    coco = {"images": [{"id": 1, "file_name": "x.png", "height": 6, "width": 7}], "annotations": [],
            "categories": [{"id": 1, "name": "a"}]}
    ds = CocoInstanceDataset(tmp_path, write_json_atomic(coco, tmp_path / "a.json"))
    image = ds[0][0]
    assert image.dtype == torch.uint8 and image.shape == (3, 6, 7)
    expected = np.broadcast_to(expected[..., None], (6, 7, 3)) if expected.ndim == 2 else expected
    np.testing.assert_array_equal(image.permute(1, 2, 0).numpy(), expected)


def test_sixteen_bit_extremes_scale_to_the_8_bit_range():
    im = Image.fromarray(np.array([[0, 257, 32768, 65535]], np.uint16))
    assert to_rgb_uint8(im)[0, :, 0].tolist() == [0, 1, 128, 255]


def test_augmentation_pipeline_keeps_boxes_masks_and_labels_together(shapes):
    torch.manual_seed(0)
    aug = v2.Compose([v2.RandomHorizontalFlip(), v2.RandomAffine(degrees=0, translate=(0.1, 0.1), scale=(0.8, 1.2)),
                      v2.SanitizeBoundingBoxes(), v2.ToDtype(torch.float32, scale=True)])
    ds = CocoInstanceDataset(shapes / "images", shapes / "annotations.json", transforms=aug)
    for i in range(3):
        image, t = ds[i]
        assert image.dtype == torch.float32 and float(image.max()) <= 1.0
        assert len(t["boxes"]) == len(t["labels"]) == len(t["masks"])


def test_validate_report_on_a_good_file(shapes):
    report = validate_coco(shapes / "annotations.json", shapes / "images", strict=True)
    assert report.ok and report.problems == []
    assert report.summary.endswith(f"OK (10 images, {report.counts['annotations']} annotations, 3 categories)")
    assert report.raise_if_problems() is report
