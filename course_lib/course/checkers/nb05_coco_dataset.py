"""Checkers for 05_coco_dataset's exercises.

* ``check_mask_to_coco_annotation``: one binary mask -> one COCO annotation (RLE, area, xywh bbox),
  against ``course_lib.coco.mask_to_annotation``.
* ``check_instance_map_to_annotations``: one image's instance-id map and its sidecar -> its COCO annotations
  (crowd flags, instances listed without pixels, consecutive ids over id gaps), against
  ``course_lib.data.coco_build.instance_map_to_annotations``.
* ``check_instance_map_to_target``: an instance-id map and its categories -> the target dict a
  torchvision Mask R-CNN trains on, against ``instance_map_to_target`` below.
"""

from __future__ import annotations

import numpy as np
import torch

from course_lib.course.checkers.core import Case, checker
from course_lib.data.coco_build import instance_map_to_annotations
from course_lib.data.masks import mask_to_annotation
from course_lib.data.shapes import render_sample

__all__ = ["check_instance_map_to_annotations", "check_instance_map_to_target", "check_mask_to_coco_annotation"]

NOTEBOOK = "05_coco_dataset"


def reference_mask_to_annotation(mask: np.ndarray, ann_id: int, image_id: int, category_id: int) -> dict:
    """The library's answer: RLE segmentation with ``counts`` as str, pycocotools' area and bbox, iscrowd 0."""
    return mask_to_annotation(mask, ann_id, image_id, category_id)


def _annotation_cases() -> list[Case]:
    square = np.zeros((32, 32), bool)
    square[5:17, 8:26] = True
    pixel = np.zeros((10, 12), bool)
    pixel[7, 3] = True
    corner = np.zeros((20, 30), bool)  # wider than tall: a swapped (h, w) or (x, y) shows up
    corner[12:, 21:] = True
    ring = np.zeros((16, 16), bool)
    ring[2:14, 2:14] = True
    ring[5:11, 5:11] = False
    parts = np.zeros((24, 40), bool)
    parts[3:8, 2:9] = True
    parts[15:22, 30:38] = True
    png = np.zeros((12, 18), np.uint8)  # how many tools save a binary mask: 0 and 255
    png[4:10, 1:6] = 255
    triangle = render_sample(5, 0, size=(48, 64)).masks[0]
    return [Case("a filled rectangle", (square, 1, 1, 2)),
            Case("a single pixel", (pixel, 7, 3, 1)),
            Case("touching the bottom-right corner of a 30x20 image", (corner, 2, 9, 3)),
            Case("a ring: the hole is not part of the area", (ring, 4, 2, 1)),
            Case("two separate parts make one annotation", (parts, 5, 2, 2)),
            Case("a uint8 mask stored as 0/255", (png, 6, 4, 1)),
            Case("a real shape from the shapes data", (triangle, 11, 8, 3))]


def _hidden_annotation_cases(seed: int) -> list[Case]:
    """Never shown in the notebook: random blobs in a tall image, a mask filling the whole image, a float 0/1
    mask, a diagonal line of pixels (one run per column) and a shapes sample drawn from the seed."""
    rng = np.random.default_rng(seed)
    h, w = int(rng.integers(30, 60)), int(rng.integers(10, 25))
    blobs = np.zeros((h, w), bool)
    for _ in range(3):
        y, x = int(rng.integers(0, h - 4)), int(rng.integers(0, w - 4))
        blobs[y:y + int(rng.integers(2, 9)), x:x + int(rng.integers(2, 7))] = True
    full = np.ones((7, 11), bool)
    soft = np.zeros((14, 9), np.float32)
    soft[3:12, 2:5] = 1.0
    line = np.eye(12, 20, k=int(rng.integers(0, 8)), dtype=bool)
    shape = render_sample(int(rng.integers(0, 10_000)), 0, size=(40, 56)).masks[0]
    return [Case(f"random blobs in a tall {w}x{h} image", (blobs, 3, 5, 2)),
            Case("a mask filling the whole image", (full, 1, 1, 1)),
            Case("a float32 mask of 0.0 and 1.0", (soft, 8, 2, 3)),
            Case("a diagonal line of pixels", (line, 9, 9, 1)),
            Case("a shapes sample", (shape, 12, 3, 2))]


check_mask_to_coco_annotation = checker(
    "check_mask_to_coco_annotation", reference_mask_to_annotation, _annotation_cases, notebook=NOTEBOOK,
    hidden_cases=_hidden_annotation_cases,
    hint=["pycocotools' mask_utils.encode wants a Fortran-ordered uint8 array of 0/1 (not 0/255).",
          "mask_utils.area(rle) and mask_utils.toBbox(rle) give the area and the (x, y, width, height) "
          "box; json.dump needs plain floats and a str 'counts'.",
          "rle = mask_utils.encode(np.asfortranarray(mask != 0, dtype=np.uint8)); area = "
          "float(mask_utils.area(rle)); bbox = [float(v) for v in mask_utils.toBbox(rle)]; decode "
          "rle['counts'] to a str; and add iscrowd 0."])


