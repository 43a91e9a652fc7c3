"""Anchors from scratch: a few box shapes, repeated at every position of every feature map.
Taught in: 02_anchors_rpn

An anchor is a box ``(x1, y1, x2, y2)`` in image pixels. For a feature map of size (H, W) that
is ``stride`` pixels per cell, the anchors are the *cell anchors* (one box per size x aspect
ratio, centred on 0) shifted to ``(x * stride_w, y * stride_h)`` for every cell (y, x). Order, as
in torchvision: level by level; within a level, cells row-major (y, then x); within a cell, the
cell anchors in order (ratio-major: all sizes of the first ratio, then the next ratio).

``AnchorGenerator`` is a drop-in for ``torchvision.models.detection.anchor_utils.AnchorGenerator``
(same arguments, same ``cell_anchors``, same output), so it can replace the one in a torchvision
``MaskRCNN``: ``model.rpn.anchor_generator = AnchorGenerator(sizes, aspect_ratios)`` (after
construction: ``MaskRCNN(..., rpn_anchor_generator=...)`` accepts only torchvision's own class).
"""

import torch
from torch import Tensor, nn


def generate_anchors(sizes, aspect_ratios, dtype=torch.float32, device="cpu") -> Tensor:
    """Zero-centred anchors for one level: ``(len(aspect_ratios) * len(sizes), 4)``.

    ``aspect_ratio`` = height / width; the area stays ``size**2``: w = size / sqrt(r),
    h = size * sqrt(r). Corners are rounded to whole pixels, as torchvision does.
    """
    scales = torch.as_tensor(sizes, dtype=dtype, device=device)
    ratios = torch.as_tensor(aspect_ratios, dtype=dtype, device=device)
    h_ratios = torch.sqrt(ratios)
    w_ratios = 1 / h_ratios
    ws = (w_ratios[:, None] * scales[None, :]).view(-1)  # ratio-major: (ratio, size) pairs
    hs = (h_ratios[:, None] * scales[None, :]).view(-1)
    return (torch.stack([-ws, -hs, ws, hs], dim=1) / 2).round()


def grid_anchors(grid_sizes, strides, cell_anchors) -> list[Tensor]:
    """Shift each level's cell anchors (A, 4) to every cell: one ``(H * W * A, 4)`` tensor per level.

    ``grid_sizes``: (H, W) per level; ``strides``: (stride_h, stride_w) per level, in pixels.
    One feature map per level: a different number is an error (``zip`` would drop levels).
    """
    if not len(grid_sizes) == len(strides) == len(cell_anchors):
        raise ValueError(
            f"got {len(grid_sizes)} feature maps for {len(cell_anchors)} anchor levels: pass one feature map per "
            "level, i.e. sizes and aspect_ratios as one tuple per feature map (torchvision: 'Anchors should be "
            "Tuple[Tuple[int]] ... There needs to be a match between the number of feature maps passed and the "
            "number of sizes / aspect ratios specified.')"
        )
    anchors = []
    for (grid_h, grid_w), (stride_h, stride_w), base in zip(grid_sizes, strides, cell_anchors, strict=True):
        # Integer shifts, as torchvision (exact for any image size).
        shifts_x = torch.arange(0, grid_w, dtype=torch.int32, device=base.device) * stride_w
        shifts_y = torch.arange(0, grid_h, dtype=torch.int32, device=base.device) * stride_h
        shift_y, shift_x = torch.meshgrid(shifts_y, shifts_x, indexing="ij")  # row-major cells
        shift_x, shift_y = shift_x.reshape(-1), shift_y.reshape(-1)
        shifts = torch.stack((shift_x, shift_y, shift_x, shift_y), dim=1)
        # (cells, 1, 4) + (1, A, 4): every cell anchor at every cell, cell by cell.
        anchors.append((shifts.view(-1, 1, 4) + base.view(1, -1, 4)).reshape(-1, 4))
    return anchors


def _as_levels(sizes, aspect_ratios):
    """torchvision's shorthands: ``sizes=(32, 64)`` means one size per level; one ratio tuple
    for all levels."""
    if not isinstance(sizes[0], (list, tuple)):
        sizes = tuple((s,) for s in sizes)
    if not isinstance(aspect_ratios[0], (list, tuple)):
        aspect_ratios = (aspect_ratios,) * len(sizes)
    return sizes, aspect_ratios


def anchors_for_image(image_size, feature_sizes, sizes, aspect_ratios,
                     dtype=torch.float32, device="cpu") -> list[Tensor]:
    """All anchors of one image: a list with one ``(H_l * W_l * A_l, 4)`` tensor per level.

    ``image_size`` = (height, width) of the (padded) image batch; ``feature_sizes`` = (H_l, W_l)
    per level; ``sizes`` and ``aspect_ratios`` as for ``AnchorGenerator``. Strides are
    ``image_size // feature_size`` (integer division), as in torchvision.
    """
    sizes, aspect_ratios = _as_levels(sizes, aspect_ratios)
    cells = [generate_anchors(s, r, dtype, device) for s, r in zip(sizes, aspect_ratios, strict=False)]
    strides = [(image_size[0] // h, image_size[1] // w) for h, w in feature_sizes]
    return grid_anchors([tuple(f) for f in feature_sizes], strides, cells)


class AnchorGenerator(nn.Module):
    """Anchors for a batch of images and their feature maps (torchvision's ``AnchorGenerator``).

    ``sizes[l]`` and ``aspect_ratios[l]`` are the sizes (pixels) and ratios (height / width) of
    level l; each cell of level l gets ``len(sizes[l]) * len(aspect_ratios[l])`` anchors.
    """

    def __init__(self, sizes=((128, 256, 512),), aspect_ratios=((0.5, 1.0, 2.0),)):
        super().__init__()
        self.sizes, self.aspect_ratios = _as_levels(sizes, aspect_ratios)
        self.cell_anchors = [generate_anchors(s, r) for s, r in zip(self.sizes, self.aspect_ratios, strict=False)]

    def generate_anchors(self, scales, aspect_ratios, dtype=torch.float32, device="cpu") -> Tensor:
        """The same as the module-level ``generate_anchors``: the cell anchors of one level (torchvision's method)."""
        return generate_anchors(scales, aspect_ratios, dtype, device)

    def num_anchors_per_location(self) -> list[int]:
        """Anchors per cell for each level (the RPN head predicts this many per cell)."""
        return [len(s) * len(r) for s, r in zip(self.sizes, self.aspect_ratios, strict=False)]

    def forward(self, image_list, feature_maps: list[Tensor]) -> list[Tensor]:
        """``image_list``: a torchvision ``ImageList`` (padded batch ``tensors`` (B, C, H, W));
        ``feature_maps``: one (B, C_l, H_l, W_l) tensor per level.

        Returns one ``(sum_l H_l * W_l * A_l, 4)`` tensor per image (the same anchors for every
        image: they are laid on the padded batch).
        """
        image_size = image_list.tensors.shape[-2:]
        grid_sizes = [tuple(f.shape[-2:]) for f in feature_maps]
        dtype, device = feature_maps[0].dtype, feature_maps[0].device
        self.cell_anchors = [c.to(dtype=dtype, device=device) for c in self.cell_anchors]
        strides = [(image_size[0] // h, image_size[1] // w) for h, w in grid_sizes]
        levels = grid_anchors(grid_sizes, strides, self.cell_anchors)
        return [torch.cat(levels) for _ in image_list.image_sizes]
