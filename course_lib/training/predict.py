"""Running a model: on a list of images (``run_inference``) or a whole dataset (``predict``), and reading
its output dict (``filter_detections``, ``binarize_masks``, ``describe_output``). Taught in: 00_overview

Memory on large photos. torchvision's Mask R-CNN pastes every detection's 28 x 28 mask into a float
(H, W) image before anyone can filter by score: on a 12-megapixel photo that is 48 MB per detection, up
to ``detections_per_img`` (100) of them, twice over while they are stacked. ``detect`` runs the same
stages (``forward_from_stages``) but stops before that paste: the score threshold is applied first, in
the RoI heads, and each mask is pasted as a bool crop of its box (``Detections``), which a caller turns
into full-size masks one at a time (``Detections.mask``) or all at once (``Detections.to_output``).
The pixels are the ones torchvision's ``paste_masks_in_image`` gives, thresholded at 0.5.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torchvision.models.detection.roi_heads import expand_boxes, expand_masks
from torchvision.models.detection.transform import resize_boxes

from course_lib.data.coco_dataset import collate_fn
from course_lib.detection.mask_rcnn import forward_from_stages
from course_lib.detection.roi_heads import paste_mask_in_image
from course_lib.utils.ui import progress_bar

MASK_THRESHOLD = 0.5  # a pixel belongs to the instance where its mask probability is above this


@torch.no_grad()
def predict(model, dataset, device, batch_size: int = 8, progress: bool = True) -> dict[int, dict]:
    """Run ``model`` over ``dataset`` (images as float [0, 1]); return ``{image_id: output on CPU}``.

    Each output holds every detection the model keeps (its own score threshold, e.g. 0.05) with ``masks``
    (N, 1, H, W) **bool** (probability > 0.5): what evaluation and drawing read, a quarter of the float
    masks' memory, and pasted without the float (N, 1, H, W) stack (``detect``).
    """
    model.eval()
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate_fn)
    outputs = {}
    for images, targets in progress_bar(loader, desc="predict", enabled=progress):
        for t, found in zip(targets, detect(model, images, device), strict=True):
            outputs[int(t["image_id"])] = found.to_output()
    return outputs


@torch.no_grad()
def run_inference(model, images: list[torch.Tensor], device: torch.device | str) -> list[dict]:
    """Outputs of ``model`` (eval mode) for ``images`` (each (3, H, W) float in [0, 1]), moved to the CPU."""
    model.eval()
    outputs = model([img.to(device) for img in images])
    return [{k: v.cpu() for k, v in out.items()} for out in outputs]


def filter_detections(output: dict, score_threshold: float) -> dict:
    """Keep the detections whose score is at least ``score_threshold``; every key is filtered alike."""
    keep = output["scores"] >= score_threshold
    return {k: v[keep] for k, v in output.items()}


def binarize_masks(masks: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """(N, 1, H, W) mask probabilities -> (N, H, W) bool masks (pixel on where probability > threshold).
    Bool masks (``predict``'s) are returned as they are: ``bool_masks > 0.5`` would compute in float, four
    times their size (4.8 GB for 100 masks of a 12-megapixel photo)."""
    return masks[:, 0] if masks.dtype == torch.bool else masks[:, 0] > threshold


def describe_output(output: dict) -> str:
    """One line per key: its shape and dtype (what 00_overview prints)."""
    return "\n".join(f"{k:7s} {tuple(v.shape)!s:18s} {str(v.dtype).replace('torch.', '')}"
                     for k, v in output.items())


# ------------------------------------------------------------------------------ memory-light detection

@dataclass
class Detections:
    """One image's detections, each mask kept as the bool crop of the region it covers.

    ``boxes`` (N, 4) float xyxy in the image's pixels, ``labels`` (N,) int64, ``scores`` (N,) float, all on
    the CPU; ``size`` the image's (H, W); ``crops[i] = (y0, x0, (h, w) bool)``: mask i is that array placed
    at row y0, column x0 of an empty (H, W) mask (``None``: the model returns no masks). Full-size masks
    cost H * W bytes each and are made only when asked for: ``mask(i)``, ``masks()`` and ``mask_sequence()`` one
    at a time, ``to_output()`` all together.
    """

    boxes: torch.Tensor
    labels: torch.Tensor
    scores: torch.Tensor
    size: tuple[int, int]
    crops: list[tuple[int, int, torch.Tensor]] | None = None

    def __len__(self) -> int:
        return len(self.scores)

    def select(self, keep: torch.Tensor) -> Detections:
        """The detections ``keep`` picks (a bool mask or indices), in its order."""
        keep = torch.as_tensor(keep)
        idx = keep.nonzero()[:, 0] if keep.dtype == torch.bool else keep.long().reshape(-1)
        crops = None if self.crops is None else [self.crops[i] for i in idx.tolist()]
        return Detections(self.boxes[idx], self.labels[idx], self.scores[idx], self.size, crops)

    def above(self, score_threshold: float) -> Detections:
        """The detections with ``score >= score_threshold`` (``filter_detections``' rule)."""
        return self.select(self.scores >= score_threshold)

    def mask(self, i: int) -> torch.Tensor:
        """Detection ``i``'s (H, W) bool mask."""
        if self.crops is None:
            raise ValueError("these detections have no masks (the model returns none)")
        return paste_crop(torch.zeros(self.size, dtype=torch.bool), *self.crops[i])

    def masks(self) -> Iterator[torch.Tensor]:
        """The (H, W) bool masks one at a time, in detection order."""
        for i in range(len(self)):
            yield self.mask(i)

    def mask_sequence(self) -> MaskSequence:
        """The masks as a sequence that makes each one when asked (``overlays.draw_instances`` takes it)."""
        return MaskSequence(self)

    def to_output(self) -> dict:
        """A torchvision-style output dict: ``boxes``, ``labels``, ``scores`` and, with masks, ``masks``
        (N, 1, H, W) bool (probability > 0.5; ``binarize_masks`` and COCO results read it as they read
        the float probabilities)."""
        out = {"boxes": self.boxes, "labels": self.labels, "scores": self.scores}
        if self.crops is not None:
            masks = torch.zeros((len(self), 1, *self.size), dtype=torch.bool)
            for i, (y0, x0, crop) in enumerate(self.crops):
                paste_crop(masks[i, 0], y0, x0, crop)
            out["masks"] = masks
        return out

    @classmethod
    def from_output(cls, output: dict, size: tuple[int, int], mask_threshold: float = MASK_THRESHOLD) -> Detections:
        """From a torchvision-style output on an image of ``size`` (H, W): masks (N, 1, H, W) probabilities
        (or bool) cut to the rows and columns where they are on."""
        crops = None
        if "masks" in output:
            crops = [crop_to_content(binarize_masks(m[None], mask_threshold)[0]) for m in output["masks"].cpu()]
        return cls(output["boxes"].detach().float().cpu(), output["labels"].cpu(), output["scores"].cpu(),
                   (int(size[0]), int(size[1])), crops)


class MaskSequence(Sequence):
    """``Detections``' masks as a read-only sequence: ``len()``, and item ``i`` is ``detections.mask(i)``, an (H, W)
    bool tensor made when asked (so drawing N masks holds one at a time)."""

    def __init__(self, detections: Detections):
        self.detections = detections

    def __len__(self) -> int:
        return len(self.detections)

    def __getitem__(self, i: int) -> torch.Tensor:
        if not -len(self) <= i < len(self):
            raise IndexError(f"mask {i} of {len(self)}")
        return self.detections.mask(i % len(self))


def paste_crop(target: torch.Tensor, y0: int, x0: int, crop: torch.Tensor, origin: tuple[int, int] = (0, 0)
               ) -> torch.Tensor:
    """Write ``crop`` (h, w), whose top-left pixel is row ``y0``, column ``x0`` of the image, into ``target``, a
    window of the image whose top-left pixel is ``origin``; the part outside the window is left out. Returns
    ``target``."""
    oy, ox = origin
    iy0, ix0 = max(y0, oy), max(x0, ox)
    iy1, ix1 = min(y0 + crop.shape[0], oy + target.shape[0]), min(x0 + crop.shape[1], ox + target.shape[1])
    if iy1 > iy0 and ix1 > ix0:
        target[iy0 - oy:iy1 - oy, ix0 - ox:ix1 - ox] = crop[iy0 - y0:iy1 - y0, ix0 - x0:ix1 - x0]
    return target


def crop_to_content(mask: torch.Tensor) -> tuple[int, int, torch.Tensor]:
    """An (H, W) bool mask -> ``(y0, x0, crop)``, the smallest block holding all its on pixels ((0, 0) when empty)."""
    rows, cols = mask.any(1).nonzero()[:, 0], mask.any(0).nonzero()[:, 0]
    if len(rows) == 0:
        return 0, 0, mask[:0, :0].clone()
    y0, y1, x0, x1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    return y0, x0, mask[y0:y1, x0:x1].clone()


def paste_mask_crops(masks: torch.Tensor, boxes: torch.Tensor, size: tuple[int, int],
                     threshold: float = MASK_THRESHOLD, padding: int = 1) -> list[tuple[int, int, torch.Tensor]]:
    """(N, 1, M, M) mask probabilities in their (N, 4) boxes -> ``Detections`` crops (bool, on the CPU).

    torchvision's ``paste_masks_in_image`` step for step (pad the mask by ``padding``, grow the box alike,
    truncate it to whole pixels, resize bilinearly into it), keeping only the part inside the image
    instead of writing it into a float (H, W) image of zeros: crop > ``threshold`` is exactly
    ``paste_masks_in_image(...) > threshold`` there, and everything outside the crop is 0.
    """
    im_h, im_w = size
    padded, scale = expand_masks(masks, padding=padding)
    crops = []
    for m, (x1, y1, x2, y2) in zip(padded, expand_boxes(boxes, scale).to(torch.int64).tolist(), strict=True):
        w, h = max(x2 - x1 + 1, 1), max(y2 - y1 + 1, 1)
        ix0, ix1, iy0, iy1 = max(x1, 0), min(x2 + 1, im_w), max(y1, 0), min(y2 + 1, im_h)
        if ix1 <= ix0 or iy1 <= iy0:  # the box lies outside the image
            crops.append((0, 0, torch.zeros((0, 0), dtype=torch.bool)))
            continue
        resized = F.interpolate(m[None], size=(h, w), mode="bilinear", align_corners=False)[0, 0]
        crops.append((iy0, ix0, (resized[iy0 - y1:iy1 - y1, ix0 - x1:ix1 - x1] > threshold).cpu()))
    return crops


def model_score_threshold(model) -> float:
    """The lowest score the model itself keeps (its RoI heads' ``score_thresh``; 0.0 when it has none)."""
    heads = getattr(model, "roi_heads", None)
    return float(getattr(heads, "score_thresh", 0.0))


@contextlib.contextmanager
def score_threshold_applied(model, score_threshold: float | None):
    """Within the block the model's RoI heads drop detections below ``score_threshold`` themselves, before
    NMS, the mask head and pasting (their threshold is never lowered); restored afterwards.

    The RoI heads keep ``score > score_thresh``; setting it to the float32 number just below the threshold
    keeps ``score >= threshold``, as ``filter_detections`` does. Dropping low scores before NMS changes no
    kept detection: NMS only lets a higher score suppress a lower one.
    """
    heads = getattr(model, "roi_heads", None)
    if score_threshold is None or not hasattr(heads, "score_thresh"):
        yield
        return
    old = heads.score_thresh
    below = torch.nextafter(torch.tensor(score_threshold, dtype=torch.float32), torch.tensor(float("-inf")))
    heads.score_thresh = max(old, float(below))
    try:
        yield
    finally:
        heads.score_thresh = old


def pastes_like_torchvision(model) -> bool:
    """Whether ``detect`` may run ``model`` by its stages: a Mask R-CNN with torchvision's attribute names
    whose mask pasting is torchvision's (not a learner's ``paste_mask`` plugged into the course's model)."""
    return (all(hasattr(model, name) for name in ("transform", "backbone", "rpn", "roi_heads"))
            and getattr(model, "paste_mask", paste_mask_in_image) is paste_mask_in_image)


def _boxes_to_input_sizes(detections: list[dict], resized_sizes, original_sizes) -> list[dict]:
    """``transform.postprocess`` without the paste: boxes scaled back to the input images, masks left 28 x 28."""
    for det, resized, original in zip(detections, resized_sizes, original_sizes, strict=True):
        det["boxes"] = resize_boxes(det["boxes"], resized, original)
    return detections


@torch.no_grad()
def detect(model, images: list[torch.Tensor], device: torch.device | str,
           score_threshold: float | None = None) -> list[Detections]:
    """``model``'s detections on ``images`` (each (3, H, W) float in [0, 1]) with ``score >= score_threshold``
    (default: all the model keeps), each mask pasted as a bool crop (``Detections``).

    For a Mask R-CNN (``pastes_like_torchvision``) the RoI heads apply the threshold and masks are pasted
    by ``paste_mask_crops``: the same detections and pixels as ``model(images)`` followed by
    ``filter_detections`` and ``binarize_masks``, without the full-size float masks. Any other model
    returning torchvision's output dicts is run as it is and its output cut into crops.
    """
    model.eval()
    sizes = [(int(img.shape[-2]), int(img.shape[-1])) for img in images]
    batch = [img.to(device) for img in images]
    if not pastes_like_torchvision(model):
        outputs = model(batch)
        if score_threshold is not None:
            outputs = [filter_detections(out, score_threshold) for out in outputs]
        return [Detections.from_output(out, size) for out, size in zip(outputs, sizes, strict=True)]
    with score_threshold_applied(model, score_threshold):
        raw = forward_from_stages(model, batch, postprocess=_boxes_to_input_sizes)
    found = []
    for det, size in zip(raw, sizes, strict=True):
        if score_threshold is not None:  # a model whose own threshold is higher has dropped these already
            det = filter_detections(det, score_threshold)
        crops = paste_mask_crops(det["masks"], det["boxes"], size) if "masks" in det else None
        found.append(Detections(det["boxes"].float().cpu(), det["labels"].cpu(), det["scores"].cpu(), size, crops))
    return found
