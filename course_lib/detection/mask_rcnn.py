"""The whole Mask R-CNN, assembled from the course's own parts (torchvision's ``detection/mask_rcnn.py``).
Taught in: 07_your_mask_rcnn

What is the course's and what is torchvision's:

| stage                                   | from                                                        |
|-----------------------------------------|-------------------------------------------------------------|
| resize + normalise + batch (transform)  | torchvision ``GeneralizedRCNNTransform`` (data handling, not a lesson) |
| backbone + FPN network                  | torchvision modules (``ResNet``, ``BackboneWithFPN``); notebook 01 rebuilds the FPN merge |
| anchors                                 | ``anchor_utils.AnchorGenerator``                            |
| RPN head, proposals, matching, sampling, loss | ``rpn.RegionProposalNetwork`` (``rpn_loss``)          |
| multi-scale RoIAlign                    | ``ops.poolers.MultiScaleRoIAlign`` (``ops.roi_align``)      |
| box head, RoI sampling, ``fastrcnn_loss``, post-processing | ``faster_rcnn`` heads, ``roi_heads.RoIHeads`` |
| mask head, mask targets, ``maskrcnn_loss``, paste | ``MaskRCNNHeads`` / ``MaskRCNNPredictor`` here, ``roi_heads`` |

Parameter names are torchvision's, so any torchvision ``MaskRCNN`` state dict loads unchanged
(``from_torchvision`` copies a whole model: its backbone module and its settings). The functions each stage
calls are attributes of the stage modules; ``plug_in`` swaps in a learner's own (``PLUGGABLE`` lists them).
"""

from __future__ import annotations

import contextlib
import copy
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor, nn
from torchvision.models.detection.transform import GeneralizedRCNNTransform, resize_boxes

from course_lib.detection.anchor_utils import AnchorGenerator
from course_lib.detection.course_model import (
    CourseModelSpec,
    ModelParts,
    build_mask_rcnn,
    model_from_file,
    read_course_file,
)
from course_lib.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from course_lib.detection.roi_heads import RoIHeads, paste_mask_in_image, paste_masks_in_image
from course_lib.detection.rpn import RegionProposalNetwork, RPNHead
from course_lib.ops.poolers import MultiScaleRoIAlign
from course_lib.utils.paths import CHECKPOINT


class MaskRCNNHeads(nn.Sequential):
    """The mask head: ``len(layers)`` 3x3 convolutions + ReLU on the (R, C, 14, 14) pooled RoIs."""

    _version = 2

    def __init__(self, in_channels: int, layers, dilation: int = 1):
        blocks, previous = [], in_channels
        for channels in layers:
            # Nested Sequential for torchvision's parameter names (0.0.weight, ...).
            blocks.append(nn.Sequential(nn.Conv2d(previous, channels, 3, padding=dilation, dilation=dilation),
                                        nn.ReLU(inplace=True)))
            previous = channels
        super().__init__(*blocks)
        for layer in self.modules():
            if isinstance(layer, nn.Conv2d):
                nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(layer.bias)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, *args, **kwargs):
        # torchvision's old key names (mask_fcn1.weight, ...), still used by its COCO weights file.
        if local_metadata.get("version") is None or local_metadata["version"] < 2:
            for i in range(len(self)):
                for kind in ("weight", "bias"):
                    old = f"{prefix}mask_fcn{i + 1}.{kind}"
                    if old in state_dict:
                        state_dict[f"{prefix}{i}.0.{kind}"] = state_dict.pop(old)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, *args, **kwargs)


class MaskRCNNPredictor(nn.Sequential):
    """(R, C, 14, 14) -> (R, num_classes, 28, 28) mask logits: a 2x transposed conv, ReLU, a 1x1 conv."""

    def __init__(self, in_channels: int, dim_reduced: int, num_classes: int):
        super().__init__(OrderedDict([
            ("conv5_mask", nn.ConvTranspose2d(in_channels, dim_reduced, 2, 2, 0)),
            ("relu", nn.ReLU(inplace=True)),
            ("mask_fcn_logits", nn.Conv2d(dim_reduced, num_classes, 1, 1, 0)),
        ]))
        for name, param in self.named_parameters():
            if "weight" in name:
                nn.init.kaiming_normal_(param, mode="fan_out", nonlinearity="relu")


