"""What 06's head-replacement exercise is checked on: a model's heads as plain data, and models to try it on.

Self-contained (torch and torchvision only): the grader sends this file into the sandbox where a student's
``get_instance_segmentation_model`` runs (``Checker.prelude``), and the notebook's checker uses it too.
"""

import torch
from torchvision.models.detection import MaskRCNN

# Models the grader builds inside its sandbox, by name (the notebook also passes builders themselves).
BUILDERS = {
    "maskrcnn_resnet50_fpn": lambda: __import__("torchvision").models.detection.maskrcnn_resnet50_fpn(
        weights=None, weights_backbone=None),  # offline, random weights
    "maskrcnn_resnet18_fpn": lambda: MaskRCNN(__import__("torchvision").models.detection.backbone_utils
                                              .resnet_fpn_backbone(backbone_name="resnet18", weights=None), 91),
}


def head_summary(model) -> dict | str:
    """What a head replacement must get right, as plain values the checker can compare."""
    if not isinstance(model, MaskRCNN):
        return f"a MaskRCNN model ({type(model).__name__} returned)"
    heads = model.roi_heads
    box, mask = heads.box_predictor, heads.mask_predictor
    rest = sum(float(p.detach().double().abs().sum()) for n, p in model.named_parameters() if "predictor" not in n)
    return {"box_predictor": type(box).__name__, "mask_predictor": type(mask).__name__,
            "cls_score": tuple(box.cls_score.weight.shape), "bbox_pred": tuple(box.bbox_pred.weight.shape),
            "conv5_mask": tuple(mask.conv5_mask.weight.shape),
            "mask_fcn_logits": tuple(mask.mask_fcn_logits.weight.shape),
            "sum of |weights| outside the predictors": rest}


def summarised(fn, builder, num_classes: int):
    """``fn(num_classes, model)`` on a fresh model from ``builder`` (a callable or a name in ``BUILDERS``),
    the same untrained model for the learner and the reference, as ``head_summary``."""
    build = BUILDERS[builder] if isinstance(builder, str) else builder
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = build()
    return head_summary(fn(num_classes, model))
