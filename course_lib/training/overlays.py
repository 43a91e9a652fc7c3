"""Detections and targets drawn on their image, as a uint8 picture (no matplotlib): what ``./course predict``
writes as overlay PNGs and what the notebooks show through ``course_lib.lessons.draw``. Taught in: 00_overview

Masks are painted as ``torchvision.utils.draw_segmentation_masks`` paints them, one mask at a time (``paint_masks``:
a 12-megapixel photo's overlay holds one mask, not all), boxes with ``draw_bounding_boxes``; labels are drawn with
Pillow, each at a corner of its box where it covers no other label (``place_labels``). Colours come from
``course_lib.utils.colours``: by class where there are several classes, by instance where there is one (instances
near each other never share a colour, ``instance_colours``), so that two nuclei merged into one mask can be seen.
Images are (3, H, W) tensors, uint8 or float in [0, 1].
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont
from torchvision.utils import draw_bounding_boxes

from course_lib.training.predict import binarize_masks, crop_to_content, filter_detections
from course_lib.utils.colours import INSTANCE_PALETTE, colour, rgb, text_colour_on

COLOUR_BY = ("class", "instance")


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


def _overlap(a: Sequence[float], b: Sequence[float]) -> float:
    """Overlap area of two rectangles (x1, y1, x2, y2)."""
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))


def place_labels(boxes: Sequence[Sequence[float]], sizes: Sequence[tuple[float, float]],
                 frame: Sequence[float]) -> list[tuple[float, float]]:
    """Where to put one label per box: the top-left corner of each, in the boxes' coordinates (y down).

    Label ``i`` is ``sizes[i]`` = (width, height) and goes to the first of eight spots at its box's corners
    (above the top-left corner, inside it, below the bottom-left one, inside it, then the same on the right)
    where it overlaps no label placed before and stays inside ``frame`` = (x1, y1, x2, y2); where every spot
    overlaps, to the one with the least overlap (plus area outside the frame). Labels are placed in order, so
    the first boxes (the best scores) get the best spots.
    """
    if len(boxes) != len(sizes):
        raise ValueError(f"place_labels: {len(boxes)} boxes but {len(sizes)} label sizes")
    fx1, fy1, fx2, fy2 = (float(v) for v in frame)
    placed: list[tuple[float, float, float, float]] = []
    corners = []
    for (x1, y1, x2, y2), (w, h) in zip(boxes, sizes, strict=True):
        x1, y1, x2, y2, w, h = float(x1), float(y1), float(x2), float(y2), float(w), float(h)
        spots = [(x1, y1 - h), (x1, y1), (x1, y2), (x1, y2 - h),
                 (x2 - w, y1 - h), (x2 - w, y1), (x2 - w, y2), (x2 - w, y2 - h)]
        best = None
        for x, y in spots:
            rect = (x, y, x + w, y + h)
            outside = w * h - _overlap(rect, (fx1, fy1, fx2, fy2))
            cost = sum(_overlap(rect, other) for other in placed) + outside
            if best is None or cost < best[0]:
                best = (cost, rect)
            if cost == 0:
                break
        placed.append(best[1])
        corners.append(best[1][:2])
    return corners


def _near_pairs(boxes: torch.Tensor, margin: float) -> list[tuple[int, int]]:
    """Pairs (i < j) of boxes that overlap or come within ``margin`` pixels of each other."""
    if len(boxes) < 2:
        return []
    lt = torch.maximum(boxes[:, None, :2], boxes[None, :, :2])
    rb = torch.minimum(boxes[:, None, 2:], boxes[None, :, 2:])
    near = ((rb - lt) >= -margin).all(-1).triu(diagonal=1)
    return [tuple(p) for p in near.nonzero().tolist()]


def touching(boxes: torch.Tensor, margin: float = 2.0) -> list[set[int]]:
    """For each of the boxes (N, 4) xyxy, the others that overlap it or come within ``margin`` pixels of it
    (instances whose masks touch have such boxes)."""
    boxes = torch.as_tensor(boxes).detach().cpu().float().reshape(-1, 4)
    neighbours: list[set[int]] = [set() for _ in range(len(boxes))]
    for i, j in _near_pairs(boxes, margin):
        neighbours[i].add(j)
        neighbours[j].add(i)
    return neighbours


def instance_colours(boxes: torch.Tensor, palette: Sequence[str] = INSTANCE_PALETTE) -> list[str]:
    """One colour per instance, so that instances near each other (``touching``) get different colours.

    Instance ``i`` takes the first colour of ``palette``, counting from colour ``i`` round the palette, that none
    of its earlier neighbours has (so that colours vary over the picture); with more such neighbours than
    colours, the colour fewest of them have.
    """
    if not palette:
        raise ValueError("instance_colours: the palette is empty")
    chosen: list[str] = []
    for i, near in enumerate(touching(boxes)):
        taken = [chosen[j] for j in near if j < i]
        order = [palette[(i + k) % len(palette)] for k in range(len(palette))]
        free = [c for c in order if c not in taken]
        chosen.append(free[0] if free else min(order, key=taken.count))
    return chosen


def _outline(mask: torch.Tensor, thickness: int) -> tuple[slice, slice, torch.Tensor] | None:
    """The inner edge of one (H, W) bool mask, ``thickness`` pixels wide, as ``(rows, cols, edge)``: ``edge`` is
    bool over ``image[rows, cols]``, the mask's bounding block grown by ``thickness`` (None for an empty mask).
    Only that block becomes floats, so a 12-megapixel photo's masks do not cost 48 MB each."""
    y0, x0, content = crop_to_content(mask)
    if not content.numel():
        return None
    h, w = mask.shape
    ys = slice(max(y0 - thickness, 0), min(y0 + content.shape[0] + thickness, h))
    xs = slice(max(x0 - thickness, 0), min(x0 + content.shape[1] + thickness, w))
    block = mask[ys, xs]
    outside = (~block)[None, None].float()
    return ys, xs, block & (F.max_pool2d(outside, 2 * thickness + 1, 1, thickness)[0, 0] > 0)


