"""The one model-file format and its one reader, plus what the two training commands share (metric
rounding). Taught in: 06_fine_tuning

A model file is ``{"model": state_dict, "config": {...}}`` saved with ``torch.save`` (atomically) and read
with ``weights_only=True``. ``config`` holds ``classes`` (index = label, ``[0]`` background) and either the
course model's build config (``data/course_maskrcnn.pt``, written by ``./course train`` in float16; no
``arch`` key or ``arch="course"``) or ``arch="maskrcnn_resnet50_fpn"`` with ``num_classes``. The course
model's input size (``image_size``: images are resized to it, default 128) is part of that config.
"""

from __future__ import annotations

from pathlib import Path

import torch

from course_lib.detection.course_model import COURSE_CONFIG, build_course_model
from course_lib.utils.errors import CommandError
from course_lib.utils.files import write_atomic


def save_model_file(model, path: str | Path, config: dict, half: bool = False) -> Path:
    """Write a model file atomically; ``half`` stores floating weights as float16 (half the size)."""
    state = {k: (v.half() if half and v.is_floating_point() else v) for k, v in model.state_dict().items()}
    return write_atomic(path, lambda f: torch.save({"model": state, "config": config}, f))


def load_model_file(path: str | Path, device: torch.device | str = "cpu"):
    """``(model in eval mode, class names, config)`` from a model file (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise CommandError(f"{path}: model file not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        config = ckpt["config"]
        state = ckpt["model"]
    except Exception as e:  # noqa: BLE001 - a file that is not ours
        raise CommandError(f"{path}: not a course model file ({type(e).__name__}: {e})") from None
    if config.get("arch") == "maskrcnn_resnet50_fpn":
        from torchvision.models.detection import maskrcnn_resnet50_fpn

        model = maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=config["num_classes"])
        if config.get("image_size"):
            set_image_size(model, config["image_size"])
    else:
        model = build_course_model({k: v for k, v in config.items() if k in COURSE_CONFIG})
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    return model.to(device).eval(), list(config["classes"]), config


def set_image_size(model, size: int) -> None:
    """Resize every image to ``size`` pixels (shorter and longer side) before the backbone, as the course
    model does (``GeneralizedRCNNTransform``'s ``min_size``/``max_size``)."""
    model.transform.min_size, model.transform.max_size = (int(size),), int(size)


def rounded_metrics(report: dict, digits: int = 4) -> dict:
    """``evaluate``'s bbox and segm figures rounded as metrics files store them."""
    return {t: {k: round(v, digits) for k, v in report[t].items()} for t in ("bbox", "segm") if t in report}
