"""Notebook 06's section "When training goes wrong": the mistakes people make with torchvision's Mask R-CNN,
each reproduced on one tiny image with the small course model, so each takes well under a second.
Taught in: 06_fine_tuning

A function per mistake makes it inside ``try``/``except`` and returns the message it raised, as
``"TypeName: message"`` (``None`` when nothing was raised). ``tests/lessons/test_training_pitfalls.py`` checks
every message, so a torchvision release that rewords one shows there. The mistakes that raise nothing
(masks with a channel axis, label 0 for a real class, 0-255 float images, a random flip when evaluating) return
what they silently change instead.
"""

from __future__ import annotations

import contextlib
import io
import json
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

from course_lib.detection.course_model import build_course_model
from course_lib.training.evaluation import coco_eval

SIZE = 128  # the course model's input size: its transform does not resize a 128 x 128 image
BOX = (32.0, 40.0, 80.0, 96.0)  # the toy object: x1, y1, x2, y2


def catch(fn: Callable[[], object]) -> str | None:
    """Run ``fn()``; return ``"TypeName: message"`` of what it raised (first line), or ``None``."""
    try:
        fn()
    except Exception as e:  # noqa: BLE001  (showing the error is the point)
        text = str(e).strip().splitlines()[0] if str(e).strip() else ""
        return f"{type(e).__name__}: {text}"
    return None


def toy_sample(label: int = 1, box: tuple[float, float, float, float] = BOX, size: int = SIZE):
    """``(image, target)``: a random (3, size, size) float image in [0, 1] and one object, correctly shaped:
    boxes (1, 4) float xyxy, labels (1,) int64, masks (1, H, W) uint8."""
    g = torch.Generator().manual_seed(0)
    image = torch.rand(3, size, size, generator=g)
    masks = torch.zeros(1, size, size, dtype=torch.uint8)
    x1, y1, x2, y2 = (int(v) for v in box)
    masks[:, y1:y2, x1:x2] = 1
    return image, {"boxes": torch.tensor([box]), "labels": torch.tensor([label]), "masks": masks}


def toy_model(num_classes: int = 4):
    """The course model, untrained (random weights, seeded), for ``num_classes`` classes, background included."""
    torch.manual_seed(0)
    return build_course_model({"num_classes": num_classes})


def train_losses(model, images: list[torch.Tensor], targets: list[dict], seed: int = 0) -> dict[str, float]:
    """One train-mode forward pass: the loss dict, rounded to 4 decimals (no step is taken)."""
    model.train()
    torch.manual_seed(seed)
    return {k: round(float(v.detach()), 4) for k, v in model(images, targets).items()}


def empty_target(height: int = SIZE, width: int = SIZE) -> dict:
    """The target of an image without objects, shaped as torchvision wants it."""
    return {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64),
            "masks": torch.zeros(0, height, width, dtype=torch.uint8)}


def drop_degenerate(target: dict) -> dict:
    """``target`` without its boxes of zero (or negative) width or height, with their labels and masks."""
    b = target["boxes"]
    keep = (b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])
    return {k: v[keep] if k in ("boxes", "labels", "masks", "area", "iscrowd") else v for k, v in target.items()}


def num_classes_for(category_ids) -> int:
    """``1 + the largest category id``: label k is category id k, label 0 the background, gaps included."""
    return 1 + max(int(i) for i in category_ids)


# ---- the mistakes that raise -----------------------------------------------------------------------------

def label_too_large(label: int = 7, num_classes: int = 4) -> str | None:
    """A label >= ``num_classes``: cross-entropy has no output for it (on CUDA a device-side assert)."""
    image, target = toy_sample(label=label)
    return catch(lambda: train_losses(toy_model(num_classes), [image], [target]))


def degenerate_box() -> str | None:
    """A box with zero width (x1 == x2), e.g. a one-pixel-wide sliver left by a crop or an annotation tool."""
    image, target = toy_sample(box=(40.0, 40.0, 40.0, 90.0))
    return catch(lambda: train_losses(toy_model(), [image], [target]))


def empty_target_wrong_shape() -> str | None:
    """An image without objects whose boxes are ``torch.zeros(0)`` (shape (0,)) instead of (0, 4)."""
    image, _ = toy_sample()
    target = {**empty_target(), "boxes": torch.zeros(0)}
    return catch(lambda: train_losses(toy_model(), [image], [target]))


def uint8_image() -> str | None:
    """A uint8 image (0..255), as ``read_image`` or ``PILToTensor`` give it, passed straight to the model."""
    image, target = toy_sample()
    return catch(lambda: train_losses(toy_model(), [(image * 255).to(torch.uint8)], [target]))


def forgot_eval() -> str | None:
    """Predicting with a model still in train mode (no ``model.eval()``): it wants targets, to compute losses."""
    image, _ = toy_sample()
    model = toy_model().train()
    return catch(lambda: model([image]))


def coco_ids_as_strings(coco_gt=None, results: list[dict] | None = None) -> str | None:
    """Results whose ``image_id`` is a string ("3") while the COCO file's ids are ints (3).

    ``coco_gt`` and ``results`` default to a tiny COCO set and one result for its image."""
    if coco_gt is None:
        coco_gt, results = tiny_coco(), [{"image_id": 1, "category_id": 1, "bbox": [32, 40, 48, 56], "score": 0.9}]
    as_str = [{**r, "image_id": str(r["image_id"])} for r in results]
    return catch(lambda: coco_eval(coco_gt, as_str, "bbox"))


def categories_with_id_0() -> str | None:
    """A COCO file whose categories start at id 0: ``categories_of`` refuses it (label 0 is the background)."""
    from course_lib.data.coco_meta import categories_of

    with tempfile.TemporaryDirectory() as tmp:
        path = _coco_file(Path(tmp), [(0, "cat"), (1, "dog")])
        message = catch(lambda: categories_of(path))
    return message.replace(str(path), path.name) if message else message


