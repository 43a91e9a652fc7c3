"""Mask branch helpers: mask targets, the mask loss, and pasting masks into the image.

Taught in: 04_heads_mask_branch

| course_lib                 | torchvision.models.detection.roi_heads |
|----------------------------|----------------------------------------|
| ``project_masks_on_boxes`` | ``project_masks_on_boxes``             |
| ``maskrcnn_loss``          | ``maskrcnn_loss``                      |
| ``paste_masks_in_image``   | ``paste_masks_in_image``               |

Boxes are ``(x1, y1, x2, y2)`` in image pixels. The mask head predicts, for every positive
proposal, one ``M x M`` (28x28) logit map per class; only the map of the ground-truth class is
trained, and at inference the map of the predicted class is resized into its box.

For the notebook: ``paste_mask`` (one mask), ``expand_boxes``, ``jitter_boxes`` (proposal-like
boxes around the ground truth), ``mask_loss_gradients`` (sigmoid vs softmax mask loss),
``candidate_detections`` (the box head's candidates before NMS), ``mask_branch_stages`` (the mask
head layer by layer), and pictures (matplotlib, imported only when drawing).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from course_lib.roi_align import roi_align

__all__ = ["project_masks_on_boxes", "maskrcnn_loss", "paste_masks_in_image", "expand_boxes", "paste_mask",
           "jitter_boxes", "mask_loss_gradients", "candidate_detections", "mask_branch_stages"]


def project_masks_on_boxes(gt_masks: Tensor, boxes: Tensor, matched_idxs: Tensor, M: int) -> Tensor:
    """Mask targets: crop each proposal's matched ground-truth mask to the proposal, resized to M x M.

    Args:
        gt_masks: (G, H, W) ground-truth masks of one image (0/1, any dtype).
        boxes: (P, 4) proposals ``(x1, y1, x2, y2)`` in image pixels.
        matched_idxs: (P,) index of the ground truth matched to each proposal.
        M: output size (the mask head's resolution, 28 in Mask R-CNN).

    Returns:
        (P, M, M) float targets in [0, 1] (fractional on the mask's edges).

    This is RoIAlign again: the masks are a G-"image" batch with one channel, and the matched
    index is the batch index of each box (torchvision's settings: aligned=False, adaptive
    sampling).
    """
    rois = torch.cat([matched_idxs.to(boxes)[:, None], boxes], dim=1)  # (P, 5)
    masks = gt_masks[:, None].to(rois)  # (G, 1, H, W)
    return roi_align(masks, rois, (M, M), spatial_scale=1.0)[:, 0]


def maskrcnn_loss(
    mask_logits: Tensor,
    proposals: list[Tensor],
    gt_masks: list[Tensor],
    gt_labels: list[Tensor],
    mask_matched_idxs: list[Tensor],
) -> Tensor:
    """Binary cross-entropy between the ground-truth class's mask logits and the mask targets.

    Args:
        mask_logits: (P, num_classes, M, M) over the positive proposals of all images.
        proposals: per image, (Pi, 4) positive proposals ``(x1, y1, x2, y2)``.
        gt_masks: per image, (Gi, H, W) ground-truth masks.
        gt_labels: per image, (Gi,) class labels.
        mask_matched_idxs: per image, (Pi,) matched ground-truth index of each proposal.

    Returns:
        Scalar loss: mean over P * M * M pixels. With no proposals, ``mask_logits.sum() * 0``
        (a finite 0 that keeps the graph connected), as torchvision returns.
    """
    M = mask_logits.shape[-1]
    labels = torch.cat([lbl[idx] for lbl, idx in zip(gt_labels, mask_matched_idxs)])
    targets = torch.cat(
        [project_masks_on_boxes(m, p, i, M) for m, p, i in zip(gt_masks, proposals, mask_matched_idxs)]
    )
    if targets.numel() == 0:  # the mean of nothing would be NaN
        return mask_logits.sum() * 0

    # Only the ground-truth class's map is trained: the classes don't compete for pixels.
    logits = mask_logits[torch.arange(labels.shape[0], device=labels.device), labels]  # (P, M, M)
    return F.binary_cross_entropy_with_logits(logits, targets)


def paste_masks_in_image(masks: Tensor, boxes: Tensor, img_shape: tuple[int, int], padding: int = 1) -> Tensor:
    """Resize each M x M mask into its box and place it in an empty image.

    Args:
        masks: (N, 1, M, M) mask probabilities.
        boxes: (N, 4) detected boxes ``(x1, y1, x2, y2)`` in image pixels.
        img_shape: (height, width) of the image.
        padding: cells of zeros added around each mask before resizing (see below).

    Returns:
        (N, 1, height, width) masks in image coordinates (0 outside the box).

    Why the padding: the mask's border cells would otherwise be stretched to the box edge. A
    ring of zeros (and a box grown by the same factor) lets the resized mask fade out at the
    edge. Box corners are truncated to whole pixels, as torchvision does.
    """
    M = masks.shape[-1]
    scale = float(M + 2 * padding) / M
    masks = F.pad(masks, (padding,) * 4)
    boxes = _expand_boxes(boxes, scale).to(torch.int64)
    im_h, im_w = img_shape

    out = masks.new_zeros(masks.shape[0], 1, im_h, im_w)
    for i, (x1, y1, x2, y2) in enumerate(boxes.tolist()):
        w, h = max(x2 - x1 + 1, 1), max(y2 - y1 + 1, 1)  # the box's pixels, both ends included
        resized = F.interpolate(masks[i : i + 1], size=(h, w), mode="bilinear", align_corners=False)[0, 0]
        # The part of the box inside the image.
        ix0, ix1 = max(x1, 0), min(x2 + 1, im_w)
        iy0, iy1 = max(y1, 0), min(y2 + 1, im_h)
        if ix1 > ix0 and iy1 > iy0:
            out[i, 0, iy0:iy1, ix0:ix1] = resized[iy0 - y1 : iy1 - y1, ix0 - x1 : ix1 - x1]
    return out


def _expand_boxes(boxes: Tensor, scale: float) -> Tensor:
    """Boxes grown about their centres by ``scale`` (torchvision's ``expand_boxes``)."""
    w_half = (boxes[:, 2] - boxes[:, 0]) * 0.5 * scale
    h_half = (boxes[:, 3] - boxes[:, 1]) * 0.5 * scale
    x_c = (boxes[:, 2] + boxes[:, 0]) * 0.5
    y_c = (boxes[:, 3] + boxes[:, 1]) * 0.5
    return torch.stack([x_c - w_half, y_c - h_half, x_c + w_half, y_c + h_half], dim=1)


# ----------------------------------------------------------------------------- 04_heads_mask_branch: pieces, pictures

# Public name: boxes grown about their centres (torchvision's ``expand_boxes``).
expand_boxes = _expand_boxes


def paste_mask(mask: Tensor, box: Tensor, img_shape: tuple[int, int], padding: int = 1) -> Tensor:
    """``paste_masks_in_image`` for one mask: an (M, M) mask and a (4,) box -> an (H, W) image mask."""
    return paste_masks_in_image(mask[None, None], box.reshape(1, 4), img_shape, padding)[0, 0]


def jitter_boxes(boxes: Tensor, n: int, max_shift: float = 0.2, seed: int = 0) -> tuple[Tensor, Tensor]:
    """``n`` proposal-like copies of every box: each side moved by up to ``max_shift`` x the box's size.

    Returns:
        proposals (len(boxes) * n, 4) and matched_idxs (len(boxes) * n,) int64: the box each came from.
    """
    g = torch.Generator().manual_seed(seed)
    boxes = torch.as_tensor(boxes, dtype=torch.float32)
    wh = (boxes[:, 2:] - boxes[:, :2]).repeat(1, 2).repeat_interleave(n, 0)
    noise = (torch.rand(len(boxes) * n, 4, generator=g) * 2 - 1) * max_shift
    proposals = boxes.repeat_interleave(n, 0) + noise * wh
    return proposals, torch.arange(len(boxes)).repeat_interleave(n)


def mask_loss_gradients(logits: Tensor, label: int, target: Tensor) -> dict[str, Tensor]:
    """How two mask losses push on the (num_classes, M, M) logits of one RoI.

    * ``"sigmoid, ground-truth class only"``: Mask R-CNN's loss, binary cross-entropy on the map
      of class ``label``;
    * ``"softmax over classes"``: a per-pixel cross-entropy in which the classes compete: the
      target class of a pixel is ``label`` inside the mask and background (0) outside.

    Returns:
        ``{name: gradient of that loss with respect to the logits}``, each (num_classes, M, M).
    """
    grads = {}
    for name in ("sigmoid, ground-truth class only", "softmax over classes"):
        x = logits.detach().clone().requires_grad_(True)
        if name.startswith("sigmoid"):
            loss = F.binary_cross_entropy_with_logits(x[label], target)
        else:
            classes = torch.where(target >= 0.5, label, 0).long()
            loss = F.cross_entropy(x[None], classes[None])
        loss.backward()
        grads[name] = x.grad
    return grads


def candidate_detections(class_logits: Tensor, box_regression: Tensor, proposals: Tensor,
                         image_shape: tuple[int, int], score_thresh: float = 0.05,
                         box_coder_weights: tuple[float, float, float, float] = (10.0, 10.0, 5.0, 5.0)):
    """The box head's (proposal, class) candidates of one image *before* NMS, for pictures.

    Steps 1-4 of ``box_head.postprocess_detections``: softmax, class-specific decoding, clipping,
    dropping background and candidates scoring <= ``score_thresh``.

    Returns:
        boxes (D, 4), scores (D,), labels (D,) int64.
    """
    from torchvision.models.detection._utils import BoxCoder

    from .box_head import clip_boxes_to_image

    num_classes = class_logits.shape[-1]
    boxes = BoxCoder(box_coder_weights).decode(box_regression, [proposals])  # (P, num_classes, 4)
    boxes = clip_boxes_to_image(boxes, image_shape)[:, 1:].reshape(-1, 4)
    scores = F.softmax(class_logits, -1)[:, 1:].reshape(-1)
    labels = torch.arange(1, num_classes).repeat(len(proposals))
    keep = scores > score_thresh
    return boxes[keep], scores[keep], labels[keep]


def mask_branch_stages(mask_head: torch.nn.Module, mask_predictor: torch.nn.Module,
                       x: Tensor) -> list[tuple[str, Tensor]]:
    """Run torchvision's ``MaskRCNNHeads`` + ``MaskRCNNPredictor`` layer by layer.

    Args:
        x: (K, C, 14, 14) RoIAlign features.

    Returns:
        ``[(description, output), ...]`` starting with the input: one entry per conv + ReLU of the
        head, then the transposed convolution + ReLU and the 1x1 convolution of the predictor.
    """
    stages = [("RoIAlign features", x)]
    for i, block in enumerate(mask_head, start=1):
        x = block(x)
        conv = block[0]
        stages.append((f"mask_head[{i - 1}]: conv {conv.kernel_size[0]}x{conv.kernel_size[1]} + ReLU", x))
    x = mask_predictor.relu(mask_predictor.conv5_mask(x))
    k = mask_predictor.conv5_mask
    stages.append((f"conv5_mask: transposed conv {k.kernel_size[0]}x{k.kernel_size[1]}, stride {k.stride[0]} + ReLU",
                   x))
    x = mask_predictor.mask_fcn_logits(x)
    stages.append(("mask_fcn_logits: conv 1x1, one map per class", x))
    return stages


def plot_loss_gradients(grads: dict[str, Tensor], class_names: list[str]):
    """One row per loss, one column per class: where each loss's gradient reaches the logits."""
    import matplotlib.pyplot as plt

    names = list(grads)
    k = next(iter(grads.values())).shape[0]
    vmax = max(float(g.abs().max()) for g in grads.values())
    fig, axes = plt.subplots(len(names), k, figsize=(2.4 * k, 2.8 * len(names)), squeeze=False)
    for r, name in enumerate(names):
        for c in range(k):
            ax = axes[r, c]
            im = ax.imshow(grads[name][c].numpy(), cmap="RdBu_r", vmin=-vmax, vmax=vmax)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{class_names[c]} map\n|grad| summed: {float(grads[name][c].abs().sum()):.3f}", fontsize=8)
            if c == 0:
                ax.set_ylabel(name.replace(", ", ",\n"), fontsize=9)
    fig.colorbar(im, ax=axes, fraction=0.02)
    fig.suptitle("gradient of the loss with respect to each class's 28x28 mask logits (one RoI)", fontsize=10)
    return fig


def plot_boxes(ax, image: Tensor, boxes: Tensor, colours: list[str], texts: list[str] | None = None,
               legend: list[str] | None = None, styles: list[str] | None = None, lw: float = 1.5,
               alpha: float = 1.0, zoom: tuple[float, float, float, float] | None = None, title: str = ""):
    """Draw an image and boxes on a matplotlib axis (crisper than drawing on a small image's pixels).

    ``texts`` go on the boxes, ``legend`` into a legend beside the picture; ``zoom`` = (x1, y1, x2, y2)
    shows only that part of the image.
    """
    from matplotlib.patches import Rectangle

    from .draw import to_uint8

    ax.imshow(to_uint8(image).permute(1, 2, 0).numpy())
    for i, (x1, y1, x2, y2) in enumerate(torch.as_tensor(boxes).tolist()):
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, ec=colours[i], lw=lw, alpha=alpha,
                               ls=styles[i] if styles else "-", label=legend[i] if legend else None))
        if texts and texts[i]:
            ax.text(x1 + 0.5, y1 + 0.5, texts[i], fontsize=7, color="white", va="top", ha="left",
                    bbox=dict(fc=colours[i], alpha=0.8, lw=0, pad=1))
    if zoom is not None:
        ax.set_xlim(zoom[0], zoom[2])
        ax.set_ylim(zoom[3], zoom[1])
    if legend:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    ax.set_title(title, fontsize=9)
    ax.axis("off")


def box_panels(image: Tensor, panels: list[dict], size: float = 4.0):
    """One ``plot_boxes`` panel per dict of keyword arguments, side by side; returns the figure."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(size * len(panels), size), squeeze=False)
    for ax, panel in zip(axes[0], panels):
        plot_boxes(ax, image, **panel)
    fig.tight_layout()
    return fig


def plot_mask_targets(image: Tensor, boxes: Tensor, crops: Tensor, targets: Tensor):
    """The image with its proposals (left), and for each proposal its image crop above its M x M target.

    Each proposal has its own colour, used for its box and for the titles of its crop and target.
    """
    import matplotlib.pyplot as plt

    from .draw import to_uint8

    n = len(targets)
    colours = [plt.get_cmap("tab10")(i % 10) for i in range(n)]
    fig = plt.figure(figsize=(3.2 + 1.7 * n, 3.6))
    grid = fig.add_gridspec(2, n + 2, width_ratios=[1.9, 0.1] + [1] * n)
    plot_boxes(fig.add_subplot(grid[:, 0]), image, boxes, colours, title="proposals (jittered ground-truth boxes)")
    for i in range(n):
        top, bottom = fig.add_subplot(grid[0, i + 2]), fig.add_subplot(grid[1, i + 2])
        top.imshow(to_uint8(crops[i]).permute(1, 2, 0).numpy())
        top.set_title(f"proposal {i}", fontsize=9, color=colours[i], fontweight="bold")
        bottom.imshow(targets[i].numpy(), cmap="gray", vmin=0, vmax=1)
        bottom.set_title(f"target {tuple(targets[i].shape)}", fontsize=8, color=colours[i])
        top.axis("off")
        bottom.set_xticks([])  # keep the frame: white target pixels would merge with the page
        bottom.set_yticks([])
    fig.tight_layout()
    return fig


def plot_mask_branch(crop: Tensor, stages: list[tuple[str, Tensor]], index: int, label: int, class_names: list[str]):
    """One RoI through the mask branch: its crop, every stage's features as colours, and its class's mask.

    Feature maps are shown with ``roi_align.features_to_rgb`` (three main directions as RGB); the last
    stage shows the sigmoid of the logits of class ``label``.
    """
    import matplotlib.pyplot as plt

    from .draw import to_uint8
    from .roi_align import features_to_rgb

    picked = [stages[0], stages[len(stages) - 3], stages[-2]]
    fig, axes = plt.subplots(1, len(picked) + 2, figsize=(2.6 * (len(picked) + 2), 3.1))
    axes[0].imshow(to_uint8(crop).permute(1, 2, 0).numpy())
    axes[0].set_title("the RoI in the image", fontsize=9)
    for ax, (name, x) in zip(axes[1:], picked):
        ax.imshow(features_to_rgb([x[index]])[0].permute(1, 2, 0).numpy())
        ax.set_title(f"{name.split(':')[0]}\n{tuple(x.shape[1:])}", fontsize=9)
    name, logits = stages[-1]
    axes[-1].imshow(logits[index, label].sigmoid().numpy(), cmap="gray", vmin=0, vmax=1)
    axes[-1].set_title(f"{name.split(':')[0]} {tuple(logits.shape[1:])}\nsigmoid of the '{class_names[label]}' map",
                       fontsize=9)
    for ax in axes:
        ax.axis("off")
    fig.tight_layout()
    return fig
