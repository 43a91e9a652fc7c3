"""A deterministic synthetic shapes data set. Taught in: 00_overview (used), 05_coco_dataset (built).

Every image is a textured background with 1-5 filled shapes on it. Image ``i`` of a split depends
only on ``(seed, i)``, so the same call writes the same bytes on every machine.

On disk (``root`` is any folder)::

    root/images/00000.png        RGB image, H x W
    root/masks/00000.png         instance-id map, uint8: 0 = background, k = instance k
    root/masks/00000.json        sidecar: {"1": "circle", "2": "triangle", ...}
    root/annotations.json        COCO instances file (RLE masks made with pycocotools)

The instance-id PNG plus sidecar is the layout most people's own data has (see 05_coco_dataset);
the COCO file is what training and evaluation read.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

# The course checkpoint is trained on these; category ids are 1, 2, 3 (0 is background).
CLASSES = ("circle", "square", "triangle")


# Shapes the course checkpoint never saw, for fine-tuning in 06_fine_tuning.
NEW_CLASSES = ("star", "hexagon", "cross")


ALL_SHAPES = CLASSES + NEW_CLASSES


MIN_RADIUS, MAX_RADIUS = 10, 30  # circumradius in pixels at 128 x 128


MAX_OCCLUSION = 0.25  # a shape may lose at most this fraction of its area to later shapes


def _regular_polygon(n: int, cx: float, cy: float, r: float, angle: float) -> list[tuple[float, float]]:
    return [(cx + r * math.cos(angle + 2 * math.pi * k / n), cy + r * math.sin(angle + 2 * math.pi * k / n))
            for k in range(n)]


def shape_outline(name: str, cx: float, cy: float, r: float, angle: float) -> list[tuple[float, float]] | None:
    """Polygon vertices of a shape (``None`` for a circle, which is drawn as an ellipse)."""
    if name == "circle":
        return None
    if name == "square":
        return _regular_polygon(4, cx, cy, r, angle)
    if name == "triangle":
        return _regular_polygon(3, cx, cy, r, angle)
    if name == "hexagon":
        return _regular_polygon(6, cx, cy, r, angle)
    if name == "star":
        outer = _regular_polygon(5, cx, cy, r, angle)
        inner = _regular_polygon(5, cx, cy, 0.45 * r, angle + math.pi / 5)
        return [p for pair in zip(outer, inner, strict=True) for p in pair]
    if name == "cross":
        a, b = r, 0.35 * r  # arm length and half-width
        pts = [(b, a), (b, b), (a, b), (a, -b), (b, -b), (b, -a), (-b, -a), (-b, -b), (-a, -b), (-a, b), (-b, b), (-b, a)]
        c, s = math.cos(angle), math.sin(angle)
        return [(cx + x * c - y * s, cy + x * s + y * c) for x, y in pts]
    raise ValueError(f"unknown shape {name!r}; known shapes: {', '.join(ALL_SHAPES)}")


def shape_mask(name: str, size: tuple[int, int], cx: float, cy: float, r: float, angle: float) -> np.ndarray:
    """Binary mask (H, W) bool of one shape."""
    h, w = size
    canvas = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(canvas)
    outline = shape_outline(name, cx, cy, r, angle)
    if outline is None:
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=1)
    else:
        draw.polygon(outline, fill=1)
    return np.asarray(canvas, dtype=bool)


def textured_background(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """A (H, W, 3) float background: a colour gradient, faint stripes and pixel noise."""
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    c0, c1 = rng.uniform(40, 200, size=(2, 3))
    t = (np.cos(rng.uniform(0, 2 * np.pi)) * xx + np.sin(rng.uniform(0, 2 * np.pi)) * yy) / max(h, w)
    img = c0 + (c1 - c0) * ((t - t.min()) / (np.ptp(t) + 1e-6))[..., None]
    freq, phase, theta = rng.uniform(0.1, 0.5), rng.uniform(0, 2 * np.pi), rng.uniform(0, np.pi)
    stripes = np.sin(freq * (np.cos(theta) * xx + np.sin(theta) * yy) + phase)
    img += rng.uniform(5, 20) * stripes[..., None]
    img += rng.normal(0, rng.uniform(3, 10), size=(h, w, 3))
    return img


@dataclass
class ShapesSample:
    image: np.ndarray  # (H, W, 3) uint8
    instance_map: np.ndarray  # (H, W) uint8, 0 = background, k = instance k
    labels: list[str]  # class name of instance k at index k - 1

    @property
    def masks(self) -> np.ndarray:
        """(N, H, W) bool, one binary mask per instance."""
        ids = np.arange(1, len(self.labels) + 1, dtype=np.uint8)
        return self.instance_map[None] == ids[:, None, None]


def render_sample(seed: int, index: int, size: tuple[int, int] = (128, 128),
                  classes: tuple[str, ...] = CLASSES, max_objects: int = 5) -> ShapesSample:
    """Render image ``index`` of the split seeded by ``seed``. Pure function of its arguments."""
    rng = np.random.default_rng([seed, index])
    h, w = size
    scale = min(h, w) / 128
    img = textured_background(rng, size)
    inst = np.zeros(size, dtype=np.uint8)
    full_areas: list[int] = []
    labels: list[str] = []
    for _ in range(int(rng.integers(1, max_objects + 1))):
        for _attempt in range(30):
            name = classes[int(rng.integers(len(classes)))]
            r = rng.uniform(MIN_RADIUS, MAX_RADIUS) * scale
            cx, cy = rng.uniform(r, w - r), rng.uniform(r, h - r)
            m = shape_mask(name, size, cx, cy, r, rng.uniform(0, 2 * math.pi))
            # Drawing on top hides part of earlier shapes; keep every shape mostly visible.
            ok = all((inst == k + 1).sum() - ((inst == k + 1) & m).sum() >= (1 - MAX_OCCLUSION) * full_areas[k]
                     for k in range(len(labels)))
            if ok and m.sum() > 0:
                break
        else:
            continue
        colour = rng.uniform(0, 255, size=3)
        # Contrast: push the shape's colour away from the background under it.
        under = img[m].mean(axis=0)
        if np.abs(colour - under).sum() < 150:
            colour = np.where(under > 127, under - 110, under + 110)
        img[m] = colour + rng.normal(0, 4, size=(int(m.sum()), 3))
        labels.append(name)
        full_areas.append(int(m.sum()))
        inst[m] = len(labels)
    return ShapesSample(np.clip(img, 0, 255).astype(np.uint8), inst, labels)


def make_shapes_dataset(root: str | Path, num_images: int, seed: int, size: tuple[int, int] = (128, 128),
                        classes: tuple[str, ...] = CLASSES, max_objects: int = 5,
                        progress: bool = True) -> Path:
    """Write ``num_images`` shapes images, instance-id masks, sidecars and a COCO file under ``root``.

    Returns the path of ``root/annotations.json``. Category ids follow the order of ``classes``
    (1, 2, ...). Re-running with the same arguments rewrites identical files.
    """
    from course_lib.data.coco_build import images_and_masks_to_coco
    from course_lib.utils.files import write_json_atomic
    from course_lib.utils.ui import progress_bar

    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    categories = [{"id": i + 1, "name": name, "supercategory": "shape"} for i, name in enumerate(classes)]
    cat_id = {c["name"]: c["id"] for c in categories}
    records = []
    for i in progress_bar(range(num_images), desc=f"shapes {root.name}", enabled=progress):
        s = render_sample(seed, i, size, classes, max_objects)
        name = f"{i:05d}.png"
        Image.fromarray(s.image).save(root / "images" / name)
        Image.fromarray(s.instance_map).save(root / "masks" / name)
        sidecar = {str(k + 1): label for k, label in enumerate(s.labels)}
        (root / "masks" / f"{i:05d}.json").write_text(json.dumps(sidecar))
        records.append((name, s.masks, [cat_id[label] for label in s.labels]))
    coco = images_and_masks_to_coco(records, categories, size,
                                    info={"description": "course shapes", "seed": seed, "classes": list(classes)})
    ann_file = root / "annotations.json"
    write_json_atomic(coco, ann_file)
    return ann_file


# name -> (number of images, seed, classes): the splits the course trains, validates and fine-tunes on.
STANDARD_SPLITS = {"train": (2000, 0, CLASSES), "val": (200, 1, CLASSES),
                   "new_train": (300, 2, NEW_CLASSES), "new_val": (100, 3, NEW_CLASSES)}


def shapes_split(split: str, num_images: int | None = None, seed: int | None = None,
                 classes: tuple[str, ...] = CLASSES, root: str | Path | None = None,
                 progress: bool = True) -> Path:
    """The annotation file of a named split, generated once under ``data/generated/`` and reused.

    Standard splits: ``train`` (2000 images, seed 0), ``val`` (200, seed 1), ``new_train`` and
    ``new_val`` (new classes for fine-tuning). A split is regenerated when its parameters change.
    """
    from course_lib.utils.paths import GENERATED_DIR

    if split in STANDARD_SPLITS:
        n0, s0, c0 = STANDARD_SPLITS[split]
        num_images = n0 if num_images is None else num_images
        seed = s0 if seed is None else seed
        classes = c0 if classes == CLASSES else classes  # the default classes mean "the split's own"
    if num_images is None or seed is None:
        raise ValueError(f"split {split!r} is not standard: give num_images and seed")
    root = Path(root) if root is not None else GENERATED_DIR / f"shapes_{split}"
    params = {"num_images": num_images, "seed": seed, "classes": list(classes), "version": 1}
    stamp = root / "params.json"
    ann_file = root / "annotations.json"
    if ann_file.exists() and stamp.exists() and json.loads(stamp.read_text()) == params:
        return ann_file
    make_shapes_dataset(root, num_images, seed, classes=tuple(classes), progress=progress)
    stamp.write_text(json.dumps(params))
    return ann_file


def shapes_sample(seed: int, index: int):
    """Image ``index`` of the split seeded by ``seed`` as a detection model's input: a (3, H, W) float32 image in
    [0, 1] and its target (``boxes`` (N, 4) xyxy float, ``labels`` (N,) int64 with 1 = the first class, ``masks``
    (N, H, W) uint8), straight from ``render_sample`` (no files)."""
    import torch
    from torchvision.ops import masks_to_boxes

    s = render_sample(seed, index)
    masks = torch.from_numpy(s.masks).to(torch.uint8)
    target = {"boxes": masks_to_boxes(masks).float(), "masks": masks,
              "labels": torch.tensor([CLASSES.index(n) + 1 for n in s.labels], dtype=torch.int64)}
    return torch.from_numpy(s.image).permute(2, 0, 1).float() / 255, target
