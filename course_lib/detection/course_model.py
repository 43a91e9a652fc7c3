"""Building and loading Mask R-CNN models. Taught in: 00_overview (06_fine_tuning for head replacement).

Two models run through the course:

* torchvision's ``maskrcnn_resnet50_fpn`` with COCO weights (``weights="DEFAULT"``), used when the
  weights are already in the torch cache. This module never downloads anything by itself.
* the course model: the same ``MaskRCNN`` class built from torchvision's own parts around a small
  ResNet (one ``BasicBlock`` per stage) with trainable BatchNorm and a 64-channel FPN, trained by
  ``./course train`` on the shapes data. Its checkpoint ships in ``data/``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor

from course_lib.detection.backbone_utils import build_backbone
from course_lib.utils.paths import CHECKPOINT

# Everything needed to rebuild the course model; stored in its checkpoint.
COURSE_CONFIG = {
    "num_classes": 4,  # background + circle, square, triangle
    "classes": ["__background__", "circle", "square", "triangle"],
    "image_size": 128,
    "fpn_channels": 64,
    "anchor_sizes": [12, 24, 48, 96, 192],  # one size per FPN level P2..P6
    "aspect_ratios": [0.5, 1.0, 2.0],
    "box_representation": 256,
    "mask_channels": 64,
}


def build_course_model(config: dict | None = None) -> MaskRCNN:
    """The course's small Mask R-CNN, untrained. ``config`` defaults to ``COURSE_CONFIG``."""
    cfg = {**COURSE_CONFIG, **(config or {})}
    c, rep, mc, k = cfg["fpn_channels"], cfg["box_representation"], cfg["mask_channels"], cfg["num_classes"]
    anchors = AnchorGenerator(sizes=tuple((s,) for s in cfg["anchor_sizes"]),
                              aspect_ratios=(tuple(cfg["aspect_ratios"]),) * len(cfg["anchor_sizes"]))
    return MaskRCNN(
        build_backbone(c), num_classes=None,
        min_size=cfg["image_size"], max_size=cfg["image_size"],
        rpn_anchor_generator=anchors,
        rpn_pre_nms_top_n_train=1000, rpn_post_nms_top_n_train=500,
        rpn_pre_nms_top_n_test=500, rpn_post_nms_top_n_test=250,
        box_head=TwoMLPHead(c * 7 * 7, rep), box_predictor=FastRCNNPredictor(rep, k),
        box_batch_size_per_image=64, box_detections_per_img=50,
        mask_head=MaskRCNNHeads(c, [mc] * 4, 1), mask_predictor=MaskRCNNPredictor(mc, mc, k),
    )


