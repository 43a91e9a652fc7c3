"""05_coco_dataset's checkers and its reference ``instance_map_to_target``."""

import json

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from pycocotools import mask as mask_utils

from course_lib.course.checkers.core import _hints_shown, _last_case, hint
from course_lib.course.checkers.nb05_coco_dataset import (
    check_instance_map_to_target,
    check_mask_to_coco_annotation,
    instance_map_to_target,
    reference_mask_to_annotation,
)
from course_lib.course.quiz import BANK
from course_lib.data.coco_dataset import CocoInstanceDataset
from course_lib.data.shapes import make_shapes_dataset


def stub(*args):
    raise NotImplementedError("Exercise: replace this line with your code")


# ---- Exercise 1: mask -> annotation --------------------------------------------------------------

def learner_annotation(mask, ann_id, image_id, category_id):
    rle = mask_utils.encode(np.asfortranarray(mask != 0, dtype=np.uint8))
    area = float(mask_utils.area(rle))
    bbox = [float(v) for v in mask_utils.toBbox(rle)]
    rle["counts"] = rle["counts"].decode("ascii")
    return {"id": ann_id, "image_id": image_id, "category_id": category_id, "segmentation": rle,
            "area": area, "bbox": bbox, "iscrowd": 0}


def test_annotation_reference_and_a_correct_answer_pass(capsys):
    assert check_mask_to_coco_annotation(reference_mask_to_annotation) is reference_mask_to_annotation
    assert check_mask_to_coco_annotation(learner_annotation) is learner_annotation
    assert capsys.readouterr().out.count("PASS check_mask_to_coco_annotation") == 2


def test_annotation_stub_says_not_yet(capsys):
    assert check_mask_to_coco_annotation(stub) is reference_mask_to_annotation
    assert "NOT YET check_mask_to_coco_annotation" in capsys.readouterr().out


def test_annotation_cases_are_json_ready_and_cover_edges():
    cases = check_mask_to_coco_annotation.cases()
    assert len(cases) >= 5
    for case in cases:
        json.dumps(reference_mask_to_annotation(*case.args))
    assert any(c.args[0].shape[0] != c.args[0].shape[1] for c in cases), "a non-square mask catches (h, w) swaps"


@pytest.mark.parametrize("mistake, expected", [
    ("bytes counts", "counts"),
    ("numpy area", "area"),
    ("numpy bbox", "bbox"),
    ("xyxy bbox", "bbox"),
    ("C-ordered input to pycocotools", "raised ValueError"),
    ("no iscrowd", "keys"),
])
def test_annotation_mistakes_fail_with_a_hint(capsys, mistake, expected):
    def wrong(mask, ann_id, image_id, category_id):
        if mistake == "C-ordered input to pycocotools":
            mask_utils.encode(np.ascontiguousarray(mask != 0, dtype=np.uint8))
        ann = learner_annotation(mask, ann_id, image_id, category_id)
        rle = mask_utils.encode(np.asfortranarray(mask != 0, dtype=np.uint8))
        if mistake == "bytes counts":
            ann["segmentation"]["counts"] = ann["segmentation"]["counts"].encode()
        elif mistake == "numpy area":
            ann["area"] = mask_utils.area(rle)
        elif mistake == "numpy bbox":
            ann["bbox"] = mask_utils.toBbox(rle)
        elif mistake == "xyxy bbox":
            x, y, w, h = ann["bbox"]
            ann["bbox"] = [x, y, x + w, y + h]
        elif mistake == "no iscrowd":
            del ann["iscrowd"]
        return ann

    assert check_mask_to_coco_annotation(wrong) is reference_mask_to_annotation
    out = capsys.readouterr().out
    assert out.startswith("FAIL check_mask_to_coco_annotation, case") and expected in out and "Hint" in out


# ---- Exercise 2: instance map -> target ----------------------------------------------------------

def test_target_reference_passes_and_stub_says_not_yet(capsys):
    assert check_instance_map_to_target(instance_map_to_target) is instance_map_to_target
    assert check_instance_map_to_target(stub) is instance_map_to_target
    out = capsys.readouterr().out
    assert "PASS check_instance_map_to_target: all 5 cases" in out and "NOT YET check_instance_map_to_target" in out


