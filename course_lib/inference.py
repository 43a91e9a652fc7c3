"""Running a whole Mask R-CNN and reading its output dict. Taught in: 00_overview.

In eval mode torchvision's detection models take a list of (3, H, W) float images in [0, 1] and
return one dict per image:

=========  ==================  =======  =====================================================
key        shape               dtype    meaning
=========  ==================  =======  =====================================================
boxes      (N, 4)              float32  (x1, y1, x2, y2) in pixels of the input image
labels     (N,)                int64    class index; 0 is background and never returned
scores     (N,)                float32  class confidence, sorted from high to low
masks      (N, 1, H, W)        float32  per-pixel probability of the predicted class
=========  ==================  =======  =====================================================
"""

from __future__ import annotations

import torch


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
    return "\n".join(f"{k:7s} {str(tuple(v.shape)):18s} {str(v.dtype).replace('torch.', '')}"
                     for k, v in output.items())


def fake_detections(n: int, seed: int, size: tuple[int, int] = (32, 40), max_score: float = 1.0,
                    exact: float | None = None) -> dict:
    """A made-up output dict with ``n`` detections, for exercise checkers (sorted scores, soft masks)."""
    g = torch.Generator().manual_seed(seed)
    h, w = size
    xy = torch.rand(n, 2, generator=g) * torch.tensor([w / 2, h / 2])
    wh = torch.rand(n, 2, generator=g) * torch.tensor([w / 2, h / 2]) + 1
    scores = (torch.rand(n, generator=g) * max_score).sort(descending=True).values
    if exact is not None and n:
        scores[n // 2] = exact  # a score exactly at the threshold
        scores = scores.sort(descending=True).values
    return {"boxes": torch.cat([xy, xy + wh], 1), "labels": torch.randint(1, 4, (n,), generator=g),
            "scores": scores, "masks": torch.rand(n, 1, h, w, generator=g)}