def paint_masks(image: torch.Tensor, masks, colours: list[str], alpha: float = 0.5) -> torch.Tensor:
    """``torchvision.utils.draw_segmentation_masks(image, masks, alpha, colours)`` with the masks taken one at a
    time from any iterable of (H, W) bool (an (N, H, W) tensor, or a sequence that makes each mask when asked):
    the same pixels, with one mask in memory besides the picture. Each mask paints its colour over the earlier
    ones, pixels under two or more turn black, then the painting is blended over ``image`` ((3, H, W) uint8)."""
    painted = image.clone()
    seen = torch.zeros(image.shape[-2:], dtype=torch.bool)
    overlap = torch.zeros_like(seen)
    count = 0
    for mask, name in zip(masks, colours, strict=False):  # a tensor's len() is checked by the caller
        mask = torch.as_tensor(mask).detach().cpu().bool()
        overlap |= seen & mask
        seen |= mask
        painted[:, mask] = torch.tensor(rgb(name), dtype=image.dtype)[:, None]
        count += 1
    if count == 0:
        return image
    painted[:, overlap] = 0
    return (image * (1 - alpha) + painted * alpha).to(image.dtype)


def draw_labels(canvas: torch.Tensor, boxes: torch.Tensor, texts: list[str], colours: list[str], font_size: int,
                filled: bool = True) -> torch.Tensor:
    """``texts`` on ``canvas`` (3, H, W) uint8, one per box (N, 4) xyxy, placed by ``place_labels``: black or white
    (whichever contrasts more) on a box of the label's colour (``#rrggbb``) when ``filled``, else in that colour.
    Empty texts are skipped. Returns a new picture."""
    if not len(texts) == len(boxes) == len(colours):
        raise ValueError(f"draw_labels: {len(boxes)} boxes, {len(texts)} texts and {len(colours)} colours")
    keep = [i for i, t in enumerate(texts) if t]
    if not keep:
        return canvas
    picture = Image.fromarray(canvas.permute(1, 2, 0).numpy())
    pen = ImageDraw.Draw(picture)
    font = ImageFont.truetype(str(_FONT), font_size) if _FONT else ImageFont.load_default(font_size)
    pad = max(1, font_size // 8)
    extents = [pen.textbbox((0, 0), texts[i], font=font) for i in keep]
    sizes = [(r - left + 2 * pad, b - t + 2 * pad) for left, t, r, b in extents]
    h, w = canvas.shape[-2:]
    spots = place_labels([boxes[i].tolist() for i in keep], sizes, (0, 0, w, h))
    for i, (left, top, _, _), (sw, sh), (x, y) in zip(keep, extents, sizes, spots, strict=True):
        x, y = round(x), round(y)
        if filled:
            pen.rectangle((x, y, x + sw - 1, y + sh - 1), fill=rgb(colours[i]))
        pen.text((x + pad - left, y + pad - top), texts[i], font=font,
                 fill=rgb(text_colour_on(colours[i]) if filled else colours[i]))
    return torch.from_numpy(np.asarray(picture).copy()).permute(2, 0, 1)


def draw_instances(image: torch.Tensor, boxes: torch.Tensor, labels: torch.Tensor, masks: torch.Tensor | None,
                   class_names: list[str], scores: torch.Tensor | None = None, alpha: float = 0.45,
                   width: int = 1, upscale: int | None = None, font_size: int | None = None,
                   fill_labels: bool = True, colour_by: str | None = None, outlines: bool = True,
                   show_class: bool | None = None) -> torch.Tensor:
    """Boxes (N, 4) xyxy, labels (N,), masks (N, H, W) bool or None -> a uint8 (3, sH, sW) picture.

    ``masks`` may also be a sequence of N (H, W) bool masks that makes each one when asked (``predict``'s
    ``Detections.mask_sequence()``): they are drawn one at a time, so a large photo's picture holds one mask,
    not N.

    Small images are enlarged ``upscale`` times first (by default enough to reach about 384 pixels, nearest
    neighbour), so that the labels, drawn in a fixed-size font, stay legible and overlap less. ``font_size``
    (pixels of the enlarged picture) defaults to ``5 * upscale + 1``: for crowded images, enlarge more
    (``upscale=6``) with a smaller font (``font_size=18``) and show the picture larger.

    ``colour_by``: ``"class"`` (the course's colour of each class) or ``"instance"`` (instances near each other
    in different colours); by default by instance where ``class_names`` has one class besides the background, else
    by class. ``outlines`` draws each mask's edge in its colour, so that touching masks stay apart. Each label is
    the class name (``class_names[label]``, or the number past the list's end) and, with ``scores``, the score;
    ``show_class`` (by default: unless there is one class) leaves the name out, so one class's detections carry
    their score only and its targets no label. ``fill_labels`` writes each label in black or white on a box of its
    colour, legible on any background; ``False`` writes it in its colour. Each label goes to a corner of its
    box where it covers no other label (``place_labels``).
    """
    canvas = to_uint8(image)
    boxes = torch.as_tensor(boxes).detach().cpu().float().reshape(-1, 4)
    labels = torch.as_tensor(labels).detach().cpu().reshape(-1)
    if len(labels) != len(boxes):
        raise ValueError(f"draw_instances: {len(boxes)} boxes but {len(labels)} labels")
    if masks is not None:
        if not isinstance(masks, Sequence) or isinstance(masks, torch.Tensor):
            masks = torch.as_tensor(masks).detach().cpu().bool()
        if len(masks) != len(boxes):
            raise ValueError(f"draw_instances: {len(boxes)} boxes but {len(masks)} masks")
    if scores is not None and len(scores) != len(boxes):
        raise ValueError(f"draw_instances: {len(boxes)} boxes but {len(scores)} scores")
    one_class = len(class_names) <= 2
    colour_by = colour_by or ("instance" if one_class else "class")
    if colour_by not in COLOUR_BY:
        raise ValueError(f"draw_instances: colour_by must be one of {COLOUR_BY}, not {colour_by!r}")
    if colour_by == "class":
        colours = [colour(lab) for lab in labels.tolist()]
    else:
        colours = instance_colours(boxes)
    s = max(1, 384 // max(canvas.shape[-2:])) if upscale is None else max(1, int(upscale))
    if s > 1:
        canvas = canvas.repeat_interleave(s, -2).repeat_interleave(s, -1)
        boxes = boxes * s
        if masks is not None and len(masks):
            masks = torch.stack([torch.as_tensor(m).cpu().bool() for m in masks])  # small images only
            masks = masks.repeat_interleave(s, -2).repeat_interleave(s, -1)
        width = width * s
    if masks is not None and len(masks):
        canvas = paint_masks(canvas, masks, colours, alpha)  # draw_segmentation_masks, one mask at a time
        if outlines:
            for mask, col in zip(masks, colours, strict=True):
                edge = _outline(torch.as_tensor(mask).cpu().bool(), max(1, (s + 1) // 2))
                if edge is not None:
                    ys, xs, on = edge
                    canvas[:, ys, xs][:, on] = torch.tensor(rgb(col), dtype=torch.uint8)[:, None]
    if not len(boxes):
        return canvas
    canvas = draw_bounding_boxes(canvas, boxes, colors=colours, width=width)
    show_class = not one_class if show_class is None else show_class
    names = [class_names[lab] if lab < len(class_names) else str(lab) for lab in labels.tolist()]
    if scores is not None:
        texts = [f"{n} {p:.2f}" if show_class else f"{p:.2f}"
                 for n, p in zip(names, torch.as_tensor(scores).tolist(), strict=True)]
    else:
        texts = names if show_class else [""] * len(names)
    return draw_labels(canvas, boxes, texts, colours, font_size or max(10, 5 * s + 1), fill_labels)


def draw_detections(image: torch.Tensor, output: dict, class_names: list[str], score_threshold: float = 0.5,
                    mask_threshold: float = 0.5, **kwargs) -> torch.Tensor:
    """A model's output dict drawn on its image (detections below ``score_threshold`` left out).
    ``kwargs`` go to ``draw_instances`` (``upscale``, ``font_size``, ``colour_by``, ...)."""
    kept = filter_detections(output, score_threshold)
    masks = binarize_masks(kept["masks"], mask_threshold) if "masks" in kept else None
    return draw_instances(image, kept["boxes"], kept["labels"], masks, class_names, kept["scores"], **kwargs)


def draw_target(image: torch.Tensor, target: dict, class_names: list[str], **kwargs) -> torch.Tensor:
    """A ground-truth target dict (boxes, labels, masks) drawn on its image; ``kwargs`` as in ``draw_detections``."""
    return draw_instances(image, torch.as_tensor(target["boxes"]), target["labels"], target.get("masks"),
                          class_names, **kwargs)
