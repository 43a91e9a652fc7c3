"""Notebook 04's computations and pictures: jittered proposals, the mask head layer by layer, the mask
loss's gradients, mask targets. Taught in: 04_heads_mask_branch

The box head's candidates before NMS are ``course_lib.detection.roi_heads.detection_candidates``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from course_lib.detection.roi_heads import select_training_samples
from course_lib.lessons.draw import colour, plot_boxes, with_alt
from course_lib.utils.colours import PALETTE


def positive_rois_of(rois: Tensor, matched: Tensor, labels: Tensor, objects: list[int],
                     per_object: int = 3) -> tuple[Tensor, Tensor]:
    """Up to ``per_object`` positive sampled RoIs matched to each gt index in ``objects``, in sampling order.

    Returns (K, 4) RoIs and (K,) int64 matched gt indices (the inputs of ``project_masks_on_boxes``).
    """
    keep = torch.cat([torch.where((labels > 0) & (matched == k))[0][:per_object] for k in objects])
    return rois[keep], matched[keep]


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
    sums = "; ".join(f"{name}: " + ", ".join(f"{class_names[c]} {float(grads[name][c].abs().sum()):.3f}"
                                             for c in range(k)) for name in names)
    return with_alt(fig, f"A grid of 28 by 28 gradient maps, one row per loss ({', '.join(names)}), one column per "
                         "class, on a blue-white-red scale centred on 0. Summed absolute gradient per map: "
                         f"{sums}. Where a loss looks only at the ground-truth class's map, the other maps of its "
                         "row are blank: no gradient reaches them.")


def box_panels(image: Tensor, panels: list[dict], size: float = 4.0, alt: str | None = None):
    """One ``plot_boxes`` panel per dict of keyword arguments, side by side; returns the figure, with ``alt``
    as its alt text (``draw.with_alt``)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(size * len(panels), size), squeeze=False)
    for ax, panel in zip(axes[0], panels, strict=True):
        plot_boxes(ax, image, **panel)
    fig.tight_layout()
    return with_alt(fig, alt) if alt is not None else fig


def plot_mask_targets(image: Tensor, boxes: Tensor, crops: Tensor, targets: Tensor):
    """The image with its proposals (left), and for each proposal its image crop above its M x M target.

    Each proposal has its own colour, used for its box and for the titles of its crop and target.
    """
    import matplotlib.pyplot as plt

    from course_lib.lessons.draw import to_uint8

    n = len(targets)
    colours = [PALETTE[1 + i % (len(PALETTE) - 1)] for i in range(n)]
    fig = plt.figure(figsize=(3.2 + 1.7 * n, 3.6))
    grid = fig.add_gridspec(2, n + 2, width_ratios=[1.9, 0.1] + [1] * n)
    plot_boxes(fig.add_subplot(grid[:, 0]), image, boxes, colours, title="positive sampled RoIs")
    for i in range(n):
        top, bottom = fig.add_subplot(grid[0, i + 2]), fig.add_subplot(grid[1, i + 2])
        top.imshow(to_uint8(crops[i]).permute(1, 2, 0).numpy())
        top.set_title(f"proposal {i}", fontsize=9, color=colours[i], fontweight="bold")
        values = bottom.imshow(targets[i].numpy(), cmap="gray", vmin=0, vmax=1)
        bottom.set_title(f"target {tuple(targets[i].shape)}", fontsize=8, color=colours[i])
        top.axis("off")
        bottom.set_xticks([])  # keep the frame: white target pixels would merge with the page
        bottom.set_yticks([])
    fig.tight_layout()
    if n:  # a thin bar right of the last target, in its own axes (so that no target panel shrinks)
        pos = bottom.get_position()
        cax = fig.add_axes([pos.x1 + 0.006, pos.y0, 0.008, pos.height])
        fig.colorbar(values, cax=cax, label="target")
    covered = ", ".join(f"proposal {i} {float(targets[i].mean()) * 100:.0f} %" for i in range(n))
    return with_alt(fig, f"Left: the image with {n} positive sampled proposals, each box in its own colour. Right, "
                         "for each proposal: above, the image inside it; below, its mask target in grey (white = "
                         f"object) resampled to {tuple(targets.shape[-2:])}. Share of each target that is object: "
                         f"{covered}. A proposal that sits off-centre gets an off-centre target, cut where the "
                         "proposal cuts the object.")


