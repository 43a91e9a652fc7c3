"""Running a model: on a list of images (``run_inference``) or a whole dataset (``predict``), and reading
its output dict (``filter_detections``, ``binarize_masks``, ``describe_output``). Taught in: 00_overview
"""

from __future__ import annotations

import torch

from course_lib.data.coco_dataset import collate_fn
from course_lib.utils.ui import progress_bar


@torch.no_grad()
def predict(model, dataset, device, batch_size: int = 8, progress: bool = True) -> dict[int, dict]:
    """Run ``model`` over ``dataset`` (images as float [0, 1]); return ``{image_id: output on CPU}``."""
    model.eval()
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate_fn)
    outputs = {}
    for images, targets in progress_bar(loader, desc="predict", enabled=progress):
        for t, out in zip(targets, run_inference(model, images, device), strict=True):
            outputs[int(t["image_id"])] = out
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
    """(N, 1, H, W) mask probabilities -> (N, H, W) bool masks (pixel on where probability > threshold)."""
    return masks[:, 0] > threshold


def describe_output(output: dict) -> str:
    """One line per key: its shape and dtype (what 00_overview prints)."""
    return "\n".join(f"{k:7s} {tuple(v.shape)!s:18s} {str(v.dtype).replace('torch.', '')}"
                     for k, v in output.items())
