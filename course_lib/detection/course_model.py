"""Building and loading Mask R-CNN models. Taught in: 00_overview (06_fine_tuning for head replacement).

Two models run through the course:

* torchvision's ``maskrcnn_resnet50_fpn`` with COCO weights (``weights="DEFAULT"``), used when the
  weights are already in the torch cache. This module never downloads anything by itself.
* the course model: a small ResNet (one ``BasicBlock`` per stage) with trainable BatchNorm and a
  64-channel FPN under Mask R-CNN's heads, trained by ``./course train`` on the shapes data. Its checkpoint
  ships in ``data/``.

The course model is described by ONE spec, ``CourseModelSpec`` (``COURSE_SPEC``; ``COURSE_CONFIG`` is the same
as a dict), saved in its model file and read back from it, and built by ONE builder, ``build_mask_rcnn(spec,
parts=...)``, in two flavours: torchvision's classes (``build_course_model``, here) or the course's own parts
(``mask_rcnn.build_course_mask_rcnn``, notebook 07). Files are read through ``model_file``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
from torch import nn
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.ops import MultiScaleRoIAlign

from course_lib.detection.backbone_utils import build_backbone
from course_lib.detection.model_file import COURSE_ARCH, R50_ARCH, ModelFile, read_model_file
from course_lib.utils.paths import CHECKPOINT, shown

# ------------------------------------------------------------------------------------------ the spec

BACKGROUND = "__background__"
# Keys a model file's config holds beside the spec (``model_file``), accepted and ignored by ``as_spec``.
_FILE_KEYS = frozenset({"arch", "source"})


@dataclass(frozen=True)
class CourseModelSpec:
    """Every hyper-parameter of the course model; saved in its model file (``to_config``) and read back.

    Names are torchvision's ``MaskRCNN`` arguments where it has one. Both flavours (torchvision's classes,
    ``build_course_model``, and the course's own parts, ``mask_rcnn.build_course_mask_rcnn``) are built
    from it by ``build_mask_rcnn``.
    """

    # what it predicts: index = label, [0] the background
    num_classes: int = 4
    classes: tuple[str, ...] = (BACKGROUND, "circle", "square", "triangle")
    # input: every image is resized to image_size x image_size (min_size = max_size), then normalised
    image_size: int = 128
    image_mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    image_std: tuple[float, ...] = (0.229, 0.224, 0.225)
    # backbone: ResNet C2-C5 with this many BasicBlocks per stage (depth), FPN of fpn_channels (width)
    backbone_blocks: tuple[int, ...] = (1, 1, 1, 1)
    fpn_channels: int = 64
    # anchors: one size per FPN level P2..P6, the same ratios (height / width) on every level
    anchor_sizes: tuple[int, ...] = (12, 24, 48, 96, 192)
    aspect_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)
    # RPN
    rpn_pre_nms_top_n_train: int = 1000
    rpn_pre_nms_top_n_test: int = 500
    rpn_post_nms_top_n_train: int = 500
    rpn_post_nms_top_n_test: int = 250
    rpn_nms_thresh: float = 0.7
    rpn_fg_iou_thresh: float = 0.7
    rpn_bg_iou_thresh: float = 0.3
    rpn_batch_size_per_image: int = 256
    rpn_positive_fraction: float = 0.5
    rpn_score_thresh: float = 0.0
    # RoI heads: pooling, box branch, mask branch
    box_roi_output_size: int = 7
    mask_roi_output_size: int = 14
    roi_sampling_ratio: int = 2
    # FPN level of a RoI: floor(canonical_level + log2(sqrt(area) / canonical_scale)), clamped to P2..P5.
    # The defaults are torchvision's (sized for COCO's 224-px ImageNet objects) and what model files written
    # before these fields mean; COURSE_SPEC sets 56 so the shapes' 14-61 px objects spread over P2..P4.
    roi_canonical_scale: int = 224
    roi_canonical_level: int = 4
    box_representation: int = 256
    box_score_thresh: float = 0.05
    box_nms_thresh: float = 0.5
    box_detections_per_img: int = 50
    box_fg_iou_thresh: float = 0.5
    box_bg_iou_thresh: float = 0.5
    box_batch_size_per_image: int = 64
    box_positive_fraction: float = 0.25
    bbox_reg_weights: tuple[float, ...] = (10.0, 10.0, 5.0, 5.0)
    mask_channels: int = 64
    mask_layers: int = 4
    mask_dilation: int = 1

    def __post_init__(self):
        for f in fields(self):  # lists (from a config or JSON) become tuples: the spec is hashable and frozen
            if isinstance(getattr(self, f.name), list):
                object.__setattr__(self, f.name, tuple(getattr(self, f.name)))
        if len(self.classes) != self.num_classes:
            raise ValueError(f"num_classes is {self.num_classes} but {len(self.classes)} classes are named "
                             f"({list(self.classes)}); index = label, [0] the background")

    @classmethod
    def from_config(cls, config: Mapping, *, strict: bool = True) -> CourseModelSpec:
        """The spec of a config dict (a model file's, or ``COURSE_CONFIG`` with changes); missing keys take
        the defaults. ``strict`` refuses unknown keys (a model file's ``arch``/``source`` are always allowed)."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(config) - names - _FILE_KEYS)
        if strict and unknown:
            raise ValueError(f"unknown course model settings {unknown}; the spec's are {sorted(names)}")
        values = {k: v for k, v in config.items() if k in names}
        if "num_classes" in values and "classes" not in values:  # name the classes generically
            default = cls.classes if len(cls.classes) == values["num_classes"] else None
            values["classes"] = default or (BACKGROUND, *(f"class{i}" for i in range(1, values["num_classes"])))
        elif "classes" in values and "num_classes" not in values:
            values["num_classes"] = len(values["classes"])
        return cls(**values)

    def to_config(self) -> dict:
        """Plain Python (lists, numbers, strings): what a model file stores (``torch.save``, JSON alike)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    def replace(self, **changes) -> CourseModelSpec:
        """A copy with ``changes``; changing only ``num_classes`` or only ``classes`` sets the other
        (``spec.replace(classes=names)``)."""
        base = asdict(self)
        if "num_classes" in changes and "classes" not in changes:
            base.pop("classes")
        if "classes" in changes and "num_classes" not in changes:
            base.pop("num_classes")
        return type(self).from_config({**base, **changes})


COURSE_SPEC = CourseModelSpec(roi_canonical_scale=56)
# The spec as a dict (the names the notebooks use: COURSE_CONFIG["anchor_sizes"]); the spec is the source.
COURSE_CONFIG = COURSE_SPEC.to_config()


def as_spec(spec: CourseModelSpec | Mapping | None = None) -> CourseModelSpec:
    """``None`` -> ``COURSE_SPEC``; a dict -> ``COURSE_SPEC`` with those settings changed (unknown keys refused)."""
    if spec is None:
        return COURSE_SPEC
    if isinstance(spec, CourseModelSpec):
        return spec
    return COURSE_SPEC.replace(**spec)


# ------------------------------------------------------------------------------------------ the builder

@dataclass(frozen=True)
class ModelParts:
    """The classes one flavour builds the model from; both flavours take the same keyword arguments."""

    mask_rcnn: Callable[..., nn.Module]
    anchor_generator: Callable[..., nn.Module]
    roi_pool: Callable[..., nn.Module]
    box_head: Callable[..., nn.Module]
    box_predictor: Callable[..., nn.Module]
    mask_head: Callable[..., nn.Module]
    mask_predictor: Callable[..., nn.Module]


TORCHVISION_PARTS = ModelParts(mask_rcnn=MaskRCNN, anchor_generator=AnchorGenerator, roi_pool=MultiScaleRoIAlign,
                               box_head=TwoMLPHead, box_predictor=FastRCNNPredictor, mask_head=MaskRCNNHeads,
                               mask_predictor=MaskRCNNPredictor)
FPN_LEVELS = ["0", "1", "2", "3"]  # the FPN maps RoIs are pooled from (P2-P5; P6 is for the RPN only)


def build_mask_rcnn(spec: CourseModelSpec | Mapping | None = None, *, parts: ModelParts) -> nn.Module:
    """The course model described by ``spec``, untrained, from ``parts`` (one flavour's classes).

    Modules with parameters are made in torchvision's order (backbone, box head and predictor, mask head and
    predictor, then the RPN head inside ``MaskRCNN``), so a seed gives the same weights in both flavours.
    """
    spec = as_spec(spec)
    c, k = spec.fpn_channels, spec.num_classes
    levels = len(spec.anchor_sizes)
    return parts.mask_rcnn(
        build_backbone(c, blocks_per_stage=spec.backbone_blocks),
        num_classes=None,
        min_size=spec.image_size, max_size=spec.image_size,
        image_mean=list(spec.image_mean), image_std=list(spec.image_std),
        rpn_anchor_generator=parts.anchor_generator(sizes=tuple((s,) for s in spec.anchor_sizes),
                                                    aspect_ratios=(tuple(spec.aspect_ratios),) * levels),
        rpn_pre_nms_top_n_train=spec.rpn_pre_nms_top_n_train, rpn_pre_nms_top_n_test=spec.rpn_pre_nms_top_n_test,
        rpn_post_nms_top_n_train=spec.rpn_post_nms_top_n_train,
        rpn_post_nms_top_n_test=spec.rpn_post_nms_top_n_test,
        rpn_nms_thresh=spec.rpn_nms_thresh, rpn_fg_iou_thresh=spec.rpn_fg_iou_thresh,
        rpn_bg_iou_thresh=spec.rpn_bg_iou_thresh, rpn_batch_size_per_image=spec.rpn_batch_size_per_image,
        rpn_positive_fraction=spec.rpn_positive_fraction, rpn_score_thresh=spec.rpn_score_thresh,
        box_roi_pool=parts.roi_pool(featmap_names=FPN_LEVELS, output_size=spec.box_roi_output_size,
                                    sampling_ratio=spec.roi_sampling_ratio,
                                    canonical_scale=spec.roi_canonical_scale,
                                    canonical_level=spec.roi_canonical_level),
        box_head=parts.box_head(in_channels=c * spec.box_roi_output_size ** 2,
                                representation_size=spec.box_representation),
        box_predictor=parts.box_predictor(in_channels=spec.box_representation, num_classes=k),
        box_score_thresh=spec.box_score_thresh, box_nms_thresh=spec.box_nms_thresh,
        box_detections_per_img=spec.box_detections_per_img, box_fg_iou_thresh=spec.box_fg_iou_thresh,
        box_bg_iou_thresh=spec.box_bg_iou_thresh, box_batch_size_per_image=spec.box_batch_size_per_image,
        box_positive_fraction=spec.box_positive_fraction, bbox_reg_weights=tuple(spec.bbox_reg_weights),
        mask_roi_pool=parts.roi_pool(featmap_names=FPN_LEVELS, output_size=spec.mask_roi_output_size,
                                     sampling_ratio=spec.roi_sampling_ratio,
                                    canonical_scale=spec.roi_canonical_scale,
                                    canonical_level=spec.roi_canonical_level),
        mask_head=parts.mask_head(in_channels=c, layers=[spec.mask_channels] * spec.mask_layers,
                                  dilation=spec.mask_dilation),
        mask_predictor=parts.mask_predictor(in_channels=spec.mask_channels, dim_reduced=spec.mask_channels,
                                            num_classes=k),
    )


def build_course_model(spec: CourseModelSpec | Mapping | None = None) -> MaskRCNN:
    """The course's small Mask R-CNN in torchvision's classes, untrained. ``spec`` defaults to ``COURSE_SPEC``;
    a dict changes some of its settings (``{"num_classes": 5}``)."""
    return build_mask_rcnn(spec, parts=TORCHVISION_PARTS)


# ------------------------------------------------------------------------------------------ from a model file

def model_from_file(model_file: ModelFile, *, build: Callable[[CourseModelSpec], nn.Module] = build_course_model,
                    ) -> nn.Module:
    """The model a model file describes, its weights loaded strictly, in eval mode on the CPU.

    A course model is built from the file's spec with ``build`` (``build_course_model``: torchvision's
    classes; ``mask_rcnn.build_course_mask_rcnn``: the course's); ``maskrcnn_resnet50_fpn`` from torchvision.
    """
    config = model_file.config
    if model_file.arch == R50_ARCH:
        from torchvision.models.detection import maskrcnn_resnet50_fpn

        size = {"min_size": config["image_size"], "max_size": config["image_size"]} if config.get("image_size") else {}
        model = maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=config["num_classes"], **size)
    elif model_file.arch == COURSE_ARCH:
        model = build(CourseModelSpec.from_config(config, strict=False))
    else:
        raise ValueError(f"{model_file.path}: unknown arch {model_file.arch!r} (known: {COURSE_ARCH}, {R50_ARCH})")
    model.load_state_dict(model_file.float_state_dict())
    return model.eval()


def load_course_model(path: str | Path = CHECKPOINT, device: torch.device | str = "cpu") -> MaskRCNN:
    """The trained course model (torchvision's classes) in eval mode, loaded with ``weights_only=True``."""
    return model_from_file(read_course_file(path)).to(device)


def read_course_file(path: str | Path = CHECKPOINT) -> ModelFile:
    """``model_file.read_model_file``, saying how to get the course checkpoint back when it is missing."""
    try:
        return read_model_file(path)
    except FileNotFoundError:
        if Path(path) != CHECKPOINT:
            raise
        raise FileNotFoundError(f"{path}: course checkpoint not found. Train one with "
                                "`./course train` or restore data/ from git.") from None


def checkpoint_classes(path: str | Path = CHECKPOINT) -> list[str]:
    """Class names of a course checkpoint, index = label id (0 is background)."""
    return read_course_file(path).classes


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
        print(OFFLINE_MESSAGE.format(path=shown(coco_weights_file())))
    model_file = read_course_file()
    return model_from_file(model_file).to(device), "course", model_file.classes


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
        print(f"COCO weights are not in the torch cache ({shown(coco_weights_file())}), so maskrcnn_resnet50_fpn is "
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