def test_target_edge_cases():
    empty = instance_map_to_target(torch.zeros((6, 7), dtype=torch.uint8), {})
    assert empty["boxes"].shape == (0, 4) and empty["boxes"].dtype == torch.float32
    assert empty["labels"].shape == (0,) and empty["labels"].dtype == torch.int64
    assert empty["masks"].shape == (0, 6, 7) and empty["masks"].dtype == torch.uint8
    m = torch.zeros((5, 8), dtype=torch.uint8)
    m[3:, 6:] = 7  # touches the right and the bottom border
    t = instance_map_to_target(m, {7: 2})
    assert t["boxes"].tolist() == [[6.0, 3.0, 8.0, 5.0]] and t["labels"].tolist() == [2]


def test_target_masks_to_boxes_off_by_one_fails(capsys):
    def off_by_one(instance_map, categories):
        t = instance_map_to_target(instance_map, categories)
        return {**t, "boxes": torchvision.ops.masks_to_boxes(t["masks"])}

    _hints_shown.pop("check_instance_map_to_target", None)  # hint steps count per session: start at step 1
    _last_case.pop("check_instance_map_to_target", None)
    check_instance_map_to_target(off_by_one)
    out = capsys.readouterr().out
    assert "FAIL check_instance_map_to_target" in out and "result['boxes']" in out and "Hint 1/3" in out
    assert "x_max + 1" not in out, "the first hint step does not give the answer away"
    hint("check_instance_map_to_target")
    assert "x_max + 1" in hint("check_instance_map_to_target"), "the last step names the box convention"


def test_target_agrees_with_coco_instance_dataset(tmp_path):
    ann_file = make_shapes_dataset(tmp_path, 6, seed=5, progress=False)
    dataset = CocoInstanceDataset(tmp_path / "images", ann_file)
    cat_ids = {c["name"]: c["id"] for c in dataset.coco.loadCats(dataset.coco.getCatIds())}
    for idx, image_id in enumerate(dataset.ids):
        name = dataset.coco.imgs[image_id]["file_name"]
        id_map = torch.from_numpy(np.array(Image.open(tmp_path / "masks" / name)))
        sidecar = json.loads((tmp_path / "masks" / name.replace(".png", ".json")).read_text())
        mine = instance_map_to_target(id_map, {int(k): cat_ids[v] for k, v in sidecar.items()})
        _, target = dataset[idx]
        for key in ("boxes", "labels", "masks"):
            assert torch.equal(target[key].as_subclass(torch.Tensor), mine[key]), (image_id, key)


def test_quiz_ids_of_the_notebook_exist():
    ids = [q for q in BANK if q.startswith("coco-")]
    assert sorted(ids) == ["coco-annotation-format", "coco-area", "coco-bbox-format", "coco-iscrowd", "coco-naive-flip"]
    assert all(BANK[q].notebook == "05_coco_dataset" for q in ids)


# ---- Exercise 2: an instance map and its sidecar -> the image's annotations ------------------------------

def test_instance_map_to_annotations_is_what_build_coco_dataset_writes(tmp_path):
    from course_lib.data.coco_build import instance_map_to_annotations

    ann_file = make_shapes_dataset(tmp_path / "shapes", num_images=3, seed=5, progress=False)
    data = json.loads(ann_file.read_text())
    cat_ids = {c["name"]: c["id"] for c in data["categories"]}
    for image in data["images"]:
        stem = image["file_name"].rsplit(".", 1)[0]
        id_map = np.array(Image.open(tmp_path / "shapes" / "masks" / f"{stem}.png"))
        sidecar = json.loads((tmp_path / "shapes" / "masks" / f"{stem}.json").read_text())
        expected = [a for a in data["annotations"] if a["image_id"] == image["id"]]
        assert instance_map_to_annotations(id_map, sidecar, cat_ids, image["id"], expected[0]["id"]) == expected


def test_instance_map_to_annotations_crowds_gaps_absent_ids_and_numeric_order():
    from course_lib.data.coco_build import instance_map_to_annotations

    id_map = np.zeros((20, 20), np.uint16)
    id_map[1:4, 1:4], id_map[5:9, 5:9], id_map[12:18, 2:19] = 9, 10, 300
    sidecar = {"300": {"category": "b", "iscrowd": 1}, "10": {"category": "a"}, "9": "b", "7": "a"}
    anns = instance_map_to_annotations(id_map, sidecar, {"a": 1, "b": 2}, image_id=4, first_id=50)
    assert [(a["id"], a["category_id"], a["iscrowd"], a["area"]) for a in anns] == [
        (50, 2, 0, 9.0), (51, 1, 0, 16.0), (52, 2, 1, 102.0)]  # 9 before 10 before 300; "7" has no pixels
    assert all(isinstance(a["segmentation"]["counts"], str) and a["image_id"] == 4 for a in anns)
    assert instance_map_to_annotations(np.zeros((4, 4), np.uint8), {}, {}, 1) == []
