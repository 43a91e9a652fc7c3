"""Detections and targets drawn on their image, as a uint8 picture (no matplotlib): what ``./course predict``
writes as overlay PNGs and what the notebooks show through ``course_lib.lessons.draw``. Taught in: 00_overview

Drawing uses ``torchvision.utils.draw_bounding_boxes`` / ``draw_segmentation_masks`` and the course's palette
(``course_lib.utils.colours``). Images are (3, H, W) tensors, uint8 or float in [0, 1].
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from torchvision.utils import draw_bounding_boxes, draw_segmentation_masks

from course_lib.training.predict import binarize_masks, filter_detections
from course_lib.utils.colours import colour


def _label_font() -> Path | None:
    """matplotlib's DejaVu Sans, a scalable font for labels, found without importing matplotlib."""
    spec = importlib.util.find_spec("matplotlib")
    if spec is None or not spec.submodule_search_locations:
        return None
    font = Path(list(spec.submodule_search_locations)[0]) / "mpl-data" / "fonts" / "ttf" / "DejaVuSans.ttf"
    return font if font.exists() else None


_FONT = _label_font()


def to_uint8(image: torch.Tensor) -> torch.Tensor:
    """(3, H, W) float in [0, 1] or uint8 -> uint8 on the CPU."""
    image = image.detach().cpu()
    return image if image.dtype == torch.uint8 else (image.clamp(0, 1) * 255).round().to(torch.uint8)


def draw_instances(image: torch.Tensor, boxes: torch.Tensor, labels: torch.Tensor, masks: torch.Tensor | None,
                   class_names: list[str], scores: torch.Tensor | None = None, alpha: float = 0.45,
                   width: int = 1, upscale: int | None = None, font_size: int | None = None,
                   fill_labels: bool = False) -> torch.Tensor:
    """Boxes (N, 4) xyxy, labels (N,), masks (N, H, W) bool or None -> a uint8 (3, sH, sW) picture.

    Small images are enlarged ``upscale`` times first (by default enough to reach about 384 pixels, nearest
    neighbour), so that the labels, drawn in a fixed-size font, stay legible and overlap less. ``font_size``
    (pixels of the enlarged picture) defaults to ``5 * upscale + 1``: for crowded images, enlarge more
    (``upscale=6``) with a smaller font (``font_size=18``) and show the picture larger. ``fill_labels``
    writes each label in white on a box of its colour, legible on any background. Each label is the class
    name (``class_names[label]``, or the number past the list's end) and, with ``scores``, the score.
    """
    canvas = to_uint8(image)
    s = max(1, 384 // max(canvas.shape[-2:])) if upscale is None else max(1, int(upscale))
    if s > 1:
        canvas = canvas.repeat_interleave(s, -2).repeat_interleave(s, -1)
        boxes = torch.as_tensor(boxes).float() * s
        if masks is not None and len(masks):
            masks = masks.bool().repeat_interleave(s, -2).repeat_interleave(s, -1)
        width = width * s
    colours = [colour(lab) for lab in labels.tolist()]
    if masks is not None and len(masks):
        canvas = draw_segmentation_masks(canvas, masks.bool().cpu(), alpha=alpha, colors=colours)
    names = [class_names[lab] if lab < len(class_names) else str(lab) for lab in labels.tolist()]
    if scores is not None:
        names = [f"{n} {s:.2f}" for n, s in zip(names, scores.tolist(), strict=True)]
    if len(boxes):
        canvas = draw_bounding_boxes(canvas, boxes.cpu(), labels=names, colors=colours, width=width,
                                     font=str(_FONT) if _FONT else None,
                                     font_size=font_size or max(10, 5 * s + 1),
                                     **(dict(fill_labels=True, label_colors="white") if fill_labels else {}))
    return canvas


def draw_detections(image: torch.Tensor, output: dict, class_names: list[str], score_threshold: float = 0.5,
                    mask_threshold: float = 0.5, **kwargs) -> torch.Tensor:
    """A model's output dict drawn on its image (detections below ``score_threshold`` left out).
    ``kwargs`` go to ``draw_instances`` (``upscale``, ``font_size``, ...)."""
    kept = filter_detections(output, score_threshold)
    masks = binarize_masks(kept["masks"], mask_threshold) if "masks" in kept else None
    return draw_instances(image, kept["boxes"], kept["labels"], masks, class_names, kept["scores"], **kwargs)


def draw_target(image: torch.Tensor, target: dict, class_names: list[str], **kwargs) -> torch.Tensor:
    """A ground-truth target dict (boxes, labels, masks) drawn on its image; ``kwargs`` as in ``draw_detections``."""
    return draw_instances(image, torch.as_tensor(target["boxes"]), target["labels"], target.get("masks"),
                          class_names, **kwargs)
