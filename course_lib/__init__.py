"""Mask R-CNN, Step by Step: the library every course notebook imports.

The package is in layers; each imports only from the layers below it (``tests/test_layers.py``
enforces it). ARCHITECTURE.md at the repository root draws them and lists what each module holds.

    course     6  command line, quizzes, progress, checkers, grading, notebook build/run, doctor
    lessons    5  one module per notebook: its figures and analysis helpers (matplotlib lives here)
    training   4  engine, checkpoints, evaluation, PR curves, error analysis, prediction, commands
    data       3  synthetic shapes; COCO build, validation and Dataset; mask encoding
    detection  2  Mask R-CNN's stages from scratch, file for file as torchvision/models/detection
    ops        1  box ops, RoIPool, RoIAlign, poolers, the FPN merge, as torchvision/ops
    utils      0  device, seeding, paths, atomic files, progress bars

Notebooks write ``from course_lib import box_iou, show_progress``: the names below are imported
lazily, when first used, so the first cell of a notebook (``show_progress()``) loads no model code.
"""

from __future__ import annotations

import importlib

__version__ = "0.2.0"

# Module (relative to course_lib) -> the public names it lends to the top level.
_EXPORTS = {
    "utils.device": "get_device seed_everything describe_device",
    "utils.budget": "training_budget smoke_run",
    "utils.paths": "REPO_ROOT DATA_DIR GENERATED_DIR RUNS_DIR CHECKPOINT PROVENANCE shown",
    "utils.files": "write_json_atomic",
    "ops.boxes": "box_area box_iou nms batched_nms clip_boxes_to_image remove_small_boxes",
    "ops.roi_pool": "roi_pool roi_pool_one_box",
    "ops.roi_align": "roi_align roi_align_weights bilinear_interpolate linear_weights roi_align_one_box",
    "ops.poolers": "assign_fpn_levels multiscale_roi_align MultiScaleRoIAlign",
    "ops.feature_pyramid_network": "fpn_merge last_level_max_pool",
    "detection._utils": "BoxCoder Matcher BalancedPositiveNegativeSampler encode_boxes decode_boxes",
    "detection.anchor_utils": "AnchorGenerator generate_anchors grid_anchors anchors_for_image",
    "detection.backbone_utils": "build_backbone feature_shapes",
    "detection.rpn": "RPNHead concat_box_prediction_layers assign_targets_to_anchors filter_proposals "
                     "proposal_recall rpn_loss compute_loss RegionProposalNetwork",
    "detection.roi_heads": "postprocess_detections detection_candidates project_masks_on_boxes maskrcnn_loss "
                           "paste_masks_in_image paste_mask_in_image expand_boxes fastrcnn_loss assign_targets_to_proposals "
                           "select_training_samples maskrcnn_inference RoIHeads",
    "detection.faster_rcnn": "TwoMLPHead FastRCNNPredictor",
    "detection.mask_rcnn": "MaskRCNN MaskRCNNHeads MaskRCNNPredictor PLUGGABLE plug_in roi_align_from_one_box "
                           "from_torchvision build_course_mask_rcnn load_course_mask_rcnn",
    "detection.course_model": "CourseModelSpec COURSE_SPEC COURSE_CONFIG build_course_model load_course_model "
                              "checkpoint_classes "
                              "coco_weights_file coco_weights_available load_inference_model "
                              "get_instance_segmentation_model load_maskrcnn_resnet50_fpn describe_predictors",
    "detection.model_file": "read_model_file save_model_file",
    "data.errors": "CocoFormatError",
    "data.coco_meta": "categories_of read_categories image_root_of",
    "data.masks": "encode_mask mask_to_polygons mask_to_annotation",
    "data.shapes": "CLASSES NEW_CLASSES ALL_SHAPES render_sample make_shapes_dataset shapes_split shape_outline "
                   "shape_mask",
    "data.coco_build": "build_coco_dataset masks_to_coco images_and_masks_to_coco",
    "data.coco_validate": "validate_coco ValidationReport",
    "data.coco_dataset": "CocoInstanceDataset collate_fn get_transform load_coco",
    "data.nuclei": "load_nuclei locate_nuclei_files write_nuclei_folders nuclei_transform split_labels stretch_to_uint8 VAL_X0",
    "training.predict": "run_inference predict filter_detections binarize_masks describe_output",
    "training.engine": "fit train_one_epoch make_loader make_sgd warmup_cosine warmup_step data_wait",
    "training.checkpoint": "save_checkpoint load_checkpoint",
    "training.evaluation": "evaluate coco_eval to_coco_results format_report bootstrap_ap ap_difference",
    "training.tiling": "predict_tiled",
    "training.pr_curves": "pr_curves PRCurve",
    "training.error_analysis": "mask_iou image_errors error_analysis error_summary error_examples ERROR_KINDS "
                                "greedy_match match_detections",
    "course.progress": "show_progress",
    "course.parts": "your_parts",
    "course.quiz": "quiz answer explain",
    "course.checkers": "hint",
}
_HOME = {name: module for module, names in _EXPORTS.items() for name in names.split()}
__all__ = sorted(_HOME)


def __getattr__(name: str):
    """``course_lib.<name>``: import the module that defines ``name`` on first use (PEP 562).

    ``check_<exercise>`` names come from ``course_lib.course.checkers``.
    """
    if name in _HOME:
        module = _HOME[name]
    elif name.startswith("check_"):
        module = "course.checkers"
    else:
        raise AttributeError(f"module 'course_lib' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
