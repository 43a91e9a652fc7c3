"""A torch ``Dataset`` over a COCO file, with targets in torchvision's detection format.
Taught in: 05_coco_dataset

``CocoInstanceDataset(root, ann_file, transforms=None)`` (``root`` as in torchvision's ``CocoDetection``)
returns ``(image, target)`` with ``tv_tensors`` boxes (XYXY) and masks, so that ``transforms.v2`` moves them
with the image; ``collate_fn`` keeps a batch as lists; ``get_transform`` is the course's augmentation.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from pycocotools.coco import COCO
from torchvision import tv_tensors
from torchvision.ops import box_convert

from course_lib.data.image_files import orientation, stored_size_reason, to_rgb_uint8, upright


def load_coco(ann_file: str | Path) -> COCO:
    """``pycocotools.coco.COCO`` without its progress prints."""
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(ann_file))


class CocoInstanceDataset(torch.utils.data.Dataset):
    """COCO instances as ``(image, target)`` pairs in torchvision's detection format.

    ``root`` is the folder the ``file_name`` entries are relative to (as in ``CocoDetection``).
    ``image`` is a ``tv_tensors.Image`` (3, H, W) uint8 RGB, upright (EXIF Orientation applied, as
    ``coco build`` sizes it; see ``image_files``; ``to_rgb_uint8`` for grayscale, palette, RGBA and
    16-bit files); ``target`` holds ``boxes`` (``tv_tensors.BoundingBoxes``, (N, 4)
    float XYXY; (0, 4) for an image without instances), ``labels`` (N,) int64, ``masks``
    (``tv_tensors.Mask``, (N, H, W) uint8), ``image_id`` int, ``area`` (N,) float, ``iscrowd`` (N,)
    int64. ``transforms`` (e.g. ``torchvision.transforms.v2``) get ``(image, target)`` together so
    that boxes and masks move with the image.

    Crowd regions (``iscrowd=1``) are kept in the target by default, flagged by ``iscrowd``.
    torchvision's detection models do not read ``iscrowd`` and would learn a crowd as one object,
    so pass ``drop_crowd=True`` for training, as torchvision's reference scripts do. Evaluation is
    unaffected either way: ``COCOeval`` reads crowds from the annotation file.

    A missing or unreadable image, or one whose size differs from the JSON's, raises an error
    naming the file and the image id (and "EXIF Orientation N" when the JSON holds the photo's stored
    size). Run ``validate_coco`` first to check a whole file at once.
    """

    # Not torchvision's CocoDetection + wrap_dataset_for_transforms_v2 (torchvision 0.29): its _load_image is
    # Image.open(...).convert("RGB"), which clips 16-bit pixels (257 -> 255, not 1), reads a phone photo's stored
    # pixels (EXIF Orientation not applied) and raises a bare FileNotFoundError without the image id; the wrapper returns {"image_id"} alone for an image without
    # annotations, int64 boxes for integer bboxes, and a KeyError when an annotation has no "iscrowd".

    def __init__(self, root: str | Path, ann_file: str | Path, transforms: Callable | None = None,
                 drop_crowd: bool = False):
        self.root = Path(root)
        self.ann_file = Path(ann_file)
        self.coco = load_coco(ann_file)
        self.ids = sorted(self.coco.imgs)
        self.transforms = transforms
        self.drop_crowd = drop_crowd

    def __len__(self) -> int:
        return len(self.ids)

    def load_image(self, image_id: int) -> tv_tensors.Image:
        info = self.coco.imgs[image_id]
        path = self.root / info["file_name"]
        where = f"image id {image_id} of {self.ann_file.name}"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: image file not found ({where}; root is {self.root})")
        try:
            with Image.open(path) as im:
                tag = orientation(im)
                rgb = to_rgb_uint8(upright(im))
        except Exception as e:
            raise OSError(f"{path}: cannot read the image ({where}): {type(e).__name__}: {e}") from e
        if rgb.shape[:2] != (info["height"], info["width"]):
            why = stored_size_reason((info["width"], info["height"]), (rgb.shape[1], rgb.shape[0]), tag)
            raise ValueError(f"{path}: the image is {rgb.shape[1]}x{rgb.shape[0]} (WxH{', upright' if tag != 1 else ''}) "
                             f"but {where} says {info['width']}x{info['height']}"
                             + (f": {why}; build the file again with ./course coco build" if why else ""))
        return tv_tensors.Image(torch.from_numpy(rgb).permute(2, 0, 1))

    def load_target(self, image_id: int, canvas_size: tuple[int, int]) -> dict:
        anns = self.coco.imgToAnns.get(image_id, [])
        if self.drop_crowd:
            anns = [a for a in anns if not a.get("iscrowd", 0)]
        h, w = canvas_size
        boxes = box_convert(torch.tensor([a["bbox"] for a in anns], dtype=torch.float32).reshape(-1, 4),
                            "xywh", "xyxy")  # COCO's [x, y, width, height] -> torchvision's corners
        masks = np.stack([self.coco.annToMask(a) for a in anns]) if anns else np.zeros((0, h, w), np.uint8)
        return {
            "boxes": tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=(h, w)),
            "labels": torch.tensor([a["category_id"] for a in anns], dtype=torch.int64),
            "masks": tv_tensors.Mask(torch.from_numpy(masks)),
            "image_id": int(image_id),
            "area": torch.tensor([a["area"] for a in anns], dtype=torch.float32),
            "iscrowd": torch.tensor([a.get("iscrowd", 0) for a in anns], dtype=torch.int64),
        }

    def __getitem__(self, idx: int):
        image_id = self.ids[idx]
        image = self.load_image(image_id)
        target = self.load_target(image_id, tuple(image.shape[-2:]))
        if self.transforms is not None:
            image, target = self.transforms(image, target)
        return image, target


def collate_fn(batch):
    """Detection batches are lists: images differ in size and targets in length."""
    return tuple(zip(*batch, strict=True))


def get_transform(train: bool):
    """The course's standard ``transforms.v2`` pipeline: random flip when training, then float [0, 1]."""
    from torchvision.transforms import v2

    steps = [v2.RandomHorizontalFlip(0.5)] if train else []
    steps.append(v2.ToDtype(torch.float32, scale=True))
    return v2.Compose(steps)