def plot_mask_branch(crop: Tensor, stages: list[tuple[str, Tensor]], index: int, label: int, class_names: list[str]):
    """One RoI through the mask branch: its crop, every stage's features as colours, and its class's mask.

    Feature maps are shown with ``roi_align.features_to_rgb`` (three main directions as RGB); the last
    stage shows the sigmoid of the logits of class ``label``.
    """
    import matplotlib.pyplot as plt

    from course_lib.lessons.draw import to_uint8
    from course_lib.lessons.nb03_roi_align import features_to_rgb

    picked = [stages[0], stages[len(stages) - 3], stages[-2]]
    fig, axes = plt.subplots(1, len(picked) + 2, figsize=(2.6 * (len(picked) + 2), 3.1))
    axes[0].imshow(to_uint8(crop).permute(1, 2, 0).numpy())
    axes[0].set_title("the RoI in the image", fontsize=9)
    for ax, (name, x) in zip(axes[1:], picked, strict=False):
        ax.imshow(features_to_rgb([x[index]])[0].permute(1, 2, 0).numpy())
        ax.set_title(f"{name.split(':')[0]}\n{tuple(x.shape[1:])}", fontsize=9)
    name, logits = stages[-1]
    prob = axes[-1].imshow(logits[index, label].sigmoid().numpy(), cmap="gray", vmin=0, vmax=1)
    axes[-1].set_title(f"{name.split(':')[0]} {tuple(logits.shape[1:])}\nsigmoid of the '{class_names[label]}' map",
                       fontsize=9)
    for ax in axes:
        ax.axis("off")
    fig.tight_layout()
    pos = axes[-1].get_position()
    fig.colorbar(prob, cax=fig.add_axes([pos.x1 + 0.006, pos.y0, 0.008, pos.height]), label="probability")
    return with_alt(fig, f"One detection through the mask branch, left to right: the RoI's image crop; the features "
                         f"after {', '.join(n.split(':')[0] for n, _ in picked)}, each shown as colours (three main "
                         "directions of the channels as red, green and blue); and the sigmoid of the "
                         f"'{class_names[label]}' map in grey, 0 to 1. The features after conv5_mask show a "
                         "checkerboard from the 2 by 2 transposed convolution; the final map is the object's shape.")


def sample_rois(roi_heads, proposals: Tensor, target: dict, seed: int = 0):
    """The RoIs the box head trains on for one image: the course's ``select_training_samples`` with the
    model's matcher and sampler, after ``torch.manual_seed(seed)``.

    Returns (R, 4) RoIs, (R,) matched gt index, (R,) labels and (R, 4) regression targets (positives first,
    then negatives, as the sampler's masks order them by index).
    """
    target = {"boxes": target["boxes"].as_subclass(Tensor).to(proposals),
              "labels": target["labels"].as_subclass(Tensor).to(proposals.device)}
    torch.manual_seed(seed)
    rois, matched, labels, targets = select_training_samples(
        [proposals], [target], roi_heads.proposal_matcher, roi_heads.fg_bg_sampler,
        tuple(roi_heads.box_coder.weights))
    return rois[0], matched[0], labels[0], targets[0]


def torchvision_sample_rois(roi_heads, proposals: Tensor, target: dict, seed: int = 0):
    """The same with torchvision's own ``RoIHeads.select_training_samples`` (to compare)."""
    target = {k: target[k].as_subclass(Tensor).to(proposals.device) for k in ("boxes", "labels", "masks")}
    torch.manual_seed(seed)
    rois, matched, labels, targets = roi_heads.select_training_samples([proposals], [target])
    return rois[0], matched[0], labels[0], targets[0]


def sampled_rois_figure(image: Tensor, gt_boxes: Tensor, rois: Tensor, labels: Tensor, size: float = 4.2):
    """Two panels: the positive RoIs in their class's colour, and the negative ones in grey; the ground-truth
    boxes dashed white on both."""
    pos, neg = labels > 0, labels == 0
    gt = gt_boxes.cpu()
    panels = []
    for keep, cols, title in ((pos, [colour(int(c)) for c in labels[pos]], f"{int(pos.sum())} positive RoIs (IoU >= 0.5)"),
                              (neg, ["0.8"] * int(neg.sum()), f"{int(neg.sum())} negative RoIs (background)")):
        boxes = torch.cat([rois[keep].cpu(), gt])
        panels.append(dict(boxes=boxes, colours=cols + ["white"] * len(gt), lw=0.9, alpha=0.85, title=title,
                           styles=["-"] * int(keep.sum()) + ["--"] * len(gt)))
    return box_panels(image, panels, size=size, alt=(
        f"Two copies of the image with the ground-truth boxes dashed white. Left: {int(pos.sum())} positive RoIs "
        "(IoU at least 0.5), each in its class's colour, crowded on the objects. Right: "
        f"{int(neg.sum())} negative RoIs in grey, grazing the objects or covering background."))
