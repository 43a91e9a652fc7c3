"""The box head and its predictor from scratch (torchvision's ``detection/faster_rcnn.py``).
Taught in: 04_heads_mask_branch

``TwoMLPHead`` turns each pooled RoI (C, 7, 7) into one feature vector; ``FastRCNNPredictor`` gives from it
one score per class and one box regression per class. Parameter names, shapes and initialisation are
torchvision's, so their state dicts load unchanged.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class TwoMLPHead(nn.Module):
    """Two fully connected layers with ReLU: (R, C, 7, 7) pooled RoIs -> (R, representation_size)."""

    def __init__(self, in_channels: int, representation_size: int):
        super().__init__()
        self.fc6 = nn.Linear(in_channels, representation_size)
        self.fc7 = nn.Linear(representation_size, representation_size)

    def forward(self, x: Tensor) -> Tensor:
        x = x.flatten(start_dim=1)
        return F.relu(self.fc7(F.relu(self.fc6(x))))


class FastRCNNPredictor(nn.Module):
    """(R, D) RoI features -> class logits (R, num_classes) and box deltas (R, num_classes * 4)."""

    def __init__(self, in_channels: int, num_classes: int):
        super().__init__()
        self.cls_score = nn.Linear(in_channels, num_classes)
        self.bbox_pred = nn.Linear(in_channels, num_classes * 4)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if x.dim() == 4 and tuple(x.shape[2:]) != (1, 1):
            raise ValueError(f"expected (R, D) or (R, D, 1, 1) features, got {tuple(x.shape)}")
        x = x.flatten(start_dim=1)
        return self.cls_score(x), self.bbox_pred(x)