CAT_IDS = {"circle": 1, "square": 2, "triangle": 3}


def _shapes_map(seed: int, size=(48, 64)) -> tuple[np.ndarray, dict]:
    """A shapes image's instance map and its sidecar, as the shapes generator writes them."""
    sample = render_sample(seed, 0, size=size)
    return sample.instance_map, {str(k): name for k, name in enumerate(sample.labels, 1)}


def _blocks(shape, blocks, dtype=np.uint8) -> np.ndarray:
    m = np.zeros(shape, dtype)
    for k, (y0, y1, x0, x1) in blocks:
        m[y0:y1, x0:x1] = k
    return m


def _annotations_cases() -> list[Case]:
    shapes, shapes_sidecar = _shapes_map(2)
    gaps = _blocks((16, 20), [(1, (1, 4, 2, 9)), (4, (6, 10, 2, 5)), (9, (12, 15, 6, 18))])
    crowd = _blocks((20, 24), [(1, (2, 8, 2, 8)), (2, (10, 18, 3, 21)), (3, (2, 7, 14, 20))])
    cropped = _blocks((12, 12), [(1, (1, 5, 1, 5)), (3, (6, 11, 6, 11))])
    return [Case("a shapes image and its sidecar", (shapes, shapes_sidecar, CAT_IDS, 7, 1)),
            Case("instance ids with gaps (1, 4, 9): annotation ids stay consecutive from first_id",
                 (gaps, {"1": "circle", "4": "square", "9": "triangle"}, CAT_IDS, 2, 20)),
            Case("a crowd region: {'category': ..., 'iscrowd': 1}",
                 (crowd, {"1": "circle", "2": {"category": "square", "iscrowd": 1}, "3": "circle"}, CAT_IDS, 3, 5)),
            Case("the sidecar lists an instance with no pixels (cropped away)",
                 (cropped, {"1": "square", "2": "circle", "3": "triangle"}, CAT_IDS, 4, 11)),
            Case("no instances: no annotations", (np.zeros((8, 10), np.uint8), {}, CAT_IDS, 5, 1))]


def _hidden_annotations_cases(seed: int) -> list[Case]:
    """Never shown in the notebook: ids 2, 9, 10, 11 (sorted as strings, "10" comes before "2" and "9"), a
    16-bit map with ids above 255 and an instance in two parts, a dict entry without "iscrowd" (0), another
    shapes image and a first id drawn from the seed."""
    rng = np.random.default_rng(seed)
    first = int(rng.integers(1, 500))
    names = list(CAT_IDS)
    tens = _blocks((30, 30), [(2, (1, 6, 1, 6)), (9, (8, 14, 2, 9)), (10, (16, 22, 12, 27)), (11, (24, 29, 3, 8))])
    tens_sidecar = {str(k): names[int(rng.integers(0, 3))] for k in (2, 9, 10, 11)}
    big = _blocks((18, 22), [(300, (2, 6, 3, 9)), (1000, (8, 15, 1, 6)), (300, (9, 16, 14, 20))], np.uint16)
    shapes, shapes_sidecar = _shapes_map(int(rng.integers(0, 10_000)), size=(40, 56))
    crowd_key = str(1 + int(rng.integers(0, len(shapes_sidecar))))
    shapes_sidecar[crowd_key] = {"category": shapes_sidecar[crowd_key], "iscrowd": 1}
    return [Case("ids 2, 9, 10, 11: in increasing order as numbers", (tens, tens_sidecar, CAT_IDS, 1, first)),
            Case("16-bit ids 300 and 1000; instance 300 in two parts; an entry without 'iscrowd'",
                 (big, {"1000": {"category": "triangle"}, "300": "square"}, CAT_IDS, 9, first)),
            Case("another shapes image with one crowd region", (shapes, shapes_sidecar, CAT_IDS, 2, first))]


check_instance_map_to_annotations = checker(
    "check_instance_map_to_annotations", instance_map_to_annotations, _annotations_cases, notebook=NOTEBOOK,
    hidden_cases=_hidden_annotations_cases,
    hint=["Let the map decide which instances there are (and in which order), and the sidecar only what each "
          "one is: keys in the sidecar are strings, ids in the map numbers.",
          "An entry is a name or a dict with 'category' and maybe 'iscrowd' (0 when absent). Number the "
          "annotations with a counter of your own, not with the instance id.",
          "for k in np.unique(instance_map), skipping 0: entry = sidecar[str(int(k))]; ann = "
          "mask_to_annotation(instance_map == k, first_id + len(annotations), image_id, cat_ids[name]) with "
          "ann['iscrowd'] = crowd; append it."])