class MaskRCNN(nn.Module):
    """Mask R-CNN from the course's parts; the same arguments and defaults as torchvision's ``MaskRCNN``.

    ``model(images)`` in eval mode: ``images`` a list of (3, H, W) float images in [0, 1] -> one dict per image
    with ``boxes`` (D, 4) in the input image's pixels, ``labels`` (D,), ``scores`` (D,) and ``masks``
    (D, 1, H, W) probabilities. In train mode ``model(images, targets)`` -> the five losses.
    """

    def __init__(self, backbone: nn.Module, num_classes: int | None = None, min_size=800, max_size=1333,
                 image_mean=None, image_std=None, rpn_anchor_generator=None, rpn_head=None,
                 rpn_pre_nms_top_n_train=2000, rpn_pre_nms_top_n_test=1000, rpn_post_nms_top_n_train=2000,
                 rpn_post_nms_top_n_test=1000, rpn_nms_thresh=0.7, rpn_fg_iou_thresh=0.7, rpn_bg_iou_thresh=0.3,
                 rpn_batch_size_per_image=256, rpn_positive_fraction=0.5, rpn_score_thresh=0.0,
                 box_roi_pool=None, box_head=None, box_predictor=None, box_score_thresh=0.05, box_nms_thresh=0.5,
                 box_detections_per_img=100, box_fg_iou_thresh=0.5, box_bg_iou_thresh=0.5,
                 box_batch_size_per_image=512, box_positive_fraction=0.25, bbox_reg_weights=None,
                 mask_roi_pool=None, mask_head=None, mask_predictor=None):
        super().__init__()
        if (num_classes is None) == (box_predictor is None and mask_predictor is None):
            raise ValueError("give num_classes, or box_predictor and mask_predictor, not both")
        c = backbone.out_channels
        if rpn_anchor_generator is None:
            rpn_anchor_generator = AnchorGenerator(((32,), (64,), (128,), (256,), (512,)), ((0.5, 1.0, 2.0),) * 5)
        if rpn_head is None:
            rpn_head = RPNHead(c, rpn_anchor_generator.num_anchors_per_location()[0])
        self.transform = GeneralizedRCNNTransform(min_size=min_size, max_size=max_size,
                                                  image_mean=image_mean or [0.485, 0.456, 0.406],
                                                  image_std=image_std or [0.229, 0.224, 0.225])
        self.backbone = backbone
        self.rpn = RegionProposalNetwork(
            anchor_generator=rpn_anchor_generator, head=rpn_head, fg_iou_thresh=rpn_fg_iou_thresh,
            bg_iou_thresh=rpn_bg_iou_thresh, batch_size_per_image=rpn_batch_size_per_image,
            positive_fraction=rpn_positive_fraction,
            pre_nms_top_n=dict(training=rpn_pre_nms_top_n_train, testing=rpn_pre_nms_top_n_test),
            post_nms_top_n=dict(training=rpn_post_nms_top_n_train, testing=rpn_post_nms_top_n_test),
            nms_thresh=rpn_nms_thresh, score_thresh=rpn_score_thresh)
        levels = ["0", "1", "2", "3"]
        self.roi_heads = RoIHeads(
            box_roi_pool=box_roi_pool or MultiScaleRoIAlign(levels, 7, 2),
            box_head=box_head or TwoMLPHead(c * 7 * 7, 1024),
            box_predictor=box_predictor or FastRCNNPredictor(1024, num_classes),
            fg_iou_thresh=box_fg_iou_thresh, bg_iou_thresh=box_bg_iou_thresh,
            batch_size_per_image=box_batch_size_per_image, positive_fraction=box_positive_fraction,
            bbox_reg_weights=bbox_reg_weights, score_thresh=box_score_thresh, nms_thresh=box_nms_thresh,
            detections_per_img=box_detections_per_img,
            mask_roi_pool=mask_roi_pool or MultiScaleRoIAlign(levels, 14, 2),
            mask_head=mask_head or MaskRCNNHeads(c, (256, 256, 256, 256), 1),
            mask_predictor=mask_predictor or MaskRCNNPredictor(256, 256, num_classes))
        self.paste_mask = paste_mask_in_image  # pluggable

    def forward(self, images: list[Tensor], targets: list[dict[str, Tensor]] | None = None):
        return forward_from_stages(self, images, targets, postprocess=self.postprocess)

    def postprocess(self, detections: list[dict], image_shapes, original_image_sizes) -> list[dict]:
        """Boxes back to the input image's pixels; each (1, 28, 28) mask pasted into its box there."""
        for det, resized, original in zip(detections, image_shapes, original_image_sizes, strict=True):
            det["boxes"] = resize_boxes(det["boxes"], resized, original)
            if "masks" in det:
                det["masks"] = self.paste_masks(det["masks"], det["boxes"], original)
        return detections

    def paste_masks(self, masks: Tensor, boxes: Tensor, image_shape) -> Tensor:
        """(D, 1, M, M) masks and (D, 4) boxes -> (D, 1, H, W), with the pluggable ``paste_mask``."""
        if self.paste_mask is paste_mask_in_image:
            return paste_masks_in_image(masks, boxes, image_shape)
        if len(masks) == 0:
            return masks.new_zeros((0, 1, *image_shape))
        return torch.stack([self.paste_mask(m[0], b, image_shape) for m, b in zip(masks, boxes, strict=True)])[:, None]