# ---- the mistakes that raise nothing -----------------------------------------------------------------------

def mask_target_fill(masks: torch.Tensor, box: tuple[float, ...] = BOX, resolution: int = 28) -> float:
    """The fraction of foreground in the 28 x 28 mask target torchvision cuts out of ``masks`` for ``box``
    (``roi_heads.project_masks_on_boxes``, the target of ``maskrcnn_loss``). For the toy object: about 1."""
    from torchvision.models.detection.roi_heads import project_masks_on_boxes

    target = project_masks_on_boxes(masks, torch.tensor([box]), torch.tensor([0]), resolution)
    return round(float(target.mean()), 3)


def masks_with_channel_axis() -> dict[str, float]:
    """Masks shaped (N, 1, H, W) raise nothing; the mask target they give is empty. Returns the target's fill
    for the right shape and for the wrong one."""
    _, target = toy_sample()
    return {"(N, H, W)": mask_target_fill(target["masks"]),
            "(N, 1, H, W)": mask_target_fill(target["masks"][:, None])}


def real_class_as_label_0() -> dict[str, dict[str, float]]:
    """The losses of one object labelled 1 and of the same object labelled 0: with label 0 it is background,
    so no proposal is a positive: ``loss_box_reg`` and ``loss_mask`` are 0 and the classifier learns "nothing here"."""
    out = {}
    for label in (1, 0):
        image, target = toy_sample(label=label)
        out[f"label {label}"] = train_losses(toy_model(), [image], [target])
    return out


def category_names(category_ids: list[int]) -> list[str]:
    """``categories_of`` on a COCO file with these category ids (named ``class<id>``): index = label."""
    from course_lib.data.coco_meta import categories_of

    with tempfile.TemporaryDirectory() as tmp:
        return categories_of(_coco_file(Path(tmp), [(i, f"class{i}") for i in category_ids]))


@torch.no_grad()
def unscaled_images(model, images: list[torch.Tensor], device="cpu") -> dict[str, list[dict]]:
    """Predictions for float images in [0, 1] and for the same images in 0..255 (``img.float()`` of a uint8
    image, without ``/ 255``): torchvision's transform normalises with ImageNet's mean and std, made for [0, 1]."""
    from course_lib.training.predict import run_inference

    return {"0..1": run_inference(model, images, device),
            "0..255": run_inference(model, [img * 255 for img in images], device)}


def flip_when_evaluating(model, ann_file: str | Path, n_images: int = 8, device="cpu", seed: int = 0) -> dict:
    """segm AP and AP50 on the first ``n_images`` of a COCO file, with the evaluation transform and with the
    training one (a random horizontal flip). COCOeval compares with the file's, unflipped, ground truth."""
    from course_lib.data.coco_dataset import CocoInstanceDataset, get_transform
    from course_lib.training.evaluation import evaluate

    ann_file = Path(ann_file)
    out = {}
    for name, train in (("eval transform", False), ("random flip", True)):
        torch.manual_seed(seed)
        ds = CocoInstanceDataset(ann_file.parent / "images", ann_file, get_transform(train=train))
        report = evaluate(model, torch.utils.data.Subset(ds, range(n_images)), device, progress=False,
                          iou_types=("segm",))
        out[name] = {k: report["segm"][k] for k in ("AP", "AP50")}
    return out


def activation_memory(batch_size: int = 1, image_size: int = SIZE, rpn_post_nms_top_n: int | None = None,
                      box_batch_size_per_image: int | None = None) -> float:
    """A rough measure of one training step's memory on any device: the MiB of the tensors the forward pass
    saves for ``backward`` (activations; the weights are left out). On a GPU these, with the weights, their
    gradients and the optimizer's state, are what runs out of memory."""
    settings = {"num_classes": 4, "image_size": image_size}  # the toy model's, with the settings asked for
    if rpn_post_nms_top_n is not None:
        settings["rpn_post_nms_top_n_train"] = rpn_post_nms_top_n
    if box_batch_size_per_image is not None:
        settings["box_batch_size_per_image"] = box_batch_size_per_image
    torch.manual_seed(0)
    model = build_course_model(settings).train()
    weights = {p.data_ptr() for p in model.parameters()}
    seen: dict[tuple, int] = {}

    def pack(t):
        if t.data_ptr() not in weights:
            seen[(t.data_ptr(), tuple(t.shape), t.dtype)] = t.numel() * t.element_size()
        return t

    image, target = toy_sample()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        torch.manual_seed(0)
        model([image] * batch_size, [target] * batch_size)
    return sum(seen.values()) / 2**20


# ---- small COCO files ------------------------------------------------------------------------------------

def _coco_dict(categories: list[tuple[int, str]]) -> dict:
    x1, y1, x2, y2 = BOX
    return {"images": [{"id": 1, "file_name": "1.png", "width": SIZE, "height": SIZE}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": categories[-1][0], "iscrowd": 0,
                             "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1),
                             "segmentation": [[x1, y1, x2, y1, x2, y2, x1, y2]]}],
            "categories": [{"id": i, "name": n} for i, n in categories]}


def _coco_file(folder: Path, categories: list[tuple[int, str]]) -> Path:
    path = folder / "annotations.json"
    path.write_text(json.dumps(_coco_dict(categories)))
    return path


def tiny_coco():
    """A ``pycocotools`` COCO set of one 128 x 128 image (id 1) and one object (category 1), built in memory."""
    from pycocotools.coco import COCO

    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = _coco_dict([(1, "square")])
        coco.createIndex()
    return coco
