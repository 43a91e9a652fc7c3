"""Model files for the commands (``evaluate``, ``predict``, ``export``, ``finetune``, ``train``): loading one
as a model with a one-line error the user can act on, and what the two training commands share (metric
rounding). Taught in: 06_fine_tuning

The format and its one reader live in ``course_lib.detection.model_file`` (``read_model_file``,
``save_model_file``: ``{"model": state_dict, "config": {...}}``, ``weights_only=True``); the course model's
spec in ``course_lib.detection.course_model`` (``CourseModelSpec``, ``model_from_file``). The course model's
input size (``image_size``: images are resized to it, default 128) is part of that spec.
"""

from __future__ import annotations

from pathlib import Path

import torch

from course_lib.detection.course_model import model_from_file
from course_lib.detection.model_file import ModelFileError, read_model_file
from course_lib.utils.errors import CommandError


def load_model_file(path: str | Path, device: torch.device | str = "cpu"):
    """``(model in eval mode, class names, config)`` from a model file (read once); a missing or foreign
    file is a ``CommandError``."""
    try:
        model_file = read_model_file(path)
    except (FileNotFoundError, ModelFileError) as e:
        raise CommandError(str(e)) from None
    return model_from_file(model_file).to(device), model_file.classes, model_file.config


def set_image_size(model, size: int) -> None:
    """Resize every image to ``size`` pixels (shorter and longer side) before the backbone, as the course
    model does (``GeneralizedRCNNTransform``'s public ``min_size``/``max_size``), on a model already built."""
    model.transform.min_size, model.transform.max_size = (int(size),), int(size)


def rounded_metrics(report: dict, digits: int = 4) -> dict:
    """``evaluate``'s bbox and segm figures rounded as metrics files store them."""
    return {t: {k: round(v, digits) for k, v in report[t].items()} for t in ("bbox", "segm") if t in report}