def forward_from_stages(model: nn.Module, images: list[Tensor], targets: list[dict[str, Tensor]] | None = None,
                        postprocess=None):
    """A Mask R-CNN's ``forward`` from its stages: torchvision's ``GeneralizedRCNN.forward`` as a function of any
    model with its attribute names (``transform``, ``backbone``, ``rpn``, ``roi_heads``), torchvision's or the course's.

    Training (``model.training``): the five losses, the RPN's and the RoI heads', in one dict. Evaluation: one dict
    per image (``boxes`` (D, 4) in the input image's pixels, ``labels``, ``scores``, ``masks`` (D, 1, H, W)).
    ``postprocess(detections, resized_sizes, original_sizes)`` defaults to ``model.transform.postprocess`` (boxes
    scaled back, masks pasted); the course's ``MaskRCNN`` passes its own, whose mask pasting is pluggable.
    Notebook 07's assembly exercise writes this function.
    """
    if model.training:
        if targets is None:
            raise ValueError("targets should not be none when in training mode")
        for i, t in enumerate(targets):
            if not isinstance(t.get("boxes"), Tensor) or t["boxes"].dim() != 2 or t["boxes"].shape[-1] != 4:
                shape = tuple(t["boxes"].shape) if isinstance(t.get("boxes"), Tensor) else type(t.get("boxes"))
                raise ValueError(f"Expected target boxes to be a tensor of shape [N, 4], got {shape} "
                                 f"(target {i}).")
    original_image_sizes = [tuple(img.shape[-2:]) for img in images]
    images, targets = model.transform(images, targets)
    if targets is not None:
        for i, t in enumerate(targets):
            degenerate = (t["boxes"][:, 2:] <= t["boxes"][:, :2]).any(dim=1)
            if degenerate.any():
                box = t["boxes"][torch.where(degenerate)[0][0]].tolist()
                raise ValueError("All bounding boxes should have positive height and width. "
                                 f"Found invalid box {box} for target at index {i}.")
    features = model.backbone(images.tensors)
    if isinstance(features, Tensor):
        features = OrderedDict([("0", features)])
    proposals, proposal_losses = model.rpn(images, features, targets)
    detections, detector_losses = model.roi_heads(features, proposals, images.image_sizes, targets)
    if model.training:
        return {**detector_losses, **proposal_losses}
    return (postprocess or model.transform.postprocess)(detections, images.image_sizes, original_image_sizes)


# ------------------------------------------------------------------------------------------ plugging in

#: The functions a learner's own can replace, and the stage modules that call them.
PLUGGABLE = {
    "box_iou": ("rpn", "roi_heads"),
    "nms": ("rpn", "roi_heads"),
    "encode_boxes": ("rpn", "roi_heads"),
    "decode_boxes": ("rpn", "roi_heads"),
    "rpn_loss": ("rpn",),
    "fastrcnn_loss": ("roi_heads",),
    "maskrcnn_loss": ("roi_heads",),
    "roi_align": ("roi_heads.box_roi_pool", "roi_heads.mask_roi_pool"),
    "assign_fpn_levels": ("roi_heads.box_roi_pool", "roi_heads.mask_roi_pool"),
    "paste_mask": ("",),
}