def instance_map_to_target(instance_map: torch.Tensor, categories: dict[int, int]) -> dict:
    """(H, W) integer map (0 = background, k = instance k) + {k: category id} -> a torchvision target.

    Instances are the non-zero ids present in the map, in increasing order. ``boxes`` (N, 4) float32
    are ``(x1, y1, x2, y2)`` pixel edges, so a box equals COCO's ``[x, y, x + w, y + h]``: the pixel at
    column x spans x to x + 1. ``labels`` (N,) int64, ``masks`` (N, H, W) uint8.
    """
    ids = torch.unique(instance_map)
    ids = ids[ids != 0]
    masks = (instance_map[None] == ids[:, None, None]).to(torch.uint8)
    boxes = torch.zeros((len(ids), 4), dtype=torch.float32)
    for i, m in enumerate(masks):
        ys, xs = torch.nonzero(m, as_tuple=True)
        boxes[i] = torch.stack([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]).float()
    labels = torch.tensor([categories[int(k)] for k in ids], dtype=torch.int64)
    return {"boxes": boxes, "labels": labels, "masks": masks}


def _target_cases() -> list[Case]:
    shapes = render_sample(3, 1, size=(48, 64))
    shapes_cats = {k: 1 + (k % 3) for k in range(1, len(shapes.labels) + 1)}
    border = torch.zeros((20, 30), dtype=torch.uint8)
    border[12:, 25:] = 1  # touches the right and the bottom edge: x2 = 30, y2 = 20
    border[0:3, 0:4] = 2  # touches the top-left corner: x1 = y1 = 0
    gaps = torch.zeros((16, 16), dtype=torch.uint8)
    gaps[1:4, 9:15] = 9
    gaps[6:10, 2:5] = 1
    gaps[12:15, 6:8] = 4
    pixel = torch.zeros((8, 8), dtype=torch.uint8)
    pixel[5, 2] = 3
    return [Case("shapes image with several instances", (torch.from_numpy(shapes.instance_map), shapes_cats)),
            Case("no instances: an all-background map", (torch.zeros((20, 30), dtype=torch.uint8), {})),
            Case("instances touching the image border", (border, {1: 2, 2: 1})),
            Case("instance ids with gaps (1, 4, 9)", (gaps, {1: 3, 4: 1, 9: 2})),
            Case("a one-pixel instance", (pixel, {3: 1}))]


def _hidden_target_cases(seed: int) -> list[Case]:
    """Never shown in the notebook: categories not listed in id order, a category for an id missing from the map
    (an instance cropped away), ids above 255 in an int64 map, an instance in two parts and a tall map."""
    g = torch.Generator().manual_seed(seed)
    h, w = int(torch.randint(24, 40, (1,), generator=g)), int(torch.randint(10, 20, (1,), generator=g))
    ids = (torch.randperm(40, generator=g)[:4] + 1).tolist()
    instance_map = torch.zeros((h, w), dtype=torch.int64)
    for k, i in enumerate(ids[:3]):
        y, x = int(torch.randint(0, h - 6, (1,), generator=g)), int(torch.randint(0, w - 5, (1,), generator=g))
        instance_map[y:y + 3 + k, x:x + 2 + k] = i
    shuffled = {i: int(torch.randint(1, 5, (1,), generator=g)) for i in sorted(ids[:3], reverse=True)}
    shuffled[ids[3]] = 4  # in the dict, not in the map
    big = torch.zeros((12, 16), dtype=torch.int64)
    big[2:5, 3:9] = 300
    big[7:11, 1:4] = 1000
    big[7:11, 12:15] = 300  # 300's second part
    return [Case(f"a tall {w}x{h} map, categories listed in reverse id order with one absent id",
                 (instance_map, shuffled)),
            Case("int64 ids 300 and 1000; instance 300 in two parts", (big, {1000: 2, 300: 1}))]


check_instance_map_to_target = checker(
    "check_instance_map_to_target", instance_map_to_target, _target_cases, notebook=NOTEBOOK,
    hidden_cases=_hidden_target_cases,
    hint=["Let the map say which instances exist: its distinct values other than 0, in increasing order.",
          "One uint8 mask per instance (instance_map[None] == ids[:, None, None]); its label from categories "
          "(keyed by the instance id) as int64.",
          "Each box is [x_min, y_min, x_max + 1, y_max + 1] as float32 (masks_to_boxes gives x_max, not x_max + 1); "
          "with no instances return shapes (0, 4), (0,) and (0, H, W)."])
