"""Where a feature-map cell looks: the input pixels that reach one cell, found by its gradient.
Taught in: 03_roi_align (where a cell sits, for RoIAlign's ``aligned``).

The gradient of one output cell with respect to the input is non-zero exactly on the pixels that can change it.
``receptive_fields`` takes the union of those pixels over every channel of the cell and a few random inputs
(one input could leave a pixel at zero through a ReLU or a max pool that happens to pick another pixel), for
the centre cell of every map a network returns. The network is run in eval mode (BatchNorm in train mode mixes
every position of the batch, so every pixel would reach every cell).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class CellField:
    """The receptive field of one cell, measured.

    ``name``: the output map's key; ``stride``: input pixels per cell; ``cell``: the cell's (row, column);
    ``first`` and ``last``: (row, column) of the top-left and bottom-right input pixels that reach it (both
    included); ``clipped``: the field touches the input's border, so it may reach further than measured.
    """

    name: str
    stride: int
    cell: tuple[int, int]
    first: tuple[int, int]
    last: tuple[int, int]
    clipped: bool

    @property
    def centre(self) -> tuple[float, float]:
        """(row, column) of the pixel in the middle of the field (a half for a field of even width)."""
        return tuple((a + b) / 2 for a, b in zip(self.first, self.last, strict=True))

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) of the field in pixels."""
        return tuple(b - a + 1 for a, b in zip(self.first, self.last, strict=True))


def _maps(out) -> dict[str, Tensor]:
    if isinstance(out, Tensor):
        return {"out": out}
    if isinstance(out, dict) and all(isinstance(v, Tensor) for v in out.values()):
        return dict(out)
    raise TypeError(f"receptive_fields: the network must return a tensor or a dict of tensors, got "
                    f"{type(out).__name__}")


def receptive_fields(net: nn.Module | Callable, image_size: int = 256, in_channels: int = 3, n_images: int = 2,
                     seed: int = 0) -> list[CellField]:
    """The receptive field of the centre cell of every map ``net`` returns for an ``image_size`` square input.

    ``net`` maps a (N, in_channels, H, W) batch to a tensor or a dict of (N, C, h, w) maps (a ResNet body's
    ``IntermediateLayerGetter``, a ``BackboneWithFPN``). The stride of a map is ``image_size / h``; the centre
    cell is ``(h // 2, w // 2)``, whose field a network of centred convolutions centres on pixel
    ``cell * stride``. Inputs are drawn from a generator seeded with ``seed``. ``net``'s train/eval mode and its
    parameters' ``requires_grad`` are restored afterwards.
    """
    if image_size < 1 or n_images < 1:
        raise ValueError(f"receptive_fields: image_size and n_images must be positive, got {image_size}, {n_images}")
    x = torch.randn(n_images, in_channels, image_size, image_size,
                    generator=torch.Generator().manual_seed(seed))
    modules = [net] if isinstance(net, nn.Module) else []
    was_training = [m.training for m in modules]
    params = [p for m in modules for p in m.parameters()]
    wanted_grad = [p.requires_grad for p in params]
    if params:
        x = x.to(device=params[0].device, dtype=params[0].dtype)
    x.requires_grad_(True)
    try:
        for m in modules:
            m.eval()
        for p in params:  # only the input's gradient is needed: skip the weights' (about half the work)
            p.requires_grad_(False)
        maps = _maps(net(x))
        fields = []
        for name, fmap in maps.items():
            if fmap.dim() != 4 or fmap.shape[0] != n_images:
                raise ValueError(f"receptive_fields: output {name!r} has shape {tuple(fmap.shape)}, expected "
                                 f"({n_images}, C, h, w)")
            h, w = fmap.shape[-2:]
            stride = image_size / h
            if stride != image_size / w or stride != 2 ** round(math.log2(stride)):
                raise ValueError(f"receptive_fields: output {name!r} is {h} x {w} for a {image_size}-pixel input: "
                                 f"no power-of-two stride; pick an image_size divisible by every stride")
            cell = (h // 2, w // 2)
            (grad,) = torch.autograd.grad(fmap[:, :, cell[0], cell[1]].sum(), x, retain_graph=True)
            reached = (grad != 0).any(0).any(0)  # (H, W): some channel of some input reaches the pixel
            if not reached.any():
                raise ValueError(f"receptive_fields: no input pixel reaches output {name!r}'s cell {cell} "
                                 f"(its gradient is zero everywhere)")
            rows, cols = reached.any(1).nonzero().flatten(), reached.any(0).nonzero().flatten()
            first, last = (int(rows[0]), int(cols[0])), (int(rows[-1]), int(cols[-1]))
            clipped = min(first) == 0 or max(last) == image_size - 1
            fields.append(CellField(str(name), int(stride), cell, first, last, clipped))
        return fields
    finally:
        for m, mode in zip(modules, was_training, strict=True):
            m.train(mode)
        for p, wanted in zip(params, wanted_grad, strict=True):
            p.requires_grad_(wanted)