def plug_in(model: MaskRCNN, **functions) -> MaskRCNN:
    """Use your own functions inside ``model`` (in place; returns it): ``plug_in(model, nms=my_nms)``.

    Names and signatures are the notebooks' exercises: ``box_iou(boxes1, boxes2)``, ``nms(boxes, scores,
    iou_threshold)``, ``encode_boxes(gt_boxes, reference_boxes, weights)``, ``decode_boxes(deltas,
    reference_boxes, weights)``, ``rpn_loss(...)``, ``fastrcnn_loss(...)``, ``maskrcnn_loss(...)``,
    ``roi_align(input, rois, output_size, spatial_scale, sampling_ratio)`` (wrap a one-box function with
    ``roi_align_from_one_box``), ``assign_fpn_levels(boxes, k_min, k_max, canonical_scale,
    canonical_level)``, ``paste_mask(mask, box, img_shape)``.
    """
    unknown = sorted(set(functions) - set(PLUGGABLE))
    if unknown:
        raise ValueError(f"cannot plug in {unknown}: the pluggable functions are {sorted(PLUGGABLE)}")
    for name, fn in functions.items():
        if not callable(fn):
            raise TypeError(f"{name} must be a function, got {type(fn).__name__}")
        for path in PLUGGABLE[name]:
            module = model.get_submodule(path)
            setattr(module, name, fn)
    return model


#: The eval forward's steps that are functions, not modules (forward hooks see those): attribute paths in the model.
STAGE_FUNCTIONS = ("rpn.decode_boxes", "rpn.filter_proposals", "roi_heads.postprocess_detections",
                   "roi_heads.maskrcnn_inference", "paste_masks")


@contextlib.contextmanager
def wrapped_stage_functions(model: MaskRCNN, wrap, paths=STAGE_FUNCTIONS):
    """``with wrapped_stage_functions(model, wrap):`` the model calls ``wrap(path, fn)`` in place of each function
    ``fn`` at ``path`` (``"rpn.decode_boxes"``: whatever is plugged in there now; a ``PLUGGABLE`` one's path works
    too), e.g. to record what it returns while ``model(images)`` runs. Every function is restored on exit, even
    after an error (a method becomes the class's again)."""
    missing = object()
    saved = []
    try:
        for path in paths:
            owner, _, name = path.rpartition(".")
            module = model.get_submodule(owner)
            saved.append((module, name, module.__dict__.get(name, missing)))
            setattr(module, name, wrap(path, getattr(module, name)))
        yield model
    finally:
        for module, name, old in reversed(saved):
            if old is missing:
                delattr(module, name)
            else:
                setattr(module, name, old)


def roi_align_from_one_box(roi_align_one_box):
    """A batched ``roi_align(input, rois, output_size, spatial_scale, sampling_ratio)`` that calls
    ``roi_align_one_box(feature (C, H, W), box (4,), output_size, spatial_scale, sampling_ratio)`` once per
    box (notebook 03's exercise; slow, one Python call per RoI, but the same numbers)."""

    def roi_align(input: Tensor, rois: Tensor, output_size, spatial_scale=1.0, sampling_ratio=-1, aligned=False):
        out_h, out_w = (output_size, output_size) if isinstance(output_size, int) else tuple(output_size)
        if len(rois) == 0:
            return input.new_zeros((0, input.shape[1], out_h, out_w))
        return torch.stack([roi_align_one_box(input[int(r[0])], r[1:], (out_h, out_w), spatial_scale,
                                              sampling_ratio) for r in rois])

    return roi_align


# ------------------------------------------------------------------------------------------ building