def read_course_checkpoint(path: str | Path = CHECKPOINT) -> tuple[dict, dict]:
    """``(config, float32 state dict)`` of a course checkpoint, read with ``weights_only=True``."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: course checkpoint not found. Train one with "
                                "`./course train` or restore data/ from git.")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    return ckpt["config"], {k: v.float() for k, v in ckpt["model"].items()}


def load_course_model(path: str | Path = CHECKPOINT, device: torch.device | str = "cpu") -> MaskRCNN:
    """The trained course model in eval mode, loaded with ``weights_only=True``."""
    config, state = read_course_checkpoint(path)
    model = build_course_model(config)
    model.load_state_dict(state)
    return model.to(device).eval()


def checkpoint_classes(path: str | Path = CHECKPOINT) -> list[str]:
    """Class names of a course checkpoint, index = label id (0 is background)."""
    return list(torch.load(path, map_location="cpu", weights_only=True)["config"]["classes"])


def coco_weights_file() -> Path:
    """Where torch keeps the COCO Mask R-CNN weights once downloaded (``torch.hub`` cache)."""
    from torchvision.models.detection import MaskRCNN_ResNet50_FPN_Weights

    url = MaskRCNN_ResNet50_FPN_Weights.DEFAULT.url
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]


def coco_weights_available() -> bool:
    """True when ``weights="DEFAULT"`` would load from the cache without touching the network."""
    return coco_weights_file().is_file()


# How to get the COCO weights onto a machine without internet (the end of a sentence; {path} is the cache file).
GET_COCO_WEIGHTS = ("run `python -c \"import torchvision; torchvision.models.detection.maskrcnn_resnet50_fpn("
                    "weights='DEFAULT')\"` once on a machine with internet and copy the file to {path}")
OFFLINE_MESSAGE = ("COCO weights for maskrcnn_resnet50_fpn are not in the torch cache ({path}), so the course "
                   "uses its own shapes checkpoint instead; to use the real ones, "
                   + GET_COCO_WEIGHTS.replace(" to {path}", " there") + ".")


def load_inference_model(device: torch.device | str = "cpu", prefer: str = "coco", verbose: bool = True):
    """The model a notebook runs: ``(model, source, class_names)`` with ``source`` 'coco' or 'course'.

    With ``prefer='coco'`` and the weights cached, this is torchvision's ``maskrcnn_resnet50_fpn``
    with ``weights="DEFAULT"``. Otherwise it says so in one sentence and loads the course checkpoint.
    No path here opens a network connection.
    """
    if prefer == "coco" and coco_weights_available():
        from torchvision.models.detection import (
            MaskRCNN_ResNet50_FPN_Weights,
            maskrcnn_resnet50_fpn,
        )

        weights = MaskRCNN_ResNet50_FPN_Weights.DEFAULT
        model = maskrcnn_resnet50_fpn(weights=weights).to(device).eval()
        return model, "coco", list(weights.meta["categories"])
    if prefer == "coco" and verbose:
        print(OFFLINE_MESSAGE.format(path=coco_weights_file()))
    return load_course_model(device=device), "course", checkpoint_classes()


def get_instance_segmentation_model(num_classes: int, model: MaskRCNN | None = None) -> MaskRCNN:
    """Replace the box and mask predictors of ``model`` for ``num_classes`` classes (background included).

    Works for torchvision's ``maskrcnn_resnet50_fpn`` and for the course model alike: it reads the
    input widths off the existing predictors, as the torchvision tutorial does.
    """
    if model is None:
        model = load_course_model()
    in_features = model.roi_heads.box_predictor.cls_score.in_features
    model.roi_heads.box_predictor = FastRCNNPredictor(in_features, num_classes)
    in_mask = model.roi_heads.mask_predictor.conv5_mask.in_channels
    hidden = model.roi_heads.mask_predictor.conv5_mask.out_channels
    model.roi_heads.mask_predictor = MaskRCNNPredictor(in_mask, hidden, num_classes)
    return model


def load_maskrcnn_resnet50_fpn(verbose: bool = True) -> tuple[MaskRCNN, str]:
    """torchvision's ``maskrcnn_resnet50_fpn`` without touching the network: ``(model, source)``.

    With the COCO weights in the torch cache: ``weights="DEFAULT"`` (91 COCO classes), source 'coco'.
    Without them: ``weights=None, weights_backbone=None`` (random weights, same architecture), source
    'random', and one sentence says so. Either way, replace its predictors for your own classes with
    ``get_instance_segmentation_model``.
    """
    from torchvision.models.detection import maskrcnn_resnet50_fpn

    if coco_weights_available():
        return maskrcnn_resnet50_fpn(weights="DEFAULT", weights_backbone=None), "coco"
    if verbose:
        print(f"COCO weights are not in the torch cache ({coco_weights_file()}), so maskrcnn_resnet50_fpn is "
              "built with random weights (weights=None, weights_backbone=None); its shapes are the same.")
    return maskrcnn_resnet50_fpn(weights=None, weights_backbone=None), "random"


def describe_predictors(model: MaskRCNN) -> str:
    """The box and mask predictors' layers with their weight shapes, one line each (for printing)."""
    heads = model.roi_heads
    layers = [("box_predictor.cls_score", heads.box_predictor.cls_score),
              ("box_predictor.bbox_pred", heads.box_predictor.bbox_pred),
              ("mask_predictor.conv5_mask", heads.mask_predictor.conv5_mask),
              ("mask_predictor.mask_fcn_logits", heads.mask_predictor.mask_fcn_logits)]
    return "\n".join(f"{name:31s} {type(layer).__name__:15s} weight {tuple(layer.weight.shape)}"
                     for name, layer in layers)