def from_torchvision(tv_model: nn.Module) -> MaskRCNN:
    """The course's ``MaskRCNN`` with the settings, backbone and weights of a torchvision ``MaskRCNN``.

    Only the backbone module is copied as it is (torchvision's network); every other stage is rebuilt from
    the course's parts with the same sizes, read off the torchvision model's public attributes, then the
    whole state dict is loaded (strictly: every key).
    """
    rpn, heads, tf = tv_model.rpn, tv_model.roi_heads, tv_model.transform
    gen = rpn.anchor_generator
    box_head, predictor = heads.box_head, heads.box_predictor
    mask_head, mask_predictor = heads.mask_head, heads.mask_predictor
    pre_nms_top_n, post_nms_top_n = _per_mode(rpn, rpn.pre_nms_top_n), _per_mode(rpn, rpn.post_nms_top_n)
    model = MaskRCNN(
        backbone=copy.deepcopy(tv_model.backbone),
        num_classes=None,
        min_size=tf.min_size, max_size=tf.max_size, image_mean=list(tf.image_mean), image_std=list(tf.image_std),
        rpn_anchor_generator=AnchorGenerator(sizes=gen.sizes, aspect_ratios=gen.aspect_ratios),
        rpn_head=RPNHead(in_channels=rpn.head.cls_logits.in_channels,
                         num_anchors=rpn.head.cls_logits.out_channels, conv_depth=len(rpn.head.conv)),
        rpn_pre_nms_top_n_train=pre_nms_top_n["training"], rpn_pre_nms_top_n_test=pre_nms_top_n["testing"],
        rpn_post_nms_top_n_train=post_nms_top_n["training"], rpn_post_nms_top_n_test=post_nms_top_n["testing"],
        rpn_nms_thresh=rpn.nms_thresh,
        rpn_fg_iou_thresh=rpn.proposal_matcher.high_threshold, rpn_bg_iou_thresh=rpn.proposal_matcher.low_threshold,
        rpn_batch_size_per_image=rpn.fg_bg_sampler.batch_size_per_image,
        rpn_positive_fraction=rpn.fg_bg_sampler.positive_fraction,
        rpn_score_thresh=rpn.score_thresh,
        box_roi_pool=_pooler_like(heads.box_roi_pool),
        box_head=TwoMLPHead(in_channels=box_head.fc6.in_features, representation_size=box_head.fc6.out_features),
        box_predictor=FastRCNNPredictor(in_channels=predictor.cls_score.in_features,
                                        num_classes=predictor.cls_score.out_features),
        box_score_thresh=heads.score_thresh, box_nms_thresh=heads.nms_thresh,
        box_detections_per_img=heads.detections_per_img,
        box_fg_iou_thresh=heads.proposal_matcher.high_threshold,
        box_bg_iou_thresh=heads.proposal_matcher.low_threshold,
        box_batch_size_per_image=heads.fg_bg_sampler.batch_size_per_image,
        box_positive_fraction=heads.fg_bg_sampler.positive_fraction,
        bbox_reg_weights=tuple(heads.box_coder.weights),
        mask_roi_pool=_pooler_like(heads.mask_roi_pool),
        mask_head=MaskRCNNHeads(in_channels=mask_head[0][0].in_channels,
                                layers=[block[0].out_channels for block in mask_head],
                                dilation=mask_head[0][0].dilation[0]),
        mask_predictor=MaskRCNNPredictor(in_channels=mask_predictor.conv5_mask.in_channels,
                                         dim_reduced=mask_predictor.conv5_mask.out_channels,
                                         num_classes=mask_predictor.mask_fcn_logits.out_channels))
    model.load_state_dict(tv_model.state_dict())
    return model.train(tv_model.training)


def _per_mode(module: nn.Module, getter) -> dict:
    """``{"training": ..., "testing": ...}`` of a public getter that answers for the module's current mode
    (torchvision's ``rpn.pre_nms_top_n()``); the module's mode is left as it was."""
    was = module.training
    try:
        values = {}
        for mode in ("training", "testing"):
            module.training = mode == "training"  # this module only: the getter reads its own flag
            values[mode] = getter()
        return values
    finally:
        module.training = was


def _pooler_like(pool) -> MultiScaleRoIAlign:
    return MultiScaleRoIAlign(featmap_names=pool.featmap_names, output_size=pool.output_size,
                              sampling_ratio=pool.sampling_ratio, canonical_scale=pool.canonical_scale,
                              canonical_level=pool.canonical_level)


#: The course's own parts, for the one builder (``course_model.build_mask_rcnn``).
COURSE_PARTS = ModelParts(mask_rcnn=MaskRCNN, anchor_generator=AnchorGenerator, roi_pool=MultiScaleRoIAlign,
                          box_head=TwoMLPHead, box_predictor=FastRCNNPredictor, mask_head=MaskRCNNHeads,
                          mask_predictor=MaskRCNNPredictor)


def build_course_mask_rcnn(spec: CourseModelSpec | Mapping | None = None) -> MaskRCNN:
    """The course's small model (``course_model.COURSE_SPEC``, or ``spec``) from the course's parts, untrained."""
    return build_mask_rcnn(spec, parts=COURSE_PARTS)


def load_course_mask_rcnn(path: str | Path = CHECKPOINT, device: torch.device | str = "cpu") -> MaskRCNN:
    """The course checkpoint (or any course model file) in the course-built model, eval mode
    (``weights_only=True``). A ``maskrcnn_resnet50_fpn`` file goes through ``from_torchvision``."""
    model_file = read_course_file(path)
    if model_file.arch == "course":
        return model_from_file(model_file, build=build_course_mask_rcnn).to(device)
    return from_torchvision(model_from_file(model_file)).to(device).eval()
